"""How long IB's history service (HMDS) takes to answer, and which answers never come (docs/sim-hmds.md).

IB publishes no numbers for either. The model: an answer takes a fixed cost plus a cost growing with the
bars asked for (linearly on a quiet day, as a power on a busy one: ib_insync #268), times a load factor
from what HMDS served lately and what it is serving now. Intraday answers over `max_bars` never come (the
client times out and cancels; the cancel gets IB's 162), and under a load past `max_load` an answer comes
only after `late_s`. Daily and longer bars are IB's pre-built ones: they pay the quiet linear cost only,
load or not, and add a request but no bars to the load.
Under the `current` rules, bars of 1 min and up meet IB's "soft" throttle instead of the hard pacing
rules: answers slow down as the request rate rises, and past `disconnect_at` the client is disconnected.
Every span is multiplied by the scale the simulator runs at, so tests stay fast.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

RULES = ("legacy", "current")  # legacy: the hard rules for every bar size; current: small bars only + soft
DAILY_PER_BAR_S = 0.0015 / 10  # pre-built daily bars: 40 years (10,000 bars) in under 2 s, busy or not


@dataclass(frozen=True)
class HmdsProfile:
    """Answer time = (base + per_bar × bars + curve × (bars / 1000) ** exponent) × load factor, seconds."""

    name: str = "quiet"
    base_s: float = 0.3
    per_bar_s: float = 0.0015
    curve_s: float = 0.0  # the non-linear part: a busy HMDS slows down faster than the bars grow
    exponent: float = 1.0
    max_bars: int | None = None  # intraday answers over this many bars never come
    load_window_s: float = 60.0  # "recent" for the load factor (× the pacing scale)
    load_requests: float = 600.0  # recent requests that add 1 to the pressure
    load_bars: float = 1_000_000.0  # recent bars that add 1 to the pressure
    open_weight: float = 0.02  # each other answer in progress adds this to the pressure
    max_load: float | None = None  # a pressure past this: the answer comes only after `late_s`
    late_s: float = 120.0  # IB's limitations page: large requests can take minutes
    workers: int = 4  # answers in progress at once; the rest queue

    def __post_init__(self) -> None:
        if self.max_bars is not None and self.max_bars < 1:
            raise ValueError(f"hmds max_bars must be positive, got {self.max_bars}")
        if self.workers < 1:
            raise ValueError(f"hmds workers must be positive, got {self.workers}")

    def size_s(self, bars: int, intraday: bool = True) -> float:
        """Unscaled answer time of an answer of `bars` bars on an idle HMDS."""
        if not intraday:
            return self.base_s + DAILY_PER_BAR_S * bars
        return self.base_s + self.per_bar_s * bars + self.curve_s * (bars / 1000) ** self.exponent

    def with_max_bars(self, max_bars: int | None) -> HmdsProfile:
        return self if max_bars is None else replace(self, max_bars=max_bars)


QUIET = HmdsProfile()
# ib_insync #268, 1-min AAPL bars: 1 D (390 bars) in 0.6 s, 5 D (1,950) in 8.3 s, 6 D and 10 D no answer
# within 60 s. 0.3 + 2.048 × (bars/1000)^2.04 meets both times; nothing over 2,000 bars is answered.
BUSY = HmdsProfile(name="busy", base_s=0.3, per_bar_s=0.0, curve_s=2.048, exponent=2.04, max_bars=2000,
                   load_requests=120.0, load_bars=60_000.0, open_weight=0.15, max_load=4.0)
PROFILES = {p.name: p for p in (QUIET, BUSY)}


@dataclass(frozen=True)
class SoftThrottle:
    """IB's "soft" slow-down for bars of 1 min and up under the current rules (docs/sim-hmds.md §3).

    Up to `free` such requests in any `window_s` pass unslowed; beyond, answers take
    1 + ((n − free) / free)² times as long; the request that makes it more than `disconnect_at` gets its
    client disconnected. Spans × the pacing scale.
    """

    window_s: float = 60.0
    free: int = 30
    disconnect_at: int = 60

    def factor(self, recent: int) -> float:
        over = max(0, recent - self.free)
        return 1.0 + (over / self.free) ** 2


@dataclass(frozen=True)
class Answer:
    """What HMDS does with one admitted request: answer after `delay_s`, never (`None`), or disconnect."""

    delay_s: float | None
    withheld: str = ""  # why no answer comes: "size" (over max_bars)
    late: bool = False
    disconnect: bool = False


class HmdsLoad:
    """The gateway-wide load the model reads: recent answers (time, bars), answers in progress, and the
    rate of soft-throttled requests. Clock injected (monotonic seconds)."""

    def __init__(self, profile: HmdsProfile, clock: Callable[[], float], *, latency_scale: float,
                 pacing_scale: float, throttle: SoftThrottle | None = None) -> None:
        self.profile, self.throttle = profile, throttle
        self._clock = clock
        self._latency_scale, self._pacing_scale = latency_scale, pacing_scale
        self._recent: deque[tuple[float, int]] = deque()
        self._soft: deque[float] = deque()
        self.in_progress = 0

    def pressure(self) -> float:
        """How loaded HMDS is now: recent requests and bars against the profile's scales, plus others open."""
        self._expire(self._clock())
        p = self.profile
        bars = sum(b for _, b in self._recent)
        return len(self._recent) / p.load_requests + bars / p.load_bars + p.open_weight * self.in_progress

    def plan(self, bars: int, intraday: bool, soft: bool) -> Answer:
        """Decide one answer and count it as begun (call `done` when it ends, answered or not)."""
        p, now = self.profile, self._clock()
        throttled = soft and self.throttle is not None
        recent_soft = self._count_soft(now) if throttled else 0
        if throttled and recent_soft > self.throttle.disconnect_at:
            self._soft.clear()  # the client is gone; its successor starts a fresh count
            return Answer(None, disconnect=True)
        pressure = self.pressure()
        self._recent.append((now, bars if intraday else 0))  # pre-built bars cost HMDS a lookup, not work
        self.in_progress += 1
        if intraday and p.max_bars is not None and bars > p.max_bars:
            return Answer(None, withheld="size")
        factor = (1.0 + pressure) ** 2 if intraday else 1.0
        if throttled:
            factor *= self.throttle.factor(recent_soft)
        seconds = p.size_s(bars, intraday) * factor
        if intraday and p.max_load is not None and pressure > p.max_load:
            return Answer(max(seconds, p.late_s) * self._latency_scale, late=True)
        return Answer(seconds * self._latency_scale)

    def done(self) -> None:
        self.in_progress = max(0, self.in_progress - 1)

    def _count_soft(self, now: float) -> int:
        """Record one soft-throttled request now; how many the throttle window holds with it."""
        window = self.throttle.window_s * self._pacing_scale
        while self._soft and now - self._soft[0] >= window:
            self._soft.popleft()
        self._soft.append(now)
        return len(self._soft)

    def _expire(self, now: float) -> None:
        window = self.profile.load_window_s * self._pacing_scale
        while self._recent and now - self._recent[0][0] >= window:
            self._recent.popleft()


def calibration_error(profile: HmdsProfile = BUSY) -> float:
    """Largest relative miss of #268's two answered requests (idle HMDS); a test keeps it small."""
    return max(abs(profile.size_s(bars) - seconds) / seconds for bars, seconds in ((390, 0.6), (1950, 8.3)))
