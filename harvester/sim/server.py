"""The listening side: accepts connections, keeps the client-id registry and gateway-wide state
(clock, faults, journal, pacing via DataService), and fires time-based faults."""

from __future__ import annotations

import asyncio
import logging
import random

from harvester.sim.clock import SimClock, parse_instant
from harvester.sim.config import SimConfig
from harvester.sim.dataservice import DataService
from harvester.sim.faults import Faults
from harvester.sim.historical import HistoricalDesk
from harvester.sim.journal import Journal
from harvester.sim.session import Session
from harvester.sim.wire import messages as m
from harvester.sim.wire.framing import Field

log = logging.getLogger(__name__)

TICK_S = 0.05  # how often time-based faults are checked (real seconds)
STOP_TIMEOUT_S = 5.0


class SimServer:
    """One simulated gateway: the asyncio server and the state its sessions share."""

    def __init__(self, config: SimConfig, desk: HistoricalDesk, clock: SimClock, journal: Journal) -> None:
        self.config = config
        self.clock = clock
        self.journal = journal
        self.faults: Faults = config.faults
        self.rng = random.Random(config.faults.seed)
        self.sessions: set[Session] = set()
        self.clients: dict[int, Session] = {}
        self.outage = False
        self.hmds_down = False
        self._hmds_up = asyncio.Event()
        self._hmds_up.set()
        self._idle = asyncio.Event()
        self.data = DataService(self, desk)
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.Task | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.config.host, self.config.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for timer in self._timers:
            timer.cancel()
        if self._server is not None:
            self._server.close()
        self.drop_connections()
        if self.sessions:
            await asyncio.wait_for(self._idle.wait(), STOP_TIMEOUT_S)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(self, reader, writer)
        self.sessions.add(session)
        self._idle.clear()
        await session.serve()

    def claim_client_id(self, client_id: int, session: Session) -> bool:
        """False when a live connection already uses the id (IB answers 326 and closes)."""
        if client_id in self.clients and self.clients[client_id] is not session:
            return False
        self.clients[client_id] = session
        return True

    def forget(self, session: Session) -> None:
        self.sessions.discard(session)
        if not self.sessions:
            self._idle.set()
        if session.client_id is not None and self.clients.get(session.client_id) is session:
            del self.clients[session.client_id]

    def drop_connections(self) -> None:
        """Close every client socket, as a gateway restart or network cut would."""
        for session in list(self.sessions):
            session.close()

    def broadcast(self, fields: list[Field]) -> None:
        for session in list(self.sessions):
            if session.ready:
                session.send(fields)

    def fire_outage(self, seconds: float) -> None:
        """1100 now, 1102 after `seconds` (real); data requests in between get no reply."""
        self.outage = True
        self.broadcast(m.error(-1, 1100, m.TEXT_CONNECTIVITY_LOST))
        self._later(seconds, self._end_outage)

    def _end_outage(self) -> None:
        self.outage = False
        self.broadcast(m.error(-1, 1102, m.TEXT_CONNECTIVITY_RESTORED))

    def fire_hmds_outage(self, seconds: float) -> None:
        """2105 now, 2106 after `seconds` (real); historical answers wait for the farm to return."""
        self.hmds_down = True
        self._hmds_up.clear()
        self.broadcast(m.error(-1, 2105, m.TEXT_HMDS_BROKEN))
        self._later(seconds, self._end_hmds_outage)

    def _end_hmds_outage(self) -> None:
        self.hmds_down = False
        self._hmds_up.set()
        self.broadcast(m.error(-1, 2106, m.TEXT_HMDS_OK))

    async def hmds_available(self) -> None:
        await self._hmds_up.wait()

    def _later(self, seconds: float, action) -> None:
        loop = asyncio.get_running_loop()
        handle = loop.call_later(max(0.0, seconds), lambda: (self._timers.discard(handle), action()))
        self._timers.add(handle)

    async def _tick(self) -> None:
        """Fire the faults scheduled on the simulated clock (drop_at, outage_at, hmds_outage_at)."""
        while True:
            now = self.clock.now()
            faults = self.faults
            if faults.drop_at is not None and now >= parse_instant(faults.drop_at):
                faults.drop_at = None
                self.drop_connections()
            if faults.outage_at is not None and now >= parse_instant(faults.outage_at):
                faults.outage_at = None
                self.fire_outage(faults.outage_seconds)
            if faults.hmds_outage_at is not None and now >= parse_instant(faults.hmds_outage_at):
                faults.hmds_outage_at = None
                self.fire_hmds_outage(faults.hmds_outage_seconds)
            await asyncio.sleep(TICK_S)
