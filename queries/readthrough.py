"""`bars()`: the stored bars of some symbols as a DataFrame, fetching only what is missing when allowed.

DuckDB cannot derive the partition from a filter on `ts`, so this helper takes from the latest snapshot (or
the connection's pinned one, indexed when it was opened) the data files of the series' partitions in the
range (`layout.periods_for`) whose bars, by the Delta log's statistics, reach into it, and hands DuckDB
exactly those (measured fastest; see bench/queries.py). Symbols mean conIds
(queries/identity.py): a renamed conId's whole history comes back, two conIds under one name never mix.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
import warnings
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

import harvester
from harvester import (
    WHAT_TO_SHOW,
    BarSize,
    ContractSpec,
    DeltaTables,
    duckdb_source,
    layout,
    parquet_source,
    resolve_settings,
    tables,
)
from harvester import bar_size as lookup_bar_size
from queries.connection import (
    BARS_COLUMNS,
    BarsFile,
    FileIndex,
    bars_file_index,
    existing_warehouse,
    in_utc,
    naming_damage,
    one_after_another,
    refresh,
    resolve_data_dir,
    series_files,
    snapshot_instant,
    snapshot_of,
)
from queries.identity import BarsRequestError, Chosen, as_instant, choose, normalise, symbol_rows
from queries.rowgroups import read_point

FETCH_MODES = ("missing", "never")
OUTPUT_KINDS = ("pandas", "arrow", "polars")
PANDAS_DATE = "datetime64[us]"  # a DATE as DuckDB's .df() gives it (README "Types")
LOCK_TIMEOUT_S = 60.0  # how long fetch='missing' waits by default for series another harvest holds
log = logging.getLogger(__name__)


class FetchError(RuntimeError):
    """fetch='missing' could not complete: the harvest reported failed series (named in the message)."""


class FetchWarning(UserWarning):
    """fetch='missing' fetched what it could, but some symbols failed (unknown, no permission, gave up):
    `bars()` returns what is stored and warns with this, naming each failed symbol and why (`failures`:
    symbol → reasons), as pandas warns rather than raises when a result is usable but incomplete. To make it
    an error: `warnings.simplefilter("error", queries.FetchWarning)`."""

    def __init__(self, message: str, failures: dict[str, list[str]]) -> None:
        super().__init__(message)
        self.failures = failures


class FetchBlocked(FetchError):
    """fetch='missing' found bars missing, but another harvest held (claimed) some of the series for all of
    `lock_timeout`. `bars` holds what is stored for the request (as `as_` asked); `held` names each held
    series and its holder (run, pid, host, claim expiry)."""

    def __init__(self, message: str, bars: Any, held: dict[Any, str]) -> None:
        super().__init__(message)
        self.bars, self.held = bars, held


def to_bound(value: str | date | datetime | pd.Timestamp | np.datetime64 | None, name: str
             ) -> date | datetime | None:
    """A bound of `bars()`: a date (a `date`, or an ISO string with no time: '2024-06-03') is an exchange date,
    the `session_date` of the series' bars; anything with a time is an instant, as naive UTC (naive inputs
    are taken as UTC; `bars_query` binds it aware, as `ts` is stored).

    Only unambiguous values pass: dates, datetimes, Timestamps, datetime64 and ISO 8601 strings. A number
    (is 20230703 a date or epoch nanoseconds?) or another spelling ("07/03/2023") is refused."""
    if value is None:
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            if len(value.strip()) == 10:
                return date.fromisoformat(value.strip())
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise BarsRequestError(f"{name}={value!r} is not an ISO 8601 date or time (e.g. '2024-06-03' or "
                                   "'2024-06-03 13:30')") from None
    elif not isinstance(value, (date, np.datetime64)):  # pd.Timestamp and datetime are dates too
        raise BarsRequestError(f"{name}={value!r}: give a date, a datetime or an ISO 8601 string, "
                               f"not {type(value).__name__}")
    ts = pd.Timestamp(value)
    if ts is pd.NaT:
        raise BarsRequestError(f"{name}={value!r} is not a date or time")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_pydatetime()


def _what_to_show(value: object) -> str:
    """whatToShow, case-insensitive, as IB spells it."""
    name = value.strip().upper() if isinstance(value, str) else None
    if name not in WHAT_TO_SHOW:
        raise BarsRequestError(f"what_to_show={value!r}; expected one of {', '.join(WHAT_TO_SHOW)}")
    return name


def _use_rth(value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise BarsRequestError(f"use_rth={value!r}; expected True or False")
    return bool(value)


def bars_query(symbols: list[str] | None, size: BarSize, start: date | datetime | None, end: date | datetime | None,
               what_to_show: str, use_rth: bool, files: list[str], source: str | None = None,
               con_ids: list[int] | None = None, loose: list[str] = (), files_in_ts_order: bool = False
               ) -> tuple[str, list[Any]]:
    """SQL + parameters for `bars()` over the series' data files `files` (already pruned to the range),
    read through `source` when given (an S3 warehouse's registered dataset): rows stored under `symbols`
    (None: any, []: none; row groups are pruned by it) of `con_ids` when given, and rows stored under the
    `loose` names whatever their conId. A date bound is a session date (both ends included), an instant
    bounds `ts` ([start, end))."""
    where: list[str] = []
    params: list[Any] = [size.ib_name, what_to_show, use_rth]
    chosen, chosen_params = [], []
    if symbols is not None:
        chosen.append(f"symbol IN ({', '.join('?' * len(symbols))})" if symbols else "false")
        chosen_params += symbols
    if con_ids is not None:
        chosen.append(f"con_id IN ({', '.join('?' * len(con_ids))})" if con_ids else "false")
        chosen_params += con_ids
    if loose:
        where.append(f"(({' AND '.join(chosen) or 'false'}) OR symbol IN ({', '.join('?' * len(loose))}))")
        params += chosen_params + list(loose)
    else:
        where += chosen
        params += chosen_params
    if start is not None:
        where.append("ts >= ?" if isinstance(start, datetime) else "session_date >= ?")
        params.append(_aware(start))  # a TIMESTAMPTZ whatever the session's TimeZone
    if end is not None:
        where.append("ts < ?" if isinstance(end, datetime) else "session_date <= ?")
        params.append(_aware(end))
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    columns = BARS_COLUMNS.replace("bar_size", "? AS bar_size").replace("what_to_show", "? AS what_to_show")
    columns = columns.replace("use_rth", "?::BOOLEAN AS use_rth")
    # One data file is already sorted by (symbol, ts) (a layout invariant) and DuckDB keeps file order
    # through a filter (preserve_insertion_order); sorting again cost ~20 % of a symbol-month read. One
    # symbol's rows from `files_in_ts_order` (each file's bars before the next's) are sorted too: ~25 % of a year.
    one_name = symbols is not None and len(symbols) + len(loose) == 1
    ordered = (len(files) == 1 and len(symbols or ()) + len(loose) <= 1) or (files_in_ts_order and one_name)
    order = "" if ordered else " ORDER BY symbol, ts"
    # One series' files share their partition values and schema: no hive parsing, no footer union needed.
    source = source or parquet_source(files, tables.BARS_TABLE_SCHEMA, union=False)
    return f"SELECT {columns} FROM {source}{clause}{order}", params


_indexes: dict[tuple[str, int], FileIndex] = {}


def latest_files(directory: Path | str, size: BarSize, what_to_show: str, use_rth: bool,
                 start: date | datetime | None, end: date | datetime | None) -> list[BarsFile]:
    """The series' data files in the latest snapshot that may hold bars of `bars()`'s range."""
    store = DeltaTables(directory, layout.PARTITIONS)
    snapshot = _latest(store)
    if snapshot is None:
        return []
    key = (store.uri(layout.BARS), snapshot.version())
    if key not in _indexes:
        if len(_indexes) > 16:
            _indexes.clear()
        _indexes[key] = bars_file_index(store, snapshot)
    return series_files(_indexes[key], size, what_to_show, use_rth, start, end)


_reader = in_utc(duckdb.connect())  # what bars() without a connection reads through: a new database costs 20-70 ms


_open_tables: dict[str, DeltaTable] = {}


def _latest(store: DeltaTables, name: str = layout.BARS) -> DeltaTable | None:
    """A table at its latest version, kept open between calls: catching up on the log costs ~1 ms,
    opening it ~5 ms (measured), most of a one-symbol-month read."""
    uri = store.uri(name)
    table = _open_tables.get(uri)
    if table is None:
        table = store.open(name)
        if table is not None:
            _open_tables[uri] = table
        return table
    try:
        table.update_incremental()
    except Exception:  # noqa: BLE001 - the table was replaced under us (migrated, recreated): open it anew
        del _open_tables[uri]
        return _latest(store, name)
    return table


_identity_cache: dict[tuple, pd.DataFrame] = {}


def identity_rows(directory: Path | str, as_of: int | datetime | None = None) -> pd.DataFrame:
    """`identity.symbol_rows` of the latest snapshot (tables kept open between calls, rows kept while their
    versions stay), or of the pinned one."""
    store = DeltaTables(directory, layout.PARTITIONS)
    named = ((layout.SYMBOLS, tables.SYMBOLS_SCHEMA), (layout.CONTRACTS, tables.CONTRACTS_SCHEMA))
    opened = [(name, schema, store.open(name, snapshot_instant(store, as_of)) if as_of is not None
               else _latest(store, name)) for name, schema in named]
    key = (store.uri(layout.SYMBOLS), *(None if t is None else t.version() for _, _, t in opened))
    if key not in _identity_cache:
        frames = []
        for name, schema, table in opened:
            if table is None:
                rows = schema.empty_table()
            elif store.location.is_local:  # two small unpartitioned files: pyarrow reads them in ~1 ms
                files = store.files(name, table)
                rows = pa.concat_tables([pq.read_table(f).select(schema.names).cast(schema) for f in files]) \
                    if files else schema.empty_table()
            else:
                rows = store.read(name, schema, table)
            frames.append(rows.to_pandas())
        if len(_identity_cache) > 16:
            _identity_cache.clear()
        _identity_cache[key] = symbol_rows(*frames)
    return _identity_cache[key]


def _normalise_symbols(symbols: str | Iterable[str] | None) -> list[str] | None:
    """IB's spellings, as the universe loader reads them (`BRK.B`, `BF/B` → `BRK B`)."""
    if symbols is None:
        return None
    items = [symbols] if isinstance(symbols, str) else list(symbols)
    for s in items:
        if not isinstance(s, str) or not s.strip():
            raise BarsRequestError(f"symbol {s!r} is not a non-empty string")
    return normalise(items)


def _con_ids(con_id: int | Iterable[int] | None) -> list[int] | None:
    if con_id is None:
        return None
    items = [con_id] if isinstance(con_id, int) and not isinstance(con_id, bool) else con_id
    items = list(items) if isinstance(items, Iterable) else [items]
    if not items or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in items):
        raise BarsRequestError(f"con_id={con_id!r} is not a positive integer (or a list of them)")
    return items


