"""Warehouse throughput: a 100-symbol × 1-month 1-min backfill staged in 1-day chunks, then committed.

Run: python bench/warehouse.py [--symbols 100] [--days 21] [--dir /tmp/wh-bench]
Prints stage rows/s (validation + durable staging), commit rows/s (merge + sort + zstd + atomic replace +
coverage), and a nightly increment (every symbol × 1 more session into the existing month file).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from harvester.model import BarRequest, Outcome, SeriesKey
from harvester.warehouse.store import Warehouse

RTH_MINUTES = 390


def sessions(first: date, count: int) -> list[date]:
    days, day = [], first
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def day_request(con_id: int, day: date) -> tuple[BarRequest, pd.DataFrame]:
    start = datetime(day.year, day.month, day.day, 13, 30, tzinfo=UTC)
    req = BarRequest(SeriesKey(con_id, "1 min", "TRADES", True), start, start + timedelta(minutes=RTH_MINUTES),
                     "1 D", RTH_MINUTES)
    rng = np.random.default_rng(con_id * 100_000 + day.toordinal())
    close = 100 + np.cumsum(rng.normal(0, 0.1, RTH_MINUTES))
    bars = pd.DataFrame({
        "ts": pd.date_range(start, periods=RTH_MINUTES, freq="min"), "session_date": [day] * RTH_MINUTES,
        "open": close, "high": close + 0.05, "low": close - 0.05, "close": close,
        "volume": rng.integers(100, 10_000, RTH_MINUTES).astype(float), "wap": close, "bar_count": 10,
    })
    return req, bars


def stage_days(wh: Warehouse, symbols: int, days: list[date]) -> tuple[int, float]:
    payload = [(c, *day_request(c, d)) for c in range(1, symbols + 1) for d in days]
    began = time.perf_counter()
    for con_id, req, bars in payload:
        wh.stage(req, Outcome.BARS, bars, symbol=f"SYM{con_id:03d}")
    return len(payload) * RTH_MINUTES, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="wh-bench-"))
    shutil.rmtree(root, ignore_errors=True)
    days = sessions(date(2024, 6, 3), args.days + 1)
    wh = Warehouse.open(root, simulated=True)
    rows, staged_s = stage_days(wh, args.symbols, days[:-1])
    stats = wh.commit()
    print(f"backfill: {rows:,} rows in {args.symbols * args.days} stage calls: stage {staged_s:.2f} s "
          f"({rows / staged_s:,.0f} rows/s); commit {stats.seconds:.2f} s ({rows / stats.seconds:,.0f} rows/s), "
          f"{stats.partitions_written} partition file(s)")
    size = sum(p.stat().st_size for p in (root / "bars").rglob("*.parquet"))
    print(f"bars on disk: {size / 1e6:.1f} MB ({size / rows:.1f} bytes/row)")
    nightly, staged_s = stage_days(wh, args.symbols, days[-1:])
    stats = wh.commit()
    print(f"nightly: {nightly:,} rows: stage {staged_s:.2f} s, commit {stats.seconds:.2f} s "
          f"(rewrote {stats.rows_in_written_files:,} rows)")
    if args.dir is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
