"""Benchmark: harvest a universe from the simulated gateway at a compressed pacing scale.

Reports
  (a) paced requests issued (head timestamps included) vs the planner's lower bound,
  (b) wall time / pacing floor, floor = (ceil(W/60) − 1) · window for W weighted requests,
  (c) client CPU seconds per million bars,
  (d) the client's peak RSS.
The gateway runs as a separate process (`harvest sim`) so (c) and (d) are the harvester's alone.

    python bench/harvest.py                     # 40 symbols × 1-min bars, 16 weeks, pacing ×0.01
    python bench/harvest.py --symbols 100 --bar-size '1 day' --start head
"""

from __future__ import annotations

import argparse
import math
import resource
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from harvester.calendar import TradingCalendar
from harvester.ib.scheduler import MIN_SAFETY_S, paced_limits
from harvester.job import HarvestJob, run_harvest
from harvester.model import SeriesKey
from harvester.plan import SeriesState, lower_bound_requests
from harvester.universe import load_universe
from harvester.warehouse.store import Warehouse

ROOT = Path(__file__).resolve().parents[1]
NOW = "2024-06-14T20:00:00+00:00"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_gateway(port: int, scale: float, journal: Path, *options: str) -> subprocess.Popen:
    """`harvest sim` (with `options`) in its own process; returns once it accepts connections."""
    harvest = str(Path(sys.executable).with_name("harvest"))
    proc = subprocess.Popen([harvest, "sim", "--port", str(port), "--now", NOW, "--pacing-scale", str(scale),
                             "--journal", str(journal), *options], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            try:
                proc.wait(timeout=0.1)
                raise SystemExit("the simulated gateway exited at start-up")
            except subprocess.TimeoutExpired:
                continue
    proc.kill()
    raise SystemExit("the simulated gateway did not start within 60 s")


def lower_bound(data_dir: Path, job: HarvestJob, now: datetime) -> int:
    """Fewest requests IB's durations allow for the universe, from an empty warehouse (+1 per head needed)."""
    warehouse = Warehouse.open(data_dir, simulated=True)
    try:
        contracts, heads = warehouse.contracts(), warehouse.heads()
    finally:
        warehouse.close()
    states = []
    for row in contracts.itertuples():
        calendar = TradingCalendar.for_exchange(row.primary_exchange)
        for size in job.bar_sizes:
            key = SeriesKey(int(row.con_id), size, job.what_to_show, job.use_rth)
            head = heads.get((key.con_id, key.what_to_show, key.use_rth))
            states.append(SeriesState(key, row.symbol, calendar, head, ()))
    start = None if job.start is None else datetime(job.start.year, job.start.month, job.start.day, tzinfo=UTC)
    return lower_bound_requests(states, start=start, end=now, now=now) + len(heads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--universe", type=Path, default=ROOT / "universes" / "sp500.csv")
    parser.add_argument("--symbols", type=int, default=40)
    parser.add_argument("--bar-size", default="1 min")
    parser.add_argument("--start", default="2024-02-20", help="'head' or YYYY-MM-DD")
    parser.add_argument("--target-bars", type=int, default=5000)
    parser.add_argument("--pacing-scale", type=float, default=0.01)
    parser.add_argument("--min-safety", type=float, default=MIN_SAFETY_S, help="pacing margin floor, seconds")
    args = parser.parse_args()

    specs = load_universe(args.universe)[: args.symbols]
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, port = Path(tmp) / "data", free_port()
        gateway = start_gateway(port, args.pacing_scale, Path(tmp) / "sim.jsonl")
        try:
            job = HarvestJob(
                universe=specs, data_dir=data_dir, bar_sizes=(args.bar_size,), port=port, client_id=31,
                start=None if args.start == "head" else date.fromisoformat(args.start),
                pacing_scale=args.pacing_scale, target_bars=args.target_bars, min_safety_s=args.min_safety,
            )
            cpu0, wall0 = time.process_time(), time.monotonic()
            report = run_harvest(job)
            cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        finally:
            gateway.terminate()
            gateway.wait(timeout=30)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        journal = duckdb.sql(
            f"SELECT kind, outcome, sent_at, latency_s FROM read_parquet('{data_dir}/journal/*.parquet')").df()
        bound = lower_bound(data_dir, job, report.gateway_now)
    paced = journal[journal.kind.isin(["bars", "head"])]
    limits = paced_limits(args.pacing_scale, args.min_safety)
    floor = (math.ceil(len(paced) / limits.max_weighted) - 1) * limits.window_s
    first = paced.sent_at.min()
    span = (paced.sent_at + paced.latency_s.apply(lambda s: __import__("pandas").Timedelta(seconds=s))).max() - first

    print(f"universe: {len(specs)} symbols × {args.bar_size} from {args.start}, pacing ×{args.pacing_scale} "
          f"(window {limits.window_s:g} s)")
    print(f"series complete {report.series_complete}/{report.series_total}, bars {report.bars_written:,}, "
          f"violations {report.violations}, retries {report.retries}")
    planned = len(report.plan) + report.head_requests
    print(f"(a) paced requests {len(paced)} (head timestamps {report.head_requests}); planned {planned} "
          f"at ≤{args.target_bars} bars/request; IB's lower bound (max durations, no bars target) {bound}: "
          f"{len(paced) / bound:.3f}×")
    print(f"(b) wall {wall:.2f} s (first send → last answer {span.total_seconds():.2f} s) / floor {floor:.2f} s: "
          f"{wall / floor if floor else math.nan:.3f} ({span.total_seconds() / floor if floor else math.nan:.3f})")
    print(f"(c) client CPU {cpu:.2f} s = {cpu / max(report.bars_written, 1) * 1e6:.2f} s per million bars")
    print(f"(d) client peak RSS {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
