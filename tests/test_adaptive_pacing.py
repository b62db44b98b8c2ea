"""`--pacing adaptive` (issue 14 item 3) against the simulator: bars of 1 min and up beyond the hard window
on the current rules without a disconnect, and back to strict after a violation on the legacy rules."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd
import pytest

from harvester.ib.adaptive import AdaptivePace
from harvester.ibrules import PacingLimits
from harvester.settings import ConfigError, resolve_settings
from harvester.sim import Faults
from tests.test_job import harvest, historical, reference, stored

SYMBOLS = ["AAPL", "MSFT"]
MANY = {"bar_sizes": ("1 min",), "start": date(2024, 4, 15), "target_bars": 400}  # one session a request: ~90
WINDOW = timedelta(seconds=PacingLimits().window_s * 0.01)  # the hard window at the tests' pacing scale


def busiest_window(entries: list[dict]) -> int:
    """The most historical requests the gateway received within one hard-rule window."""
    times = sorted(datetime.fromisoformat(e["time"]) for e in entries)
    return max(sum(1 for t in times[i:] if t - start < WINDOW) for i, start in enumerate(times))


def test_adaptive_on_the_current_rules_goes_past_the_hard_window_without_a_disconnect(make_gateway, tmp_path):
    expected = reference(make_gateway, tmp_path, SYMBOLS, **MANY)
    gw = make_gateway(rules="current")
    report = harvest(gw, tmp_path / "data", SYMBOLS, pacing="adaptive", **MANY)
    assert report.ok and report.violations == 0 and report.reconnects == 0 and not report.pacing_fell_back
    sent = historical(gw)
    assert not any(e["outcome"] == "disconnected" for e in sent)
    assert busiest_window(sent) > PacingLimits().max_weighted  # strict pacing never sends more than 60 in one
    pd.testing.assert_frame_equal(stored(tmp_path / "data"), expected)


def test_adaptive_on_the_legacy_rules_falls_back_to_strict_at_the_first_violation(make_gateway, tmp_path):
    """Whether the climb reaches the hard window before the run ends depends on answer times: either no
    violation, or the first one sends the run back to strict, with at most what was in flight violated."""
    expected = reference(make_gateway, tmp_path, SYMBOLS, **MANY)
    gw = make_gateway(rules="legacy")
    report = harvest(gw, tmp_path / "data", SYMBOLS, pacing="adaptive", **MANY)
    assert report.ok and report.violations <= 6  # max_in_flight
    assert bool(report.pacing_fell_back) == (report.violations > 0)
    pd.testing.assert_frame_equal(stored(tmp_path / "data"), expected)


def test_a_violation_on_a_soft_request_means_strict_for_the_rest_of_the_run(make_gateway, tmp_path):
    expected = reference(make_gateway, tmp_path, SYMBOLS, **MANY)
    gw = make_gateway(rules="current", faults=Faults(random_error_rate=0.05, random_error="pacing", seed=2))
    report = harvest(gw, tmp_path / "data", SYMBOLS, pacing="adaptive", **MANY)
    assert report.ok and report.violations >= 1 and report.pacing_fell_back.startswith("a 162 pacing violation")
    sent = historical(gw)
    first = next(i for i, e in enumerate(sent) if e["outcome"] == "pacing")
    assert busiest_window(sent[first + 7:]) <= PacingLimits().max_weighted  # strict after it (in flight aside)
    pd.testing.assert_frame_equal(stored(tmp_path / "data"), expected)


def test_strict_stays_the_default_and_harvest_toml_can_choose(tmp_path):
    assert resolve_settings(environ={}, cwd=tmp_path).pacing == "strict"
    (tmp_path / "harvest.toml").write_text('pacing = "adaptive"\n')
    assert resolve_settings(environ={}, cwd=tmp_path).pacing == "adaptive"
    (tmp_path / "harvest.toml").write_text('pacing = "fast"\n')
    with pytest.raises(ConfigError, match="pacing"):
        resolve_settings(environ={}, cwd=tmp_path)


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def test_the_pace_is_never_slower_than_strict_and_does_not_judge_strict_s_burst():
    clock = Clock()
    limits = PacingLimits()
    pace = AdaptivePace(limits, clock, max_open=6)
    for _ in range(limits.max_weighted):  # strict's whole window at once, six open at a time
        assert pace.wait_time() == 0
        pace.sent()
        if pace.open == 6:
            assert pace.wait_time() == float("inf")
            pace.answered(latency_s=30.0, bars=400)  # queued behind the burst: not held against IB
    assert pace.rate == pace.min_rate and pace.open_limit == 2
    while pace.open:
        pace.answered(latency_s=30.0, bars=400)
    assert 0 < pace.wait_time() <= 1 / pace.min_rate  # past strict's window: the rate decides
    clock.t += limits.window_s
    assert pace.wait_time() == 0  # the window has room again


def past_the_window(limits: PacingLimits, clock: Clock) -> AdaptivePace:
    pace = AdaptivePace(limits, clock, max_open=6)
    for _ in range(limits.max_weighted):
        pace.sent()
        pace.answered(latency_s=1.0, bars=400)
    return pace


def test_the_pace_climbs_while_answers_stay_flat_and_falls_back_when_they_grow():
    clock = Clock()
    pace = past_the_window(PacingLimits(), clock)
    start = pace.rate
    for _ in range(12):
        pace.sent()
        pace.answered(latency_s=1.0, bars=400)
    assert pace.rate == pytest.approx(start * 1.15 ** 8) and pace.open_limit == 4  # 8 judged answers
    climbed = pace.rate
    pace.answered(latency_s=9.0, bars=400)  # one slow answer is noise: the median holds
    assert pace.rate > climbed
    pace.answered(latency_s=9.0, bars=400)
    pace.answered(latency_s=9.0, bars=400)  # answers take longer: IB is slowing us down
    assert pace.rate < climbed and pace.open_limit == 3
    for _ in range(60):
        pace.answered(latency_s=1.0, bars=400)
    assert pace.rate == pytest.approx(0.8)  # never past 48 a minute
    pace.disconnected()
    assert pace.rate == pytest.approx(0.4) and pace.active
    for _ in range(10):
        pace.disconnected()
    assert pace.rate == pytest.approx(start)  # never slower than strict's long-run rate
    pace.violation()
    assert not pace.active and "strict" in pace.fell_back


def test_answers_are_judged_against_windows_of_their_own_size():
    """A fixed cost per answer: 4,000-bar windows taking longer than 400-bar ones is no sign of load."""
    clock = Clock()
    pace = past_the_window(PacingLimits(), clock)
    for _ in range(10):
        pace.answered(latency_s=1.0, bars=400)
        pace.answered(latency_s=4.0, bars=4000)
    assert pace.rate > pace.min_rate * 1.15 ** 10
    for _ in range(5):
        pace.answered(latency_s=4.0, bars=400)  # the small windows now take as long: load
    assert pace.rate < pace.max_rate and pace.open_limit < 6
