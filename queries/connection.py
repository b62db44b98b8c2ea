"""An in-memory DuckDB connection with views over the warehouse: bars, contracts, coverage, gaps, ...

Readers take no lock: a `.duckdb` file opened read-write locks every other process out, so views live
in memory over `read_parquet` globs, which re-glob per query (new commits show up, no refresh step) and
never match the writer's `.name.tmp-*` files. DuckDB fails a glob that matches nothing, so every glob
also spans a private directory holding one typed, empty file per table, next to a symlink to the
warehouse: a brand-new warehouse answers with 0 rows, and the empty file's schema fixes the columns.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from datetime import date
from functools import cache, lru_cache
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from harvester import BY_LABEL, layout, resolve_settings, tables
from queries.retrying import DEFAULT_POLICY, Connection, RetryingConnection, RetryPolicy

_TS = pa.timestamp("us")
# bars: the stored columns, with the partition path's bar size, whatToShow and RTH flag after con_id
BARS_COLUMNS = ", ".join(tables.BAR_COLUMNS[:2] + list(tables.BARS_PARTITION_COLUMNS) + tables.BAR_COLUMNS[2:])
_EMPTY_PARTITION = layout.PartitionKey("1day", "TRADES", True, 1970, "data").path(Path())
# One typed, empty file per table, named so that table's glob matches it.
_EMPTY_FILES = {
    layout.CONTRACTS_FILE: tables.CONTRACTS_SCHEMA,
    layout.HEADS_FILE: tables.HEADS_SCHEMA,
    layout.COVERAGE_FILE: tables.COVERAGE_SCHEMA,
    layout.journal_file("empty", 0): tables.JOURNAL_SCHEMA,
    layout.quarantine_file("empty", 0): tables.QUARANTINE_SCHEMA,
    str(_EMPTY_PARTITION): tables.BARS_SCHEMA,
}
EMPTY_BARS_FILE = f"empty/{_EMPTY_PARTITION}"
_LABEL_OF_FILE = "regexp_extract(file_name, 'bar_size=([^/]+)', 1)"
_HIVE_TYPES = "{'bar_size': VARCHAR, 'what_to_show': VARCHAR, 'use_rth': INTEGER, 'year': INTEGER}"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The warehouse directory, absolute: the argument, else the harvester's settings
    (HARVEST_DATA_DIR, harvest.toml, ./data), so notebooks read what the nightly job writes."""
    return Path(data_dir if data_dir is not None else resolve_settings().data_dir).expanduser().resolve()


def build_shadow(root: Path, data_dir: Path) -> Path:
    """Fill `root` with `empty/` (typed empty tables) and `live` → the warehouse; returns `root`.

    Globs of the form `<root>/*/bars/...` then match the warehouse's files plus one empty file.
    """
    for rel, schema in _EMPTY_FILES.items():
        path = root / "empty" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(schema.empty_table(), path)
    live = root / "live"
    if live.is_symlink():
        live.unlink()
    os.symlink(data_dir, live, target_is_directory=True)
    return root


@cache
def shadow_root(data_dir: Path) -> Path:
    """This process's private shadow directory for `data_dir`, removed at exit."""
    root = Path(tempfile.mkdtemp(prefix="harvest-views-"))
    atexit.register(shutil.rmtree, root, True)
    return build_shadow(root, data_dir)


def warehouse_roots(directory: Path) -> tuple[str, str]:
    """The directories a query over `directory` reads through: the warehouse and this process's shadow of it."""
    return str(directory), str(shadow_root(directory))


def _bar_size_case(column: str) -> str:
    whens = " ".join(f"WHEN '{label}' THEN '{b.ib_name}'" for label, b in BY_LABEL.items())
    return f"CASE {column} {whens} END"


def view_statements(root: Path) -> list[str]:
    """The CREATE VIEW statements over a shadow root; `sessions` must exist before the last (gaps)."""
    glob = f"{root}/*"

    def table(pattern: str) -> str:
        return f"read_parquet('{glob}/{pattern}', union_by_name = true)"

    return [
        (f"CREATE OR REPLACE VIEW bars_files AS SELECT * FROM read_parquet('{glob}/{layout.BARS_GLOB}', "
        f"hive_partitioning = true, hive_types = {_HIVE_TYPES}, filename = true)"),
        ("CREATE OR REPLACE VIEW bars AS SELECT "
         + BARS_COLUMNS.replace("bar_size", f"{_bar_size_case('bar_size')} AS bar_size")
         .replace("use_rth", "use_rth = 1 AS use_rth") + " FROM bars_files"),
        (f"CREATE OR REPLACE VIEW bar_files AS SELECT {_bar_size_case(_LABEL_OF_FILE)} "
         "AS bar_size, regexp_extract(file_name, 'what_to_show=([^/]+)', 1) AS what_to_show, "
         "regexp_extract(file_name, 'use_rth=([01])', 1) = '1' AS use_rth, file_name, num_rows, num_row_groups, "
         f"file_size_bytes FROM parquet_file_metadata('{glob}/{layout.BARS_GLOB}') "
         f"WHERE NOT starts_with(file_name, '{root}/empty/')"),
        f"CREATE OR REPLACE VIEW contracts AS SELECT * FROM {table(layout.CONTRACTS_FILE)}",
        f"CREATE OR REPLACE VIEW heads AS SELECT * FROM {table(layout.HEADS_FILE)}",
        f"CREATE OR REPLACE VIEW journal AS SELECT * FROM {table(layout.JOURNAL_GLOB)}",
        f"CREATE OR REPLACE VIEW quarantine AS SELECT * FROM {table(layout.QUARANTINE_GLOB)}",
        ("CREATE OR REPLACE VIEW symbols AS SELECT con_id, arg_max(symbol, qualified_at) AS symbol "
        "FROM contracts GROUP BY con_id"),
        ("CREATE OR REPLACE VIEW coverage AS SELECT c.con_id, s.symbol, c.bar_size, c.what_to_show, "
        "c.use_rth, c.start_ts, c.end_ts, c.kind, c.bars, c.recorded_at "
        f"FROM {table(layout.COVERAGE_FILE)} c LEFT JOIN symbols s USING (con_id)"),
        _COVERED_SQL,
        _SERIES_SQL,
        _GAPS_SQL,
    ]


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
       coalesce(sum(bars), 0)::BIGINT AS bars, max(recorded_at) AS last_recorded
