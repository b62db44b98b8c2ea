-- unusual_volume: symbols whose volume on a session is at least $multiple times their average volume
-- over the $lookback sessions before it (daily bars; sessions with fewer than $lookback prior ones skipped).
-- Stocks and ETFs only (sec_type STK): a future's volume moves with its roll, forex and indices have none.
-- Parameters:
--   $as_of = NULL            session date to scan (DATE); NULL = the latest stored session
--   $multiple = 3            volume / average volume threshold
--   $lookback = 20           number of prior sessions averaged
--   $what_to_show = 'TRADES' which price series
WITH d AS (
  SELECT symbol, session_date, volume,
         avg(volume) OVER w AS avg_volume, count(volume) OVER w AS prior_sessions
  FROM bars
  WHERE bar_size = '1 day' AND what_to_show = $what_to_show AND use_rth
    AND con_id IN (SELECT con_id FROM contracts WHERE sec_type = 'STK')
  WINDOW w AS (PARTITION BY con_id ORDER BY session_date
               ROWS BETWEEN $lookback::INTEGER PRECEDING AND 1 PRECEDING))
SELECT symbol, session_date, volume, avg_volume, volume / avg_volume AS ratio
FROM d
WHERE session_date = coalesce($as_of::DATE, (SELECT max(session_date) FROM d))
  AND prior_sessions = $lookback::INTEGER AND avg_volume > 0 AND volume >= $multiple::DOUBLE * avg_volume
ORDER BY ratio DESC, symbol
