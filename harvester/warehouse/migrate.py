"""`harvest migrate`: a warehouse in the old file layout (format 1) becomes Delta tables in place, no refetch.

The old layout kept each table as plain Parquet replaced in place: `bars/bar_size=<label>/what_to_show=<W>/
use_rth=<0|1>/year=<YYYY>/<data|YYYY-MM|YYYY-MM-DD>.parquet`, `contracts/contracts.parquet`,
`heads/heads.parquet`, `coverage/coverage.parquet`, `journal/*.parquet`, `quarantine/bars-*.parquet`.
This module is the only place that still knows it.

Steps, each safe to interrupt: (1) the old table folders move aside into `.old-layout/` (renames: the data
stays whole), (2) every table is written from there as a Delta table, (3) the warehouse is marked format 2,
(4) `.old-layout/` is deleted. A rerun after a crash finds `.old-layout/`, removes the Delta tables half
written from it and does (2)–(4) again; the old files go only after the new tables are committed.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from harvester.warehouse.delta import DeltaTables, is_delta_table, read_bars_file
from harvester.warehouse.files import WarehouseError, fsync_dir, write_json_atomic
from harvester.warehouse.layout import (
    BARS,
    CONTRACTS,
    COVERAGE,
    FORMAT,
    HEADS,
    JOURNAL,
    META_FILE,
    PARTITIONS,
    QUARANTINE,
    TABLES,
    VERIFIED_FILE,
    PartitionKey,
    with_partition,
)
from harvester.warehouse.lock import WriterLock
from harvester.warehouse.tables import (
    BARS_TABLE_SCHEMA,
    CONTRACTS_SCHEMA,
    COVERAGE_SCHEMA,
    HEADS_SCHEMA,
    JOURNAL_SCHEMA,
    QUARANTINE_SCHEMA,
)

ASIDE = ".old-layout"
_SMALL = {CONTRACTS: CONTRACTS_SCHEMA, HEADS: HEADS_SCHEMA, COVERAGE: COVERAGE_SCHEMA, JOURNAL: JOURNAL_SCHEMA,
          QUARANTINE: QUARANTINE_SCHEMA}
_GLOBS = {CONTRACTS: "*.parquet", HEADS: "*.parquet", COVERAGE: "*.parquet", JOURNAL: "*.parquet",
          QUARANTINE: "bars-*.parquet"}


@dataclass
class MigrateStats:
    migrated: bool = False  # False: the warehouse was already in Delta tables
    bar_files: int = 0
    bars: int = 0
    rows_by_table: dict[str, int] | None = None


class OldLayoutError(WarehouseError):
    """The warehouse is in the format before Delta tables: `harvest migrate` converts it in place."""


def refuse_old_layout(root: Path) -> None:
    """Every reader and writer stops at an old (or half-converted) warehouse, naming the one fix."""
    if needs_migration(root):
        raise OldLayoutError(f"{root} is in the old file layout; convert it once with "
                             f"`harvest migrate --data-dir {root}` (nothing is refetched)")


def needs_migration(root: Path) -> bool:
    """Old-layout files outside any Delta table, or a migration that did not finish. (A first Delta write
    that died leaves `part-*` files and no log: not the old layout.)"""
    if (root / ASIDE).is_dir():
        return True
    if not is_delta_table(root / BARS) and any((root / BARS).glob("*/*/*/year=*/*.parquet")):
        return True
    return any(not is_delta_table(root / name) and any(not f.name.startswith("part-") for f in (root / name).glob(glob))
               for name, glob in _GLOBS.items())


def migrate(data_dir: str | Path) -> MigrateStats:
    """Convert the warehouse at `data_dir` in place, under the writer lock (raises WarehouseLocked)."""
    root = Path(data_dir).absolute()
    if not root.is_dir():
        raise WarehouseError(f"data directory {root} does not exist")
    with WriterLock(root):
        if not needs_migration(root):
            return MigrateStats()
        aside = root / ASIDE
        if aside.is_dir():
            for name in TABLES:  # half written by a migration that died: written again from the old files
                if is_delta_table(root / name):
                    shutil.rmtree(root / name)
        else:
            aside.mkdir()
            for name in TABLES:
                if (root / name).is_dir():
                    os.rename(root / name, aside / name)
            fsync_dir(aside)
            fsync_dir(root)
        stats = _write_tables(aside, DeltaTables(root, PARTITIONS))
        (root / VERIFIED_FILE).unlink(missing_ok=True)  # it named old paths
        _mark_format(root)
        shutil.rmtree(aside)
    stats.migrated = True
    return stats


def _write_tables(aside: Path, tables: DeltaTables) -> MigrateStats:
    stats = MigrateStats(rows_by_table={})
    for path in sorted((aside / BARS).glob("*/*/*/*/*.parquet")):
        key = _old_partition(aside / BARS, path)
        rows = read_bars_file(path)
        if rows.num_rows:
            tables.transact(BARS, lambda _, rows=rows, key=key: (with_partition(key, rows), None), BARS_TABLE_SCHEMA)
        stats.bar_files += 1
        stats.bars += rows.num_rows
    stats.rows_by_table[BARS] = stats.bars
    for name, schema in _SMALL.items():
        files = sorted((aside / name).glob(_GLOBS[name])) if (aside / name).is_dir() else []
        parts = [_conform(pq.read_table(f), schema) for f in files]
        table = pa.concat_tables(parts) if parts else schema.empty_table()
        if table.num_rows:
            tables.transact(name, lambda _, table=table: (table, None), schema)
        stats.rows_by_table[name] = table.num_rows
    return stats


def _old_partition(bars_dir: Path, path: Path) -> PartitionKey:
    """The partition an old bars file held: `data` (a year), `YYYY-MM` or `YYYY-MM-DD` is the new period."""
    try:
        values = dict(part.split("=", 1) for part in path.relative_to(bars_dir).parts[:-1])
        part = path.stem
        return PartitionKey(values["bar_size"], values["what_to_show"], values["use_rth"] == "1",
                            values["year"] if part == "data" else part)
    except (ValueError, KeyError, WarehouseError) as exc:
        raise WarehouseError(f"{path}: not a bars file of the old layout ({exc}); move it out and rerun") from exc


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Old rows in the table's schema: columns it lacked become NULL."""
    columns = [table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
               for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def _mark_format(root: Path) -> None:
    path = root / META_FILE
    meta = json.loads(path.read_text()) if path.exists() else {}
    write_json_atomic(path, {**meta, "format": FORMAT})
