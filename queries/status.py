"""`warehouse_status()`: what the warehouse holds, per bar size (the `status` scanner), and where it came from."""

from __future__ import annotations

import json
import os

from harvester import Location, read_meta
from queries import scanners
from queries.connection import SOURCE_TABLE, connect, limit_memory, naming_damage, resolve_data_dir


def warehouse_status(data_dir: str | os.PathLike[str] | None = None) -> dict:
    """Per bar size: series, covered days, bars, missing sessions, files, bytes, last commit; + origin."""
    directory = resolve_data_dir(data_dir)
    meta = read_meta(Location.parse(directory)) or {}
    con = connect(directory)
    limit_memory(con)
    with naming_damage(directory):
        rows = scanners.run(con, "status").df()
    ((version,),) = con.execute(f"SELECT version FROM {SOURCE_TABLE}").fetchall()
    return {
        "data_dir": str(directory),
        "simulated": meta.get("simulated"),
        "gateway": meta.get("gateway"),
        "version": version,  # the bars table's Delta version: `queries.connect(as_of=...)` takes it
        "bar_sizes": json.loads(rows.to_json(orient="records", date_format="iso")),
    }
