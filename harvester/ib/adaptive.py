"""`--pacing adaptive`: for bars of 1 min and up, a rate and a concurrency that follow IB's answer times.

IB's hard rules (60 requests per 10 minutes, ...) are now documented for bars of 30 s and less only; bars
of 1 min and up meet a "soft" slow-down, and a client that keeps pushing is throttled and in the end
disconnected (docs/ib-rules.md §1.4). IB publishes no threshold, but answers slow down before the
disconnect (docs/sim-hmds.md §3), so the pace watches them: the median time per bar asked of the last
SAMPLE answers (a median: one slow answer is noise) against the lowest such median seen. While it stays
within FLAT of it, each answer raises the rate by CLIMB and every CONCURRENCY_EVERY answers one more
request may be open; past GROWN of it, the rate halves (never below strict's long-run rate) and one fewer
may be open, and the next SAMPLE answers are awaited before judging again. A disconnect does the same. A 162 pacing violation means the hard rules do apply to these bars at this
gateway (the legacy rules): the run goes back to strict pacing for good (`fell_back`, said in the summary).
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

FLAT, GROWN = 1.3, 1.6  # the recent median time per bar against the lowest median seen
SAMPLE = 5
CLIMB, FALL = 1.15, 0.5
CONCURRENCY_EVERY = 4
MAX_RATE_PER_S = 0.8  # 48 a minute at IB's timescale: 8x the strict long-run rate of 60 per 10 minutes


class AdaptivePace:
    """When the next soft request (bars of 1 min and up) may go, and how many may be open."""

    def __init__(self, limits: PacingLimits, clock: Callable[[], float], max_open: int) -> None:
        self.clock = clock
        self.time_unit = limits.window_s / 600.0  # 1 at IB's timescale, the pacing scale otherwise
        self.min_rate = limits.max_weighted / limits.window_s  # strict's long-run rate, per scaled second
        self.rate = self.min_rate
        self.max_rate = MAX_RATE_PER_S / self.time_unit
        self.max_open = max_open
        self.open_limit = 1
        self.open = 0
        self.fell_back = ""  # why the run went back to strict pacing, if it did
        self._best: float | None = None  # the lowest median time per bar seen
        self._recent: deque[float] = deque(maxlen=SAMPLE)
        self._flat = 0
        self._last_sent = -math.inf

    @property
    def active(self) -> bool:
        return not self.fell_back

    def wait_time(self) -> float:
        """Seconds until the next soft request may go; inf while the open limit is reached."""
        if self.open >= self.open_limit:
            return math.inf
        return max(0.0, self._last_sent + 1.0 / self.rate - self.clock())

    def sent(self) -> None:
        self._last_sent = self.clock()
        self.open += 1

    def answered(self, latency_s: float, bars: int) -> None:
        """A soft request was answered after `latency_s`, for a window of `bars` (its planned estimate)."""
        self.open = max(0, self.open - 1)
        self._recent.append(latency_s / max(1, bars))
        if len(self._recent) < SAMPLE:
            return
        median = statistics.median(self._recent)
        if self._best is None or median < self._best:
            self._best = median
        if median <= FLAT * self._best:
            self.rate = min(self.max_rate, self.rate * CLIMB)
            self._flat += 1
            if self._flat % CONCURRENCY_EVERY == 0:
                self.open_limit = min(self.max_open, self.open_limit + 1)
        elif median > GROWN * self._best:
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
