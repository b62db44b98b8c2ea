"""The warehouse's small tables (contracts, heads, journal): fixed schemas and frame → Arrow conversion.

Fixed schemas keep every file readable by one DuckDB glob without `union_by_name` (which reads every footer).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa

from harvester.model import Outcome
from harvester.warehouse.files import WarehouseError

CONTRACTS_SCHEMA = pa.schema(
    [
        ("con_id", pa.int64()),
        ("symbol", pa.string()),
        ("sec_type", pa.string()),
        ("exchange", pa.string()),
        ("primary_exchange", pa.string()),
        ("currency", pa.string()),
        ("long_name", pa.string()),
        ("time_zone", pa.string()),
        ("trading_hours", pa.string()),
        ("liquid_hours", pa.string()),
        ("qualified_at", pa.timestamp("us")),
    ]
)
HEADS_SCHEMA = pa.schema(
    [
        ("con_id", pa.int64()),
        ("what_to_show", pa.string()),
        ("use_rth", pa.bool_()),
        ("head_ts", pa.timestamp("us")),
        ("fetched_at", pa.timestamp("us")),
    ]
)
JOURNAL_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("sent_at", pa.timestamp("us")),
        ("con_id", pa.int64()),
        ("symbol", pa.string()),
        ("kind", pa.string()),
        ("bar_size", pa.string()),
        ("what_to_show", pa.string()),
        ("use_rth", pa.bool_()),
        ("start_ts", pa.timestamp("us")),
        ("end_ts", pa.timestamp("us")),
        ("duration", pa.string()),
        ("outcome", pa.string()),
        ("error_code", pa.int64()),
        ("error_text", pa.string()),
        ("bars", pa.int64()),
        ("latency_s", pa.float64()),
        ("attempt", pa.int64()),
    ]
)


def utc_now_naive() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _plain(value: object) -> object:
    """Stored form of one cell: aware datetimes → naive UTC, Outcome → its value, NaN/NA/NaT → NULL."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, Outcome):
        return value.value
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, pd.Timestamp) and value.tzinfo is not None:
        return value.tz_convert("UTC").tz_localize(None).to_pydatetime()
    return value


def rows_to_table(rows: Iterable[dict], schema: pa.Schema, what: str) -> pa.Table:
    """Dicts → table of `schema`; unknown keys are refused (a typo would otherwise vanish silently)."""
    columns: dict[str, list] = {name: [] for name in schema.names}
    for row in rows:
        unknown = set(row) - set(columns)
        if unknown:
            raise WarehouseError(f"{what} row has unknown field(s): {', '.join(sorted(unknown))}")
        for name in schema.names:
            columns[name].append(_plain(row.get(name)))
    try:
        return pa.table(columns, schema=schema)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise WarehouseError(f"{what} row has a badly typed field: {exc}") from exc


def frame_to_table(frame: pd.DataFrame, schema: pa.Schema, what: str) -> pa.Table:
    """A user-supplied frame → `schema` (missing columns NULL), with a one-line error naming what is wrong."""
    unknown = set(frame.columns) - set(schema.names)
    if unknown:
        raise WarehouseError(f"{what} has unknown column(s): {', '.join(sorted(unknown))}")
    return rows_to_table(frame.to_dict("records"), schema, what)
