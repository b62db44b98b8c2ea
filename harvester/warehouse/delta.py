"""The warehouse's tables as Delta Lake tables (delta-rs): every write is one transaction, seen whole or not at all.

Data files are immutable and each snapshot lists its own, so a reader never races a writer (no file is
replaced in place) and old versions stay readable until vacuum. Two writers that rewrite the same
partition conflict (`CommitFailedError`): `transact` rebuilds the write on the new snapshot and tries
again. Pitfalls measured here (docs/warehouse.md): never `DeltaTable.to_pyarrow_dataset()` (processes
aborted at exit), predicate overwrite rather than MERGE (faster, and it refuses rows outside the predicate).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote

import deltalake
import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from deltalake import DeltaTable, WriterProperties
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from harvester.warehouse.files import ROW_GROUP_ROWS, WarehouseError
from harvester.warehouse.storage import Location, filesystem, fs_paths
from harvester.warehouse.tables import BARS_SCHEMA

# LZ4 (raw) rather than zstd: files 13 % larger, decoded about twice as fast (bench/queries.py: a year's daily
# bars resampled from every symbol's minutes, and one symbol's year)
WRITER = WriterProperties(compression="LZ4_RAW", max_row_group_size=ROW_GROUP_ROWS)
CONFLICT_RETRIES = 10
Write = tuple[pa.Table | pa.RecordBatchReader, str | None]  # rows, and the predicate they replace (None: append)


class DeltaTables:
    """The Delta tables under one warehouse root (a local folder or an S3 prefix), by layout's table names."""

    def __init__(self, root: Path | str | Location, partitions: dict[str, Sequence[str]] | None = None) -> None:
        self.location = Location.parse(root)
        self.partitions = dict(partitions or {})  # table name -> partition columns

    def uri(self, name: str) -> str:
        return self.location.uri(name)

    def open(self, name: str, as_of: int | datetime | None = None) -> DeltaTable | None:
        """The table at its latest version (or `as_of` a version or an instant); None if never written."""
        version = as_of if isinstance(as_of, int) else None
        try:
            table = DeltaTable(self.uri(name), version, storage_options=self.location.storage_options or None)
        except TableNotFoundError:
            return None
        except (DeltaError, OSError) as exc:
            raise WarehouseError(f"cannot open {self.uri(name)}: {str(exc).splitlines()[0]}") from exc
        if isinstance(as_of, datetime):
            try:
                table.load_as_version(as_of)
            except DeltaError:
                return None  # the table did not exist yet at that instant
        return table

    def version(self, name: str) -> int | None:
        table = self.open(name)
        return None if table is None else table.version()

    def files(self, name: str, table: DeltaTable | None = None, filters: list | None = None) -> list[str]:
        """The data files of one snapshot (pruned by partition `filters`, e.g. [("period", "in", [...])])."""
        table = table if table is not None else self.open(name)
        if table is None:
            return []
        # delta-rs percent-encodes the table root it was opened at ("it's a dir" → "it's%20a%20dir"): decoded,
        # the paths are the files on disk (and stay the keys they name on object storage).
        return [unquote(uri) for uri in (table.file_uris(filters) if filters else table.file_uris())]

    def read(self, name: str, schema: pa.Schema, table: DeltaTable | None = None, filters: list | None = None
             ) -> pa.Table:
        """Rows of one snapshot as `schema`; partition columns come back from the file paths (hive style)."""
        files = self.files(name, table, filters)
        if self.location.is_local:
            return read_files(files, schema, self.partitions.get(name, ()))
        return read_remote_files(self.location, files, schema, self.uri(name), self.partitions.get(name, ()))

    def transact(self, name: str, build: Callable[[DeltaTable | None], Write], schema: pa.Schema) -> int:
        """Write what `build(snapshot)` returns as one transaction, rebuilt on the new snapshot after a
        conflict with another writer; returns the version written.

        A missing table is first created empty: two writers racing to create it with rows would both append
        (neither sees the other's table), so a whole-table rewrite would keep both copies."""
        for _ in range(CONFLICT_RETRIES):
            snapshot = self.open(name)
            if snapshot is None:
                self._create(name, schema)
                snapshot = self.open(name)
            rows, predicate = build(snapshot)
            try:
                if isinstance(rows, pa.Table):
                    rows = one_batch(rows.cast(schema))  # a RecordBatchReader streams batches already of `schema`
                return self._write(name, snapshot, rows, predicate)
            except CommitFailedError:
                continue
        raise WarehouseError(f"{self.uri(name)}: {CONFLICT_RETRIES} commits in a row lost to other writers")

    def _create(self, name: str, schema: pa.Schema) -> None:
        try:
            DeltaTable.create(self.uri(name), schema, partition_by=list(self.partitions.get(name, ())) or None,
                              mode="ignore", storage_options=self.location.storage_options or None)
        except CommitFailedError:
            pass  # another writer created it first
        except (DeltaError, OSError) as exc:
            raise WarehouseError(f"cannot create {self.uri(name)}: {str(exc).splitlines()[0]}") from exc

    def _write(self, name: str, snapshot: DeltaTable, rows: pa.Table | pa.RecordBatchReader, predicate: str | None) -> int:
        """Written against `snapshot`, the version `build` read: a commit by another writer since then is a
        conflict (given a URI, delta-rs would load the newest version and overwrite that writer's rows)."""
        mode = "append" if predicate is None else "overwrite"
        try:
            deltalake.write_deltalake(  # looked up on the module: the crash harness counts these calls
                snapshot, rows, mode=mode, predicate=None if mode == "append" else predicate,
                partition_by=list(self.partitions.get(name, ())) or None, writer_properties=WRITER,
                schema_mode="merge",  # a column added to a schema joins a table written before it
            )
        except CommitFailedError:
            raise
        except (DeltaError, OSError) as exc:
            detail = str(exc).splitlines()[0]
            full = " (disk full)" if any(f"os error {n})" in detail for n in (27, 28, 122)) else ""  # EFBIG ENOSPC EDQUOT
            raise WarehouseError(f"cannot write {snapshot.table_uri}{full}: {detail}") from exc
        return snapshot.version()

    def vacuum(self, name: str, retention_hours: float) -> list[str]:
        """Delete files no snapshot younger than the retention still needs (readers keep theirs)."""
        table = self.open(name)
        if table is None:
            return []
        return table.vacuum(retention_hours=int(retention_hours), dry_run=False, enforce_retention_duration=False)


