"""The vocabulary every step of the data path shares: series keys, request windows, outcomes.

A series is identified by (con_id, bar_size, what_to_show, use_rth); symbols are only labels.
All instants are timezone-aware UTC `datetime`s and all windows are half-open [start, end).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, order=True)
class SeriesKey:
    """Identity of one stored bar series."""

    con_id: int
    bar_size: str  # IB's spelling, e.g. "1 min", "1 day"
    what_to_show: str  # "TRADES", "MIDPOINT", ...
    use_rth: bool


@dataclass(frozen=True)
class BarRequest:
    """One planned `reqHistoricalData` call: the window it covers and how it is spelled for IB."""

    series: SeriesKey
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive; sent to IB as endDateTime
    duration: str  # IB durationStr, e.g. "1 D", "3600 S", "30 Y"
    expected_bars: int  # upper estimate, drives the timeout and the latency budget
    symbol: str = field(default="", compare=False)  # label for progress and errors


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
