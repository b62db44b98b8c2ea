-- daily_from_minutes: daily bars resampled from 1-min bars, one row per symbol and exchange session.
-- open is the session's first minute's open, close its last minute's close, wap volume-weighted;
-- ts is the first minute's start (UTC), so it matches IB's daily bar for a full RTH session.
-- Parameters:
--   $start = NULL            first bar start included (UTC timestamp); NULL = from the beginning
--   $end = NULL              first bar start excluded (UTC timestamp); NULL = to the end
--   $what_to_show = 'TRADES' which price series
--   $use_rth = true          regular trading hours only (true) or extended hours (false)
SELECT symbol, con_id, '1 day' AS bar_size, what_to_show, use_rth, min(ts) AS ts, session_date,
       arg_min(open, ts) AS open, max(high) AS high, min(low) AS low, arg_max(close, ts) AS close,
       sum(volume) AS volume, sum(wap * volume) / nullif(sum(volume), 0) AS wap, sum(bar_count) AS bar_count
FROM bars
WHERE bar_size = '1 min' AND what_to_show = $what_to_show AND use_rth = $use_rth::BOOLEAN
  AND ($start IS NULL OR ts >= $start::TIMESTAMPTZ) AND ($end IS NULL OR ts < $end::TIMESTAMPTZ)
GROUP BY symbol, con_id, what_to_show, use_rth, session_date
ORDER BY symbol, session_date
