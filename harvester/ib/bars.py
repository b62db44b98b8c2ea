"""IB's bars → the warehouse's form: the client hands back bars ready to stage.

IB dates daily and longer bars by session (`yyyyMMdd`, formatDate is ignored for them) and intraday bars
by UTC epoch seconds (formatDate=2). The warehouse stores both as `ts` (the bar's start, UTC) and
`session_date` (the exchange's trading date), so a daily bar's `ts` is its session's open.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from harvester.calendar import TradingCalendar
from harvester.ibrules import bar_size
from harvester.model import SeriesKey

IB_BAR_FIELDS = ["date", "open", "high", "low", "close", "volume", "wap", "bar_count"]  # per bar, on the wire
FIELDS_PER_BAR = len(IB_BAR_FIELDS)


def bars_frame(fields: Sequence[str]) -> pd.DataFrame:
    """The bar fields of one historicalData message → DataFrame of IB_BAR_FIELDS, parsed column-wise.

    `date` is IB's own: daily+ bars `yyyyMMdd` (→ naive datetime64, the session date), intraday bars
    epoch seconds with formatDate=2 (→ UTC-aware datetime64).
    """
    columns = [fields[k::FIELDS_PER_BAR] for k in range(FIELDS_PER_BAR)]
    dates = columns[0]
    if dates and len(dates[0]) == 8:  # yyyyMMdd; epoch seconds have had 10 digits since 2001
        when = pd.to_datetime(pd.Series(dates), format="%Y%m%d")
    else:
        when = pd.to_datetime(pd.Series(np.array(dates, dtype=np.int64)), unit="s", utc=True)
    frame = pd.DataFrame({name: np.array(columns[k], dtype=np.float64) for k, name in enumerate(IB_BAR_FIELDS)
                          if 0 < k < 7})
    frame.insert(0, "date", when)
    frame["bar_count"] = np.array(columns[7], dtype=np.int64)
    return frame


def warehouse_frame(raw: pd.DataFrame, series: SeriesKey, calendar: TradingCalendar) -> pd.DataFrame:
    """IB's bars → the warehouse's columns: `ts` bar start (UTC), `session_date` the exchange's trading date.

    Daily and longer bars arrive as dates (formatDate is ignored for them); their `ts` is the session's
    open in the requested flavour (RTH or extended), looked up vectorised in the calendar's arrays.
    Intraday bars arrive as UTC epoch (formatDate=2) and take the trading date of the session they fall
    in, which for a future's or a currency's evening bars is the next day.
    """
    if bar_size(series.bar_size).intraday:
        ts = pd.to_datetime(raw["date"], utc=True)
        epochs = ts.dt.tz_convert(None).to_numpy().astype("datetime64[s]").astype(np.int64)
        session_date = pd.Series(calendar.session_dates(epochs, series.use_rth), index=raw.index)
    else:
        days = pd.to_datetime(raw["date"]).to_numpy().astype("datetime64[D]")
        index, is_session = calendar.day_index(days)
        opens, _ = calendar.bounds(series.use_rth)
        # A date that is no session keeps its own date and midnight: validation quarantines it.
        epoch = np.where(is_session, opens[index], days.astype("datetime64[s]").astype(np.int64))
        ts = pd.Series(pd.to_datetime(epoch, unit="s", utc=True), index=raw.index)
        session_date = pd.Series(days, index=raw.index)
    frame = raw.drop(columns="date")
    frame.insert(0, "session_date", session_date)
    frame.insert(0, "ts", ts)
    return frame


def warehouse_bars(fields: Sequence[str], series: SeriesKey, calendar: TradingCalendar) -> pd.DataFrame:
    """One historicalData message's bar fields as warehouse rows (`ts`, `session_date`, values)."""
    return warehouse_frame(bars_frame(fields), series, calendar)
