"""Data requests of every connection: contract details, historical bars, head timestamps, cancels.

Order of checks for a historical request, as a real gateway appears to apply them: faults that drop
the socket; contract (200); parameters (321, 10314, 162 invalid step / ADJUSTED_LAST with an end);
open-request cap (322); pacing (162); faults that silence or fail it; no data (162); else bars after
the HMDS model's delay (hmds.py: withheld past its size, late past its load, and under the current rules
slowed, then disconnected, by the soft throttle). Only admitted requests hold an open slot and count
toward pacing; pacing judges a request at its arrival stamp, taken when its message is read
(rules.ArrivalStamps). Bars are built and encoded on a thread of their own, so the event loop keeps
reading (and stamping) requests meanwhile, as a gateway's socket side does while HMDS works.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from harvester.sim.clients import ClientRegistry
from harvester.sim.clock import SimClock
from harvester.sim.connectivity import Connectivity
from harvester.sim.faults import Faults, break_bars, resolve_error
from harvester.sim.historical import HistoricalDesk
from harvester.sim.hmds import HmdsLoad
from harvester.sim.journal import Journal
from harvester.sim.market.barsizes import DAILY_OR_LONGER
from harvester.sim.market.securities import Instrument
from harvester.sim.options import SimConfig
from harvester.sim.requestchecks import (
    RequestRejected,
    check_format_date,
    check_step,
    parse_bar_size,
    parse_duration,
    parse_end,
    parse_what_to_show,
)
from harvester.sim.rules import ArrivalStamps, PacedRequest, PacingEngine, Verdict
from harvester.sim.wire import messages as m
from harvester.sim.wire.contractdata import ContractDetailsRequest, contract_data, contract_data_end
from harvester.sim.wire.framing import Field, FieldReader
from harvester.sim.wire.historicaldata import (
    HeadTimestampRequest,
    HistoricalRequest,
    historical_data_frame,
)
from harvester.sim.wire.historicaldata import head_timestamp as head_timestamp_message
from harvester.sim.wire.messages import ContractSpec


class Requester(Protocol):
    """What the data service needs of the connection a request came on."""

    client_id: int | None
    pending: dict[int, asyncio.Task]  # work in progress, by reqId
    open_heads: dict[int, Slot]  # answered head timestamps holding a slot until cancelled

    def send(self, fields: list[Field]) -> None: ...

    def send_frame(self, frame: bytes) -> None: ...

    def error(self, req_id: int, code: int, text: str) -> None: ...

    def close(self) -> None: ...


class Slot:
    """One admitted request's claim on the 50-open limit; releasing twice is harmless."""

    def __init__(self, pacing: PacingEngine) -> None:
        self._pacing = pacing
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self._pacing.release()


class Claim:
    """Where a request keeps its slot once admitted: freed when the request ends, unless handed on. It
    carries the request's arrival stamp, taken when the message was read, for the pacing check."""

    def __init__(self, received: float, stamp: float) -> None:
        self.received, self.stamp = received, stamp
        self.slot: Slot | None = None

    def release(self) -> None:
        if self.slot is not None:
            self.slot.release()


