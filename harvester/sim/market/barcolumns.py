"""Historical bars in two shapes: `BarColumns` (numpy arrays, what the gateway encodes) and `Bar` rows.

The gateway serves millions of bars per harvest, so it never builds a Python object per bar; `Bar`
rows exist for tests and readers that want one bar at a time.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np

_UTC = datetime.UTC


@dataclass(frozen=True)
class Bar:
    """One historical bar as the gateway sends it; volume, wap and count are -1 where IB sends -1."""

    start: datetime.datetime  # UTC; for 1 day/1W/1M bars the (flavoured) session open
    session_date: datetime.date
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float
    count: int


@dataclass(frozen=True)
class BarColumns:
    """Bars as parallel arrays, oldest first; volume, wap and count hold -1 where IB sends -1."""

    start: np.ndarray  # int64 epoch seconds (UTC)
    session_date: np.ndarray  # datetime64[D]
    open: np.ndarray  # float64
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # float64
    wap: np.ndarray  # float64
    count: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.start)

    @classmethod
    def empty(cls) -> BarColumns:
        f = np.zeros(0)
        return cls(
            np.zeros(0, np.int64), np.zeros(0, "datetime64[D]"), f, f, f, f, f, f, np.zeros(0, np.int64)
        )

    @classmethod
    def from_bars(cls, bars: list[Bar]) -> BarColumns:
        if not bars:
            return cls.empty()
        return cls(
            np.array([int(b.start.timestamp()) for b in bars], dtype=np.int64),
            np.array([b.session_date for b in bars], dtype="datetime64[D]"),
            *(np.array([getattr(b, f) for b in bars], dtype=np.float64) for f in _PRICES),
            np.array([b.count for b in bars], dtype=np.int64),
        )

    def to_bars(self) -> list[Bar]:
        starts = [datetime.datetime.fromtimestamp(s, _UTC) for s in self.start.tolist()]
        return [
            Bar(*row)
            for row in zip(
                starts,
                self.session_date.tolist(),
                *(getattr(self, f).tolist() for f in _PRICES),
                self.count.tolist(),
            )
        ]


def yyyymmdd(days: np.ndarray) -> np.ndarray:
    """datetime64[D] dates as int64 yyyymmdd (IB's daily bar label)."""
    months = days.astype("datetime64[M]")
    year = months.astype(np.int64) // 12 + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (days - months).astype(np.int64) + 1
    return year * 10000 + month * 100 + day


_PRICES = ("open", "high", "low", "close", "volume", "wap")