FROM coverage GROUP BY con_id, bar_size, what_to_show, use_rth"""

# Sessions (regular hours) between a series' first and last covered instant that no island spans.
_GAPS_SQL = """CREATE OR REPLACE VIEW gaps AS
SELECT s.con_id, s.symbol, s.bar_size, s.what_to_show, s.use_rth, x.session_date, x.open_ts, x.close_ts
FROM series s JOIN sessions x ON x.close_ts > s.covered_from AND x.open_ts < s.covered_to
WHERE NOT EXISTS (
  SELECT 1 FROM covered c
  WHERE c.con_id = s.con_id AND c.bar_size = s.bar_size AND c.what_to_show = s.what_to_show
    AND c.use_rth = s.use_rth AND c.start_ts <= x.open_ts AND c.end_ts >= x.close_ts)"""


@lru_cache(maxsize=8)
def _xnys_sessions(first: date) -> pa.Table:
    import exchange_calendars  # 0.5 s to import; only paid when the warehouse has coverage

    cal = exchange_calendars.get_calendar("XNYS", start=max(first, date(1990, 1, 2)).isoformat())
    sched = cal.schedule
    return pa.table(
        {
            "session_date": pa.array(sched.index.date, pa.date32()),
            "open_ts": pa.array(sched["open"].dt.tz_localize(None).astype("datetime64[us]"), _TS),
            "close_ts": pa.array(sched["close"].dt.tz_localize(None).astype("datetime64[us]"), _TS),
        }
    )


def _sessions_for(con: Connection) -> pa.Table:
    """XNYS sessions from the first covered day to the calendar's end (≈ a year ahead), UTC naive.

    Built from the coverage present when called: a connection opened on an empty warehouse has no
    sessions (and so no gaps) until it reconnects.
    """
    first = con.execute("SELECT min(start_ts)::DATE FROM coverage").fetchall()[0][0]
    if first is None:
        return pa.schema([("session_date", pa.date32()), ("open_ts", _TS), ("close_ts", _TS)]).empty_table()
    return _xnys_sessions(first)


def connect(data_dir: str | os.PathLike[str] | None = None,
            policy: RetryPolicy = DEFAULT_POLICY) -> RetryingConnection:
    """A new in-memory connection with the warehouse views (bars, bar_files, contracts, heads, coverage,
    covered, series, journal, quarantine, gaps) and a `sessions` table. No lock is taken on the warehouse.

    It behaves as a DuckDB connection whose reads re-run when a harvest commit or compaction replaced a file
    under them (queries/retrying.py); `.raw` is the DuckDB connection itself.
    """
    directory = resolve_data_dir(data_dir)
    con = RetryingConnection(duckdb.connect(":memory:"), warehouse_roots(directory), policy, directory)
    *views, gaps = view_statements(shadow_root(directory))
    for sql in views:
        con.execute(sql)
    con.register("_sessions", _sessions_for(con))
    con.execute("CREATE TABLE sessions AS SELECT * FROM _sessions")
    con.unregister("_sessions")
    con.execute(gaps)
    return con


def write_init_script(output: Path, data_dir: Path) -> Path:
    """Write `output` (for `duckdb -init`) creating the same views, plus its shadow folder `<output>.views/`."""
    output = output.expanduser().resolve()
    root = build_shadow(output.with_suffix(".views"), data_dir)
    con = connect(data_dir)
    sessions_file = root / "sessions.parquet"
    pq.write_table(con.sql("SELECT * FROM sessions").to_arrow_table(), sessions_file)
    *views, gaps = view_statements(root)
    lines = [
        f"-- harvest views over {data_dir} (generated by `harvest sql-init`; re-run after moving the warehouse).",
        f"-- {root} holds typed empty tables so the views work on an empty warehouse, and the sessions table.",
        *(f"{sql};" for sql in views),
        f"CREATE OR REPLACE TABLE sessions AS SELECT * FROM read_parquet('{sessions_file}');",
        f"{gaps};",
    ]
    output.write_text("\n".join(lines) + "\n")
    return output


def restrict(con: Connection, data_dir: str | os.PathLike[str] | None = None) -> None:
    """Forbid reading outside the warehouse, extensions and setting changes, for good on `con`.

    DuckDB still lets COPY write inside allowed directories: statement checks (scanners) cover that.
    """
    directory = resolve_data_dir(data_dir)
    allowed = [f"{directory}/", f"{shadow_root(directory)}/"]
    con.execute("SET allowed_directories = $dirs", {"dirs": allowed})
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")
