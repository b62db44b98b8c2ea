"""harvester: historical bars from Interactive Brokers into a local Parquet warehouse.

The public API, as `ib_insync` exposes its own: import names from here, not from the rooms.

    from harvester import HarvestJob, load_universe, run_harvest
    report = run_harvest(HarvestJob(universe=load_universe("universes/sp500.csv")))

Names load on first use, so `import harvester` (and `import queries`) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "harvester.model": ("BarRequest", "ContractSpec", "HeadKey", "Outcome", "SeriesKey"),
    "harvester.ibrules": ("BAR_SIZES", "BY_LABEL", "WHAT_TO_SHOW", "BarSize", "bar_size"),
    "harvester.calendar": ("ContractListing", "TradingCalendar", "calendar_for"),
    "harvester.settings": ("ConfigError", "Settings", "resolve_settings", "user_temp_dir"),
    "harvester.universe": ("UniverseError", "ib_symbol", "load_universe"),
    "harvester.job": ("HarvestConfigError", "HarvestJob", "HarvestReport", "claimed_by_others", "harvest_async",
                      "missing_requests", "run_harvest"),
    "harvester.simulated": ("SIM_PACING_SCALE", "SIM_SAFETY_S", "simulated_gateway"),
    "harvester.ib.client": ("ClientIdInUse", "GatewayUnreachable"),
    "harvester.ib.ledger": ("GatewayUsage", "ledger_path", "ledger_usage"),
    "harvester.warehouse": ("MixedWarehouseError", "Warehouse", "WarehouseError", "WarehouseLocked"),
    "harvester.warehouse.delta": ("DeltaTables", "duckdb_source", "duckdb_type", "parquet_source", "sql_file_list"),
    "harvester.warehouse.storage": ("Location", "StorageError"),
    "harvester.warehouse.store": ("read_meta",),
    "harvester.warehouse.damage": ("DamagedFile", "damaged_file_in", "damaged_files"),
    "harvester.warehouse.migrate": ("MigrateStats", "OldLayoutError", "migrate", "needs_migration", "refuse_old_layout"),
    "harvester.warehouse.tables": ("tables",),
    "harvester.warehouse.files": ("write_bytes_atomic",),
    "harvester.warehouse.layout": ("layout",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)  # noqa: PLE0605 - the table above is the list

def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'harvester' has no attribute {name!r}")
    loaded = importlib.import_module(module)
    value = loaded if module.rsplit(".", 1)[-1] == name else getattr(loaded, name)
    globals()[name] = value
    return value
