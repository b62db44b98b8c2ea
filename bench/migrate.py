"""`harvest migrate` of a format-2 bars table (bar times naive): peak memory and time, in a child process.

    python bench/migrate.py                        # 100 symbols × 6 months of 1-min bars: 4.9 M rows
    python bench/migrate.py --symbols 500 --months 12

The table is synthetic (one file per month, sorted by (symbol, ts), as the harvester writes them); the peak is
the child's own `ru_maxrss` (os.wait4).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from deltalake import write_deltalake

from harvester import tables
from harvester.warehouse.layout import BARS_PARTITION_BY

HARVEST = [sys.executable, "-c", "from harvester.cli import main; main()"]
SESSIONS, PER_SESSION = 21, 390


def format_2_table(root: Path, symbols: int, months: int) -> int:
    """Bars as format 2 stored them (`ts` naive); returns the rows written."""
    naive = tables.BARS_TABLE_SCHEMA.set(tables.BARS_TABLE_SCHEMA.get_field_index("ts"),
                                         pa.field("ts", pa.timestamp("us")))
    rng = np.random.default_rng(0)
    for month in range(1, months + 1):
        days = np.datetime64(f"2023-{month:02d}-01") + np.arange(SESSIONS)
        ts = (days[:, None].astype("datetime64[us]") + np.timedelta64(13 * 60 + 30, "m")
              + np.arange(PER_SESSION)[None, :] * np.timedelta64(1, "m")).ravel()
        n = len(ts) * symbols
        rows = pa.table({
            "symbol": np.repeat([f"S{i:04d}" for i in range(symbols)], len(ts)),
            "con_id": np.repeat(np.arange(symbols, dtype=np.int64), len(ts)), "ts": np.tile(ts, symbols),
            "session_date": np.tile(np.repeat(days, PER_SESSION), symbols),
            **{c: rng.random(n) for c in ("open", "high", "low", "close", "volume", "wap")},
            "bar_count": np.ones(n, np.int64), "bar_size": ["1min"] * n, "what_to_show": ["TRADES"] * n,
            "use_rth": np.ones(n, bool), "period": [f"2023-{month:02d}"] * n})
        write_deltalake(str(root / "bars"), rows.select(naive.names).cast(naive).combine_chunks(), mode="append",
                        partition_by=list(BARS_PARTITION_BY))
    return symbols * months * SESSIONS * PER_SESSION


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--months", type=int, default=6)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "data"
        rows = format_2_table(root, options.symbols, options.months)
        started = time.monotonic()
        proc = subprocess.Popen([*HARVEST, "migrate", "--data-dir", str(root)], stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        print(f"{rows:,} rows in {options.months} files: migrate exit {os.waitstatus_to_exitcode(status)}, "
              f"{seconds:.1f} s, peak {usage.ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
