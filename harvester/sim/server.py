"""The listening side: accepts connections, owns the gateway-wide state they share, and fires the
faults scheduled on the simulated clock."""

from __future__ import annotations

import asyncio

from harvester.sim.clients import ClientRegistry
from harvester.sim.clock import SimClock, parse_instant
from harvester.sim.connection import ClientConnection, GatewayContext
from harvester.sim.connectivity import Connectivity
from harvester.sim.dataservice import DataService
from harvester.sim.faults import Faults
from harvester.sim.historical import HistoricalDesk
from harvester.sim.journal import Journal
from harvester.sim.options import SimConfig

TICK_S = 0.05  # how often time-based faults are checked (real seconds)
STOP_TIMEOUT_S = 5.0


class SimServer:
    """One simulated gateway: the asyncio server and the state its connections share."""

    def __init__(self, config: SimConfig, desk: HistoricalDesk, clock: SimClock, journal: Journal) -> None:
        self.config = config
        self.clock = clock
        self.clients = ClientRegistry()
        self.connectivity = Connectivity(self.clients)
        self.data = DataService(desk, config, clock, journal, self.clients, self.connectivity)
        self._context = GatewayContext(clock, config.account, self.clients, self.connectivity, self.data)
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.Task | None = None
        self.port = 0

    @property
    def faults(self) -> Faults:
        return self.data.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self.data.faults = faults

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.config.host, self.config.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        self.connectivity.cancel_timers()
        if self._server is not None:
            self._server.close()
        self.clients.drop_all()
        await self.clients.wait_until_empty(STOP_TIMEOUT_S)
        if self._server is not None:
            await self._server.wait_closed()
        self.data.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = ClientConnection(self._context, reader, writer)
        self.clients.add(connection)
        await connection.serve()

    async def _tick(self) -> None:
        """Fire the faults scheduled on the simulated clock (drop_at, outage_at, hmds_outage_at)."""
        while True:
            now = self.clock.now()
            faults = self.faults
            if faults.drop_at is not None and now >= parse_instant(faults.drop_at):
                faults.drop_at = None
                self.clients.drop_all()
            if faults.outage_at is not None and now >= parse_instant(faults.outage_at):
                faults.outage_at = None
                self.connectivity.fire_outage(faults.outage_seconds)
            if faults.hmds_outage_at is not None and now >= parse_instant(faults.hmds_outage_at):
                faults.hmds_outage_at = None
                self.connectivity.fire_hmds_outage(faults.hmds_outage_seconds)
            await asyncio.sleep(TICK_S)
