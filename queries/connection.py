"""An in-memory DuckDB connection with views over one snapshot of the warehouse's Delta tables.

The views hand DuckDB's own `read_parquet` the snapshot's data-file list (from `deltalake`; never
`to_pyarrow_dataset`, which made reader processes abort at exit). A snapshot's files are never changed or
removed before vacuum's retention, so a read can't race a commit and needs no retry: `connect()` returns a
plain DuckDB connection. It sees later commits after `refresh(con)`, all views at once (bars, coverage and
the gaps computed from them move together; `bars(con=con)` reads the same snapshot); `bars()` without a
connection reads the latest snapshot on every call. `connect(as_of=version | datetime)` pins a version of the
bars table (and the other tables as they were at that version's commit): time travel. Readers take no lock.

`sessions` is the exchange calendar, not data: every session of each calendar the contracts use (from
`harvester.calendar_for`, 1980-2035: the contract's exchange calendar with IB's hours from its details),
numbered consecutively per calendar, so "the previous session" is `session_no - 1` whatever the warehouse
holds; both flavours' bounds per session. `contract_calendars` names each contract's calendar by its key.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from harvester import (
    BY_LABEL,
    BarSize,
    ContractListing,
    DeltaTables,
    Location,
    TradingCalendar,
    WarehouseError,
    calendar_for,
    damaged_file_in,
    duckdb_source,
    duckdb_type,
    layout,
    parquet_source,
    refuse_old_layout,
    resolve_settings,
    sql_file_list,
    tables,
    user_temp_dir,
    write_bytes_atomic,
)
from queries.identity import as_instant

# bars: the stored columns, with the partition's bar size, whatToShow and RTH flag after con_id
BARS_COLUMNS = ", ".join(tables.BAR_COLUMNS[:2] + list(tables.BARS_PARTITION_COLUMNS) + tables.BAR_COLUMNS[2:])
_TS = pa.timestamp("us")
_SCHEMAS = {
    layout.BARS: tables.BARS_TABLE_SCHEMA,
    layout.CONTRACTS: tables.CONTRACTS_SCHEMA,
    layout.HEADS: tables.HEADS_SCHEMA,
    layout.COVERAGE: tables.COVERAGE_SCHEMA,
    layout.JOURNAL: tables.JOURNAL_SCHEMA,
    layout.QUARANTINE: tables.QUARANTINE_SCHEMA,
    layout.CLAIMS: tables.CLAIMS_SCHEMA,
    layout.SYMBOLS: tables.SYMBOLS_SCHEMA,
    layout.REVISIONS: tables.REVISIONS_SCHEMA,
    layout.CORPORATE_ACTIONS: tables.CORPORATE_ACTIONS_SCHEMA,
    layout.WANTED: tables.WANTED_SCHEMA,
    layout.WINDOW_SIZES: tables.WINDOW_SIZES_SCHEMA,
}
SOURCE_TABLE = "harvest_source"  # one row in every connection: which warehouse, pinned where


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path | str:
    """The warehouse: an absolute folder, or an `s3://bucket/prefix` string; the argument, else the
    harvester's settings (HARVEST_DATA_DIR, harvest.toml, ./data), so notebooks read what the nightly job
    writes."""
    text = str(data_dir if data_dir is not None else resolve_settings().data_dir)
    if "://" in text:
        return Location.parse(text).root
    return Path(text).expanduser().resolve()


def existing_warehouse(directory: Path | str) -> Path | str:
    """`directory`, if a reader can read it: a local folder that does not exist is a typo to name, never an
    empty warehouse (an S3 prefix with nothing under it is one)."""
    if isinstance(directory, Path) and not directory.is_dir():
        what = "is not a folder" if directory.exists() else "does not exist"
        raise WarehouseError(f"{directory}: {what}, so there is no warehouse to read; check --data-dir "
                             "(or HARVEST_DATA_DIR, harvest.toml); for a new warehouse create the folder or run "
                             "`harvest --universe FILE`")
    return directory


def _bar_size_case(column: str) -> str:
    whens = " ".join(f"WHEN '{label}' THEN '{b.ib_name}'" for label, b in BY_LABEL.items())
    return f"CASE {column} {whens} END"


def read_files_source(files: list[str], name: str) -> str:
    """SQL reading one table's files; a table with none reads as typed and empty."""
    return parquet_source(files, _SCHEMAS[name], layout.PARTITIONS.get(name, ()))


def symbols_source(symbols: str, contracts: str) -> str:
    """SQL rows (con_id, symbol, exchange, primary_exchange, valid_from, valid_to) from the symbols and contracts
    tables' sources: the symbols table, and for a conId it lacks (a warehouse from before it) its contracts row,
    current since its qualification (queries/identity.py does the same for `bars()`)."""
    return (f"(SELECT con_id, symbol, exchange, primary_exchange, valid_from, valid_to FROM {symbols} "
            f"UNION ALL SELECT con_id, symbol, exchange, primary_exchange, qualified_at, NULL::TIMESTAMP "
            f"FROM {contracts} WHERE con_id NOT IN (SELECT con_id FROM {symbols}))")


