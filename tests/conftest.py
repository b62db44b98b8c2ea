"""Shared fixtures: a simulated gateway in its own thread, and a connected ib_insync client on it.

def test_x(ib, sim_gateway): ...            # defaults: SIM_NOW, pacing ×0.01, latency ×0.001
def test_y(make_gateway): gw = make_gateway(pacing_scale=1.0, faults=Faults(...))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from ib_insync import IB

from harvester.ib.ledger import LEDGER_DIR_ENV
from harvester.sim import SimConfig, SimGateway
from tests.helpers.gateways import FAST, SIM_NOW, ensure_event_loop, next_client_id


@pytest.fixture(autouse=True, scope="session")
def pacing_ledger_dir(tmp_path_factory) -> Path:
    """Every harvest of the suite, in this process or a child, shares one pacing ledger of its own, never
    the user's (`ib.ledger`: per gateway, so tests' gateways on their own ports do not meet)."""
    path = tmp_path_factory.mktemp("pacing-ledger")
    os.environ[LEDGER_DIR_ENV] = str(path)
    return path


@pytest.fixture(autouse=True)
def main_thread_event_loop() -> None:
    """ib_insync's sync API needs a current loop; tests that used asyncio.run() leave none behind."""
    ensure_event_loop()


@pytest.fixture
def make_gateway() -> Iterator[Callable[..., SimGateway]]:
    """Factory: `make_gateway(**SimConfig fields)` starts a thread-run gateway, stopped at teardown."""
    running = []

    def make(**overrides) -> SimGateway:
        gateway = SimGateway(SimConfig(**{**FAST, **overrides}))
        context = gateway.running_in_thread()
        context.__enter__()
        running.append(context)
        return gateway

    yield make
    for context in reversed(running):
        context.__exit__(None, None, None)


@pytest.fixture
def sim_now() -> datetime:
    """The simulated "now" every default gateway starts at."""
    return datetime.fromisoformat(SIM_NOW)


@pytest.fixture
def new_client_id() -> Callable[[], int]:
    """Call it for a client id no other test in this process uses."""
    return next_client_id


@pytest.fixture
def sim_gateway(make_gateway) -> SimGateway:
    return make_gateway()


@pytest.fixture
def connect(make_gateway) -> Iterator[Callable[[SimGateway], IB]]:
    """Factory: `connect(gateway)` is an ib_insync client on it, disconnected before the gateways stop."""
    clients = []

    def make(gateway: SimGateway) -> IB:
        client = IB()
        client.connect("127.0.0.1", gateway.port, clientId=next_client_id(), timeout=5)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.disconnect()


@pytest.fixture
def ib(sim_gateway: SimGateway) -> Iterator[IB]:
    ensure_event_loop()
    client = IB()
    client.connect("127.0.0.1", sim_gateway.port, clientId=next_client_id(), timeout=10)
    yield client
    client.disconnect()
