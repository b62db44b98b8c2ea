"""The only door to IB: connect, qualify, current time, head timestamps and bars, as typed outcomes.

This is the one module that imports ib_insync. ib_insync hides what matters to a harvester: an error
or a timeout both end a request with an empty `BarDataList`, head-timestamp requests have no timeout
and hold an open slot until cancelled, and a duplicate client id makes `connect` wait its whole timeout.
So requests are issued with the library's own request plumbing (`client.getReqId`, `wrapper.startReq`)
to know the reqId up front, errors are matched to requests through `errorEvent`, and timeouts are ours.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
from ib_insync import IB, Contract

from harvester.calendar import TradingCalendar, calendar_for
from harvester.ib.bars import FIELDS_PER_BAR, warehouse_bars
from harvester.ibrules import classify_error
from harvester.model import BarRequest, ContractSpec, Outcome, SeriesKey

CLIENT_ID_IN_USE = 326
CONNECTIVITY_CODES = (1100, 1101, 1102)
UNKNOWN_CONTRACT = "unknown contract (no security definition)"
HISTORICAL_DATA = 17  # incoming message id: reqId, start, end, count, then the bars' fields (server v176)

# ib_insync logs every IB error at ERROR level (printed by logging's last-resort handler when the app
# configures none); every one of them reaches the caller here as a typed outcome instead. Only our own
# clients are quietened: their loggers are swapped for children of this one, so a notebook's own ib_insync
# clients (the "ib_insync" loggers) keep logging as their user set them.
QUIET_LOGGER = logging.getLogger("harvester.ib.ib_insync")
QUIET_LOGGER.setLevel(logging.CRITICAL)


def _quieten(ib: IB) -> IB:
    """`ib` logging through QUIET_LOGGER's children instead of the process-wide "ib_insync" loggers."""
    ib._logger = QUIET_LOGGER.getChild("ib")
    ib.wrapper._logger = QUIET_LOGGER.getChild("wrapper")
    ib.client._logger = QUIET_LOGGER.getChild("client")
    ib.client.decoder.logger = QUIET_LOGGER.getChild("decoder")
    return ib


class SourceError(Exception):
    """A failure talking to the gateway that the caller must report, not retry blindly."""


class GatewayUnreachable(SourceError):
    """Nothing (or nothing speaking the TWS API) answers at host:port."""


class ClientIdInUse(SourceError):
    """The gateway refused the client id (error 326): another API client is connected with it."""


@dataclass(frozen=True)
class ContractInfo:
    """A qualified contract: what requests need (conId + exchange) and what the warehouse stores."""

    con_id: int
    symbol: str
    sec_type: str
    exchange: str
    primary_exchange: str
    currency: str
    long_name: str = ""
    time_zone: str = ""
    trading_hours: str = ""
    liquid_hours: str = ""
    local_symbol: str = ""
    last_trade_date: str = ""  # futures: IB's lastTradeDateOrContractMonth, YYYYMMDD once qualified
    multiplier: str = ""

    @property
    def label(self) -> str:
        """IB's local symbol where it names the instrument better than the symbol (EUR.USD, ESM4)."""
        return self.local_symbol or self.symbol

    @property
    def calendar(self) -> TradingCalendar:
        return calendar_for(self)

    def ib_contract(self) -> Contract:
        return _ib_contract(self)


@dataclass(frozen=True)
class QualifyResult:
    """Qualified specs, and the rest by symbol with the reason (unknown, ambiguous, no answer)."""

    contracts: dict[ContractSpec, ContractInfo]
    failures: dict[str, str]


@dataclass(frozen=True)
class FetchResult:
    """One historical request's answer. `bars` holds warehouse rows (`ib.bars`) when outcome is BARS."""

    outcome: Outcome
    bars: pd.DataFrame | None
    error_code: int | None
    error_text: str
    latency_s: float


@dataclass(frozen=True)
class Sent:
    """A request on the wire: its reqId, the library's future for the answer, and when it left;
    for bars, the series and the calendar that date them."""

    req_id: int
    future: asyncio.Future
    started: float
    series: SeriesKey | None = None
    calendar: TradingCalendar | None = None
    unfinished_from: datetime | None = None  # ADJUSTED_LAST: IB also answers the bar in progress


@dataclass(frozen=True)
class HeadResult:
    """One head-timestamp answer; `head` is UTC-aware when outcome is BARS."""

    outcome: Outcome
    head: datetime | None
    error_code: int | None
    error_text: str
    latency_s: float


