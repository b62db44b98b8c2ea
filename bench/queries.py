"""Query benchmark: `queries` against hand-written reads of the same files, other read paths and row-group
sizes, and ArcticDB.

Builds (once, cached) a warehouse of 100 symbols × one year of RTH 1-min bars from the simulator's
generator, written through the project's own writer (harvester.warehouse.store),
then times, as warm medians in one run:
  (a) one symbol, one month   (b) all symbols, one day   (c) daily bars resampled from minutes,
  all symbols, the year       (d) one symbol, the year
Every range is an instant range [start, end), the rows ArcticDB's `date_range` and the hand-written SQL
read. Variants, each in the same rounds:
  queries          the default: `bars()` (one symbol from its row groups by pyarrow, queries/rowgroups.py)
                   and `scan()`
  duckdb           `bars()`' own file list and SQL through DuckDB (the read path before the row-group reader)
  duckdb+cache     the same with DuckDB's Parquet metadata cache on
  hand             hand-written read_parquet of the same files
  pruning=...      (a), (b), (d) through the `bars` view with a `period` partition predicate ("filters") or
                   the `ts` filter alone ("none")
  rg<N>            `queries` and `duckdb` over a copy of the warehouse whose bars files delta-rs rewrote in
                   row groups of N rows (--row-groups; rg<N>:<codec> also compressed with that codec)
  aligned          the same over a copy in row groups cut where the symbol changes (pyarrow's writer)
Side by side in the same run: the previous file layout (commit PREVIOUS, extracted with `git archive`, its
own writer, queries and cases in a child process) and ArcticDB, which pins pandas<3, so it runs in its own
venv (--arctic-python), also in a child process:
  python3 -m venv /tmp/arctic-venv && /tmp/arctic-venv/bin/pip install arcticdb pyarrow
  python bench/queries.py --arctic-python /tmp/arctic-venv/bin/python
The children time one case when asked, so every round runs each case once in every process, interleaved:
the ratios hold under a machine's changing load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

YEAR = 2024
# Instants: a date bound of bars() is an exchange date with the end included, one more session than these
MONTH = (f"{YEAR}-06-01T00:00", f"{YEAR}-07-01T00:00")
DAY = (f"{YEAR}-06-12T00:00", f"{YEAR}-06-13T00:00")
YEAR_RANGE = (f"{YEAR}-01-01T00:00", f"{YEAR + 1}-01-01T00:00")
MINUTES = "bars/bar_size=1min"  # the benchmark's one series family (one commit: no stale files beside it)
CASES = ("(a) one symbol, one month", "(b) all symbols, one day", "(c) daily from minutes, all, year",
         "(d) one symbol, the year")
PREVIOUS = "c9adb3c"  # the last commit of the previous layout (Parquet files replaced in place)


def universe() -> list:
    """100 instruments of the simulator's securities master, all listed before the benchmark year."""
    from harvester.sim.market.securities import SecuritiesMaster

    listed = [i for i in SecuritiesMaster.load() if i.listing_date.year < YEAR and i.symbol != "DUAL"]
    return sorted(listed, key=lambda i: i.symbol)[:100]