def _exchange(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BarsRequestError(f"exchange={value!r} is not an exchange name")
    return value.strip().upper()


def bars(
    symbols: str | Iterable[str] | None,
    bar_size: str = "1 day",
    start: str | date | datetime | None = None,
    end: str | date | datetime | None = None,
    what_to_show: str = "TRADES",
    use_rth: bool = True,
    fetch: str = "never",
    host: str | None = None,
    port: int | None = None,
    client_id: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    as_: str = "pandas",
    con: duckdb.DuckDBPyConnection | None = None,
    job_options: dict[str, Any] | None = None,
    lock_timeout: float = LOCK_TIMEOUT_S,
    con_id: int | Iterable[int] | None = None,
    exchange: str | None = None,
) -> Any:
    """Bars of `symbols` (None: all; []: none) between `start` and `end`; columns as the `bars` view, sorted
    (symbol, ts). A date (`date(2024, 6, 3)`, '2024-06-03') is an exchange date, as `harvest --start/--end`
    take them: the sessions dated `start` to `end`, both included. A datetime (or an ISO string with a time)
    is an instant: bars starting in [start, end); naive ones are UTC.

    Without `con` every call reads the latest snapshot; with `con` (a `queries.connect()` connection) it reads
    that connection's warehouse and snapshot, so its rows agree with the connection's views (gaps included).
    `data_dir` may name the same warehouse as `con`, never another.

    fetch='missing' first harvests what the range lacks through the harvester (planner, pacer, scheduler,
    writer) from host:port (default: harvester settings); 'never' only reads. When the warehouse already
    covers the range it touches neither the gateway nor the writer lock. When something is missing while
    another harvest holds the lock, it waits up to `lock_timeout` seconds (saying who holds it), then raises
    FetchBlocked carrying the rows it could read. Afterwards `con` is refreshed, so it shows what was fetched
    (a connection pinned with `as_of` cannot: refused). `job_options` sets other HarvestJob fields (e.g.
    {"pacing_scale": 0.01}). Symbols that fail (unknown, no permission) warn with FetchWarning
    naming them; the frame holds what was found. A range after the gateway's now is a BarsRequestError.

    A symbol means the conIds it named in the range (spelled as the universe loader reads it); two of them
    are an error unless `con_id` (one or a list) or `exchange` (exchange or primary exchange) chooses.
    """
    names = _normalise_symbols(symbols)
    con_ids, venue = _con_ids(con_id), _exchange(exchange)
    try:
        size = lookup_bar_size(bar_size)
    except ValueError as exc:
        raise BarsRequestError(str(exc)) from exc
    what, rth = _what_to_show(what_to_show), _use_rth(use_rth)
    if fetch not in FETCH_MODES:
        raise BarsRequestError(f"fetch={fetch!r}; expected one of {', '.join(FETCH_MODES)}")
    if as_ not in OUTPUT_KINDS:
        raise BarsRequestError(f"as_={as_!r}; expected one of {', '.join(OUTPUT_KINDS)}")
    first, last = to_bound(start, "start"), to_bound(end, "end")
    lo, hi = as_instant(first), as_instant(last, 1)  # instants holding the range: the partitions to read
    if lo is not None and hi is not None and lo >= hi:
        raise BarsRequestError(f"start {first} is not before end {last}"
                               + (" (an end date is included)" if not isinstance(last, datetime) else ""))
    if fetch == "missing" and not names:
        raise BarsRequestError("fetch='missing' needs explicit symbols")
    if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, (int, float)) or not lock_timeout >= 0:
        raise BarsRequestError(f"lock_timeout={lock_timeout!r}; expected seconds, 0 or more")
    directory = resolve_data_dir(data_dir)
    if con is None and fetch == "never":  # a typo is an error, never an empty frame; fetching creates it
        existing_warehouse(directory)
    pinned = None
    if con is not None:
        directory, pinned = _same_warehouse(con, directory if data_dir is not None else None)
        if fetch == "missing" and pinned is not None:
            raise BarsRequestError("fetch='missing' cannot add bars to a connection pinned with as_of")

    def read() -> Any:
        wanted, ids, loose = _chosen(directory, names, con_ids, venue, first, last, pinned)
        if con is None:
            found = latest_files(directory, size, what, rth, first, last)
        else:
            found = series_files(snapshot_of(con).files, size, what, rth, first, last)
        files = [f.path for f in found]
        db = con if con is not None else _reader.cursor()
        source = None
        if not isinstance(directory, Path):  # S3: through a pyarrow dataset registered on `db`
            store = DeltaTables(directory, layout.PARTITIONS)
            source = duckdb_source(db, store.location, files, tables.BARS_TABLE_SCHEMA, store.uri(layout.BARS),
                                   layout.PARTITIONS[layout.BARS])
        in_ts_order = source is None and one_after_another(found)
        if source is None and wanted is not None and len(wanted) + len(loose) == 1 and (in_ts_order or len(files) == 1):
            return _as_output(read_point(files, size, what, rth, wanted, ids, loose, first, last, db), as_)
        sql, params = bars_query(wanted, size, first, last, what, rth, files, source, ids, loose,
                                 files_in_ts_order=in_ts_order)
        with naming_damage(directory):
            result = db.sql(sql, params=params)
            return result.pl() if as_ == "polars" else _as_output(result.to_arrow_table(), as_)

    if fetch == "missing":
        connection_settings = {"host": host, "port": port, "client_id": client_id}
        try:
            report = fetch_missing(names, size.ib_name, first, last, what, rth, connection_settings, directory,
                                   job_options or {}, lock_timeout, con_ids, venue)
        except harvester.HarvestConfigError as exc:  # e.g. a range after the gateway's now
            raise BarsRequestError(f"fetch='missing': {exc}") from None
        if report is not None and report.left_to_others:
            held = dict(report.left_to_others)
            raise FetchBlocked(f"bars are missing but another harvest held {len(held)} of the series for "
                               f"{lock_timeout:g} s ({next(iter(held.values()))}); the exception's .bars holds "
                               "what is stored", read(), held)
        if con is not None:
            refresh(con)
    return read()


