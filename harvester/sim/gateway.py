"""SimGateway: the public face of the simulator, usable from async code, sync code and the CLI.

    async with SimGateway(cfg) as gw: ...                  # in the caller's event loop
    with SimGateway(cfg).running_in_thread() as gw: ...    # own loop in a daemon thread

Fault and clock changes are thread-safe: plain attribute writes on `gw.faults`, `gw.clock.set(...)`,
and the `drop_connections` / `fire_*` methods hop onto the gateway's loop when called from elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Self

from harvester.sim.clock import SimClock
from harvester.sim.faults import Faults
from harvester.sim.historical import HistoricalDesk
from harvester.sim.journal import Journal
from harvester.sim.market.actions import CorporateActions
from harvester.sim.market.marketdata import MarketData
from harvester.sim.market.replay import ReplayBook
from harvester.sim.market.securities import SecuritiesMaster
from harvester.sim.options import SimConfig
from harvester.sim.server import SimServer

START_TIMEOUT_S = 30.0


class SimGateway:
    """A simulated IB Gateway on loopback (TWS API server version 176)."""

    def __init__(self, config: SimConfig | None = None, **overrides) -> None:
        config = config or SimConfig()
        if overrides:
            config = SimConfig(**{**config.__dict__, **overrides})
        self.config = config
        self.clock = SimClock(config.now)
        self.journal = Journal(config.journal_path)
        self._server: SimServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> Self:
        """Load reference data and start listening; `port` is valid afterwards."""
        config = self.config
        master = SecuritiesMaster.load(config.contracts)
        replay = ReplayBook.load(config.replay) if config.replay is not None else None
        actions = CorporateActions.none()
        if config.actions is not False:
            actions = CorporateActions.load(None if config.actions is True else config.actions, master)
        master = actions.apply_to(master)
        desk = HistoricalDesk(master, MarketData(master, replay, actions, config.revise_latest))
        self._loop = asyncio.get_running_loop()
        self._server = SimServer(self.config, desk, self.clock, self.journal)
        await self._server.start()
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
        self.journal.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def running_in_thread(self) -> Iterator[Self]:
        """Run the gateway on its own event loop in a daemon thread for the `with` block."""
        started = threading.Event()
        failure: list[BaseException] = []
        stop_requested: asyncio.Event | None = None

        async def main() -> None:
            nonlocal stop_requested
            stop_requested = asyncio.Event()
            try:
                await self.start()
            except Exception as exc:  # noqa: BLE001 - re-raised in the caller thread
                failure.append(exc)
                started.set()
                return
            started.set()
            try:
                await stop_requested.wait()
            finally:
                await self.stop()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), name="sim-gateway", daemon=True)
        self._thread.start()
        if not started.wait(START_TIMEOUT_S):
            raise TimeoutError("simulated gateway did not start")
        if failure:
            raise failure[0]
        try:
            yield self
        finally:
            self._loop.call_soon_threadsafe(stop_requested.set)
            self._thread.join(START_TIMEOUT_S)

    # -- state -------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._require().port

    @property
    def faults(self) -> Faults:
        return self.config.faults if self._server is None else self._server.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self.config.faults = faults
        if self._server is not None:
            self._server.faults = faults

    @property
    def connected_clients(self) -> list[int]:
        """Client ids of the live API connections."""
        return self._server.clients.client_ids() if self._server else []

    @property
    def open_requests(self) -> int:
        """Requests holding one of the 50 open slots (historical in progress, uncancelled head timestamps)."""
        return self._require().data.pacing.open_requests

    # -- faults fired now --------------------------------------------------------------------
    def drop_connections(self) -> None:
        """Close every client socket now."""
        self._on_loop(lambda: self._require().clients.drop_all())

    def fire_outage(self, seconds: float) -> None:
        """Send 1100 now and 1102 after `seconds`."""
        self._on_loop(lambda: self._require().connectivity.fire_outage(seconds))

    def fire_hmds_outage(self, seconds: float) -> None:
        """Send 2105 now and 2106 after `seconds`; historical answers wait meanwhile."""
        self._on_loop(lambda: self._require().connectivity.fire_hmds_outage(seconds))

    def _on_loop(self, action: Callable[[], None]) -> None:
        self._require()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            action()
        else:
            self._loop.call_soon_threadsafe(action)

    def _require(self) -> SimServer:
        if self._server is None:
            raise RuntimeError("the simulated gateway is not running")
        return self._server
