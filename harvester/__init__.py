"""harvester: historical bars from Interactive Brokers into a local Parquet warehouse."""

__version__ = "0.1.0"
