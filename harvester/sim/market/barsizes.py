"""The simulator's own table of IB bar sizes (it must not borrow the harvester's rules).

IB spells sub-minute sizes in the plural even for one (`1 secs`), minutes singular only for one
(`1 min`, `2 mins`), and accepts `1W`/`1M` (documented) as well as `1 week`/`1 month` (client docs).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class BarKind(enum.Enum):
    """How a bar size is built: from seconds, from minutes, or from whole sessions."""

    SECONDS = "seconds"
    MINUTES = "minutes"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True)
class BarSize:
    """One legal IB bar size; `seconds` is the nominal length (a day counts as 86400)."""

    name: str
    seconds: int
    kind: BarKind


class UnknownBarSize(ValueError):
    """A bar size string IB would reject."""


_TABLE: dict[str, tuple[int, BarKind]] = {
    "1 secs": (1, BarKind.SECONDS),
    "5 secs": (5, BarKind.SECONDS),
    "10 secs": (10, BarKind.SECONDS),
    "15 secs": (15, BarKind.SECONDS),
    "30 secs": (30, BarKind.SECONDS),
    "1 min": (60, BarKind.MINUTES),
    "2 mins": (120, BarKind.MINUTES),
    "3 mins": (180, BarKind.MINUTES),
    "5 mins": (300, BarKind.MINUTES),
    "10 mins": (600, BarKind.MINUTES),
    "15 mins": (900, BarKind.MINUTES),
    "20 mins": (1200, BarKind.MINUTES),
    "30 mins": (1800, BarKind.MINUTES),
    "1 hour": (3600, BarKind.MINUTES),
    "2 hours": (7200, BarKind.MINUTES),
    "3 hours": (10800, BarKind.MINUTES),
    "4 hours": (14400, BarKind.MINUTES),
    "8 hours": (28800, BarKind.MINUTES),
    "1 day": (86400, BarKind.DAY),
    "1W": (7 * 86400, BarKind.WEEK),
    "1 week": (7 * 86400, BarKind.WEEK),
    "1M": (30 * 86400, BarKind.MONTH),
    "1 month": (30 * 86400, BarKind.MONTH),
}

BAR_SIZE_NAMES: tuple[str, ...] = tuple(_TABLE)

# Built from whole sessions and labelled yyyyMMdd on the wire.
DAILY_OR_LONGER = frozenset({BarKind.DAY, BarKind.WEEK, BarKind.MONTH})


def parse_bar_size(name: str) -> BarSize:
    """Look up an IB bar size string exactly as IB spells it."""
    try:
        seconds, kind = _TABLE[name]
    except KeyError:
        raise UnknownBarSize(f"unknown bar size {name!r}") from None
    return BarSize(name, seconds, kind)
