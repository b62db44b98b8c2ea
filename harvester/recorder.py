"""The harvest's recorder: journals every attempt, stages every covering answer, saves heads, commits on a timer.

Commits run in a worker thread so a long commit never stalls sending; answers that arrive meanwhile are
held and staged after it (the warehouse must not stage while it commits).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pandas as pd

from harvester.ib.pacing import PacedRequest
from harvester.ib.scheduler import Answer
from harvester.ibrules import request_weight
from harvester.model import HeadKey, Outcome, SeriesKey, WorkKind
from harvester.warehouse import Warehouse


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
            staged = self.warehouse.stage(work.request, result.outcome, result.bars, symbol=work.symbol,
                                          calendar=work.contract.calendar, seen_at=self.gateway_now)
            self._on_staged(staged.kept, staged.quarantined)

    def fail(self, answer: Answer) -> None:
        """A final failure: the series is incomplete; say why, by symbol."""
        work, result = answer.work, answer.result
        if work.kind is WorkKind.HEAD:
            self._failed_heads.add(work.series.head_key)
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