def snapshot_instant(store: DeltaTables, as_of: int | datetime | None, bars=None) -> datetime | None:
    """Where the other tables are read for `as_of`: an instant as given; a bars version at its commit."""
    if not isinstance(as_of, int):
        return as_of
    bars = bars if bars is not None else store.open(layout.BARS, as_of)
    return as_of if bars is None else datetime.fromtimestamp(bars.history(1)[0]["timestamp"] / 1000)


def snapshot_files(directory: Path | str, as_of: int | datetime | None = None) -> tuple[dict[str, list[str]], int | None]:
    """Every table's data files at one snapshot, and the bars table's version there."""
    files, bars = _snapshot_tables(DeltaTables(directory, layout.PARTITIONS), as_of)
    return files, None if bars is None else bars.version()


def _snapshot_tables(store: DeltaTables, as_of: int | datetime | None) -> tuple[dict[str, list[str]], DeltaTable | None]:
    """Every table's data files at one snapshot, and the bars table opened there."""
    bars = store.open(layout.BARS, as_of)
    instant = snapshot_instant(store, as_of, bars)
    files = {layout.BARS: store.files(layout.BARS, bars) if bars is not None else []}
    for name in layout.TABLES:
        if name != layout.BARS:
            table = store.open(name, instant)
            files[name] = store.files(name, table) if table is not None else []
    return files, bars


def view_statements(files: dict[str, list[str]], sources: dict[str, str] | None = None,
                    contract_columns: set[str] | None = None) -> tuple[list[str], list[str]]:
    """The CREATE VIEW statements over one snapshot's files (or `sources`, what each table is read through):
    (the views over the tables, the views that also read the calendar tables `sessions` and
    `contract_calendars`, which must be created in between). `contract_columns`: the columns the contracts
    files have (files written before a column was added read it as NULL)."""
    bar_files = _bar_files_rows(files[layout.BARS] if sources is None else [])

    def read_source(name_files: list[str], name: str) -> str:
        return sources[name] if sources is not None else read_files_source(name_files, name)

    over_files = [
        f"CREATE OR REPLACE VIEW bars_files AS SELECT * FROM {read_source(files[layout.BARS], layout.BARS)}",
        ("CREATE OR REPLACE VIEW bars AS SELECT "
         + BARS_COLUMNS.replace("bar_size", f"{_bar_size_case('bar_size')} AS bar_size") + " FROM bars_files"),
        _ADJUSTED_SQL,
        (f"CREATE OR REPLACE VIEW bar_files AS SELECT {_bar_size_case('label')} AS bar_size, * EXCLUDE (label) "
        f"FROM {bar_files}"),
        _contracts_sql(read_source(files[layout.CONTRACTS], layout.CONTRACTS), contract_columns),
        f"CREATE OR REPLACE VIEW heads AS SELECT * FROM {read_source(files[layout.HEADS], layout.HEADS)}",
        f"CREATE OR REPLACE VIEW journal AS SELECT * FROM {read_source(files[layout.JOURNAL], layout.JOURNAL)}",
        ("CREATE OR REPLACE VIEW quarantine AS SELECT * FROM "
        f"{read_source(files[layout.QUARANTINE], layout.QUARANTINE)}"),
        f"CREATE OR REPLACE VIEW claims AS SELECT * FROM {read_source(files[layout.CLAIMS], layout.CLAIMS)}",
        ("CREATE OR REPLACE VIEW symbols AS SELECT * FROM "
         f"{symbols_source(read_source(files[layout.SYMBOLS], layout.SYMBOLS), 'contracts')}"),
        ("CREATE OR REPLACE VIEW coverage AS SELECT c.con_id, s.symbol, c.bar_size, c.what_to_show, "
         "c.use_rth, c.start_ts, c.end_ts, c.kind, c.bars, c.recorded_at "
         f"FROM {read_source(files[layout.COVERAGE], layout.COVERAGE)} c LEFT JOIN {_SYMBOL_OF} s USING (con_id)"),
        f"CREATE OR REPLACE VIEW wanted AS SELECT * FROM {read_source(files[layout.WANTED], layout.WANTED)}",
        f"CREATE OR REPLACE VIEW revisions AS SELECT * FROM {read_source(files[layout.REVISIONS], layout.REVISIONS)}",
        ("CREATE OR REPLACE VIEW corporate_actions AS SELECT * FROM "
         f"{read_source(files[layout.CORPORATE_ACTIONS], layout.CORPORATE_ACTIONS)}"),
        ("CREATE OR REPLACE VIEW window_sizes AS SELECT * FROM "
         f"{read_source(files[layout.WINDOW_SIZES], layout.WINDOW_SIZES)}"),
        _COVERED_SQL,
        _ROLLS_SQL,
        _CONTINUOUS_SQL,
    ]
    over_calendars = [_SERIES_SQL, _GAPS_SQL, _SESSION_BARS_SQL]
    return over_files, [sql.replace("$default_calendar", f"'{default_calendar()}'") for sql in over_calendars]


def _contracts_sql(source: str, present: set[str] | None) -> str:
    """The contracts view: every stored column (NULL where older files lack it), and `expiry` as a DATE."""
    columns = ", ".join(f'"{f.name}"' if present is None or f.name in present
                        else f'NULL::{duckdb_type(f.type)} AS "{f.name}"' for f in tables.CONTRACTS_SCHEMA)
    return (f"CREATE OR REPLACE VIEW contracts AS SELECT {columns}, "
            f"try_strptime(nullif(last_trade_date, ''), '%Y%m%d')::DATE AS expiry FROM {source}")