def ib_end_time(end: datetime) -> str:
    """IB's explicit-UTC spelling `yyyymmdd-hh:mm:ss` (no zone-less string: that draws warning 2174)."""
    return end.astimezone(UTC).strftime("%Y%m%d-%H:%M:%S")


# How the simulator names its account (harvester/sim/options.py; docs/wire-protocol.md): a protocol fact
# both sides state, as they both state IB's error codes, so the simulator imports nothing of the harvester.
SIMULATOR_ACCOUNT_PREFIX = "DUSIM"


class IBSource:
    """One API connection to a gateway. Not thread-safe: use it from one event loop."""

    def __init__(self, host: str, port: int, client_id: int, *, connect_timeout: float = 10.0):
        self.host, self.port, self.client_id = host, port, client_id
        self.connect_timeout = connect_timeout
        self.ib = _quieten(IB())
        self.account = ""
        self._errors: dict[int, tuple[int, str]] = {}
        self._client_id_refused = asyncio.Event()
        self.connectivity_listeners: list[Callable[[int], None]] = []
        self.disconnect_listeners: list[Callable[[], None]] = []
        self.ib.errorEvent += self._on_error
        self.ib.disconnectedEvent += self._on_disconnected
        self._throttling = False
        self.ib.client.throttleStart += lambda: setattr(self, "_throttling", True)
        self.ib.client.throttleEnd += lambda: setattr(self, "_throttling", False)
        self._bar_fields: dict[int, list[str]] = {}
        self._decode_bars = self.ib.client.decoder.handlers[HISTORICAL_DATA]
        self.ib.client.decoder.handlers[HISTORICAL_DATA] = self._on_historical_data

    @property
    def simulated(self) -> bool:
        """The gateway is harvester's simulator: its account says so (IB's paper accounts are DU + digits)."""
        return self.account.startswith(SIMULATOR_ACCOUNT_PREFIX)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def is_connected(self) -> bool:
        return self.ib.isConnected()

    def is_throttling(self) -> bool:
        """ib_insync is holding messages back (over 45/s): anything sent now would leave late."""
        return self._throttling

    async def connect(self) -> None:
        """Connect and sync; GatewayUnreachable / ClientIdInUse instead of a bare timeout."""
        self._client_id_refused = asyncio.Event()
        connecting = asyncio.ensure_future(
            self.ib.connectAsync(self.host, self.port, self.client_id, timeout=self.connect_timeout,
                                 readonly=True)
        )
        refused = asyncio.ensure_future(self._client_id_refused.wait())
        try:
            await asyncio.wait({connecting, refused}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            refused.cancel()
        if self._client_id_refused.is_set():
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
            self.ib.disconnect()
            raise ClientIdInUse(
                f"client id {self.client_id} is already in use at {self.address}; "
                "pick another with --client-id or HARVEST_CLIENT_ID"
            )
        try:
            connecting.result()
        except (TimeoutError, OSError, ConnectionError) as exc:
            self.ib.disconnect()
            reason = "no API handshake" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            raise GatewayUnreachable(f"cannot reach an IB gateway at {self.address}: {reason}") from None
        accounts = self.ib.client.getAccounts()
        self.account = accounts[0] if accounts else ""

    def disconnect(self) -> None:
        self.ib.disconnect()

    async def current_time(self) -> datetime:
        """The gateway's "now" (UTC-aware): plans use it, never the local clock."""
        now = await asyncio.wait_for(self.ib.reqCurrentTimeAsync(), self.connect_timeout)
        return now.astimezone(UTC)

    async def qualify(
        self, specs: Sequence[ContractSpec], *, batch_size: int = 50, timeout: float = 30.0
    ) -> QualifyResult:
        """Contract details for each spec, `batch_size` at a time; unknown/ambiguous reported by label.

        A continuous future stands for its expiries up to IB's front month: its own details name the
        front (CONTFUT qualifies to the front contract's conId), and a second round trip with
        includeExpired lists the chain, expired contracts included."""
        contracts: dict[ContractSpec, tuple[ContractInfo, ...]] = {}
        failures: dict[str, str] = {}
        for first in range(0, len(specs), batch_size):
            batch = specs[first : first + batch_size]
            answers = await asyncio.gather(*(self._details(s, timeout) for s in batch),
                                           return_exceptions=True)
            for spec, details in zip(batch, answers, strict=True):
                if isinstance(details, BaseException):
                    failures[spec.label] = _describe_failure(details)
                elif not details:
                    failures[spec.label] = UNKNOWN_CONTRACT
                elif len(details) > 1 and not _chain(spec, details):
                    where = ", ".join(sorted({d.contract.primaryExchange or d.contract.multiplier for d in details}))
                    hint = "primary_exchange" if spec.sec_type == "STK" else "multiplier"
                    failures[spec.label] = f"ambiguous contract ({len(details)} matches: {where}); set {hint}"
                else:
                    contracts[spec] = tuple(_contract_info(d, spec.exchange) for d in details)
        return QualifyResult(contracts, failures)

    async def _details(self, spec: ContractSpec, timeout: float) -> list:
        details = await asyncio.wait_for(self.ib.reqContractDetailsAsync(_ib_contract(spec)), timeout)
        if spec.sec_type != "CONTFUT" or len(details) != 1:
            return details
        front = details[0].contract
        chain = Contract(symbol=spec.symbol, secType="FUT", exchange=front.exchange, currency=front.currency,
                         multiplier=front.multiplier, includeExpired=True)
        listed = await asyncio.wait_for(self.ib.reqContractDetailsAsync(chain), timeout)
        last = front.lastTradeDateOrContractMonth
        due = [d for d in listed if d.contract.lastTradeDateOrContractMonth <= last]
        return sorted(due, key=lambda d: d.contract.lastTradeDateOrContractMonth) or details

    def send_head(self, contract: ContractInfo, what_to_show: str, use_rth: bool) -> Sent:
        """Put a reqHeadTimeStamp (formatDate=2 → UTC) on the wire now; finish it with `finish_head`.

        Sending synchronously lets the caller stamp its pacer with the real send time.
        Raises ConnectionError when not connected."""
        req_id = self.ib.client.getReqId()
        sent = Sent(req_id, self.ib.wrapper.startReq(req_id, contract.ib_contract()), time.monotonic())
        self.ib.client.reqHeadTimeStamp(req_id, contract.ib_contract(), what_to_show, use_rth, 2)
        return sent

    async def finish_head(self, sent: Sent, *, timeout: float) -> HeadResult:
        """The head timestamp's answer. Always cancelled at once: it holds an open slot until then."""
        try:
            value, outcome = await self._await(sent.future, timeout)
        finally:
            if self.is_connected():
                self.ib.client.cancelHeadTimeStamp(sent.req_id)
        code, text = self._errors.pop(sent.req_id, (None, ""))
        latency = time.monotonic() - sent.started
        if outcome is None and code is not None:
            outcome = classify_error(code, text) or Outcome.ERROR
        if outcome is None and isinstance(value, datetime):
            return HeadResult(Outcome.BARS, value.astimezone(UTC), None, "", latency)
        return HeadResult(outcome or Outcome.ERROR, None, code, text or _no_answer(outcome), latency)

    async def head_timestamp(
        self, contract: ContractInfo, what_to_show: str, use_rth: bool, *, timeout: float
    ) -> HeadResult:
        """Earliest available bar of (contract, whatToShow, RTH), as a typed outcome."""
        return await self.finish_head(self.send_head(contract, what_to_show, use_rth), timeout=timeout)

    def send_bars(self, contract: ContractInfo, request: BarRequest) -> Sent:
        """Put a reqHistoricalData (formatDate=2, explicit UTC end) on the wire now; see `finish_bars`.

        Raises ConnectionError when not connected."""
        series = request.series
        req_id = self.ib.client.getReqId()
        future = self.ib.wrapper.startReq(req_id, contract.ib_contract())
        adjusted = series.what_to_show == "ADJUSTED_LAST"
        end = "" if adjusted else ib_end_time(request.end)
        sent = Sent(req_id, future, time.monotonic(), series, contract.calendar, request.end if adjusted else None)
        self._bar_fields[req_id] = []
        try:
            self.ib.client.reqHistoricalData(
                req_id, contract.ib_contract(), end, request.duration, series.bar_size,
                series.what_to_show, series.use_rth, 2, False, [],
            )
        except ConnectionError:
            self._bar_fields.pop(req_id, None)
            raise
        return sent

    async def finish_bars(self, sent: Sent, *, timeout: float) -> FetchResult:
        """The answer as a typed outcome; a timed-out request is cancelled at the gateway.

        An empty answer is EMPTY only when IB said so ("HMDS query returned no data") or ended the
        request cleanly with zero bars; a timeout or any error is never EMPTY.
        """
        _, outcome = await self._await(sent.future, timeout)
        if outcome is Outcome.TIMEOUT and self.is_connected():
            self.ib.client.cancelHistoricalData(sent.req_id)
        code, text = self._errors.pop(sent.req_id, (None, ""))
        latency = time.monotonic() - sent.started
        if outcome is None and code is not None:
            outcome = classify_error(code, text) or Outcome.ERROR
        fields = self._bar_fields.pop(sent.req_id, [])
        if outcome is None:
            outcome = Outcome.BARS if fields else Outcome.EMPTY
        frame = warehouse_bars(fields, sent.series, sent.calendar) if outcome is Outcome.BARS else None
        if frame is not None and sent.unfinished_from is not None:  # never stored as final, never covered
            frame = frame[frame["ts"] < sent.unfinished_from].reset_index(drop=True)
        return FetchResult(outcome, frame, code, text or _no_answer(outcome), latency)

    async def historical_bars(self, contract: ContractInfo, request: BarRequest, *, timeout: float) -> FetchResult:
        """One historical request, sent and answered, as a typed outcome."""
        return await self.finish_bars(self.send_bars(contract, request), timeout=timeout)

    async def _await(self, future: asyncio.Future, timeout: float) -> tuple[object, Outcome | None]:
        """(result, None) when the request ended; (None, TIMEOUT | DISCONNECTED) otherwise."""
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout), None
        except TimeoutError:
            return None, Outcome.TIMEOUT
        except ConnectionError:
            return None, Outcome.DISCONNECTED

    def _on_historical_data(self, fields: list[str]) -> None:
        """Our bar requests skip ib_insync's BarData objects (most of the client's CPU on big answers):
        their fields are kept as text and parsed column-wise by `ib.bars`. Others decode as usual."""
        req_id = int(fields[1])
        kept = self._bar_fields.get(req_id)
        if kept is None:  # not ours, or ours but already given up (timeout): the library's own path
            self._decode_bars(fields)
            return
        kept.extend(fields[5 : 5 + FIELDS_PER_BAR * int(fields[4])])
        self.ib.wrapper.historicalDataEnd(req_id, fields[2], fields[3])

    def _on_error(self, req_id: int, code: int, text: str, _contract: object) -> None:
        if code == CLIENT_ID_IN_USE:
            self._client_id_refused.set()
        elif code in CONNECTIVITY_CODES:
            for listener in list(self.connectivity_listeners):
                listener(code)
        elif req_id >= 0 and classify_error(code, text) is not None:
            self._errors[req_id] = (code, text)

    def _on_disconnected(self) -> None:
        self._throttling = False  # the library drops its queue with the socket; no throttleEnd follows
        for listener in list(self.disconnect_listeners):
            listener()


