"""One symbol's bars read straight from the row groups that hold them (pyarrow), not through DuckDB.

A data file is sorted by (symbol, ts), so one symbol's rows sit in a few of its row groups, and the footer's
statistics (symbol, ts and session date per row group) say which. DuckDB reads the same groups, but a query
costs it ~1 ms of planning and opening per file before the first row (bench/queries.py: a one-symbol
year of 1-min bars spans 12 files). Footers are kept by path, size and modification time: a Delta data file
is never rewritten under its name (a commit writes new files, vacuum deletes old ones), and a file changed
in place anyway is read anew. Each read still takes its file list from its snapshot, so it sees what the
latest commit (or the connection's pinned one) lists. Local warehouses only: on S3 a footer is a request.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harvester import BarSize, DamagedFile, tables

_COLUMNS = tables.BAR_COLUMNS
_UNREADABLE = (pa.ArrowException, OSError)  # a damaged, cut or vanished Parquet file


@dataclass(frozen=True)
class Footer:
    """One data file's footer and, per row group, the ranges of the columns a point read prunes by (None
    where a group has no statistics: always read)."""

    metadata: pq.FileMetaData
    symbols: list[tuple[str, str] | None]
    ts: list[tuple[datetime, datetime] | None]
    sessions: list[tuple[date, date] | None]

    def groups(self, names: Sequence[str], start: date | datetime | None, end: date | datetime | None) -> list[int]:
        """The row groups that may hold bars of `names` in `bars()`'s range (an instant bounds `ts`, [start,
        end); a date `session_date`, both included)."""
        found = []
        for i, (symbol, ts, session) in enumerate(zip(self.symbols, self.ts, self.sessions, strict=True)):
            if symbol is not None and not any(symbol[0] <= n <= symbol[1] for n in names):
                continue
            first = ts if isinstance(start, datetime) else session
            if start is not None and first is not None and first[1] < start:
                continue
            last = ts if isinstance(end, datetime) else session
            if end is not None and last is not None and not (last[0] < end if isinstance(end, datetime)
                                                             else last[0] <= end):
                continue
            found.append(i)
        return found


def _naive_utc(value: Any) -> Any:
    """A statistic as bounds are compared: a tz-aware instant as naive UTC."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _ranges(metadata: pq.FileMetaData, column: str) -> list[tuple | None]:
    index = metadata.schema.to_arrow_schema().get_field_index(column)
    spans: list[tuple | None] = []
    for g in range(metadata.num_row_groups):
        stats = metadata.row_group(g).column(index).statistics if index >= 0 else None
        spans.append((_naive_utc(stats.min), _naive_utc(stats.max)) if stats is not None and stats.has_min_max
                     else None)
    return spans


_footers: OrderedDict[tuple[str, int, int], Footer] = OrderedDict()  # least recently read first
_footers_lock = threading.Lock()  # bars() may be called from several threads, and reads files in a pool
_FOOTER_GROUPS_KEPT = 4096  # a parsed footer takes ~10 KB a row group: ~40 MB, a 1-min year of 24 month files


def footer(path: str) -> Footer:
    """The file's footer and row-group ranges, read once per version of the file while recently used."""
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns)
    with _footers_lock:
        found = _footers.get(key)
        if found is not None:
            _footers.move_to_end(key)
            return found
    metadata = pq.read_metadata(path)
    found = Footer(metadata, _ranges(metadata, "symbol"), _ranges(metadata, "ts"), _ranges(metadata, "session_date"))
    with _footers_lock:
        _footers[key] = found
        kept = sum(f.metadata.num_row_groups for f in _footers.values())
        while kept > _FOOTER_GROUPS_KEPT and len(_footers) > 1:
            kept -= _footers.popitem(last=False)[1].metadata.num_row_groups
    return found


