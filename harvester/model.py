"""The vocabulary every step of the data path shares: contracts, series keys, request windows, outcomes.

A series is identified by (con_id, bar_size, what_to_show, use_rth); symbols are only labels.
All instants are timezone-aware UTC `datetime`s and all windows are half-open [start, end).
Nothing here imports anything else of ours: every room may use it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TypeVar


@dataclass(frozen=True)
class ContractSpec:
    """One instrument of the universe, spelled the way IB wants it (share classes with a space).

    A forex pair is its base currency as `symbol` and its quote as `currency` (EUR.USD: EUR, USD); a
    future names its expiry (`last_trade_date`, YYYYMM or YYYYMMDD) and, where IB lists two sizes of
    one symbol, its `multiplier`; a continuous future (CONTFUT) names neither.
    """

    symbol: str
    sec_type: str = "STK"
    exchange: str = "SMART"
    primary_exchange: str = ""
    currency: str = "USD"
    con_id: int = 0
    line: int = 0  # where the universe file named it, for error messages
    last_trade_date: str = ""
    multiplier: str = ""

    @property
    def label(self) -> str:
        """How the instrument is named in messages: AAPL, EUR.USD, ES 202406."""
        if self.sec_type == "CASH":
            return f"{self.symbol}.{self.currency}"
        if self.last_trade_date:
            return f"{self.symbol} {self.last_trade_date}"
        return self.symbol

    def identity(self) -> tuple[str, str, str, str, int, str, str]:
        """What must agree between two rows naming the same instrument."""
        return (self.sec_type, self.exchange, self.primary_exchange, self.currency, self.con_id,
                self.last_trade_date, self.multiplier)


@dataclass(frozen=True, order=True)
class HeadKey:
    """IB's head timestamp (earliest bar) belongs to a contract, whatToShow and RTH: every bar size shares it."""

    con_id: int
    what_to_show: str
    use_rth: bool


@dataclass(frozen=True, order=True)
class SeriesKey:
    """Identity of one stored bar series."""

    con_id: int
    bar_size: str  # IB's spelling, e.g. "1 min", "1 day"
    what_to_show: str  # "TRADES", "MIDPOINT", ...
    use_rth: bool

    @property
    def head_key(self) -> HeadKey:
        return HeadKey(self.con_id, self.what_to_show, self.use_rth)


class WorkKind(enum.StrEnum):
    """What one request asks IB for: a window of bars, or a series' head timestamp."""

    BARS = "bars"
    HEAD = "head"


@dataclass(frozen=True)
class BarRequest:
    """One planned `reqHistoricalData` call: the window it covers and how it is spelled for IB."""

    series: SeriesKey
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive; sent to IB as endDateTime
    duration: str  # IB durationStr, e.g. "1 D", "3600 S", "30 Y"
    expected_bars: int  # upper estimate, drives the timeout and the latency budget
    symbol: str = field(default="", compare=False)  # label for progress and errors
    check_until: datetime | None = None  # [start, check_until) is stored already: compare it (history changes)
    # A window reaching back into the middle of a session before the span it serves: bars before this (that
    # session's tail) are not kept, so what is stored outside a span is whole sessions or nothing.
    keep_from: datetime | None = None

    def kept(self) -> BarRequest:
        """The window as its answer is kept (and covered): from `keep_from`."""
        return self if self.keep_from is None else replace(self, start=self.keep_from, keep_from=None)


@dataclass(frozen=True)
class HeldBar:
    """A bar refused at the door whose time coverage does not claim: asked for again at most once a night
    until a clean answer replaces it, never again once given up (still a gap)."""

    start: datetime  # UTC; the bar's time, [start, end) left out of coverage
    end: datetime
    last_seen: datetime | None  # the gateway's clock when it last came back bad; None: never re-asked yet
    given_up: bool = False


class Outcome(enum.Enum):
    """What an answered (or unanswered) request means for coverage. Only BARS and EMPTY cover."""

    BARS = "bars"
    EMPTY = "empty"  # verified: IB answered "HMDS query returned no data"
    PACING = "pacing_violation"
    TIMEOUT = "timeout"
    NO_PERMISSION = "no_permission"
    DISCONNECTED = "disconnected"
    CANCELLED = "cancelled"
    INVALID = "invalid_request"
    UNKNOWN_CONTRACT = "unknown_contract"
    ERROR = "error"

    @property
    def covers(self) -> bool:
        """True when the window is known: bars arrived, or IB said there are none."""
        return self in (Outcome.BARS, Outcome.EMPTY)

    @property
    def permanent(self) -> bool:
        """True when retrying cannot help (report by name, never retry forever)."""
        return self in (Outcome.NO_PERMISSION, Outcome.INVALID, Outcome.UNKNOWN_CONTRACT)

    @property
    def unanswered(self) -> bool:
        """True when IB never answered (a timeout, or its 162 "query cancelled"): the window was too big."""
        return self in (Outcome.TIMEOUT, Outcome.CANCELLED)


# -- half-open intervals ---------------------------------------------------------------------------------

Interval = tuple[datetime, datetime]
Point = TypeVar("Point", datetime, int)  # aware datetimes in coverage; epoch seconds in the planner



def merge_intervals(intervals: Iterable[tuple[Point, Point]]) -> list[tuple[Point, Point]]:
    """Sorted union; overlapping and touching intervals fuse ([a,b) + [b,c) = [a,c)); empty ones vanish."""
    merged: list[tuple[Point, Point]] = []
    for start, end in sorted(i for i in intervals if i[0] < i[1]):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def subtract_intervals(
    wanted: Iterable[tuple[Point, Point]], covered: Iterable[tuple[Point, Point]]
) -> list[tuple[Point, Point]]:
    """The parts of `wanted` not in `covered` (both arbitrary; result merged and sorted)."""
    holes = merge_intervals(covered)
    result: list[tuple[Point, Point]] = []
    for start, end in merge_intervals(wanted):
        cursor = start
        for h_start, h_end in holes:
            if h_end <= cursor or h_start >= end:
                continue
            if h_start > cursor:
                result.append((cursor, h_start))
            cursor = max(cursor, h_end)
            if cursor >= end:
                break
        if cursor < end:
            result.append((cursor, end))
    return result
