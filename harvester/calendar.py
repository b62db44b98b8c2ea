"""Each contract's trading sessions in IB's two flavours (useRTH 1 and 0), from its exchange and IB's details.

Which days hold a session comes from the exchange's calendar (exchange_calendars: holidays, early closes,
DST); IB's exchange codes map onto those calendars in `EXCHANGE_CALENDARS`, written here once. What a
calendar cannot know comes from the contract details IB sends with every contract (docs/markets.md):
  * `liquidHours` (regular) and `tradingHours` (extended): the contract's own hours, e.g. a future's
    17:00-16:00 Chicago day against its exchange's, or forex's 17:15-17:00 New York week;
  * the days those strings list: a closure or early close announced lately overrides the calendar;
  * `timeZoneId`: the zone those hours are written in.
A contract whose exchange has no known calendar gets its sessions from its details alone (the weekdays
and hours they show, no holidays) and is flagged (`from_details`), never given New York's.

A session is labelled with its trading date: the day it closes, as IB dates its daily bars; so CME's
session opening Sunday 17:00 Chicago is Monday's. Sessions are held as sorted epoch-second arrays so the
planner can bisect them for hundreds of series per second; calendars are shared between contracts
with the same hours (the cache), so 500 US stocks cost one.
"""

from __future__ import annotations

import re
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import exchange_calendars
import numpy as np
import pandas as pd

CALENDAR_START = "1980-01-01"
CALENDAR_END = "2035-12-31"  # fixed, so plans never depend on the day the calendar was built
DETAILS_CALENDAR = "contract details"  # the `calendar` of a contract whose exchange has no known calendar

_US = ("NYSE", "NASDAQ", "ISLAND", "ARCA", "NYSEARCA", "AMEX", "NYSEAMERICAN", "BATS", "BYX", "EDGX", "EDGEA",
       "IEX", "CBOE", "PSX", "BEX", "CHX", "NSX", "MEMX", "LTSE", "PEARL")
_CME_GROUP = ("CME", "GLOBEX", "NYMEX", "COMEX", "CBOT", "ECBOT", "NYBOT")
# IB exchange code (the primary listing exchange, else the contract's exchange) → (exchange_calendars name,
# the zone IB writes that exchange's hours in). The one place this mapping is written.
EXCHANGE_CALENDARS: dict[str, tuple[str, str]] = {
    **{code: ("XNYS", "US/Eastern") for code in _US},
    "TSE": ("XTSE", "America/Toronto"),
    "LSE": ("XLON", "Europe/London"),
    "IBIS": ("XETR", "MET"),
    "FWB": ("XFRA", "MET"),
    "SBF": ("XPAR", "MET"),
    "AEB": ("XAMS", "MET"),
    "ENEXT.BE": ("XBRU", "MET"),
    "BVME": ("XMIL", "MET"),
    "BM": ("XMAD", "MET"),
    "EBS": ("XSWX", "MET"),
    "SFB": ("XSTO", "MET"),
    "OSE": ("XOSL", "MET"),
    "TSEJ": ("XTKS", "Japan"),
    "SEHK": ("XHKG", "Hongkong"),
    "ASX": ("XASX", "Australia/NSW"),
    "SGX": ("XSES", "Singapore"),
    "KSE": ("XKRX", "ROK"),
    "EUREX": ("XEUR", "MET"),
    **{code: ("CMES", "US/Central") for code in _CME_GROUP},
    "IDEALPRO": ("24/5", "US/Eastern"),
}
# Where what trades decides the calendar: an index follows the market it is computed from, not the
# derivatives exchange that lists it (DAX on EUREX is computed during Xetra's session).
_BY_SEC_TYPE: dict[tuple[str, str], tuple[str, str]] = {("EUREX", "IND"): ("XETR", "MET")}
# Extended hours where IB's details are not at hand: IB's 04:00-20:00 for US stocks; elsewhere the regular
# session. Seconds from the trading date's local midnight.
_DEFAULT_EXTENDED = {"XNYS": (4 * 3600, 20 * 3600)}
_DEFAULT_ZONE: dict[str, str] = {}
for _name, _zone in EXCHANGE_CALENDARS.values():
    _DEFAULT_ZONE.setdefault(_name, _zone)
_WEEKDAYS = (0, 1, 2, 3, 4)
_EARLY_CLOSE_WINDOW = 21  # sessions around a day whose median close is "the usual close"


class ContractHours(Protocol):
    """What a contract's calendar is decided by: a qualified contract or a `contracts` row."""

    sec_type: str
    exchange: str
    primary_exchange: str
    time_zone: str
    trading_hours: str
    liquid_hours: str


