-- status: the warehouse at a glance, one row per bar size: series covered, covered date range,
-- bars stored, exchange sessions missing inside covered spans, files, bytes, last commit (UTC).
-- Parameters: none.
WITH s AS (
  SELECT bar_size, count(*) AS series, min(covered_from) AS covered_from, max(covered_to) AS covered_to,
         max(last_recorded) AS last_commit
  FROM series GROUP BY bar_size),
g AS (SELECT bar_size, count(*) AS missing_sessions FROM gaps GROUP BY bar_size),
f AS (SELECT bar_size, count(*) AS files, sum(num_rows)::BIGINT AS bars, sum(file_size_bytes)::BIGINT AS bytes
      FROM bar_files GROUP BY bar_size)
SELECT bar_size, coalesce(s.series, 0) AS series, s.covered_from::DATE AS first_day,
       (s.covered_to - INTERVAL 1 MICROSECOND)::DATE AS last_day, coalesce(f.bars, 0)::BIGINT AS bars,
       coalesce(g.missing_sessions, 0) AS missing_sessions, coalesce(f.files, 0) AS files,
       coalesce(f.bytes, 0)::BIGINT AS bytes, s.last_commit
FROM s FULL JOIN f USING (bar_size) LEFT JOIN g USING (bar_size)
ORDER BY bar_size
