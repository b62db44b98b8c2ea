-- unusual_volume: symbols whose volume on a session is at least $multiple times their average volume
-- over the $lookback exchange sessions before it (daily bars). The reference sessions are the calendar's,
-- never the previous stored rows: missing_sessions counts those without a bar, and a row with any is
-- complete = false and left out unless $include_incomplete (then judged on the bars stored).
-- Assumes equities: one daily TRADES bar per exchange session (other asset classes: not yet).
-- Parameters:
--   $as_of = NULL            session date to scan (DATE); NULL = the latest stored session
--   $multiple = 3            volume / average volume threshold
--   $lookback = 20           number of prior sessions averaged
--   $what_to_show = 'TRADES' which price series
--   $include_incomplete = false   also list rows whose reference sessions are partly missing
WITH d AS (
  SELECT con_id, symbol, session_no, session_date, volume
  FROM session_bars WHERE bar_size = '1 day' AND what_to_show = $what_to_show AND use_rth),
v AS (
  SELECT c.symbol, c.session_date, c.volume, avg(p.volume) AS avg_volume,
         $lookback::INTEGER - count(p.volume) AS missing_sessions
  FROM d c LEFT JOIN d p
    ON p.con_id = c.con_id AND p.session_no BETWEEN c.session_no - $lookback::INTEGER AND c.session_no - 1
  WHERE c.session_date = coalesce($as_of::DATE, (SELECT max(session_date) FROM d))
  GROUP BY c.con_id, c.symbol, c.session_date, c.volume)
SELECT symbol, session_date, volume, avg_volume, volume / avg_volume AS ratio, missing_sessions,
       missing_sessions = 0 AS complete
FROM v
WHERE (missing_sessions = 0 OR $include_incomplete::BOOLEAN)
  AND (avg_volume IS NULL OR (avg_volume > 0 AND volume >= $multiple::DOUBLE * avg_volume))
  AND (avg_volume IS NOT NULL OR missing_sessions > 0)
ORDER BY ratio DESC NULLS FIRST, symbol