@dataclass(frozen=True)
class ContractListing:
    """ContractHours as plain values: a stored contracts row, or an exchange with no details at hand."""

    sec_type: str
    exchange: str
    primary_exchange: str = ""
    time_zone: str = ""
    trading_hours: str = ""
    liquid_hours: str = ""


@dataclass(frozen=True)
class Session:
    """One trading day in one flavour; `date` is the exchange's trading date, bounds are UTC."""

    date: date
    open_utc: datetime
    close_utc: datetime


Span = tuple[int, int]  # (open, close) in seconds from the trading date's local midnight; open may be < 0


@dataclass(frozen=True)
class _Spec:
    """Everything one calendar is built from (hashable: equal specs share one calendar)."""

    name: str | None  # exchange_calendars name; None: from the details alone
    zone: str
    regular: Span | None  # None: the exchange calendar's own opens and closes
    extended: Span | None  # None: the regular session
    weekdays: tuple[int, ...] = _WEEKDAYS  # only used without a calendar
    overrides: tuple[tuple[int, Span | None, Span | None], ...] = ()  # (day number, regular, extended)


def to_epoch(when: datetime) -> int:
    """Whole epoch seconds of an aware datetime; naive ones are refused (they are ambiguous)."""
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when.isoformat()}: pass a timezone-aware UTC datetime")
    return int(when.timestamp())


def from_epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(int(seconds), UTC)


_ORDINAL_EPOCH = date(1970, 1, 1).toordinal()  # proleptic ordinal of the Unix epoch's day


def calendar_name(contract: ContractHours) -> str:
    """The exchange_calendars name a contract's sessions come from, or DETAILS_CALENDAR when none is known."""
    known = _known_calendar(contract)
    return known[0] if known else DETAILS_CALENDAR


def calendar_for(contract: ContractHours) -> TradingCalendar:
    """The contract's sessions: its exchange's calendar with the hours and late changes of its details."""
    return _calendar_for(contract.sec_type or "", contract.exchange or "", contract.primary_exchange or "",
                         contract.time_zone or "", contract.trading_hours or "", contract.liquid_hours or "")


@lru_cache(maxsize=4096)
def _calendar_for(sec_type: str, exchange: str, primary_exchange: str, time_zone: str, trading_hours: str,
                  liquid_hours: str) -> TradingCalendar:
    known = _known_calendar(ContractListing(sec_type, exchange, primary_exchange))
    zone = _zone(time_zone) or (known[1] if known else "UTC")
    regular_days = parse_hours(liquid_hours)
    extended_days = parse_hours(trading_hours) or regular_days
    regular_days = regular_days or extended_days
    if known is None:
        regular = _usual(regular_days) or (0, 86_400)
        extended = _usual(extended_days)
        spec = _Spec(None, zone, regular, None if extended == regular else extended, _weekdays(extended_days))
    else:
        extended = _usual(extended_days)
        spec = _Spec(known[0], zone, _own_hours(known[0], zone, regular_days),
                     None if extended is not None and extended == _usual(regular_days)  # one session
                     else extended or _DEFAULT_EXTENDED.get(known[0]))
    base = _calendar(spec)
    overrides = base.differences(regular_days, extended_days)
    return _calendar(_Spec(**{**spec.__dict__, "overrides": overrides})) if overrides else base


def parse_hours(text: str) -> dict[date, Span | None]:
    """IB's `tradingHours`/`liquidHours` → {trading date: (open, close) from its local midnight, or None
    when CLOSED}. Both of IB's forms: `20240614:0930-20240614:1600` and the older `20240614:0930-1600`
    (ranges after a comma belong to the same day; an open later than the close is on the day before).
    Ranges of one day (a lunch break) merge; a range is dated by the day it ends, so the CME session
    opening Sunday evening is Monday's."""
    days: dict[date, Span | None] = {}
    label = None
    for piece in filter(None, (p.strip() for p in re.split(r"[;,]", text or ""))):
        try:
            if re.match(r"\d{8}:", piece):
                label, piece = datetime.strptime(piece[:8], "%Y%m%d").date(), piece[9:]
            if label is None:
                continue
            if piece.upper() == "CLOSED":
                days.setdefault(label, None)
                continue
            start, _, end = piece.partition("-")
            opened = _local(label, start)
            end_day = datetime.strptime(end[:8], "%Y%m%d").date() if ":" in end else label
            closed = _local(end_day, end[9:] if ":" in end else end)
        except ValueError:
            continue  # a form IB may add later: read what is known, skip the rest
        if closed <= opened:
            opened -= timedelta(days=1)
        trading_day = (closed - timedelta(seconds=1)).date()
        midnight = datetime.combine(trading_day, datetime.min.time())
        span = (int((opened - midnight).total_seconds()), int((closed - midnight).total_seconds()))
        previous = days.get(trading_day)
        days[trading_day] = span if previous is None else (min(previous[0], span[0]),
                                                           max(previous[1], span[1]))
    return days


