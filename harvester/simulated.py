"""Harvest from the simulated gateway in this process (`harvest --sim`, demos, notebooks without IB).

    job = HarvestJob(universe=..., sim=True, pacing_scale=SIM_PACING_SCALE, min_safety_s=SIM_SAFETY_S)
    with simulated_gateway(job, now="2024-06-14T20:00:00Z"):
        report = run_harvest(job)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from harvester.job import HarvestConfigError, HarvestJob
from harvester.sim import SimConfig, SimGateway
from harvester.warehouse.layout import local_state_dir
from harvester.warehouse.storage import Location, StorageError

# The S&P 500 daily backfill (503 requests = 9 windows of 3 s, floor 24 s) in about a minute; the
# rest is qualification (ib_insync sends at most 45 messages/s), decoding 3.6 M bars and the commit.
SIM_PACING_SCALE = 0.005
# The in-process gateway competes with the harvester for the GIL, so its arrival stamps trail our send
# times by up to a few generation times: a wider margin than a separate gateway process needs.
SIM_SAFETY_S = 0.5
SIM_JOURNAL = "sim-journal.jsonl"  # the gateway's own record of what reached it, beside the warehouse


@contextlib.contextmanager
def simulated_gateway(job: HarvestJob, now: str | None = None) -> Iterator[SimGateway]:
    """A simulated gateway on a free loopback port, pacing at the job's scale; the job is pointed at it."""
    try:
        state = local_state_dir(Location.parse(job.data_dir))
        state.mkdir(parents=True, exist_ok=True)
    except (OSError, StorageError) as exc:
        raise HarvestConfigError(f"--data-dir {job.data_dir}: {getattr(exc, 'strerror', None) or exc}") from None
    config = SimConfig(host="127.0.0.1", port=0, now=now, pacing_scale=job.pacing_scale,
                       journal_path=state / SIM_JOURNAL)
    with SimGateway(config).running_in_thread() as gateway:
        job.host, job.port = "127.0.0.1", gateway.port
        yield gateway
