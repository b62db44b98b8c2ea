"""IB's connectivity as clients see it: the 1100/1102 outage and the HMDS farm's 2105/2106.

Each outage is announced to every client at once and ends after a timer in real seconds; while it
lasts, data requests go unanswered (1100) or historical answers wait for the farm (2105). See
docs/ib-rules.md §6.4 and docs/wire-protocol.md §9.3.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from harvester.sim.clients import ClientRegistry
from harvester.sim.wire import messages as m


class Connectivity:
    """Outage state of one gateway, and the timers that end the outages."""

    def __init__(self, clients: ClientRegistry) -> None:
        self._clients = clients
        self.outage = False
        self.hmds_down = False
        self._hmds_up = asyncio.Event()
        self._hmds_up.set()
        self._timers: set[asyncio.TimerHandle] = set()

    def fire_outage(self, seconds: float) -> None:
        """1100 now, 1102 after `seconds` (real); data requests in between get no reply."""
        self.outage = True
        self._clients.broadcast(m.error(-1, 1100, m.TEXT_CONNECTIVITY_LOST))
        self._later(seconds, self._end_outage)

    def _end_outage(self) -> None:
        self.outage = False
        self._clients.broadcast(m.error(-1, 1102, m.TEXT_CONNECTIVITY_RESTORED))

    def fire_hmds_outage(self, seconds: float) -> None:
        """2105 now, 2106 after `seconds` (real); historical answers wait for the farm to return."""
        self.hmds_down = True
        self._hmds_up.clear()
        self._clients.broadcast(m.error(-1, 2105, m.TEXT_HMDS_BROKEN))
        self._later(seconds, self._end_hmds_outage)

    def _end_hmds_outage(self) -> None:
        self.hmds_down = False
        self._hmds_up.set()
        self._clients.broadcast(m.error(-1, 2106, m.TEXT_HMDS_OK))

    async def hmds_available(self) -> None:
        await self._hmds_up.wait()

    def cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()

    def _later(self, seconds: float, action: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        handle = loop.call_later(max(0.0, seconds), lambda: (self._timers.discard(handle), action()))
        self._timers.add(handle)
