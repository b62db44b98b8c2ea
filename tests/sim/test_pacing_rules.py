"""Pacing rule engine with an injected clock (fast, exact), and where the simulator stamps a request."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from ib_insync import Stock

from harvester.sim.rules import (
    SMALL_BAR_SIZES,
    ArrivalStamps,
    PacedRequest,
    PacingEngine,
    PacingLimits,
    Verdict,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(
    n: int, contract: int | None = None, what: str = "TRADES", bar: str | None = "1 min"
) -> PacedRequest:
    con = n if contract is None else contract
    return PacedRequest(identity=("req", n, what, bar), contract_key=(con, "SMART", what), what_to_show=what,
                        bar_size=bar)  # fmt: skip


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def engine(clock: FakeClock, scale: float = 1.0, **limits) -> PacingEngine:
    return PacingEngine(PacingLimits(**limits), clock, scale)


def admit_released(pacing: PacingEngine, req: PacedRequest) -> Verdict:
    verdict = pacing.admit(req)
    if verdict is Verdict.ADMITTED:
        pacing.release()
    return verdict


def test_sixty_per_ten_minutes_then_the_61st_is_a_violation(clock):
    pacing = engine(clock)
    for n in range(60):
        assert admit_released(pacing, request(n)) is Verdict.ADMITTED
        clock.now += 1
    assert admit_released(pacing, request(60)) is Verdict.PACING_VIOLATION
    clock.now += 600 - 60 + 1  # the first request has left the window
    assert admit_released(pacing, request(61)) is Verdict.ADMITTED


def test_bid_ask_counts_twice_in_the_window(clock):
    pacing = engine(clock)
    for n in range(30):
        assert admit_released(pacing, request(n, what="BID_ASK")) is Verdict.ADMITTED
        clock.now += 1
    assert pacing.window_load() == 60
    assert admit_released(pacing, request(99)) is Verdict.PACING_VIOLATION


def test_identical_request_within_15_seconds(clock):
    pacing = engine(clock)
    assert admit_released(pacing, request(1)) is Verdict.ADMITTED
    clock.now += 14.9
    assert admit_released(pacing, request(1)) is Verdict.PACING_VIOLATION
    clock.now += 0.2
    assert admit_released(pacing, request(1)) is Verdict.ADMITTED


def test_sixth_request_for_one_contract_within_2_seconds(clock):
    pacing = engine(clock)
    for n in range(5):
        assert admit_released(pacing, request(n, contract=7)) is Verdict.ADMITTED
        clock.now += 0.1
    assert admit_released(pacing, request(5, contract=7)) is Verdict.PACING_VIOLATION
    assert admit_released(pacing, request(6, contract=7, what="MIDPOINT")) is Verdict.ADMITTED
    clock.now += 1.7  # the first of the five is now older than 2 s
    assert admit_released(pacing, request(7, contract=7)) is Verdict.ADMITTED


def test_fifty_open_then_322_until_one_is_released(clock):
    pacing = engine(clock, window_max=1000)
    for n in range(50):
        assert pacing.admit(request(n)) is Verdict.ADMITTED
    assert pacing.admit(request(50)) is Verdict.TOO_MANY_OPEN
    pacing.release()
    assert pacing.admit(request(51)) is Verdict.ADMITTED
    assert pacing.open_requests == 50


def test_violations_do_not_count_toward_the_window(clock):
    pacing = engine(clock)
    admit_released(pacing, request(1))
    for _ in range(10):
        assert admit_released(pacing, request(1)) is Verdict.PACING_VIOLATION
    assert pacing.window_load() == 1


def test_small_bars_only_reading_spares_minute_bars_but_not_head_timestamps(clock):
    pacing = engine(clock, bar_sizes=SMALL_BAR_SIZES)
    for _ in range(10):
        assert admit_released(pacing, request(1, bar="1 min")) is Verdict.ADMITTED
    assert admit_released(pacing, request(2, bar="5 secs")) is Verdict.ADMITTED
    assert admit_released(pacing, request(2, bar="5 secs")) is Verdict.PACING_VIOLATION
    assert admit_released(pacing, request(3, bar=None)) is Verdict.ADMITTED
    assert admit_released(pacing, request(3, bar=None)) is Verdict.PACING_VIOLATION


def test_scale_compresses_every_time_constant(clock):
    pacing = engine(clock, scale=0.01)  # 600 s → 6 s, 15 s → 0.15 s
    for n in range(60):
        assert admit_released(pacing, request(n)) is Verdict.ADMITTED
    assert admit_released(pacing, request(60)) is Verdict.PACING_VIOLATION
    clock.now += 6.0
    assert admit_released(pacing, request(60)) is Verdict.ADMITTED
    clock.now += 0.1
    assert admit_released(pacing, request(60)) is Verdict.PACING_VIOLATION
    clock.now += 0.06
    assert admit_released(pacing, request(60)) is Verdict.ADMITTED


def test_bad_scale_is_rejected(clock):
    with pytest.raises(ValueError, match="scale"):
        engine(clock, scale=0)


def test_a_request_is_judged_at_its_stamp_not_when_its_turn_comes(clock):
    """Sixty stamped at t, checked later: the 61st stamped just after t + window is admitted."""
    pacing = engine(clock)
    for n in range(60):
        assert admit_released(pacing, request(n)) is Verdict.ADMITTED
    arrived = clock.now + 600.0
    clock.now += 600.5  # its turn to be checked came half a second after it arrived
    assert pacing.admit(request(60), at=arrived) is Verdict.ADMITTED


def test_arrival_stamps_are_the_receipt_without_a_modelled_lag(clock):
    stamps = ArrivalStamps(clock)
    assert stamps.stamp() == (clock.now, clock.now)
    clock.now += 0.25
    assert stamps.stamp() == (clock.now, clock.now)


def test_a_modelled_lag_stays_within_its_bound_keeps_arrival_order_and_is_seeded(clock):
    def run(seed: int) -> list[tuple[float, float]]:
        stamps, got = ArrivalStamps(clock, lag_s=0.05, seed=seed), []
        for n in range(200):
            clock.now = 1000.0 + n / 100
            got.append(stamps.stamp())
        return got

    got = run(7)
    lags = [stamp - received for received, stamp in got]
    assert all(0 <= lag <= 0.05 + 1e-9 for lag in lags) and max(lags) > 0.04 and min(lags) < 0.01
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(got))  # HMDS takes requests in order
    assert run(7) == got and run(8) != got
    with pytest.raises(ValueError):
        ArrivalStamps(clock, lag_s=-1)


def test_requests_read_together_are_stamped_as_read_not_as_their_bars_get_built(make_gateway, connect):
    """Issue 13: six requests read at once were stamped as each one's turn came, after the bars of those
    before it were built (the sixth ~0.1 s late), so the 61st–66th drew 162 though the wire spaced them."""
    gateway = make_gateway(latency_scale=0.01)
    ib = connect(gateway)
    symbols = ["AAPL", "MSFT", "AMZN", "GOOGL", "META", "NVDA"]
    contracts = ib.qualifyContracts(*[Stock(s, "SMART", "USD") for s in symbols])

    async def burst() -> list:
        return await asyncio.gather(*[ib.reqHistoricalDataAsync(c, "", "1 Y", "1 day", "TRADES", True)
                                      for c in contracts])

    assert all(ib.run(burst()))
    asked = gateway.journal.matching(kind="historical")
    assert len(asked) == 6 and [e["stamp_lag_s"] for e in asked] == [0.0] * 6


def test_the_modelled_stamp_lag_reaches_the_journal(make_gateway, connect):
    gateway = make_gateway(stamp_lag_s=0.05, latency_scale=0.0)
    ib = connect(gateway)
    contracts = ib.qualifyContracts(*[Stock(s, "SMART", "USD") for s in ["AAPL", "MSFT", "AMZN", "GOOGL"]])
    for contract in contracts:
        assert ib.reqHistoricalData(contract, "", "2 D", "1 day", "TRADES", True)
    lags = [e["stamp_lag_s"] for e in gateway.journal.matching(kind="historical")]
    assert len(lags) == 4 and all(0 <= lag <= 0.05 for lag in lags) and any(lag > 0 for lag in lags)
