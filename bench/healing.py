"""Requests that healing quarantined bars costs per night, beside a clean warehouse's nights.

Run: python bench/healing.py [--symbols 20] [--rate 0.002] [--start 2024-05-01] [--nights 4]
Two warehouses harvest the same 1-min backfill (from --start to the first night) and then one increment
a night, each from its own simulated gateway on the same clock: one gateway breaks --rate of the bars
(high below low, negative volume, a bar after the close) on the first night only, as IB revising its
history overnight would look; the other is clean. Printed per night: bars the clean warehouse stored,
historical requests of each, the requests healing added, bars refused at the door, refused bars still
missing afterwards.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path

from harvester.job import HarvestJob, run_harvest
from harvester.model import ContractSpec
from harvester.sim import Faults, SimConfig, SimGateway

SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "JPM", "XOM", "KO", "PEP", "BRK B", "WDAY", "COST",
           "HD", "UNH", "V", "MA", "PG", "JNJ", "MRK", "ABBV", "CVX", "WMT", "ORCL", "CRM", "ADBE", "NFLX",
           "AMD", "INTC", "CSCO", "T", "VZ", "DIS", "NKE", "MCD", "SBUX", "BA", "CAT", "GE", "HON"]
FIRST_NIGHT = datetime.fromisoformat("2024-06-11T22:00:00+00:00")  # after Tuesday's close


def nightly(gateway: SimGateway, data: Path, symbols: list[str], start: date,
            night: datetime) -> tuple[int, int, int, int]:
    gateway.clock.set(night)
    before = len(gateway.journal.matching(kind="historical"))
    job = HarvestJob(universe=[ContractSpec(s) for s in symbols], data_dir=data, bar_sizes=("1 min",),
                     start=start, port=gateway.port, client_id=7, pacing_scale=0.01)
    report = run_harvest(job)
    if not report.ok:
        raise SystemExit(f"harvest failed: {report.failures}")
    asked = len(gateway.journal.matching(kind="historical")) - before
    return asked, report.bars_written, report.bars_quarantined, report.bars_held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--rate", type=float, default=0.002)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2024, 5, 1))
    parser.add_argument("--nights", type=int, default=4)
    args = parser.parse_args()
    symbols = SYMBOLS[: args.symbols]
    root = Path(tempfile.mkdtemp(prefix="healing-bench-"))
    faults = Faults(bad_bar_rate=args.rate, seed=1, bad_bars_until=FIRST_NIGHT + timedelta(hours=12))
    fast = {"pacing_scale": 0.01, "latency_scale": 0.001, "now": FIRST_NIGHT}
    print(f"{len(symbols)} symbols, 1-min bars from {args.start}, {args.rate:.2%} of the first night's bars broken")
    print(f"{'night':10} {'bars (clean)':>12} {'requests (clean)':>16} {'requests (healing)':>18} {'extra':>6} "
          f"{'refused':>8} {'still missing':>13}")
    with SimGateway(SimConfig(**fast)).running_in_thread() as clean, \
            SimGateway(SimConfig(**fast, faults=faults)).running_in_thread() as faulty:
        for n in range(args.nights):
            night = FIRST_NIGHT + timedelta(days=n)
            base, bars, _, _ = nightly(clean, root / "clean", symbols, args.start, night)
            asked, _, refused, missing = nightly(faulty, root / "healing", symbols, args.start, night)
            print(f"{night:%Y-%m-%d} {bars:>12,} {base:>16} {asked:>18} {asked - base:>6} {refused:>8} {missing:>13}")


if __name__ == "__main__":
    main()
