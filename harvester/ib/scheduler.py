"""Run a list of requests against a Source: several in flight, paced, retried, resumed after outages.

IB punishes bursts (pacing violations) and drops connections (nightly reset, 1100/1102, socket loss),
and ib_insync retries nothing. So every send asks the pacing budget first (head timestamps included),
retryable outcomes go back to the queue with exponential backoff, permanent ones (no permission,
invalid, unknown contract) are final at once, a 1100 pauses sending until 1102, and a lost socket is
reconnected with bounded backoff before the queue resumes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import zip_longest

from harvester.ib.adaptive import AdaptivePace
from harvester.ib.client import ContractInfo, FetchResult, HeadResult, IBSource, Sent, SourceError
from harvester.ib.ledger import LedgerBudget
from harvester.ib.pacing import PacedRequest, PacingWindow
from harvester.ibrules import PacingLimits, bar_size, request_weight
from harvester.model import BarRequest, Outcome, SeriesKey, WorkKind

LOOKAHEAD = 64  # queued requests scanned for one the pacer lets go now (avoids head-of-line blocking)
MIN_SAFETY_S = 0.1  # send-to-receive jitter (event loops, GIL, socket buffers) does not shrink with a scale


def paced_limits(scale: float = 1.0, min_safety_s: float = MIN_SAFETY_S) -> PacingLimits:
    """IB's limits scaled by `scale`, with a safety margin no smaller than `min_safety_s`."""
    limits = PacingLimits().scaled(scale)
    return replace(limits, safety_s=max(limits.safety_s, min_safety_s))


