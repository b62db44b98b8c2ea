"""`harvest query` output against DuckDB's own writer: wall time and peak RSS, side by side, one run.

Run: python bench/query_output.py [--rows 3000000] [--dir /tmp/query-bench]
Builds a warehouse of `--rows` 1-min bars (100 symbols, Delta, written straight with deltalake), then runs
`SELECT * FROM bars` in child processes: (a) `harvest query ... --format F --output FILE`, (b) the same
SELECT on a `queries.connect()` connection written by DuckDB's `COPY ... TO` (the reference: DuckDB's
writer alone, no tool around it), alternating, `--repeat` times each (the fastest shown). Peak RSS is
each child's, sampled with psutil every 10 ms.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import psutil
from deltalake import WriterProperties, write_deltalake

from harvester.warehouse.files import ROW_GROUP_ROWS

HARVEST = str(Path(sys.executable).with_name("harvest"))
SQL = "SELECT * FROM bars"
COPY = {"csv": "FORMAT csv, HEADER true", "json": "FORMAT json, ARRAY true", "parquet": "FORMAT parquet, COMPRESSION zstd"}


def build(data_dir: Path, rows: int) -> None:
    """`rows` 1-min bars, 100 symbols, consecutive minutes from 2024-01-02 13:30 (monthly partitions)."""
    per_symbol = rows // 100
    table = duckdb.sql(f"""
        SELECT 'S' || lpad((i // {per_symbol})::VARCHAR, 3, '0') AS symbol, 1000 + i // {per_symbol} AS con_id,
               TIMESTAMP '2024-01-02 13:30' + INTERVAL 1 MINUTE * (i % {per_symbol}) AS ts,
               (TIMESTAMP '2024-01-02 13:30' + INTERVAL 1 MINUTE * (i % {per_symbol}))::DATE AS session_date,
               100 + (i % 977) / 100.0 AS open, 101 + (i % 977) / 100.0 AS high, 99 + (i % 977) / 100.0 AS low,
               100.5 + (i % 977) / 100.0 AS close, (i % 10000)::DOUBLE AS volume, 100.2 AS wap,
               (i % 50)::BIGINT AS bar_count, '1min' AS bar_size, 'TRADES' AS what_to_show, true AS use_rth,
               strftime(session_date, '%Y-%m') AS period
        FROM range({per_symbol * 100}) t(i) ORDER BY symbol, ts""").to_arrow_table()
    write_deltalake(str(data_dir / "bars"), table, partition_by=["bar_size", "what_to_show", "use_rth", "period"],
                    writer_properties=WriterProperties(compression="LZ4_RAW", max_row_group_size=ROW_GROUP_ROWS))  # as ours
    (data_dir / "warehouse.json").write_text('{"format": 2, "simulated": true}\n')


def measure(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    began = time.perf_counter()
    child = psutil.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, child.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.01)
    wall = time.perf_counter() - began
    if child.returncode != 0:
        raise SystemExit(f"{args[:3]} failed: {child.stderr.read().decode()}")
    return wall, peak / 2**20


def reference(data_dir: Path, fmt: str, target: Path) -> list[str]:
    copy = f"COPY ({SQL}) TO '{target}' ({COPY[fmt]})"
    code = f"import queries; con = queries.connect({str(data_dir)!r}); con.execute({copy!r})"
    return [sys.executable, "-c", code]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each, alternating; the fastest is shown")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="query-bench-"))
    shutil.rmtree(root, ignore_errors=True)
    data_dir = root / "data"
    data_dir.mkdir(parents=True)
    build(data_dir, args.rows)
    print(f"{args.rows:,} rows; {SQL!r}")
    print(f"{'format':8} {'harvest s':>10} {'duckdb s':>9} {'ratio':>6} {'harvest MB':>11} {'duckdb MB':>10}")
    for fmt in ("csv", "json", "parquet"):
        runs = [(measure([HARVEST, "query", SQL, "--format", fmt, "--output", str(root / f"harvest.{fmt}"),
                          "--data-dir", str(data_dir)]), measure(reference(data_dir, fmt, root / f"duckdb.{fmt}")))
                for _ in range(args.repeat)]
        ours, theirs = min(r[0] for r in runs), min(r[1] for r in runs)
        print(f"{fmt:8} {ours[0]:>10.2f} {theirs[0]:>9.2f} {ours[0] / theirs[0]:>6.2f} {ours[1]:>11.0f} "
              f"{theirs[1]:>10.0f}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
