"""The simulated IB Gateway: TWS API server version 176 on loopback, with IB's rules and faults."""

from harvester.sim.faults import Faults
from harvester.sim.gateway import SimGateway
from harvester.sim.options import LatencyModel, SimConfig
from harvester.sim.rules import SMALL_BAR_SIZES, PacingLimits

__all__ = ["SMALL_BAR_SIZES", "Faults", "LatencyModel", "PacingLimits", "SimConfig", "SimGateway"]
