-- gap_ups: sessions that opened at least $min_gap above the previous session's close (daily bars).
-- gap = open / previous close - 1, where "previous" is the exchange calendar's previous session, never
-- the previous stored bar. When that session's bar is missing the gap is unknown: missing_sessions = 1,
-- complete = false, and the row is left out unless $include_incomplete (then gap is NULL).
-- Assumes equities: one daily TRADES bar per exchange session (other asset classes: not yet).
-- Parameters:
--   $min_gap = 0.02          smallest gap reported, as a fraction (0.02 = 2 %)
--   $start = NULL            first session date reported (DATE); NULL = all
--   $end = NULL              last session date reported, inclusive (DATE); NULL = all
--   $what_to_show = 'TRADES' which price series
--   $include_incomplete = false   also list sessions whose previous session's bar is missing
WITH d AS (
  SELECT con_id, symbol, session_no, session_date, open, close
  FROM session_bars WHERE bar_size = '1 day' AND what_to_show = $what_to_show AND use_rth),
g AS (
  SELECT c.symbol, c.session_date, p.close AS prev_close, c.open, c.open / p.close - 1 AS gap,
         CASE WHEN p.con_id IS NULL THEN 1 ELSE 0 END AS missing_sessions
  FROM d c LEFT JOIN d p ON p.con_id = c.con_id AND p.session_no = c.session_no - 1
  WHERE ($start IS NULL OR c.session_date >= $start::DATE) AND ($end IS NULL OR c.session_date <= $end::DATE))
SELECT symbol, session_date, prev_close, open, gap, missing_sessions, missing_sessions = 0 AS complete
FROM g
WHERE (missing_sessions = 0 AND prev_close > 0 AND gap >= $min_gap::DOUBLE)
   OR ($include_incomplete::BOOLEAN AND missing_sessions > 0)
ORDER BY session_date, gap DESC NULLS FIRST, symbol