def contract_columns(con: duckdb.DuckDBPyConnection, source: str) -> set[str]:
    """The columns the contracts table's data files hold (one footer read)."""
    return {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}


def _bar_files_rows(files: list[str]) -> str:
    """One row per bars data file, from its footer when the view is read (never at connect time): what
    `harvest status` counts."""
    if not files:
        return ("(SELECT NULL::VARCHAR AS label, NULL::VARCHAR AS what_to_show, NULL::BOOLEAN AS use_rth, "
                "NULL::VARCHAR AS file_name, NULL::BIGINT AS num_rows, NULL::BIGINT AS num_row_groups, "
                "NULL::BIGINT AS file_size_bytes WHERE false)")
    return ("(SELECT regexp_extract(file_name, 'bar_size=([^/]+)', 1) AS label, "
            "regexp_extract(file_name, 'what_to_show=([^/]+)', 1) AS what_to_show, "
            "regexp_extract(file_name, 'use_rth=([a-z]+)', 1) = 'true' AS use_rth, file_name, "
            "num_rows::BIGINT AS num_rows, num_row_groups::BIGINT AS num_row_groups, "
            f"file_size_bytes::BIGINT AS file_size_bytes FROM parquet_file_metadata({sql_file_list(files)}))")


# Split- and dividend-adjusted TRADES bars of any size: each bar times its session's factor, the ADJUSTED_LAST
# daily close over the TRADES daily close (regular hours; `harvest --adjusted` keeps that series). Both are
# adjusted for splits as of the harvest, so the factor is the dividends' alone. Sessions without both
# daily bars (no ADJUSTED_LAST series, or not refreshed yet) have no adjusted bars: never a silent 1.
_ADJUSTED_SQL = """CREATE OR REPLACE VIEW adjusted_bars AS
WITH factors AS (
  SELECT a.con_id, a.session_date, a.close / t.close AS factor
  FROM bars a JOIN bars t USING (con_id, session_date)
  WHERE a.bar_size = '1 day' AND a.what_to_show = 'ADJUSTED_LAST' AND a.use_rth
    AND t.bar_size = '1 day' AND t.what_to_show = 'TRADES' AND t.use_rth AND t.close > 0)
SELECT b.symbol, b.con_id, b.bar_size, b.what_to_show, b.use_rth, b.ts, b.session_date,
       b.open * f.factor AS open, b.high * f.factor AS high, b.low * f.factor AS low, b.close * f.factor AS close,
       b.volume, b.wap * f.factor AS wap, b.bar_count, f.factor
FROM bars b JOIN factors f USING (con_id, session_date)
WHERE b.what_to_show = 'TRADES'"""

# Union of each series' intervals ("islands"): a session is covered when one island spans it.
_COVERED_SQL = """CREATE OR REPLACE VIEW covered AS
WITH ordered AS (
  SELECT *, max(end_ts) OVER (PARTITION BY con_id, bar_size, what_to_show, use_rth ORDER BY start_ts, end_ts
                             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach
  FROM coverage),
islands AS (
  SELECT *, sum(CASE WHEN reach IS NULL OR start_ts > reach THEN 1 ELSE 0 END)
              OVER (PARTITION BY con_id, bar_size, what_to_show, use_rth ORDER BY start_ts, end_ts) AS island
  FROM ordered)
SELECT con_id, any_value(symbol) AS symbol, bar_size, what_to_show, use_rth,
       min(start_ts) AS start_ts, max(end_ts) AS end_ts, sum(bars) AS bars
FROM islands GROUP BY con_id, bar_size, what_to_show, use_rth, island"""

_SERIES_SQL = """CREATE OR REPLACE VIEW series AS
SELECT con_id, any_value(symbol) AS symbol, bar_size, what_to_show, use_rth,
       min(start_ts) AS covered_from, max(end_ts) AS covered_to,
       count(*) FILTER (WHERE kind = 'bars') AS bar_intervals,
       count(*) FILTER (WHERE kind = 'empty') AS empty_intervals,
       coalesce(sum(bars), 0)::BIGINT AS bars, max(recorded_at) AS last_recorded,
       coalesce(any_value(k.calendar), $default_calendar) AS calendar
FROM coverage LEFT JOIN contract_calendars k USING (con_id) GROUP BY con_id, bar_size, what_to_show, use_rth"""

# Each conId's symbol as views show it: IB's local symbol when it has one (EUR.USD, ESM4), else its latest.
_SYMBOL_OF = ("(SELECT s.con_id, coalesce(nullif(any_value(k.local_symbol), ''), arg_max(s.symbol, s.valid_from)) "
              "AS symbol FROM symbols s LEFT JOIN contracts k USING (con_id) GROUP BY s.con_id)")

def _slot(size: str, day: str) -> str:
    """SQL: the period a session's bars are counted in: the session, or for weekly and monthly bars its week or
    month (a weekly bar is dated by its week's first session)."""
    return (f"CASE {size} WHEN '1 week' THEN date_trunc('week', {day})::DATE "
            f"WHEN '1 month' THEN date_trunc('month', {day})::DATE ELSE {day} END")


