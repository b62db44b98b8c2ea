-- status: the warehouse at a glance, one row per bar size: series (fetched or asked for), the first and last
-- stored session, bars stored, sessions the series' wanted spans lack (the gaps view), files, bytes, last commit (UTC).
-- Parameters: none.
WITH keys AS (
  SELECT con_id, bar_size, what_to_show, use_rth FROM series
  UNION SELECT con_id, bar_size, what_to_show, use_rth FROM wanted),
s AS (SELECT bar_size, count(*) AS series FROM keys GROUP BY bar_size),
c AS (SELECT bar_size, max(last_recorded) AS last_commit FROM series GROUP BY bar_size),
d AS (SELECT bar_size, min(session_date) AS first_day, max(session_date) AS last_day FROM bars GROUP BY bar_size),
g AS (SELECT bar_size, count(*) AS missing_sessions FROM gaps GROUP BY bar_size),
f AS (SELECT bar_size, count(*) AS files, sum(num_rows)::BIGINT AS bars, sum(file_size_bytes)::BIGINT AS bytes
      FROM bar_files GROUP BY bar_size),
sizes AS (SELECT bar_size FROM s UNION SELECT bar_size FROM f)
SELECT bar_size, coalesce(s.series, 0) AS series, d.first_day, d.last_day, coalesce(f.bars, 0)::BIGINT AS bars,
       coalesce(g.missing_sessions, 0) AS missing_sessions, coalesce(f.files, 0) AS files,
       coalesce(f.bytes, 0)::BIGINT AS bytes, c.last_commit
FROM sizes LEFT JOIN s USING (bar_size) LEFT JOIN f USING (bar_size) LEFT JOIN d USING (bar_size)
LEFT JOIN g USING (bar_size) LEFT JOIN c USING (bar_size)
ORDER BY bar_size