def one_batch(rows: pa.Table) -> pa.Table:
    """The rows as a single record batch. delta-rs writes the batches of one write concurrently, so rows
    spread over several batches land in the data file out of order (measured: a month file written from
    8 k-row batches held its symbols in twice as many runs, so a one-symbol read opened most row groups);
    within one batch the (symbol, ts) order is kept."""
    return rows.combine_chunks()


def read_files(files: Sequence[str], schema: pa.Schema, partition_columns: Sequence[str] = ()) -> pa.Table:
    """Data files → one table of `schema` (partition columns from the hive-style paths)."""
    if not files:
        return schema.empty_table()
    con = duckdb.connect()
    source = parquet_source(files, schema, partition_columns)
    try:
        present = {row[0] for row in con.sql(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        columns = ", ".join(f'"{f.name}"' if f.name in present else f'NULL::{duckdb_type(f.type)} AS "{f.name}"'
                            for f in schema)  # files written before a column was added read it as NULL
        result = con.sql(f"SELECT {columns} FROM {source}").to_arrow_table()
    except duckdb.Error as exc:
        raise WarehouseError(f"cannot read {len(files)} data file(s) near {files[0]}: {str(exc).splitlines()[0]}") \
            from exc
    finally:
        con.close()
    return result.cast(schema)


def remote_dataset(loc: Location, files: Sequence[str], schema: pa.Schema, table_uri: str,
                   partition_columns: Sequence[str] = ()) -> ds.Dataset:
    """Data files on object storage as a pyarrow dataset (pyarrow's S3 client: DuckDB has no S3 reader
    here, its httpfs extension is a download); partition columns typed as in `schema`."""
    fs, _ = filesystem(loc)
    partitioning = ds.partitioning(pa.schema([schema.field(c) for c in partition_columns]), flavor="hive") \
        if partition_columns else None
    return ds.dataset(fs_paths(files), filesystem=fs, format="parquet", partitioning=partitioning,
                      partition_base_dir=fs_paths([table_uri])[0])


UNREADABLE = (pa.ArrowException, OSError)  # what reading a damaged, cut or vanished Parquet file raises


def read_remote_files(loc: Location, files: Sequence[str], schema: pa.Schema, table_uri: str,
                      partition_columns: Sequence[str] = ()) -> pa.Table:
    """Data files on object storage → one table of `schema`."""
    if not files:
        return schema.empty_table()
    try:
        table = remote_dataset(loc, files, schema, table_uri, partition_columns).to_table()
    except UNREADABLE as exc:
        raise WarehouseError(f"cannot read {len(files)} data file(s) near {files[0]}: {exc}") from exc
    return table.select(schema.names).cast(schema)


_sources = itertools.count(1)


def duckdb_source(con: duckdb.DuckDBPyConnection, loc: Location, files: Sequence[str], schema: pa.Schema,
                  table_uri: str, partition_columns: Sequence[str] = (), union: bool = True) -> str:
    """What a query on `con` reads these files through: DuckDB's own `read_parquet` for a local warehouse;
    for S3, a pyarrow dataset registered on `con` (projection and filters are pushed down into it)."""
    if loc.is_local or not files:
        return parquet_source(files, schema, partition_columns, union)
    name = f"_harvest_source_{next(_sources)}"
    con.register(name, remote_dataset(loc, files, schema, table_uri, partition_columns))
    return name


def parquet_source(files: Sequence[str], schema: pa.Schema, partition_columns: Sequence[str] = (),
                   union: bool = True) -> str:
    """DuckDB's own `read_parquet` over these files (what every read of the warehouse uses); partition columns
    are parsed from the paths, typed as in `schema`. No files: a typed empty relation (read_parquet needs one)."""
    empty = "SELECT " + ", ".join(f'NULL::{duckdb_type(f.type)} AS "{f.name}"' for f in schema) + " WHERE false"
    if not files:
        return f"({empty})"
    options = ", union_by_name = true" if union else ""
    if partition_columns:
        types = ", ".join(f"'{c}': {duckdb_type(schema.field(c).type) if c in schema.names else 'VARCHAR'}"
                          for c in partition_columns)
        options += f", hive_partitioning = true, hive_types = {{{types}}}"
    source = f"read_parquet({sql_file_list(files)}{options})"
    if partition_columns or not union:
        return source
    # A small table's files may predate a column added to its schema since: read them with that column NULL.
    return f"({empty} UNION ALL BY NAME SELECT * FROM {source})"


def sql_file_list(files: Sequence[str]) -> str:
    """A DuckDB list literal of file paths, quotes escaped."""
    return "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"


def duckdb_type(kind: pa.DataType) -> str:
    """DuckDB's name for one of the warehouse's Arrow column types."""
    return {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN",
            pa.date32(): "DATE", pa.timestamp("us"): "TIMESTAMP", pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ"}[kind]


def read_bars_file(path: str | Path, loc: Location | None = None) -> pa.Table:
    """One bars data file, read whole, as BARS_SCHEMA (a damaged file raises here, not later in a merge)."""
    if loc is not None and not loc.is_local:
        return pq.read_table(fs_paths([str(path)])[0], filesystem=filesystem(loc)[0]).select(
            BARS_SCHEMA.names).cast(BARS_SCHEMA)
    return pq.read_table(path).select(BARS_SCHEMA.names).cast(BARS_SCHEMA)


def is_delta_table(path: Path) -> bool:
    return os.path.isdir(path / "_delta_log")
