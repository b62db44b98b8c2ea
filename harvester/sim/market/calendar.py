"""Trading sessions from a real exchange calendar, in both IB flavours (useRTH 1 and 0).

exchange_calendars gives the regular session (holidays, 13:00 early closes, DST). IB's extended
session for US stocks is 04:00-20:00 local, cut to 04:00-17:00 on early-close days.
"""

from __future__ import annotations

import datetime
import warnings
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from zoneinfo import ZoneInfo

import exchange_calendars
import numpy as np

from harvester.sim.market.securities import Instrument

CALENDAR_START = "1990-01-01"
CALENDAR_END = "2030-12-31"  # fixed, so session ordinals and data never depend on the build date

_EXT_OPEN = datetime.time(4, 0)
_EXT_CLOSE = datetime.time(20, 0)
_EXT_CLOSE_EARLY = datetime.time(17, 0)
_REGULAR_CLOSE = datetime.time(16, 0)
_UTC = datetime.UTC


@dataclass(frozen=True)
class TradingDay:
    """One trading day's session in the requested flavour; bounds are UTC-aware."""

    date: datetime.date
    open_utc: datetime.datetime
    close_utc: datetime.datetime


class SessionCalendar:
    """All sessions of one exchange calendar as epoch-second arrays (index = stable session ordinal)."""

    def __init__(self, calendar_name: str, time_zone: str) -> None:
        with warnings.catch_warnings():  # exchange_calendars 4.x trips a pandas 3 deprecation
            warnings.filterwarnings("ignore", message="Series.values returning")
            cal = exchange_calendars.get_calendar(calendar_name, start=CALENDAR_START, end=CALENDAR_END)
        zone = ZoneInfo(time_zone)
        schedule = cal.schedule
        self.name = calendar_name
        self.zone = zone
        self.time_zone = time_zone
        self.dates: list[datetime.date] = [d.date() for d in schedule.index]
        self.day_numbers = np.array([d.toordinal() for d in self.dates], dtype=np.int64)
        self.rth_open = (schedule["open"].astype("int64").to_numpy() // 10**9).astype(np.int64)
        self.rth_close = (schedule["close"].astype("int64").to_numpy() // 10**9).astype(np.int64)
        early = np.array(
            [
                datetime.datetime.fromtimestamp(c, zone).time() < _REGULAR_CLOSE
                for c in self.rth_close.tolist()
            ]
        )
        self.ext_open = np.array([_epoch(d, _EXT_OPEN, zone) for d in self.dates], dtype=np.int64)
        self.ext_close = np.array(
            [_epoch(d, _EXT_CLOSE_EARLY if e else _EXT_CLOSE, zone) for d, e in zip(self.dates, early)],
            dtype=np.int64,
        )

    @classmethod
    def for_instrument(cls, inst: Instrument) -> SessionCalendar:
        return _calendar(inst.calendar_name, inst.time_zone)

    def bounds(self, use_rth: bool) -> tuple[np.ndarray, np.ndarray]:
        """(open, close) epoch seconds of every session in the flavour."""
        return (self.rth_open, self.rth_close) if use_rth else (self.ext_open, self.ext_close)

    def ordinal_range(self, start_utc: datetime.datetime, end_utc: datetime.datetime, use_rth: bool) -> range:
        """Ordinals of the sessions overlapping [start, end)."""
        opens, closes = self.bounds(use_rth)
        first = int(np.searchsorted(closes, start_utc.timestamp(), side="right"))
        stop = int(np.searchsorted(opens, end_utc.timestamp(), side="left"))
        return range(first, max(first, stop))

    def last_closed_ordinal(self, now_utc: datetime.datetime, use_rth: bool) -> int:
        """The latest session closed by `now` in the flavour (-1: none yet)."""
        _, closes = self.bounds(use_rth)
        return int(np.searchsorted(closes, now_utc.timestamp(), side="right")) - 1

    def first_ordinal_on_or_after(self, day: datetime.date) -> int:
        return int(np.searchsorted(self.day_numbers, day.toordinal(), side="left"))

    def trading_day(self, ordinal: int, use_rth: bool) -> TradingDay:
        opens, closes = self.bounds(use_rth)
        return TradingDay(
            self.dates[ordinal],
            datetime.datetime.fromtimestamp(int(opens[ordinal]), _UTC),
            datetime.datetime.fromtimestamp(int(closes[ordinal]), _UTC),
        )

    def trading_days(
        self, start_utc: datetime.datetime, end_utc: datetime.datetime, use_rth: bool
    ) -> list[TradingDay]:
        """Trading days whose sessions overlap [start, end), oldest first."""
        return [self.trading_day(k, use_rth) for k in self.ordinal_range(start_utc, end_utc, use_rth)]

    def trading_days_ending_by(
        self, end_utc: datetime.datetime, count: int, use_rth: bool
    ) -> list[TradingDay]:
        """The last `count` trading days whose sessions start before end (how IB counts an "N D" duration)."""
        opens, _ = self.bounds(use_rth)
        stop = int(np.searchsorted(opens, end_utc.timestamp(), side="left"))
        return [self.trading_day(k, use_rth) for k in range(max(0, stop - count), stop)]

    def trading_hours(self, now_utc: datetime.datetime, days: int = 7) -> str:
        """IB contract-details tradingHours (extended session), local times, CLOSED on non-session days."""
        return self._hours(now_utc, days, use_rth=False)

    def liquid_hours(self, now_utc: datetime.datetime, days: int = 7) -> str:
        """IB contract-details liquidHours (regular session)."""
        return self._hours(now_utc, days, use_rth=True)

    def _hours(self, now_utc: datetime.datetime, days: int, use_rth: bool) -> str:
        opens, closes = self.bounds(use_rth)
        first_day = now_utc.astimezone(self.zone).date()
        parts = []
        for offset in range(days):
            day = first_day + timedelta(days=offset)
            k = int(np.searchsorted(self.day_numbers, day.toordinal()))
            if k < len(self.dates) and self.dates[k] == day:
                parts.append(f"{_ib_local(int(opens[k]), self.zone)}-{_ib_local(int(closes[k]), self.zone)}")
            else:
                parts.append(f"{day:%Y%m%d}:CLOSED")
        return ";".join(parts)


@cache
def _calendar(calendar_name: str, time_zone: str) -> SessionCalendar:
    return SessionCalendar(calendar_name, time_zone)


def _epoch(day: datetime.date, at: datetime.time, zone: ZoneInfo) -> int:
    return int(datetime.datetime.combine(day, at, tzinfo=zone).timestamp())


def _ib_local(epoch: int, zone: ZoneInfo) -> str:
    return datetime.datetime.fromtimestamp(epoch, zone).strftime("%Y%m%d:%H%M")
