"""Reads that lose a race with an atomic file replacement re-run (queries/retrying.py); other errors do not.

DuckDB 2.0 opens a Parquet file twice per query (bind, then scan); a harvest commit `os.replace`-ing it in
between makes the scan fail with a Thrift error. The race itself is provoked by a writer process replacing
partitions in a loop; the retry path is also driven deterministically, by a partition file whose footer or
pages are garbled (the same DuckDB errors) and that the retry hook puts right before the re-run.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import queries
import tests
from harvester import tables
from queries.connection import shadow_root
from queries.retrying import RetryingConnection, RetryingRelation, RetryPolicy, is_transient, retry_reads
from tests.helpers.warehouses import daily_from_minutes, minute_bars, write_bars

SYMBOLS = ["AAA", "BBB", "CCC"]
ROOT = Path(tests.__file__).resolve().parents[1]  # where `tests` imports from, for the writer process
ROOTS = ("/wh", "/tmp/harvest-views-x")


class Recorder:
    """A RetryPolicy hook and fake sleep that record what happened (and may put the warehouse right)."""

    def __init__(self, before_rerun=None) -> None:
        self.retries: list[tuple[int, str]] = []
        self.slept: list[float] = []
        self.before_rerun = before_rerun

    def policy(self, attempts: int = 4) -> RetryPolicy:
        return RetryPolicy(attempts=attempts, sleep=self.slept.append, on_retry=self.on_retry)

    def on_retry(self, attempt: int, exc: BaseException) -> None:
        self.retries.append((attempt, str(exc)))
        if self.before_rerun is not None:
            self.before_rerun()


@pytest.fixture(scope="module")
def minutes() -> pd.DataFrame:
    return minute_bars(SYMBOLS, "2024-05-01", "2024-06-28")


@pytest.fixture
def warehouse(tmp_path, minutes) -> Path:
    data = tmp_path / "data"
    write_bars(data, minutes, "1 min")
    write_bars(data, daily_from_minutes(minutes), "1 day")
    return data


def garble_footer(path: Path) -> bytes:
    """Overwrite the Thrift footer (keeping its length and the magic) so binding fails; returns the good bytes."""
    good = path.read_bytes()
    length = struct.unpack("<I", good[-8:-4])[0]
    path.write_bytes(good[: -8 - length] + b"\x0f" * length + good[-8:])
    return good


def garble_last_row_group(path: Path) -> bytes:
    """Rewrite with small row groups and garble the last one's page headers: the bind succeeds, the scan fails."""
    pq.write_table(pq.read_table(path), path, row_group_size=2048)
    good = path.read_bytes()
    meta = pq.ParquetFile(path).metadata
    last = meta.row_group(meta.num_row_groups - 1)
    bad = bytearray(good)
    for i in range(meta.num_columns):
        offset = last.column(i).data_page_offset
        bad[offset: offset + 16] = b"\x0f" * 16
    path.write_bytes(bytes(bad))
    return good


def month_file(data: Path, month: str = "2024-06") -> Path:
    return data / f"bars/bar_size=1min/what_to_show=TRADES/use_rth=1/year=2024/{month}.parquet"


def daily_file(data: Path) -> Path:
    return data / "bars/bar_size=1day/what_to_show=TRADES/use_rth=1/year=2024/data.parquet"


# --- classification -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("message", [
    "TProtocolException: Invalid data",
    "don't know what type: \x0f",
    "invalid TType",
    "Out of buffer",
    "Variable-length int over 10 bytes.",
    "Prefetch registered for bytes outside file: /wh/bars/x.parquet",
    'IO Error: Cannot open file "/tmp/harvest-views-x/live/bars/y=1/stray.parquet": No such file or directory',
    'IO Error: Could not read enough bytes from file "/wh/bars/a.parquet": attempted to read 9 bytes from location 3',
    'IO Error: Failed to read file "/wh/bars/a.parquet": ZSTD Decompression failure',
])
def test_file_replacement_errors_are_transient(message):
    assert is_transient(duckdb.Error(message), ROOTS)
    assert is_transient(duckdb.IOException(message), ROOTS)


