"""Where things live: partition paths for a range, and the one splitter commit and compaction share."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pyarrow as pa

from harvester.ibrules import BAR_SIZES
from harvester.warehouse.layout import PartitionKey, parse_partition_path, partition_files, split_by_partition
from harvester.warehouse.tables import BARS_SCHEMA


def test_partition_files_cover_the_session_dates_around_the_range() -> None:
    root = Path("/w")
    month = partition_files(root, BAR_SIZES["1 min"], "TRADES", True, datetime(2024, 5, 31, 14),
                            datetime(2024, 6, 2))
    assert [Path(p).name for p in month] == ["2024-05.parquet", "2024-06.parquet"]
    day = partition_files(root, BAR_SIZES["5 secs"], "MIDPOINT", False, datetime(2024, 1, 1, 1),
                          datetime(2024, 1, 1, 2))
    assert [str(Path(p).relative_to(root)) for p in day] == [
        "bars/bar_size=5secs/what_to_show=MIDPOINT/use_rth=0/year=2023/2023-12-31.parquet",
        "bars/bar_size=5secs/what_to_show=MIDPOINT/use_rth=0/year=2024/2024-01-01.parquet",
        "bars/bar_size=5secs/what_to_show=MIDPOINT/use_rth=0/year=2024/2024-01-02.parquet",  # Asia's next day
    ]
    year = partition_files(root, BAR_SIZES["1 day"], "TRADES", True, datetime(2023, 6, 1), datetime(2025, 1, 1))
    assert [Path(p).parent.name for p in year] == ["year=2023", "year=2024", "year=2025"]


def test_split_by_partition_files_each_row_under_its_session_dates_partition() -> None:
    days = [date(2024, 5, 31), date(2024, 6, 3), date(2024, 6, 28), date(2024, 12, 31), date(2025, 1, 2)]
    table = pa.Table.from_pylist(
        [{"symbol": "A", "con_id": 1, "ts": datetime(d.year, d.month, d.day, 14), "session_date": d} for d in days],
        schema=BARS_SCHEMA)
    parts = {key: part["session_date"].to_pylist() for key, part in split_by_partition(table, "1min", "TRADES", True)}
    assert {k.part: v for k, v in parts.items()} == {
        "2024-05": [date(2024, 5, 31)], "2024-06": [date(2024, 6, 3), date(2024, 6, 28)],
        "2024-12": [date(2024, 12, 31)], "2025-01": [date(2025, 1, 2)],
    }
    assert {k.year for k in parts} == {2024, 2025}
    root = Path("/w")
    for key in parts:  # every key is a path the layout reads back as itself
        assert parse_partition_path(root, key.path(root)) == key


def test_a_path_outside_the_layout_is_no_partition() -> None:
    root = Path("/w")
    assert parse_partition_path(root, root / "bars/bar_size=1min/what_to_show=TRADES/use_rth=1/year=2024/x.csv") is None
    assert parse_partition_path(root, root / "bars/bar_size=9min/what_to_show=TRADES/use_rth=1/year=2024/2024-01.parquet") is None
    assert parse_partition_path(root, Path("/elsewhere/bars/a/b/c/d/e.parquet")) is None
    assert PartitionKey("1day", "TRADES", False, 2024, "data").path(root).parts[-2:] == ("year=2024", "data.parquet")
