"""Tests of harvester's `ib` room."""
