"""`queries.bars()`: stored reads with partition predicates, bad input, and fetch='missing' via the simulator."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest

import queries
from harvester import SeriesKey, Warehouse
from queries.readthrough import BarsRequestError, run_in_worker_thread
from tests.helpers.gateways import next_client_id
from tests.helpers.s3 import free_ports
from tests.helpers.warehouses import daily_from_minutes, minute_bars, write_bars

SYMBOLS = ["AAA", "BBB", "CCC"]


def run_in_fresh_loop(coro):
    """Like asyncio.run, but leaves the main thread's current loop alone (ib_insync tests rely on it)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    data_dir = tmp_path_factory.mktemp("rt")
    minutes = minute_bars(SYMBOLS, "2024-05-28", "2024-06-04", seed=11)
    write_bars(data_dir, minutes, "1 min")
    write_bars(data_dir, daily_from_minutes(minutes), "1 day")
    return data_dir, minutes


@pytest.mark.parametrize(("symbols", "start", "end"), [
    (["BBB"], "2024-05-31 15:00", "2024-06-03 14:00"),  # crosses the month files
    (["AAA", "CCC"], "2024-06-03", "2024-06-04"),
    (None, "2024-05-30 19:59", "2024-05-30 20:01"),
    (["AAA"], None, "2024-05-29"),
    (["CCC"], "2024-06-04 19:00", None),
])
def test_bars_returns_exactly_the_stored_rows_in_range(stored, symbols, start, end) -> None:
    data_dir, minutes = stored
    got = queries.bars(symbols, "1 min", start, end, data_dir=data_dir)
    day = pd.to_datetime(minutes.session_date)  # a date bound is an exchange date, an end date included
    after = (day >= pd.Timestamp(start)) if start and len(start) == 10 else minutes.ts >= pd.Timestamp(start or "1900")
    before = (day <= pd.Timestamp(end)) if end and len(end) == 10 else minutes.ts < pd.Timestamp(end or "2100")
    want = minutes[minutes.symbol.isin(symbols or SYMBOLS) & after & before].sort_values(["symbol", "ts"])
    assert len(want) > 0
    assert list(got.columns[:7]) == ["symbol", "con_id", "bar_size", "what_to_show", "use_rth", "ts", "session_date"]
    assert (got.bar_size == "1 min").all() and got.use_rth.all()
    assert list(got.ts) == list(want.ts.dt.tz_localize("UTC")) and list(got.symbol) == list(want.symbol)
    pd.testing.assert_series_equal(got.close.reset_index(drop=True), want.close.reset_index(drop=True))


def test_timezone_aware_bounds_are_converted_to_utc(stored) -> None:
    data_dir, _ = stored
    got = queries.bars("AAA", "1 min", pd.Timestamp("2024-06-03 09:30", tz="America/New_York"),
                       pd.Timestamp("2024-06-03 09:35", tz="America/New_York"), data_dir=data_dir)
    assert list(got.ts) == list(pd.date_range("2024-06-03 13:30", periods=5, freq="1min", tz="UTC"))


def test_daily_bars_and_arrow_output(stored) -> None:
    data_dir, minutes = stored
    table = queries.bars(SYMBOLS, "1 day", "2024-05-01", "2024-07-01", data_dir=data_dir, as_="arrow")
    assert table.num_rows == minutes.groupby(["symbol", "session_date"]).ngroups
    assert set(table.column("bar_size").to_pylist()) == {"1 day"}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"bar_size": "7 mins"}, "unknown bar size"),
    ({"fetch": "always"}, "fetch='always'"),
    ({"as_": "excel"}, "as_='excel'"),
    ({"start": "2024-06-02", "end": "2024-06-01"}, "not before end"),
    ({"start": "yesterday-ish"}, "start='yesterday-ish'"),
    ({"symbols": ["AAA", ""]}, "symbol ''"),
])
def test_bad_arguments_raise_a_named_error(stored, kwargs, message) -> None:
    data_dir, _ = stored
    args = {"symbols": "AAA", **kwargs}
    with pytest.raises(BarsRequestError, match=message):
        queries.bars(args.pop("symbols"), data_dir=data_dir, **args)