def build(data_dir: Path) -> int:
    """Generate a year of RTH 1-min TRADES bars per symbol with the simulator's generator and write them
    through the project's own writer (stage one month per symbol, then one commit): month files holding
    all symbols, sorted by (symbol, ts), zstd, in the writer's row groups."""
    import pandas as pd

    from harvester.calendar import TradingCalendar
    from harvester.model import BarRequest, Outcome, SeriesKey
    from harvester.sim.market.marketdata import MarketData
    from harvester.sim.market.securities import SecuritiesMaster
    from harvester.warehouse.store import Warehouse

    market = MarketData(SecuritiesMaster.load())
    calendar = TradingCalendar.for_exchange("NYSE")
    now = datetime(YEAR + 1, 1, 2, tzinfo=UTC)
    warehouse = Warehouse.open(data_dir, simulated=True, gateway="bench")
    rows = 0
    for inst in universe():
        for month in range(1, 13):
            start = datetime(YEAR, month, 1, tzinfo=UTC)
            end = datetime(YEAR + month // 12, month % 12 + 1, 1, tzinfo=UTC)
            cols = market.bar_columns(inst, "1 min", "TRADES", True, start, end, now)
            frame = pd.DataFrame({
                "ts": pd.to_datetime(cols.start, unit="s", utc=True), "session_date": cols.session_date,
                "open": cols.open, "high": cols.high, "low": cols.low, "close": cols.close,
                "volume": cols.volume, "wap": cols.wap, "bar_count": cols.count,
            })
            request = BarRequest(SeriesKey(inst.con_id, "1 min", "TRADES", True), start, end, "1 M", len(frame))
            rows += warehouse.stage(request, Outcome.BARS, frame, symbol=inst.symbol, calendar=calendar).kept
    warehouse.commit()
    warehouse.close()
    return rows


def time_queries(data_dir: Path, one: str, prefix: str = "", full: bool = True) -> dict[str, Callable[[], object]]:
    """Each case as "<prefix><case>|<variant>" (the module's docstring lists them); `full`: also the
    hand-written reads and the view's partition-pruning variants."""
    import duckdb
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    import queries
    from harvester import BAR_SIZES, layout
    from queries import Relation, readthrough
    from queries.connection import BARS_COLUMNS, one_after_another, series_files, snapshot_of

    con = queries.connect(data_dir)
    cached = queries.connect(data_dir)
    cached.execute("SET parquet_metadata_cache = true")
    hand = duckdb.connect()
    snapshot = [f for f in DeltaTable(str(data_dir / layout.BARS)).file_uris() if "bar_size=1min/" in f]
    june = [f for f in snapshot if f"period={YEAR}-06/" in f]
    month_file, all_files = str(june), str(snapshot)
    daily_sql = queries.scanners.load("daily_from_minutes").sql
    hand_bars = (f"WITH bars AS (SELECT symbol, con_id, '1 min' AS bar_size, 'TRADES' AS what_to_show, "
                 f"true AS use_rth, * EXCLUDE (symbol, con_id) FROM read_parquet({all_files})) ")
    daily_params = {"start": YEAR_RANGE[0], "end": YEAR_RANGE[1], "what_to_show": "TRADES", "use_rth": True}
    size = BAR_SIZES["1 min"]

    def frame(relation: Relation) -> object:
        return relation.to_arrow_table().to_pandas(date_as_object=False)  # as bars() converts

    def hand_sql(sql: str, params: dict | None = None) -> Callable[[], object]:
        return lambda: frame(hand.sql(sql, params=params))

    def hand_pyarrow(files: list[str], start: str, end: str) -> Callable[[], object]:
        """pyarrow's own reader, pruning row groups by the symbol and ts statistics."""
        where = [("symbol", "=", one), ("ts", ">=", datetime.fromisoformat(start).replace(tzinfo=UTC)),
                 ("ts", "<", datetime.fromisoformat(end).replace(tzinfo=UTC))]  # ts is stored UTC-aware
        return lambda: pq.read_table(files, filters=where).to_pandas(date_as_object=False)

    def through_duckdb(db: duckdb.DuckDBPyConnection, start: str, end: str) -> Callable[[], object]:
        """bars()' own file list and SQL on `db`, as bars() read one symbol before the row-group reader."""
        def read() -> object:
            first, last = readthrough.to_bound(start, "start"), readthrough.to_bound(end, "end")
            found = series_files(snapshot_of(db).files, size, "TRADES", True, first, last)
            wanted, ids, loose = readthrough._chosen(data_dir, [one], None, None, first, last, None)
            sql, params = readthrough.bars_query(wanted, size, first, last, "TRADES", True, [f.path for f in found],
                                                 None, ids, loose, files_in_ts_order=one_after_another(found))
            return frame(db.sql(sql, params=params))
        return read

    def pruned_by(pruning: str, symbols: list[str], start: str, end: str) -> Callable[[], object]:
        """The glob view instead of bars()'s own file list: with hive (year) and filename predicates
        ('filters') or the `ts` bounds alone ('none')."""
        where = ["bar_size = ?", "what_to_show = 'TRADES'", "use_rth", "ts >= ?", "ts < ?"]
        params: list = [size.label, start, end]
        if symbols:
            where.append(f"symbol IN ({', '.join('?' * len(symbols))})")
            params += symbols
        if pruning == "filters":
            lo, hi = datetime.fromisoformat(start), datetime.fromisoformat(end)
            periods = layout.periods_for(size, lo, hi)
            where.append(f"period IN ({', '.join('?' * len(periods))})")
            params += periods
        columns = BARS_COLUMNS.replace("bar_size", "'1 min' AS bar_size")
        sql = f"SELECT {columns} FROM bars_files WHERE {' AND '.join(where)} ORDER BY symbol, ts"
        return lambda: frame(con.sql(sql, params=params))

    def daily(db: duckdb.DuckDBPyConnection) -> Callable[[], object]:
        return lambda: queries.scan("daily_from_minutes", con=db, start=YEAR_RANGE[0], end=YEAR_RANGE[1])

    cases: dict[str, dict[str, Callable[[], object]]] = {
        CASES[0]: {"queries": lambda: queries.bars(one, "1 min", *MONTH, con=con, data_dir=data_dir),
                   "duckdb": through_duckdb(con, *MONTH), "duckdb+cache": through_duckdb(cached, *MONTH),
                   "hand": hand_sql(f"SELECT * FROM read_parquet({month_file}) WHERE symbol = '{one}' AND ts >= "
                                    f"'{MONTH[0]}' AND ts < '{MONTH[1]}' ORDER BY symbol, ts"),
                   "hand pyarrow": hand_pyarrow(june, *MONTH)},
        CASES[1]: {"queries": lambda: queries.bars(None, "1 min", *DAY, con=con, data_dir=data_dir),
                   "duckdb+cache": lambda: queries.bars(None, "1 min", *DAY, con=cached, data_dir=data_dir),
                   "hand": hand_sql(f"SELECT * FROM read_parquet({month_file}) WHERE ts >= '{DAY[0]}' AND ts < "
                                    f"'{DAY[1]}' ORDER BY symbol, ts")},
        CASES[2]: {"queries": daily(con), "duckdb+cache": daily(cached), "hand": hand_sql(hand_bars + daily_sql,
                                                                                          daily_params)},
        CASES[3]: {"queries": lambda: queries.bars(one, "1 min", *YEAR_RANGE, con=con, data_dir=data_dir),
                   "duckdb": through_duckdb(con, *YEAR_RANGE), "duckdb+cache": through_duckdb(cached, *YEAR_RANGE),
                   "hand": hand_sql(f"SELECT * FROM read_parquet({all_files}) WHERE symbol = '{one}' ORDER BY "
                                    "symbol, ts"),
                   "hand pyarrow": hand_pyarrow(snapshot, *YEAR_RANGE)},
    }
    timed = {}
    for name, variants in cases.items():
        for variant, fn in variants.items():
            if full or variant in ("queries", "duckdb"):
                timed[f"{prefix}{name}|{variant}"] = fn
    if full:
        for case, symbols, span in ((CASES[0], [one], MONTH), (CASES[1], [], DAY), (CASES[3], [one], YEAR_RANGE)):
            for how in ("filters", "none"):
                timed[f"{case[:3]} pruning={how}|queries"] = pruned_by(how, symbols, *span)
    return timed


def rewritten(data_dir: Path, variant: str) -> Path:
    """A copy of the warehouse whose bars partitions delta-rs rewrote as `variant` says: "ROWS" row groups
    compressed as ours, or "ROWS:CODEC" (once, cached)."""
    import shutil

    import deltalake
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import DeltaTable, WriterProperties

    from harvester import layout, tables
    from harvester.warehouse.delta import WRITER

    rows, _, codec = variant.partition(":")
    copy = data_dir.parent / f"{data_dir.name}-rg{rows}{codec.lower()}"
    if (copy / MINUTES).exists():
        return copy
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(data_dir, copy)
    root = str(copy / layout.BARS)
    for uri in sorted(DeltaTable(root).file_uris()):
        table = DeltaTable(root)
        period = uri.split("period=")[1].split("/")[0]
        part = pq.read_table(uri).select(tables.BAR_COLUMNS)
        for name, value in (("bar_size", "1min"), ("what_to_show", "TRADES"), ("use_rth", True), ("period", period)):
            part = part.append_column(name, pa.array([value] * part.num_rows))
        deltalake.write_deltalake(
            table, part.cast(tables.BARS_TABLE_SCHEMA).combine_chunks(), mode="overwrite",
            predicate=f"bar_size = '1min' AND what_to_show = 'TRADES' AND use_rth = true AND period = '{period}'",
            partition_by=list(layout.PARTITIONS[layout.BARS]),
            writer_properties=WriterProperties(compression=codec or WRITER.compression, max_row_group_size=int(rows)))
    DeltaTable(root).vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False)
    return copy


