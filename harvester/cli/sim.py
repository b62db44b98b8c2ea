"""`harvest sim`: run the simulated IB Gateway."""

from harvester.sim.cli import sim_command

__all__ = ["sim_command"]
