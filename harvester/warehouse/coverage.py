"""Coverage: which half-open UTC windows of each series were asked and answered (empty answers included).

The stored form (coverage/coverage.parquet) is one row per answered request, so it stays auditable; the
CoverageIndex merges them per series for the planner. Trimming a window out of the rows (a corrupt
partition was quarantined) splits rows and forgets their bar counts, so the planner refetches exactly it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TypeVar

import pandas as pd
import pyarrow as pa

from harvester.model import SeriesKey

Interval = tuple[datetime, datetime]
Point = TypeVar("Point", datetime, int)  # aware datetimes here; epoch seconds in the planner

COVERAGE_SCHEMA = pa.schema(
    [
        ("con_id", pa.int64()),
        ("bar_size", pa.string()),
        ("what_to_show", pa.string()),
        ("use_rth", pa.bool_()),
        ("start_ts", pa.timestamp("us")),
        ("end_ts", pa.timestamp("us")),
        ("kind", pa.string()),
        ("bars", pa.int64()),
        ("recorded_at", pa.timestamp("us")),
    ]
)
IDENTITY = ["con_id", "bar_size", "what_to_show", "use_rth", "start_ts", "end_ts", "kind"]


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


class CoverageIndex:
    """Merged covered intervals per series (UTC-aware datetimes)."""

    def __init__(self, by_series: dict[SeriesKey, list[Interval]] | None = None) -> None:
        self._by_series = {k: merge_intervals(v) for k, v in (by_series or {}).items()}

    @classmethod
    def from_frame(cls, rows: pd.DataFrame) -> CoverageIndex:
        """From coverage rows as stored (naive UTC start_ts/end_ts)."""
        grouped: dict[SeriesKey, list[Interval]] = {}
        for r in rows.itertuples(index=False):
            key = SeriesKey(int(r.con_id), str(r.bar_size), str(r.what_to_show), bool(r.use_rth))
            grouped.setdefault(key, []).append((_aware(r.start_ts), _aware(r.end_ts)))
        return cls(grouped)

    def series(self) -> list[SeriesKey]:
        return sorted(self._by_series)

    def intervals(self, series: SeriesKey) -> list[Interval]:
        return list(self._by_series.get(series, []))

    def add(self, series: SeriesKey, start: datetime, end: datetime) -> None:
        self._by_series[series] = merge_intervals([*self._by_series.get(series, []), (start, end)])

    def missing(self, series: SeriesKey, start: datetime, end: datetime) -> list[Interval]:
        return subtract_intervals([(start, end)], self._by_series.get(series, []))

    def covers(self, series: SeriesKey, start: datetime, end: datetime) -> bool:
        return not self.missing(series, start, end)


def _aware(ts: pd.Timestamp | datetime) -> datetime:
    return pd.Timestamp(ts).tz_localize(UTC).to_pydatetime()


def naive_utc(ts: datetime) -> pd.Timestamp:
    """Stored form: naive, documented as UTC. Refuses naive input, which would be ambiguous."""
    stamp = pd.Timestamp(ts)
    if stamp.tzinfo is None:
        raise ValueError(f"timestamp {ts!r} must be timezone-aware (UTC)")
    return stamp.tz_convert("UTC").tz_localize(None)


def dedupe_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Drop re-recorded rows (a recovery commit re-records the same answers): identity ignores recorded_at."""
    return rows.drop_duplicates(subset=IDENTITY, keep="first").sort_values(IDENTITY, kind="stable")


def trim_rows(
    rows: pd.DataFrame, bar_sizes: list[str], what_to_show: str, use_rth: bool, start: datetime, end: datetime
) -> pd.DataFrame:
    """Remove [start, end) from every row of the given series family; cut rows lose their bar count."""
    a, b = naive_utc(start), naive_utc(end)
    family = rows["bar_size"].isin(bar_sizes) & (rows["what_to_show"] == what_to_show) & (rows["use_rth"] == use_rth)
    hit = family & (rows["start_ts"] < b) & (rows["end_ts"] > a)
    untouched = rows[~hit]
    cut = rows[hit]
    left = cut[cut["start_ts"] < a].assign(end_ts=a, bars=pd.NA)
    right = cut[cut["end_ts"] > b].assign(start_ts=b, bars=pd.NA)
    return pd.concat([untouched, left, right], ignore_index=True)