def _expected(size: str, opens: str, closes: str) -> str:
    """SQL: the bars a whole session holds: its length in bars for intraday sizes (as IB cuts them from the
    open), one for daily and longer."""
    whens = " ".join(f"WHEN '{b.ib_name}' THEN {b.seconds}" for b in BY_LABEL.values() if b.intraday)
    return f"coalesce(ceil(date_diff('second', {opens}, {closes}) / CASE {size} {whens} END), 1)"


# Sessions a series should have bars for and lacks, with the reason, for its own calendar and flavour. What it
# should have: the sessions inside its wanted spans (the `wanted` table: what harvests asked for, so a session
# never fetched is missing wherever it lies; a series recorded before that table, its first to last covered
# instant). A session cut by a span's end was not asked for in full: not missing. Reasons: `never fetched`
# (no answer covers it whole), `fetched, no bars` (covered, none stored: from the series' head timestamp or
# first bar on; before it IB has nothing; not on a calendar from contract details, which knows no holidays),
# `bars missing inside a session` (fewer bars than the session's
# length holds: `bars` of `expected_bars`; weekly and monthly bars count per period, on each of its sessions),
# and for a bar refused at the door and still missing `quarantined: <check>` or `quarantined, given up`
# (quarantine.py). Computed from the connection's snapshot: it moves with the bars at `refresh`.
_GAPS_SQL = f"""CREATE OR REPLACE VIEW gaps AS
WITH x AS (
  SELECT calendar, session_date, true AS use_rth, open_ts, close_ts FROM sessions
  UNION ALL SELECT calendar, session_date, false, ext_open_ts, ext_close_ts FROM sessions),
spans AS (
  SELECT con_id, bar_size, what_to_show, use_rth, start_ts, end_ts FROM wanted
  UNION ALL
  SELECT con_id, bar_size, what_to_show, use_rth, covered_from, covered_to FROM series s
  WHERE NOT EXISTS (SELECT 1 FROM wanted w WHERE w.con_id = s.con_id AND w.bar_size = s.bar_size
                    AND w.what_to_show = s.what_to_show AND w.use_rth = s.use_rth)),
stored AS (
  SELECT con_id, bar_size, what_to_show, use_rth, {_slot('bar_size', 'session_date')} AS slot, count(*) AS bars,
         min(ts) AS first_ts
  FROM bars GROUP BY ALL),
listed AS (
  SELECT con_id, bar_size, what_to_show, use_rth, coalesce(any_value(h.head_ts), min(b.first_ts)) AS listed_ts
  FROM stored b LEFT JOIN heads h USING (con_id, what_to_show, use_rth) GROUP BY ALL),
expected AS (
  SELECT sp.con_id, sp.bar_size, sp.what_to_show, sp.use_rth, x.session_date, x.open_ts, x.close_ts,
         coalesce(b.bars, 0) AS bars, {_expected('sp.bar_size', 'x.open_ts', 'x.close_ts')} AS expected_bars,
         l.listed_ts, coalesce(d.calendar_from_details, false) AS guessed
  FROM spans sp LEFT JOIN contract_calendars k USING (con_id)
  LEFT JOIN (SELECT con_id, bool_or(calendar_from_details) AS calendar_from_details FROM contracts GROUP BY 1) d
    USING (con_id)
  JOIN x ON x.calendar = coalesce(k.calendar, $default_calendar) AND x.use_rth = sp.use_rth
    AND x.open_ts >= sp.start_ts AND x.close_ts <= sp.end_ts
  LEFT JOIN stored b ON b.con_id = sp.con_id AND b.bar_size = sp.bar_size AND b.what_to_show = sp.what_to_show
    AND b.use_rth = sp.use_rth AND b.slot = {_slot('sp.bar_size', 'x.session_date')}
  LEFT JOIN listed l ON l.con_id = sp.con_id AND l.bar_size = sp.bar_size AND l.what_to_show = sp.what_to_show
    AND l.use_rth = sp.use_rth),
missing AS (
  SELECT e.* EXCLUDE (listed_ts, guessed),
         CASE WHEN NOT EXISTS (
                SELECT 1 FROM covered c
                WHERE c.con_id = e.con_id AND c.bar_size = e.bar_size AND c.what_to_show = e.what_to_show
                  AND c.use_rth = e.use_rth AND c.start_ts <= e.open_ts AND c.end_ts >= e.close_ts)
              THEN 'never fetched'
              WHEN e.bars >= e.expected_bars OR e.listed_ts IS NULL OR e.close_ts <= e.listed_ts THEN NULL
              WHEN e.bars = 0 AND e.guessed THEN NULL
              WHEN e.bars = 0 THEN 'fetched, no bars'
              ELSE 'bars missing inside a session' END AS reason
  FROM expected e),
held AS (
  SELECT con_id, any_value(symbol) AS symbol, bar_size, what_to_show, use_rth, session_date,
         CASE WHEN bool_and(coalesce(given_up, false)) THEN 'quarantined, given up'
              ELSE 'quarantined: ' || min(reason) FILTER (WHERE NOT coalesce(given_up, false)) END AS reason
  FROM quarantine WHERE resolved_at IS NULL AND ts IS NOT NULL
  GROUP BY con_id, bar_size, what_to_show, use_rth, session_date)
SELECT con_id, coalesce(n.symbol, h.symbol) AS symbol, bar_size, what_to_show, use_rth, session_date,
       coalesce(m.open_ts, x.open_ts) AS open_ts, coalesce(m.close_ts, x.close_ts) AS close_ts,
       coalesce(h.reason, m.reason) AS reason, coalesce(m.bars, b.bars, 0)::BIGINT AS bars,
       coalesce(m.expected_bars, {_expected('h.bar_size', 'x.open_ts', 'x.close_ts')})::BIGINT AS expected_bars
FROM (SELECT * FROM missing WHERE reason IS NOT NULL) m
FULL JOIN held h USING (con_id, bar_size, what_to_show, use_rth, session_date)
LEFT JOIN {_SYMBOL_OF} n USING (con_id)
LEFT JOIN contract_calendars k USING (con_id)
LEFT JOIN x ON m.con_id IS NULL AND x.calendar = coalesce(k.calendar, $default_calendar)
  AND x.session_date = h.session_date AND x.use_rth = h.use_rth
LEFT JOIN stored b ON m.con_id IS NULL AND b.con_id = h.con_id AND b.bar_size = h.bar_size
  AND b.what_to_show = h.what_to_show AND b.use_rth = h.use_rth AND b.slot = {_slot('h.bar_size', 'h.session_date')}"""