def test_worker_thread_runs_blocking_code_under_a_running_loop() -> None:
    async def notebook_cell() -> int:
        return run_in_worker_thread(lambda: asyncio.run(asyncio.sleep(0, result=42)))

    assert run_in_fresh_loop(notebook_cell()) == 42


def test_fetch_missing_harvests_from_the_simulator_then_reads(tmp_path: Path, make_gateway) -> None:
    gateway = make_gateway()
    options = {"pacing_scale": 0.01}
    kwargs = {"fetch": "missing", "host": "127.0.0.1", "port": gateway.port, "data_dir": tmp_path,
              "job_options": options}
    first = queries.bars(["AAPL", "MSFT"], "1 day", "2024-06-03", "2024-06-08", client_id=next_client_id(),
                         **kwargs)
    assert sorted(set(first.symbol)) == ["AAPL", "MSFT"]
    assert sorted(set(first.session_date.astype(str))) == [f"2024-06-0{d}" for d in range(3, 8)]
    con = queries.connect(tmp_path)
    requests = con.execute("SELECT count(*) FROM journal WHERE kind = 'bars'").fetchall()[0][0]
    assert requests > 0
    async def notebook_cell() -> pd.DataFrame:  # Jupyter runs cells inside a running event loop
        return queries.bars(["AAPL", "MSFT"], "1 day", "2024-06-03", "2024-06-08", client_id=next_client_id(),
                            **kwargs)

    again = run_in_fresh_loop(notebook_cell())
    pd.testing.assert_frame_equal(first, again)
    assert con.execute("SELECT count(*) FROM journal WHERE kind = 'bars'").fetchall()[0][0] == requests


def test_a_bounded_read_by_file_list_equals_the_glob_view(stored) -> None:
    """bars() names partition files itself (layout.partition_files); the glob view must agree row for row."""
    data_dir, _ = stored
    start, end = datetime(2024, 5, 31, 15), datetime(2024, 6, 3, 14)
    con = queries.connect(data_dir)
    by_files = queries.bars(["AAA", "BBB"], "1 min", start, end, con=con, data_dir=data_dir)
    by_view = con.execute("SELECT * FROM bars WHERE symbol IN ('AAA', 'BBB') AND bar_size = '1 min' AND ts >= ? "
                          "AND ts < ? ORDER BY symbol, ts", [start, end]).df()
    assert len(by_files) > 0
    pd.testing.assert_frame_equal(by_files, by_view, check_dtype=False)


def test_bounded_read_of_an_empty_warehouse_is_an_empty_typed_frame(tmp_path: Path) -> None:
    got = queries.bars("AAA", "1 min", "2024-06-01", "2024-06-02", data_dir=tmp_path)
    assert got.empty and list(got.columns)[:3] == ["symbol", "con_id", "bar_size"]


# -- strict arguments (issue 18, item 7) -------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"what_to_show": "BOGUS"}, "what_to_show='BOGUS'; expected one of TRADES, MIDPOINT"),
    ({"what_to_show": 3}, "what_to_show=3"),
    ({"use_rth": "false"}, "use_rth='false'; expected True or False"),
    ({"use_rth": 1}, "use_rth=1"),
    ({"start": 20230703}, "start=20230703: give a date"),
    ({"end": 1.7e18}, "end=1.7e[+]18: give a date"),
    ({"start": "07/03/2023"}, "start='07/03/2023' is not an ISO 8601"),
    ({"fetch": "missing", "lock_timeout": -1}, "lock_timeout=-1"),
])
def test_loose_arguments_are_refused_by_name(stored, kwargs, message) -> None:
    data_dir, _ = stored
    with pytest.raises(BarsRequestError, match=message):
        queries.bars("AAA", "1 min", data_dir=data_dir, **kwargs)


