"""Tests of harvester's `warehouse` room."""
