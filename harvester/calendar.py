"""The harvester's own trading calendar: which spans hold a session, in IB's two flavours.

exchange_calendars gives regular sessions (holidays, 13:00 half days, DST). IB's extended session for
US stocks (useRTH=0) runs 04:00-20:00 local, 04:00-17:00 on half days. Sessions are held as sorted
epoch-second arrays so the planner can bisect them for hundreds of series per second.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache

import exchange_calendars
import numpy as np
import pandas as pd

CALENDAR_START = "1980-01-01"
CALENDAR_END = "2035-12-31"  # fixed, so plans never depend on the day the calendar was built

_US_EXCHANGES = frozenset(
    {
        "NYSE",
        "NASDAQ",
        "ISLAND",
        "ARCA",
        "NYSEARCA",
        "AMEX",
        "NYSEAMERICAN",
        "BATS",
        "BYX",
        "EDGX",
        "EDGEA",
        "IEX",
        "CBOE",
        "PSX",
        "BEX",
        "CHX",
        "NSX",
        "MEMX",
        "LTSE",
        "PEARL",
        "SMART",
        "",
    }
)
_CALENDAR_BY_EXCHANGE = {name: ("XNYS", "US/Eastern") for name in _US_EXCHANGES}
_DEFAULT = ("XNYS", "US/Eastern")
_EXT_OPEN_H = 4
_EXT_CLOSE_H = 20
_EXT_CLOSE_EARLY_H = 17


@dataclass(frozen=True)
class Session:
    """One trading day in one flavour; `date` is the exchange-local trading date, bounds are UTC."""

    date: date
    open_utc: datetime
    close_utc: datetime


def to_epoch(when: datetime) -> int:
    """Whole epoch seconds of an aware datetime; naive ones are refused (they are ambiguous)."""
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when.isoformat()}: pass a timezone-aware UTC datetime")
    return int(when.timestamp())


def from_epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(int(seconds), UTC)


_ORDINAL_EPOCH = date(1970, 1, 1).toordinal()  # proleptic ordinal of the Unix epoch's day


class TradingCalendar:
    """All sessions of one exchange calendar, both flavours, as sorted int64 epoch arrays."""

    def __init__(self, calendar_name: str, time_zone: str) -> None:
        with warnings.catch_warnings():  # exchange_calendars trips pandas 3 deprecations inside itself
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            schedule = exchange_calendars.get_calendar(
                calendar_name, start=CALENDAR_START, end=CALENDAR_END
            ).schedule
        self.name = calendar_name
        self.time_zone = time_zone
        self.day_numbers = np.array([d.toordinal() for d in schedule.index.date], dtype=np.int64)
        self.rth_open = _epochs(schedule["open"])
        self.rth_close = _epochs(schedule["close"])
        local_close = schedule["close"].dt.tz_convert(time_zone)
        early = (local_close.dt.hour * 60 + local_close.dt.minute).to_numpy() < 16 * 60
        midnight = pd.DatetimeIndex(schedule.index).tz_localize(None)
        self.ext_open = _local_epochs(midnight + pd.Timedelta(hours=_EXT_OPEN_H), time_zone)
        close_hours = np.where(early, _EXT_CLOSE_EARLY_H, _EXT_CLOSE_H)
        self.ext_close = _local_epochs(midnight + pd.to_timedelta(close_hours, unit="h"), time_zone)

    @classmethod
    def for_exchange(cls, primary_exchange: str) -> TradingCalendar:
        """The calendar for an IB primary exchange; unknown exchanges fall back to NYSE (US/Eastern)."""
        name, zone = _CALENDAR_BY_EXCHANGE.get(primary_exchange.upper(), _DEFAULT)
        return _calendar(name, zone)

    def day_index(self, days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For exchange dates (datetime64[D]): the index of that date's session, or of the next one when
        it has none (clipped to the calendar), and whether the date is a session at all."""
        numbers = days.astype("datetime64[D]").astype(np.int64) + _ORDINAL_EPOCH
        index = np.searchsorted(self.day_numbers, numbers).clip(max=len(self.day_numbers) - 1)
        return index, self.day_numbers[index] == numbers

    def bounds(self, use_rth: bool) -> tuple[np.ndarray, np.ndarray]:
        """(opens, closes) epoch seconds of every session in the flavour, oldest first."""
        return (self.rth_open, self.rth_close) if use_rth else (self.ext_open, self.ext_close)

    def index_range(self, start: int, end: int, use_rth: bool) -> tuple[int, int]:
        """[first, stop) indices of the sessions overlapping the epoch span [start, end)."""
        opens, closes = self.bounds(use_rth)
        first = int(np.searchsorted(closes, start, side="right"))
        stop = int(np.searchsorted(opens, end, side="left"))
        return first, max(first, stop)

    def session_at(self, index: int, use_rth: bool) -> Session:
        opens, closes = self.bounds(use_rth)
        return Session(
            date.fromordinal(int(self.day_numbers[index])),
            from_epoch(opens[index]),
            from_epoch(closes[index]),
        )

    def sessions(self, start_utc: datetime, end_utc: datetime, use_rth: bool) -> list[Session]:
        """Sessions overlapping [start, end), oldest first."""
        first, stop = self.index_range(to_epoch(start_utc), to_epoch(end_utc), use_rth)
        return [self.session_at(k, use_rth) for k in range(first, stop)]

    def last_closed_index(self, now: int, use_rth: bool) -> int:
        """Index of the latest session closed by `now` (epoch), -1 if none."""
        _, closes = self.bounds(use_rth)
        return int(np.searchsorted(closes, now, side="right")) - 1

    def last_closed_session(self, now_utc: datetime, use_rth: bool) -> Session | None:
        """The latest session whose close is at or before now (its bars are all complete)."""
        index = self.last_closed_index(to_epoch(now_utc), use_rth)
        return self.session_at(index, use_rth) if index >= 0 else None


@cache
def _calendar(name: str, time_zone: str) -> TradingCalendar:
    return TradingCalendar(name, time_zone)


def _epochs(column: pd.Series) -> np.ndarray:
    return (column.astype("int64").to_numpy() // 10**9).astype(np.int64)


def _local_epochs(naive_local: pd.DatetimeIndex, time_zone: str) -> np.ndarray:
    aware = naive_local.tz_localize(time_zone).tz_convert("UTC")
    return (aware.as_unit("s").asi8).astype(np.int64)
