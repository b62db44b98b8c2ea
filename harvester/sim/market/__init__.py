"""What the simulated gateway serves: contracts, trading calendars, and historical bars.

Generated or replayed bars, independent of the wire: nothing here imports from `harvester.sim.wire`.
"""
