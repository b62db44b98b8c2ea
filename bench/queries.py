"""Query benchmark: `queries` against a hand-written read_parquet of the same files, and ArcticDB.

Builds (once, cached) a warehouse of 100 symbols × one year of RTH 1-min bars from the simulator's
generator, written through the project's own writer (harvester.warehouse.store),
then times, as warm medians in one run:
  (a) one symbol, one month   (b) all symbols, one day   (c) daily bars resampled from minutes,
  all symbols, the year       (d) one symbol, the year
plus (a), (b), (d) through the `bars` view with a `period` partition predicate ("filters") or with only
the `ts` filter ("none") instead of `bars()`'s default of naming the snapshot's partition files.
ArcticDB pins pandas<3, so it runs in its own venv (--arctic-python), in a child process of this run:
  python3 -m venv /tmp/arctic-venv && /tmp/arctic-venv/bin/pip install arcticdb pyarrow
  python bench/queries.py --arctic-python /tmp/arctic-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

YEAR = 2024
MONTH = (f"{YEAR}-06-01", f"{YEAR}-07-01")
DAY = (f"{YEAR}-06-12", f"{YEAR}-06-13")
YEAR_RANGE = (f"{YEAR}-01-01", f"{YEAR + 1}-01-01")
MINUTES = "bars/bar_size=1min"  # the benchmark's one series family (one commit: no stale files beside it)
CASES = ("(a) one symbol, one month", "(b) all symbols, one day", "(c) daily from minutes, all, year",
         "(d) one symbol, the year")


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def universe() -> list:
    """100 instruments of the simulator's securities master, all listed before the benchmark year."""
    from harvester.sim.market.securities import SecuritiesMaster

    listed = [i for i in SecuritiesMaster.load() if i.listing_date.year < YEAR and i.symbol != "DUAL"]
    return sorted(listed, key=lambda i: i.symbol)[:100]



def build(data_dir: Path) -> int:
    """Generate a year of RTH 1-min TRADES bars per symbol with the simulator's generator and write them
    through the project's own writer (stage one month per symbol, then one commit): month files holding
    all symbols, sorted by (symbol, ts), zstd, 64k-row groups."""
    from datetime import UTC, datetime

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


def time_queries(data_dir: Path, repeat: int, one: str) -> dict[str, tuple[float, float]]:
    """(queries ms, hand-written ms) per case, plus the no-partition-predicate variants."""
    import duckdb
    from deltalake import DeltaTable

    import queries
    from harvester import BAR_SIZES, layout
    from queries import Relation
    from queries.connection import BARS_COLUMNS

    con = queries.connect(data_dir)
    hand = duckdb.connect()
    snapshot = [f for f in DeltaTable(str(data_dir / layout.BARS)).file_uris() if "bar_size=1min/" in f]
    month_file = str([f for f in snapshot if f"period={YEAR}-06/" in f])
    all_files = str(snapshot)
    daily_sql = queries.scanners.load("daily_from_minutes").sql
    hand_bars = (f"WITH bars AS (SELECT symbol, con_id, '1 min' AS bar_size, 'TRADES' AS what_to_show, "
                 f"true AS use_rth, * EXCLUDE (symbol, con_id) FROM read_parquet({all_files})) ")
    daily_params = {"start": YEAR_RANGE[0], "end": YEAR_RANGE[1], "what_to_show": "TRADES", "use_rth": True}

    def frame(relation: Relation) -> object:
        return relation.to_arrow_table().to_pandas(date_as_object=False)  # as bars() converts

    def hand_sql(sql: str, params: dict | None = None) -> Callable[[], object]:
        return lambda: frame(hand.sql(sql, params=params))

    def pruned_by(pruning: str, symbols: list[str], start: str, end: str) -> Callable[[], object]:
        """The glob view instead of bars()'s own file list: with hive (year) and filename predicates
        ('filters') or the `ts` bounds alone ('none')."""
        size = BAR_SIZES["1 min"]
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

    cases = {
        CASES[0]: (lambda: queries.bars(one, "1 min", *MONTH, con=con, data_dir=data_dir),
                   hand_sql(f"SELECT * FROM read_parquet({month_file}) WHERE symbol = '{one}' AND ts >= "
                            f"'{MONTH[0]}' AND ts < '{MONTH[1]}' ORDER BY symbol, ts")),
        CASES[1]: (lambda: queries.bars(None, "1 min", *DAY, con=con, data_dir=data_dir),
                   hand_sql(f"SELECT * FROM read_parquet({month_file}) WHERE ts >= '{DAY[0]}' AND ts < "
                            f"'{DAY[1]}' ORDER BY symbol, ts")),
        CASES[2]: (lambda: queries.scan("daily_from_minutes", con=con, start=YEAR_RANGE[0], end=YEAR_RANGE[1]),
                   hand_sql(hand_bars + daily_sql, daily_params)),
        CASES[3]: (lambda: queries.bars(one, "1 min", *YEAR_RANGE, con=con, data_dir=data_dir),
                   hand_sql(f"SELECT * FROM read_parquet({all_files}) WHERE symbol = '{one}' ORDER BY symbol, ts")),
        **{f"{case[:3]} pruning={how}": (pruned_by(how, symbols, *span), lambda: None)
           for case, symbols, span in ((CASES[0], [one], MONTH), (CASES[1], [], DAY), (CASES[3], [one], YEAR_RANGE))
           for how in ("filters", "none")},
    }
    return {name: (median_ms(ours, repeat), median_ms(ref, repeat)) for name, (ours, ref) in cases.items()}


