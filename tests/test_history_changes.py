"""History that changes under the cache, around nightly runs against the simulated gateway (real ib_insync).

Each test steps the simulator's clock night by night across one corporate action or revision, harvesting
into one warehouse, then harvests the same universe fresh on the last night into another: the invariant is
that both hold the same bars (raw values exactly; rescaled ones within RESCALED_TOLERANCE), and a rerun
asks IB for nothing. The requests each repair spent are asserted from the simulator's own journal.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from harvester.job import HarvestJob, HarvestReport, run_harvest
from harvester.model import ContractSpec
from harvester.warehouse import Warehouse
from tests.helpers.gateways import next_client_id
from tests.helpers.reference import FAST_RETRY, PACING_SCALE, compare

RESCALED_TOLERANCE = 1e-9  # relative: stored bars × a split's price ratio against IB's own (float rounding)
FRIDAY = "2024-06-07T21:00:00+00:00"  # NVDA's last session before its 10:1 split (ex-date Monday 2024-06-10)
MONDAY = "2024-06-10T21:00:00+00:00"
TUESDAY = "2024-06-11T21:00:00+00:00"


def harvest(gw, data_dir: Path, symbols, **job) -> HarvestReport:
    settings = {
        "universe": [ContractSpec(s, line=i + 2) for i, s in enumerate(symbols)], "data_dir": data_dir,
        "sim": True, "port": gw.port, "client_id": next_client_id(), "pacing_scale": PACING_SCALE,
        "retry": FAST_RETRY, "start": date(2024, 5, 1),
    }
    report = run_harvest(HarvestJob(**{**settings, **job}))
    assert report.ok, report.failures
    return report


def historical(gw) -> list[dict]:
    return gw.journal.matching(kind="historical")


def nightly(gw, data_dir: Path, symbols, nights, **job) -> list[list[dict]]:
    """One harvest per night; the historical requests each night sent."""
    sent = []
    for night in nights:
        gw.clock.set(night)
        before = len(historical(gw))
        harvest(gw, data_dir, symbols, **job)
        sent.append(historical(gw)[before:])
    return sent


def actions(data_dir: Path) -> list[dict]:
    warehouse = Warehouse.open(data_dir, simulated=True)
    try:
        return warehouse.corporate_actions().to_dict("records")
    finally:
        warehouse.close()


@pytest.mark.parametrize(("bar_size", "repair", "requests"), [("1 day", "refetch", 1), ("1 min", "rescale", 1)])
def test_split_nightly_equals_a_fresh_harvest(make_gateway, tmp_path, bar_size, repair, requests):
    gw = make_gateway(now=FRIDAY)
    job = {"bar_sizes": (bar_size,), "start": date(2024, 5, 20) if bar_size == "1 min" else date(2024, 5, 1)}
    friday, monday = nightly(gw, tmp_path / "nightly", ["NVDA", "MSFT"], [FRIDAY, MONDAY], **job)
    nvda_monday = [e for e in monday if e["symbol"] == "NVDA"]
    assert len([e for e in monday if e["symbol"] == "MSFT"]) == 1  # the increment, re-reading Friday
    assert len(nvda_monday) == 1 + requests  # the increment, then the repair
    (found,) = actions(tmp_path / "nightly")
    assert (found["symbol"], found["kind"], found["ratio"], found["ex_date"]) == ("NVDA", "split", 10.0,
                                                                                  date(2024, 6, 10))
    assert (found["repair"], found["requests"], found["bar_size"]) == (repair, requests, bar_size)

    harvest(gw, tmp_path / "fresh", ["NVDA", "MSFT"], **job)
    diff = compare(tmp_path / "nightly", tmp_path / "fresh", rel_tol=RESCALED_TOLERANCE)
    assert diff.clean and diff.actual > 0, diff
    if repair == "refetch":
        assert compare(tmp_path / "nightly", tmp_path / "fresh").clean  # IB's own values: exact

    before = len(historical(gw))
    again = harvest(gw, tmp_path / "nightly", ["NVDA", "MSFT"], **job)
    assert again.plan == [] and len(historical(gw)) == before and again.repairs == []
