"""Compaction: partitions of several files (one a commit) become one sorted file each; rows preserved exactly;
old snapshots stay readable until vacuum's retention; rerun safe."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import deltalake
import duckdb
import pandas as pd
import pyarrow.parquet as pq
from click.testing import CliRunner
from deltalake import DeltaTable

from harvester.cli import main
from harvester.model import BarRequest, Outcome, SeriesKey
from harvester.warehouse.compaction import compact
from harvester.warehouse.store import Warehouse
from tests.helpers.warehouses import split_partitions


def fill(tmp_path, days=(date(2024, 5, 31), date(2024, 6, 3))) -> None:
    wh = Warehouse.open(tmp_path, simulated=True)
    for con_id, sym in ((1, "AAA"), (2, "BBB")):
        for day in days:
            start = datetime(day.year, day.month, day.day, 14, 30, tzinfo=UTC)
            req = BarRequest(SeriesKey(con_id, "1 min", "TRADES", True), start, start + timedelta(hours=1), "3600 S", 60)
            ts = pd.date_range(start, periods=60, freq="min")
            frame = pd.DataFrame({"ts": ts, "session_date": [day] * 60, "open": 1.0 + con_id, "high": 5.0, "low": 0.5,
                                  "close": 2.0, "volume": 10.0, "wap": 1.5, "bar_count": 3})
            wh.stage(req, Outcome.BARS, frame, symbol=sym)
    wh.commit()


def files(tmp_path, version=None) -> list[str]:
    return DeltaTable(str(tmp_path / "bars"), version).file_uris()


def all_rows(tmp_path, version=None) -> pd.DataFrame:
    return duckdb.sql(f"SELECT * FROM read_parquet({files(tmp_path, version)}, hive_partitioning = true)"
                      " ORDER BY con_id, ts").df()


def test_clean_warehouse_is_left_alone(tmp_path):
    fill(tmp_path)
    stats = compact(tmp_path)
    assert (stats.partitions_rewritten, stats.files_removed) == (0, 0)


def test_a_partition_of_several_files_becomes_one_sorted_file_and_old_snapshots_survive(tmp_path):
    fill(tmp_path)
    assert split_partitions(tmp_path) == 2  # May and June, two files each
    before_version = DeltaTable(str(tmp_path / "bars")).version()
    reference = all_rows(tmp_path)
    assert len([f for f in files(tmp_path) if "period=2024-06" in f]) == 2
    stats = compact(tmp_path)  # default retention: the files of older snapshots are kept
    assert stats.partitions_rewritten == 2 and stats.rows == 4 * 60 and stats.files_removed == 0
    (june_file,) = [f for f in files(tmp_path) if "period=2024-06" in f]
    table = pq.read_table(june_file)
    assert pq.ParquetFile(june_file).metadata.num_row_groups == 1
    assert table.column("symbol").to_pylist() == sorted(table.column("symbol").to_pylist())
    pd.testing.assert_frame_equal(all_rows(tmp_path), reference)
    pd.testing.assert_frame_equal(all_rows(tmp_path, before_version), reference)  # time travel still reads
    again = compact(tmp_path)
    assert again.partitions_rewritten == 0


def test_vacuum_with_no_retention_removes_what_no_snapshot_lists(tmp_path):
    fill(tmp_path)
    assert split_partitions(tmp_path) == 2  # May and June, two files each
    reference = all_rows(tmp_path)
    stats = compact(tmp_path, retention_hours=0)
    listed = set(files(tmp_path))
    on_disk = {str(p) for p in (tmp_path / "bars").rglob("*.parquet")}
    assert stats.files_removed >= 2 and on_disk == listed
    pd.testing.assert_frame_equal(all_rows(tmp_path), reference)


def test_cli_compact_reports(tmp_path):
    fill(tmp_path)
    result = CliRunner().invoke(main, ["compact", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0 and "rewrote 0 partition(s)" in result.output


def test_a_commit_landing_while_compaction_rewrites_its_partition_is_kept(tmp_path, monkeypatch):
    """No lock between harvests and compaction: the rewrite conflicts and is rebuilt on the new snapshot."""
    fill(tmp_path)
    assert split_partitions(tmp_path) >= 1  # partitions of two files: compaction rewrites them
    write = deltalake.write_deltalake
    landed = []

    def commit_first(table, *args, **kwargs):
        if not landed:  # a harvest commits into the same partition after compaction read it
            landed.append(True)
            fill(tmp_path, days=(date(2024, 6, 5),))
        return write(table, *args, **kwargs)

    monkeypatch.setattr(deltalake, "write_deltalake", commit_first)
    stats = compact(tmp_path)
    monkeypatch.undo()
    rows = all_rows(tmp_path)
    assert landed and stats.partitions_rewritten >= 1
    assert set(rows["session_date"].dt.date) == {date(2024, 5, 31), date(2024, 6, 3), date(2024, 6, 5)}
    assert len(rows) == 2 * 3 * 60 and not rows.duplicated(["con_id", "ts"]).any()
