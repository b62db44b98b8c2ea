"""Tests of the simulated IB Gateway (harvester.sim) on its own."""