# Each futures chain (symbol, exchange, currency, multiplier) in expiry order: the continuous series rolls
# from one contract to the next after the earlier one's last trade date.
_ROLLS_SQL = """CREATE OR REPLACE VIEW rolls AS
WITH chain AS (
  SELECT con_id, symbol, local_symbol, exchange, currency, multiplier, expiry,
         lag(con_id) OVER w AS from_con_id, lag(local_symbol) OVER w AS from_local_symbol,
         lag(expiry) OVER w AS roll_date
  FROM contracts WHERE sec_type = 'FUT' AND expiry IS NOT NULL
  WINDOW w AS (PARTITION BY symbol, exchange, currency, multiplier ORDER BY expiry))
SELECT symbol, exchange, currency, multiplier, roll_date, from_con_id, from_local_symbol,
       con_id AS to_con_id, local_symbol AS to_local_symbol, expiry AS to_expiry
FROM chain WHERE from_con_id IS NOT NULL"""

# The stitched front-month series of each futures chain, unadjusted: a contract's bars from the session
# after the previous expiry to its own last trade date. `symbol` is the chain's, `contract` the expiry's.
_CONTINUOUS_SQL = """CREATE OR REPLACE VIEW continuous AS
WITH chain AS (
  SELECT con_id, symbol AS root, expiry,
         lag(expiry) OVER (PARTITION BY symbol, exchange, currency, multiplier ORDER BY expiry) AS after
  FROM contracts WHERE sec_type = 'FUT' AND expiry IS NOT NULL)
SELECT c.root AS symbol, b.symbol AS contract, b.* EXCLUDE (symbol)
FROM bars b JOIN chain c USING (con_id)
WHERE b.session_date <= c.expiry AND (c.after IS NULL OR b.session_date > c.after)"""


# Bars with their exchange session's number (consecutive per calendar; NULL on a day that is no session):
# what the scanners compare "previous" and "last N sessions" by, never the previous stored row.
_SESSION_BARS_SQL = """CREATE OR REPLACE VIEW session_bars AS
SELECT b.*, coalesce(k.calendar, $default_calendar) AS calendar, x.session_no
FROM bars b LEFT JOIN contract_calendars k USING (con_id)
LEFT JOIN sessions x ON x.calendar = coalesce(k.calendar, $default_calendar) AND x.session_date = b.session_date"""

SESSIONS_SCHEMA = pa.schema([("calendar", pa.string()), ("session_no", pa.int64()), ("session_date", pa.date32()),
                             ("open_ts", _TS), ("close_ts", _TS), ("ext_open_ts", _TS), ("ext_close_ts", _TS)])
CONTRACT_CALENDARS_SCHEMA = pa.schema([("con_id", pa.int64()), ("calendar", pa.string())])
_EPOCH_ORDINAL = 719_163  # date(1970, 1, 1).toordinal()


def contract_calendar(row: ContractListing) -> TradingCalendar:
    """A contract's calendar, from its stored details, as the harvest dated its bars (the one seam)."""
    return calendar_for(row)


@cache
def default_calendar() -> str:
    """The calendar of bars whose contract is not stored (test warehouses, foreign writers): New York's,
    the US-stocks harvester's. Stored contracts always carry their own."""
    return _DEFAULT.key


_DEFAULT = TradingCalendar.for_exchange("NYSE")


@cache
def calendar_sessions(calendar: TradingCalendar) -> pa.Table:
    """Every regular session of one calendar (`SESSIONS_SCHEMA`), numbered from 0."""
    days = calendar.day_numbers - _EPOCH_ORDINAL
    return pa.table({
        "calendar": pa.array([calendar.key] * len(days), pa.string()),
        "session_no": pa.array(np.arange(len(days), dtype=np.int64)),
        "session_date": pa.array(days.astype(np.int32), pa.date32()),
        "open_ts": pa.array(calendar.rth_open * 1_000_000, _TS),
        "close_ts": pa.array(calendar.rth_close * 1_000_000, _TS),
        "ext_open_ts": pa.array(calendar.ext_open * 1_000_000, _TS),
        "ext_close_ts": pa.array(calendar.ext_close * 1_000_000, _TS),
    }, schema=SESSIONS_SCHEMA)


