"""The TWS wire protocol as the simulated gateway speaks it: framing, message layouts, IB's texts.

Nothing here decides what to answer; it only reads requests and writes replies, byte for byte as
docs/wire-protocol.md describes them.
"""
