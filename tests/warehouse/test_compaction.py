"""Compaction: stray parts and poor row groups rewritten into the layout; rows preserved exactly; rerun safe."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import duckdb
import pandas as pd
import pyarrow.parquet as pq
from click.testing import CliRunner

from harvester.cli import main
from harvester.model import BarRequest, Outcome, SeriesKey
from harvester.warehouse.compaction import compact
from harvester.warehouse.lock import WriterLock
from harvester.warehouse.store import Warehouse

YEAR_DIR = "bars/bar_size=1min/what_to_show=TRADES/use_rth=1/year=2024"


def fill(tmp_path) -> None:
    wh = Warehouse.open(tmp_path, simulated=True)
    for con_id, sym in ((1, "AAA"), (2, "BBB")):
        for day in (date(2024, 5, 31), date(2024, 6, 3)):
            start = datetime(day.year, day.month, day.day, 14, 30, tzinfo=UTC)
            req = BarRequest(SeriesKey(con_id, "1 min", "TRADES", True), start, start + timedelta(hours=1), "3600 S", 60)
            ts = pd.date_range(start, periods=60, freq="min")
            frame = pd.DataFrame({"ts": ts, "session_date": [day] * 60, "open": 1.0 + con_id, "high": 5.0, "low": 0.5,
                                  "close": 2.0, "volume": 10.0, "wap": 1.5, "bar_count": 3})
            wh.stage(req, Outcome.BARS, frame, symbol=sym)
    wh.commit()


def all_rows(tmp_path) -> pd.DataFrame:
    return duckdb.sql(f"SELECT * FROM read_parquet('{tmp_path}/bars/*/*/*/*/*.parquet', hive_partitioning = true)"
                      " ORDER BY con_id, ts").df()


def test_clean_warehouse_is_left_alone(tmp_path):
    fill(tmp_path)
    stats = compact(tmp_path)
    assert (stats.partitions_rewritten, stats.files_removed) == (0, 0)


def test_stray_parts_and_poor_row_groups_are_rewritten_preserving_rows(tmp_path):
    fill(tmp_path)
    reference = all_rows(tmp_path)
    june = tmp_path / YEAR_DIR / "2024-06.parquet"
    table = pq.read_table(june)
    # split June into the proper file (first half, 10-row groups) and a stray part (second half, with overlap)
    pq.write_table(table.slice(0, 70), june, row_group_size=10)
    pq.write_table(table.slice(60), tmp_path / YEAR_DIR / "stray-copy.parquet")
    (tmp_path / YEAR_DIR / ".2024-06.parquet.tmp-1-dead").write_bytes(b"half written")

    stats = compact(tmp_path)
    assert (stats.partitions_rewritten, stats.files_removed, stats.temp_files_removed) == (1, 1, 1)
    assert sorted(p.name for p in (tmp_path / YEAR_DIR).iterdir()) == ["2024-05.parquet", "2024-06.parquet"]
    assert pq.ParquetFile(june).metadata.num_row_groups == 1
    pd.testing.assert_frame_equal(all_rows(tmp_path), reference)
    again = compact(tmp_path)
    assert (again.partitions_rewritten, again.files_removed) == (0, 0)


def test_misfiled_rows_move_to_their_partition(tmp_path):
    fill(tmp_path)
    reference = all_rows(tmp_path)
    may, june = tmp_path / YEAR_DIR / "2024-05.parquet", tmp_path / YEAR_DIR / "2024-06.parquet"
    both = pq.read_table(june).to_pandas()
    pq.write_table(pq.read_table(may), tmp_path / YEAR_DIR / "old-writer.parquet")
    may.unlink()
    compact(tmp_path)
    assert may.exists() and len(pq.read_table(may)) == 120 and len(pq.read_table(june)) == len(both)
    pd.testing.assert_frame_equal(all_rows(tmp_path), reference)


def test_cli_compact_reports_and_refuses_when_locked(tmp_path):
    fill(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["compact", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0 and "rewrote 0 partition(s)" in result.output
    with WriterLock(tmp_path):
        locked = runner.invoke(main, ["compact", "--data-dir", str(tmp_path)])
    assert locked.exit_code != 0 and "another harvest is running" in locked.output