@dataclass
class Work:
    """One request to get answered: bars for a planned window, or a series' head timestamp."""

    kind: WorkKind
    contract: ContractInfo
    series: SeriesKey
    request: BarRequest | None = None
    attempt: int = 0
    not_before: float = 0.0

    @property
    def symbol(self) -> str:
        return self.contract.label

    def paced(self) -> PacedRequest:
        s = self.series
        if self.kind is WorkKind.HEAD:
            identity: tuple = (WorkKind.HEAD, s.con_id, s.what_to_show, s.use_rth)
        else:
            assert self.request is not None
            identity = (WorkKind.BARS, s.con_id, s.bar_size, s.what_to_show, s.use_rth, self.request.end,
                        self.request.duration)
        return PacedRequest(
            con_id=s.con_id,
            exchange=self.contract.exchange,
            what_to_show=s.what_to_show,
            identity=identity,
            weight=request_weight(s.what_to_show),
            kind=self.kind,
        )


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per request and exponential backoff between them (seconds, before any scaling)."""

    max_attempts: int = 5
    backoff_s: float = 2.0
    backoff_max_s: float = 120.0
    reconnect_attempts: int = 6
    max_pause_s: float = 900.0  # longest wait for 1102 after a 1100 (IB's nightly reset is minutes)

    def delay(self, attempt: int) -> float:
        return min(self.backoff_max_s, self.backoff_s * 2 ** max(0, attempt - 1))


@dataclass(frozen=True)
class TimeoutPolicy:
    """Per-request timeouts: HMDS answer time grows with the bars asked for (docs/ib-rules.md §2.5)."""

    base_s: float = 30.0
    per_bar_s: float = 0.01
    head_s: float = 30.0

    def for_work(self, work: Work) -> float:
        if work.kind is WorkKind.HEAD or work.request is None:
            return self.head_s
        return self.base_s + self.per_bar_s * work.request.expected_bars


@dataclass
class Progress:
    """Running totals, handed to the progress callback after every answer."""

    planned: int = 0
    done: int = 0
    bars: int = 0
    violations: int = 0
    retries: int = 0
    failed: int = 0
    reconnects: int = 0
    splits: int = 0  # timed-out or cancelled windows sent again as smaller ones
    by_outcome: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """One attempt's answer, for the caller's journal/staging. `final`: no further attempt follows."""

    work: Work
    result: FetchResult | HeadResult
    sent_at: datetime
    attempt: int
    final: bool


RETRYABLE = {Outcome.PACING, Outcome.TIMEOUT, Outcome.DISCONNECTED, Outcome.CANCELLED, Outcome.ERROR}


def interleave(groups: Sequence[Sequence[Work]]) -> list[Work]:
    """Round-robin over per-series lists so consecutive sends hit different contracts."""
    return [w for row in zip_longest(*groups) for w in row if w is not None]


class Scheduler:
    """Sends queued Work through one IBSource under one pacing budget (a PacingWindow, or the gateway's
    ledger shared with other processes). Reusable across `run` calls."""

    def __init__(
        self,
        source: IBSource,
        window: PacingWindow | LedgerBudget,
        *,
        max_in_flight: int = 6,
        retry: RetryPolicy = RetryPolicy(),
        timeouts: TimeoutPolicy = TimeoutPolicy(),
        on_answer: Callable[[Answer], None] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        split: Callable[[Work, bool], list[Work] | None] | None = None,
        adaptive: AdaptivePace | None = None,
    ):
        """`split(work, timed_out)`: smaller windows covering a bars window (None: keep it), asked before
        each send (a window planned before IB slowed down is cut to what answers now) and after a timeout
        or a cancelled query, when they are sent instead of the same window again."""
        if not 1 <= max_in_flight < 50:
            raise ValueError(f"max_in_flight must be within 1..49 (IB allows 50 open), got {max_in_flight}")
        self.source, self.window = source, window
        self.max_in_flight, self.retry, self.timeouts = max_in_flight, retry, timeouts
        self.on_answer, self.on_progress, self.clock, self.split = on_answer, on_progress, clock, split
        self.adaptive = adaptive  # --pacing adaptive: bars of 1 min and up paced by answer times
        self.progress = Progress()
        self._wake = asyncio.Event()
        self._online = asyncio.Event()
        self._online.set()
        self._paused: float | None = None  # since when IB's servers are unreachable (1100), if they are
        self._reconnecting: asyncio.Task | None = None
        self._gave_up: str = ""
        self._running = False
        source.connectivity_listeners.append(self._on_connectivity)
        source.disconnect_listeners.append(self._on_disconnect)

    async def run(self, work: Sequence[Work]) -> list[Answer]:
        """Answer every Work (retrying as needed); returns the final answers that are failures."""
        pending = list(work)
        self.progress.planned += len(pending)
        failures: list[Answer] = []
        in_flight: set[asyncio.Task] = set()
        self._notify()
        if pending and not self.source.is_connected():
            self._start_reconnect()
        self._running = True
        try:
            await self._drain(pending, in_flight, failures)
        finally:
            self._running = False
        return failures

    async def _drain(self, pending: list[Work], in_flight: set[asyncio.Task], failures: list[Answer]) -> None:
        while pending or in_flight:
            if self._gave_up and pending:
                failures += self._abandon(pending)
                pending.clear()
                continue
            picked, sent, wait = self._pick_and_send(pending) if (
                len(in_flight) < self.max_in_flight and self._can_send()) else (None, None, self._pause_left())
            if picked is not None:
                sent_at = datetime.now(UTC)  # the journal's send time: the wire write's, not the task's start
                in_flight.add(asyncio.ensure_future(
                    self._attempt(picked, self._paced(picked), sent, sent_at, pending, failures)))
                continue
            self._wake.clear()
            waiters = {asyncio.ensure_future(self._wake.wait()), *in_flight}
            done, _ = await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            for task in waiters - in_flight:
                task.cancel()
            for task in done & in_flight:
                in_flight.discard(task)
                task.result()

    def _can_send(self) -> bool:
        if self._paused is not None and self.clock() - self._paused >= self.retry.max_pause_s:
            self._paused = None  # no 1101/1102 came: send again; requests fail and are counted as usual
        return self._online.is_set() and self._paused is None and self.source.is_connected()

    def _pause_left(self) -> float | None:
        return None if self._paused is None else max(0.0, self._paused + self.retry.max_pause_s - self.clock())

    def _pick_and_send(self, pending: list[Work]) -> tuple[Work | None, Sent | None, float | None]:
        """In one turn of the budget (atomic across processes with a ledger): the first of the next LOOKAHEAD
        items allowed now, put on the wire and recorded; else how long until one may be."""
        if self.source.is_throttling():
            return None, None, 0.01
        self._resize(pending)
        with self.window.turn() as turn:
            throttled = turn.message_wait()
            if throttled > 0:
                return None, None, throttled
            now = self.clock()
            soonest: float | None = None
            for index, work in enumerate(pending[:LOOKAHEAD]):
                paced = self._paced(work)
                wait = max(work.not_before - now, turn.wait_time(paced))
                if paced.soft:
                    wait = max(wait, self.adaptive.wait_time())
                if wait <= 0:
                    picked = pending.pop(index)
                    sent = self._send(picked)
                    if sent is not None:  # stamped right after the wire write: the pacer sees real send times
                        turn.sent(paced)
                        if paced.soft:
                            self.adaptive.sent()
                    return picked, sent, None
                soonest = wait if soonest is None else min(soonest, wait)
            return None, None, None if soonest is not None and math.isinf(soonest) else soonest  # inf: an answer

    async def _attempt(self, work: Work, paced: PacedRequest, sent: Sent | None, sent_at: datetime,
                       pending: list[Work], failures: list[Answer]) -> None:
        work.attempt += 1
        result: FetchResult | HeadResult | None = None
        try:
            result = await self._finish(work, sent)
        finally:  # a violation on a request that went out: the pacer's margin learns from it
            self.window.finished(paced, sent is not None and result is not None and result.outcome is Outcome.PACING)
            self._wake.set()
        outcome = result.outcome
        if paced.soft and sent is not None:
            self._adapt(work, result)
        parts = self._split(work, outcome)
        if parts:  # never the same window again after a timeout: the parts take its place in the queue
            pending[0:0] = parts
            self.progress.planned += len(parts) - 1
            self.progress.splits += 1
            result = replace(result, error_text="; ".join(filter(None, [result.error_text, "split into " + " + ".join(
                p.request.duration for p in reversed(parts))])))
        retry = not parts and outcome in RETRYABLE and work.attempt < self.retry.max_attempts
        if retry:
            delay = self.retry.delay(work.attempt)
            work.not_before = self.clock() + delay
            pending.insert(0, work)
            self.progress.retries += 1
        answer = Answer(work, result, sent_at, work.attempt, final=not retry and not parts)
        if answer.final and not outcome.covers:
            failures.append(answer)
            self.progress.failed += 1
        self._count(answer)
        if outcome is Outcome.DISCONNECTED or not self.source.is_connected():
            self._start_reconnect()
        if self.on_answer is not None:
            self.on_answer(answer)
        self._notify()

    def _paced(self, work: Work) -> PacedRequest:
        """The work as the pacer sees it: soft (`ib.adaptive`) for bars of 1 min and up under adaptive pacing."""
        paced = work.paced()
        if (self.adaptive is not None and self.adaptive.active and work.kind is WorkKind.BARS
                and not bar_size(work.series.bar_size).small):
            return replace(paced, soft=True)
        return paced

    def _adapt(self, work: Work, result: FetchResult | HeadResult) -> None:
        outcome = result.outcome
        if outcome is Outcome.PACING:
            self.adaptive.violation()
        if outcome.covers:
            self.adaptive.answered(result.latency_s, work.request.expected_bars if work.request else 1)
        else:
            self.adaptive.ended()
        if outcome is Outcome.DISCONNECTED:
            self.adaptive.disconnected()

    def _split(self, work: Work, outcome: Outcome) -> list[Work] | None:
        if self.split is None or work.kind is not WorkKind.BARS or not outcome.unanswered:
            return None
        return self.split(work, True)

    def _resize(self, pending: list[Work]) -> None:
        """Windows about to be considered, cut to the size IB answers now (`split`)."""
        if self.split is None:
            return
        index = 0
        while index < min(len(pending), LOOKAHEAD):
            work = pending[index]
            parts = self.split(work, False) if work.kind is WorkKind.BARS else None
            if parts:
                pending[index:index + 1] = parts
                self.progress.planned += len(parts) - 1
            else:
                index += 1

    def _send(self, work: Work) -> Sent | None:
        """Put the request on the wire now (synchronously); None when the socket is gone."""
        try:
            if work.kind is WorkKind.HEAD:
                return self.source.send_head(work.contract, work.series.what_to_show, work.series.use_rth)
            assert work.request is not None
            return self.source.send_bars(work.contract, work.request)
        except ConnectionError:
            return None

    async def _finish(self, work: Work, sent: Sent | None) -> FetchResult | HeadResult:
        if sent is None:
            return FetchResult(Outcome.DISCONNECTED, None, None, "not connected when sending", 0.0)
        timeout = self.timeouts.for_work(work)
        if work.kind is WorkKind.HEAD:
            return await self.source.finish_head(sent, timeout=timeout)
        return await self.source.finish_bars(sent, timeout=timeout)

    def _count(self, answer: Answer) -> None:
        p, outcome = self.progress, answer.result.outcome
        p.by_outcome[outcome.value] = p.by_outcome.get(outcome.value, 0) + 1
        if outcome is Outcome.PACING:
            p.violations += 1
        if answer.final:
            p.done += 1
        if isinstance(answer.result, FetchResult) and answer.result.bars is not None:
            p.bars += len(answer.result.bars)

    def _abandon(self, pending: list[Work]) -> list[Answer]:
        abandoned = []
        for work in pending:
            result = FetchResult(Outcome.DISCONNECTED, None, None, self._gave_up, 0.0)
            answer = Answer(work, result, datetime.now(UTC), work.attempt, final=True)
            abandoned.append(answer)
            self.progress.failed += 1
            self._count(answer)
        return abandoned

    def _notify(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)

    def _on_connectivity(self, code: int) -> None:
        """1100: IB lost its servers, requests go unanswered → hold sends. 1101/1102: restored."""
        self._paused = self.clock() if code == 1100 else None
        self._wake.set()

    def _on_disconnect(self) -> None:
        if self._running:  # a disconnect between runs (or the caller's own) is not ours to undo
            self._start_reconnect()

    def _start_reconnect(self) -> None:
        if self._reconnecting is None or self._reconnecting.done():
            self._online.clear()
            self._reconnecting = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        """Bounded reconnect with backoff; on success the queue resumes where it stopped."""
        if self.source.is_connected():
            self._online.set()
            self._wake.set()
            return
        last = ""
        for attempt in range(1, self.retry.reconnect_attempts + 1):
            await asyncio.sleep(self.retry.delay(attempt))
            try:
                await self.source.connect()
            except SourceError as exc:
                last = str(exc)
                continue
            self.progress.reconnects += 1
            self._paused = None
            self._online.set()
            self._wake.set()
            return
        self._gave_up = f"gateway lost; {self.retry.reconnect_attempts} reconnect attempts failed ({last})"
        self._online.set()
        self._wake.set()
