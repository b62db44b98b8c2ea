"""The nightly harvest as a Python API: `run_harvest(HarvestJob(...)) -> HarvestReport`.

Steps: open and lock the warehouse → connect → ask the gateway for "now" (never the local clock) →
qualify only new or stale contracts → head timestamps only where they save requests → plan against
stored coverage → run the scheduler, staging every answer durably → commit every few minutes and at
the end. A crash anywhere leaves staged answers the next run's commit recovers; coverage is never
recorded for bars that are not stored, so a rerun fetches exactly what is missing.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from harvester.calendar import TradingCalendar
from harvester.contracts import resolve_contracts
from harvester.ib.client import ContractInfo, IBSource
from harvester.ib.pacing import PacingWindow, pacing_floor
from harvester.ib.scheduler import (
    MIN_SAFETY_S,
    Answer,
    Progress,
    RetryPolicy,
    Scheduler,
    TimeoutPolicy,
    Work,
    interleave,
    paced_limits,
)
from harvester.ibrules import WHAT_TO_SHOW, bar_size, request_weight
from harvester.model import BarRequest, Outcome, SeriesKey
from harvester.plan import PlanError, SeriesState, needs_head_timestamp, plan_requests
from harvester.universe import ContractSpec
from harvester.warehouse.store import Warehouse


class HarvestConfigError(ValueError):
    """A job that cannot run as given; the message names the culprit."""


@dataclass
class HarvestJob:
    """Everything one harvest needs. `start=None` means "from the head" (earliest available)."""

    universe: Sequence[ContractSpec]
    data_dir: Path = Path("data")
    bar_sizes: tuple[str, ...] = ("1 day",)
    what_to_show: str = "TRADES"
    start: date | None = None
    end: date | None = None  # None: the gateway's now
    use_rth: bool = True
    host: str = "127.0.0.1"
    port: int = 7497
    client_id: int = 17
    sim: bool = False  # the warehouse is (to be) marked simulated
    pacing_scale: float = 1.0
    commit_every_s: float = 180.0
    target_bars: int = 5000
    plan_only: bool = False
    max_in_flight: int = 6
    connect_timeout: float = 10.0
    min_safety_s: float = MIN_SAFETY_S  # pacing margin floor; larger when the gateway shares our CPU
    retry: RetryPolicy | None = None  # None: defaults scaled by pacing_scale
    timeouts: TimeoutPolicy | None = None  # None: defaults scaled by pacing_scale (floor 5 s)

    def validate(self, today: date | None = None) -> None:
        """Raise HarvestConfigError naming the first bad field; nothing is touched before this."""
        today = today or datetime.now(UTC).date()
        if not self.universe:
            raise HarvestConfigError("universe: no contracts to harvest")
        if not self.bar_sizes:
            raise HarvestConfigError("bar size: give at least one")
        for name in self.bar_sizes:
            try:
                bar_size(name)
            except ValueError as exc:
                raise HarvestConfigError(f"bar size: {exc}") from None
        if self.what_to_show not in WHAT_TO_SHOW:
            raise HarvestConfigError(f"what: unknown whatToShow {self.what_to_show!r}; legal: {', '.join(WHAT_TO_SHOW)}")
        if self.end is not None and self.end > today:
            raise HarvestConfigError(f"end: {self.end} is in the future (today is {today})")
        if self.start is not None and self.start > (self.end or today):
            raise HarvestConfigError(f"start: {self.start} is after the end {self.end or today}")
        for name in ("pacing_scale", "commit_every_s", "connect_timeout"):
            if getattr(self, name) <= 0:
                raise HarvestConfigError(f"{name}: must be positive, got {getattr(self, name)}")
        for name in ("target_bars", "max_in_flight"):
            if getattr(self, name) <= 0:
                raise HarvestConfigError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.max_in_flight >= 50:
            raise HarvestConfigError(f"max_in_flight: IB allows 50 open requests, got {self.max_in_flight}")
        if not 0 <= self.port < 65536 or self.client_id < 0:
            raise HarvestConfigError(f"port/client id: bad value {self.port}/{self.client_id}")

    def policies(self) -> tuple[RetryPolicy, TimeoutPolicy]:
        scale = self.pacing_scale
        retry = self.retry or RetryPolicy(backoff_s=max(0.05, 2.0 * scale), backoff_max_s=max(1.0, 120.0 * scale),
                                          max_pause_s=max(5.0, 900.0 * scale))
        timeouts = self.timeouts or TimeoutPolicy(
            base_s=max(5.0, 30.0 * scale), per_bar_s=max(0.001, 0.01 * scale), head_s=max(5.0, 30.0 * scale))
        return retry, timeouts


@dataclass
class HarvestReport:
    """What happened: by series, by request outcome, and the plan that was (or would be) run."""

    series_total: int = 0
    series_complete: int = 0
    failures: dict[str, list[str]] = field(default_factory=dict)  # symbol -> reasons
    bars_written: int = 0
    bars_quarantined: int = 0  # refused at the door (see the quarantine view for reasons)
    requests_by_outcome: dict[str, int] = field(default_factory=dict)
    head_requests: int = 0
    violations: int = 0
    retries: int = 0
    reconnects: int = 0
    wall_s: float = 0.0
    plan: list[BarRequest] = field(default_factory=list)
    eta_s: float = 0.0
    unplanned: int = 0  # --plan only: series whose window waits for a head timestamp
    gateway_now: datetime | None = None
    corrupt_files: list[str] = field(default_factory=list)  # quarantined at the start, refetched by this run

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, symbol: str, reason: str) -> None:
        self.failures.setdefault(symbol, []).append(reason)


def run_harvest(job: HarvestJob, progress: Callable[[Progress], None] | None = None) -> HarvestReport:
    """Validate, then run the whole harvest on a fresh event loop (see `harvest_async`)."""
    job.validate()
    return asyncio.run(harvest_async(job, progress))


async def harvest_async(job: HarvestJob, progress: Callable[[Progress], None] | None = None) -> HarvestReport:
    """The harvest for callers already inside an event loop. Raises WarehouseLocked,
    MixedWarehouseError, WarehouseError, GatewayUnreachable, ClientIdInUse; series failures are reported."""
    started = time.monotonic()
    warehouse = Warehouse.open(job.data_dir, simulated=job.sim, gateway=f"{job.host}:{job.port}")
    try:
        if job.plan_only:
            report = await _harvest(job, warehouse, progress)
        else:
            with warehouse.lock():
                corrupt = warehouse.verify()  # damaged partitions: quarantined, their coverage forgotten
                warehouse.commit()  # answers staged by a run that died: stored and covered before planning
                report = await _harvest(job, warehouse, progress)
                report.corrupt_files = [str(c.path) for c in corrupt]
    finally:
        warehouse.close()
    report.wall_s = time.monotonic() - started
    return report


async def _harvest(job: HarvestJob, warehouse: Warehouse, progress) -> HarvestReport:
    report = HarvestReport()
    source = IBSource(job.host, job.port, job.client_id, connect_timeout=job.connect_timeout)
    await source.connect()
    recorder = _Recorder(warehouse, job, report)
    try:
        now = await source.current_time()
        report.gateway_now = now
        contracts, failed = await resolve_contracts(source, warehouse, job.universe, now)
        for symbol, reason in failed.items():
            report.fail(symbol, reason)
        series = [
            (info, SeriesKey(info.con_id, size, job.what_to_show, job.use_rth))
            for info in contracts for size in job.bar_sizes
        ]
        report.series_total = len(series) + len(failed) * len(job.bar_sizes)
        limits = paced_limits(job.pacing_scale, job.min_safety_s)
        retry, timeouts = job.policies()
        scheduler = Scheduler(
            source, PacingWindow(limits, time.monotonic), max_in_flight=job.max_in_flight, retry=retry,
            timeouts=timeouts, on_answer=recorder.on_answer, on_progress=progress,
        )
        start = _start_instant(job.start)
        head_work = _head_work(series, warehouse.heads(), start)
        report.head_requests = len(head_work)
        if not job.plan_only:
            for answer in await scheduler.run(head_work):
                recorder.fail(answer)
            await recorder.settle()
        heads = warehouse.heads()
        end = min(now, _end_instant(job.end)) if job.end else now
        work_by_series = []
        coverage = warehouse.coverage()
        for info, key in series:
            if recorder.failed_series(key):
                continue
            state = SeriesState(
                series=key, symbol=info.symbol, calendar=TradingCalendar.for_exchange(info.primary_exchange),
                head=heads.get(head_key(key)),
                coverage=tuple(coverage.intervals(key)),
            )
            if state.head is None and head_key(key) in recorder.no_data_heads:
                continue  # IB has no data at all for this series: nothing to fetch, nothing failed
            if state.head is None and job.plan_only and needs_head_timestamp(key, start):
                report.unplanned += 1  # its window starts at a head timestamp not fetched yet
                continue
            try:
                requests = plan_requests(state, start=start, end=end, now=now, target_bars=job.target_bars)
            except PlanError as exc:
                recorder.failed.add(key)
                report.fail(info.symbol, f"{key.bar_size} bars: cannot plan ({exc})")
                continue
            report.plan.extend(requests)
            work_by_series.append([Work("bars", info, key, r) for r in requests])
        weights = [request_weight(job.what_to_show)] * (len(report.plan) + len(head_work))
        report.eta_s = pacing_floor(weights, limits) if weights else 0.0
        if not job.plan_only:
            for answer in await scheduler.run(interleave(work_by_series)):
                recorder.fail(answer)
            await recorder.finish()
        report.series_complete = sum(not recorder.failed_series(key) for _, key in series)
        p = scheduler.progress
        report.requests_by_outcome = dict(p.by_outcome)
        report.violations, report.retries, report.reconnects = p.violations, p.retries, p.reconnects
    finally:
        await recorder.drain()
        source.disconnect()
    return report


def _start_instant(start: date | None) -> datetime | None:
    return None if start is None else datetime(start.year, start.month, start.day, tzinfo=UTC)


def _end_instant(end: date) -> datetime:
    """An end date includes that whole day."""
    return datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)


def head_key(series: SeriesKey) -> tuple[int, str, bool]:
    """Head timestamps belong to (conId, whatToShow, RTH), shared by every bar size."""
    return (series.con_id, series.what_to_show, series.use_rth)


def _head_work(series: list[tuple[ContractInfo, SeriesKey]], heads: dict, start: datetime | None) -> list[Work]:
    """One head-timestamp request per (conId, whatToShow, RTH) not stored yet, only where it saves requests."""
    wanted: dict[tuple[int, str, bool], Work] = {}
    for info, key in series:
        hk = head_key(key)
        if hk not in heads and hk not in wanted and needs_head_timestamp(key, start):
            wanted[hk] = Work("head", info, key)
    return list(wanted.values())


class _Recorder:
    """Journals every attempt, stages every covering answer, saves heads, commits on a timer."""

    def __init__(self, warehouse: Warehouse, job: HarvestJob, report: HarvestReport):
        self.warehouse, self.job, self.report = warehouse, job, report
        self.run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{os.getpid()}"
        self.failed: set[SeriesKey] = set()
        self._failed_heads: set[tuple[int, str, bool]] = set()
        self.no_data_heads: set[tuple[int, str, bool]] = set()
        self._last_commit = time.monotonic()
        self._calendars: dict[str, TradingCalendar] = {}
        self._committing: asyncio.Future | None = None  # a commit running in a worker thread
        self._held: list[Answer] = []  # answers that arrived during it

    def on_answer(self, answer: Answer) -> None:
        """Record one answer; while a commit runs in its worker thread, hold answers until it is done
        (the warehouse must not stage while it commits) so the event loop keeps sending meanwhile."""
        if self._committing is not None and self._committing.done():
            self._after_commit()
        if self._committing is not None:
            self._held.append(answer)
            return
        self._record(answer)
        if time.monotonic() - self._last_commit >= self.job.commit_every_s:
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
        if work.kind == "head":
            if result.outcome is Outcome.BARS:
                s = work.series
                self.warehouse.save_head(s.con_id, s.what_to_show, s.use_rth, result.head)
            elif result.outcome is Outcome.EMPTY:
                self.no_data_heads.add(head_key(work.series))
        elif result.outcome.covers:
            calendar = self._calendar(work.contract)
            frame = None
            if result.outcome is Outcome.BARS:
                frame = warehouse_frame(result.bars, work.series, calendar)
            staged = self.warehouse.stage(work.request, result.outcome, frame, symbol=work.symbol,
                                          calendar=calendar)
            self.report.bars_written += staged.kept
            self.report.bars_quarantined += staged.quarantined

    def fail(self, answer: Answer) -> None:
        """A final failure: the series is incomplete; say why, by symbol."""
        work, result = answer.work, answer.result
        self.failed.add(work.series)
        if work.kind == "head":
            self._failed_heads.add(head_key(work.series))
        what = "head timestamp" if work.kind == "head" else f"{work.series.bar_size} bars"
        detail = f": {result.error_text}" if result.error_text else ""
        self.report.fail(work.symbol, f"{what} {result.outcome.value}{detail}")

    def failed_series(self, key: SeriesKey) -> bool:
        """A series whose head timestamp failed cannot be planned."""
        return key in self.failed or head_key(key) in self._failed_heads

    def _calendar(self, info: ContractInfo) -> TradingCalendar:
        cal = self._calendars.get(info.primary_exchange)
        if cal is None:
            cal = self._calendars[info.primary_exchange] = TradingCalendar.for_exchange(info.primary_exchange)
        return cal




def warehouse_frame(raw: pd.DataFrame, series: SeriesKey, calendar: TradingCalendar) -> pd.DataFrame:
    """IB's bars → the warehouse's columns: `ts` bar start (UTC), `session_date` exchange-local date.

    Daily and longer bars arrive as dates (formatDate is ignored for them); their `ts` is the session's
    open in the requested flavour (RTH or extended), looked up vectorised in the calendar's arrays.
    Intraday bars arrive as UTC epoch (formatDate=2).
    """
    if bar_size(series.bar_size).intraday:
        ts = pd.to_datetime(raw["date"], utc=True)
        session_date = ts.dt.tz_convert(calendar.time_zone).dt.tz_localize(None).dt.floor("D")
    else:
        days = pd.to_datetime(raw["date"]).to_numpy().astype("datetime64[D]")
        index, is_session = calendar.day_index(days)
        opens, _ = calendar.bounds(series.use_rth)
        # A date that is no session keeps its own date and midnight: validation quarantines it.
        epoch = np.where(is_session, opens[index], days.astype("datetime64[s]").astype(np.int64))
        ts = pd.Series(pd.to_datetime(epoch, unit="s", utc=True), index=raw.index)
        session_date = pd.Series(days, index=raw.index)
    frame = raw.drop(columns="date")
    frame.insert(0, "session_date", session_date)
    frame.insert(0, "ts", ts)
    return frame


def journal_row(run_id: str, answer: Answer) -> dict:
    """One journal row (layout.md) for one attempt, whatever its outcome."""
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
