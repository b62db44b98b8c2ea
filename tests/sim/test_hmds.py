"""The HMDS answer-time model (docs/sim-hmds.md): size and load, withheld answers, the soft throttle."""

from __future__ import annotations

from datetime import datetime

import pytest
from ib_insync import IB, Stock

from harvester.sim import BUSY, QUIET, PacingLimits, SoftThrottle
from harvester.sim.hmds import HmdsLoad, calibration_error
from harvester.sim.wire.messages import TEXT_PACING

AAPL = Stock("AAPL", "SMART", "USD", primaryExchange="NASDAQ")


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def load(profile=BUSY, throttle=None, clock=None) -> HmdsLoad:
    return HmdsLoad(profile, clock or Clock(), latency_scale=1.0, pacing_scale=1.0, throttle=throttle)


def test_busy_profile_meets_ib_insync_268():
    """1 D of 1-min bars (390) in 0.6 s and 5 D (1,950) in 8.3 s on an idle HMDS; 6 D (2,340) never."""
    assert calibration_error(BUSY) < 0.01
    assert load().plan(390, intraday=True, soft=False).delay_s == pytest.approx(0.6, rel=0.01)
    assert load().plan(1950, intraday=True, soft=False).delay_s == pytest.approx(8.3, rel=0.01)
    assert load().plan(2340, intraday=True, soft=False).delay_s is None


def test_answer_time_grows_faster_than_the_bars_when_busy():
    small, large = BUSY.size_s(500), BUSY.size_s(1500)
    assert large / small > 3  # three times the bars, more than three times the time
    assert QUIET.size_s(1500) / QUIET.size_s(500) < 3  # a quiet HMDS is linear with a fixed cost


def test_daily_bars_are_never_withheld_and_stay_quick():
    answer = load().plan(10_000, intraday=False, soft=False)
    assert answer.delay_s is not None and answer.delay_s < 2.0


def test_daily_bars_are_looked_up_load_or_not_and_add_no_bars_to_the_load():
    hmds = load()
    idle_daily = hmds.plan(10_000, intraday=False, soft=False).delay_s
    idle_minutes = load().plan(1000, intraday=True, soft=False).delay_s
    for _ in range(30):
        hmds.plan(1000, intraday=True, soft=False)  # a loaded HMDS
    assert hmds.plan(10_000, intraday=False, soft=False).delay_s == pytest.approx(idle_daily)
    daily_only = load()
    for _ in range(30):
        daily_only.plan(10_000, intraday=False, soft=False)  # 300,000 pre-built bars: requests, no bars
    for _ in range(30):
        daily_only.done()
    assert daily_only.pressure() == pytest.approx(30 / BUSY.load_requests)
    assert daily_only.plan(1000, intraday=True, soft=False).delay_s < 1.6 * idle_minutes


def test_load_slows_answers_and_past_max_load_they_come_late():
    clock = Clock()
    hmds = load(clock=clock)
    idle = hmds.plan(1000, intraday=True, soft=False).delay_s
    for _ in range(10):
        hmds.plan(1000, intraday=True, soft=False)  # ten more in progress, 11,000 bars served lately
    loaded = hmds.plan(1000, intraday=True, soft=False)
    assert loaded.delay_s > 2 * idle and not loaded.late
    for _ in range(20):
        hmds.plan(1000, intraday=True, soft=False)
    late = hmds.plan(1000, intraday=True, soft=False)
    assert late.late and late.delay_s >= BUSY.late_s
    for _ in range(33):
        hmds.done()
    clock.t += BUSY.load_window_s
    assert hmds.plan(1000, intraday=True, soft=False).delay_s == pytest.approx(idle)  # load forgotten


def test_max_bars_override():
    assert QUIET.with_max_bars(500).max_bars == 500 and QUIET.with_max_bars(None) is QUIET
    assert load(QUIET.with_max_bars(500)).plan(501, intraday=True, soft=False).withheld == "size"


def test_soft_throttle_slows_then_disconnects():
    throttle = SoftThrottle(window_s=60.0, free=4, disconnect_at=8)
    clock = Clock()
    hmds = load(QUIET, throttle, clock)
    times = []
    for _ in range(8):
        answer = hmds.plan(100, intraday=True, soft=True)
        hmds.done()
        clock.t += 0.5
        times.append(answer.delay_s)
    assert times[3] == pytest.approx(times[0], rel=0.05)  # the free four
    assert times[7] > 1.5 * times[3]  # slowed as the rate rises
    assert hmds.plan(100, intraday=True, soft=True).disconnect  # the ninth in the window
    clock.t += 60
    assert not hmds.plan(100, intraday=True, soft=True).disconnect


def bars(ib: IB, duration: str, end: datetime, bar_size: str = "1 min", timeout: float = 10):
    return ib.reqHistoricalData(AAPL, end, duration, bar_size, "TRADES", True, timeout=timeout)


def test_withheld_answer_is_cancelled_by_the_client_and_162_follows(make_gateway, connect, sim_now):
    gateway = make_gateway(hmds=QUIET.with_max_bars(1000))
    ib = connect(gateway)
    errors = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append((code, text))
    assert len(bars(ib, "1 D", sim_now)) == 390
    assert len(bars(ib, "5 D", sim_now, timeout=1)) == 0  # 1,950 bars: no answer, ib_insync cancels
    ib.sleep(0.3)
    assert any(code == 162 and "query cancelled" in text for code, text in errors)
    withheld = [e for e in gateway.journal if e["outcome"] == "unanswered"]
    assert [e.get("withheld") for e in withheld] == ["size"]
    assert gateway.open_requests == 0


def test_current_rules_lift_the_hard_window_for_minute_bars(make_gateway, connect, sim_now):
    """Beyond 60 requests in the scaled 10 minutes: no violation for 1-min bars, still one for 30-s bars."""
    gateway = make_gateway(rules="current", pacing=PacingLimits(window_max=3),
                           throttle=SoftThrottle(window_s=600, free=50, disconnect_at=100))
    ib = connect(gateway)
    errors = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append(text)
    for day in (14, 13, 12, 11, 10):
        assert bars(ib, "1 D", sim_now.replace(day=day))
    assert TEXT_PACING not in errors
    for day in range(4):
        bars(ib, "1800 S", sim_now.replace(hour=15 + day), bar_size="30 secs")
    assert TEXT_PACING in errors


@pytest.mark.parametrize(("rules", "dropped"), [("current", True), ("legacy", False)])
def test_a_burst_past_the_soft_threshold_disconnects_under_current_rules(make_gateway, connect, sim_now,
                                                                       rules, dropped):
    gateway = make_gateway(rules=rules, throttle=SoftThrottle(window_s=600, free=2, disconnect_at=4))
    ib = connect(gateway)
    answered = 0
    for hour in range(14, 19):
        try:
            answered += len(bars(ib, "3600 S", sim_now.replace(hour=hour), timeout=2)) > 0
        except ConnectionError:  # ib_insync's own word for a socket closed under a request
            break
    ib.sleep(0.2)
    assert answered == (4 if dropped else 5)
    assert ib.isConnected() is not dropped
    assert any(e["outcome"] == "disconnected" for e in gateway.journal) is dropped
