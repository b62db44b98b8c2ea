"""Benchmark: what a split repair costs, rescale + verification against refetch, daily and a year of 1-min bars.

For NVDA's 10:1 split (ex-date 2024-06-10, bundled in the simulator) it harvests NVDA on Friday 2024-06-07,
then runs Monday's nightly harvest, which finds the split in its overlap and repairs the series. It prints,
side by side for each bar size, the requests each strategy would send (the repair's own planner, so the
figures are what the job compares) and, for the strategy the job chose, the requests the simulator's
journal saw and the wall time of Monday's run.

    python bench/repairs.py                          # 1 day from the head, 1 min from 2023-06-12
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path

from harvester.calendar import from_epoch, to_epoch
from harvester.ib.client import ContractInfo
from harvester.job import HarvestJob, run_harvest
from harvester.model import BarRequest, ContractSpec
from harvester.recorder import Checked, HeldSeries
from harvester.repair import _plan, _refetch, _verification
from harvester.sim import SimConfig, SimGateway
from harvester.warehouse import Warehouse

FRIDAY, MONDAY = "2024-06-07T21:00:00+00:00", "2024-06-10T21:00:00+00:00"
SCALE = 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minute-start", default="2023-06-12", help="first day of the 1-min series")
    args = parser.parse_args()
    rows = []
    for bar_size, start in (("1 day", None), ("1 min", date.fromisoformat(args.minute_start))):
        rows.append(measure(bar_size, start))
    print("| bar size | stored bars | refetch: requests | rescale: requests | chosen | requests sent | Monday's run |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['bar_size']} | {r['bars']:,} | {r['refetch']} | {r['rescale']} | {r['chosen']} | {r['sent']} | "
              f"{r['wall']:.1f} s |")


def measure(bar_size: str, start: date | None) -> dict:
    root = Path(tempfile.mkdtemp(prefix="bench-repairs-"))
    with SimGateway(SimConfig(now=FRIDAY, pacing_scale=SCALE, latency_scale=0.001)).running_in_thread() as gw:
        def harvest(client_id: int):
            job = HarvestJob(universe=[ContractSpec("NVDA")], data_dir=root / "data", bar_sizes=(bar_size,),
                             start=start, port=gw.port, client_id=client_id, pacing_scale=SCALE)
            return run_harvest(job)

        assert harvest(1).ok
        plan = planned(root / "data", bar_size)
        gw.clock.set(MONDAY)
        before = gw.journal.count_where(kind="historical")
        started = time.perf_counter()
        report = harvest(2)
        wall = time.perf_counter() - started
        sent = gw.journal.count_where(kind="historical") - before - 1  # less the nightly increment itself
    warehouse = Warehouse.open(root / "data", simulated=True)
    try:
        (action,) = warehouse.corporate_actions().to_dict("records")
    finally:
        warehouse.close()
    assert report.ok and action["requests"] == sent, (report.failures, action, sent)
    return {"bar_size": bar_size, "chosen": action["repair"], "sent": sent, "wall": wall, **plan}


def planned(data_dir: Path, bar_size: str) -> dict:
    """Both strategies' requests for the series as stored on Friday (what Monday's repair will weigh)."""
    warehouse = Warehouse.open(data_dir, simulated=True)
    try:
        (key,) = [k for k in warehouse.coverage().series() if k.bar_size == bar_size]
        contract = warehouse.contracts().iloc[0]
        info = ContractInfo(int(contract.con_id), contract.symbol, contract.sec_type, contract.exchange,
                            contract.primary_exchange, contract.currency)
        end = warehouse.coverage().intervals(key)[-1][1]
        held = HeldSeries(check=Checked(BarRequest(key, end, end, "", 0), None, None, info.symbol))
        now = from_epoch(to_epoch(end) + 3 * 86_400)
        plan = _plan(key, held, info, warehouse, now, 5000)
        return {"bars": plan.stored.num_rows, "refetch": len(_refetch(plan, warehouse, now, 5000).requests),
                "rescale": len(_verification(plan, now, 5000))}
    finally:
        warehouse.close()


if __name__ == "__main__":
    main()
