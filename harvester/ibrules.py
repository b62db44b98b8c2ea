"""IB's historical-data rules as data: bar sizes, their storage partitions, durations, pacing limits.

Everything the planner, pacer, scheduler and warehouse need to know about IB's limits lives here,
so a changed rule is a one-line change. Sources: ../shared/ib-facts.md §1–§3.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BarSize:
    """One legal IB bar size and how the warehouse stores it."""

    ib_name: str  # what reqHistoricalData takes, e.g. "1 min"
    seconds: int  # nominal length; 1 day/week/month are sessions, not seconds
    label: str  # partition directory value, e.g. "1min" (no spaces in paths)
    partition: str  # file granularity inside year=YYYY/: "year", "month" or "day"

    @property
    def intraday(self) -> bool:
        return self.seconds < 86_400

    @property
    def small(self) -> bool:
        """IB's "small bars" (30 secs or less): six-month horizon, strictest pacing reading."""
        return self.seconds <= 30


_DAY = 86_400
BAR_SIZES: dict[str, BarSize] = {
    b.ib_name: b
    for b in (
        BarSize("1 secs", 1, "1secs", "day"),
        BarSize("5 secs", 5, "5secs", "day"),
        BarSize("10 secs", 10, "10secs", "day"),
        BarSize("15 secs", 15, "15secs", "day"),
        BarSize("30 secs", 30, "30secs", "day"),
        BarSize("1 min", 60, "1min", "month"),
        BarSize("2 mins", 120, "2mins", "month"),
        BarSize("3 mins", 180, "3mins", "month"),
        BarSize("5 mins", 300, "5mins", "month"),
        BarSize("10 mins", 600, "10mins", "month"),
        BarSize("15 mins", 900, "15mins", "month"),
        BarSize("20 mins", 1200, "20mins", "month"),
        BarSize("30 mins", 1800, "30mins", "month"),
        BarSize("1 hour", 3600, "1hour", "year"),
        BarSize("2 hours", 7200, "2hours", "year"),
        BarSize("3 hours", 10_800, "3hours", "year"),
        BarSize("4 hours", 14_400, "4hours", "year"),
        BarSize("8 hours", 28_800, "8hours", "year"),
        BarSize("1 day", _DAY, "1day", "year"),
        BarSize("1 week", 7 * _DAY, "1week", "year"),
        BarSize("1 month", 30 * _DAY, "1month", "year"),
    )
}
# IB's own validation message spells the last two "1W" and "1M"; accept both spellings.
_ALIASES = {"1W": "1 week", "1M": "1 month", "1 sec": None}
BY_LABEL: dict[str, BarSize] = {b.label: b for b in BAR_SIZES.values()}

WHAT_TO_SHOW = ("TRADES", "MIDPOINT", "BID", "ASK", "BID_ASK", "ADJUSTED_LAST")


def bar_size(name: str) -> BarSize:
    """The BarSize for an IB spelling; ValueError naming the legal ones otherwise."""
    canonical = _ALIASES.get(name, name)
    if canonical in BAR_SIZES:
        return BAR_SIZES[canonical]
    legal = ", ".join(BAR_SIZES)
    raise ValueError(f"unknown bar size {name!r}; legal ones are: {legal}")
