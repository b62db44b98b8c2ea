-- new_52w_highs: symbols whose high on a session exceeds every high of the $window_days calendar days
-- before it (daily bars); symbols with no bar in that window are not reported.
-- Any asset class with daily bars in $what_to_show (forex has MIDPOINT, not TRADES).
-- Parameters:
--   $as_of = NULL            session date to scan (DATE); NULL = the latest stored session
--   $window_days = 365       look-back window in calendar days (52 weeks ≈ 365)
--   $what_to_show = 'TRADES' which price series
WITH d AS (
  SELECT con_id, symbol, session_date, high, close
  FROM bars WHERE bar_size = '1 day' AND what_to_show = $what_to_show AND use_rth),
day AS (SELECT coalesce($as_of::DATE, (SELECT max(session_date) FROM d)) AS as_of),
prior AS (
  SELECT d.con_id, max(d.high) AS prior_high
  FROM d, day
  WHERE d.session_date < day.as_of AND d.session_date >= day.as_of - $window_days::INTEGER
  GROUP BY d.con_id)
SELECT d.symbol, d.session_date, d.high, d.close, p.prior_high
FROM d JOIN day ON d.session_date = day.as_of JOIN prior p USING (con_id)
WHERE d.high > p.prior_high
ORDER BY d.high / p.prior_high DESC, d.symbol
