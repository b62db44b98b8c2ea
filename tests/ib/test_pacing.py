"""The pacer against a fake clock, and a long simulated run checked by an independent brute-force checker."""

from __future__ import annotations

import heapq
import math
import random

import pytest

from harvester.ib.pacing import Margin, PacedRequest, PacingWindow, pacing_floor, time_left
from harvester.ibrules import PacingLimits, request_weight
from harvester.model import WorkKind

EXACT = PacingLimits(safety_s=0.0)
TOL = 1e-9


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def req(con_id: int = 1, what: str = "TRADES", n: int = 0, kind: WorkKind = WorkKind.BARS) -> PacedRequest:
    return PacedRequest(con_id, "SMART", what, (con_id, what, n, kind), request_weight(what), kind)


def pacer(limits: PacingLimits = EXACT) -> tuple[PacingWindow, FakeClock]:
    clock = FakeClock()
    return PacingWindow(limits, clock), clock


def send(window: PacingWindow, r: PacedRequest) -> None:
    assert window.wait_time(r) == 0.0
    window.sent(r)
    window.finished(r)


def test_sixty_go_at_once_and_the_61st_waits_until_the_first_leaves():
    window, clock = pacer()
    send(window, req(con_id=0))
    clock.now += 100.0
    for i in range(1, 60):
        send(window, req(con_id=i))
    assert window.wait_time(req(con_id=99)) == pytest.approx(500.0)
    clock.now += 499.999
    assert window.wait_time(req(con_id=99)) > 0
    clock.now += 0.001
    send(window, req(con_id=99))
    assert window.wait_time(req(con_id=100)) == pytest.approx(100.0)


def test_safety_margin_delays_by_exactly_the_margin():
    window, _ = pacer(PacingLimits(safety_s=1.5))
    for i in range(60):
        send(window, req(con_id=i))
    assert window.wait_time(req(con_id=99)) == pytest.approx(601.5)


def test_bid_ask_counts_two():
    window, clock = pacer()
    for i in range(30):
        send(window, req(con_id=i, what="BID_ASK"))
    assert window.wait_time(req(con_id=99)) == pytest.approx(600.0)
    clock.now += 600.0
    for i in range(2):
        send(window, req(con_id=100 + i))
    assert window.wait_time(req(con_id=200, what="BID_ASK")) == 0.0


def test_bid_ask_needs_two_free_units():
    window, clock = pacer()
    for i in range(59):
        send(window, req(con_id=i))
        clock.now += 1.0
    assert window.wait_time(req(con_id=99)) == 0.0
    assert window.wait_time(req(con_id=99, what="BID_ASK")) == pytest.approx(600.0 - 59.0)


def test_identical_request_waits_fifteen_seconds():
    window, clock = pacer()
    send(window, req(con_id=1, n=7))
    clock.now += 3.0
    assert window.wait_time(req(con_id=1, n=7)) == pytest.approx(12.0)
    assert window.wait_time(req(con_id=2, n=7)) == 0.0


def test_same_contract_burst_allows_five_per_two_seconds():
    window, clock = pacer()
    for n in range(5):
        send(window, req(con_id=1, n=n))
        clock.now += 0.1
    assert window.wait_time(req(con_id=1, n=9)) == pytest.approx(1.5)
    assert window.wait_time(req(con_id=1, what="MIDPOINT", n=9)) == 0.0
    assert window.wait_time(req(con_id=2, n=9)) == 0.0


def test_open_cap_blocks_until_a_request_finishes():
    window, _ = pacer(PacingLimits(safety_s=0.0, max_open=3))
    held = [req(con_id=i, kind=WorkKind.HEAD) for i in range(3)]
    for r in held:
        window.sent(r)
    assert window.open_count() == 3
    assert window.wait_time(req(con_id=9)) == math.inf
    window.finished(held[1])
    window.finished(held[1])  # a late cancel after the answer is harmless
    assert window.open_count() == 2
    assert window.wait_time(req(con_id=9)) == 0.0