def calendar_tables(con: duckdb.DuckDBPyConnection) -> tuple[pa.Table, pa.Table]:
    """(sessions, contract_calendars) for the contracts in `con`'s snapshot: the default calendar's sessions
    always (an empty warehouse still has a calendar), and those of every calendar a contract uses."""
    rows = con.execute("""
        SELECT con_id, coalesce(sec_type, ''), coalesce(exchange, ''), coalesce(primary_exchange, ''),
               coalesce(time_zone, ''), coalesce(trading_hours, ''), coalesce(liquid_hours, '')
        FROM contracts QUALIFY row_number() OVER (PARTITION BY con_id ORDER BY qualified_at DESC) = 1
        ORDER BY con_id""").fetchall()
    by_contract = {row[0]: contract_calendar(ContractListing(*row[1:])) for row in rows}
    calendars = {c.key: c for c in [_DEFAULT, *by_contract.values()]}
    sessions = pa.concat_tables([calendar_sessions(c) for _, c in sorted(calendars.items())])
    mapping = pa.table({"con_id": pa.array(list(by_contract), pa.int64()),
                        "calendar": pa.array([c.key for c in by_contract.values()], pa.string())},
                       schema=CONTRACT_CALENDARS_SCHEMA)
    return sessions, mapping


def connect(data_dir: str | os.PathLike[str] | None = None,
            as_of: int | datetime | None = None) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB connection with the warehouse views (bars, adjusted_bars, bar_files, contracts,
    symbols, heads, coverage, covered, series, journal, quarantine, revisions, corporate_actions, claims, rolls,
    continuous, gaps, session_bars) over one snapshot, and the calendar tables `sessions` and `contract_calendars`.
    `as_of` pins a version (int) or instant (datetime) of the bars table. No lock is taken."""
    directory = existing_warehouse(resolve_data_dir(data_dir))
    if isinstance(directory, Path):
        refuse_old_layout(directory)
    con = duckdb.connect(":memory:")
    in_utc(con)
    con.execute(f"CREATE TABLE {SOURCE_TABLE} (data_dir VARCHAR, as_of_version BIGINT, as_of_time TIMESTAMP, "
                "version BIGINT)")
    con.execute(f"INSERT INTO {SOURCE_TABLE} VALUES (?, ?, ?, NULL)",
                [str(directory), as_of if isinstance(as_of, int) else None,
                 as_of if isinstance(as_of, datetime) else None])
    with naming_damage(directory):
        _build(con, directory, as_of)
    return con


UTC_SESSION = "SET GLOBAL TimeZone = 'UTC'"  # GLOBAL: the connection's cursors too


def in_utc(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Set `con`'s TimeZone to UTC (its database's: cursors too): `bars.ts` is a TIMESTAMPTZ, and DuckDB reads a naive literal
    compared with it ('2024-06-03 13:30', the other tables' naive UTC instants) and prints it in that zone."""
    con.execute(UTC_SESSION)
    return con


@contextlib.contextmanager
def naming_damage(directory: Path | str) -> Iterator[None]:
    """A DuckDB read that failed on one of the warehouse's data files raises `DamagedFile` (a WarehouseError)
    naming that file and the fix; any other error passes unchanged."""
    try:
        yield
    except duckdb.Error as exc:
        damaged = damaged_file_in(exc, directory)
        if damaged is None:
            raise
        raise damaged from exc


def refresh(con: duckdb.DuckDBPyConnection) -> int | None:
    """Point `con`'s views at the latest snapshot (a pinned `as_of` stays pinned); returns the bars version."""
    directory, as_of = source_of(con)
    with naming_damage(directory):
        return _build(con, directory, as_of)


def source_of(con: duckdb.DuckDBPyConnection) -> tuple[Path | str, int | datetime | None]:
    """The warehouse a `connect()` connection reads, and where it is pinned."""
    try:
        ((data_dir, version, instant),) = con.execute(
            f"SELECT data_dir, as_of_version, as_of_time FROM {SOURCE_TABLE}").fetchall()
    except duckdb.CatalogException:
        raise ValueError("not a queries.connect() connection (it has no harvest_source table)") from None
    return resolve_data_dir(data_dir), version if version is not None else instant


def snapshot_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The bars table version `con`'s views read (None: the warehouse had no bars yet)."""
    source_of(con)  # a clear error for a connection that is not ours
    ((version,),) = con.execute(f"SELECT version FROM {SOURCE_TABLE}").fetchall()
    return version