@pytest.mark.parametrize("exc", [
    duckdb.ParserException('Parser Error: syntax error at or near "selec"'),
    duckdb.BinderException('Binder Error: Referenced column "nope" not found in FROM clause!'),
    duckdb.CatalogException("Catalog Error: Table with name barz does not exist!"),
    duckdb.IOException('IO Error: Cannot open file "/home/me/mine.parquet": No such file or directory'),
    duckdb.IOException('IO Error: No files found that match the pattern "/wh/bars/none.parquet"'),
    duckdb.IOException('IO Error: Cannot open file "/wh/bars/x.parquet": Permission denied'),
    duckdb.ConversionException("Conversion Error: Could not convert string 'x' to INT32"),
    ValueError("TProtocolException: Invalid data"),
])
def test_user_mistakes_and_other_errors_are_not_transient(exc):
    assert not is_transient(exc, ROOTS)


def test_retry_reads_re_runs_a_transient_failure_until_it_succeeds():
    outcomes = [duckdb.Error("invalid TType"), duckdb.Error("TProtocolException: Invalid data"), "rows"]
    calls = []
    rec = Recorder()

    def flaky() -> str:
        calls.append(1)
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert retry_reads(flaky, ROOTS, rec.policy()) == "rows"
    assert len(calls) == 3
    assert [attempt for attempt, _ in rec.retries] == [1, 2]
    assert rec.slept == [0.02]  # the first re-run is immediate: the race is over by then


def test_retry_reads_gives_up_after_the_policy_attempts_with_the_last_error():
    calls = []
    rec = Recorder()

    def always() -> None:
        calls.append(1)
        raise duckdb.Error(f"don't know what type: {len(calls)}")

    with pytest.raises(duckdb.Error, match="don't know what type: 3"):
        retry_reads(always, ROOTS, rec.policy(attempts=3))
    assert len(calls) == 3 and len(rec.retries) == 2


def test_retry_reads_raises_a_non_transient_error_at_once():
    calls = []
    rec = Recorder()

    def typo() -> None:
        calls.append(1)
        raise duckdb.ParserException('Parser Error: syntax error at or near "selec"')

    with pytest.raises(duckdb.ParserException):
        retry_reads(typo, ROOTS, rec.policy())
    assert len(calls) == 1 and rec.retries == []


class FakeConnection:
    """Stands in for a DuckDB connection whose streamed rows fail to arrive once (DuckDB fetches lazily)."""

    def __init__(self, failures: int) -> None:
        self.executed: list[str] = []
        self.failures = failures

    def execute(self, query, parameters=None):
        self.executed.append(query)
        return self

    def fetchall(self):
        if self.failures:
            self.failures -= 1
            raise duckdb.Error("TProtocolException: Invalid data")
        return [(len(self.executed),)]


def test_a_fetch_that_fails_runs_its_statement_again_but_only_before_any_row_came_out():
    rec = Recorder()
    fake = FakeConnection(failures=1)
    con = RetryingConnection(fake, ROOTS, rec.policy())
    assert con.execute("SELECT count(*) FROM bars").fetchall() == [(2,)]
    assert fake.executed == ["SELECT count(*) FROM bars"] * 2 and len(rec.retries) == 1
    fake.failures = 1
    with pytest.raises(duckdb.Error):
        con.fetchall()  # the rows of that execute were handed out already: nothing to start over
    fake.failures = 1
    with pytest.raises(duckdb.Error):
        con.execute("CREATE TABLE t AS SELECT 1; SELECT 2").fetchall()  # the earlier write must not run twice
    assert fake.executed[-1] == "CREATE TABLE t AS SELECT 1; SELECT 2" and len(rec.retries) == 1


# --- real DuckDB errors, made deterministic ------------------------------------------------------------------


def test_a_query_whose_partition_was_replaced_between_bind_and_scan_is_re_run(warehouse, minutes):
    target = month_file(warehouse)
    good = garble_last_row_group(target)
    rec = Recorder(before_rerun=lambda: target.write_bytes(good))
    con = queries.connect(warehouse, policy=rec.policy())
    assert con.execute("SELECT count(*), sum(volume) FROM bars WHERE bar_size = '1 min'").fetchall() == [
        (len(minutes), minutes.volume.sum())]
    assert len(rec.retries) == 1 and "know what type" in rec.retries[0][1]


