"""How many bars an intraday window asks IB for, learned per bar size from how IB answered.

IB publishes no answer times; ib_insync #268 measured 1-min bars answered in 0.6 s for 390 bars, 8.3 s for
1,950 and not at all within 60 s for 2,340 (docs/sim-hmds.md). So the target starts at the job's
`target_bars` (or what the warehouse learned on earlier nights), and after each answer of a window that
asked for most of it:
- a timeout or a cancelled query quarters it (the window itself is split and retried, plan.split_request);
- an answer slower than half its timeout shrinks it by 30 %;
- an answer quicker than a tenth of its timeout grows it by 25 %, up to the job's target.
It never goes below MIN_TARGET (the planner never cuts a window below one session anyway).

A target no window has been answered at yet is probed: one window of that size is out at a time, and the
others are cut to the largest size answered so far, or wait for the probe's answer when none has been,
so a gateway that leaves big answers unanswered costs one unanswered window per step down, not one per
series in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harvester.ibrules import bar_size
from harvester.model import BarRequest, Outcome

MIN_TARGET = 100
GROW, SHRINK, ON_TIMEOUT = 1.25, 0.7, 0.25
FAST, SLOW = 0.1, 0.5  # answer time as a share of the request's timeout
TESTED = 0.8  # a window asking for less than this share of the target says nothing about the target
_INCONCLUSIVE = frozenset({Outcome.PACING, Outcome.DISCONNECTED, Outcome.ERROR})  # retried as they are


@dataclass
class WindowSizes:
    """Bars targets by IB bar size name; `ceiling` (the job's target_bars) is also the start."""

    ceiling: int
    learned: dict[str, int] = field(default_factory=dict)  # from the warehouse: these sizes answered before
    proven: dict[str, int] = field(default_factory=dict)  # the largest window answered, by bar size
    _probes: dict[str, tuple[BarRequest, float]] = field(default_factory=dict)  # the window, its answer's deadline

    def __post_init__(self) -> None:
        self.proven = {**self.learned, **self.proven}

    def target(self, name: str) -> int:
        """The bars target for planning windows of this bar size (daily and longer: the ceiling)."""
        return min(self.ceiling, self.learned.get(name, self.ceiling))

    def allowed(self, name: str, request: BarRequest, now: float, answer_by: float) -> int | None:
        """The most bars `request` may ask for now: the target for the probe (whose answer is due by
        `answer_by`: a probe never answered frees the turn then), else the proven size; None: wait."""
        target = self.target(name)
        proven = self.proven.get(name, 0)
        if not bar_size(name).intraday or target <= proven:
            return target
        probe = self._probes.get(name)
        if probe is None or probe[0] == request or probe[1] <= now:
            self._probes[name] = (request, answer_by if probe is None or probe[0] != request else probe[1])
            return target
        return proven or None

    def answered(self, name: str, request: BarRequest, outcome: Outcome, latency_s: float, timeout_s: float,
                 final: bool = True) -> None:
        """Learn from one answer of `request` (its expected_bars: the planned upper estimate)."""
        if not bar_size(name).intraday:
            return
        if self._probes.get(name, (None,))[0] == request and (final or outcome not in _INCONCLUSIVE):
            del self._probes[name]
        asked, current = request.expected_bars, self.target(name)
        if outcome is Outcome.BARS or outcome is Outcome.EMPTY:
            self.proven[name] = max(self.proven.get(name, 0), asked)
        if outcome.unanswered:
            new = min(current, asked) * ON_TIMEOUT
            self.proven[name] = min(self.proven.get(name, 0), round(new))
        elif outcome is not Outcome.BARS or asked < TESTED * current:
            return
        elif latency_s > SLOW * timeout_s:
            new = current * SHRINK
        elif latency_s < FAST * timeout_s:
            new = current * GROW
        else:
            return
        new = max(MIN_TARGET, min(self.ceiling, round(new)))
        self.learned[name] = new

    def worked(self) -> dict[str, int]:
        """What to remember for the next night: each learned target, or the largest window answered where
        the target grew past it untried (the next night starts there, with no probe). A bar size whose
        target never moved is not remembered: a small first run must not cap later ones."""
        return {name: min(target, self.proven[name]) if self.proven.get(name, 0) >= MIN_TARGET else target
                for name, target in self.learned.items()}
