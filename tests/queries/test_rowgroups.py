"""One-symbol reads from the row groups that hold them (queries/rowgroups.py): the frame DuckDB reads from the
same files, for any range, and always of the snapshot the read is made on."""

from __future__ import annotations

import shutil
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import queries
from harvester import BAR_SIZES
from harvester.warehouse.compaction import compact
from queries import readthrough
from queries.connection import series_files, snapshot_of
from queries.rowgroups import footer, read_point
from tests.helpers.warehouses import contracts_rows, minute_bars, snapshot_files, write_bars, write_table

SYMBOLS = ["AAA", "BBB", "CCC", "DDD"]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two month files of four symbols in 250-row groups: a symbol's session straddles groups."""
    data_dir = tmp_path_factory.mktemp("rowgroups")
    write_bars(data_dir, minute_bars(SYMBOLS, "2024-05-28", "2024-06-04", seed=5), row_group_rows=250)
    write_table(data_dir, "contracts", contracts_rows(SYMBOLS))
    return data_dir


def through_duckdb(con, symbol: str, start, end) -> pd.DataFrame:
    """The same read through the connection's `bars` view, converted as bars() converts."""
    where, params = ["symbol = ?", "bar_size = '1 min'"], [symbol]
    for bound, op_ts, op_day in ((start, ">=", ">="), (end, "<", "<=")):
        if bound is not None:
            instant = len(bound) > 10
            where.append(f"{'ts' if instant else 'session_date'} {op_ts if instant else op_day} ?")
            params.append(datetime.fromisoformat(bound) if instant else date.fromisoformat(bound))
    sql = f"SELECT * FROM bars WHERE {' AND '.join(where)} ORDER BY symbol, ts"
    frame = con.sql(sql, params=params).to_arrow_table().to_pandas(date_as_object=False)
    return frame.astype({"session_date": readthrough.PANDAS_DATE})


@pytest.mark.parametrize(("symbol", "start", "end"), [
    ("BBB", "2024-05-31 15:00", "2024-06-03 14:00"),  # across the month files
    ("AAA", "2024-06-03", "2024-06-04"),  # exchange dates, both included
    ("DDD", None, None),
    ("CCC", "2024-05-28", "2024-05-28"),  # one session
    ("CCC", "2024-05-31", "2024-06-03 14:00"),  # a date, then an instant
    ("AAA", "2024-06-04 19:59", "2024-06-04 20:00"),  # one bar
    ("BBB", "2024-06-01", "2024-06-02"),  # a weekend: nothing
    ("ZZZ", None, None),  # no such symbol
])
def test_a_point_read_is_the_frame_duckdb_reads(stored, symbol, start, end, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(readthrough, "read_point", lambda *a: calls.append(a) or read_point(*a))
    con = queries.connect(stored)
    got = queries.bars(symbol, "1 min", start, end, con=con)
    assert len(calls) == 1
    pd.testing.assert_frame_equal(got, through_duckdb(con, symbol, start, end))
    pd.testing.assert_frame_equal(queries.bars(symbol, "1 min", start, end, data_dir=stored), got)
    assert (len(got) > 0) == (symbol != "ZZZ" and start != "2024-06-01")


def test_only_the_symbols_row_groups_are_read(stored) -> None:
    (june,) = series_files(snapshot_of(queries.connect(stored)).files, BAR_SIZES["1 min"], "TRADES", True,
                           datetime(2024, 6, 1), datetime(2024, 6, 5))
    groups = footer(june.path).groups(["BBB"], datetime(2024, 6, 3, 14), datetime(2024, 6, 3, 15))
    total = pq.ParquetFile(june.path).metadata.num_row_groups
    assert 1 <= len(groups) <= 2 < total


def test_a_commit_between_two_reads_is_seen(tmp_path: Path) -> None:
    """One process reading, another commit landing (a new file in the partition, then a partition rewritten
    under new file names): each read lists the latest snapshot's files and reads their footers."""
    first = minute_bars(["AAA", "BBB"], "2024-06-03", "2024-06-03")
    write_bars(tmp_path, first, row_group_rows=100)
    assert len(queries.bars("AAA", "1 min", data_dir=tmp_path)) == 390
    write_bars(tmp_path, minute_bars(["AAA", "BBB"], "2024-06-04", "2024-06-04"), row_group_rows=100)
    both = queries.bars("AAA", "1 min", data_dir=tmp_path)
    assert len(both) == 780 and both.ts.is_monotonic_increasing
    before = set(snapshot_files(tmp_path))
    compact(tmp_path, retention_hours=0)
    assert not before & set(snapshot_files(tmp_path))  # every file replaced under a new name
    pd.testing.assert_frame_equal(queries.bars("AAA", "1 min", data_dir=tmp_path), both)


def test_a_file_changed_in_place_is_read_anew(stored, tmp_path: Path) -> None:
    """Delta never rewrites a file under its name; were one changed anyway, its footer is not reused."""
    path = Path(min(snapshot_files(stored)))
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    assert footer(str(copy)).metadata.num_row_groups > 1
    pq.write_table(pq.read_table(copy), copy, row_group_size=1 << 20)
    assert footer(str(copy)).metadata.num_row_groups == 1
