"""`bars()`: the stored bars of some symbols as a DataFrame, fetching only what is missing when allowed.

DuckDB cannot derive the partition from a filter on `ts`, so this helper asks the latest snapshot (or the
connection's pinned one) for the data files of the series' partitions in the range (`layout.periods_for`)
and hands DuckDB exactly those (measured fastest; see bench/queries.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from deltalake import DeltaTable

import harvester
from harvester import (
    BarSize,
    ContractSpec,
    DeltaTables,
    Location,
    duckdb_source,
    layout,
    parquet_source,
    read_meta,
    resolve_settings,
    tables,
)
from harvester import bar_size as lookup_bar_size
from queries.connection import BARS_COLUMNS, resolve_data_dir, source_of

FETCH_MODES = ("missing", "never")
OUTPUT_KINDS = ("pandas", "arrow", "polars")


class BarsRequestError(ValueError):
    """An argument of `bars()` is unusable; the message names it."""


class FetchError(RuntimeError):
    """fetch='missing' could not complete: the harvest reported failed series (named in the message)."""


def to_utc_naive(value: str | date | datetime | pd.Timestamp | None, name: str) -> datetime | None:
    """An instant as naive UTC (how `ts` is stored); naive inputs are taken as UTC, dates as midnight UTC."""
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise BarsRequestError(f"{name}={value!r} is not a date or time") from exc
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_pydatetime()


def bars_query(symbols: list[str], size: BarSize, start: datetime | None, end: datetime | None,
               what_to_show: str, use_rth: bool, files: list[str], source: str | None = None
               ) -> tuple[str, list[Any]]:
    """SQL + parameters for `bars()` over the series' data files `files` (already pruned to the range),
    read through `source` when given (an S3 warehouse's registered dataset)."""
    where: list[str] = []
    params: list[Any] = [size.ib_name, what_to_show, use_rth]
    if symbols:
        where.append(f"symbol IN ({', '.join('?' * len(symbols))})")
        params += symbols
    if start is not None:
        where.append("ts >= ?")
        params.append(start)
    if end is not None:
        where.append("ts < ?")
        params.append(end)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    columns = BARS_COLUMNS.replace("bar_size", "? AS bar_size").replace("what_to_show", "? AS what_to_show")
    columns = columns.replace("use_rth", "?::BOOLEAN AS use_rth")
    # One data file is already sorted by (symbol, ts) (a layout invariant) and DuckDB keeps file order
    # through a filter (preserve_insertion_order); sorting again cost ~20 % of a symbol-month read.
    order = "" if len(files) == 1 else " ORDER BY symbol, ts"
    # One series' files share their partition values and schema: no hive parsing, no footer union needed.
    source = source or parquet_source(files, tables.BARS_TABLE_SCHEMA, union=False)
    return f"SELECT {columns} FROM {source}{clause}{order}", params


def series_files(directory: Path | str, size: BarSize, what_to_show: str, use_rth: bool, start: datetime | None,
                 end: datetime | None, as_of: int | datetime | None = None) -> list[str]:
    """The series' data files in one snapshot, pruned to the partitions that can hold [start, end)."""
    periods = layout.periods_for(size, start, end) if start is not None and end is not None else None
    store = DeltaTables(directory, layout.PARTITIONS)
    snapshot = store.open(layout.BARS, as_of) if as_of is not None else _latest(store)
    if snapshot is None:
        return []
    return store.files(layout.BARS, snapshot, layout.family_filters(size.label, what_to_show, use_rth, periods))


_open_tables: dict[str, DeltaTable] = {}


def _latest(store: DeltaTables) -> DeltaTable | None:
    """The bars table at its latest version, kept open between calls: catching up on the log costs ~1 ms,
    opening it ~5 ms (measured), most of a one-symbol-month read."""
    uri = store.uri(layout.BARS)
    table = _open_tables.get(uri)
    if table is None:
        table = store.open(layout.BARS)
        if table is not None:
            _open_tables[uri] = table
        return table
    try:
        table.update_incremental()
    except Exception:  # noqa: BLE001 - the table was replaced under us (migrated, recreated): open it anew
        del _open_tables[uri]
        return _latest(store)
    return table


def _normalise_symbols(symbols: str | Iterable[str] | None) -> list[str]:
    if symbols is None:
        return []
    items = [symbols] if isinstance(symbols, str) else list(symbols)
    for s in items:
        if not isinstance(s, str) or not s.strip():
            raise BarsRequestError(f"symbol {s!r} is not a non-empty string")
    return [s.strip().upper() for s in items]


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
) -> Any:
    """Bars of `symbols` (None: all) starting in [start, end) UTC; columns as the `bars` view, sorted (symbol, ts).

    fetch='missing' first harvests the uncovered part of the range through the harvester (planner,
    pacer, scheduler, writer) from host:port (default: harvester settings); 'never' only reads.
    Every call reads the latest snapshot. `con` reuses a `queries.connect()` connection (its warehouse and,
    if pinned with `as_of`, its snapshot, unless `data_dir` is given); `job_options` sets other HarvestJob fields
    (e.g. {"sim": True, "pacing_scale": 0.01}). Raises FetchError when the harvest reports failures.
    """
    names = _normalise_symbols(symbols)
    try:
        size = lookup_bar_size(bar_size)
    except ValueError as exc:
        raise BarsRequestError(str(exc)) from exc
    if fetch not in FETCH_MODES:
        raise BarsRequestError(f"fetch={fetch!r}; expected one of {', '.join(FETCH_MODES)}")
    if as_ not in OUTPUT_KINDS:
        raise BarsRequestError(f"as_={as_!r}; expected one of {', '.join(OUTPUT_KINDS)}")
    lo, hi = to_utc_naive(start, "start"), to_utc_naive(end, "end")
    if lo is not None and hi is not None and lo >= hi:
        raise BarsRequestError(f"start {lo} is not before end {hi}")
    as_of = None
    if con is not None and data_dir is None:
        data_dir, as_of = source_of(con)  # the warehouse `con` reads (and its pinned snapshot), not the default
    directory = resolve_data_dir(data_dir)
    if fetch == "missing":
        connection_settings = {"host": host, "port": port, "client_id": client_id}
        fetch_missing(names, size.ib_name, lo, hi, what_to_show, use_rth, connection_settings, directory,
                      job_options or {})
    files = series_files(directory, size, what_to_show, use_rth, lo, hi, as_of)
    db = con if con is not None else duckdb.connect()
    source = None
    if not isinstance(directory, Path):
        store = DeltaTables(directory, layout.PARTITIONS)
        source = duckdb_source(db, store.location, files, tables.BARS_TABLE_SCHEMA, store.uri(layout.BARS),
                               layout.PARTITIONS[layout.BARS])
    sql, params = bars_query(names, size, lo, hi, what_to_show, use_rth, files, source)
    result = db.sql(sql, params=params)
    found = result.pl() if as_ == "polars" else result.to_arrow_table()
    if as_ == "pandas":
        return found.to_pandas(date_as_object=False)  # faster than .df() (duckdb 2.0, pandas 3)
    return found


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


