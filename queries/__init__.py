"""The query layer: DuckDB views over the warehouse, read-through `bars()`, named scanners.

    import queries
    con = queries.connect()                      # in-memory DuckDB with views: bars, coverage, gaps, ...
    df = queries.bars("AAPL", "1 min", "2024-06-01", "2024-07-01")
    hot = queries.scan("unusual_volume", multiple=3)
"""

from queries.connection import connect, restrict
from queries.readthrough import BarsRequestError, bars
from queries.scanners import ScannerError, scan

__all__ = ["BarsRequestError", "ScannerError", "bars", "connect", "restrict", "scan"]
