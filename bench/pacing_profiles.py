"""Benchmark: strict vs adaptive pacing vs the ib_insync recipe loop, side by side in one run (issue 14 item 4).

Two workloads, each against a fresh simulated gateway (`harvest sim`, its own process) with the `busy`
HMDS profile (ib_insync #268's answer times; intraday answers over 2,000 bars never come) on the
`current` rules (hard pacing for bars of 30 s and less, IB's soft throttle above), all at one pacing scale
(answer times scaled alike):
  1-min: a year of 1-min bars (RTH) for the first `--names` symbols of universes/sp500.csv;
  daily: the daily backfill from the listing for the first `--daily-names` symbols.
Runners: `harvest` with `--pacing strict`, with `--pacing adaptive`, and the loop of ib_insync's
recipe: per symbol, pages of `10 D` (1-min) back from now with a 10 s pause between requests (scaled), a
page's start the next page's end, until the wanted start or an empty answer; for daily bars one `30 Y`
page per symbol. Reported from the gateway's journal: requests, timeouts (unanswered), disconnects,
pacing violations, and the fetch span (first send to last answer: what the pacing profile decides, the
ratio's measure); from the runner: wall (with connecting, qualifying and the local commit), splits, bars.
At a pacing scale everything IB decides is scaled, the harvester's timeouts too (without the 5 s floor its
tests keep), and each run claims its workload as one batch: the local commits between batches take the
same seconds at any scale and would swamp a scaled run. Local work (the simulator building bars, the
client parsing them) is not scaled either, so the smaller the scale, the more it weighs: x0.05 keeps a
daily answer (1.8 s at IB's timescale) well above it. Full size takes long on 2 cores; `--size small`
(6 names x 120 days, 100 daily names) is what the README's figures use.

    python bench/pacing_profiles.py --size small            # the README's figures
    python bench/pacing_profiles.py --size full   # the issue's sizes: long on 2 cores
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from ib_insync import IB, Stock

from harvester.ib.scheduler import TimeoutPolicy
from harvester.job import HarvestJob, run_harvest
from harvester.universe import load_universe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harvest import start_gateway

ROOT = Path(__file__).resolve().parents[1]
NOW = "2024-06-14T20:00:00+00:00"
SIZES = {"small": (6, 120, 100), "full": (50, 365, 503)}  # 1-min names, days back, daily names


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scaled_timeouts(scale: float) -> TimeoutPolicy:
    """The job's timeouts at IB's timescale times the scale, without the floor of 5 s that keeps tests on a
    loaded machine from timing out: a 5 s wait for a withheld answer is 250 s at IB's timescale at x0.02."""
    default = TimeoutPolicy()
    return TimeoutPolicy(base_s=default.base_s * scale, per_bar_s=default.per_bar_s * scale,
                         head_s=default.head_s * scale)


def harvester(specs, port: int, scale: float, data_dir: Path, bar: str, start: date | None, pacing: str) -> dict:
    job = HarvestJob(universe=specs, data_dir=data_dir, bar_sizes=(bar,), port=port, client_id=41, start=start,
                     pacing_scale=scale, pacing=pacing, min_safety_s=0.05, timeouts=scaled_timeouts(scale),
                     claim_batch=len(specs))  # one batch: the commits between batches do not stall the fetch
    began = time.monotonic()
    report = run_harvest(job)
    note = f"fell back: {report.pacing_fell_back}" if report.pacing_fell_back else ""
    return {"wall": time.monotonic() - began, "splits": report.windows_split, "bars": report.bars_written,
            "ok": report.ok, "note": note}


