"""The detection rule (warehouse/changes.py) on exact tables, and split repairs committed once and atomically."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow as pa
import pytest

from harvester.model import Outcome
from harvester.warehouse.changes import compare_overlap, matches_rescaled, rescale
from harvester.warehouse.store import Warehouse
from harvester.warehouse.tables import BARS_SCHEMA
from tests.warehouse.test_store import Crash, bars_for, read_bars, request


def table(prices: list[float], volume: float = 1000.0, con_id: int = 7, high_extra: float = 1.0) -> pa.Table:
    n = len(prices)
    return pa.table({
        "symbol": ["X"] * n, "con_id": [con_id] * n,
        "ts": [datetime(2024, 6, 3, 14, 30 + i) for i in range(n)], "session_date": [date(2024, 6, 3)] * n,
        "open": prices, "high": [p + high_extra for p in prices], "low": [p - 1 for p in prices], "close": prices,
        "volume": [volume] * n, "wap": prices, "bar_count": [5] * n,
    }, schema=BARS_SCHEMA)


def test_unchanged_bars_are_the_same():
    verdict = compare_overlap(table([100.0, 101.0]), table([100.0, 101.0]))
    assert verdict.kind == "same" and verdict.revised.empty


@pytest.mark.parametrize(("shares", "price_ratio"), [(10, 0.1), (3, 1 / 3), (1.5, 2 / 3), (0.1, 10.0)])
def test_one_constant_ratio_with_volume_inverse_is_a_split(shares, price_ratio):
    stored = table([1203.5, 1210.25, 1199.0])
    fetched = rescale(stored, 7, price_ratio)
    verdict = compare_overlap(stored, fetched)
    assert verdict.kind == "split" and verdict.shares_ratio == shares and verdict.revised.empty
    assert matches_rescaled(stored, fetched, verdict.price_ratio)


def test_a_split_with_a_late_print_is_a_split_and_a_revision():
    stored = table([120.0, 121.0])
    fetched = rescale(table([120.0, 121.0], volume=1100.0, high_extra=2.0), 7, 0.25)
    verdict = compare_overlap(stored, fetched)
    assert verdict.kind == "split" and verdict.shares_ratio == 4
    assert len(verdict.revised) == 2
    assert verdict.revised.volume_old.tolist() == [4000.0, 4000.0]  # the stored bars as rescaled
    assert verdict.revised.volume_new.tolist() == [4400.0, 4400.0]


@pytest.mark.parametrize("change", ["volume", "one price", "small ratio"])
def test_anything_else_is_a_revision(change):
    stored = table([100.0, 101.0, 102.0])
    if change == "volume":
        fetched = table([100.0, 101.0, 102.0], volume=1200.0)
    elif change == "one price":
        fetched = table([100.0, 101.5, 102.0])
    else:  # every price 0.5 % up: too close to 1 for a split
        fetched = rescale(stored, 7, 1.005)
    verdict = compare_overlap(stored, fetched)
    assert verdict.kind == "revision" and verdict.price_ratio == 1.0 and len(verdict.revised) >= 1


def test_a_rescale_repair_is_applied_once_even_when_the_commit_is_redone(tmp_path):
    old = Warehouse.open(tmp_path, simulated=True)
    days = (date(2024, 5, 31), date(2024, 6, 3))  # two partitions (May, June): both rewritten
    for day in days:
        req = request(1, day)
        old.stage(req, Outcome.BARS, bars_for(req, 100.0), symbol="AAA")
    other = request(2, days[1])
    old.stage(other, Outcome.BARS, bars_for(other, 50.0), symbol="BBB")
    old.commit()

    new_day = request(1, date(2024, 6, 4))
    fresh = bars_for(new_day, 25.0).assign(volume=400.0)
    series = new_day.series
    anchor = {"ts": datetime(2024, 6, 3, 14, 59).isoformat(), "close": 100.0, "period": "2024-06"}
    wh = Warehouse.open(tmp_path, simulated=True)
    wh.stage_repair(series, "AAA", datetime(2024, 5, 31, tzinfo=UTC), datetime(2024, 6, 4, tzinfo=UTC),
                    {"mode": "rescale", "price_ratio": 0.25, "anchor": anchor})
    wh.stage(new_day, Outcome.BARS, fresh, symbol="AAA")

    def crash(step: str) -> None:
        if step == "bars_durable":
            raise Crash(step)

    wh._crash_hook = crash
    with pytest.raises(Crash):
        wh.commit()
    Warehouse.open(tmp_path, simulated=True).commit()  # the next run re-commits what was staged

    rows = read_bars(tmp_path)
    aaa, bbb = rows[rows.con_id == 1], rows[rows.con_id == 2]
    assert sorted(set(aaa.open)) == [25.0] and set(aaa.volume) == {400.0}  # 100 × 0.25 once, volume ÷ 0.25
    assert set(bbb.open) == {50.0}  # another conId in the same partitions is untouched
    assert len(aaa) == 90 and not aaa.duplicated(["ts"]).any()
