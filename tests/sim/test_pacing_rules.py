"""Pacing rule engine with an injected clock (fast, exact)."""

from __future__ import annotations

import pytest

from harvester.sim.rules import SMALL_BAR_SIZES, PacedRequest, PacingEngine, PacingLimits, Verdict


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