class TradingCalendar:
    """All sessions of one contract's calendar, both flavours, as sorted int64 epoch arrays. `name` is the
    exchange calendar's; `key` tells apart calendars of one exchange with other hours (CME's ES and CL)."""

    def __init__(self, name: str, time_zone: str, day_numbers: np.ndarray,
                 regular: tuple[np.ndarray, np.ndarray], extended: tuple[np.ndarray, np.ndarray],
                 from_details: bool = False, key: str = "") -> None:
        self.name = name
        self.key = key or name
        self.time_zone = time_zone
        self.from_details = from_details  # no exchange calendar: weekdays and hours from IB's details only
        self.day_numbers = day_numbers
        self.rth_open, self.rth_close = regular
        self.ext_open, self.ext_close = extended

    @classmethod
    def for_exchange(cls, primary_exchange: str, sec_type: str = "STK") -> TradingCalendar:
        """The calendar of an IB exchange with no contract details at hand (tests, benchmarks)."""
        return calendar_for(ContractListing(sec_type, primary_exchange, primary_exchange))

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

    def session_dates(self, epochs: np.ndarray, use_rth: bool) -> np.ndarray:
        """Trading date (datetime64[D]) of the session holding each instant; outside sessions, the local date."""
        opens, closes = self.bounds(use_rth)
        index = (np.searchsorted(opens, epochs, side="right") - 1).clip(min=0)
        inside = (epochs >= opens[index]) & (epochs < closes[index])
        dated = (self.day_numbers[index] - _ORDINAL_EPOCH).astype("datetime64[D]")
        local = pd.to_datetime(epochs, unit="s", utc=True).tz_convert(self.time_zone).tz_localize(None)
        return np.where(inside, dated, local.to_numpy().astype("datetime64[D]"))

    def day_bound(self, day: date, side: str, use_rth: bool) -> int:
        """Where an exchange date given by a user bounds a span (epoch): as a `start`, the open of the first
        session dated `day` or later; as an `end` (inclusive), the close of the last session dated `day` or
        earlier, so `--end` in winter with extended hours reaches the 01:00 UTC close of US stocks' evening.
        A day outside the calendar's years falls back to its UTC midnight (start) or the next one (end)."""
        number = day.toordinal()
        days = self.day_numbers
        if side not in ("start", "end"):
            raise ValueError(f"side must be 'start' or 'end', got {side!r}")
        opens, closes = self.bounds(use_rth)
        if side == "start":
            k = int(np.searchsorted(days, number, side="left"))
            inside = number >= days[0] and k < len(days)
            return int(opens[k]) if inside else (number - _ORDINAL_EPOCH) * 86_400
        k = int(np.searchsorted(days, number, side="right")) - 1
        inside = number <= days[-1] and k >= 0
        return int(closes[k]) if inside else (number + 1 - _ORDINAL_EPOCH) * 86_400

    def last_closed_index(self, now: int, use_rth: bool) -> int:
        """Index of the latest session closed by `now` (epoch), -1 if none."""
        _, closes = self.bounds(use_rth)
        return int(np.searchsorted(closes, now, side="right")) - 1

    def last_closed_session(self, now_utc: datetime, use_rth: bool) -> Session | None:
        """The latest session whose close is at or before now (its bars are all complete)."""
        index = self.last_closed_index(to_epoch(now_utc), use_rth)
        return self.session_at(index, use_rth) if index >= 0 else None

    def close_on_or_before(self, day: date, use_rth: bool) -> datetime | None:
        """Close of the last session dated `day` or earlier (a future's history ends there)."""
        k = int(np.searchsorted(self.day_numbers, day.toordinal(), side="right")) - 1
        return None if k < 0 else from_epoch(self.bounds(use_rth)[1][k])

    def differences(self, regular: dict[date, Span | None], extended: dict[date, Span | None]
                    ) -> tuple[tuple[int, Span | None, Span | None], ...]:
        """The days of IB's details whose sessions differ from this calendar's (closures, early closes)."""
        zone = ZoneInfo(self.time_zone)
        out = []
        for day in sorted(d for d in extended if d in regular or extended[d] is None):
            want_ext = extended[day]
            want_rth = None if want_ext is None else regular[day] or want_ext
            k = int(np.searchsorted(self.day_numbers, day.toordinal()))
            present = k < len(self.day_numbers) and self.day_numbers[k] == day.toordinal()
            midnight = int(datetime.combine(day, datetime.min.time(), zone).timestamp())
            have_rth = have_ext = None
            if present:
                have_rth = (int(self.rth_open[k]) - midnight, int(self.rth_close[k]) - midnight)
                have_ext = (int(self.ext_open[k]) - midnight, int(self.ext_close[k]) - midnight)
            if (want_rth, want_ext) != (have_rth, have_ext):
                out.append((day.toordinal(), want_rth, want_ext))
        return tuple(out)