def _ib_contract(c: ContractSpec | ContractInfo) -> Contract:
    """The fields IB matches a contract on; a universe row and a qualified contract both carry them.
    Futures always ask with includeExpired: an expired contract's history is reachable for two years."""
    return Contract(
        conId=c.con_id,
        symbol=c.symbol,
        secType=c.sec_type,
        lastTradeDateOrContractMonth=c.last_trade_date,
        multiplier=c.multiplier,
        exchange=c.exchange,
        primaryExchange=c.primary_exchange,
        currency=c.currency,
        includeExpired=c.sec_type == "FUT",
    )


def _chain(spec: ContractSpec, details: list) -> bool:
    """A continuous future's answer: its expiries (several are expected), not an ambiguous description."""
    return spec.sec_type == "CONTFUT" and all(d.contract.secType == "FUT" for d in details)


def _contract_info(details, exchange: str) -> ContractInfo:
    """A contract from IB's details. A continuous future's details describe its front month, which is
    harvested as the future it is; a SMART-routed stock keeps SMART."""
    c = details.contract
    futures = c.secType in ("FUT", "CONTFUT")
    return ContractInfo(
        con_id=c.conId,
        symbol=c.symbol,
        sec_type="FUT" if futures else c.secType,
        exchange=c.exchange if futures or not exchange else exchange,
        primary_exchange=c.primaryExchange,
        currency=c.currency,
        long_name=details.longName,
        time_zone=details.timeZoneId,
        trading_hours=details.tradingHours,
        liquid_hours=details.liquidHours,
        local_symbol=c.localSymbol,
        last_trade_date=c.lastTradeDateOrContractMonth,
        multiplier=c.multiplier,
    )


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer to the contract-details request"
    if isinstance(exc, ConnectionError):
        return "disconnected while qualifying"
    return f"qualification failed: {exc}"


def _no_answer(outcome: Outcome | None) -> str:
    if outcome is Outcome.TIMEOUT:
        return "no answer before the timeout (request cancelled)"
    if outcome is Outcome.DISCONNECTED:
        return "connection lost before the answer"
    return ""
