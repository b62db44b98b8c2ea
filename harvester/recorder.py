"""The harvest's recorder: journals every attempt, stages every covering answer, saves heads, commits on a timer.

Commits run in a worker thread so a long commit never stalls sending; answers that arrive meanwhile are
held and staged after it (the warehouse must not stage while it commits). A request that re-reads stored
bars (`BarRequest.check_until`) is compared with them on arrival (warehouse/changes.py): revisions are
staged with it; a split holds the series (that answer and every other of the series) until `repair`
stages the repair and all of them at once, so no commit ever shows the series half rescaled.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from harvester.ib.pacing import PacedRequest
from harvester.ib.scheduler import Answer
from harvester.ibrules import request_weight
from harvester.model import BarRequest, HeadKey, Outcome, SeriesKey, WorkKind
from harvester.warehouse import Warehouse
from harvester.warehouse.changes import OverlapVerdict, compare_overlap
from harvester.warehouse.checks import CheckedBars


@dataclass
class Checked:
    """An answer past the door, not staged yet."""

    request: BarRequest
    outcome: Outcome
    checked: CheckedBars
    symbol: str

    @property
    def kept(self) -> pa.Table:
        return self.checked.kept


@dataclass
class HeldSeries:
    """A series whose answers wait: for its overlap check, or (split found) for its repair."""

    answers: list[Checked] = field(default_factory=list)
    check: Checked | None = None  # the answer that re-read stored bars
    verdict: OverlapVerdict | None = None  # set once that answer has been compared: a split
    repair: list[Checked] = field(default_factory=list)  # the repair's own answers (verification, refetch)
    attempts: int = 0  # repair requests sent, retries included
    failed: bool = False  # a repair request failed for good: nothing of the series is staged this run




class Recorder:
    """What the harvest learned, as it answers: stored in the warehouse, failures remembered by series."""

    def __init__(self, warehouse: Warehouse, commit_every_s: float, on_failure: Callable[[str, str], None],
                 on_staged: Callable[[int, int], None]) -> None:
        self.warehouse = warehouse
        self.commit_every_s = commit_every_s
        self._on_failure, self._on_staged = on_failure, on_staged
        self.run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}{_process_suffix()}"
        self.failed: set[SeriesKey] = set()
        self._failed_heads: set[HeadKey] = set()
        self.no_data_heads: set[HeadKey] = set()
        self._last_commit = time.monotonic()
        self._committing: asyncio.Future | None = None  # a commit running in a worker thread
        self._held: list[Answer] = []  # answers that arrived during it
        self.gateway_now: datetime | None = None  # the gateway's clock at the start: when answers were seen
        self.series_held: dict[SeriesKey, HeldSeries] = {}  # awaiting a check, or a split awaiting repair
        self.repairing: set[SeriesKey] = set()

    def expect_checks(self, requests: list[BarRequest]) -> None:
        """These requests re-read stored bars: their series' answers wait until that one is compared."""
        for request in requests:
            if request.check_until is not None:
                self.series_held.setdefault(request.series, HeldSeries())

    def splits(self) -> dict[SeriesKey, HeldSeries]:
        """Series whose overlap showed a split: held for `repair`."""
        return {k: h for k, h in self.series_held.items() if h.verdict is not None and not self._gone(k)}


    def on_answer(self, answer: Answer) -> None:
        """Record one answer; while a commit runs in its worker thread, hold answers until it is done
        (the warehouse must not stage while it commits) so the event loop keeps sending meanwhile."""
        if self._committing is not None and self._committing.done():
            self._after_commit()
        if self._committing is not None:
            self._held.append(answer)
            return
        self._record(answer)
        if time.monotonic() - self._last_commit >= self.commit_every_s:
            self._committing = asyncio.get_running_loop().run_in_executor(None, self.warehouse.commit)

    def _after_commit(self) -> None:
        """The commit finished: surface its error (e.g. a full disk) or record what it held back."""
        done, self._committing = self._committing, None
        self._last_commit = time.monotonic()
        if done.exception() is not None:
            raise done.exception()
        held, self._held = self._held, []
        for answer in held:
            self._record(answer)

    async def drain(self) -> None:
        """On the way out after a failure: never leave a commit thread running under a closing warehouse."""
        if self._committing is not None:
            await asyncio.wait([self._committing])

    async def settle(self) -> None:
        """No commit in flight and nothing held: the warehouse may be read (heads, coverage) again."""
        if self._committing is not None:
            await asyncio.wait([self._committing])
            self._after_commit()

    async def finish(self) -> None:
        await self.settle()
        self.warehouse.commit()

    def _record(self, answer: Answer) -> None:
        work, result = answer.work, answer.result
        self.warehouse.record_request(journal_row(self.run_id, answer))
        if work.kind is WorkKind.HEAD:
            if result.outcome is Outcome.BARS:
                self.warehouse.save_head(work.series.head_key, result.head)
            elif result.outcome is Outcome.EMPTY:
                self.no_data_heads.add(work.series.head_key)
        elif result.outcome.covers:
            key = work.series
            request, bars = work.request.kept(), result.bars
            if request is not work.request and bars is not None:  # a partial session before the span: not kept
                bars = bars[bars["ts"] >= request.start]
            checked = self.warehouse.check(request, bars, symbol=work.symbol, calendar=work.contract.calendar)
            answer_rows = Checked(request, result.outcome, checked, work.symbol)
            self._on_staged(checked.kept.num_rows, checked.quarantined.num_rows)
            held = self.series_held.get(key)
            if key in self.repairing:
                held.repair.append(answer_rows)
            elif held is None:
                self._stage(answer_rows)
            elif request.check_until is not None:
                self._checked(key, held, answer_rows)
            else:
                held.answers.append(answer_rows)
        if work.kind is WorkKind.BARS and work.series in self.repairing:
            self.series_held[work.series].attempts += 1

    def _checked(self, key: SeriesKey, held: HeldSeries, answer: Checked) -> None:
        """Compare the re-read stored bars: unchanged or revised → stage it and what waited; split → hold."""
        request = answer.request
        stored = self.warehouse.stored_rows(key, request.start, request.check_until)
        fetched = answer.kept.filter(pc.less(answer.kept["ts"], pa.scalar(request.check_until,
                                                                           answer.kept.schema.field("ts").type)))
        verdict = compare_overlap(stored, fetched)
        if verdict.kind == "split":
            held.check, held.verdict = answer, verdict
            return
        del self.series_held[key]
        self._stage(answer, verdict.revised)
        for waiting in held.answers:
            self._stage(waiting)

    def _stage(self, answer: Checked, revised=None) -> None:
        self.warehouse.stage_checked(answer.request, answer.outcome, answer.checked, symbol=answer.symbol,
                                     revised=revised, seen_at=self.gateway_now)

    def stage_repaired(self, key: SeriesKey, repair: dict, span: tuple[datetime, datetime]) -> None:
        """Stage a split series at once: the repair, its answers, then the held answers (fetch order)."""
        held = self.series_held.pop(key)
        self.repairing.discard(key)
        self.warehouse.stage_repair(key, held.check.symbol, span[0], span[1], repair)
        for answer in held.repair:
            self._stage(answer)
        self._stage(held.check, held.verdict.revised)
        for answer in held.answers:
            self._stage(answer)

    def forget(self, key: SeriesKey) -> None:
        """A repair that failed: none of the series' answers are staged (the next night detects it again)."""
        self.series_held.pop(key, None)
        self.repairing.discard(key)

    def _gone(self, key: SeriesKey) -> bool:
        return key in self.failed


    def fail(self, answer: Answer) -> None:
        """A final failure: the series is incomplete; say why, by symbol. A series waiting for its check
        or its repair stages none of its answers this run (the next night compares again)."""
        work, result = answer.work, answer.result
        if work.kind is WorkKind.HEAD:
            self._failed_heads.add(work.series.head_key)
        elif work.series in self.series_held:
            if work.series in self.repairing:
                self.series_held[work.series].failed = True
            else:
                del self.series_held[work.series]

        what = "head timestamp" if work.kind is WorkKind.HEAD else f"{work.series.bar_size} bars"
        detail = f": {result.error_text}" if result.error_text else ""
        self.mark_failed(work.series, work.symbol, f"{what} {result.outcome.value}{detail}")

    def mark_failed(self, series: SeriesKey, symbol: str, reason: str) -> None:
        """The series is incomplete for `reason` (also for failures found outside the scheduler, e.g. planning)."""
        self.failed.add(series)
        self._on_failure(symbol, reason)

    def failed_series(self, key: SeriesKey) -> bool:
        """A series whose head timestamp failed cannot be planned."""
        return key in self.failed or key.head_key in self._failed_heads