def test_what_to_show_is_case_insensitive_and_no_symbols_is_an_empty_typed_frame(stored) -> None:
    data_dir, _ = stored
    lower = queries.bars("AAA", "1 min", "2024-06-03", "2024-06-03", what_to_show="trades", data_dir=data_dir)
    assert len(lower) == 390 and set(lower.what_to_show) == {"TRADES"}
    none = queries.bars([], "1 min", "2024-06-03", "2024-06-03", data_dir=data_dir)
    assert none.empty and list(none.columns) == list(lower.columns)
    assert list(none.dtypes) == list(lower.dtypes)
    assert len(queries.bars(None, "1 min", "2024-06-03", "2024-06-03", data_dir=data_dir)) == 3 * 390


def test_con_and_data_dir_must_name_one_warehouse(stored, tmp_path: Path) -> None:
    data_dir, _ = stored
    con = queries.connect(data_dir)
    with pytest.raises(BarsRequestError, match="con reads the warehouse .* but data_dir names"):
        queries.bars("AAA", "1 min", "2024-06-03", "2024-06-04", con=con, data_dir=tmp_path)
    same = queries.bars("AAA", "1 min", con=con, data_dir=data_dir)  # the same one, named twice: fine
    assert len(same) == len(queries.bars("AAA", "1 min", "2024-05-01", "2024-07-01", con=con))


# -- the read path needs only what it uses (issue 18, item 3) ----------------------------------------------

class Waits(logging.Handler):
    """Counts "waiting for another harvest" warnings; `until(n)` blocks until n were logged."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []
        self._seen = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._seen:
            self.messages.append(record.getMessage())
            self._seen.notify_all()

    def until(self, n: int, timeout: float = 60) -> None:
        with self._seen:
            assert self._seen.wait_for(lambda: len(self.messages) >= n, timeout), self.messages


@pytest.fixture
def waits() -> Waits:
    handler = Waits()
    logger = logging.getLogger("queries.readthrough")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def hold(data_dir: Path, symbols: list[str]) -> Warehouse:
    """Another live harvest (its own run) holding these symbols' daily TRADES series."""
    con_ids = queries.connect(data_dir).execute(
        f"SELECT con_id FROM contracts WHERE symbol IN ({', '.join('?' * len(symbols))})", symbols).fetchall()
    holder = Warehouse.open(data_dir, simulated=True)
    assert holder.claim([SeriesKey(c, "1 day", "TRADES", True) for (c,) in con_ids]) == {}
    return holder


def test_a_covered_read_needs_no_gateway_nor_claim_and_a_held_one_says_who(tmp_path: Path, make_gateway) -> None:
    gateway = make_gateway()
    options = {"job_options": {"pacing_scale": 0.01}, "data_dir": tmp_path, "fetch": "missing"}
    first = queries.bars(["AAPL", "MSFT"], "1 day", "2024-06-03", "2024-06-08", port=gateway.port,
                         client_id=next_client_id(), **options)
    assert len(first) == 10
    holder = hold(tmp_path, ["AAPL", "MSFT"])  # a nightly run holds both series
    claims = queries.connect(tmp_path).execute("SELECT * FROM claims ORDER BY con_id").fetchall()
    try:
        nobody_listens = free_ports(1)[0]
        again = queries.bars(["AAPL", "MSFT"], "1 day", "2024-06-03", "2024-06-08", port=nobody_listens, **options)
        pd.testing.assert_frame_equal(first, again)
        assert queries.connect(tmp_path).execute("SELECT * FROM claims ORDER BY con_id").fetchall() == claims
        with pytest.raises(queries.FetchBlocked, match=re.escape(f"held by run {holder.run_id} (pid {os.getpid()}")) as blocked:
            queries.bars(["AAPL", "MSFT"], "1 day", "2024-06-03", "2024-06-12", port=gateway.port,
                         client_id=next_client_id(), lock_timeout=0.2, **options)
    finally:
        holder.claims.release()
    assert len(blocked.value.held) == 2
    pd.testing.assert_frame_equal(blocked.value.bars, first)  # what is stored of 06-03..06-11: the first read


