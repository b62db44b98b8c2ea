"""Harvest from the simulated gateway in this process (`harvest --sim`, demos, notebooks without IB).

    job = HarvestJob(universe=..., pacing_scale=SIM_PACING_SCALE, min_safety_s=SIM_SAFETY_S)
    with simulated_gateway(job, now="2024-06-14T20:00:00Z"):
        report = run_harvest(job)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from harvester.job import HarvestConfigError, HarvestJob
from harvester.sim import SimConfig, SimGateway

# The S&P 500 daily backfill (503 requests = 9 windows of 3 s, floor 24 s) in about a minute; the
# rest is qualification (ib_insync sends at most 45 messages/s), decoding 3.6 M bars and the commit.
SIM_PACING_SCALE = 0.005
# The in-process gateway competes with the harvester for the GIL, so its arrival stamps trail our send
# times by up to a few generation times: a wider margin than a separate gateway process needs.
SIM_SAFETY_S = 0.5


@contextlib.contextmanager
def simulated_gateway(job: HarvestJob, now: str | None = None,
                      journal: str | Path | None = None) -> Iterator[SimGateway]:
    """A simulated gateway on a free loopback port, pacing at the job's scale; the job is pointed at it.

    Its request journal (what reached the gateway) is kept in memory (`gateway.journal`) and appended to
    `journal` when given (`harvest --sim --sim-journal FILE`): the gateway's record, never the warehouse's,
    so nothing of it is written into the data directory."""
    if journal is not None:
        try:
            Path(journal).parent.mkdir(parents=True, exist_ok=True)
            Path(journal).open("a").close()
        except OSError as exc:
            raise HarvestConfigError(f"--sim-journal {journal}: {exc.strerror}") from None
    config = SimConfig(host="127.0.0.1", port=0, now=now, pacing_scale=job.pacing_scale, journal_path=journal)
    with SimGateway(config).running_in_thread() as gateway:
        job.host, job.port = "127.0.0.1", gateway.port
        yield gateway