def _build(con: duckdb.DuckDBPyConnection, directory: Path | str, as_of: int | datetime | None) -> int | None:
    store = DeltaTables(directory, layout.PARTITIONS)
    files, bars = _snapshot_tables(store, as_of)
    version = None if bars is None else bars.version()
    sources = None
    if not isinstance(directory, Path):  # S3: each table through a pyarrow dataset registered on `con`
        sources = {name: duckdb_source(con, store.location, files[name], _SCHEMAS[name], store.uri(name),
                                       layout.PARTITIONS.get(name, ())) for name in _SCHEMAS}
    contracts = sources[layout.CONTRACTS] if sources else read_files_source(files[layout.CONTRACTS], layout.CONTRACTS)
    over_files, over_calendars = view_statements(files, sources, contract_columns(con, contracts))
    for sql in over_files:
        con.execute(sql)
    for name, table in zip(("sessions", "contract_calendars"), calendar_tables(con), strict=True):
        con.register("_calendar_rows", table)
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _calendar_rows")
        con.unregister("_calendar_rows")
    for sql in over_calendars:
        con.execute(sql)
    con.execute(f"UPDATE {SOURCE_TABLE} SET version = ?", [version])
    _snapshots[con] = Snapshot(directory, as_of, version, bars_file_index(store, bars))
    return version


@dataclass(frozen=True)
class BarsFile:
    """One bars data file of a snapshot: its partition's period and the range of its bars' starts and session
    dates, from the Delta log's column statistics (None: not recorded), so a read skips the neighbouring
    months `layout.periods_for` must name (a session date is within a day of its bars) that hold none."""

    period: str
    path: str
    first_ts: datetime | None
    last_ts: datetime | None
    first_session: date | None
    last_session: date | None

    def may_hold(self, periods: set[str] | None, start: date | datetime | None, end: date | datetime | None) -> bool:
        """Whether bars of `bars()`'s range can be here: an instant bounds `ts` ([start, end)), a date
        `session_date` (both included)."""
        if periods is not None and self.period not in periods:
            return False
        if isinstance(start, datetime):  # the log keeps timestamps to the millisecond: allow for one
            if self.last_ts is not None and self.last_ts + _STATS_GRAIN < start:
                return False
        elif start is not None and self.last_session is not None and self.last_session < start:
            return False
        if isinstance(end, datetime):
            return self.first_ts is None or self.first_ts < end
        return end is None or self.first_session is None or self.first_session <= end


_STATS_GRAIN = timedelta(milliseconds=1)
_STATS = ("min.ts", "max.ts", "min.session_date", "max.session_date")
FileIndex = dict[tuple[str, str, bool], list[BarsFile]]  # (label, whatToShow, RTH) -> its files


def bars_file_index(store: DeltaTables, bars: DeltaTable | None) -> FileIndex:
    """The snapshot's bars files by series family, with their ranges."""
    if bars is None:
        return {}
    actions = pa.table(bars.get_add_actions(flatten=True))
    columns = [_naive_utc(actions.column(c)).to_pylist() if c in actions.column_names else [None] * actions.num_rows
               for c in _STATS]
    stats = dict(zip([unquote(p) for p in actions.column("path").to_pylist()], zip(*columns, strict=True),
                     strict=True))
    root = store.uri(layout.BARS)
    index: FileIndex = {}
    for path in store.files(layout.BARS, bars):
        key = layout.partition_of(root, path)
        ranges = stats.get(path[len(root) + 1:], (None,) * len(_STATS))
        index.setdefault((key.label, key.what_to_show, key.use_rth), []).append(BarsFile(key.period, path, *ranges))
    return index


