"""IBSource against the simulated gateway: real ib_insync over loopback, every outcome typed."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime

import pytest

from harvester.ib.client import ClientIdInUse, GatewayUnreachable, IBSource, ib_end_time
from harvester.model import BarRequest, ContractSpec, Outcome, SeriesKey
from harvester.sim import Faults
from tests.helpers.gateways import SIM_NOW, next_client_id

END = datetime(2024, 6, 14, 20, 0, tzinfo=UTC)


def run(coro):
    return asyncio.run(coro)


async def _connected(gw, **kwargs) -> IBSource:
    source = IBSource("127.0.0.1", gw.port, next_client_id(), **kwargs)
    await source.connect()
    return source


async def _aapl(source: IBSource):
    result = await source.qualify([ContractSpec("AAPL")])
    (aapl,) = result.contracts[ContractSpec("AAPL")]
    return aapl


def _daily(info, end=END, duration="5 D") -> BarRequest:
    key = SeriesKey(info.con_id, "1 day", "TRADES", True)
    return BarRequest(key, end, end, duration, 5, symbol=info.symbol)


def test_end_time_is_explicit_utc():
    assert ib_end_time(datetime(2024, 6, 14, 20, 0, tzinfo=UTC)) == "20240614-20:00:00"


def test_connect_and_now_comes_from_the_gateway(sim_gateway):
    async def scenario():
        source = await _connected(sim_gateway)
        try:
            return (source.account, source.simulated), await source.current_time()
        finally:
            source.disconnect()

    account, now = run(scenario())
    assert account == ("DUSIM0001", True), "the simulator says what it is by its account"
    assert now.tzinfo is not None
    assert abs((now - datetime.fromisoformat(SIM_NOW)).total_seconds()) < 60


def test_qualify_reports_unknown_and_ambiguous_by_name(sim_gateway):
    specs = [ContractSpec("AAPL"), ContractSpec("NOPEX"), ContractSpec("DUAL"),
             ContractSpec("DUAL", primary_exchange="NYSE", line=4)]

    async def scenario():
        source = await _connected(sim_gateway)
        try:
            return await source.qualify(specs, batch_size=2)
        finally:
            source.disconnect()

    result = run(scenario())
    assert set(result.contracts) == {specs[0], specs[3]}
    (aapl,) = result.contracts[specs[0]]
    assert aapl.con_id > 0 and aapl.primary_exchange == "NASDAQ" and aapl.time_zone
    assert "unknown" in result.failures["NOPEX"]
    assert "ambiguous" in result.failures["DUAL"]


def test_head_timestamp_is_utc_and_cancelled_at_once(sim_gateway):
    async def scenario():
        source = await _connected(sim_gateway)
        try:
            info = await _aapl(source)
            return await source.head_timestamp(info, "TRADES", True, timeout=10)
        finally:
            source.disconnect()

    head = run(scenario())
    assert head.outcome is Outcome.BARS
    assert head.head.tzinfo is not None and head.head < END
    assert sim_gateway.journal.wait_for(
        lambda j: j.count_where(kind="cancel_head_timestamp", outcome="cancelled") == 1, timeout=10)
    assert sim_gateway.journal.count_where(kind="head_timestamp") == 1


def test_bars_and_verified_empty(sim_gateway):
    async def scenario():
        source = await _connected(sim_gateway)
        try:
            info = await _aapl(source)
            bars = await source.historical_bars(info, _daily(info), timeout=10)
            before_listing = datetime(1971, 1, 8, 21, tzinfo=UTC)
            empty = await source.historical_bars(info, _daily(info, before_listing), timeout=10)
            return bars, empty
        finally:
            source.disconnect()

    bars, empty = run(scenario())
    assert bars.outcome is Outcome.BARS
    assert len(bars.bars) == 5
    assert list(bars.bars.columns) == ["ts", "session_date", "open", "high", "low", "close", "volume", "wap",
                                       "bar_count"]  # already in the warehouse's form
    assert empty.outcome is Outcome.EMPTY and empty.bars is None
    assert "no data" in empty.error_text


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Faults(force_error="pacing"), Outcome.PACING),
        (Faults(error_symbols={"AAPL": "no_permissions"}), Outcome.NO_PERMISSION),
        (Faults(force_error="cancelled"), Outcome.CANCELLED),
        (Faults(force_error="too_many_open"), Outcome.PACING),
    ],
)
def test_errors_are_never_empty(make_gateway, fault, expected):
    gw = make_gateway(faults=fault)

    async def scenario():
        source = await _connected(gw)
        try:
            info = await _aapl(source)
            return await source.historical_bars(info, _daily(info), timeout=10)
        finally:
            source.disconnect()

    result = run(scenario())
    assert result.outcome is expected
    assert result.bars is None and result.error_code is not None


def test_timeout_is_not_empty_and_the_request_is_cancelled(sim_gateway):
    async def scenario():
        source = await _connected(sim_gateway)
        try:
            info = await _aapl(source)
            sim_gateway.faults.never_answer = True
            return await source.historical_bars(info, _daily(info), timeout=0.5)
        finally:
            source.disconnect()

    result = run(scenario())
    assert result.outcome is Outcome.TIMEOUT
    assert result.latency_s >= 0.5
    assert sim_gateway.journal.wait_for(lambda j: j.count_where(outcome="cancelled") >= 1, timeout=10)


def test_socket_loss_is_disconnected(sim_gateway):
    async def scenario():
        source = await _connected(sim_gateway)
        try:
            info = await _aapl(source)
            sim_gateway.faults.drop_after_requests = 0
            return await source.historical_bars(info, _daily(info), timeout=10), source.is_connected()
        finally:
            source.disconnect()

    result, connected = run(scenario())
    assert result.outcome is Outcome.DISCONNECTED
    assert not connected


def test_client_id_in_use_is_detected_without_waiting_the_timeout(sim_gateway):
    async def scenario():
        first = await _connected(sim_gateway)
        second = IBSource("127.0.0.1", sim_gateway.port, first.client_id, connect_timeout=20)
        started = time.monotonic()
        try:
            with pytest.raises(ClientIdInUse, match=f"client id {first.client_id} is already in use"):
                await second.connect()
            return time.monotonic() - started
        finally:
            first.disconnect()

    assert run(scenario()) < 10


def test_unreachable_gateway():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(GatewayUnreachable, match=f"127.0.0.1:{port}"):
        run(IBSource("127.0.0.1", port, 1, connect_timeout=5).connect())


@pytest.mark.parametrize(("bar_size", "duration"), [("1 day", "10 D"), ("5 mins", "2 D")])
def test_columnar_bars_equal_ib_insyncs_own_decoding(sim_gateway, bar_size, duration):
    async def scenario():
        source = await _connected(sim_gateway)
        try:
            info = await _aapl(source)
            key = SeriesKey(info.con_id, bar_size, "TRADES", True)
            ours = await source.historical_bars(info, BarRequest(key, END, END, duration, 200), timeout=10)
            theirs = await source.ib.reqHistoricalDataAsync(  # same instant, spelled differently: not "identical"
                info.ib_contract(), "20240614 20:00:00 UTC", duration, bar_size, "TRADES", True, formatDate=2)
            return ours.bars, theirs
        finally:
            source.disconnect()

    ours, theirs = run(scenario())
    assert len(ours) == len(theirs) >= 10
    for row, bar in zip(ours.itertuples(), theirs, strict=True):
        if bar_size == "1 day":  # IB dates a daily bar by its session
            assert row.session_date.date() == bar.date
        else:
            assert row.ts.to_pydatetime() == bar.date
        assert (row.open, row.high, row.low, row.close) == (bar.open, bar.high, bar.low, bar.close)
        assert (row.volume, row.wap, row.bar_count) == (bar.volume, bar.average, bar.barCount)
