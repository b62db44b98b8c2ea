"""Compaction: every bars partition back to one sorted data file, then vacuum what no reader needs.

Each commit adds a file to the partitions it touches (Delta never rewrites one in place), so after a
night of commits a partition holds several files; a one-symbol read then opens all of them. Compaction
rewrites a partition with more than one file, or whose rows are out of (symbol, ts) order or whose row
groups are far from the target, as one transaction (readers see the old files or the new, never both).
Vacuum then deletes files that no version younger than the retention needs: a reader holding an older
snapshot keeps its files for that long (a setting: `vacuum_retention_hours`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harvester.warehouse.delta import UNREADABLE, DeltaTables, read_bars_file
from harvester.warehouse.files import ROW_GROUP_ROWS, WarehouseError
from harvester.warehouse.layout import (
    BARS,
    PARTITIONS,
    TABLES,
    PartitionKey,
    family_filters,
    partition_of,
    partitions_predicate,
    with_partition,
)
from harvester.warehouse.migrate import refuse_naive_bars, refuse_old_layout
from harvester.warehouse.storage import Location, filesystem, fs_paths
from harvester.warehouse.tables import BAR_COLUMNS, BARS_SCHEMA, BARS_TABLE_SCHEMA


@dataclass
class CompactStats:
    partitions_rewritten: int = 0
    files_removed: int = 0  # by vacuum
    rows: int = 0
    version: int | None = None  # the bars table's version afterwards
    unreadable: list[Path] = field(default_factory=list)  # left in place: `Warehouse.verify()` drops them


def compact(data_dir: str | Path | Location, retention_hours: float = 168.0) -> CompactStats:
    """Compact every bars partition, then vacuum every table. Needs no lock: a harvest committing into a
    partition meanwhile makes the rewrite conflict, and it is rebuilt from the new snapshot's files."""
    loc = Location.parse(data_dir)
    if loc.is_local and not Path(loc.root).is_dir():
        raise WarehouseError(f"{loc.root}: no such folder, so there is no warehouse to compact; check --data-dir")
    if loc.is_local:
        refuse_old_layout(Path(loc.root))
    refuse_naive_bars(loc)  # its rewrites would write UTC-aware files into a naive table
    tables = DeltaTables(loc, PARTITIONS)
    stats = CompactStats()
    by_partition: dict[PartitionKey, list[str]] = {}
    for uri in tables.files(BARS):
        by_partition.setdefault(partition_of(tables.uri(BARS), uri), []).append(uri)
    for key, files in sorted(by_partition.items()):
        try:
            if len(files) == 1 and _well_formed(files[0], read_bars_file(files[0], loc), loc):
                continue
        except UNREADABLE:
            stats.unreadable += [Path(f) for f in files]
            continue  # a damaged file must not be dropped by its neighbours' rewrite: verify() handles it
        rewritten: list[int] = []

        def build(snapshot, key=key, rewritten=rewritten) -> tuple[pa.Table, str]:
            filters = family_filters(key.label, key.what_to_show, key.use_rth, [key.period])
            merged = merge_newest_wins([read_bars_file(f, loc) for f in tables.files(BARS, snapshot, filters)])
            rewritten[:] = [merged.num_rows]
            return with_partition(key, merged), partitions_predicate([key])

        try:
            tables.transact(BARS, build, BARS_TABLE_SCHEMA)
        except UNREADABLE:
            stats.unreadable += [Path(f) for f in files]
            continue
        stats.partitions_rewritten += 1
        stats.rows += rewritten[0]
    for name in TABLES:
        stats.files_removed += len(tables.vacuum(name, retention_hours))
    stats.version = tables.version(BARS)
    return stats


def _well_formed(path: str, table: pa.Table, loc: Location) -> bool:
    """Right row-group count for its size and sorted by (symbol, ts)."""
    fs, _ = filesystem(loc)
    meta = pq.ParquetFile(fs_paths([path])[0], filesystem=fs).metadata
    if meta.num_row_groups != max(1, math.ceil(meta.num_rows / ROW_GROUP_ROWS)):
        return False
    if table.num_rows < 2:
        return True
    order = pc.sort_indices(table, sort_keys=[("symbol", "ascending"), ("ts", "ascending"), ("con_id", "ascending")])
    return pc.all(pc.equal(order, pa.array(range(table.num_rows), pa.uint64()))).as_py()


def merge_newest_wins(tables: list[pa.Table]) -> pa.Table:
    """Concatenate oldest→newest, keep the newest row per (con_id, ts), sort (symbol, ts).

    Dedupe is on the key, never on values: IB revises bars, and the latest fetch is the truth.
    Commit merges staged answers into a partition with it, as compaction merges strays. Sorted on the key
    columns alone and taken once, so a partition's rows are copied once (DuckDB's window and sort held
    three copies of a month of 1-min bars)."""
    tables = [t.select(BAR_COLUMNS).cast(BARS_SCHEMA) for t in tables if t.num_rows]
    if not tables:
        return BARS_SCHEMA.empty_table()
    combined = pa.concat_tables(tables)
    order = np.concatenate([np.full(t.num_rows, i, np.int32) for i, t in enumerate(tables)])
    keys = pa.table({"con_id": combined["con_id"], "ts": combined["ts"], "_o": order})
    by_key = pc.sort_indices(keys, sort_keys=[("con_id", "ascending"), ("ts", "ascending"), ("_o", "descending")])
    con_id = pc.take(keys["con_id"], by_key).to_numpy()
    ts = pc.take(keys["ts"], by_key).cast(pa.int64()).to_numpy()
    first = np.ones(len(con_id), bool)  # the newest row of each (con_id, ts) run
    first[1:] = (con_id[1:] != con_id[:-1]) | (ts[1:] != ts[:-1])
    kept = pc.filter(by_key, pa.array(first))
    final = pa.table({"symbol": pc.take(combined["symbol"], kept), "ts": pc.take(combined["ts"], kept),
                      "con_id": pc.take(combined["con_id"], kept)})
    by_symbol = pc.sort_indices(final, sort_keys=[("symbol", "ascending"), ("ts", "ascending"),
                                                  ("con_id", "ascending")])
    return combined.take(pc.take(kept, by_symbol)).combine_chunks()
