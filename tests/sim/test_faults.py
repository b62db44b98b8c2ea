"""Every fault in the catalogue (harvester/sim/faults.py) fires as specified, seen through ib_insync."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from ib_insync import IB, Stock

from harvester.sim import SMALL_BAR_SIZES, Faults, PacingLimits
from harvester.sim.faults import FaultError

AAPL = Stock("AAPL", "SMART", "USD", primaryExchange="NASDAQ")


def future_on(event, predicate=lambda *args: True) -> asyncio.Future:
    """A future resolved with the first emission of `event` that satisfies `predicate`."""
    future = asyncio.get_event_loop().create_future()
    event += lambda *args: future.done() or not predicate(*args) or future.set_result(args)
    return future


def bars(ib: IB, symbol: str = "AAPL", duration: str = "1 D", timeout: float = 5):
    return ib.reqHistoricalData(
        Stock(symbol, "SMART", "USD"), "", duration, "1 hour", "TRADES", True, timeout=timeout
    )


def test_drop_after_requests_closes_the_socket(make_gateway, connect):
    gateway = make_gateway(faults=Faults(drop_after_requests=1))
    ib = connect(gateway)
    disconnected = future_on(ib.disconnectedEvent)
    assert bars(ib)
    with pytest.raises(ConnectionError):
        bars(ib, duration="2 D")
    ib.run(asyncio.wait_for(disconnected, 5))
    assert not ib.isConnected() and gateway.faults.drop_after_requests is None
    assert gateway.journal.count_where(outcome="dropped") == 1


def test_drop_at_fires_on_the_simulated_clock(sim_gateway, connect):
    ib = connect(sim_gateway)
    disconnected = future_on(ib.disconnectedEvent)
    sim_gateway.faults.drop_at = sim_gateway.clock.now() + timedelta(hours=1)
    assert bars(ib)  # not yet
    sim_gateway.clock.advance(timedelta(hours=2))
    ib.run(asyncio.wait_for(disconnected, 5))
    assert not ib.isConnected()


def test_never_answer_nth_and_per_symbol(make_gateway, connect):
    gateway = make_gateway(faults=Faults(never_answer_nth=2, never_answer_symbols={"MSFT"}))
    ib = connect(gateway)
    assert bars(ib)
    assert len(bars(ib, duration="2 D", timeout=0.3)) == 0  # the 2nd: silence, then ib_insync's timeout
    assert bars(ib, duration="3 D")
    assert len(bars(ib, "MSFT", timeout=0.3)) == 0
    assert gateway.journal.count_where(outcome="unanswered") == 2


def test_never_answer_everything_leaves_the_request_open(make_gateway, connect):
    gateway = make_gateway(faults=Faults(never_answer=True))
    ib = connect(gateway)
    ib.client.reqHeadTimeStamp(900, AAPL, "TRADES", 1, 2)
    settled = asyncio.to_thread(
        gateway.journal.wait_for, lambda j: j.count_where(outcome="unanswered") == 1, 5
    )
    assert ib.run(settled) and gateway.open_requests == 1


@pytest.mark.parametrize(
    ("kind", "code", "fragment"),
    [
        ("no_data", 162, "HMDS query returned no data: AAPL@SMART Trades"),
        ("pacing", 162, "Historical data request pacing violation"),
        ("no_permissions", 162, "No market data permissions for NASDAQ STK"),
        ("cancelled", 162, "API historical data query cancelled: "),
        ("too_many_open", 322, "Only 50 simultaneous API historical data requests allowed."),
        ((366, "No historical data query found for ticker id"), 366, "No historical data query found"),
    ],
)
def test_forced_errors(make_gateway, connect, kind, code, fragment):
    gateway = make_gateway(faults=Faults(force_error=kind))
    ib = connect(gateway)
    error = future_on(ib.errorEvent)
    answer = ib.reqHistoricalData(AAPL, "", "1 D", "1 hour", "TRADES", True)
    req_id, got_code, text, _ = ib.run(asyncio.wait_for(error, 5))
    assert len(answer) == 0 and (req_id, got_code) == (answer.reqId, code) and fragment in text
    assert gateway.open_requests == 0


def test_errors_for_chosen_symbols_only(make_gateway, connect):
    gateway = make_gateway(
        faults=Faults(error_symbols={"IBM": (354, "Requested market data is not subscribed.")})
    )
    ib = connect(gateway)
    error = future_on(ib.errorEvent)
    assert len(bars(ib, "IBM")) == 0
    assert ib.run(asyncio.wait_for(error, 5))[1:3] == (354, "Requested market data is not subscribed.")
    assert bars(ib, "KO")


def test_random_error_rate_is_seeded(make_gateway, connect):
    """Hourly bars under IB's soft pacing only: a real pacing rejection (which depends on how fast the
    client sends) would skip a draw of the seeded generator and shift every later outcome."""
    outcomes = []
    for _ in range(2):
        gateway = make_gateway(faults=Faults(random_error_rate=0.5, seed=7),
                               pacing=PacingLimits(bar_sizes=SMALL_BAR_SIZES))
        ib = connect(gateway)
        outcomes.append([len(bars(ib, duration=f"{n + 1} D")) > 0 for n in range(12)])
    assert outcomes[0] == outcomes[1] and True in outcomes[0] and False in outcomes[0]


def test_outage_sends_1100_then_1102(sim_gateway, connect):
    ib = connect(sim_gateway)
    codes = []
    ib.errorEvent += lambda req_id, code, text, contract: codes.append(code)
    restored = future_on(ib.errorEvent, lambda req_id, code, *rest: code == 1102)
    sim_gateway.fire_outage(0.2)
    ib.run(asyncio.wait_for(restored, 5))
    assert codes == [1100, 1102]
    assert bars(ib)


def test_hmds_outage_holds_answers_until_2106(sim_gateway, connect):
    ib = connect(sim_gateway)
    events = []
    ib.errorEvent += lambda req_id, code, text, contract: events.append(code)
    broken = future_on(ib.errorEvent, lambda req_id, code, *rest: code == 2105)
    sim_gateway.fire_hmds_outage(0.3)
    ib.run(asyncio.wait_for(broken, 5))
    answer = bars(ib)
    events.append("bars")
    assert answer and events == [2105, 2106, "bars"]


def test_scheduled_outage_via_faults(sim_gateway, connect):
    ib = connect(sim_gateway)
    restored = future_on(ib.errorEvent, lambda req_id, code, *rest: code == 1102)
    sim_gateway.faults.outage_seconds = 0.1
    sim_gateway.faults.outage_at = sim_gateway.clock.now()
    assert ib.run(asyncio.wait_for(restored, 5))[1] == 1102


def test_duplicate_client_id_times_out_the_second_client(sim_gateway, connect):
    first = connect(sim_gateway)
    second = IB()
    with pytest.raises(TimeoutError):
        second.connect("127.0.0.1", sim_gateway.port, clientId=first.client.clientId, timeout=2)
    assert first.isConnected() and sim_gateway.connected_clients == [first.client.clientId]


def test_bad_fault_settings_are_named():
    with pytest.raises(FaultError, match="bogus"):
        Faults(force_error="bogus")
    with pytest.raises(FaultError, match="random_error_rate"):
        Faults(random_error_rate=2.0)
    with pytest.raises(FaultError, match="bad_bar_rate"):
        Faults(bad_bar_symbols={"AAPL"})


def broken_kinds(bars_list) -> dict[str, int]:
    """June: the regular session is 13:30-20:00 UTC."""
    return {
        "high below low": sum(b.high < b.low for b in bars_list),
        "negative volume": sum(b.volume < -1 for b in bars_list),
        "after the close": sum(b.date.hour >= 20 for b in bars_list),
    }


def test_bad_bars_are_seeded_per_symbol_and_stop_at_the_given_instant(sim_gateway, connect):
    """Two sessions of AAPL's minutes: all three kinds, the same bars on a re-ask, KO untouched, and clean
    once the simulated clock passes `bad_bars_until`."""
    now = sim_gateway.clock.now()
    sim_gateway.faults = Faults(bad_bar_rate=0.01, bad_bar_symbols={"AAPL"}, seed=3,
                                bad_bars_until=now + timedelta(hours=1))
    ib = connect(sim_gateway)

    def minutes(symbol: str, duration: str = "2 D", end: str = "20240613 16:00:00 US/Eastern"):
        return ib.reqHistoricalData(Stock(symbol, "SMART", "USD"), end, duration, "1 min", "TRADES", True, 2)

    first, ko = minutes("AAPL"), minutes("KO")
    again = [b for b in minutes("AAPL", "3 D") if b.date >= first[0].date]
    kinds = broken_kinds(first)
    assert all(kinds.values()), kinds
    assert [tuple(vars(b).values()) for b in again] == [tuple(vars(b).values()) for b in first]
    assert sum(broken_kinds(ko).values()) == 0
    assert sim_gateway.journal.matching(kind="historical")[0]["broken"] == sum(kinds.values())
    sim_gateway.clock.advance(timedelta(hours=2))
    healed = minutes("AAPL", end="20240613-20:00:00")
    assert sum(broken_kinds(healed).values()) == 0 and len(healed) == 2 * 390
