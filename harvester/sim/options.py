"""SimConfig: everything a simulated gateway can be told at start-up (CLI options map onto it 1:1)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from harvester.sim.faults import Faults
from harvester.sim.hmds import QUIET, RULES, HmdsProfile, SoftThrottle
from harvester.sim.rules import SMALL_BAR_SIZES, PacingLimits


@dataclass
class SimConfig:
    """Start-up settings of a SimGateway. `port=0` picks a free port (read it back from `gw.port`)."""

    host: str = "127.0.0.1"
    port: int = 0
    contracts: str | Path | None = None  # securities master CSV; None = bundled S&P 500 + ETFs
    replay: str | Path | None = None  # bars served as traded (CSV/Parquet), see market/replay.py
    actions: str | Path | bool = True  # corporate actions (market/actions.py): True bundled, False none, or a file
    revise_latest: float = 0.0  # the latest session's bars this fraction short (volume, wicks) until it settles
    now: datetime | str | None = None  # simulated "now" at start; None = real time
    pacing_scale: float = 1.0  # multiplies every pacing time constant (0.01: 600 s → 6 s)
    latency_scale: float | None = None  # None → pacing_scale
    journal_path: str | Path | None = None  # JSON lines, one per request
    faults: Faults = field(default_factory=Faults)
    account: str = "DUSIM0001"  # DU: a paper account, as IB numbers them; SIM: a client can tell (docs/wire-protocol.md)
    pacing: PacingLimits = field(default_factory=PacingLimits)
    hmds: HmdsProfile = QUIET  # answer times and withheld answers (hmds.py, docs/sim-hmds.md)
    rules: str = "legacy"  # legacy: hard rules for every bar size; current: for ≤ 30 s bars, soft above
    throttle: SoftThrottle = field(default_factory=SoftThrottle)  # the soft slow-down under `current`
    stamp_lag_s: float = 0.0  # pacing stamps trail receipt by up to this, uniformly (rules.ArrivalStamps); unscaled

    def __post_init__(self) -> None:
        if self.pacing_scale <= 0:
            raise ValueError(f"pacing_scale must be positive, got {self.pacing_scale}")
        if self.latency_scale is not None and self.latency_scale < 0:
            raise ValueError(f"latency_scale must be >= 0, got {self.latency_scale}")
        if self.stamp_lag_s < 0:
            raise ValueError(f"stamp_lag_s must be >= 0, got {self.stamp_lag_s}")
        if not 0 <= self.revise_latest < 1:
            raise ValueError(f"revise_latest must be in [0, 1), got {self.revise_latest}")
        if self.rules not in RULES:
            raise ValueError(f"rules must be one of {', '.join(RULES)}, got {self.rules!r}")
        if not self.account or "," in self.account:
            raise ValueError(f"account must be one non-empty id, got {self.account!r}")

    @property
    def effective_latency_scale(self) -> float:
        return self.pacing_scale if self.latency_scale is None else self.latency_scale

    @property
    def hard_limits(self) -> PacingLimits:
        """The hard pacing rules in force: under `current` rules only bars of 30 s or less are paced."""
        return replace(self.pacing, bar_sizes=SMALL_BAR_SIZES) if self.rules == "current" else self.pacing

    @property
    def soft_throttle(self) -> SoftThrottle | None:
        return self.throttle if self.rules == "current" else None