def journal_row(run_id: str, answer: Answer) -> dict:
    """One journal row (tables.JOURNAL_SCHEMA) for one attempt, whatever its outcome."""
    work, result = answer.work, answer.result
    request = work.request
    bars = getattr(result, "bars", None)
    return {
        "run_id": run_id,
        "sent_at": answer.sent_at,
        "con_id": work.series.con_id,
        "symbol": work.symbol,
        "kind": work.kind,
        "bar_size": work.series.bar_size,
        "what_to_show": work.series.what_to_show,
        "use_rth": work.series.use_rth,
        "start_ts": request.start if request else None,
        "end_ts": request.end if request else None,
        "duration": request.duration if request else "",
        "outcome": result.outcome.value,
        "error_code": result.error_code,
        "error_text": result.error_text,
        "bars": 0 if bars is None else len(bars),
        "latency_s": result.latency_s,
        "attempt": answer.attempt,
    }


def _process_suffix() -> str:
    return f"-{os.getpid()}"


def recent_sends(journal: pd.DataFrame, exchanges: dict[int, str], now: datetime, horizon: timedelta
                 ) -> Iterator[tuple[PacedRequest, datetime]]:
    """The requests other processes sent within `horizon` before `now`, as the pacer counts them (the inverse
    of `journal_row`; the exchange comes from the stored contracts, SMART when unknown)."""
    since = (now - horizon).astimezone(UTC).replace(tzinfo=None)
    recent = journal[(journal.sent_at >= since) & ~journal.run_id.str.endswith(_process_suffix())]
    for row in recent.itertuples(index=False):
        kind = WorkKind(row.kind)
        con_id, use_rth = int(row.con_id), bool(row.use_rth)
        if kind is WorkKind.HEAD:
            identity: tuple = (kind, con_id, row.what_to_show, use_rth)
        else:
            end = pd.Timestamp(row.end_ts).tz_localize(UTC).to_pydatetime()
            identity = (kind, con_id, row.bar_size, row.what_to_show, use_rth, end, row.duration)
        request = PacedRequest(con_id=con_id, exchange=exchanges.get(con_id, "SMART"),
                               what_to_show=row.what_to_show, identity=identity,
                               weight=request_weight(row.what_to_show), kind=kind)
        yield request, pd.Timestamp(row.sent_at).tz_localize(UTC).to_pydatetime()