def recipe(specs, port: int, scale: float, bar: str, start: date | None) -> dict:
    """ib_insync's recipe loop: pages back from now, a pause between requests (both scaled)."""
    asyncio.set_event_loop(asyncio.new_event_loop())  # run_harvest's asyncio.run left none
    ib = IB()
    ib.connect("127.0.0.1", port, clientId=42, timeout=20)
    began, bars = time.monotonic(), 0
    stop = datetime(start.year, start.month, start.day, tzinfo=UTC) if start else None
    try:
        for spec in specs:
            contract = Stock(spec.symbol, spec.exchange, spec.currency, primaryExchange=spec.primary_exchange)
            if not ib.qualifyContracts(contract):
                continue
            end = ""
            while True:
                page = ib.reqHistoricalData(contract, endDateTime=end, durationStr="10 D" if bar == "1 min" else "30 Y",
                                            barSizeSetting=bar, whatToShow="TRADES", useRTH=True, formatDate=2,
                                            timeout=60 * scale)
                ib.sleep(10 * scale)
                if not page or bar != "1 min":
                    break
                bars += len(page)
                first = page[0].date
                if stop is not None and first <= stop:
                    break
                end = first
            if page and bar != "1 min":
                bars += len(page)
    finally:
        ib.disconnect()
    return {"wall": time.monotonic() - began, "splits": 0, "bars": bars, "ok": True, "note": ""}


def journal_counts(path: Path) -> dict:
    """Counts from the gateway's journal, and the fetch span: first send to last answer of historical data,
    the stretch the pacing profile decides (outside it: connecting, qualifying, the local commit)."""
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    historical = [e for e in entries if e.get("kind") == "historical"]
    sent = [datetime.fromisoformat(e["time"]).timestamp() for e in historical]
    answered = [t + (e["latency_s"] or 0.0) for t, e in zip(sent, historical, strict=True)]
    return {"requests": len(historical), "span": max(answered) - min(sent) if sent else 0.0,
            "timeouts": sum(e["outcome"] == "unanswered" for e in historical),
            "disconnects": sum(e["outcome"] == "disconnected" for e in historical),
            "violations": sum(e["outcome"] == "pacing" for e in historical)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), help="preset: small (the README's) or full (the issue's)")
    parser.add_argument("--names", type=int, help="1-min workload: symbols")
    parser.add_argument("--days", type=int, help="1-min workload: calendar days back from the simulated now")
    parser.add_argument("--daily-names", type=int, help="daily workload: symbols")
    parser.add_argument("--pacing-scale", type=float, default=0.05)
    parser.add_argument("--rules", choices=["current", "legacy"], default="current")
    parser.add_argument("--runners", default="strict,adaptive,recipe")
    args = parser.parse_args()
    names, days, daily_names = SIZES[args.size or "small"]
    names, days, daily_names = args.names or names, args.days or days, args.daily_names or daily_names
    universe = load_universe(ROOT / "universes" / "sp500.csv")
    now = datetime.fromisoformat(NOW)
    workloads = [("1-min", universe[:names], "1 min", (now - timedelta(days=days)).date()),
                 ("daily", universe[:daily_names], "1 day", None)]
    print(f"busy HMDS, {args.rules} rules, pacing and answer times x{args.pacing_scale:g}; "
          f"1-min: {names} names x {days} days; daily: {daily_names} names from the listing")
    print(f"{'workload':8} {'runner':9} {'requests':>8} {'wall s':>8} {'fetch s':>8} {'timeouts':>8} {'splits':>6} "
          f"{'disconn.':>8} {'violat.':>7} {'bars':>10} {'vs strict':>9}")
    for label, specs, bar, start in workloads:
        strict_span = None
        for runner in args.runners.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                port, journal = free_port(), Path(tmp) / "sim.jsonl"
                gateway = start_gateway(port, args.pacing_scale, journal, "--hmds-profile", "busy", "--rules", args.rules)
                try:
                    if runner == "recipe":
                        result = recipe(specs, port, args.pacing_scale, bar, start)
                    else:
                        result = harvester(specs, port, args.pacing_scale, Path(tmp) / "data", bar, start, runner)
                finally:
                    gateway.terminate()
                    gateway.wait(timeout=30)
                counts = journal_counts(journal)
            strict_span = counts["span"] if runner == "strict" else strict_span
            ratio = f"{strict_span / counts['span']:.2f}x" if strict_span and counts["span"] else ""
            print(f"{label:8} {runner:9} {counts['requests']:>8} {result['wall']:>8.1f} {counts['span']:>8.1f} "
                  f"{counts['timeouts']:>8} "
                  f"{result['splits']:>6} {counts['disconnects']:>8} {counts['violations']:>7} {result['bars']:>10,} "
                  f"{ratio:>9} {'' if result['ok'] else 'FAILED '}{result['note']}", flush=True)


if __name__ == "__main__":
    main()