def _naive_utc(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A statistics column as `bars()` compares bounds with: instants naive UTC (format 3 stores `ts` aware,
    a snapshot from before `harvest migrate` naive)."""
    if pa.types.is_timestamp(column.type) and column.type.tz is not None:
        return column.cast(pa.timestamp(column.type.unit))
    return column


def series_files(index: FileIndex, size: BarSize, what_to_show: str, use_rth: bool, start: date | datetime | None,
                 end: date | datetime | None) -> list[BarsFile]:
    """The series' data files that may hold bars of `bars()`'s range (a bound may be None: open), oldest first."""
    lo, hi = as_instant(start), as_instant(end, 1)
    periods = set(layout.periods_for(size, lo, hi)) if lo is not None and hi is not None else None
    found = [f for f in index.get((size.label, what_to_show, use_rth), []) if f.may_hold(periods, start, end)]
    return sorted(found, key=lambda f: (f.first_ts is None, f.first_ts or datetime.min, f.period))


def one_after_another(files: list[BarsFile]) -> bool:
    """Every bar of each file starts before the first of the next (by the log's statistics): one symbol's
    rows read file after file are then already in `ts` order."""
    return all(a.last_ts is not None and b.first_ts is not None and a.last_ts + _STATS_GRAIN <= b.first_ts
               for a, b in itertools.pairwise(files))


@dataclass(frozen=True)
class Snapshot:
    """What a `connect()` connection's views read, kept beside it in Python so `bars(con=...)` needs no round
    trip to DuckDB or the Delta log to find its files (a one-symbol read takes a few ms; each trip ~0.5 ms)."""

    directory: Path | str
    as_of: int | datetime | None
    version: int | None
    files: FileIndex


_snapshots: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # connection -> its Snapshot


def snapshot_of(con: duckdb.DuckDBPyConnection) -> Snapshot:
    """The snapshot a `connect()` connection reads (a cursor of one: rebuilt from its source row)."""
    snapshot = _snapshots.get(con)
    if snapshot is None:
        directory, as_of = source_of(con)
        version = snapshot_version(con)
        store = DeltaTables(directory, layout.PARTITIONS)
        bars = None if version is None else store.open(layout.BARS, version)
        snapshot = _snapshots[con] = Snapshot(directory, as_of, version, bars_file_index(store, bars))
    return snapshot


def sql_literal(text: object) -> str:
    """A SQL string literal (quotes doubled): how every path goes into generated SQL."""
    return "'" + str(text).replace("'", "''") + "'"


def cli_temp_directory() -> Path:
    """Where the DuckDB CLI run with `harvest sql-init`'s script spills: the system temp directory, per user."""
    return user_temp_dir("harvest-duckdb")


READ_MEMORY_LIMIT = "128MB"  # what a read verb lets DuckDB hold before it spills (bench/memory.py)


def limit_memory(con: duckdb.DuckDBPyConnection) -> None:
    """Cap DuckDB's memory on a read verb's connection, spilling to the per-user temp folder: unbounded, the
    `gaps` view of the S&P 500's daily history (5 M series × session rows) took a 1.2 GB process. One thread:
    with two, each holds its own share of the joins, and `harvest status` over that history ran out of the
    cap instead of spilling."""
    con.execute(f"SET temp_directory = {sql_literal(cli_temp_directory())}")
    con.execute(f"SET memory_limit = '{READ_MEMORY_LIMIT}'")
    con.execute("SET threads = 1")


def write_init_script(output: Path, data_dir: Path) -> Path:
    """Write `output` (for `duckdb -init`) creating the same views over the latest snapshot, and its
    calendar beside it (`<output>.sessions.parquet`). The script is that snapshot, gaps included: run
    `harvest sql-init` again and `.read` the script in an open CLI to move every view to a later commit."""
    output = output.expanduser().absolute()
    directory = resolve_data_dir(data_dir)
    if not isinstance(directory, Path):
        raise WarehouseError(
            f"{data_dir}: the DuckDB CLI reads only local files (its S3 reader, httpfs, is a "
            "download); use queries.connect() from Python for an S3 warehouse")
    refuse_old_layout(existing_warehouse(directory))
    files, version = snapshot_files(directory)
    con = duckdb.connect(":memory:")
    contracts = read_files_source(files[layout.CONTRACTS], layout.CONTRACTS)
    over_files, over_calendars = view_statements(files, contract_columns=contract_columns(con, contracts))
    for sql in over_files:
        con.execute(sql)
    sessions_file = output.with_name(output.name + ".sessions.parquet")
    sessions, mapping = calendar_tables(con)
    buffer = pa.BufferOutputStream()
    pq.write_table(sessions, buffer)
    write_bytes_atomic(sessions_file, buffer.getvalue().to_pybytes())
    pairs = ", ".join(f"({con_id}, {sql_literal(name)})" for con_id, name in
                      zip(mapping.column("con_id").to_pylist(), mapping.column("calendar").to_pylist(), strict=True))
    mapping_sql = (f"SELECT * FROM (VALUES {pairs}) t(con_id, calendar)" if pairs else
                   "SELECT NULL::BIGINT AS con_id, NULL::VARCHAR AS calendar WHERE false")
    one_line = str(directory).encode("unicode_escape").decode()
    lines = [
        f"-- harvest views over {one_line}, bars version {version} (generated by `harvest sql-init`;",
        "-- re-run it and `.read` this file to see later commits).",
        "-- DuckDB spills to ./.tmp by default, a folder it would leave in the directory the CLI runs from:",
        f"SET temp_directory = {sql_literal(cli_temp_directory())};",
        "-- bars.ts is a TIMESTAMPTZ: naive literals and instants compared with it are UTC, as it prints:",
        f"{UTC_SESSION};",
        *(f"{sql};" for sql in over_files),
        f"CREATE OR REPLACE TABLE sessions AS SELECT * FROM read_parquet({sql_literal(sessions_file)});",
        f"CREATE OR REPLACE TABLE contract_calendars AS {mapping_sql};",
        *(f"{sql};" for sql in over_calendars),
    ]
    write_bytes_atomic(output, ("\n".join(lines) + "\n").encode())
    return output


def restrict(con: duckdb.DuckDBPyConnection, data_dir: str | os.PathLike[str] | None = None,
             also: str | os.PathLike[str] | None = None) -> None:
    """Forbid reading outside the warehouse (and the directory `also`), extensions and setting changes, for
    good on `con`. Set `temp_directory` first (`fence`): DuckDB lets its temp directory through too.

    DuckDB still lets COPY write inside allowed directories: statement checks (scanners) cover that.
    """
    directory = resolve_data_dir(data_dir) if data_dir is not None else source_of(con)[0]
    allowed = [f"{directory}/"] if isinstance(directory, Path) else []  # S3: read through registered datasets
    allowed += [f"{Path(also).absolute()}/"] if also is not None else []
    con.execute("SET allowed_directories = $dirs", {"dirs": allowed})
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")


def fence(con: duckdb.DuckDBPyConnection, data_dir: str | os.PathLike[str], private: str | os.PathLike[str],
          lock_down: bool = True) -> None:
    """`harvest query`'s fence: DuckDB's temp directory is `private` (a directory the caller created and
    removes; by default DuckDB uses ./.tmp and lets queries read it, ~/.tmp when run from $HOME), and with
    `lock_down` only the warehouse and `private` can be read (`restrict`)."""
    con.execute("SET temp_directory = $dir", {"dir": str(Path(private).absolute())})
    if lock_down:
        restrict(con, data_dir, also=private)
