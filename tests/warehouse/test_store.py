"""Warehouse: stage → commit round trip, newest-wins dedupe, crash safety at every step, corrupt files,
mixed warehouses, readers during commits. Real files in tmp_path, real DuckDB reads."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harvester.contracts import _stored_contracts
from harvester.model import BarRequest, HeadKey, Outcome, SeriesKey
from harvester.warehouse import tables
from harvester.warehouse.compaction import compact
from harvester.warehouse.delta import WRITER
from harvester.warehouse.store import MixedWarehouseError, Warehouse, WarehouseError
from tests.helpers.warehouses import snapshot_files, split_partitions


def data_files(data_dir, table: str = "bars") -> list[Path]:
    return [Path(f) for f in snapshot_files(data_dir, table)]


def request(con_id: int, day: date, minutes: int = 30, bar_size: str = "1 min") -> BarRequest:
    start = datetime(day.year, day.month, day.day, 14, 30, tzinfo=UTC)
    return BarRequest(SeriesKey(con_id, bar_size, "TRADES", True), start, start + timedelta(minutes=minutes),
                      f"{minutes * 60} S", minutes)


def bars_for(req: BarRequest, price: float = 10.0) -> pd.DataFrame:
    n = int((req.end - req.start).total_seconds() // 60)
    ts = pd.date_range(req.start, periods=n, freq="min")
    return pd.DataFrame({
        "ts": ts, "session_date": [req.start.date()] * n, "open": price, "high": price + 1, "low": price - 1,
        "close": price, "volume": 100.0, "wap": price, "bar_count": 7,
    })


def read_bars(data_dir) -> pd.DataFrame:
    files = [str(f) for f in data_files(data_dir)]
    return duckdb.sql(
        f"SELECT symbol, con_id, ts, open, volume, wap, bar_count FROM read_parquet({files},"
        " hive_partitioning = true) ORDER BY con_id, ts").df()


def coverage_rows(data_dir) -> pd.DataFrame:
    frame = pd.concat([pq.read_table(f).to_pandas() for f in data_files(data_dir, "coverage")])
    frame = frame.drop(columns=["recorded_at"])
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def test_round_trip_sorted_zstd_and_sentinels_become_null(tmp_path):
    wh = Warehouse.open(tmp_path, simulated=True)
    reqs = [request(2, date(2024, 6, 3)), request(1, date(2024, 6, 3))]
    frames = [bars_for(reqs[0]), bars_for(reqs[1]).assign(volume=-1.0, wap=-1.0, bar_count=-1)]
    for req, frame, sym in zip(reqs, frames, ["BBB", "AAA"], strict=True):
        assert wh.stage(req, Outcome.BARS, frame, symbol=sym).kept == 30
    stats = wh.commit()
    assert (stats.partitions_written, stats.rows_in_written_files) == (1, 60)

    (path,) = data_files(tmp_path)
    assert path.parent.name == "period=2024-06" and path.parent.parent.name == "use_rth=true"
    meta = pq.ParquetFile(path).metadata
    assert meta.row_group(0).column(0).compression == WRITER.compression.replace("_RAW", "")  # pyarrow: LZ4
    stored = pq.read_table(path).to_pandas()
    assert list(stored["symbol"]) == ["AAA"] * 30 + ["BBB"] * 30
    assert stored["ts"].is_monotonic_increasing is False and stored.groupby("symbol")["ts"].is_monotonic_increasing.all()
    got = read_bars(tmp_path)
    aaa = got[got.con_id == 1]
    assert aaa["volume"].isna().all() and aaa["wap"].isna().all() and aaa["bar_count"].isna().all()
    assert (got[got.con_id == 2]["bar_count"] == 7).all()
    assert wh.coverage().intervals(reqs[1].series) == [(reqs[1].start, reqs[1].end)]


def test_newest_fetch_wins_within_and_across_commits(tmp_path):
    wh = Warehouse.open(tmp_path, simulated=True)
    req = request(1, date(2024, 6, 3))
    wh.stage(req, Outcome.BARS, bars_for(req, 10.0), symbol="AAA")
    wh.stage(req, Outcome.BARS, bars_for(req, 11.0), symbol="AAA")
    wh.commit()
    assert list(read_bars(tmp_path)["open"].unique()) == [11.0]
    wh.stage(req, Outcome.BARS, bars_for(req, 12.0), symbol="AAA")
    wh.commit()
    got = read_bars(tmp_path)
    assert len(got) == 30 and list(got["open"].unique()) == [12.0]


def test_double_commit_is_idempotent(tmp_path):
    wh = Warehouse.open(tmp_path, simulated=True)
    req = request(1, date(2024, 6, 3))
    wh.stage(req, Outcome.BARS, bars_for(req), symbol="AAA")
    wh.commit()
    before = (read_bars(tmp_path), coverage_rows(tmp_path))
    again = wh.commit()
    assert again.partitions_written == 0
    pd.testing.assert_frame_equal(read_bars(tmp_path), before[0])
    pd.testing.assert_frame_equal(coverage_rows(tmp_path), before[1])


def test_only_covering_outcomes_record_coverage(tmp_path):
    wh = Warehouse.open(tmp_path, simulated=True)
    empty_req, timeout_req = request(1, date(2024, 6, 3)), request(1, date(2024, 6, 4))
    assert wh.stage(empty_req, Outcome.EMPTY, None, symbol="AAA").covers
    assert not wh.stage(timeout_req, Outcome.TIMEOUT, None, symbol="AAA").covers
    wh.commit()
    rows = coverage_rows(tmp_path)
    assert list(rows["kind"]) == ["empty"] and list(rows["bars"]) == [0]
    assert wh.coverage().missing(timeout_req.series, timeout_req.start, timeout_req.end) == [
        (timeout_req.start, timeout_req.end)]


class Crash(Exception):
    pass


SEEN = datetime(2024, 6, 3, 22, tzinfo=UTC)


def quarantine_rows(data_dir) -> pd.DataFrame:
    frame = pd.concat([pq.read_table(f).to_pandas() for f in data_files(data_dir, "quarantine")])
    return frame.drop(columns=["quarantined_at", "last_answer"]).sort_values(["con_id", "ts"]).reset_index(drop=True)


def stage_reference_load(wh: Warehouse) -> None:
    """Two partitions (May and June), a revision, an empty answer: every commit step has work."""
    for con_id, sym in ((1, "AAA"), (2, "BBB")):
        for day in (date(2024, 5, 31), date(2024, 6, 3)):
            req = request(con_id, day)
            wh.stage(req, Outcome.BARS, bars_for(req, 10.0), symbol=sym)
    revised = request(1, date(2024, 6, 3), minutes=10)
    wh.stage(revised, Outcome.BARS, bars_for(revised, 20.0), symbol="AAA")
    wh.stage(request(3, date(2024, 6, 3)), Outcome.EMPTY, None, symbol="CCC")
    for con_id, sym, answers in ((4, "DDD", [True]), (5, "EEE", [True, False])):  # EEE: bad, then clean
        req = request(con_id, date(2024, 6, 3))
        for bad in answers:
            frame = bars_for(req)
            if bad:
                frame.loc[5, "low"] = 99.0
            wh.stage(req, Outcome.BARS, frame, symbol=sym, seen_at=SEEN)
    wh.record_request({"con_id": 1, "symbol": "AAA", "kind": "bars", "outcome": Outcome.BARS})


def assert_coverage_claims_only_stored_bars(data_dir, wh: Warehouse) -> None:
    stored = read_bars(data_dir)
    for series in wh.coverage().series():
        for start, end in wh.coverage().intervals(series):
            if series.con_id == 3:
                continue
            inside = stored[(stored.con_id == series.con_id) & (stored.ts >= start)
                            & (stored.ts < end)]
            assert len(inside) == (end - start) // timedelta(minutes=1)


@pytest.mark.parametrize("step", ["bars_durable", "coverage_durable", "quarantine_durable", "journal_durable"])
def test_crash_at_any_step_then_reopen_and_commit_gives_reference(tmp_path, step):
    reference = Warehouse.open(tmp_path / "ref", simulated=True)
    stage_reference_load(reference)
    reference.commit()

    crashed = Warehouse.open(tmp_path / "crash", simulated=True)
    stage_reference_load(crashed)
    def hook(name: str) -> None:
        if name == step:
            raise Crash(name)

    crashed._crash_hook = hook
    with pytest.raises(Crash):
        crashed.commit()
    assert_coverage_claims_only_stored_bars(tmp_path / "crash", Warehouse.open(tmp_path / "crash", simulated=True))

    recovered = Warehouse.open(tmp_path / "crash", simulated=True)
    recovered.commit()
    pd.testing.assert_frame_equal(read_bars(tmp_path / "crash"), read_bars(tmp_path / "ref"))
    pd.testing.assert_frame_equal(coverage_rows(tmp_path / "crash"), coverage_rows(tmp_path / "ref"))
    pd.testing.assert_frame_equal(quarantine_rows(tmp_path / "crash"), quarantine_rows(tmp_path / "ref"))
    healed = quarantine_rows(tmp_path / "ref").set_index("con_id")["resolved_at"]
    assert pd.isna(healed[4]) and healed[5] == pd.Timestamp(SEEN).tz_localize(None)  # EEE's clean answer came last
    again = recovered.commit()
    assert again.requests == 0
    recovered.close()
    assert not list((tmp_path / "crash" / "_staging").rglob("*.parquet"))


def test_recovered_staging_is_older_than_this_runs_fetches(tmp_path):
    old = Warehouse.open(tmp_path, simulated=True)
    req = request(1, date(2024, 6, 3))
    old.stage(req, Outcome.BARS, bars_for(req, 10.0), symbol="AAA")  # never committed: the run died
    new = Warehouse.open(tmp_path, simulated=True)
    new.stage(req, Outcome.BARS, bars_for(req, 11.0), symbol="AAA")
    stats = new.commit()
    assert stats.requests == 2
    assert list(read_bars(tmp_path)["open"].unique()) == [11.0]


def test_bad_rows_are_quarantined_queryably(tmp_path):
    wh = Warehouse.open(tmp_path, simulated=True)
    req = request(1, date(2024, 6, 3))
    frame = bars_for(req)
    frame.loc[0, "low"] = 50.0
    frame.loc[1, "volume"] = -5.0
    frame.loc[3, "ts"] = frame.loc[2, "ts"]
    frame = pd.concat([frame, bars_for(request(1, date(2024, 6, 4))).head(1)], ignore_index=True)
    result = wh.stage(req, Outcome.BARS, frame, symbol="AAA")
    assert (result.kept, result.quarantined) == (27, 4)
    wh.commit()
    files = [str(f) for f in data_files(tmp_path, "quarantine")]
    reasons = duckdb.sql(f"SELECT reason, symbol, bar_size FROM read_parquet({files}) ORDER BY reason").df()
    assert list(reasons["reason"]) == ["duplicate ts in one answer", "low above high", "negative volume",
                                      "outside request window"]
    assert set(reasons["bar_size"]) == {"1 min"}
    assert len(read_bars(tmp_path)) == 27


def test_corrupt_partition_is_quarantined_and_its_coverage_dropped(tmp_path):
    wh = Warehouse.open(tmp_path, simulated=True)
    june, may = request(1, date(2024, 6, 3)), request(1, date(2024, 5, 29))
    wh.stage(june, Outcome.BARS, bars_for(june), symbol="AAA")
    wh.stage(may, Outcome.BARS, bars_for(may), symbol="AAA")
    wh.commit()
    (path,) = [f for f in data_files(tmp_path) if f.parent.name == "period=2024-06"]
    path.write_bytes(path.read_bytes()[:100])

    later = request(1, date(2024, 6, 4))
    wh.stage(later, Outcome.BARS, bars_for(later), symbol="AAA")
    stats = wh.commit()
    assert [c.path for c in stats.corrupt] == [path]
    assert stats.corrupt[0].moved_to.exists() and "/corrupt/" in str(stats.corrupt[0].moved_to)
    assert path not in data_files(tmp_path)
    cov = wh.coverage()
    assert not cov.covers(june.series, june.start, june.end)
    # the dropped UTC window is the partition widened by a day each side (sessions straddle UTC midnight)
    assert not cov.covers(june.series, datetime(2024, 5, 31, tzinfo=UTC), datetime(2024, 7, 2, tzinfo=UTC))
    assert cov.covers(may.series, may.start, may.end) and cov.covers(later.series, later.start, later.end)
    assert len(read_bars(tmp_path)) == 60


def test_verify_finds_corrupt_file(tmp_path):
    wh = Warehouse.open(tmp_path, simulated=True)
    req = request(1, date(2024, 6, 3), bar_size="1 hour")
    wh.stage(req, Outcome.EMPTY, None, symbol="AAA")
    frame = bars_for(request(1, date(2024, 6, 3)))
    minute = request(1, date(2024, 6, 3))
    wh.stage(minute, Outcome.BARS, frame, symbol="AAA")
    wh.commit()
    (path,) = data_files(tmp_path)
    path.write_bytes(b"garbage")
    found = wh.verify()
    assert [c.path for c in found] == [path] and path not in data_files(tmp_path)
    assert not wh.coverage().covers(minute.series, minute.start, minute.end)
    assert wh.coverage().covers(req.series, req.start, req.end)  # other bar size untouched


def test_mixed_simulated_and_real_refused(tmp_path):
    Warehouse.open(tmp_path, simulated=True, gateway="127.0.0.1:4002")
    with pytest.raises(MixedWarehouseError, match="simulated"):
        Warehouse.open(tmp_path, simulated=False)
    assert Warehouse.open(tmp_path, simulated=True).simulated


def test_data_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(WarehouseError, match="not a directory"):
        Warehouse.open(tmp_path / "f", simulated=True)


def test_labels_are_validated_and_symbols_never_become_paths(tmp_path):
    wh = Warehouse.open(tmp_path / "d", simulated=True)
    bad = BarRequest(SeriesKey(1, "../../x", "TRADES", True), datetime(2024, 6, 3, tzinfo=UTC),
                     datetime(2024, 6, 4, tzinfo=UTC), "1 D", 1)
    with pytest.raises(WarehouseError, match="bar size"):
        wh.stage(bad, Outcome.EMPTY, None, symbol="X")
    req = request(1, date(2024, 6, 3))
    wh.stage(req, Outcome.BARS, bars_for(req), symbol="../../../evil")
    wh.commit()
    assert not (tmp_path / "evil").exists()
    assert set(read_bars(tmp_path / "d")["symbol"]) == {"../../../evil"}


def test_contracts_upsert_and_heads(tmp_path):
    wh = Warehouse.open(tmp_path, simulated=True)
    wh.save_contracts(pd.DataFrame({"con_id": [1, 2], "symbol": ["AAA", "BBB"], "currency": ["USD", "USD"]}))
    wh.save_contracts(pd.DataFrame({"con_id": [2], "symbol": ["BBB2"], "currency": ["EUR"]}))
    got = wh.contracts().set_index("con_id")
    assert got.loc[2, "symbol"] == "BBB2" and got.loc[1, "symbol"] == "AAA" and len(got) == 2
    with pytest.raises(WarehouseError, match="unknown column"):
        wh.save_contracts(pd.DataFrame({"con_id": [3], "sym": ["x"]}))
    head = datetime(1990, 1, 2, 14, 30, tzinfo=UTC)
    wh.save_head(HeadKey(1, "TRADES", True), head)
    wh.save_head(HeadKey(1, "TRADES", True), head + timedelta(days=1))
    assert wh.heads() == {HeadKey(1, "TRADES", True): head + timedelta(days=1)}


def test_contracts_written_before_columns_were_added_read_and_upsert(tmp_path):
    """A contracts table from before the futures and calendar columns: read with them NULL, then rewritten
    with them (the table's schema grows; nothing is lost)."""
    from deltalake import write_deltalake

    old = pa.schema([f for f in tables.CONTRACTS_SCHEMA if f.name not in ("last_trade_date", "calendar")])
    write_deltalake(str(tmp_path / "contracts"), pa.Table.from_pylist(
        [{"con_id": 1, "symbol": "AAA", "currency": "USD", "qualified_at": datetime(2024, 1, 1)}], schema=old))
    wh = Warehouse.open(tmp_path, simulated=True)
    got = wh.contracts()
    assert got.loc[0, "symbol"] == "AAA" and pd.isna(got.loc[0, "last_trade_date"])
    (stored,) = _stored_contracts(got, since=None)["AAA"]
    assert (stored.last_trade_date, stored.local_symbol, stored.label) == ("", "", "AAA")  # reused as it was
    wh.save_contracts(pd.DataFrame({"con_id": [2], "symbol": ["ES"], "last_trade_date": ["20240621"],
                                    "calendar": ["CMES"]}))
    got = wh.contracts().set_index("con_id")
    assert got.loc[2, "calendar"] == "CMES" and got.loc[1, "symbol"] == "AAA" and len(got) == 2


def test_journal_is_flushed_at_commit_and_close(tmp_path):
    wh = Warehouse.open(tmp_path, simulated=True)
    wh.record_request({"con_id": 1, "symbol": "AAA", "kind": "head", "outcome": Outcome.TIMEOUT,
                       "sent_at": datetime(2024, 6, 3, tzinfo=UTC), "latency_s": 1.5, "attempt": 2})
    wh.commit()
    wh.record_request({"con_id": 1, "symbol": "AAA", "kind": "bars", "outcome": "bars"})
    wh.close()
    rows = duckdb.sql(f"SELECT outcome, attempt FROM read_parquet({snapshot_files(tmp_path, 'journal')}) "
                      "ORDER BY outcome").df()
    assert list(rows["outcome"]) == ["bars", "timeout"]
    with pytest.raises(WarehouseError, match="unknown field"):
        wh.record_request({"conid": 1})
        wh.close()


def test_reader_sees_no_error_and_no_double_count_during_commits(tmp_path):
    """A snapshot's data files are never changed, so a reader reading the latest snapshot's file list
    while commits land needs no retry (the old in-place replaces failed a few % of such reads)."""
    wh = Warehouse.open(tmp_path, simulated=True)
    done = threading.Event()
    problems: list[str] = []
    reads = 0

    def consistent_count(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
        if not (tmp_path / "bars" / "_delta_log").is_dir():
            return (0, 0)
        files = [str(f) for f in data_files(tmp_path)]
        if not files:  # the table is created empty before its first commit
            return (0, 0)
        return con.execute(f"SELECT count(*), count(DISTINCT (con_id, ts)) FROM read_parquet({files})").fetchall()[0]

    def reader() -> None:
        nonlocal reads
        con = duckdb.connect()
        while not done.is_set() and reads < 2000:
            try:
                total, distinct = consistent_count(con)
            except Exception as exc:  # noqa: BLE001 - any failure in the reader is the finding
                problems.append(repr(exc)[:300])
                continue
            reads += 1
            if total != distinct:
                problems.append(f"double count {total} vs {distinct}")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(12):
            req = request(1 + i % 3, date(2024, 6, 3) + timedelta(days=i // 3))
            wh.stage(req, Outcome.BARS, bars_for(req, 10.0 + i), symbol="S")
            wh.stage(req, Outcome.BARS, bars_for(req, 20.0 + i), symbol="S")
            wh.commit()
    finally:
        done.set()
        thread.join(timeout=60)
    assert problems == []
    assert reads > 0
    assert len(read_bars(tmp_path)) == 12 * 30


def test_disk_full_is_a_clear_error_and_leaves_store_untouched(tmp_path):
    wh = Warehouse.open(tmp_path, simulated=True)
    req = request(1, date(2024, 6, 3))
    wh.stage(req, Outcome.BARS, bars_for(req), symbol="AAA")
    wh.commit()
    before = read_bars(tmp_path)
    big = request(1, date(2024, 6, 4), minutes=600)
    wh.stage(big, Outcome.BARS, bars_for(big), symbol="AAA")
    child = f"""
import resource, signal, sys
from harvester.warehouse.store import Warehouse, WarehouseError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
try:
    Warehouse.open({str(tmp_path)!r}, simulated=True).commit()
except WarehouseError as exc:
    print(exc)
    sys.exit(3)
"""
    done = subprocess.run([sys.executable, "-c", child], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "cannot write" in done.stdout and "bars" in done.stdout and "File too large" in done.stdout
    pd.testing.assert_frame_equal(read_bars(tmp_path), before)
    assert not wh.coverage().covers(big.series, big.start, big.end)
    wh.commit()
    assert len(read_bars(tmp_path)) == 30 + 600


def sorted_by_symbol_ts(path) -> bool:
    rows = pq.read_table(path, columns=["symbol", "ts"]).to_pandas()
    return rows.equals(rows.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True))


def test_a_partition_bigger_than_one_batch_is_written_sorted_by_symbol_ts(tmp_path):
    """delta-rs writes the batches of one write concurrently: a partition's rows handed over as several
    batches (DuckDB's merge returns ~100 k-row chunks) came out of (symbol, ts) order, so a one-symbol
    read opened most row groups. Committed and compacted files are both checked."""
    wh = Warehouse.open(tmp_path, simulated=True)
    symbols = 40
    for i in range(symbols):  # conIds in the reverse order of the symbols: only a real sort orders them
        req = request(symbols - i, date(2024, 6, 3), minutes=8_000)
        wh.stage(req, Outcome.BARS, bars_for(req, price=10.0 + i), symbol=f"S{i:02d}")
    wh.commit()
    (path,) = data_files(tmp_path)
    assert pq.ParquetFile(path).metadata.num_rows == symbols * 8_000  # 320 k rows: several merge chunks
    assert sorted_by_symbol_ts(path)
    row_groups = pq.ParquetFile(path).metadata
    ranges = [(row_groups.row_group(g).column(0).statistics.min, row_groups.row_group(g).column(0).statistics.max)
              for g in range(row_groups.num_row_groups)]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(ranges))  # one symbol's rows: in one or two row groups
    assert split_partitions(tmp_path) == 1  # two files: work for compaction, which merges them again
    assert compact(tmp_path).partitions_rewritten == 1
    (path,) = data_files(tmp_path)
    assert sorted_by_symbol_ts(path)


def test_rows_handed_to_delta_in_many_chunks_keep_their_order_in_the_file(tmp_path):
    """The same through `DeltaTables.transact` directly, with a table of 8 k-row chunks (what reordered
    most: a month file written from them held each symbol in about two runs)."""
    from harvester.warehouse.delta import DeltaTables
    from harvester.warehouse.layout import BARS, PARTITIONS, PartitionKey, with_partition

    n, symbols = 300_000, 40
    day = pd.Timestamp("2024-06-03 13:30")
    frame = pd.DataFrame({
        "symbol": [f"S{i * symbols // n:02d}" for i in range(n)], "con_id": [1 + i * symbols // n for i in range(n)],
        "ts": day + pd.to_timedelta([i % (n // symbols) for i in range(n)], unit="min"),
        "session_date": date(2024, 6, 3), "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0,
        "wap": 1.2, "bar_count": 3,
    })
    rows = pa.Table.from_pandas(frame, schema=tables.BARS_SCHEMA, preserve_index=False)
    rows = pa.Table.from_batches(rows.to_batches(max_chunksize=8_192))
    key = PartitionKey("1min", "TRADES", True, "2024-06")
    DeltaTables(tmp_path, PARTITIONS).transact(BARS, lambda _: (with_partition(key, rows), None),
                                               tables.BARS_TABLE_SCHEMA)
    (path,) = data_files(tmp_path)
    assert sorted_by_symbol_ts(path)


def test_commit_groups_cut_partitions_in_order_at_most_the_limit_each():
    from harvester.warehouse.layout import PartitionKey
    from harvester.warehouse.store import commit_groups

    keys = [PartitionKey("1min", "TRADES", True, f"2024-{m:02d}") for m in range(1, 6)]
    rows = dict(zip(keys, [30, 30, 50, 10, 10], strict=True))
    assert commit_groups(rows, 60) == [keys[:2], keys[2:4], keys[4:]]
    assert commit_groups(rows, 15) == [[k] for k in keys]  # a partition over the limit goes alone
    assert commit_groups(rows, 1_000) == [keys]


def test_a_commit_rewrites_at_most_commit_rows_per_bars_transaction(tmp_path, monkeypatch):
    """delta-rs holds every partition of a transaction in memory until it ends: a big commit is cut into
    several bars transactions (stored + staged rows each at most COMMIT_ROWS), with the same result."""
    from harvester.warehouse import store

    days = [date(2024, 4, 30), date(2024, 5, 31), date(2024, 6, 3)]  # three monthly partitions
    reference = Warehouse.open(tmp_path / "ref", simulated=True)
    cut = Warehouse.open(tmp_path / "cut", simulated=True)
    for wh in (reference, cut):
        for con_id in (1, 2):
            for day in days:
                req = request(con_id, day)
                wh.stage(req, Outcome.BARS, bars_for(req, 10.0 + con_id), symbol=f"S{con_id}")
    reference.commit()
    monkeypatch.setattr(store, "COMMIT_ROWS", 70)  # 60 rows a partition: one partition a transaction
    before = cut.version()
    stats = cut.commit()
    assert (stats.partitions_written, stats.rows_in_written_files) == (3, 180)
    assert cut.version() - (before or 0) >= 3
    pd.testing.assert_frame_equal(read_bars(tmp_path / "cut"), read_bars(tmp_path / "ref"))
    pd.testing.assert_frame_equal(coverage_rows(tmp_path / "cut"), coverage_rows(tmp_path / "ref"))