def aligned(data_dir: Path) -> Path:
    """A copy of the warehouse whose bars files pyarrow rewrote with row groups cut where the symbol changes
    (one symbol-month of 1-min bars a group), committed as Delta add actions (once, cached): what a writer
    of our own would give one-symbol reads. delta-rs cannot cut so: arrow-rs closes a group every
    `max_row_group_size` rows."""
    import itertools
    import json
    import shutil

    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from deltalake import DeltaTable
    from deltalake.transaction import AddAction

    from harvester import layout

    copy = data_dir.parent / f"{data_dir.name}-aligned"
    if (copy / MINUTES).exists():
        return copy
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(data_dir, copy)
    root = copy / layout.BARS
    snapshot = DeltaTable(str(root))
    actions = []
    for n, uri in enumerate(sorted(snapshot.file_uris())):
        rows = pq.read_table(uri)
        symbols = rows.column("symbol").to_numpy(zero_copy_only=False)
        cuts = [0, *(np.flatnonzero(symbols[1:] != symbols[:-1]) + 1).tolist(), rows.num_rows]
        target = Path(uri).with_name(f"aligned-{n}.zstd.parquet")
        with pq.ParquetWriter(target, rows.schema, compression="lz4") as writer:  # LZ4_RAW, as ours
            for a, b in itertools.pairwise(cuts):
                writer.write_table(rows.slice(a, b - a), row_group_size=b - a)
        values = dict(part.split("=") for part in target.parent.relative_to(root).parts)
        ranges = {c: (pc.min(rows.column(c)).as_py(), pc.max(rows.column(c)).as_py()) for c in ("ts", "session_date")}
        shown = {"ts": lambda t: f"{t.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}", "session_date": lambda d: d.isoformat()}
        stats = {"numRecords": rows.num_rows, "minValues": {c: shown[c](lo) for c, (lo, _) in ranges.items()},
                 "maxValues": {c: shown[c](hi) for c, (_, hi) in ranges.items()}}
        actions.append(AddAction(str(target.relative_to(root)), target.stat().st_size, values, int(time.time() * 1000),
                                 True, json.dumps(stats)))
    snapshot.create_write_transaction(actions, "overwrite", snapshot.schema(),
                                      partition_by=list(layout.PARTITIONS[layout.BARS]))
    DeltaTable(str(root)).vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False)
    return copy


