"""When may the next historical request go: IB's pacing rules over a sliding window of real send times.

Not a token bucket: a bucket refills continuously, so it lets 60 + refill through in one 10-minute
window and IB answers the excess with 162 "pacing violation". Each rule here is "at most k events in
any span of length s", checked against the recorded send times, plus a safety margin because the
gateway stamps arrival, not our send, by a lag nobody publishes (docs/ib-rules.md §1.9). The margin
learns (`Margin`): a violation widens it from what was observed, and it decays back while sends stay
clean. It also keeps requests under the API's message throttle
(docs/ib-rules.md §1): ib_insync queues rather than sends beyond 45 messages a second, and a queued
request would reach IB later than the pacer stamped it. Pure: the clock is injected.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field

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
    # paced by `ib.adaptive` instead of the 60-per-10-minutes window (bars of 1 min and up, --pacing adaptive);
    # counted in the window all the same, so strict requests and other processes see it
    soft: bool = field(default=False, compare=False)

    @property
    def contract_key(self) -> tuple[int, str, str]:
        """IB's burst rule counts per contract, exchange and whatToShow."""
        return (self.con_id, self.exchange, self.what_to_show)

    @property
    def messages(self) -> int:
        """API messages the request costs: a head timestamp is sent, then cancelled."""
        return 2 if self.kind is WorkKind.HEAD else 1


class MessageThrottle:
    """API messages per second, kept under ib_insync's own throttle (per connection)."""

    def __init__(self, clock: Callable[[], float], per_s: int = MESSAGES_PER_S) -> None:
        self._clock, self.per_s = clock, per_s
        self._sent: deque[float] = deque()  # API messages sent in the last second

    def wait(self, messages: int = 2) -> float:
        """Seconds until `messages` more fit (default: the costliest request's 2); 0 means now."""
        now = self._clock()
        while self._sent and self._sent[0] <= now - 1.0:
            self._sent.popleft()
        if len(self._sent) + messages > self.per_s:
            return max(0.001, self._sent[0] + 1.0 - now)
        return 0.0

    def record(self, messages: int) -> None:
        self._sent.extend([self._clock()] * messages)


class Margin:
    """The safety margin added to every span: `limits.safety_s` until a violation shows IB's stamps trail
    ours by more, then wider, halving its excess back toward the base for every clean window.

    Every stamp of IB's lies between its send and its answer, so two stamps can differ from their sends'
    spacing by at most the earlier one's send→answer delay. On a violation the margin becomes at least the
    longest such delay among the sends the window holds, at least how far past its rule the violated send
    went plus its own round trip (the violation's timing), and at least twice what it was (progress when
    nothing explains it); never more than a tenth of the window. Decay is by clean windows, so a margin
    that just learned holds for one whole window at least: the same violation does not come back.
    """

    def __init__(self, base_s: float, window_s: float, peak_s: float | None = None, since: float = -math.inf):
        self.base_s, self.window_s = base_s, window_s
        self.cap_s = max(base_s, window_s / 10)
        self.peak_s = base_s if peak_s is None else peak_s  # the margin as last widened, at `since`
        self.since = since

    def at(self, now: float) -> float:
        """The margin in force at `now`."""
        if self.peak_s <= self.base_s or self.window_s <= 0:
            return self.base_s
        clean_windows = max(0, math.floor((now - self.since) / self.window_s))
        return self.base_s + (self.peak_s - self.base_s) / 2 ** clean_windows

    def widen(self, clearance: float, round_trip: float, longest_round_trip: float, now: float) -> float:
        """Learn from a violation: the send went `clearance` s past its rule (inf: none bound it) and was
        answered after `round_trip`; the window's sends took up to `longest_round_trip` to be answered. A
        send made before the margin last widened was paced under the old one: it does not double it again."""
        current = self.at(now)
        timing = clearance + max(0.0, round_trip) if math.isfinite(clearance) else 0.0
        paced_under_old = now - round_trip <= self.since
        doubled = current if paced_under_old else 2 * max(current, 1e-3)
        self.peak_s = min(self.cap_s, max(doubled, timing, longest_round_trip))
        self.since = now
        return self.peak_s


