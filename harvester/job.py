"""The nightly harvest as a Python API: `run_harvest(HarvestJob(...)) -> HarvestReport`.

Steps: open the warehouse → connect → ask the gateway for "now" (never the local clock) →
qualify only new or stale contracts → head timestamps only where they save requests → plan against
stored coverage, a batch of claimed series at a time → run the scheduler, staging every answer durably → commit every few minutes and at
the end. A crash anywhere leaves staged answers the next run's commit recovers; coverage is never
recorded for bars that are not stored, so a rerun fetches exactly what is missing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from harvester.calendar import TradingCalendar, from_epoch
from harvester.contracts import resolve_contracts, stored_contracts
from harvester.ib.adaptive import AdaptivePace
from harvester.ib.budget import gateway_budget, gateway_window
from harvester.ib.client import ContractInfo, FetchResult, IBSource
from harvester.ib.ledger import LedgerBudget
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
from harvester.ib.windows import WindowSizes
from harvester.ibrules import WHAT_TO_SHOW, PacingLimits, bar_size, request_weight, what_to_show_for
from harvester.model import BarRequest, ContractSpec, HeadKey, HeldBar, SeriesKey, WorkKind
from harvester.plan import (
    PlanError,
    SeriesState,
    needs_head_timestamp,
    plan_requests,
    split_request,
    wanted_span,
)
from harvester.recorder import Recorder, recent_sends
from harvester.repair import repair_splits
from harvester.settings import PACINGS, QUARANTINE_NIGHTS, Settings
from harvester.warehouse import Warehouse, WarehouseError
from harvester.warehouse.claims import CLAIM_TTL, live_claims
from harvester.warehouse.coverage import CoverageIndex
from harvester.warehouse.storage import Location
from harvester.warehouse.store import read_meta

ADJUSTED = "ADJUSTED_LAST"


class HarvestConfigError(ValueError):
    """A job that cannot run as given; the message names the culprit."""


@dataclass
class HarvestJob:
    """Everything one harvest needs. `start=None` means "from the head" (earliest available).

    `start` and `end` are exchange dates (a session's trading date, `end` inclusive), turned into instants by
    each series' own calendar and flavour (`TradingCalendar.day_bound`); an aware datetime is an instant as
    it is (a naive one is taken as UTC)."""

    universe: Sequence[ContractSpec]
    data_dir: str | Path = "data"  # a folder or s3://bucket/prefix
    bar_sizes: tuple[str, ...] = ("1 day",)
    what_to_show: str | None = None  # None: each asset class's default (ibrules; CASH: MIDPOINT)
    start: date | datetime | None = None
    end: date | datetime | None = None  # None: the gateway's now
    use_rth: bool = True
    adjusted: bool = False  # + one ADJUSTED_LAST daily series per contract, refreshed whole each night
    host: str = "127.0.0.1"
    port: int = 7497
    client_id: int = 17
    pacing_scale: float = 1.0
    commit_every_s: float = 180.0
    target_bars: int = 5000
    plan_only: bool = False
    max_in_flight: int = 6
    pacing: str = "strict"  # "adaptive": bars of 1 min and up paced by answer times (ib.adaptive)
    claim_batch: int = 25  # series claimed at a time (settings.claim_batch)
    quarantine_nights: int = QUARANTINE_NIGHTS  # a refused bar bad this many nights is no longer asked for
    connect_timeout: float = 10.0
    min_safety_s: float = MIN_SAFETY_S  # pacing margin floor; larger when the gateway shares our CPU
    retry: RetryPolicy | None = None  # None: defaults scaled by pacing_scale
    timeouts: TimeoutPolicy | None = None  # None: defaults scaled by pacing_scale (floor 5 s)
    # validate() refuses a future --start/--end by the local date, before anything is touched (the CLI); the
    # read-through leaves it to the gateway's now, which a simulator may set anywhere
    local_clock_checks: bool = True

    def __post_init__(self) -> None:
        # one name per bar size from here on: "1W" and "1 week" must be the same series, in the plan, the
        # requests, the staging door and the warehouse (an alias slipped past once and was never stored)
        self.bar_sizes = tuple(dict.fromkeys(_canonical_bar_size(name) for name in self.bar_sizes))

    @classmethod
    def from_settings(cls, settings: Settings, universe: Sequence[ContractSpec], **job: object) -> HarvestJob:
        """A job from resolved settings (`harvester.settings`); `job` sets what only a run has (start, sim, ...)."""
        common = {f.name: getattr(settings, f.name) for f in fields(Settings) if f.name in cls.__dataclass_fields__}
        return cls(universe=universe, **{**common, **job})

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
        if self.what_to_show is not None and self.what_to_show not in WHAT_TO_SHOW:
            raise HarvestConfigError(f"what: unknown whatToShow {self.what_to_show!r}; legal: {', '.join(WHAT_TO_SHOW)}")
        for spec in self.universe:
            try:
                what_to_show_for(spec.sec_type, self.what_to_show)
            except ValueError as exc:
                raise HarvestConfigError(f"what: {spec.label} (line {spec.line}): {exc}") from None
        if self.local_clock_checks and self.end is not None and _day(self.end) > today:
            raise HarvestConfigError(f"end: {self.end} is in the future (today is {today})")
        if self.start is not None and self.end is not None and _day(self.start) > _day(self.end):
            raise HarvestConfigError(f"start: {self.start} is after the end {self.end}")
        if self.local_clock_checks and self.start is not None and _day(self.start) > today:
            raise HarvestConfigError(f"start: {self.start} is after the end {today}")
        for name in ("pacing_scale", "commit_every_s", "connect_timeout"):
            if getattr(self, name) <= 0:
                raise HarvestConfigError(f"{name}: must be positive, got {getattr(self, name)}")
        for name in ("target_bars", "max_in_flight", "claim_batch", "quarantine_nights"):
            if getattr(self, name) <= 0:
                raise HarvestConfigError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.pacing not in PACINGS:
            raise HarvestConfigError(f"pacing: must be one of {', '.join(PACINGS)}, got {self.pacing!r}")
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
    bars_quarantined: int = 0  # refused at the door by this run (see the quarantine view for reasons)
    bars_held: int = 0  # refused bars still missing after the run: asked for again the next night
    bars_given_up: int = 0  # refused bars no longer asked for (still gaps)
    requests_by_outcome: dict[str, int] = field(default_factory=dict)
    head_requests: int = 0
    violations: int = 0
    retries: int = 0
    reconnects: int = 0
    windows_split: int = 0  # windows that timed out or were cancelled, sent again as smaller ones
    pacing_fell_back: str = ""  # adaptive pacing went back to strict during the run, and why
    wall_s: float = 0.0
    plan: list[BarRequest] = field(default_factory=list)
    plan_by_class: dict[str, int] = field(default_factory=dict)  # planned requests by asset class (sec_type)
    eta_s: float = 0.0
    unplanned: int = 0  # --plan only: series whose window waits for a head timestamp (estimated)
    estimated: int = 0  # --plan only: their requests, as if each had PLAN_ASSUMED_HISTORY
    eta_ib_s: float = 0.0  # the plan's pacing floor at IB's own limits (eta_s is at the job's scale)
    planned_offline: bool = False  # --plan only: worked out from the warehouse, no gateway asked
    gateway_now: datetime | None = None
    corrupt_files: list[str] = field(default_factory=list)  # quarantined at the start, refetched by this run
    left_to_others: dict[SeriesKey, str] = field(default_factory=dict)  # held by another live harvest
    repairs: list[str] = field(default_factory=list)  # split series made consistent (corporate_actions view)
    notices: list[str] = field(default_factory=list)  # renames and new conIds met while qualifying

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, symbol: str, reason: str) -> None:
        self.failures.setdefault(symbol, []).append(reason)

    def staged(self, kept: int, quarantined: int) -> None:
        self.bars_written += kept
        self.bars_quarantined += quarantined

    def count_requests(self, progress: Progress) -> None:
        self.requests_by_outcome = dict(progress.by_outcome)
        self.violations, self.retries, self.reconnects = progress.violations, progress.retries, progress.reconnects
        self.windows_split = progress.splits


def run_harvest(job: HarvestJob, progress: Callable[[Progress], None] | None = None) -> HarvestReport:
    """Validate, then run the whole harvest on a fresh event loop (see `harvest_async`)."""
    job.validate()
    return asyncio.run(harvest_async(job, progress))


async def harvest_async(job: HarvestJob, progress: Callable[[Progress], None] | None = None) -> HarvestReport:
    """The harvest for callers already inside an event loop. Raises MixedWarehouseError, WarehouseError,
    GatewayUnreachable, ClientIdInUse; series failures are reported, series another job holds are left to it."""
    started = time.monotonic()
    warehouse = Warehouse.open(job.data_dir, simulated=None, quarantine_nights=job.quarantine_nights)
    try:
        corrupt = [] if job.plan_only else warehouse.verify()  # damaged partitions: dropped, coverage forgotten
        report = await _harvest(job, warehouse, progress)
        report.corrupt_files = [str(c.path) for c in corrupt]
        if not job.plan_only:
            held = [h for bars in warehouse.held_bars().values() for h in bars]
            report.bars_given_up = sum(h.given_up for h in held)
            report.bars_held = len(held) - report.bars_given_up
    finally:
        warehouse.close()
    report.wall_s = time.monotonic() - started
    return report


def _know_the_gateway(job: HarvestJob, source: IBSource, warehouse: Warehouse) -> None:
    """What the gateway says it is decides the warehouse's mark and whether compressed pacing is allowed:
    below scale 1 a real gateway would see IB's rules broken (the simulator scales its own to match)."""
    kind = "the simulator" if source.simulated else "a real IB gateway"
    if job.pacing_scale < 1 and not source.simulated:
        raise HarvestConfigError(f"pacing scale {job.pacing_scale}: {source.address} is {kind} (account "
                                 f"{source.account or '?'}), which enforces IB's pacing at scale 1; drop --pacing-scale")
    warehouse.mark_origin(source.simulated, source.address, source.account, write=not job.plan_only)


async def _harvest(job: HarvestJob, warehouse: Warehouse, progress) -> HarvestReport:
    report = HarvestReport()
    source = IBSource(job.host, job.port, job.client_id, connect_timeout=job.connect_timeout)
    await source.connect()
    try:
        _know_the_gateway(job, source, warehouse)
    except (HarvestConfigError, WarehouseError):
        source.disconnect()
        raise
    recorder = Recorder(warehouse, job.commit_every_s, on_failure=report.fail, on_staged=report.staged)
    heartbeat = None
    try:
        now = await source.current_time()
        report.gateway_now = recorder.gateway_now = now
        if job.start is not None and _instant(job.start) >= now:
            raise HarvestConfigError(f"start: {job.start} is in the future (the gateway's now is "
                                     f"{now:%Y-%m-%d %H:%M} UTC): nothing to fetch yet")
        series = await _series(job, source, warehouse, now, report)
        limits = paced_limits(job.pacing_scale, job.min_safety_s)
        retry, timeouts = job.policies()
        sizes = WindowSizes(job.target_bars, warehouse.window_sizes())

        def learn_and_record(answer: Answer) -> None:
            work, result = answer.work, answer.result
            if work.kind is WorkKind.BARS and isinstance(result, FetchResult):
                sizes.answered(work.series.bar_size, work.request, result.outcome, result.latency_s,
                               timeouts.for_work(work), answer.final)
            recorder.on_answer(answer)

        scheduler = Scheduler(
            source, pacing_budget(job, warehouse, limits, source.account), max_in_flight=job.max_in_flight, retry=retry,
            timeouts=timeouts, on_answer=learn_and_record, on_progress=progress, split=lambda w, t: _smaller(w, t, sizes, timeouts.for_work(w)),
            adaptive=AdaptivePace(limits, time.monotonic, job.max_in_flight) if job.pacing == "adaptive" else None,
        )
        head_shows: list[str] = []  # whatToShow of every head-timestamp request: BID_ASK weighs double
        if job.plan_only:
            head_work = _head_work(series, warehouse.heads(), job.start)
            report.head_requests = len(head_work)
            head_shows += [w.series.what_to_show for w in head_work]
            _plan(job, series, warehouse, recorder, report, now, sizes)
        else:
            heartbeat = asyncio.create_task(_renew_claims(warehouse))
            contracts = {k: i for i, k in series}
            for batch in _claimed_batches(warehouse, series, job.claim_batch, report):
                warehouse.commit()  # answers a dead run staged for these series: stored and covered first
                head_work = _head_work(batch, warehouse.heads(), job.start)
                report.head_requests += len(head_work)
                head_shows += [w.series.what_to_show for w in head_work]
                await _run(scheduler, recorder, head_work)
                await recorder.settle()
                work_by_series = _plan(job, batch, warehouse, recorder, report, now, sizes)
                recorder.expect_checks([w.request for works in work_by_series for w in works])
                await _run(scheduler, recorder, interleave(work_by_series))
                await recorder.settle()
                if recorder.splits():
                    report.repairs += await repair_splits(scheduler, recorder, warehouse, contracts, now,
                                                          job.target_bars)
                await recorder.finish()
                warehouse.claims.release()
            worked = sizes.worked()
            if worked and worked != warehouse.window_sizes():  # the next run (and --plan) starts from it
                warehouse.save_window_sizes(worked)
        weights = [request_weight(r.series.what_to_show) for r in report.plan] + [request_weight(w) for w in head_shows]
        report.eta_s = pacing_floor(weights, limits) if weights else 0.0
        report.eta_ib_s = pacing_floor(weights, PacingLimits()) if weights else 0.0
        report.series_complete = sum(not recorder.failed_series(key) for _, key in series
                                     if key not in report.left_to_others)
        report.count_requests(scheduler.progress)
        report.pacing_fell_back = scheduler.adaptive.fell_back if scheduler.adaptive is not None else ""
    finally:
        if heartbeat is not None:
            heartbeat.cancel()
        await recorder.drain()
        source.disconnect()
    return report


def _claimed_batches(warehouse: Warehouse, series: list[tuple[ContractInfo, SeriesKey]], size: int,
                     report: HarvestReport) -> Iterator[list[tuple[ContractInfo, SeriesKey]]]:
    """The series in batches this job claimed; one another live job holds is left to it (not fetched twice).

    Claiming a batch at a time, not the whole universe, lets several jobs started together share the work;
    a series another job finished meanwhile is claimed and planned like any other, and needs no request.
    """
    todo = list(series)
    while todo:
        batch, todo = todo[:size], todo[size:]
        held = warehouse.claim([key for _, key in batch])
        for info, key in batch:
            if key in held:
                report.left_to_others[key] = f"{info.label} {key.bar_size}: held by {held[key]}"
        mine = [(info, key) for info, key in batch if key not in held]
        if mine:
            yield mine


async def _renew_claims(warehouse: Warehouse) -> None:
    """The job's heartbeat: its claims stay alive while it runs, however long pacing makes it wait."""
    while True:
        await asyncio.sleep(CLAIM_TTL.total_seconds() / 3)
        await asyncio.get_running_loop().run_in_executor(None, warehouse.claims.renew)


async def _series(job: HarvestJob, source: IBSource, warehouse: Warehouse, now: datetime,
                  report: HarvestReport) -> list[tuple[ContractInfo, SeriesKey]]:
    """Qualify the universe (stored contracts while fresh); every bar size of every contract is a series."""
    contracts, failed, report.notices = await resolve_contracts(source, warehouse, job.universe, now)
    for symbol, reason in failed.items():
        report.fail(symbol, reason)
    kinds = [(size, None) for size in job.bar_sizes] + ([("1 day", ADJUSTED)] if job.adjusted else [])
    keyed = {}
    for info in contracts:
        for size, what in kinds:
            if what is None or info.sec_type == "STK":  # dividends: stocks (ETFs are STK at IB)
                what = what or what_to_show_for(info.sec_type, job.what_to_show)
                keyed.setdefault(SeriesKey(info.con_id, size, what, job.use_rth), info)
    series = [(info, key) for key, info in keyed.items()]
    report.series_total = len(series) + len(failed) * len(job.bar_sizes)
    return series


async def _run(scheduler: Scheduler, recorder: Recorder, work: list[Work]) -> None:
    """Run the work; what still failed after its retries makes its series incomplete."""
    for answer in await scheduler.run(work):
        recorder.fail(answer)


def _plan(job: HarvestJob, series: list[tuple[ContractInfo, SeriesKey]], warehouse: Warehouse,
          recorder: Recorder, report: HarvestReport, now: datetime, sizes: WindowSizes) -> list[list[Work]]:
    """The requests that cover what each series is missing, against the coverage stored now."""
    heads = warehouse.heads()
    coverage = warehouse.coverage()
    held = warehouse.held_bars()
    work_by_series = []
    wanted = {}
    for info, key in series:
        if recorder.failed_series(key):
            continue
        state = _series_state(info, key, heads, coverage, held)
        if state.head is None and key.head_key in recorder.no_data_heads:
            continue  # IB has no data at all for this series: nothing to fetch, nothing failed
        estimated = state.head is None and job.plan_only and needs_head_timestamp(key, job.start)
        if estimated:  # its window starts at a head timestamp not fetched yet: estimate, said in the plan
            state = replace(state, head=now - PLAN_ASSUMED_HISTORY)
        start, end = span_bounds(job, state.calendar, key.use_rth, now)
        try:
            requests = plan_requests(state, start=start, end=end, now=now, target_bars=sizes.target(key.bar_size))
            span = None if estimated else wanted_span(state, start=start, end=end, now=now)
        except PlanError as exc:
            recorder.mark_failed(key, info.symbol, f"{key.bar_size} bars: cannot plan ({exc})")
            continue
        if span is not None:
            wanted[key] = span
        if estimated:
            report.unplanned += 1
            report.estimated += len(requests)
        report.plan.extend(requests)
        report.plan_by_class[info.sec_type] = report.plan_by_class.get(info.sec_type, 0) + len(requests)
        work_by_series.append([Work(WorkKind.BARS, info, key, r) for r in requests])
    if not job.plan_only:
        warehouse.want(wanted)  # before anything is sent: an interrupted run still shows what it lacks
    return work_by_series


# What `--plan` assumes for an intraday series whose head timestamp is not known yet (it says so).
PLAN_ASSUMED_HISTORY = timedelta(days=365)


PROBE_WAIT_S = 0.05  # how often a window held for its size's probe looks again (an answer also wakes it)


def _smaller(work: Work, timed_out: bool, sizes: WindowSizes, timeout_s: float) -> list[Work] | None:
    """The scheduler's `split`: after a timeout, halves; before a send, a window cut to what may go now, or
    held a moment while the probe of its size is out (`WindowSizes.allowed`)."""
    target = None
    if not timed_out:
        now = time.monotonic()  # the scheduler's clock: `not_before` is read on it
        target = sizes.allowed(work.series.bar_size, work.request, now, now + 2 * timeout_s)
        if target is None:
            work.not_before = max(work.not_before, now + PROBE_WAIT_S)
            return None
        if work.request.expected_bars <= target:
            return None
    parts = split_request(work.request, work.contract.calendar, target)
    return None if parts is None else [Work(WorkKind.BARS, work.contract, work.series, p) for p in parts]


def _expiry(info: ContractInfo, calendar: TradingCalendar, use_rth: bool) -> datetime | None:
    """A future's history ends with its last trade date's session."""
    if info.sec_type != "FUT" or len(info.last_trade_date) < 8:
        return None
    last = datetime.strptime(info.last_trade_date[:8], "%Y%m%d").date()
    return calendar.close_on_or_before(last, use_rth)


def _series_state(info: ContractInfo, key: SeriesKey, heads: dict[HeadKey, datetime], coverage: CoverageIndex,
                  held: dict[SeriesKey, list[HeldBar]]) -> SeriesState:
    """A series as the planner sees it: on its contract's own calendar, ending at a future's expiry."""
    calendar = info.calendar
    return SeriesState(series=key, symbol=info.label, calendar=calendar, head=heads.get(key.head_key),
                       coverage=tuple(coverage.intervals(key)), held=tuple(held.get(key, ())),
                       expires=_expiry(info, calendar, key.use_rth))


def missing_requests(job: HarvestJob, now: datetime | None = None) -> list[BarRequest] | None:
    """What `job` would ask IB for, worked out from the warehouse alone: no gateway, no lock, `now` from the
    local clock. [] when everything it asks for is covered; None when only the gateway can tell (nothing
    stored yet, a contract never qualified, a head timestamp not fetched). Read-through calls it first."""
    report = plan_from_warehouse(job, now)
    return None if report is None else report.plan


def plan_from_warehouse(job: HarvestJob, now: datetime | None = None) -> HarvestReport | None:
    """`job`'s plan from the warehouse alone (`missing_requests`, and `--plan` where it can: no gateway
    needed), or None when only the gateway can tell."""
    now = now or datetime.now(UTC)
    if read_meta(Location.parse(job.data_dir)) is None:
        return None
    warehouse = Warehouse(job.data_dir, None)  # reads only: nothing opened for writing, nothing claimed
    known, todo = stored_contracts(warehouse, job.universe, since=None)  # any age: conIds do not change
    if todo:
        return None
    heads, coverage, held = warehouse.heads(), warehouse.coverage(), warehouse.held_bars()
    report = HarvestReport(planned_offline=True, gateway_now=now)
    sizes = WindowSizes(job.target_bars, warehouse.window_sizes())
    for info in {i.con_id: i for infos in known.values() for i in infos}.values():
        for size in job.bar_sizes:
            key = SeriesKey(info.con_id, size, what_to_show_for(info.sec_type, job.what_to_show), job.use_rth)
            state = _series_state(info, key, heads, coverage, held)
            if state.head is None and needs_head_timestamp(key, job.start):
                return None
            start, end = span_bounds(job, state.calendar, key.use_rth, now)
            try:
                requests = plan_requests(state, start=start, end=end, now=now, target_bars=sizes.target(size))
            except PlanError:
                return None
            report.series_total += 1
            report.plan += requests
            report.plan_by_class[info.sec_type] = report.plan_by_class.get(info.sec_type, 0) + len(requests)
    weights = [request_weight(r.series.what_to_show) for r in report.plan]
    limits = paced_limits(job.pacing_scale, job.min_safety_s)
    report.eta_s, report.eta_ib_s = pacing_floor(weights, limits), pacing_floor(weights, PacingLimits())
    return report


def claimed_by_others(job: HarvestJob, keys: Iterable[SeriesKey]) -> dict[SeriesKey, str]:
    """Which of `keys` another live harvest holds now, and by whom (the claims table, read only)."""
    wanted = set(keys)
    rows = live_claims(Warehouse(job.data_dir, None).tables)
    return {key: f"held by run {r.run_id} (pid {r.pid} on {r.host})" for r in rows.itertuples(index=False)
            if (key := SeriesKey(int(r.con_id), r.bar_size, r.what_to_show, bool(r.use_rth))) in wanted}


def pacing_budget(job: HarvestJob, warehouse: Warehouse, limits: PacingLimits, account: str = ""
                  ) -> PacingWindow | LedgerBudget:
    """The job's gateway's one pacing budget (`ib.budget`): the ledger every process shares, else this
    process's window, seeded when first made with the sends other processes journaled in this warehouse
    within the window, so a run started right after another never gets what that one used up."""
    shared = gateway_budget(job.host, job.port, account, limits)
    if shared is not None:
        return shared
    window, new = gateway_window(job.host, job.port, limits, time.monotonic)
    if new and not job.plan_only:
        contracts = warehouse.contracts()
        exchanges = dict(zip(contracts.con_id.astype(int), contracts.exchange, strict=True))
        horizon = timedelta(seconds=limits.window_s + limits.safety_s)
        now, clock = datetime.now(UTC), time.monotonic()
        for request, sent_at in recent_sends(warehouse.journal(), exchanges, now, horizon):
            window.remember(request, clock - (now - sent_at).total_seconds())
    return window


def _canonical_bar_size(name: str) -> str:
    """IB's spelling for a known bar size or alias; an unknown name as given, for validate() to refuse."""
    try:
        return bar_size(name).ib_name
    except ValueError:
        return name


def span_bounds(job: HarvestJob, calendar: TradingCalendar, use_rth: bool, now: datetime
                ) -> tuple[datetime | None, datetime]:
    """The instants one series' span runs between: the job's dates as that series' exchange dates, its
    instants as they are; the end at most the gateway's now."""
    start = None if job.start is None else _bound(job.start, "start", calendar, use_rth)
    return start, now if job.end is None else min(now, _bound(job.end, "end", calendar, use_rth))


def _bound(when: date | datetime, side: str, calendar: TradingCalendar, use_rth: bool) -> datetime:
    if isinstance(when, datetime):
        return _instant(when)
    return from_epoch(calendar.day_bound(when, side, use_rth))


def _instant(when: date | datetime) -> datetime:
    """An instant as given (naive: UTC); a date's UTC midnight (a rough guard only: spans use `_bound`)."""
    if isinstance(when, datetime):
        return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return datetime(when.year, when.month, when.day, tzinfo=UTC)


def _day(when: date | datetime) -> date:
    return _instant(when).astimezone(UTC).date() if isinstance(when, datetime) else when


def _head_work(series: list[tuple[ContractInfo, SeriesKey]], heads: dict[HeadKey, datetime],
               start: date | datetime | None) -> list[Work]:
    """One head-timestamp request per (conId, whatToShow, RTH) not stored yet, only where it saves requests."""
    wanted: dict[HeadKey, Work] = {}
    for info, key in series:
        if key.head_key not in heads and key.head_key not in wanted and needs_head_timestamp(key, start):
            wanted[key.head_key] = Work(WorkKind.HEAD, info, key)
    return list(wanted.values())