def test_scaled_limits_compress_the_window():
    window, _ = pacer(PacingLimits(safety_s=0.0).scaled(0.01))
    for i in range(60):
        send(window, req(con_id=i))
    assert window.wait_time(req(con_id=99)) == pytest.approx(6.0)


def test_pacing_floor():
    assert pacing_floor([], EXACT) == 0.0
    assert pacing_floor([1] * 60, EXACT) == 0.0
    assert pacing_floor([1] * 61, EXACT) == 600.0
    assert pacing_floor([2] * 61, EXACT) == 1200.0
    assert pacing_floor([1] * 500, EXACT.scaled(0.01)) == pytest.approx(8 * 6.0)


def violations(log: list[tuple[float, PacedRequest]], limits: PacingLimits, new: tuple[float, PacedRequest]):
    """Brute force, independent of the pacer: which rules does `new` break given every earlier send?
    A send exactly one span after another is allowed (half-open spans); TOL absorbs float rounding."""
    t, r = new
    t += TOL
    broken = []
    weighted = sum(x.weight for s, x in log if s > t - limits.window_s) + r.weight
    if weighted > limits.max_weighted:
        broken.append("weighted")
    if any(x.identity == r.identity and s > t - limits.identical_s for s, x in log):
        broken.append("identical")
    same = sum(1 for s, x in log if x.contract_key == r.contract_key and s > t - limits.same_contract_s)
    if same + 1 > limits.same_contract_max:
        broken.append("burst")
    return broken


def simulate(limits: PacingLimits, requests: list[PacedRequest], latency: random.Random):
    """Drive the pacer like a scheduler would: send as soon as allowed, finish after a random latency."""
    window, clock = pacer(limits)
    clock.now = 0.0
    pending: list[tuple[float, int, PacedRequest]] = []
    log: list[tuple[float, PacedRequest]] = []
    open_at_send: list[int] = []
    cap_blocked: list[bool] = []
    cap_freed_at = -1.0
    queue = list(requests)
    while queue:
        r = queue[0]
        wait = window.wait_time(r)
        if pending and pending[0][0] <= clock.now + wait:
            done_at, _, done = heapq.heappop(pending)
            clock.now = max(clock.now, done_at)
            if window.open_count() >= limits.max_open:
                cap_freed_at = clock.now
            window.finished(done)
            continue
        clock.now += wait
        assert window.wait_time(r) == 0.0
        window.sent(r)
        open_at_send.append(window.open_count())
        cap_blocked.append(clock.now == cap_freed_at)
        log.append((clock.now, r))
        heapq.heappush(pending, (clock.now + latency.uniform(0.05, 40.0), len(log), r))
        queue.pop(0)
    return log, open_at_send, cap_blocked


def test_simulated_run_never_breaks_a_rule_and_never_idles():
    rng = random.Random(7)
    limits = PacingLimits(safety_s=0.0, max_open=8)
    whats = ["TRADES", "TRADES", "MIDPOINT", "BID_ASK"]
    requests = [
        req(
            con_id=rng.randrange(6),
            what=rng.choice(whats),
            n=rng.randrange(4),
            kind=rng.choice(["bars", "head"]),
        )
        for _ in range(500)
    ]
    log, open_at_send, cap_blocked = simulate(limits, requests, rng)
    assert len(log) == 500
    assert max(open_at_send) <= limits.max_open
    assert any(cap_blocked), "the run should exercise the open cap"
    for k, (t, r) in enumerate(log):
        assert violations(log[:k], limits, (t, r)) == [], (k, t, r)
        if k and t > log[k - 1][0] and not cap_blocked[k]:
            # Not idle: a moment earlier the same send would have broken a rule.
            assert violations(log[:k], limits, (t - 1e-6, r)), (k, t, r)
    weights = [r.weight for _, r in log]
    assert log[-1][0] >= pacing_floor(weights, limits)


