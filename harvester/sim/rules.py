"""IB's historical-data pacing rules, enforced with the simulator's own code (docs/ib-rules.md §1).

Rules (all time constants × `scale`):
  * at most `max_open` requests open at once (head timestamps count until cancelled) → 322;
  * no identical request within `identical_s` (15 s) → 162 pacing;
  * at most `same_contract_max` (5) for one contract+exchange+whatToShow within `same_contract_s` (2 s);
    the 6th is a violation → 162 pacing;
  * at most `window_max` (60) weighted requests in any `window_s` (600 s) sliding window → 162 pacing.
BID_ASK weighs `bid_ask_weight` (2) in the 10-minute window (the other rules count requests).
Violated requests are NOT recorded (they never reached HMDS), so a client that backs off is not
punished twice.
A request is judged at its arrival stamp (`ArrivalStamps`): the instant its message was read off the socket,
plus an optional modelled lag, never the later moment its turn came to be checked (docs/ib-rules.md §1.9).
The hard rules apply to the bar sizes in `bar_sizes` (None = all: the old guide's strict reading,
which the harvester must survive, §1.4); head-timestamp requests are always paced (§1.5).
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class PacingLimits:
    """The published limits; change them to model a gentler or stricter gateway."""

    window_s: float = 600.0
    window_max: int = 60
    identical_s: float = 15.0
    same_contract_s: float = 2.0
    same_contract_max: int = 5
    max_open: int = 50
    bid_ask_weight: int = 2
    bar_sizes: frozenset[str] | None = None  # None: every bar size is paced

    def paces(self, bar_size: str | None) -> bool:
        """Whether the hard rules apply; `None` stands for a head-timestamp request (always paced)."""
        return bar_size is None or self.bar_sizes is None or bar_size in self.bar_sizes


SMALL_BAR_SIZES = frozenset({"1 secs", "5 secs", "10 secs", "15 secs", "30 secs"})


@dataclass(frozen=True)
class PacedRequest:
    """What the rules look at: the identity of the request and of its contract+exchange+whatToShow."""

    identity: Hashable
    contract_key: Hashable
    what_to_show: str
    bar_size: str | None  # None for head timestamps


class Verdict(enum.Enum):
    ADMITTED = "admitted"
    PACING_VIOLATION = "pacing"
    TOO_MANY_OPEN = "too_many_open"


class PacingEngine:
    """Sliding-window bookkeeping over an injected monotonic clock (seconds)."""

    def __init__(self, limits: PacingLimits, clock: Callable[[], float], scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError(f"pacing scale must be positive, got {scale}")
        self.limits = limits
        self._clock = clock
        self._scale = scale
        self._window: deque[tuple[float, int]] = deque()
        self._recent: deque[tuple[float, Hashable, Hashable]] = deque()
        self.open_requests = 0

    def weight(self, request: PacedRequest) -> int:
        return self.limits.bid_ask_weight if request.what_to_show == "BID_ASK" else 1

    def admit(self, request: PacedRequest, at: float | None = None) -> Verdict:
        """Decide one request as of its stamp `at` (default: now); an admitted request is recorded and holds
        an open slot until `release`. Stamps are taken in arrival order (`ArrivalStamps`)."""
        if self.open_requests >= self.limits.max_open:
            return Verdict.TOO_MANY_OPEN
        now = self._clock() if at is None else at
        weight = self.weight(request)
        if self.limits.paces(request.bar_size):
            if self._violates(request, weight, now):
                return Verdict.PACING_VIOLATION
            self._window.append((now, weight))
            self._recent.append((now, request.identity, request.contract_key))
        self.open_requests += 1
        return Verdict.ADMITTED

    def release(self) -> None:
        """An admitted request was answered or cancelled: its open slot is free again."""
        self.open_requests = max(0, self.open_requests - 1)

    def window_load(self) -> int:
        """Weighted requests inside the current 10-minute window."""
        self._expire(self._clock())
        return sum(w for _, w in self._window)

    def _violates(self, request: PacedRequest, weight: int, now: float) -> bool:
        self._expire(now)
        limits, scale = self.limits, self._scale
        if sum(w for _, w in self._window) + weight > limits.window_max:
            return True
        same_contract = 0
        for sent, identity, contract_key in self._recent:
            if identity == request.identity and now - sent < limits.identical_s * scale:
                return True
            if contract_key == request.contract_key and now - sent < limits.same_contract_s * scale:
                same_contract += 1
        return same_contract + 1 > limits.same_contract_max

    def _expire(self, now: float) -> None:
        window = self.limits.window_s * self._scale
        while self._window and now - self._window[0][0] >= window:
            self._window.popleft()
        keep = max(self.limits.identical_s, self.limits.same_contract_s) * self._scale
        while self._recent and now - self._recent[0][0] >= keep:
            self._recent.popleft()


class ArrivalStamps:
    """Where the simulator stamps a request for pacing: when its message is read off the socket, plus a
    modelled lag drawn uniformly from [0, `lag_s`] (seeded), never before the previous stamp.

    Stamping when a request's turn to be checked came instead made the stamps trail the wire by the bar
    building of every request read before it (six at once: the sixth ~0.1 s late). IB's own stamps trail a
    client's send by network, gateway and HMDS queueing that no client sees; `lag_s` models that spread,
    unscaled by the pacing scale because real delays do not shrink with it. HMDS takes requests in order.
    """

    def __init__(self, clock: Callable[[], float], lag_s: float = 0.0, seed: int = 0) -> None:
        if lag_s < 0:
            raise ValueError(f"stamp lag must be >= 0, got {lag_s}")
        self._clock = clock
        self.lag_s = lag_s
        self._rng = random.Random(seed)
        self._last = -float("inf")

    def stamp(self) -> tuple[float, float]:
        """(received, stamp) of a request read now: the receipt instant and its pacing stamp."""
        received = self._clock()
        lag = self._rng.uniform(0.0, self.lag_s) if self.lag_s else 0.0
        self._last = max(self._last, received + lag)
        return received, self._last
