"""Talking to IB: the client (the only user of ib_insync), the pacer and the scheduler that runs requests."""