def test_safety_margin_survives_arrival_jitter():
    rng = random.Random(3)
    limits = PacingLimits(safety_s=0.05).scaled(1.0)
    requests = [req(con_id=rng.randrange(3), n=rng.randrange(3)) for _ in range(200)]
    log, _, _ = simulate(limits, requests, rng)
    strict = PacingLimits(safety_s=0.0)
    jittered = [(t + rng.uniform(0.0, 0.049), r) for t, r in log]
    jittered.sort(key=lambda item: item[0])
    for k, entry in enumerate(jittered):
        assert violations(jittered[:k], strict, entry) == []


def test_the_message_throttle_holds_requests_to_the_per_second_budget() -> None:
    """ib_insync queues beyond 45 messages/s; the pacer keeps a second's messages within its budget."""
    window, clock = pacer(PacingLimits(safety_s=0.0, max_weighted=10_000, same_contract_max=10_000))
    window.throttle.per_s = 10
    for n in range(4):  # 4 head timestamps: 2 messages each
        assert window.message_wait() == 0.0
        window.sent(req(n=n, kind=WorkKind.HEAD))
    assert window.message_wait() == 0.0  # 8 sent, one more head fits exactly
    window.sent(req(n=9, kind=WorkKind.HEAD))
    wait = window.message_wait()
    assert wait == pytest.approx(1.0)  # full until the first second's messages age out
    clock.now += wait
    assert window.message_wait() == 0.0


def test_a_violation_widens_the_margin_from_its_clearance_and_round_trip():
    """IB said 162 to a send that cleared the window by 0.1 s on our clock and was answered in 0.3 s: its
    stamps trail ours by more than 0.1 s, so the margin becomes at least 0.4 s (and at least doubles)."""
    window, clock = pacer(PacingLimits(safety_s=0.1))
    for i in range(60):
        send(window, req(con_id=i))
    clock.now += 600.1
    assert window.wait_time(req(con_id=60)) == 0.0
    window.sent(req(con_id=60))
    clock.now += 0.3
    assert window.finished(req(con_id=60), violated=True) == pytest.approx(0.3)
    assert window.margin.at(clock.now) == pytest.approx(0.4)
    assert window.wait_time(req(con_id=61)) == 0.0  # the second-oldest send + 600 + 0.4: now
    clock.now -= 0.05
    assert window.wait_time(req(con_id=61)) == pytest.approx(0.05)


def test_a_violation_widens_the_margin_to_the_longest_round_trip_in_the_window():
    """A stamp lies between its send and its answer: the slowest answer the window holds bounds the lag."""
    window, clock = pacer(PacingLimits(safety_s=0.1))
    window.sent(req(con_id=0))
    clock.now += 2.5
    window.finished(req(con_id=0))  # answered 2.5 s after its send
    window.sent(req(con_id=1))
    clock.now += 0.01
    window.finished(req(con_id=1), violated=True)
    assert window.margin.at(clock.now) == pytest.approx(2.5)


def test_the_learned_margin_halves_back_for_every_clean_window():
    margin = Margin(0.1, 600.0)
    margin.widen(0.1, 1.5, 0.0, now=1000.0)
    assert margin.at(1000.0) == pytest.approx(1.6)
    assert margin.at(1599.0) == pytest.approx(1.6)  # kept for at least one whole window
    assert margin.at(1600.0) == pytest.approx(0.1 + 1.5 / 2)
    assert margin.at(1000.0 + 600 * 12) == pytest.approx(0.1, abs=1e-3)


def test_an_unexplained_violation_doubles_the_margin_up_to_a_tenth_of_the_window():
    margin = Margin(1.0, 600.0)
    assert margin.widen(math.inf, 0.2, 0.0, now=10.0) == 2.0  # no rule bound the send: lag cannot say how much
    assert margin.widen(math.inf, 0.2, 0.0, now=10.1) == 2.0  # sent before that widening: nothing new
    for n in range(2, 12):
        margin.widen(math.inf, 0.2, 0.0, now=10.0 * n)
    assert margin.at(110.0) == 60.0


