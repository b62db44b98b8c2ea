"""The query layer: DuckDB views over the warehouse, read-through `bars()`, named scanners.

    import queries
    con = queries.connect()                      # in-memory DuckDB with views: bars, coverage, gaps, ...
    df = queries.bars("AAPL", "1 min", "2024-06-01", "2024-07-01")
    hot = queries.scan("unusual_volume", multiple=3)
"""

from queries.connection import (
    connect,
    existing_warehouse,
    fence,
    limit_memory,
    refresh,
    resolve_data_dir,
    restrict,
    sql_literal,
    write_init_script,
)
from queries.readthrough import BarsRequestError, FetchBlocked, FetchError, FetchWarning, bars
from queries.scanners import Relation, ScannerError, scan
from queries.status import warehouse_status

__all__ = ["BarsRequestError", "FetchBlocked", "FetchError", "FetchWarning", "Relation", "ScannerError", "bars", "connect", "existing_warehouse", "fence",
           "limit_memory", "refresh", "resolve_data_dir", "restrict", "scan", "sql_literal", "warehouse_status", "write_init_script"]