def fetch_missing(symbols: list[str], bar_size: str, start: datetime | None, end: datetime | None,
                  what_to_show: str, use_rth: bool, connection: dict[str, Any], data_dir: Path | str,
                  job_options: dict[str, Any]) -> Any:
    """Harvest the uncovered part of [start, end) through `harvester.run_harvest`.

    The harvester's planner subtracts stored coverage, so only missing windows are requested. Its
    HarvestJob takes whole days (end inclusive), so the range is widened to days; a day already
    covered costs no request. Runs in a worker thread with its own loop (Jupyter already runs one).
    """
    if not symbols:
        raise BarsRequestError("fetch='missing' needs explicit symbols")
    settings = resolve_settings(connection)
    today = datetime.now(UTC).date()
    last_day = (end - timedelta(microseconds=1)).date() if end else None
    options = {"sim": _warehouse_is_simulated(data_dir), **job_options}
    job = harvester.HarvestJob(  # loaded on first use: the harvest's imports cost a second
        universe=[ContractSpec(symbol) for symbol in symbols], data_dir=data_dir, bar_sizes=(bar_size,),
        what_to_show=what_to_show, use_rth=use_rth, start=start.date() if start else None,
        end=last_day if last_day is not None and last_day < today else None,  # None: the gateway's now
        host=settings.host, port=settings.port, client_id=settings.client_id, **options,
    )
    report = run_in_worker_thread(harvester.run_harvest, job)
    if report.failures:
        reasons = "; ".join(f"{sym}: {', '.join(why)}" for sym, why in sorted(report.failures.items()))
        raise FetchError(f"harvest of the missing bars failed for {reasons}")
    return report


def _warehouse_is_simulated(data_dir: Path | str) -> bool:
    """Follow the warehouse's own marking; a new warehouse is a real one unless told otherwise."""
    return bool((read_meta(Location.parse(data_dir)) or {}).get("simulated"))