def ib_with_lagging_stamps(window: PacingWindow, clock: FakeClock, requests: int, in_flight: int = 6,
                           busy_s: float = 300.0, busy_lag: float = 0.35, answer_s: float = 0.01
                           ) -> tuple[list[float], list[float]]:
    """Event simulation of a scheduler (up to `in_flight` open) against a gateway whose stamps trail sends by
    `busy_lag` for its first `busy_s`, then by up to 0.05 s; IB's window is checked by brute force on its
    own stamps. Returns the send times of the requests IB answered with a violation (each is retried) and
    the margin in force after each answer."""
    limits, rng, start = window.limits, random.Random(3), clock.now
    stamps: list[float] = []
    answers: list[tuple[float, int, bool]] = []  # (answered at, request, violated)
    queue, violated_sends, margins, last_stamp = list(range(requests)), [], [], -math.inf
    while queue or answers:
        wait = window.wait_time(req(con_id=queue[0])) if queue and len(answers) < in_flight else math.inf
        if answers and answers[0][0] <= clock.now + wait:
            clock.now, n, violated = max(clock.now, answers[0][0]), *heapq.heappop(answers)[1:]
            window.finished(req(con_id=n), violated=violated)
            margins.append(window.margin.at(clock.now))
            if violated:
                queue.insert(0, n)
            continue
        clock.now += wait
        n = queue.pop(0)
        window.sent(req(con_id=n))
        lag = busy_lag if clock.now - start < busy_s else rng.uniform(0, 0.05)
        last_stamp = stamp = max(last_stamp, clock.now + lag)
        violated = sum(1 for s in stamps if s > stamp - limits.window_s) + 1 > limits.max_weighted
        if violated:
            violated_sends.append(clock.now)
        else:
            stamps.append(stamp)
        heapq.heappush(answers, (stamp + answer_s, n, violated))
    return violated_sends, margins


def test_the_same_violation_is_not_repeated_once_learned():
    """The first window's sends were stamped 0.35 s late, so the six sent 0.1 s past the window on our
    clock all break IB's: they were on the wire before the first 162 came back. The margin learns from
    those answers at least the window's slowest round trip (0.36 s); no send after them draws another in
    400 requests, and once the stamps are prompt again the margin decays back to its base."""
    window, clock = pacer(PacingLimits(safety_s=0.1))
    violated, margins = ib_with_lagging_stamps(window, clock, 400)
    assert len(violated) == 6 and max(violated) - min(violated) < 0.36  # one burst, before any 162 arrived
    assert max(margins) >= 0.36
    assert margins[-1] < 0.12


@pytest.mark.parametrize("n", [1, 59, 60, 61, 130, 600])
def test_time_left_with_an_empty_window_is_the_pacing_floor(n):
    limits = PacingLimits(safety_s=0.0)
    assert time_left(n, [], 1000.0, limits) == pacing_floor([1] * n, limits)


def test_time_left_waits_for_the_window_the_past_sends_filled():
    limits = PacingLimits(safety_s=0.0)
    full = [100.0 + i for i in range(60)]  # 60 sends at t = 100 … 159
    assert time_left(1, full, 200.0, limits) == 700.0 - 200.0, "the 61st waits for the first to leave"
    assert time_left(3, full, 200.0, limits) == 702.0 - 200.0
    assert time_left(61, full, 200.0, limits) == 1300.0 - 200.0, "the 121st waits two windows"
    assert time_left(1, full[:30], 200.0, limits) == 0.0, "room in the window: it goes now"
    assert time_left(31, full[:30], 200.0, limits) == 700.0 - 200.0
    assert time_left(5, full, 800.0, limits) == 0.0, "sends older than the window no longer count"
    assert time_left(0, full, 200.0, limits) == 0.0
