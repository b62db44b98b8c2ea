"""Coverage: which half-open UTC windows of each series were asked and answered (empty answers included).

The stored form (coverage/coverage.parquet) is one row per answered request, so it stays auditable; the
CoverageIndex merges them per series for the planner. Trimming a window out of the rows (a corrupt
partition was quarantined) splits rows and forgets their bar counts, so the planner refetches exactly it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from harvester.model import Interval, SeriesKey, merge_intervals, subtract_intervals
from harvester.warehouse.tables import COVERAGE_IDENTITY


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
    return rows.drop_duplicates(subset=COVERAGE_IDENTITY, keep="first").sort_values(COVERAGE_IDENTITY, kind="stable")


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
