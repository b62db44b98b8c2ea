"""The warehouse: Delta tables of bars (partitioned) and the small tables (contracts, heads, coverage, journal).

Several writers at once (each claims the series it fetches), any number of lock-free readers; every write
is one Delta transaction.
"""

from harvester.warehouse.files import WarehouseError
from harvester.warehouse.lock import WarehouseLocked
from harvester.warehouse.migrate import OldLayoutError
from harvester.warehouse.store import CommitStats, MixedWarehouseError, StageResult, Warehouse

__all__ = ["CommitStats", "MixedWarehouseError", "OldLayoutError", "StageResult", "Warehouse", "WarehouseError", "WarehouseLocked"]