def _as_output(rows: pa.Table, as_: str) -> Any:
    if as_ == "pandas":  # faster than DuckDB's .df() (duckdb 2.0, pandas 3), and the same dtypes
        return rows.to_pandas(date_as_object=False).astype({"session_date": PANDAS_DATE})
    if as_ == "polars":
        import polars  # optional: only for as_='polars'

        return polars.from_arrow(rows)
    return rows


def _chosen(directory: Path | str, names: list[str] | None, con_ids: list[int] | None, exchange: str | None,
            start: date | datetime | None, end: date | datetime | None, as_of: int | datetime | None
            ) -> tuple[list[str] | None, list[int] | None, list[str]]:
    """(stored symbols, conIds, loose names) to read: every row when neither names nor conIds are given."""
    if names is None and con_ids is None:
        return None, None, []
    if not names and con_ids is None:
        return [], None, []
    chosen = choose(identity_rows(directory, as_of), names or [], start, end, con_ids, exchange)
    if chosen is None:  # no symbol history stored: read by stored symbol (and conId when given)
        chosen = Chosen(con_ids, names or [], [])
    return (chosen.stored_names if names else None), chosen.con_ids, chosen.loose


def _same_warehouse(con: duckdb.DuckDBPyConnection, directory: Path | str | None
                    ) -> tuple[Path | str, int | datetime | None]:
    """The warehouse `con` reads and where it is pinned; `directory`, when given, must be that warehouse."""
    snapshot = snapshot_of(con)
    theirs, as_of = snapshot.directory, snapshot.as_of
    if directory is not None and directory != theirs:
        raise BarsRequestError(f"con reads the warehouse {theirs} but data_dir names {directory}; give one of them")
    return theirs, as_of


