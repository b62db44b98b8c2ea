"""Make a split series consistent inside the nightly budget: rescale plus one verification request, or refetch.

A split found in a series' overlap (recorder) leaves its stored bars at the old scale. Two repairs:
- rescale: multiply the stored bars by the measured price ratio (volume inversely) and confirm with one
  request for the oldest stored session, which must then match the rescaled bars (else: refetch);
- refetch: ask for everything stored again and replace it.
Measured (README "History that changes"): daily bars refetch in one request, the same as verifying, and
refetched bars are IB's own values, so daily series are refetched; a year of 1-min bars is ~20 requests
to refetch against one to verify, so minute series are rescaled. The rule: rescale only when it costs
fewer requests than refetching. Either way the repair and every answer of the series are staged at once,
so the next commit rewrites the whole series in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from harvester.calendar import TradingCalendar
from harvester.ib.client import ContractInfo
from harvester.ib.scheduler import Scheduler, Work
from harvester.ibrules import bar_size
from harvester.model import BarRequest, SeriesKey, WorkKind, subtract_intervals
from harvester.plan import SeriesState, plan_requests
from harvester.recorder import HeldSeries, Recorder
from harvester.warehouse import Warehouse
from harvester.warehouse.changes import matches_rescaled
from harvester.warehouse.layout import period_of
from harvester.warehouse.tables import BAR_TS


@dataclass
class RepairPlan:
    series: SeriesKey
    contract: ContractInfo
    mode: str  # "rescale" | "refetch"
    requests: list[BarRequest]
    span: tuple[datetime, datetime]  # the stored bars to repair: from the first covered instant to the overlap
    stored: pa.Table  # the series' stored bars in the span (rescale: the verification compares with them)


async def repair_splits(scheduler: Scheduler, recorder: Recorder, warehouse: Warehouse,
                        contracts: dict[SeriesKey, ContractInfo], now: datetime, target_bars: int) -> list[str]:
    """Repair every split the overlaps showed; returns one line per repaired series, for the report."""
    plans = [_plan(key, held, contracts[key], warehouse, now, target_bars)
             for key, held in recorder.splits().items()]
    done: list[str] = []
    while plans:
        for plan in plans:
            recorder.repairing.add(plan.series)
        work = [Work(WorkKind.BARS, p.contract, p.series, r) for p in plans for r in p.requests]
        for answer in await scheduler.run(work):
            recorder.fail(answer)
        await recorder.settle()
        retry = []
        for plan in plans:
            held = recorder.series_held[plan.series]
            if held.failed:
                recorder.forget(plan.series)
            elif plan.mode == "rescale" and not _verified(plan, held):
                held.repair.clear()
                retry.append(_refetch(plan, warehouse, now, target_bars))
            else:
                recorder.stage_repaired(plan.series, _repair_record(plan, held, recorder, now), plan.span)
                done.append(f"{plan.contract.symbol} {plan.series.bar_size}: split {held.verdict.shares_ratio:g}:1 "
                            f"({plan.mode}, {held.attempts} request{'s' if held.attempts != 1 else ''})")
        plans = retry
    return done


def _plan(key: SeriesKey, held: HeldSeries, info: ContractInfo, warehouse: Warehouse, now: datetime,
          target_bars: int) -> RepairPlan:
    stored_until = held.check.request.start
    covered = [(a, min(b, stored_until)) for a, b in warehouse.coverage().intervals(key) if a < stored_until]
    span = (covered[0][0] if covered else stored_until, stored_until)
    plan = RepairPlan(key, info, "refetch", [], span, warehouse.series_rows(key, *span))
    refetch = _refetch(plan, warehouse, now, target_bars)
    verify = _verification(plan, now, target_bars)
    if verify and len(verify) < len(refetch.requests):
        plan.mode, plan.requests = "rescale", verify
        return plan
    return refetch


def _refetch(plan: RepairPlan, warehouse: Warehouse, now: datetime, target_bars: int) -> RepairPlan:
    """Requests for exactly what is covered in the span (holes stay holes)."""
    covered = warehouse.coverage().intervals(plan.series)
    not_covered = subtract_intervals([plan.span], covered)
    requests = plan_requests(_state(plan, not_covered), start=plan.span[0], end=plan.span[1], now=now,
                             target_bars=target_bars, overlap_sessions=0)
    return RepairPlan(plan.series, plan.contract, "refetch", requests, plan.span, plan.stored)


def _verification(plan: RepairPlan, now: datetime, target_bars: int) -> list[BarRequest]:
    """One request for the session of the oldest stored bar (none stored: nothing to verify)."""
    if not plan.stored.num_rows:
        return []
    first = pc.min(plan.stored["ts"]).as_py().replace(tzinfo=UTC)
    (oldest,) = _calendar(plan).sessions(first, first + timedelta(seconds=1), plan.series.use_rth)
    session = (oldest.open_utc, oldest.close_utc)
    outside = subtract_intervals([plan.span], [session])
    return plan_requests(_state(plan, outside), start=session[0], end=session[1], now=now,
                         target_bars=target_bars, overlap_sessions=0)


def _verified(plan: RepairPlan, held: HeldSeries) -> bool:
    """The verification answer equals the stored bars of its window rescaled by the measured ratio."""
    answer = held.repair[0].kept if held.repair else None
    if answer is None or not answer.num_rows:
        return False
    request = plan.requests[0]
    ts = plan.stored["ts"]
    window = plan.stored.filter(pc.and_(pc.greater_equal(ts, _utc(request.start)), pc.less(ts, _utc(request.end))))
    return matches_rescaled(window, answer, held.verdict.price_ratio)


def _repair_record(plan: RepairPlan, held: HeldSeries, recorder: Recorder, now: datetime) -> dict:
    """The staged repair: how to apply it once, and its corporate_actions row."""
    s, verdict = plan.series, held.verdict
    ratio = verdict.shares_ratio
    check_until = held.check.request.check_until
    after = _calendar(plan).sessions(check_until, max(now, check_until + timedelta(days=1)), s.use_rth)
    ex_date = after[0].date if after else check_until.date()
    repair = {"mode": "rescale" if plan.mode == "rescale" else "replace", "price_ratio": verdict.price_ratio,
              "anchor": None}
    if plan.mode == "rescale":
        last = plan.stored.slice(plan.stored.num_rows - 1)
        day = last["session_date"][0].as_py()
        repair["anchor"] = {"ts": last["ts"][0].as_py().isoformat(), "close": last["close"][0].as_py(),
                            "period": period_of(day, bar_size(s.bar_size).partition)}
    repair["action"] = {
        "con_id": s.con_id, "symbol": plan.contract.symbol, "bar_size": s.bar_size, "what_to_show": s.what_to_show,
        "use_rth": s.use_rth, "ex_date": ex_date.isoformat(),
        "kind": "split" if ratio > 1 else "reverse_split", "ratio": ratio, "detected_at": now.isoformat(),
        "run_id": recorder.run_id, "repair": plan.mode, "requests": held.attempts,
    }
    return repair


def _state(plan: RepairPlan, covered: list[tuple[datetime, datetime]]) -> SeriesState:
    return SeriesState(plan.series, plan.contract.symbol, _calendar(plan), None, tuple(covered))


def _calendar(plan: RepairPlan) -> TradingCalendar:
    return plan.contract.calendar


def _utc(instant: datetime) -> pa.Scalar:
    """An aware instant as a scalar comparable with a stored bar's `ts`."""
    return pa.scalar(instant, BAR_TS)
