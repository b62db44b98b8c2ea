"""Where things live: the periods a range touches, partition predicates, and the one splitter commit and
compaction share."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from harvester.ibrules import BAR_SIZES
from harvester.warehouse.files import WarehouseError
from harvester.warehouse.layout import (
    PartitionKey,
    partition_of,
    partitions_predicate,
    periods_for,
    split_by_partition,
    with_partition,
)
from harvester.warehouse.tables import BARS_SCHEMA, BARS_TABLE_SCHEMA


def test_periods_cover_the_session_dates_around_the_range() -> None:
    assert periods_for(BAR_SIZES["1 min"], datetime(2024, 5, 31, 14), datetime(2024, 6, 2)) == ["2024-05", "2024-06"]
    assert periods_for(BAR_SIZES["5 secs"], datetime(2024, 1, 1, 1), datetime(2024, 1, 1, 2)) == [
        "2023-12-31", "2024-01-01", "2024-01-02"]  # the day before, and Asia's next day
    assert periods_for(BAR_SIZES["1 day"], datetime(2023, 6, 1), datetime(2025, 1, 1)) == ["2023", "2024", "2025"]


def rows(days: list[date]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"symbol": "A", "con_id": 1, "ts": datetime(d.year, d.month, d.day, 14), "session_date": d} for d in days],
        schema=BARS_SCHEMA)


def test_split_by_partition_files_each_row_under_its_session_dates_partition() -> None:
    days = [date(2024, 5, 31), date(2024, 6, 3), date(2024, 6, 28), date(2024, 12, 31), date(2025, 1, 2)]
    parts = {key: part["session_date"].to_pylist() for key, part in split_by_partition(rows(days), "1min", "TRADES", True)}
    assert {k.period: v for k, v in parts.items()} == {
        "2024-05": [date(2024, 5, 31)], "2024-06": [date(2024, 6, 3), date(2024, 6, 28)],
        "2024-12": [date(2024, 12, 31)], "2025-01": [date(2025, 1, 2)],
    }
    yearly = {k.period for k, _ in split_by_partition(rows(days), "1day", "TRADES", False)}
    assert yearly == {"2024", "2025"}


def test_partition_rows_carry_their_partition_and_the_path_reads_back_as_it() -> None:
    key = PartitionKey("1min", "MIDPOINT", False, "2024-06")
    table = with_partition(key, rows([date(2024, 6, 3)]))
    assert table.schema.names == BARS_TABLE_SCHEMA.names
    assert table.column("period").to_pylist() == ["2024-06"] and table.column("use_rth").to_pylist() == [False]
    root = Path("/w/bars")
    path = root / "bar_size=1min" / "what_to_show=MIDPOINT" / "use_rth=false" / "period=2024-06" / "part-0.parquet"
    assert partition_of(root, path) == key


def test_a_predicate_names_exactly_the_partitions_grouped_by_family() -> None:
    keys = [PartitionKey("1min", "TRADES", True, "2024-06"), PartitionKey("1min", "TRADES", True, "2024-05"),
            PartitionKey("1day", "TRADES", True, "2024")]
    assert partitions_predicate(keys) == (
        "(bar_size = '1day' AND what_to_show = 'TRADES' AND use_rth = true AND period IN ('2024')) OR "
        "(bar_size = '1min' AND what_to_show = 'TRADES' AND use_rth = true AND period IN ('2024-05', '2024-06'))")


@pytest.mark.parametrize(("label", "what", "period"), [
    ("9min", "TRADES", "2024-06"), ("1min", "LAST", "2024-06"), ("1min", "TRADES", "2024"),
    ("1day", "TRADES", "2024-06"), ("5secs", "TRADES", "2024-06-31"), ("1min", "TRADES", "2024-06') OR (true"),
])
def test_a_partition_outside_the_allow_lists_is_refused(label: str, what: str, period: str) -> None:
    with pytest.raises(WarehouseError):
        PartitionKey(label, what, True, period)
