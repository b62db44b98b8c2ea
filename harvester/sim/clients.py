"""Who is connected to one gateway: live connections and the client ids they hold.

IB allows one connection per client id (a second gets 326, docs/ib-rules.md §8.1), tells every
client about connectivity changes, and a gateway restart or network cut closes every socket; all
three happen here.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from harvester.sim.wire.framing import Field


class Client(Protocol):
    """What the registry needs of a connection."""

    client_id: int | None
    ready: bool

    def send(self, fields: list[Field]) -> None: ...

    def close(self) -> None: ...


class ClientRegistry:
    """Live connections of one gateway, by socket and by client id."""

    def __init__(self) -> None:
        self._live: set[Client] = set()
        self._by_id: dict[int, Client] = {}
        self._idle = asyncio.Event()

    def add(self, client: Client) -> None:
        self._live.add(client)
        self._idle.clear()

    def claim(self, client_id: int, client: Client) -> bool:
        """False when a live connection already uses the id (IB answers 326 and closes)."""
        if client_id in self._by_id and self._by_id[client_id] is not client:
            return False
        self._by_id[client_id] = client
        return True

    def forget(self, client: Client) -> None:
        """The connection has ended: drop it and free its client id."""
        self._live.discard(client)
        if not self._live:
            self._idle.set()
        if client.client_id is not None and self._by_id.get(client.client_id) is client:
            del self._by_id[client.client_id]

    def client_ids(self) -> list[int]:
        return sorted(self._by_id)

    def broadcast(self, fields: list[Field]) -> None:
        """Send to every connection past startApi (notices such as 1100 or 2105)."""
        for client in list(self._live):
            if client.ready:
                client.send(fields)

    def drop_all(self) -> None:
        """Close every client socket, as a gateway restart or network cut would."""
        for client in list(self._live):
            client.close()

    async def wait_until_empty(self, timeout: float) -> None:
        """Return once every connection has ended (TimeoutError after `timeout` seconds)."""
        if self._live:
            await asyncio.wait_for(self._idle.wait(), timeout)
