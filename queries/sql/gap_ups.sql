-- gap_ups: sessions that opened at least $min_gap above the previous session's close (daily bars).
-- gap = open / previous close - 1; the first stored session of a symbol has no previous close.
-- Any asset class with daily bars in $what_to_show (forex has MIDPOINT, not TRADES).
-- Parameters:
--   $min_gap = 0.02          smallest gap reported, as a fraction (0.02 = 2 %)
--   $start = NULL            first session date reported (DATE); NULL = all
--   $end = NULL              last session date reported, inclusive (DATE); NULL = all
--   $what_to_show = 'TRADES' which price series
WITH d AS (
  SELECT symbol, session_date, open, close,
         lag(close) OVER (PARTITION BY con_id ORDER BY session_date) AS prev_close
  FROM bars
  WHERE bar_size = '1 day' AND what_to_show = $what_to_show AND use_rth)
SELECT symbol, session_date, prev_close, open, open / prev_close - 1 AS gap
FROM d
WHERE prev_close > 0 AND open / prev_close - 1 >= $min_gap::DOUBLE
  AND ($start IS NULL OR session_date >= $start::DATE) AND ($end IS NULL OR session_date <= $end::DATE)
ORDER BY session_date, gap DESC, symbol