def arctic_child(data_dir: Path, repeat: int, one: str) -> None:
    """Runs under the ArcticDB venv: load the same bars into LMDB once, time the same reads, print JSON."""
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
        for symbol, part in frame.groupby("symbol"):
            lib.write(symbol, part.drop(columns=["symbol", "con_id"]).set_index("ts").sort_index())
    symbols = sorted(lib.list_symbols())
    stamp = pd.Timestamp
    before = pd.Timedelta(microseconds=1)
    q = QueryBuilder().resample("1D").agg({"open": "first", "high": "max", "low": "min", "close": "last",
                                           "volume": "sum"})
    cases = {
        CASES[0]: lambda: lib.read(one, date_range=(stamp(MONTH[0]), stamp(MONTH[1]) - before)).data,
        CASES[1]: lambda: pd.concat([r.data for r in lib.read_batch(
            [ReadRequest(s, date_range=(stamp(DAY[0]), stamp(DAY[1]) - before)) for s in symbols])]),
        CASES[2]: lambda: pd.concat([r.data for r in lib.read_batch(symbols, query_builder=q)]),
        CASES[3]: lambda: lib.read(one).data,
    }
    print(json.dumps({name: median_ms(fn, repeat) for name, fn in cases.items()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/harvest-bench-queries"))
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--arctic-python", help="python of a venv with arcticdb (it pins pandas<3)")
    ap.add_argument("--arctic-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    data_dir = args.dir.resolve()
    if args.arctic_child:
        arctic_child(data_dir, args.repeat, args.one)
        return
    # This file is named like the package it measures: drop its own folder from the path first.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    if not (data_dir / MINUTES).exists():
        t = time.perf_counter()
        rows = build(data_dir)
        print(f"built {rows:,} rows in {time.perf_counter() - t:.1f} s under {data_dir}")
    one = universe()[42].symbol
    arctic: dict[str, float] = {}
    if args.arctic_python:
        child = subprocess.run([args.arctic_python, __file__, "--arctic-child", "--dir", str(data_dir),
                                "--repeat", str(args.repeat), "--one", one], capture_output=True, text=True, check=True)
        arctic = json.loads(child.stdout.strip().splitlines()[-1])
    results = time_queries(data_dir, args.repeat, one)
    print(f"{'query (warm medians, ms)':34} {'queries':>8} {'hand':>8} {'q/hand':>6} {'arcticdb':>9} {'q/arctic':>8}")
    for name, (q, h) in results.items():
        a = arctic.get(name)
        hand = f"{h:8.1f} {q / h:6.2f}" if name in CASES else f"{'':8} {'':6}"
        vs = f"{a:9.1f} {q / a:8.2f}" if a else ""
        print(f"{name:34} {q:8.1f} {hand} {vs}")


if __name__ == "__main__":
    main()
