"""Peak memory (RSS) of the nightly job and the read verbs, each in a child process of its own.

    python bench/memory.py                         # S&P 500 daily demo, then status, query, plot coverage
    python bench/memory.py --symbols 50 100 200    # 1-min harvests of a week for growing universes (the slope)

The peak is the child's own `ru_maxrss` (os.wait4), so it counts the harvester and its in-process simulated
gateway, nothing else on the machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HARVEST = [sys.executable, "-c", "from harvester.cli import main; main()"]
SIM_NOW = "2024-06-14T20:00:00Z"


def peak_mb(args: list[str], cwd: Path) -> tuple[float, float, int]:
    """(peak RSS in MB, wall seconds, exit code) of one command."""
    started = time.monotonic()
    proc = subprocess.Popen([*HARVEST, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    return usage.ru_maxrss / 1024, time.monotonic() - started, os.waitstatus_to_exitcode(status)


def universe(path: Path, n: int | None) -> Path:
    lines = (ROOT / "universes" / "sp500.csv").read_text().splitlines()
    path.write_text("\n".join(lines[: 1 + n] if n else lines) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, nargs="*", help="1-min universes to harvest (default: the daily demo)")
    ap.add_argument("--daily-symbols", type=int, help="the daily demo on the first N symbols (default: all)")
    ap.add_argument("--keep", type=Path, help="work directory to keep")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="harvest-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        if not args.symbols:
            data = str(work / "daily")
            u = universe(work / "sp500.csv", args.daily_symbols)
            rows.append((f"harvest {args.daily_symbols or 'S&P 500'} symbols daily (--sim)",
                         *peak_mb(["--universe", str(u), "--sim", "--sim-now", SIM_NOW, "--data-dir", data], work)))
            rows.append(("harvest status", *peak_mb(["status", "--data-dir", data], work)))
            rows.append(("harvest query status", *peak_mb(["query", "status", "--data-dir", data], work)))
            rows.append(("harvest query coverage_report",
                         *peak_mb(["query", "coverage_report", "--data-dir", data], work)))
            rows.append(("harvest plot coverage", *peak_mb(["plot", "coverage", "--output", str(work / "c.png"),
                                                           "--data-dir", data], work)))
        for n in args.symbols or []:
            u = universe(work / f"u{n}.csv", n)
            data = str(work / f"min{n}")
            rows.append((f"harvest {n} symbols, 1 min, one week",
                         *peak_mb(["--universe", str(u), "--sim", "--sim-now", SIM_NOW, "--bar-size", "1 min",
                                   "--start", "2024-06-10", "--end", "2024-06-14", "--data-dir", data], work)))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{'command':42} {'peak MB':>8} {'wall s':>7} {'exit':>4}")
    for name, mb, wall, code in rows:
        print(f"{name:42} {mb:8.0f} {wall:7.1f} {code:4}" + ("" if code == 0 else "  FAILED (see its exit code)"))
    minute = [r for r in rows if "1 min" in r[0]]
    if len(minute) >= 2:
        print(f"slope: {minute[-1][1] / minute[0][1]:.2f}x peak for {args.symbols[-1] / args.symbols[0]:.0f}x symbols")


if __name__ == "__main__":
    main()
