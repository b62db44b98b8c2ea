"""Trading sessions of each venue the simulator lists, in both IB flavours (useRTH 1 and 0).

A venue's days, holidays, early closes and DST come from a real exchange calendar (exchange_calendars);
its hours are the calendar's own session, or fixed local hours where IB's contracts keep their own (US
stocks' 04:00-20:00 extended session, a CME future's 17:00-16:00 Chicago day, forex's 17:15-17:00 New York
week). A session is the trading date's, and may open the evening before. On an exchange's declared early
close, fixed hours end as much earlier as the exchange's session does, but not before the exchange closes
(US post-market: 17:00 after a 13:00 close; a CME future: at CME's early close).
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
import pandas as pd

CALENDAR_START = "1990-01-01"
CALENDAR_END = "2030-12-31"  # fixed, so session ordinals and data never depend on the build date
_UTC = datetime.UTC


@dataclass(frozen=True)
class Hours:
    """Fixed local hours of a session: opens `open` on the day `days_before` its trading date, closes
    `close` on the trading date."""

    open: datetime.time
    close: datetime.time
    days_before: int = 0


@dataclass(frozen=True)
class Venue:
    """Where an instrument is listed: its exchange calendar, IB's timeZoneId, and its hours."""

    calendar: str  # exchange_calendars name
    zone: str  # the zone IB writes the venue's hours in (contract details' timeZoneId)
    regular: Hours | None = None  # None: the calendar's own sessions
    extended: Hours | None = None  # None: the regular session


def _at(hours: int, minutes: int = 0) -> datetime.time:
    return datetime.time(hours, minutes)


_US_STOCKS = Venue("XNYS", "US/Eastern", extended=Hours(_at(4), _at(20)))
# The venues of the simulator's securities master, by IB exchange code.
VENUES: dict[str, Venue] = {
    **{code: _US_STOCKS for code in ("NYSE", "NASDAQ", "AMEX", "ARCA", "BATS", "ISLAND")},
    "LSE": Venue("XLON", "Europe/London"),
    "IBIS": Venue("XETR", "MET"),
    "TSEJ": Venue("XTKS", "Japan"),
    "WSE": Venue("XWAR", "Europe/Warsaw"),
    "CBOE": Venue("XNYS", "US/Central"),  # SPX: the NYSE session, written in Chicago time as IB does
    "EUREX": Venue("XETR", "MET"),  # the DAX index is computed during Xetra's session
    "IDEALPRO": Venue("24/5", "US/Eastern", Hours(_at(17, 15), _at(17), 1)),
    "CME": Venue("CMES", "US/Central", Hours(_at(8, 30), _at(15)), Hours(_at(17), _at(16), 1)),
    "NYMEX": Venue("CMES", "US/Eastern", Hours(_at(9), _at(14, 30)), Hours(_at(18), _at(17), 1)),
}


@dataclass(frozen=True)
class TradingDay:
    """One trading day's session in the requested flavour; bounds are UTC-aware."""

    date: datetime.date
    open_utc: datetime.datetime
    close_utc: datetime.datetime


