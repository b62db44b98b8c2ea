"""Compaction: bring every year=YYYY/ directory back to the fixed layout, one file per partition.

Rewrites a partition when it has stray parts (any other *.parquet in the directory, e.g. copied in by hand or
left by an older writer), rows filed under the wrong part, unsorted rows or row groups far from the target.
Each target file is an atomic replace and strays are removed only after it is durable, so readers never see
a torn file; a rerun after a crash finishes the job (dedupe on (con_id, ts) absorbs rows present twice).
Leftover temp files are deleted: under the writer lock nobody else can be writing them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harvester.ibrules import BY_LABEL, WHAT_TO_SHOW
from harvester.warehouse.files import (
    ROW_GROUP_ROWS,
    is_temp_file,
    remove_durably,
    write_parquet_atomic,
)
from harvester.warehouse.layout import BARS_DIR, PartitionKey, split_by_partition
from harvester.warehouse.lock import WriterLock
from harvester.warehouse.tables import BAR_COLUMNS, BARS_SCHEMA


@dataclass
class CompactStats:
    partitions_rewritten: int = 0
    files_removed: int = 0
    temp_files_removed: int = 0
    rows: int = 0
    unreadable: list[Path] = field(default_factory=list)  # left in place: `Warehouse.verify()` quarantines them


def compact(data_dir: str | Path) -> CompactStats:
    """Compact the whole bars tree under the writer lock (raises WarehouseLocked if a harvest runs)."""
    root = Path(data_dir).absolute()
    stats = CompactStats()
    with WriterLock(root):
        for tmp in (root / BARS_DIR).rglob(".*"):
            if tmp.is_file() and is_temp_file(tmp):
                remove_durably(tmp)
                stats.temp_files_removed += 1
        for year_dir in sorted((root / BARS_DIR).glob("*/*/*/year=*")):
            _compact_year_dir(root, year_dir, stats)
    return stats


def _compact_year_dir(root: Path, year_dir: Path, stats: CompactStats) -> None:
    files = sorted(year_dir.glob("*.parquet"), key=lambda p: (p.stat().st_mtime_ns, p.name))
    tables: dict[Path, pa.Table] = {}
    for path in files:
        try:
            tables[path] = pq.read_table(path).select(BARS_SCHEMA.names).cast(BARS_SCHEMA)
        except (pa.ArrowException, OSError, KeyError):
            stats.unreadable.append(path)
    if not tables or len(tables) < len(files):
        return  # an unreadable file must not be overwritten by its neighbours' rows: verify() handles it
    fields = _dir_fields(year_dir)
    if fields is None:
        return  # not a directory of ours: never write into it
    slices: dict[PartitionKey, list[tuple[Path, pa.Table]]] = {}
    for path, table in tables.items():
        for key, part in split_by_partition(table, *fields):
            slices.setdefault(key, []).append((path, part))
    written: set[Path] = set()
    for key, slot_tables in slices.items():
        target = key.path(root)
        if [p for p, _ in slot_tables] == [target] and _well_formed(target, tables[target]):
            written.add(target)
            continue
        own = [t for p, t in slot_tables if p == target]  # the proper file is oldest: strays are newer copies
        if not own and target.exists():  # rows misfiled under another year: merge into what is there
            own = [pq.read_table(target).select(BARS_SCHEMA.names).cast(BARS_SCHEMA)]
        merged = merge_newest_wins(own + [t for p, t in slot_tables if p != target])
        write_parquet_atomic(target, merged)
        written.add(target)
        stats.partitions_rewritten += 1
        stats.rows += merged.num_rows
    for path in tables:
        if path not in written:
            remove_durably(path)
            stats.files_removed += 1


def _dir_fields(year_dir: Path) -> tuple[str, str, bool] | None:
    """(label, whatToShow, use_rth) when the directory path is a legal partition directory, else None."""
    names = [p.name.partition("=") for p in (year_dir.parent.parent.parent, year_dir.parent.parent, year_dir.parent)]
    if [n[0] for n in names] != ["bar_size", "what_to_show", "use_rth"] or not year_dir.name[5:].isdigit():
        return None
    label, what, rth = (n[2] for n in names)
    if label not in BY_LABEL or what not in WHAT_TO_SHOW or rth not in ("0", "1"):
        return None
    return label, what, rth == "1"


def _well_formed(path: Path, table: pa.Table) -> bool:
    """Right row-group count for its size and sorted by (symbol, ts)."""
    meta = pq.ParquetFile(path).metadata
    if meta.num_row_groups != max(1, math.ceil(meta.num_rows / ROW_GROUP_ROWS)):
        return False
    if table.num_rows < 2:
        return True
    order = pc.sort_indices(table, sort_keys=[("symbol", "ascending"), ("ts", "ascending"), ("con_id", "ascending")])
    return pc.all(pc.equal(order, pa.array(range(table.num_rows), pa.uint64()))).as_py()


def merge_newest_wins(tables: list[pa.Table]) -> pa.Table:
    """Concatenate oldest→newest, keep the newest row per (con_id, ts), sort (symbol, ts).

    Dedupe is on the key, never on values: IB revises bars, and the latest fetch is the truth.
    Commit merges staged answers into a partition with it, as compaction merges strays.
    """
    ordered = [
        t.select(BAR_COLUMNS).cast(BARS_SCHEMA).append_column("_o", pa.array(np.full(t.num_rows, i, np.int32)))
        for i, t in enumerate(tables)
    ]
    combined = pa.concat_tables(ordered)
    con = duckdb.connect()
    try:
        con.register("combined", combined)
        result = con.sql(
            "SELECT * EXCLUDE (_o, _r) FROM ("
            " SELECT *, row_number() OVER (PARTITION BY con_id, ts ORDER BY _o DESC) AS _r FROM combined)"
            " WHERE _r = 1 ORDER BY symbol, ts, con_id"
        ).to_arrow_table()
    finally:
        con.close()
    return result.cast(BARS_SCHEMA)