def arctic_cases(data_dir: Path, one: str) -> dict[str, Callable[[], object]]:
    """Runs under the ArcticDB venv: the same bars loaded into LMDB once, the same reads."""
    import pandas as pd
    import pyarrow.parquet as pq
    from arcticdb import Arctic, QueryBuilder
    from arcticdb.version_store.library import ReadRequest

    store = data_dir.parent / f"{data_dir.name}-arcticdb"
    lib = Arctic(f"lmdb://{store}?map_size=4GB").get_library("bars", create_if_missing=True)
    if not lib.list_symbols():
        columns = ["symbol", "con_id", "ts", "session_date", "open", "high", "low", "close", "volume", "wap",
                   "bar_count"]
        frame = pq.read_table(str(data_dir / MINUTES), columns=columns).to_pandas(date_as_object=False)
        frame["ts"] = frame["ts"].dt.tz_localize(None)  # naive UTC, as the cases' date ranges
        for symbol, part in frame.groupby("symbol"):
            lib.write(symbol, part.drop(columns=["symbol", "con_id"]).set_index("ts").sort_index())
    symbols = sorted(lib.list_symbols())
    stamp = pd.Timestamp
    before = pd.Timedelta(microseconds=1)
    q = QueryBuilder().resample("1D").agg({"open": "first", "high": "max", "low": "min", "close": "last",
                                           "volume": "sum"})
    return {
        f"{CASES[0]}|arcticdb": lambda: lib.read(one, date_range=(stamp(MONTH[0]), stamp(MONTH[1]) - before)).data,
        f"{CASES[1]}|arcticdb": lambda: pd.concat([r.data for r in lib.read_batch(
            [ReadRequest(s, date_range=(stamp(DAY[0]), stamp(DAY[1]) - before)) for s in symbols])]),
        f"{CASES[2]}|arcticdb": lambda: pd.concat([r.data for r in lib.read_batch(symbols, query_builder=q)]),
        f"{CASES[3]}|arcticdb": lambda: lib.read(one).data,
    }