class PacingWindow:
    """Sliding-window pacer: `wait_time` 0 means send now; call `sent` after sending, `finished` when done
    (saying whether IB answered it with a pacing violation anyway: the margin learns from that)."""

    def __init__(self, limits: PacingLimits, clock: Callable[[], float], messages_per_s: int = MESSAGES_PER_S,
                 margin: Margin | None = None) -> None:
        self.limits = limits
        self._clock = clock
        self.margin = margin if margin is not None else Margin(limits.safety_s, limits.window_s)
        self._clearance: dict[PacedRequest, deque[tuple[float, float]]] = {}  # open sends: (sent at, clearance)
        self._round_trips: deque[tuple[float, float]] = deque()  # answered sends: (sent at, send→answer s)
        self.throttle = MessageThrottle(clock, messages_per_s)
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
        return max(0.0, self._ready(req, self.margin.at(now)) - now)

    @contextlib.contextmanager
    def turn(self) -> Iterator[PacingWindow]:
        """One decision: pick, send and record as one step (a shared budget makes that atomic)."""
        yield self

    def message_wait(self) -> float:
        """Seconds until the costliest request fits under the message throttle; 0 means now."""
        return self.throttle.wait()

    def sent(self, req: PacedRequest) -> float:
        """Record that `req` went out now (call it right after the send: a late stamp errs safe). Returns how
        far past its rules, margin aside, it went (inf: no rule bound it), for `finished` to learn from."""
        now = self._clock()
        self._expire(now)
        clearance = now - self._ready(req, 0.0)
        self._clearance.setdefault(req, deque()).append((now, clearance))
        self.throttle.record(req.messages)
        self._sends.append((now, req.weight))
        self._weight_in_window += req.weight
        self._identical[req.identity] = now
        self._by_contract.setdefault(req.contract_key, deque()).append(now)
        self._open[req] += 1
        return clearance

    def remember(self, req: PacedRequest, at: float, still_open: bool = False, round_trip: float | None = None
                 ) -> None:
        """Count a send made earlier (at `at` on this clock), e.g. by another process: a budget seeded from
        the journal or the ledger never grants what those sends used up. `still_open`: it holds a slot;
        `round_trip`: it was answered that long after it went."""
        position = sum(1 for sent_at, _ in self._sends if sent_at <= at)
        self._sends.insert(position, (at, req.weight))
        self._weight_in_window += req.weight
        self._identical[req.identity] = max(at, self._identical.get(req.identity, at))
        times = self._by_contract.setdefault(req.contract_key, deque())
        times.insert(sum(1 for t in times if t <= at), at)
        if still_open:
            self._open[req] += 1
        if round_trip is not None:
            self._round_trips.append((at, round_trip))
        self._expire(self._clock())

    def finished(self, req: PacedRequest, violated: bool = False) -> float | None:
        """`req` was answered or cancelled (head timestamps: cancelled) and no longer holds an open slot.
        Finishing a request that is not open is a no-op, so a late cancel after an answer is harmless.
        `violated`: IB answered it with a pacing violation; the margin widens (`Margin.widen`). Returns the
        send→answer delay of the send it closed, if it knew of one."""
        if self._open[req] > 0:
            self._open[req] -= 1
        if self._open[req] <= 0:
            del self._open[req]
        pending = self._clearance.get(req)
        if not pending:
            return None
        sent_at, clearance = pending.popleft()
        if not pending:
            del self._clearance[req]
        now = self._clock()
        round_trip = now - sent_at
        if violated:
            self.margin.widen(clearance, round_trip, self.longest_round_trip(), now)
        else:
            self._round_trips.append((sent_at, round_trip))
        return round_trip

    def longest_round_trip(self) -> float:
        """The longest send→answer delay among the answered sends the window still holds."""
        return max((trip for _, trip in self._round_trips), default=0.0)

    def open_count(self) -> int:
        return sum(self._open.values())

    def _ready(self, req: PacedRequest, margin: float) -> float:
        """When `req` clears every rule with `margin` added to each span (-inf: no rule binds it)."""
        weighted = -math.inf if req.soft else self._weighted_ready(req.weight, margin)
        return max(weighted, self._identical_ready(req, margin), self._contract_ready(req, margin))

    def _weighted_ready(self, weight: int, margin: float) -> float:
        span = self.limits.window_s + margin
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

    def _identical_ready(self, req: PacedRequest, margin: float) -> float:
        last = self._identical.get(req.identity)
        if last is None:
            return -math.inf
        return last + self.limits.identical_s + margin

    def _contract_ready(self, req: PacedRequest, margin: float) -> float:
        times = self._by_contract.get(req.contract_key)
        if not times or len(times) < self.limits.same_contract_max:
            return -math.inf
        return times[-self.limits.same_contract_max] + self.limits.same_contract_s + margin

    def _expire(self, now: float) -> None:
        """Forget sends no rule can see any more (keeps every check O(window)); the widest margin counts."""
        limits, margin = self.limits, max(self.margin.at(now), self.margin.cap_s)
        horizon = now - (limits.window_s + margin)
        while self._sends and self._sends[0][0] <= horizon:
            self._weight_in_window -= self._sends.popleft()[1]
        while self._round_trips and self._round_trips[0][0] <= horizon:
            self._round_trips.popleft()
        identical_horizon = now - (limits.identical_s + margin)
        for identity in [k for k, t in self._identical.items() if t <= identical_horizon]:
            del self._identical[identity]
        contract_horizon = now - (limits.same_contract_s + margin)
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


def time_left(remaining: int, recent: Sequence[float], now: float, limits: PacingLimits) -> float:
    """When the last of `remaining` requests can go out under IB's window, seconds from `now`, given when
    the `recent` ones went (any order; those older than the window no longer count).

    The progress bar's ETA: under pacing a rate guess is wrong by the window (28 % done said 8 s left
    when 40 remained). Send j of the remaining waits for the send `max_weighted` places before it to
    leave the window, so it goes one window after that one: O(1), called after every answer."""
    if remaining <= 0:
        return 0.0
    w, span = limits.max_weighted, limits.window_s + limits.safety_s
    past = sorted(t for t in recent if t > now - span)[-w:]
    j = remaining - 1
    rounds, j = divmod(j, w)
    position = len(past) + j - w  # the send this one waits for, among the past ones (< 0: none)
    first = now if position < 0 else max(now, past[position] + span)
    return first - now + rounds * span