def _known_calendar(contract: ContractHours) -> tuple[str, str] | None:
    code = (contract.primary_exchange or contract.exchange or "").upper()
    return _BY_SEC_TYPE.get((code, (contract.sec_type or "").upper())) or EXCHANGE_CALENDARS.get(code)


def _zone(name: str) -> str | None:
    try:
        return name if name and ZoneInfo(name) else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _local(day: date, hhmm: str) -> datetime:
    if len(hhmm) != 4 or not hhmm.isdigit():
        raise ValueError(hhmm)
    return datetime.combine(day, datetime.min.time()) + timedelta(hours=int(hhmm[:2]), minutes=int(hhmm[2:]))


def _weekdays(days: dict[date, Span | None]) -> tuple[int, ...]:
    """Weekdays with sessions when no calendar is known: Monday to Friday, plus any day IB shows open,
    less any IB shows closed in two weeks and never open (one closed day may be a holiday)."""
    open_days = Counter(d.weekday() for d, s in days.items() if s is not None)
    closed = Counter(d.weekday() for d, s in days.items() if s is None)
    return tuple(w for w in range(7) if open_days[w] or (w in _WEEKDAYS and closed[w] < 2))


def _usual(days: dict[date, Span | None]) -> Span | None:
    """The most common hours among the days IB lists (an early close there is the exception)."""
    spans = Counter(s for s in days.values() if s is not None)
    return spans.most_common(1)[0][0] if spans else None


def _own_hours(name: str, zone: str, regular_days: dict[date, Span | None]) -> Span | None:
    """The contract's regular hours when they differ from its exchange calendar's (a future's liquid
    hours); None when they are the exchange's own, whose opens and closes are then used as they are."""
    usual = _usual(regular_days)
    if usual is None:
        return None
    days, opens, closes, _ = _schedule(name)
    listed = [d.toordinal() for d, s in regular_days.items() if s == usual]
    index = np.searchsorted(days, listed).clip(max=len(days) - 1)
    found = index[days[index] == listed]
    if not len(found):
        return usual
    midnights = _local_midnights(days[found], zone)
    calendar_spans = set(zip((opens[found] - midnights).tolist(), (closes[found] - midnights).tolist()))
    return None if calendar_spans == {usual} else usual


