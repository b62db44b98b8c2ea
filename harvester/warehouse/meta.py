"""`warehouse.json`: what a warehouse holds (simulated or real bars, from which gateway) and its format."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.fs as pafs

from harvester.warehouse.files import WarehouseError, write_json_atomic
from harvester.warehouse.layout import META_FILE
from harvester.warehouse.storage import Location, filesystem, fs_paths


def read_meta(loc: Location) -> dict | None:
    """The warehouse's `warehouse.json` (simulated or real, format), None if it has none yet."""
    try:
        if loc.is_local:
            path = Path(loc.root) / META_FILE
            return json.loads(path.read_text()) if path.exists() else None
        fs, _ = filesystem(loc)
        key = fs_paths([loc.uri(META_FILE)])[0]
        if fs.get_file_info(key).type == pafs.FileType.NotFound:
            return None
        with fs.open_input_stream(key) as f:
            return json.loads(f.read())
    except (OSError, ValueError) as exc:
        raise WarehouseError(f"cannot read {loc.uri(META_FILE)}: {exc}") from exc


def write_meta(loc: Location, meta: dict) -> None:
    if loc.is_local:
        write_json_atomic(Path(loc.root) / META_FILE, meta)
        return
    fs, _ = filesystem(loc)
    with fs.open_output_stream(fs_paths([loc.uri(META_FILE)])[0]) as f:  # one PUT: whole or absent
        f.write(json.dumps(meta, indent=1, sort_keys=True).encode())
