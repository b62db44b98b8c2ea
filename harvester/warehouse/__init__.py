"""The warehouse: bars as partitioned Parquet plus the small tables (contracts, heads, coverage, journal).

One writer at a time (the lock), any number of lock-free readers; every write is atomic.
"""

from harvester.warehouse.files import WarehouseError
from harvester.warehouse.lock import WarehouseLocked
from harvester.warehouse.store import CommitStats, MixedWarehouseError, StageResult, Warehouse

__all__ = ["CommitStats", "MixedWarehouseError", "StageResult", "Warehouse", "WarehouseError", "WarehouseLocked"]