def run_in_worker_thread(fn: Any, *args: Any) -> Any:
    """Run blocking `fn` in a thread with its own event loop, so it also works under Jupyter's running loop."""
    def call() -> Any:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # ib_insync's sync calls look the loop up; asyncio.run makes its own
        try:
            return fn(*args)
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result()


def fetch_missing(symbols: list[str], bar_size: str, start: date | datetime | None, end: date | datetime | None,
                  what_to_show: str, use_rth: bool, connection: dict[str, Any], data_dir: Path | str,
                  job_options: dict[str, Any], lock_timeout: float = LOCK_TIMEOUT_S,
                  con_ids: list[int] | None = None, exchange: str | None = None) -> Any:
    """Harvest what the range lacks through `harvester.run_harvest`; None when nothing is. Dates are exchange
    dates (end included) and instants naive UTC, as `bars()` takes them; the job takes both as they are.

    First the warehouse alone is asked (`harvester.missing_requests`): a covered range needs no gateway and
    no claim. Otherwise the harvester's planner subtracts stored coverage, so only missing windows are
    requested. Series another live harvest holds (claims) are waited for, up to
    `lock_timeout` seconds, then asked for again, so a second notebook is served what the first fetched;
    the last report says which are still held (`left_to_others`). The harvest runs in a worker thread with
    its own loop (Jupyter already runs one). Failed series warn (FetchWarning); the report is returned.
    """
    settings = resolve_settings(connection)
    job = harvester.HarvestJob(  # loaded on first use: the harvest's imports cost a second
        universe=[ContractSpec(symbol, primary_exchange=exchange or "", con_id=c)
                  for symbol in symbols for c in (con_ids or [0])], data_dir=data_dir, bar_sizes=(bar_size,),
        what_to_show=what_to_show, use_rth=use_rth, start=_aware(start), end=_aware(end),  # past the gateway's
        # now (not the local clock's) the harvest stops at its now
        host=settings.host, port=settings.port, client_id=settings.client_id, local_clock_checks=False, **job_options,
    )
    deadline = time.monotonic() + lock_timeout
    while True:
        if harvester.missing_requests(job) == []:
            return None
        report = run_in_worker_thread(harvester.run_harvest, job)
        if report.failures:
            reasons = "; ".join(f"{sym}: {', '.join(why)}" for sym, why in sorted(report.failures.items()))
            warnings.warn(FetchWarning(f"fetch='missing' failed for {reasons}; the frame holds what is stored",
                                       dict(report.failures)), stacklevel=3)
        if not report.left_to_others or not _released(job, report.left_to_others, deadline, lock_timeout):
            return report


def _aware(bound: date | datetime | None) -> date | datetime | None:
    """An instant (naive UTC here) as the aware one HarvestJob takes; a date stays an exchange date."""
    return bound.replace(tzinfo=UTC) if isinstance(bound, datetime) else bound


def _released(job: Any, held: dict[Any, str], deadline: float, timeout: float) -> bool:
    """Wait (polling the claims table, 50 ms growing to 1 s) until no live harvest holds any of `held`;
    False when the deadline comes first. Says once who holds them."""
    log.warning("waiting up to %g s for another harvest: %s", timeout, "; ".join(held.values()))
    pause = 0.05
    while harvester.claimed_by_others(job, held):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(2 * pause, 1.0)
    return True