def previous_cases(source: Path, data_dir: Path) -> dict[str, Callable[[], object]]:
    """Runs in a child whose `harvester` and `queries` are the previous layout's tree (`source`): its own
    benchmark builds its warehouse with its own writer, and its own cases are taken, not re-written."""
    import importlib.util

    sys.path.insert(0, str(source))
    spec = importlib.util.spec_from_file_location("previous_bench", source / "bench" / "queries.py")
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    if not (data_dir / old.SERIES).exists():
        t = time.perf_counter()
        rows = old.build(data_dir)
        print(f"previous layout: built {rows:,} rows in {time.perf_counter() - t:.1f} s under {data_dir}",
              file=sys.stderr)
    timed: list[Callable[[], object]] = []
    old.median_ms = lambda fn, repeat: timed.append(fn) or 1.0  # collect each case's callable, in order
    names = list(old.time_queries(data_dir, 1, old.universe()[42].symbol))
    pairs = iter(timed)
    cases = {}
    for name in names:
        ours, hand = next(pairs), next(pairs)
        cases[f"{name}|queries"] = ours
        if name in old.CASES:
            cases[f"{name}|hand"] = hand
    return cases


def serve(cases: dict[str, Callable[[], object]]) -> None:
    """A child's side: say which cases it has, then run each one named on stdin and answer its ms."""
    print(json.dumps(list(cases)), flush=True)
    for line in sys.stdin:
        fn = cases[line.rstrip("\n")]
        t = time.perf_counter()
        fn()
        print((time.perf_counter() - t) * 1000, flush=True)


