"""Coverage intervals: merge, subtract, index, and trimming stored rows (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from harvester.model import SeriesKey, merge_intervals, subtract_intervals
from harvester.warehouse.coverage import CoverageIndex, dedupe_rows, trim_rows

T0 = datetime(2024, 6, 3, tzinfo=UTC)


def h(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def test_merge_fuses_overlapping_and_touching_and_drops_empty():
    assert merge_intervals([(h(3), h(4)), (h(0), h(1)), (h(1), h(2)), (h(1.5), h(1.7)), (h(5), h(5))]) == [
        (h(0), h(2)), (h(3), h(4))]


def test_subtract_cuts_holes():
    assert subtract_intervals([(h(0), h(10))], [(h(1), h(2)), (h(4), h(5)), (h(9), h(12))]) == [
        (h(0), h(1)), (h(2), h(4)), (h(5), h(9))]
    assert subtract_intervals([(h(0), h(1))], [(h(-1), h(2))]) == []
    assert subtract_intervals([(h(0), h(1))], []) == [(h(0), h(1))]


def test_index_add_missing_covers():
    key = SeriesKey(1, "1 min", "TRADES", True)
    idx = CoverageIndex()
    idx.add(key, h(0), h(2))
    idx.add(key, h(2), h(3))
    assert idx.intervals(key) == [(h(0), h(3))]
    assert idx.covers(key, h(1), h(3)) and not idx.covers(key, h(1), h(4))
    assert idx.missing(key, h(-1), h(4)) == [(h(-1), h(0)), (h(3), h(4))]
    assert idx.intervals(SeriesKey(2, "1 min", "TRADES", True)) == []


def rows(*spans: tuple[float, float], bar_size: str = "1 min") -> pd.DataFrame:
    naive = [(h(a).replace(tzinfo=None), h(b).replace(tzinfo=None)) for a, b in spans]
    return pd.DataFrame({
        "con_id": 1, "bar_size": bar_size, "what_to_show": "TRADES", "use_rth": True,
        "start_ts": [a for a, _ in naive], "end_ts": [b for _, b in naive], "kind": "bars",
        "bars": pd.array([60] * len(spans), dtype="Int64"), "recorded_at": T0.replace(tzinfo=None),
    })


def test_from_frame_reads_naive_utc_as_aware():
    idx = CoverageIndex.from_frame(rows((0, 1), (1, 2)))
    assert idx.intervals(SeriesKey(1, "1 min", "TRADES", True)) == [(h(0), h(2))]


def test_trim_splits_rows_and_forgets_cut_counts():
    trimmed = trim_rows(rows((0, 10), (20, 21)), ["1 min"], "TRADES", True, h(2), h(4))
    idx = CoverageIndex.from_frame(trimmed)
    assert idx.intervals(SeriesKey(1, "1 min", "TRADES", True)) == [(h(0), h(2)), (h(4), h(10)), (h(20), h(21))]
    assert trimmed["bars"].isna().sum() == 2


def test_trim_leaves_other_families_alone():
    untouched = trim_rows(rows((0, 10), bar_size="1 hour"), ["1 min"], "TRADES", True, h(2), h(4))
    assert len(untouched) == 1 and untouched["end_ts"].iloc[0] == h(10).replace(tzinfo=None)


def test_dedupe_ignores_recorded_at():
    twice = pd.concat([rows((0, 1)), rows((0, 1)).assign(recorded_at=h(5).replace(tzinfo=None))])
    assert len(dedupe_rows(twice)) == 1


def test_naive_timestamps_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        trim_rows(rows((0, 1)), ["1 min"], "TRADES", True, datetime(2024, 6, 3), h(1))
