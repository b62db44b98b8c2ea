"""Query benchmark: `queries` against a hand-written read_parquet over the same files (and ArcticDB if present).

Builds (once, cached) a warehouse of 100 symbols × one year of RTH 1-min bars in the fixed layout,
then times, as warm medians in one run:
  (a) one symbol, one month   (b) all symbols, one day   (c) daily bars resampled from minutes,
  all symbols, the year       (d) one symbol, the year.
Usage: python bench/queries.py [--dir /tmp/harvest-bench-queries] [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# This file is named like the package it measures: drop its own folder from the path first.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import duckdb
import exchange_calendars
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import queries
from queries.connection import BARS_FILE_SCHEMA

YEAR = 2024
SYMBOLS = [f"SYM{i:03d}" for i in range(100)]
ONE = "SYM042"
MONTH = (f"{YEAR}-06-01", f"{YEAR}-07-01")
DAY = (f"{YEAR}-06-12", f"{YEAR}-06-13")
SERIES = "bars/bar_size=1min/what_to_show=TRADES/use_rth=1"


def build(data_dir: Path) -> int:
    """Write the warehouse (month files sorted by symbol, ts; zstd; 64k-row groups); returns rows."""
    sched = exchange_calendars.get_calendar("XNYS").schedule.loc[f"{YEAR}-01-01":f"{YEAR}-12-31"]
    rng = np.random.default_rng(1)
    rows = 0
    for month in range(1, 13):
        s = sched[sched.index.month == month]
        opens = s["open"].dt.tz_localize(None).to_numpy().astype("datetime64[us]")
        lengths = ((s["close"] - s["open"]).dt.total_seconds() // 60).astype(int).to_numpy()
        ts = np.concatenate([o + np.arange(n) * np.timedelta64(60, "s") for o, n in zip(opens, lengths)])
        days = np.repeat(s.index.to_numpy().astype("datetime64[D]"), lengths)
        n, k = len(ts), len(SYMBOLS)
        close = 100 + np.cumsum(rng.normal(0, 0.05, (k, n)), axis=1)
        open_ = close + rng.normal(0, 0.02, (k, n))
        spread = rng.random((k, n)) * 0.05
        table = pa.table(
            {
                "symbol": np.repeat(SYMBOLS, n), "con_id": np.repeat(np.arange(k, dtype=np.int64) + 1000, n),
                "ts": np.tile(ts, k), "session_date": np.tile(days, k),
                "open": open_.ravel(), "high": (np.maximum(open_, close) + spread).ravel(),
                "low": (np.minimum(open_, close) - spread).ravel(), "close": close.ravel(),
                "volume": rng.integers(100, 5000, k * n).astype(float), "wap": close.ravel(),
                "bar_count": rng.integers(1, 50, k * n),
            }
        ).cast(BARS_FILE_SCHEMA)
        path = data_dir / SERIES / f"year={YEAR}" / f"{YEAR}-{month:02d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="zstd", row_group_size=65_536)
        rows += table.num_rows
    return rows


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/harvest-bench-queries"))
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    data_dir = args.dir.resolve()
    if not (data_dir / SERIES).exists():
        t = time.perf_counter()
        rows = build(data_dir)
        print(f"built {rows:,} rows in {time.perf_counter() - t:.1f} s under {data_dir}")
    con = queries.connect(data_dir)
    hand = duckdb.connect()
    files = data_dir / SERIES / f"year={YEAR}"
    month_file, all_files = f"'{files}/{YEAR}-06.parquet'", f"'{files}/*.parquet'"

    def hand_sql(sql: str) -> Callable[[], object]:
        return lambda: hand.execute(sql).df()

    cases = {
        "(a) one symbol, one month": (
            lambda: queries.bars(ONE, "1 min", *MONTH, con=con, data_dir=data_dir),
            hand_sql(f"SELECT * FROM read_parquet({month_file}) WHERE symbol = '{ONE}' AND ts >= '{MONTH[0]}' "
                     f"AND ts < '{MONTH[1]}' ORDER BY symbol, ts"),
        ),
        "(b) all symbols, one day": (
            lambda: queries.bars(None, "1 min", *DAY, con=con, data_dir=data_dir),
            hand_sql(f"SELECT * FROM read_parquet({month_file}) WHERE ts >= '{DAY[0]}' AND ts < '{DAY[1]}' "
                     "ORDER BY symbol, ts"),
        ),
        "(c) daily from minutes, all, year": (
            lambda: queries.scan("daily_from_minutes", con=con, start=f"{YEAR}-01-01", end=f"{YEAR + 1}-01-01"),
            hand_sql(f"SELECT symbol, session_date, min(ts) AS ts, arg_min(open, ts) AS open, max(high) AS high, "
                     f"min(low) AS low, arg_max(close, ts) AS close, sum(volume) AS volume FROM "
                     f"read_parquet({all_files}) GROUP BY symbol, session_date ORDER BY symbol, session_date"),
        ),
        "(d) one symbol, the year": (
            lambda: queries.bars(ONE, "1 min", f"{YEAR}-01-01", f"{YEAR + 1}-01-01", con=con, data_dir=data_dir),
            hand_sql(f"SELECT * FROM read_parquet({all_files}) WHERE symbol = '{ONE}' ORDER BY symbol, ts"),
        ),
    }
    print(f"{'query':36} {'queries ms':>11} {'hand ms':>9} {'ratio':>6}")
    for name, (ours, reference) in cases.items():
        q, h = median_ms(ours, args.repeat), median_ms(reference, args.repeat)
        print(f"{name:36} {q:11.1f} {h:9.1f} {q / h:6.2f}")


if __name__ == "__main__":
    main()