def test_two_notebooks_fetching_at_once_both_end_with_their_data(tmp_path: Path, make_gateway, waits) -> None:
    gateway = make_gateway()
    options = {"job_options": {"pacing_scale": 0.01}, "data_dir": tmp_path, "fetch": "missing",
               "port": gateway.port, "lock_timeout": 60}
    queries.bars(["AAPL", "MSFT", "JPM"], "1 day", "2024-06-03", "2024-06-04", client_id=next_client_id(),
                 **options)  # the contracts are known
    asks = {"one": ["AAPL", "MSFT"], "two": ["JPM", "MSFT"]}
    results: dict[str, pd.DataFrame] = {}

    def notebook(name: str, client_id: int) -> None:
        results[name] = queries.bars(asks[name], "1 day", "2024-06-03", "2024-06-08", client_id=client_id,
                                     **options)

    holder = hold(tmp_path, ["AAPL", "MSFT", "JPM"])  # a nightly run holds them while both notebooks start
    threads = [threading.Thread(target=notebook, args=(name, next_client_id())) for name in asks]
    for t in threads:
        t.start()
    try:
        waits.until(2)
    finally:
        holder.claims.release()
    for t in threads:
        t.join(timeout=60)
    assert all(f"held by run {holder.run_id}" in m for m in waits.messages[:2])
    for name, symbols in asks.items():
        assert sorted(set(results[name].symbol)) == symbols and len(results[name]) == 10


def test_a_read_names_only_the_files_whose_bars_reach_into_its_range(stored) -> None:
    """A session date is within a day of its bars, so the periods of June 1-4 include May; the Delta log's
    `ts` statistics tell that the May file ends before June and it is not read. One symbol's rows from the
    files of both months come back in ts order without a sort: each file's bars end before the next's."""
    from harvester import BAR_SIZES
    from queries.connection import BarsFile, one_after_another, series_files, snapshot_of

    data_dir, minutes = stored
    index = snapshot_of(queries.connect(data_dir)).files
    june = series_files(index, BAR_SIZES["1 min"], "TRADES", True, datetime(2024, 6, 1), datetime(2024, 6, 4))
    assert [f.period for f in june] == ["2024-06"]
    both = series_files(index, BAR_SIZES["1 min"], "TRADES", True, datetime(2024, 5, 29), datetime(2024, 6, 4))
    assert [f.period for f in both] == ["2024-05", "2024-06"] and one_after_another(both)
    assert not one_after_another(both[::-1])
    unknown = BarsFile("2024-05", "x.parquet", None, None, None, None)  # a file written without statistics is always read
    assert unknown.may_hold({"2024-05"}, datetime(2024, 6, 1), datetime(2024, 6, 2))
    assert not one_after_another([both[0], unknown])
    by_dates = series_files(index, BAR_SIZES["1 min"], "TRADES", True, date(2024, 6, 1), date(2024, 6, 3))
    assert [f.period for f in by_dates] == ["2024-06"]  # exchange dates: by the files' session dates
    assert [f.period for f in series_files(index, BAR_SIZES["1 min"], "TRADES", True, date(2024, 5, 31),
                                           date(2024, 6, 3))] == ["2024-05", "2024-06"]
    got = queries.bars("BBB", "1 min", "2024-05-29T00:00", "2024-06-04T00:00", data_dir=data_dir)
    want = minutes[(minutes.symbol == "BBB") & (minutes.ts >= "2024-05-29") & (minutes.ts < "2024-06-04")]
    assert len(want) > 0 and list(got.ts) == sorted(want.ts.dt.tz_localize("UTC"))