class DataService:
    """Shared by all connections of one gateway: pacing, faults, journal and HMDS workers are per gateway."""

    def __init__(
        self,
        desk: HistoricalDesk,
        config: SimConfig,
        clock: SimClock,
        journal: Journal,
        clients: ClientRegistry,
        connectivity: Connectivity,
    ) -> None:
        self.desk = desk
        self.config = config
        self.clock = clock
        self.journal = journal
        self.clients = clients
        self.connectivity = connectivity
        self.faults: Faults = config.faults  # replaced as a whole by `gw.faults = ...`
        self.rng = random.Random(config.faults.seed)
        self.pacing = PacingEngine(config.hard_limits, time.monotonic, config.pacing_scale)
        self.stamps = ArrivalStamps(time.monotonic, config.stamp_lag_s, config.faults.seed)
        self.hmds = HmdsLoad(config.hmds, time.monotonic, latency_scale=config.effective_latency_scale,
                             pacing_scale=config.pacing_scale, throttle=config.soft_throttle)
        self.workers = asyncio.Semaphore(config.hmds.workers)
        self._builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim-hmds")

    def close(self) -> None:
        """Stop the bar-building thread (answers still in progress are cancelled with their connections)."""
        self._builder.shutdown(wait=False, cancel_futures=True)

    async def _built(self, build: Callable[..., Any], *args: Any) -> Any:
        """`build(*args)` on the bar-building thread: CPU work that must not hold up reading the sockets."""
        return await asyncio.get_running_loop().run_in_executor(self._builder, functools.partial(build, *args))

    # -- contract details ------------------------------------------------------------------
    def contract_details(self, conn: Requester, fields: FieldReader) -> None:
        request = ContractDetailsRequest.read(fields)
        spec = request.contract
        entry = self._entry(conn, "contract_details", request.req_id, spec)
        if self._drop_or_silence(conn, spec, entry):
            return
        isin = request.sec_id if request.sec_id_type.upper() == "ISIN" else ""
        now = self.clock.now()
        found = self.desk.candidates(spec, request.include_expired, now, isin)
        if not found:
            self._journal(entry, "unknown_contract", error_code=200)
            conn.error(request.req_id, 200, m.TEXT_UNKNOWN_CONTRACT)
            return
        replies = [contract_data(request.req_id, self.desk.named(i, now), spec.exchange, self.desk.calendar(i), now)
                   for i in found]
        self._journal(entry, "details", bars=len(found))
        for reply in [*replies, contract_data_end(request.req_id)]:
            conn.send(reply)

    # -- historical data -------------------------------------------------------------------
    def historical(self, conn: Requester, fields: FieldReader) -> None:
        request = HistoricalRequest.read(fields)
        entry = self._entry(conn, "historical", request.req_id, request.contract)
        entry.update(bar_size=request.bar_size, duration=request.duration, end=request.end,
                     what_to_show=request.what_to_show, use_rth=request.use_rth)  # fmt: skip
        claim = self._arrived()
        self._spawn(conn, request.req_id, lambda: self._paced(conn, request, entry, claim, self._historical))

    async def _historical(
        self,
        conn: Requester,
        request: HistoricalRequest,
        entry: dict[str, Any],
        inst: Instrument,
        claim: Claim,
    ) -> None:
        spec, req_id = request.contract, request.req_id
        bar_size = parse_bar_size(request.bar_size)
        check_format_date(request.format_date)
        what = parse_what_to_show(request.what_to_show)
        duration = parse_duration(request.duration)
        check_step(bar_size, duration)
        end = parse_end(request.end)
        if what == "ADJUSTED_LAST" and end.instant is not None:
            raise RequestRejected(162, m.HMDS + "End date not supported with adjusted last", "invalid")
        continuous = spec.sec_type.upper() == "CONTFUT"
        if continuous and end.instant is not None:
            raise RequestRejected(10339, m.TEXT_CONTFUT_END, "invalid")
        self.desk.check_what(inst, what, None if bar_size.kind in DAILY_OR_LONGER else bar_size.seconds)
        self.desk.check_replayed(inst, bar_size)
        if end.implied_zone:
            conn.error(req_id, 2174, m.TEXT_NO_ZONE)
        identity = (inst.con_id, spec.sec_type, spec.exchange, request.end, request.bar_size, request.duration,
                    what, request.use_rth)  # fmt: skip
        claim.slot = self._admit(
            PacedRequest(identity, (inst.con_id, spec.exchange, what), what, bar_size.name), claim, entry
        )
        await self._faults(conn, spec, inst.primary_exchange, req_id, entry, forced=True)
        now = self.clock.now()
        window = await self._built(self.desk.window, inst, end.instant or now, duration, request.use_rth)
        serve = self.desk.continuous_bars if continuous else self.desk.bar_columns
        bars = await self._built(serve, inst, bar_size, what, request.use_rth, window, now)
        if not bars:
            raise self.desk.no_data(spec, what, inst)
        daily = bar_size.kind in DAILY_OR_LONGER
        if self.faults.breaks_bars(spec.label, now):
            bars, entry["broken"] = break_bars(bars, self.faults, (inst.con_id, bar_size.seconds, what),
                                               inst.min_tick, self.desk.calendar(inst).bounds(request.use_rth),
                                               intraday=not daily)
        started = time.monotonic()
        await self._answer_time(conn, entry, len(bars), daily, bar_size.seconds)
        reply = await self._built(historical_data_frame, req_id, bars, window, daily, request.format_date,
                                  inst.time_zone)
        self._journal(entry, "bars", bars=len(bars), latency_s=round(time.monotonic() - started, 4))
        claim.release()  # before replying: a client that saw the answer must see the slot free
        conn.send_frame(reply)

    def cancel_historical(self, conn: Requester, req_id: int) -> None:
        """Drop a request still in progress and say so with IB's 162; a finished one needs nothing."""
        task = conn.pending.pop(req_id, None)
        if task is None or task.done():
            return
        task.cancel()
        self._journal(self._entry(conn, "cancel_historical", req_id, None), "cancelled")
        # Answer once the task has unwound (its open slot freed), so the 162 never races the slot count.
        task.add_done_callback(lambda _: conn.error(req_id, 162, m.TEXT_CANCELLED.format(req_id=req_id)))

    # -- head timestamp --------------------------------------------------------------------
    def head_timestamp(self, conn: Requester, fields: FieldReader) -> None:
        request = HeadTimestampRequest.read(fields)
        entry = self._entry(conn, "head_timestamp", request.req_id, request.contract)
        entry.update(what_to_show=request.what_to_show, use_rth=request.use_rth)
        claim = self._arrived()
        self._spawn(
            conn, request.req_id, lambda: self._paced(conn, request, entry, claim, self._head_timestamp)
        )

    async def _head_timestamp(
        self,
        conn: Requester,
        request: HeadTimestampRequest,
        entry: dict[str, Any],
        inst: Instrument,
        claim: Claim,
    ) -> None:
        spec, req_id = request.contract, request.req_id
        what = parse_what_to_show(request.what_to_show)
        check_format_date(request.format_date)
        self.desk.check_what(inst, what, None)
        identity = ("head", inst.con_id, spec.exchange, what, request.use_rth, request.format_date)
        claim.slot = self._admit(PacedRequest(identity, (inst.con_id, spec.exchange, what), what, None), claim, entry)
        await self._faults(conn, spec, inst.primary_exchange, req_id, entry, forced=False)
        head = self.desk.market_data.head_timestamp(inst, what, request.use_rth)
        await self._sleep(self.config.hmds.base_s * self.config.effective_latency_scale)
        conn.open_heads[req_id] = claim.slot
        claim.slot = None  # IB keeps it open until cancelHeadTimeStamp
        self._journal(entry, "timestamp", bars=0)
        conn.send(head_timestamp_message(req_id, head, request.format_date))

    def cancel_head_timestamp(self, conn: Requester, req_id: int) -> None:
        task = conn.pending.pop(req_id, None)
        if task is not None:
            task.cancel()
        slot = conn.open_heads.pop(req_id, None)
        if slot is not None:
            slot.release()
        entry = self._entry(conn, "cancel_head_timestamp", req_id, None)
        self._journal(entry, "cancelled" if task is not None or slot is not None else "unknown")

    def release_heads(self, conn: Requester) -> None:
        for slot in conn.open_heads.values():
            slot.release()
        conn.open_heads.clear()

    # -- shared steps ----------------------------------------------------------------------
    def _spawn(self, conn: Requester, req_id: int, work: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.get_running_loop().create_task(work())
        conn.pending[req_id] = task
        task.add_done_callback(
            lambda t: conn.pending.pop(req_id, None) if conn.pending.get(req_id) is t else None
        )

    def _arrived(self) -> Claim:
        """Stamp a paced request as it is read, before any other request's work can delay the stamp."""
        return Claim(*self.stamps.stamp())

    async def _paced(
        self,
        conn: Requester,
        request: HistoricalRequest | HeadTimestampRequest,
        entry: dict[str, Any],
        claim: Claim,
        answer: Callable[[Requester, Any, dict[str, Any], Instrument, Claim], Awaitable[None]],
    ) -> None:
        """Steps every paced request shares: socket-dropping faults, the contract (200), a rejection
        answered with its code once the slot is free, and the slot freed however the request ends."""
        if self._drop_or_silence(conn, request.contract, entry, silence=False):
            return
        try:
            inst = self.desk.resolve(request.contract, request.include_expired, self.clock.now())
            entry["con_id"] = inst.con_id
            await answer(conn, request, entry, inst, claim)
        except RequestRejected as rejected:
            self._journal(entry, rejected.outcome, error_code=rejected.code)
            claim.release()
            conn.error(request.req_id, rejected.code, rejected.text)
        finally:
            claim.release()

    def _admit(self, request: PacedRequest, claim: Claim, entry: dict[str, Any]) -> Slot:
        """Judge `request` at its arrival stamp; the journal keeps how far that stamp trails the receipt."""
        entry["stamp_lag_s"] = round(claim.stamp - claim.received, 6)
        verdict = self.pacing.admit(request, claim.stamp)
        if verdict is Verdict.TOO_MANY_OPEN:
            raise RequestRejected(322, m.TEXT_TOO_MANY_OPEN, "too_many_open")
        if verdict is Verdict.PACING_VIOLATION:
            raise RequestRejected(162, m.TEXT_PACING, "pacing")
        return Slot(self.pacing)

    def _drop_or_silence(
        self, conn: Requester, spec: ContractSpec, entry: dict[str, Any], silence: bool = True
    ) -> bool:
        """Socket-dropping faults (and, for contract details, silence); True when the request ends here."""
        faults = self.faults
        if faults.take_drop():
            self._journal(entry, "dropped")
            self.clients.drop_all()
            return True
        if silence and (faults.take_silence(spec.label) or self.connectivity.outage):
            self._journal(entry, "unanswered")
            return True
        return False

    async def _faults(self, conn: Requester, spec: ContractSpec, primary: str, req_id: int,
                      entry: dict[str, Any], forced: bool) -> None:  # fmt: skip
        """Silence (waits until cancelled), forced/per-symbol/random errors (raise), HMDS outage (waits)."""
        faults = self.faults
        if faults.take_silence(spec.label) or self.connectivity.outage:
            self._journal(entry, "unanswered")
            await asyncio.Future()  # never completes; a cancel or a disconnect ends it
        spec_error = faults.error_symbols.get(spec.label)
        if spec_error is None and forced:
            spec_error = faults.force_error
        if (
            spec_error is None
            and faults.random_error_rate
            and self.rng.random() < faults.random_error_rate
        ):
            spec_error = faults.random_error
        if spec_error is not None:
            code, template = resolve_error(spec_error)
            what = entry.get("what_to_show", "")
            text = template.format(
                req_id=req_id, symbol=spec.label, exchange=spec.exchange or "SMART", primary=primary,
                sec_type=spec.sec_type or "STK", what=what.title(),
            )  # fmt: skip
            raise RequestRejected(code, text, spec_error if isinstance(spec_error, str) else "error")
        await self.connectivity.hmds_available()

    async def _answer_time(self, conn: Requester, entry: dict[str, Any], bars: int, daily: bool,
                           bar_seconds: int) -> None:
        """Wait as HMDS would before answering (hmds.py); a withheld answer waits for the cancel, a
        disconnect closes the client's socket (the request ends with it)."""
        soft = daily or bar_seconds >= 60
        answer = self.hmds.plan(bars, intraday=not daily, soft=soft)
        if answer.disconnect:
            self._journal(entry, "disconnected", bars=bars)
            conn.close()
            await asyncio.Future()  # ends with the connection
        try:
            if answer.delay_s is None:
                self._journal(entry, "unanswered", bars=bars, withheld=answer.withheld)
                await asyncio.Future()  # never completes; the client's cancel or a disconnect ends it
            if answer.late:
                entry["late"] = True
            await self._sleep(answer.delay_s)
        finally:
            self.hmds.done()

    async def _sleep(self, delay: float) -> None:
        async with self.workers:
            if delay > 0:
                await asyncio.sleep(delay)

    def _entry(self, conn: Requester, kind: str, req_id: int, spec: ContractSpec | None) -> dict[str, Any]:
        return {
            "time": self.clock.now().isoformat(),
            "client_id": conn.client_id,
            "kind": kind,
            "req_id": req_id,
            "con_id": spec.con_id if spec else None,
            "symbol": spec.label if spec else None,
            "bar_size": None, "duration": None, "end": None, "what_to_show": None, "use_rth": None,
            "outcome": None, "error_code": None, "bars": 0, "latency_s": None, "stamp_lag_s": None,
        }  # fmt: skip

    def _journal(self, entry: dict[str, Any], outcome: str, **extra: Any) -> None:
        entry.update(outcome=outcome, **extra)
        self.journal.record(entry)