def read_point(files: Sequence[str], size: BarSize, what_to_show: str, use_rth: bool, names: Sequence[str],
               con_ids: Sequence[int] | None, loose: Sequence[str], start: date | datetime | None,
               end: date | datetime | None, db: duckdb.DuckDBPyConnection) -> pa.Table:
    """What `readthrough.bars_query` selects from `files` for rows stored under `names` (of `con_ids` when
    given) or under the `loose` names whatever their conId, in file order: the caller takes this path only
    when that order is (symbol, ts), i.e. for one name over files each ending before the next begins.
    `db`: the connection the same read would run on (its time zone types a tz-aware `ts`)."""
    wanted = list(names) + list(loose)

    def one(path: str) -> pa.Table | None:
        try:
            found = footer(path)
            groups = found.groups(wanted, start, end)
            if not groups:
                return None
            rows = pq.ParquetFile(path, metadata=found.metadata, read_dictionary=["symbol"]).read_row_groups(
                groups, columns=_COLUMNS, use_threads=False)  # symbol as indices: a third of the decoding
        except _UNREADABLE as exc:
            raise DamagedFile(path, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) \
                from exc
        return rows.filter(_selected(rows, names, con_ids, loose, start, end))

    parts = [p for p in map(one, files) if p is not None]  # one after another: a thread pool lost under load
    rows = pa.concat_tables(parts) if parts else None
    return _as_view_columns(rows, size, what_to_show, use_rth, db)


def _selected(rows: pa.Table, names: Sequence[str], con_ids: Sequence[int] | None, loose: Sequence[str],
              start: date | datetime | None, end: date | datetime | None) -> pa.ChunkedArray:
    """The row mask of bars_query's WHERE clause."""
    symbol = rows.column("symbol")
    chosen = pc.is_in(symbol, pa.array(list(names), pa.string()))
    if con_ids is not None:
        chosen = pc.and_(chosen, pc.is_in(rows.column("con_id"), pa.array(list(con_ids), pa.int64())))
    if loose:
        chosen = pc.or_(chosen, pc.is_in(symbol, pa.array(list(loose), pa.string())))
    for bound, compare in ((start, pc.greater_equal), (end, pc.less if isinstance(end, datetime) else pc.less_equal)):
        if bound is None:
            continue
        column = rows.column("ts" if isinstance(bound, datetime) else "session_date")
        if isinstance(bound, datetime) and column.type.tz is not None:
            bound = bound.replace(tzinfo=UTC)
        chosen = pc.and_(chosen, compare(column, pa.scalar(bound, column.type)))
    return chosen


def _as_view_columns(rows: pa.Table | None, size: BarSize, what_to_show: str, use_rth: bool,
                     db: duckdb.DuckDBPyConnection) -> pa.Table:
    """The rows with the partition's columns after con_id, typed as DuckDB answers the same query."""
    schema = tables.BARS_SCHEMA if rows is None else rows.schema
    rows = schema.empty_table() if rows is None else rows
    n = rows.num_rows
    zeros = pa.array(np.zeros(n, np.int32))
    columns = [rows.column("symbol").cast(pa.string()), rows.column("con_id"), pa.array([size.ib_name], pa.string()).take(zeros),
               pa.array([what_to_show], pa.string()).take(zeros), pa.array(np.full(n, use_rth, np.bool_))]
    fields = [pa.field("symbol", pa.string()), schema.field("con_id"), pa.field("bar_size", pa.string()),
              pa.field("what_to_show", pa.string()), pa.field("use_rth", pa.bool_())]
    for name in _COLUMNS[2:]:
        column, field = rows.column(name), schema.field(name)
        if pa.types.is_timestamp(field.type) and field.type.tz is not None:  # DuckDB answers in its time zone
            ((zone,),) = db.execute("SELECT current_setting('TimeZone')").fetchall()
            field = field.with_type(pa.timestamp(field.type.unit, zone))
            column = column.cast(field.type)
        columns.append(column)
        fields.append(field)
    return pa.Table.from_arrays(columns, schema=pa.schema([f.with_nullable(True) for f in fields]))