@cache
def _schedule(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(day numbers, opens, closes, early-close cuts) of one exchange calendar, epoch seconds."""
    with warnings.catch_warnings():  # exchange_calendars trips pandas 3 deprecations inside itself
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            calendar = exchange_calendars.get_calendar(name, start=CALENDAR_START, end=CALENDAR_END)
        except ValueError:  # some calendars record holidays for a span only: take what they have
            recorded = type(exchange_calendars.get_calendar(name))
            start = max(pd.Timestamp(CALENDAR_START), recorded.bound_min() or pd.Timestamp(CALENDAR_START))
            end = min(pd.Timestamp(CALENDAR_END), recorded.bound_max() or pd.Timestamp(CALENDAR_END))
            calendar = exchange_calendars.get_calendar(name, start=start, end=end)
    schedule = calendar.schedule
    days = np.array([d.toordinal() for d in schedule.index.date], dtype=np.int64)
    closes = _epochs(schedule["close"])
    return days, _epochs(schedule["open"]), closes, _early_cut(days, closes, str(calendar.tz))


@cache
def _calendar(spec: _Spec) -> TradingCalendar:
    if spec.name is None:
        first, last = (date.fromisoformat(d).toordinal() for d in (CALENDAR_START, CALENDAR_END))
        days = np.arange(first, last + 1, dtype=np.int64)
        days = days[np.isin((days - 1) % 7, spec.weekdays)]  # ordinal 1 (0001-01-01) is a Monday
        regular = _spanned(days, spec.zone, spec.regular)
        extended = _spanned(days, spec.zone, spec.extended) if spec.extended else regular
    else:
        days, cal_open, cal_close, cut = _schedule(spec.name)
        regular = ((cal_open, cal_close) if spec.regular is None
                   else _cut(_spanned(days, spec.zone, spec.regular), cut, cal_close))
        extended = (regular if spec.extended is None
                    else _cut(_spanned(days, spec.zone, spec.extended), cut, cal_close))
    days, regular, extended = _overridden(days, regular, extended, spec)
    return TradingCalendar(spec.name or DETAILS_CALENDAR, spec.zone, days, regular, extended,
                           from_details=spec.name is None, key=_key(spec))


def _key(spec: _Spec) -> str:
    """A stable, readable name for what a calendar was built from: the exchange calendar's name, then what
    differs from that exchange's defaults (`CMES 08:30-15:00 ext 17:00-16:00`, `XNYS US/Central`)."""
    parts = [spec.name or DETAILS_CALENDAR]
    if spec.regular is not None:
        parts.append(_hours_text(spec.regular))
    if spec.extended is not None and spec.extended != _DEFAULT_EXTENDED.get(spec.name or ""):
        parts.append("ext " + _hours_text(spec.extended))
    if spec.zone != _DEFAULT_ZONE.get(spec.name or ""):
        parts.append(spec.zone)
    if spec.name is None and spec.weekdays != _WEEKDAYS:
        parts.append("weekdays " + "".join(str(w) for w in spec.weekdays))
    if spec.overrides:
        parts.append(f"{len(spec.overrides)} days from details #{zlib.crc32(repr(spec.overrides).encode()):08x}")
    return " ".join(parts)


def _hours_text(span: Span) -> str:
    return "-".join(f"{s % 86_400 // 3600:02d}:{s % 3600 // 60:02d}" for s in span)


def _spanned(days: np.ndarray, zone: str, span: Span) -> tuple[np.ndarray, np.ndarray]:
    midnights = _local_midnights(days, zone)
    return midnights + span[0], midnights + span[1]


def _local_midnights(days: np.ndarray, zone: str) -> np.ndarray:
    """Epoch of each trading date's local midnight; hours are added to it as elapsed seconds, which is
    wall-clock time except across a DST change, which no session boundary sits next to."""
    naive = pd.to_datetime(days - _ORDINAL_EPOCH, unit="D")
    aware = naive.tz_localize(zone, nonexistent="shift_forward", ambiguous=np.zeros(len(days), dtype=bool))
    return aware.tz_convert("UTC").as_unit("s").asi8.astype(np.int64)


def _early_cut(days: np.ndarray, closes: np.ndarray, zone: str) -> np.ndarray:
    """Seconds by which each session closes earlier than the exchange's usual close around it (0 mostly),
    in the exchange's own zone (a close does not move there when DST changes)."""
    offsets = pd.Series(closes - _local_midnights(days, zone))
    usual = offsets.rolling(_EARLY_CLOSE_WINDOW, center=True, min_periods=1).median()
    return (usual - offsets).clip(lower=0).to_numpy().astype(np.int64)


def _cut(spans: tuple[np.ndarray, np.ndarray], cut: np.ndarray, exchange_close: np.ndarray
         ) -> tuple[np.ndarray, np.ndarray]:
    """On an exchange's early-close day a contract's session ends as much earlier as the exchange's does,
    but not before the exchange's own close, and never later than usual: US stocks' post-market runs to
    17:00 after a 13:00 close, a CME future stops at CME's early close."""
    opens, closes = spans
    cut_close = np.minimum(closes, np.maximum(closes - cut, exchange_close))
    return opens, np.where(cut > 0, np.maximum(cut_close, opens), closes)


def _overridden(days: np.ndarray, regular, extended, spec: _Spec):
    """The calendar with the days IB's details list differently (closed, or other hours) put right."""
    if not spec.overrides:
        return days, regular, extended
    columns = {int(d): k for k, d in enumerate(days.tolist())}
    rows = [[int(d), *(int(a[k]) for a in (*regular, *extended))] for d, k in columns.items()]
    table = {row[0]: row for row in rows}
    for number, rth, ext in spec.overrides:
        if ext is None:
            table.pop(number, None)
            continue
        midnight = int(_local_midnights(np.array([number]), spec.zone)[0])
        rth = rth or ext
        table[number] = [number, midnight + rth[0], midnight + rth[1], midnight + ext[0], midnight + ext[1]]
    merged = np.array(sorted(table.values()), dtype=np.int64)
    return merged[:, 0], (merged[:, 1], merged[:, 2]), (merged[:, 3], merged[:, 4])


def _epochs(column: pd.Series) -> np.ndarray:
    return (column.astype("int64").to_numpy() // 10**9).astype(np.int64)
