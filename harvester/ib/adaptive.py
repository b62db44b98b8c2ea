"""`--pacing adaptive`: for bars of 1 min and up, a rate and a concurrency that follow IB's answer times.

IB's hard rules (60 requests per 10 minutes, ...) are now documented for bars of 30 s and less only; bars
of 1 min and up meet a "soft" slow-down, and a client that keeps pushing is throttled and in the end
disconnected (docs/ib-rules.md §1.4). IB publishes no threshold, but answers slow down before the
disconnect (docs/sim-hmds.md §3), so the pace watches them.
- It is never slower than strict pacing: while its own sends in the hard window are fewer than the hard
  limit, a request goes as strict would let it (up to `max_open` open). Their answers are not judged:
  sent in a burst, their time is mostly their wait behind one another.
- Beyond, a rate and an open limit decide. The signal is the median time of the last SAMPLE answers of
  windows of about one size (within a factor of two: a fixed cost per answer makes time per bar no
  measure of load; a median: one slow answer is noise) against the lowest such median seen for that
  size. While it stays within FLAT of it, each answer raises the rate by CLIMB and every
  CONCURRENCY_EVERY answers one more request may be open; past GROWN, the rate halves (never below
  strict's long-run rate), one fewer may be open, and the next SAMPLE answers are awaited before judging
  again. A disconnect does the same.
- A 162 pacing violation means the hard rules do apply to these bars at this gateway (the legacy rules):
  the run goes back to strict pacing for good (`fell_back`, said in the summary).
The rate starts at strict pacing's long-run rate and never exceeds MAX_RATE_PER_S (at IB's timescale;
scaled with the pacing windows). Bars of 30 s and less and head timestamps keep every hard rule, and
every send is still recorded in the gateway's pacing budget (`ib.budget`). Pure: the clock is injected.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable

from harvester.ibrules import PacingLimits

FLAT, GROWN = 1.3, 1.8  # the recent median answer time against the calmest median seen for its size
SAMPLE = 5
CLIMB, FALL = 1.15, 0.5
CONCURRENCY_EVERY = 4
START_OPEN = 2  # open requests beyond strict's budget, before any answer has been judged
MAX_RATE_PER_S = 0.8  # 48 a minute at IB's timescale: 8x the strict long-run rate of 60 per 10 minutes


class AdaptivePace:
    """When the next soft request (bars of 1 min and up) may go, and how many may be open."""

    def __init__(self, limits: PacingLimits, clock: Callable[[], float], max_open: int) -> None:
        self.clock = clock
        self.limits = limits
        self.time_unit = limits.window_s / 600.0  # 1 at IB's timescale, the pacing scale otherwise
        self.min_rate = limits.max_weighted / limits.window_s  # strict's long-run rate, per scaled second
        self.rate = self.min_rate
        self.max_rate = MAX_RATE_PER_S / self.time_unit
        self.max_open = max_open
        self.open_limit = min(START_OPEN, max_open)
        self.open = 0
        self.fell_back = ""  # why the run went back to strict pacing, if it did
        self._recent: dict[int, deque[float]] = {}  # the last answer times, by window size (a power of two)
        self._calm: dict[int, float] = {}  # the lowest median of SAMPLE answer times seen, by window size
        self._flat = 0
        self._last_sent = -math.inf
        self._sends: deque[float] = deque()  # this pace's sends within the hard window
        self._unjudged = 0  # answers still due to requests that went as strict would send them

    @property
    def active(self) -> bool:
        return not self.fell_back

    def wait_time(self) -> float:
        """Seconds until the next soft request may go; inf while the open limit is reached."""
        now = self.clock()
        if self._strict_has_room(now):  # strict would send it now
            return 0.0 if self.open < self.max_open else math.inf
        if self.open >= self.open_limit:
            return math.inf
        return max(0.0, self._last_sent + 1.0 / self.rate - now)

    def sent(self) -> None:
        self._last_sent = self.clock()
        self._unjudged += self._strict_has_room(self._last_sent)
        self._sends.append(self._last_sent)
        self.open += 1

    def _strict_has_room(self, now: float) -> bool:
        while self._sends and now - self._sends[0] >= self.limits.window_s:
            self._sends.popleft()
        return len(self._sends) < self.limits.max_weighted

    def answered(self, latency_s: float, bars: int) -> None:
        """A soft request was answered after `latency_s`, for a window of `bars` (its planned estimate)."""
        self.open = max(0, self.open - 1)
        if self._unjudged:  # sent in strict's burst: its time is mostly its queue behind the burst
            self._unjudged -= 1
            return
        recent = self._recent.setdefault(max(1, bars).bit_length(), deque(maxlen=SAMPLE))
        recent.append(latency_s)
        if len(recent) < SAMPLE:
            return
        median = statistics.median(recent)
        size = max(1, bars).bit_length()
        self._calm[size] = min(self._calm.get(size, math.inf), max(median, 1e-6))
        ratio = median / self._calm[size]
        if ratio <= FLAT:
            self.rate = min(self.max_rate, self.rate * CLIMB)
            self._flat += 1
            if self._flat % CONCURRENCY_EVERY == 0:
                self.open_limit = min(self.max_open, self.open_limit + 1)
        elif ratio > GROWN:
            self._slow_down()

    def ended(self) -> None:
        """A soft request ended without an answer that says anything about load (an error, a timeout)."""
        self.open = max(0, self.open - 1)

    def disconnected(self) -> None:
        self._slow_down()

    def violation(self) -> None:
        """IB paced a soft request by the hard rules: they apply here; strict pacing for the rest of the run."""
        self.fell_back = "a 162 pacing violation on bars of 1 min or more: strict pacing for the rest of the run"

    def _slow_down(self) -> None:
        self.rate = max(self.rate * FALL, self.min_rate)
        self.open_limit = max(1, self.open_limit - 1)
        self._flat = 0
        self._recent.clear()
