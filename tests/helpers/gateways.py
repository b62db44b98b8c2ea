"""The simulated gateway every test starts from: one "now", compressed pacing, unique client ids."""

from __future__ import annotations

import asyncio
import itertools

SIM_NOW = "2024-06-14T20:00:00+00:00"  # a Friday, 16:00 New York: the session just closed
PACING_SCALE = 0.01  # the gateway's and the harvester's: they must agree
FAST = {"now": SIM_NOW, "pacing_scale": PACING_SCALE, "latency_scale": 0.001}

_client_ids = itertools.count(101)


def next_client_id() -> int:
    """A client id no other test in this process uses."""
    return next(_client_ids)


def ensure_event_loop() -> None:
    """ib_insync's sync API needs a main-thread loop; an earlier `asyncio.run` leaves none set."""
    try:
        asyncio.get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