class SessionCalendar:
    """All sessions of one venue as epoch-second arrays (index = stable session ordinal)."""

    def __init__(self, venue: Venue) -> None:
        with warnings.catch_warnings():  # exchange_calendars 4.x trips a pandas 3 deprecation
            warnings.filterwarnings("ignore", message="Series.values returning")
            cal = _exchange_calendar(venue.calendar)
        schedule = cal.schedule
        self.name = venue.calendar
        self.zone = ZoneInfo(venue.zone)
        self.time_zone = venue.zone
        self.dates: list[datetime.date] = [d.date() for d in schedule.index]
        self.day_numbers = np.array([d.toordinal() for d in self.dates], dtype=np.int64)
        exchange_open = (schedule["open"].astype("int64").to_numpy() // 10**9).astype(np.int64)
        exchange_close = (schedule["close"].astype("int64").to_numpy() // 10**9).astype(np.int64)
        early = _early_by(cal, schedule)
        self.rth_open, self.rth_close = (
            (exchange_open, exchange_close) if venue.regular is None
            else self._fixed(venue.regular, early, exchange_close)
        )
        self.ext_open, self.ext_close = (
            (self.rth_open, self.rth_close) if venue.extended is None
            else self._fixed(venue.extended, early, exchange_close)
        )

    @classmethod
    def for_instrument(cls, inst) -> SessionCalendar:
        """The calendar of an instrument's venue (`inst.venue`)."""
        return _calendar(inst.venue)

    def _fixed(self, hours: Hours, early: np.ndarray, exchange_close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        opens = np.array([_epoch(d - timedelta(days=hours.days_before), hours.open, self.zone) for d in self.dates],
                         dtype=np.int64)
        closes = np.array([_epoch(d, hours.close, self.zone) for d in self.dates], dtype=np.int64)
        cut = np.minimum(closes, np.maximum(closes - early, exchange_close))
        return opens, np.where(early > 0, np.maximum(cut, opens), closes)

    def period_ids(self, weekly: bool) -> np.ndarray:
        """Week (Monday-based) or month number of every session: the groups of weekly and monthly bars."""
        if weekly:
            return (self.day_numbers - 1) // 7  # ordinal 1 (0001-01-01) is a Monday
        return np.array([d.year * 12 + d.month for d in self.dates], dtype=np.int64)

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

    def last_ordinal_on_or_before(self, day: datetime.date) -> int:
        return int(np.searchsorted(self.day_numbers, day.toordinal(), side="right")) - 1

    def ordinal_at(self, epoch: int, use_rth: bool) -> int | None:
        """The session holding the instant, if any."""
        opens, closes = self.bounds(use_rth)
        k = int(np.searchsorted(opens, epoch, side="right")) - 1
        return k if k >= 0 and epoch < closes[k] else None

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
        """IB's newer form, `start-end` with a date on both sides; a day neither holding nor opening a
        session is CLOSED (Sunday is not, for a session that opens Sunday evening)."""
        opens, closes = self.bounds(use_rth)
        first_day = now_utc.astimezone(self.zone).date()
        parts = []
        for offset in range(days):
            day = first_day + timedelta(days=offset)
            k = int(np.searchsorted(self.day_numbers, day.toordinal()))
            if k < len(self.dates) and self.dates[k] == day:
                parts.append(f"{_ib_local(int(opens[k]), self.zone)}-{_ib_local(int(closes[k]), self.zone)}")
            elif not (k < len(self.dates) and _local_date(int(opens[k]), self.zone) == day):
                parts.append(f"{day:%Y%m%d}:CLOSED")
        return ";".join(parts)


def _early_by(cal, schedule: pd.DataFrame) -> np.ndarray:
    """Seconds by which each session closes before its regular close (the calendar's declared early closes)."""
    early = np.zeros(len(schedule), dtype=np.int64)
    declared = set(cal.early_closes.date)
    regular = cal.close_times  # ((since, time), ...): the regular close, which changes over the years
    for k, (day, close) in enumerate(zip(schedule.index.date, schedule["close"])):
        if day in declared:
            usual = [t for since, t in regular if since is None or since.date() <= day][-1]
            local = close.tz_convert(cal.tz)
            usual_at = local.replace(hour=usual.hour, minute=usual.minute, second=0)
            early[k] = int((usual_at - local).total_seconds())
    return early.clip(min=0)


def _exchange_calendar(name: str):
    """The calendar over the simulator's years, or over the part of them it records holidays for."""
    try:
        return exchange_calendars.get_calendar(name, start=CALENDAR_START, end=CALENDAR_END)
    except ValueError:
        kind = type(exchange_calendars.get_calendar(name))
        first = max(filter(None, (pd.Timestamp(CALENDAR_START), kind.bound_min())))
        last = min(filter(None, (pd.Timestamp(CALENDAR_END), kind.bound_max())))
        return exchange_calendars.get_calendar(name, start=first, end=last)


@cache
def _calendar(venue: Venue) -> SessionCalendar:
    return SessionCalendar(venue)


def _epoch(day: datetime.date, at: datetime.time, zone: ZoneInfo) -> int:
    return int(datetime.datetime.combine(day, at, tzinfo=zone).timestamp())


def _ib_local(epoch: int, zone: ZoneInfo) -> str:
    return datetime.datetime.fromtimestamp(epoch, zone).strftime("%Y%m%d:%H%M")


def _local_date(epoch: int, zone: ZoneInfo) -> datetime.date:
    return datetime.datetime.fromtimestamp(epoch, zone).date()
