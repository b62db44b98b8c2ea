"""Commits run in a worker thread so the event loop keeps sending; answers that arrive meanwhile are
held and staged, in order, once the commit is done — never staged while the warehouse commits."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

from harvester.ib.client import ContractInfo, FetchResult
from harvester.ib.scheduler import Answer, Work
from harvester.job import HarvestReport
from harvester.model import BarRequest, Outcome, SeriesKey, WorkKind
from harvester.recorder import Recorder
from harvester.warehouse.store import Warehouse

CONTRACT = ContractInfo(101, "AAA", "STK", "SMART", "NYSE", "USD")
SERIES = SeriesKey(101, "1 day", "TRADES", True)
DAY = datetime(2024, 6, 3, tzinfo=UTC)


def empty_answer(k: int) -> Answer:
    """A verified-empty answer for day k: it covers a window without bars."""
    request = BarRequest(SERIES, DAY + timedelta(days=k), DAY + timedelta(days=k + 1), "1 D", 1, "AAA")
    result = FetchResult(Outcome.EMPTY, None, 162, "HMDS query returned no data", 0.01)
    return Answer(Work(WorkKind.BARS, CONTRACT, SERIES, request), result, DAY, 1, True)


class GatedCommitWarehouse(Warehouse):
    """The real warehouse, whose commit waits for the test to open a gate; it records every stage."""

    gate: threading.Event
    committing: threading.Event
    staged_during_commit: int

    def commit(self):
        self.committing.set()
        self.gate.wait(10)
        return super().commit()

    def stage(self, *args, **kwargs):
        if self.committing.is_set() and not self.gate.is_set():
            self.staged_during_commit += 1
        return super().stage(*args, **kwargs)


def test_answers_during_a_commit_are_held_then_staged_and_covered(tmp_path):
    Warehouse.open(tmp_path, simulated=True).close()
    warehouse = GatedCommitWarehouse(tmp_path, simulated=True)
    warehouse.gate, warehouse.committing, warehouse.staged_during_commit = threading.Event(), threading.Event(), 0
    report = HarvestReport()
    recorder = Recorder(warehouse, commit_every_s=0.0, on_failure=report.fail, on_staged=report.staged)

    async def run() -> None:
        recorder.on_answer(empty_answer(0))  # staged, then a commit starts in a worker thread
        assert await asyncio.to_thread(warehouse.committing.wait, 10)
        for k in (1, 2, 3):
            recorder.on_answer(empty_answer(k))  # the loop is free: these are held, not staged
        assert len(recorder._held) == 3
        warehouse.gate.set()
        await recorder.finish()

    asyncio.run(run())
    assert warehouse.staged_during_commit == 0
    covered = Warehouse.open(tmp_path, simulated=True).coverage().intervals(SERIES)
    assert covered == [(DAY, DAY + timedelta(days=4))]
