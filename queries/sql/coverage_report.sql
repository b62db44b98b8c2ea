-- coverage_report: per series, what is stored and what is missing: covered span, intervals with bars,
-- verified-empty intervals, bars recorded, and the sessions its wanted spans lack (the gaps view).
-- Parameters:
--   $bar_size = NULL         IB bar size to report ('1 min', '1 day', ...); NULL = all
--   $symbol = NULL           one symbol; NULL = all
SELECT s.symbol, s.con_id, s.bar_size, s.what_to_show, s.use_rth, s.covered_from, s.covered_to,
       s.bar_intervals, s.empty_intervals, s.bars, coalesce(g.missing_sessions, 0) AS missing_sessions,
       g.first_missing, g.last_missing, s.last_recorded
FROM series s
LEFT JOIN (SELECT con_id, bar_size, what_to_show, use_rth, count(*) AS missing_sessions,
                  min(session_date) AS first_missing, max(session_date) AS last_missing
           FROM gaps GROUP BY ALL) g USING (con_id, bar_size, what_to_show, use_rth)
WHERE ($bar_size IS NULL OR s.bar_size = $bar_size) AND ($symbol IS NULL OR s.symbol = $symbol)
ORDER BY s.bar_size, s.symbol, s.what_to_show, s.use_rth
