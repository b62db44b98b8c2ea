"""Helpers the tests share: simulated gateways, a fault-free reference harvest, hand-built warehouses, crash trials."""
