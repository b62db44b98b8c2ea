-- new_52w_highs: symbols whose high on a session exceeds every high of the $window_days calendar days
-- before it (daily bars). The window must be covered: history = the share of its exchange sessions with
-- a stored bar, and below $min_history (default 0.95: about 12 of 252 sessions may be missing, e.g.
-- halts) the row says note = 'insufficient history', complete = false, and is left out unless
-- $include_incomplete. A symbol listed less than a window ago has insufficient history.
-- Assumes equities: one daily TRADES bar per exchange session (other asset classes: not yet).
-- Parameters:
--   $as_of = NULL            session date to scan (DATE); NULL = the latest stored session
--   $window_days = 365       look-back window in calendar days (52 weeks ≈ 365)
--   $min_history = 0.95      least share of the window's sessions that must have a bar
--   $what_to_show = 'TRADES' which price series
--   $include_incomplete = false   also list candidates with insufficient history
WITH d AS (
  SELECT con_id, symbol, calendar, session_no, session_date, high, close
  FROM session_bars WHERE bar_size = '1 day' AND what_to_show = $what_to_show AND use_rth),
day AS (SELECT coalesce($as_of::DATE, (SELECT max(session_date) FROM d)) AS as_of),
expected AS (
  SELECT x.calendar, count(*) AS sessions
  FROM sessions x, day WHERE x.session_date < day.as_of AND x.session_date >= day.as_of - $window_days::INTEGER
  GROUP BY x.calendar),
prior AS (
  SELECT d.con_id, max(d.high) AS prior_high, count(d.session_no) AS stored
  FROM d, day WHERE d.session_date < day.as_of AND d.session_date >= day.as_of - $window_days::INTEGER
  GROUP BY d.con_id),
r AS (
  SELECT c.symbol, c.session_date, c.high, c.close, p.prior_high,
         coalesce(p.stored, 0) / e.sessions AS history, e.sessions - coalesce(p.stored, 0) AS missing_sessions
  FROM d c JOIN day ON c.session_date = day.as_of JOIN expected e USING (calendar)
  LEFT JOIN prior p USING (con_id))
SELECT symbol, session_date, high, close, prior_high, history, missing_sessions,
       history >= $min_history::DOUBLE AS complete,
       CASE WHEN history < $min_history::DOUBLE THEN 'insufficient history' END AS note
FROM r
WHERE (prior_high IS NULL OR high > prior_high)
  AND ((history >= $min_history::DOUBLE AND prior_high IS NOT NULL)
       OR ($include_incomplete::BOOLEAN AND history < $min_history::DOUBLE))
ORDER BY high / prior_high DESC NULLS FIRST, symbol