def test_rows_that_fail_to_stream_in_after_execute_run_the_statement_again(warehouse, minutes):
    target = month_file(warehouse)
    good = garble_last_row_group(target)
    rec = Recorder(before_rerun=lambda: target.write_bytes(good))
    con = queries.connect(warehouse, policy=rec.policy())
    con.execute("SET threads = 1")  # one thread streams row group by row group: the bad one is met in the fetch
    con.execute("SELECT * FROM bars WHERE bar_size = '1 min' AND symbol = 'CCC'")
    assert rec.retries == []
    assert len(con.fetchall()) == (minutes.symbol == "CCC").sum()
    assert len(rec.retries) == 1


def test_the_issue_notebook_query_relations_and_bars_retry(warehouse, minutes):
    daily = daily_from_minutes(minutes)
    expected = daily.groupby("symbol").close.max().sort_index()
    restore: dict[Path, bytes] = {}
    rec = Recorder(before_rerun=lambda: [path.write_bytes(good) for path, good in restore.items()])
    con = queries.connect(warehouse, policy=rec.policy())

    restore[daily_file(warehouse)] = garble_footer(daily_file(warehouse))
    got = con.sql("select symbol, max(close) from bars where bar_size='1 day' group by 1").df()
    assert got.set_index("symbol").iloc[:, 0].sort_index().tolist() == pytest.approx(expected.tolist())
    assert len(rec.retries) == 1

    target = month_file(warehouse)
    restore = {target: garble_last_row_group(target)}
    rel = con.sql("select * from bars where bar_size = '1 min'").filter("symbol = 'CCC'")
    assert isinstance(rel, RetryingRelation)
    chained = rel.aggregate("count(*) AS n").limit(5)
    assert isinstance(chained, RetryingRelation)
    assert chained.fetchall() == [((minutes.symbol == "CCC").sum(),)]
    assert len(rec.retries) == 2

    garble_footer(target)
    june = queries.bars(["AAA", "CCC"], "1 min", "2024-06-01", "2024-07-01", con=con)
    want = minutes[minutes.symbol.isin(["AAA", "CCC"]) & (minutes.ts >= "2024-06-01")]
    assert len(june) == len(want) and june.ts.is_monotonic_increasing is False  # two symbols, sorted (symbol, ts)
    assert june.groupby("symbol").ts.is_monotonic_increasing.all()
    assert len(rec.retries) == 3


def test_a_persistently_corrupt_file_is_reported_after_the_policy_attempts(warehouse):
    garble_footer(month_file(warehouse))
    rec = Recorder()
    con = queries.connect(warehouse, policy=rec.policy(attempts=3))
    with pytest.raises(duckdb.Error, match="know what type"):
        con.sql("SELECT count(*) FROM bars").fetchall()
    assert len(rec.retries) == 2


@pytest.mark.parametrize(("sql", "error"), [
    ("selec symbol from bars", duckdb.ParserException),
    ("select nope from bars", duckdb.BinderException),
    ("select * from barz", duckdb.CatalogException),
    ("select * from read_parquet('/nonexistent/dir/x.parquet')", duckdb.IOException),
    ("select 1/0::INTEGER, 'x'::INTEGER", duckdb.ConversionException),
])
def test_a_non_transient_error_is_raised_at_once_and_not_retried(warehouse, sql, error):
    rec = Recorder()
    con = queries.connect(warehouse, policy=rec.policy())
    with pytest.raises(error):
        con.sql(sql).fetchall()
    with pytest.raises(error):
        con.execute(sql).fetchall()
    assert rec.retries == [] and rec.slept == []


