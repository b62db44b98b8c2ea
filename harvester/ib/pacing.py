"""When may the next historical request go: IB's pacing rules over a sliding window of real send times.

Not a token bucket: a bucket refills continuously, so it lets 60 + refill through in one 10-minute
window and IB answers the excess with 162 "pacing violation". Each rule here is "at most k events in
any span of length s", checked against the recorded send times, plus a safety margin because the
gateway timestamps arrival, not our send. It also keeps requests under the API's message throttle
(docs/ib-rules.md §1): ib_insync queues rather than sends beyond 45 messages a second, and a queued
request would reach IB later than the pacer stamped it. Pure: the clock is injected.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from harvester.ibrules import PacingLimits
from harvester.model import WorkKind

MESSAGES_PER_S = 40  # under ib_insync's 45/s throttle, with room for the odd cancel


@dataclass(frozen=True)
class PacedRequest:
    """What the pacer needs to know about one request (bars or head timestamp)."""

    con_id: int
    exchange: str
    what_to_show: str
    identity: tuple[Hashable, ...]  # equal identities are "identical requests" for IB's 15 s rule
    weight: int  # ibrules.request_weight(what_to_show)
    kind: WorkKind = WorkKind.BARS  # head timestamps are paced like bars (docs/ib-rules.md §1)

    @property
    def contract_key(self) -> tuple[int, str, str]:
        """IB's burst rule counts per contract, exchange and whatToShow."""
        return (self.con_id, self.exchange, self.what_to_show)

    @property
    def messages(self) -> int:
        """API messages the request costs: a head timestamp is sent, then cancelled."""
        return 2 if self.kind is WorkKind.HEAD else 1


class PacingWindow:
    """Sliding-window pacer: `wait_time` 0 means send now; call `sent` after sending, `finished` when done."""

    def __init__(self, limits: PacingLimits, clock: Callable[[], float], messages_per_s: int = MESSAGES_PER_S) -> None:
        self.limits = limits
        self._clock = clock
        self.messages_per_s = messages_per_s
        self._messages: deque[float] = deque()  # API messages sent in the last second
        self._sends: deque[tuple[float, int]] = deque()  # (send time, weight), oldest first
        self._weight_in_window = 0
        self._identical: dict[tuple[Hashable, ...], float] = {}
        self._by_contract: dict[tuple[int, str, str], deque[float]] = {}
        self._open: Counter[PacedRequest] = Counter()

    def wait_time(self, req: PacedRequest) -> float:
        """Seconds until `req` may go without breaking a rule; math.inf while the open cap is full
        (it frees only when some request finishes)."""
        if self.open_count() >= self.limits.max_open:
            return math.inf
        now = self._clock()
        self._expire(now)
        ready = max(self._weighted_ready(req.weight), self._identical_ready(req), self._contract_ready(req))
        return max(0.0, ready - now)

    def message_wait(self) -> float:
        """Seconds until the costliest request (2 messages) fits under the message throttle; 0 means now."""
        now = self._clock()
        while self._messages and self._messages[0] <= now - 1.0:
            self._messages.popleft()
        if len(self._messages) + 2 > self.messages_per_s:
            return max(0.001, self._messages[0] + 1.0 - now)
        return 0.0

    def sent(self, req: PacedRequest) -> None:
        """Record that `req` went out now (call it right after the send: a late stamp errs safe)."""
        now = self._clock()
        self._expire(now)
        self._messages.extend([now] * req.messages)
        self._sends.append((now, req.weight))
        self._weight_in_window += req.weight
        self._identical[req.identity] = now
        self._by_contract.setdefault(req.contract_key, deque()).append(now)
        self._open[req] += 1

    def remember(self, req: PacedRequest, at: float) -> None:
        """Count a send made earlier (at `at` on this clock, already answered), e.g. by another process: a
        budget seeded from the journal never grants what those sends used up."""
        position = sum(1 for sent_at, _ in self._sends if sent_at <= at)
        self._sends.insert(position, (at, req.weight))
        self._weight_in_window += req.weight
        self._identical[req.identity] = max(at, self._identical.get(req.identity, at))
        times = self._by_contract.setdefault(req.contract_key, deque())
        times.insert(sum(1 for t in times if t <= at), at)
        self._expire(self._clock())

    def finished(self, req: PacedRequest) -> None:
        """`req` was answered or cancelled (head timestamps: cancelled) and no longer holds an open slot.
        Finishing a request that is not open is a no-op, so a late cancel after an answer is harmless."""
        if self._open[req] > 0:
            self._open[req] -= 1
        if self._open[req] <= 0:
            del self._open[req]

    def open_count(self) -> int:
        return sum(self._open.values())

    def _weighted_ready(self, weight: int) -> float:
        span = self.limits.window_s + self.limits.safety_s
        excess = self._weight_in_window + weight - self.limits.max_weighted
        if excess <= 0:
            return -math.inf
        if weight > self.limits.max_weighted:
            raise ValueError(f"request weight {weight} exceeds the window limit {self.limits.max_weighted}")
        freed = 0
        for sent_at, sent_weight in self._sends:
            freed += sent_weight
            if freed >= excess:
                return sent_at + span
        raise AssertionError("weighted window bookkeeping out of step")  # unreachable: weights sum up

    def _identical_ready(self, req: PacedRequest) -> float:
        last = self._identical.get(req.identity)
        if last is None:
            return -math.inf
        return last + self.limits.identical_s + self.limits.safety_s

    def _contract_ready(self, req: PacedRequest) -> float:
        times = self._by_contract.get(req.contract_key)
        if not times or len(times) < self.limits.same_contract_max:
            return -math.inf
        return times[-self.limits.same_contract_max] + self.limits.same_contract_s + self.limits.safety_s

    def _expire(self, now: float) -> None:
        """Forget sends no rule can see any more (keeps every check O(window))."""
        limits = self.limits
        horizon = now - (limits.window_s + limits.safety_s)
        while self._sends and self._sends[0][0] <= horizon:
            self._weight_in_window -= self._sends.popleft()[1]
        identical_horizon = now - (limits.identical_s + limits.safety_s)
        for identity in [k for k, t in self._identical.items() if t <= identical_horizon]:
            del self._identical[identity]
        contract_horizon = now - (limits.same_contract_s + limits.safety_s)
        for key, times in list(self._by_contract.items()):
            while times and times[0] <= contract_horizon:
                times.popleft()
            if not times:
                del self._by_contract[key]


def pacing_floor(weights: Sequence[int], limits: PacingLimits) -> float:
    """Least wall time IB's window allows for these requests: (ceil(W/max) − 1) · window.

    The ETA `--plan` prints and the benchmark's floor; latency and the other rules only add to it.
    """
    total = sum(weights)
    if total <= 0:
        return 0.0
    return (math.ceil(total / limits.max_weighted) - 1) * limits.window_s
