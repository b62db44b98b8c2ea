"""The simulated IB Gateway: TWS API server version 176 on loopback, with IB's rules and faults."""

from harvester.sim.faults import Faults
from harvester.sim.gateway import SimGateway
from harvester.sim.hmds import BUSY, QUIET, HmdsProfile, SoftThrottle
from harvester.sim.options import SimConfig
from harvester.sim.rules import SMALL_BAR_SIZES, PacingLimits

__all__ = ["BUSY", "QUIET", "SMALL_BAR_SIZES", "Faults", "HmdsProfile", "PacingLimits", "SimConfig", "SimGateway",
           "SoftThrottle"]