def test_the_wrapper_behaves_as_a_duckdb_connection(warehouse, minutes):
    frame = pd.DataFrame({"symbol": ["AAA", "BBB"], "weight": [1.0, 2.0]})  # noqa: F841 - read by name in SQL
    with queries.connect(warehouse) as con:
        assert isinstance(con.raw, duckdb.DuckDBPyConnection)
        assert con.sql("select sum(weight) from frame").fetchall() == [(3.0,)]  # a local DataFrame is found
        daily = con.table("bars").filter("bar_size = '1 day'")
        assert con.execute("select count(*) from daily").fetchall() == [(len(daily_from_minutes(minutes)),)]
        joined = daily.join(con.sql("select * from frame"), "symbol").aggregate("sum(weight)")
        assert isinstance(joined, RetryingRelation)
        assert joined.fetchall()[0][0] > 0
        assert con.execute("select ? + 1", [41]).fetchone() == (42,) and con.fetchone() is None
        assert con.execute("select 1 union all select 2").fetchmany(1) == [(1,)] and con.fetchall() == [(2,)]
        assert len(con.view("series")) == 0 and "symbol" in con.view("bars").columns
        assert con.sql("select 1 AS x").to_arrow_table() == pa.table({"x": pa.array([1], pa.int32())})
        queries.restrict(con, warehouse)
        with pytest.raises(duckdb.PermissionException):
            con.sql("select * from read_csv('/etc/passwd')").fetchall()


# --- the race itself ------------------------------------------------------------------------------------------


def replace_loop(data_dir: str, rounds: int) -> None:
    """The writer process: atomically rewrite every partition `rounds` times (same rows, other row groups, as
    compaction does) and create + delete an empty stray file beside them, as the harvest's commits would."""
    files = sorted(Path(data_dir).glob("bars/*/*/*/*/*.parquet"))
    originals = {path: pq.read_table(path) for path in files}
    print("ready", flush=True)
    for i in range(rounds):
        for path, table in originals.items():
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{i}")
            pq.write_table(table, tmp, row_group_size=(512, 4096, 65_536)[i % 3], compression="zstd")
            os.replace(tmp, path)
        stray = files[0].with_name("stray.parquet")
        pq.write_table(tables.BARS_SCHEMA.empty_table(), stray.with_name(".stray.tmp"))
        os.replace(stray.with_name(".stray.tmp"), stray)
        stray.unlink()


def test_reader_loop_sees_no_error_while_partitions_are_replaced(warehouse, minutes):
    daily = daily_from_minutes(minutes)
    want_total = (len(minutes) + len(daily), minutes.volume.sum() + daily.volume.sum())
    want_daily = daily.groupby("symbol").close.max().round(9).to_dict()
    want_june = int((minutes.ts >= "2024-06-01").sum())
    rec = Recorder()
    con = queries.connect(warehouse, policy=RetryPolicy(on_retry=rec.on_retry))
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from {__name__} import replace_loop; "
            f"replace_loop({str(warehouse)!r}, 60)")
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ready"
    reads, errors, wrong = 0, [], []
    deadline = time.monotonic() + 120
    while writer.poll() is None and time.monotonic() < deadline:
        try:
            kind = reads % 3
            if kind == 0:
                got = con.execute("SELECT count(*), sum(volume) FROM bars").fetchall()[0]
                ok = got[0] == want_total[0] and got[1] == pytest.approx(want_total[1])
            elif kind == 1:
                frame = con.sql("select symbol, max(close) from bars where bar_size='1 day' group by 1").df()
                ok = dict(zip(frame.iloc[:, 0], frame.iloc[:, 1].round(9))) == want_daily
            else:
                ok = len(queries.bars(None, "1 min", "2024-06-01", "2024-07-01", con=con)) == want_june
            if not ok:
                wrong.append(kind)
        except Exception as exc:  # noqa: BLE001 - every failure the reader meets is the finding
            errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        reads += 1
    assert writer.wait(timeout=60) == 0
    figures = {"reads": reads, "retried": len(rec.retries), "failed": len(errors), "wrong": len(wrong)}
    print("\nconcurrent reader:", json.dumps(figures), {msg.split(":")[0] for _, msg in rec.retries})
    assert errors == [], f"{len(errors)} of {reads} reads failed: {errors[:3]}"
    assert wrong == []
    assert reads >= 30


def test_shadow_root_is_one_of_the_retry_roots(warehouse):
    con = queries.connect(warehouse)
    assert str(shadow_root(warehouse.resolve())) in con.roots and str(warehouse.resolve()) in con.roots