class Child:
    """Cases timed in another process (another venv or another tree), one at a time when asked, so its
    samples interleave with ours under the same load."""

    def __init__(self, argv: list[str], **popen: object) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **popen)
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{argv[0]}: the child benchmark exited ({self.proc.wait()})")
        self.cases = set(json.loads(line))

    def time(self, key: str) -> float:
        self.proc.stdin.write(key + "\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def previous_tree(rev: str, into: Path) -> Path | None:
    """The previous layout's source tree (`git archive` of `rev` from this checkout), extracted once."""
    source = into / "src"
    if (source / "bench" / "queries.py").exists():
        return source
    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", rev], capture_output=True,
                             check=False)
    if archive.returncode:
        print(f"previous layout skipped: git archive {rev}: {archive.stderr.decode().strip()}", file=sys.stderr)
        return None
    source.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    return source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/harvest-bench-queries"))
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--previous", default=PREVIOUS, help="commit of the previous file layout ('' to skip)")
    ap.add_argument("--arctic-python", help="python of a venv with arcticdb (it pins pandas<3)")
    ap.add_argument("--row-groups", nargs="*", default=["65536", "16384:ZSTD", "8192"],
                    help="also time copies of the warehouse rewritten in row groups of these many rows "
                         "(ROWS:CODEC: compressed so)")
    ap.add_argument("--no-aligned", dest="aligned", action="store_false",
                    help="skip the copy in row groups cut at symbol boundaries")
    ap.add_argument("--child", choices=("arctic", "previous"), help=argparse.SUPPRESS)
    ap.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    data_dir = args.dir.resolve()
    # This file is named like the package it measures: drop its own folder from the path first.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    if args.child == "arctic":
        serve(arctic_cases(data_dir, args.one))
        return
    if args.child == "previous":
        serve(previous_cases(args.source, data_dir))
        return
    if not (data_dir / MINUTES).exists():
        t = time.perf_counter()
        rows = build(data_dir)
        print(f"built {rows:,} rows in {time.perf_counter() - t:.1f} s under {data_dir}")
    one = universe()[42].symbol
    children: dict[str, Child] = {}
    source = previous_tree(args.previous, data_dir.parent / f"{data_dir.name}-previous-{args.previous}") \
        if args.previous else None
    if source is not None:
        children["previous"] = Child([sys.executable, __file__, "--child", "previous", "--source", str(source),
                                      "--dir", str(source.parent / "data")])
    if args.arctic_python:
        children["arcticdb"] = Child([args.arctic_python, __file__, "--child", "arctic", "--dir", str(data_dir),
                                      "--one", one])
    ours = time_queries(data_dir, one)
    for variant in args.row_groups:
        ours.update(time_queries(rewritten(data_dir, variant), one, prefix=f"rg{variant} ", full=False))
    if args.aligned:
        ours.update(time_queries(aligned(data_dir), one, prefix="aligned ", full=False))
    runs: list[tuple[str, Callable[[], float]]] = [(k, lambda fn=fn: timed_ms(fn)) for k, fn in ours.items()]
    for label, child in children.items():
        runs += [(key if label == "arcticdb" else f"{label} {key}", lambda c=child, k=key: c.time(k))
                 for key in sorted(child.cases)]
    runs.sort(key=lambda run: case_of(run[0]))  # a case's variants and children run one after another
    samples: dict[str, list[float]] = {}
    for round_ in range(args.repeat + 1):  # round 0 warms every case up; then each round runs every case once
        for label, run in runs:
            ms = run()
            if round_:
                samples.setdefault(label, []).append(ms)
    for child in children.values():
        child.close()
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(f"warm medians of {args.repeat} interleaved rounds, ms; previous layout = commit {args.previous} "
          "(its own writer, queries and cases, in a child process)")
    for case in CASES:
        arctic = med.get(f"{case}|arcticdb")
        print(f"\n{case}" + (f" (ArcticDB {arctic:.1f} ms)" if arctic else ""))
        for label, _ in runs:
            if case_of(label) == case[:3] and not label.endswith("|arcticdb"):
                ratio = f"{med[label] / arctic:8.2f}x ArcticDB" if arctic else ""
                print(f"  {variant_of(label):32} {med[label]:9.1f} {ratio}")
    print(f"\n{'query':34} {'queries':>8} {'best hand':>9} {'q/hand':>6} {'prev q':>8} {'arcticdb':>9} "
          f"{'q/arctic':>8}")
    for case in CASES:
        q, a = med.get(f"{case}|queries"), med.get(f"{case}|arcticdb")
        hands = [med[k] for k in (f"{case}|hand", f"{case}|hand pyarrow") if k in med]
        h = min(hands) if hands else None
        cells = [cell(q), cell(h, 9), cell(q / h if q and h else None, 6, 2), cell(med.get(f"previous {case}|queries")),
                 cell(a, 9), cell(q / a if q and a else None, 8, 2)]
        print(f"{case:34} {' '.join(cells)}")


def case_of(label: str) -> str:
    """"(a)".."(d)" of a run's label ("rg16384 (a) one symbol...|queries", "previous (b) ...|hand")."""
    return label[label.index("("):][:3]


def variant_of(label: str) -> str:
    """What a label measures, its case left out: "rg16384 duckdb", "pruning=none", "previous hand"."""
    at = label.index("(")
    case, variant = label[at:].split("|")
    return f"{label[:at]}{case[4:] if 'pruning=' in case else variant}"


def timed_ms(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def cell(value: float | None, width: int = 8, digits: int = 1) -> str:
    return f"{value:{width}.{digits}f}" if value is not None else " " * width


if __name__ == "__main__":
    main()
