"""Every table the warehouse stores, by its Parquet schema (written here and nowhere else), and rows → Arrow.

Fixed schemas keep every file readable by one DuckDB glob without `union_by_name` (which reads every footer);
`queries` builds its views from these same schemas. A bar's `ts` is stored UTC-aware (Parquet
isAdjustedToUTC, Delta `timestamp`: warehouse format 3); the other tables' instants are naive UTC. Microseconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa

from harvester.model import Outcome
from harvester.warehouse.files import WarehouseError

_TS = pa.timestamp("us")  # naive UTC
BAR_TS = pa.timestamp("us", tz="UTC")  # a bar's start, stored with its zone (docs/warehouse.md "Types")
BARS_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("con_id", pa.int64()),
        ("ts", BAR_TS),  # the bar's start
        ("session_date", pa.date32()),  # the exchange's trading date
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
        ("wap", pa.float64()),
        ("bar_count", pa.int64()),
    ]
)
BAR_COLUMNS = BARS_SCHEMA.names
# The bars table's partition columns (layout.BARS_PARTITION_BY): kept in the Delta log and the file paths,
# not in the data files. `bar_size` holds the partition label ("1min"); the views show IB's name ("1 min").
BARS_PARTITION_COLUMNS = ("bar_size", "what_to_show", "use_rth")
BARS_TABLE_SCHEMA = pa.schema(
    list(BARS_SCHEMA)
    + [("bar_size", pa.string()), ("what_to_show", pa.string()), ("use_rth", pa.bool_()), ("period", pa.string())]
)
# One answer's rows refused at the door (`ts` naive UTC, as in every table but bars).
REJECTED_SCHEMA = BARS_SCHEMA.set(BARS_SCHEMA.get_field_index("ts"), pa.field("ts", _TS)).append(
    pa.field("reason", pa.string()))
# One row per refused bar (series, ts): the latest values refused and their reason, and its history. Times
# of first_seen, last_seen and resolved_at are the gateway's clock when the answer came (the clock nights
# are counted in); quarantined_at is this machine's, when the bar was first refused.
QUARANTINE_SCHEMA = pa.schema(
    list(REJECTED_SCHEMA)
    + [("bar_size", pa.string()), ("what_to_show", pa.string()), ("use_rth", pa.bool_()), ("quarantined_at", _TS),
       ("first_seen", _TS), ("last_seen", _TS),
       ("nights", pa.int64()),  # answers on different nights that came back bad, in a row
       ("resolved_at", _TS),  # a clean answer covered its time (or it left nothing missing); NULL: still missing
       ("given_up", pa.bool_()),  # bad on `quarantine_nights` nights: no longer asked for, still a gap
       ("last_answer", pa.string())]  # the staged answer applied last (a commit replayed after a crash skips it)
)
# One series: its conId and bar size, whatToShow and RTH flag (the first columns of every per-series table).
_SERIES = [("con_id", pa.int64()), ("bar_size", pa.string()), ("what_to_show", pa.string()), ("use_rth", pa.bool_())]
QUARANTINE_KEY = ["con_id", "bar_size", "what_to_show", "use_rth", "ts"]
COVERAGE_SCHEMA = pa.schema(
    _SERIES + [
        ("start_ts", _TS),
        ("end_ts", _TS),
        ("kind", pa.string()),  # "bars" | "empty" (IB said there are none)
        ("bars", pa.int64()),
        ("recorded_at", _TS),
    ]
)
COVERAGE_IDENTITY = ["con_id", "bar_size", "what_to_show", "use_rth", "start_ts", "end_ts", "kind"]
# The span each series was asked for (wanted.py): the union per series, one row per merged span.
WANTED_SCHEMA = pa.schema(
    _SERIES + [
        ("start_ts", _TS),
        ("end_ts", _TS),
        ("recorded_at", _TS),  # when the table last changed
    ]
)
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
        ("qualified_at", _TS),
        ("local_symbol", pa.string()),  # IB's name for it where the symbol is not enough: EUR.USD, ESM4
        ("last_trade_date", pa.string()),  # futures: IB's lastTradeDateOrContractMonth (YYYYMMDD)
        ("multiplier", pa.string()),
        ("calendar", pa.string()),  # the exchange_calendars name its sessions come from, or "contract details"
        ("calendar_from_details", pa.bool_()),  # no known calendar: sessions from IB's hours alone, no holidays
    ]
)
HEADS_SCHEMA = pa.schema(
    [
        ("con_id", pa.int64()),
        ("what_to_show", pa.string()),
        ("use_rth", pa.bool_()),
        ("head_ts", _TS),
        ("fetched_at", _TS),
    ]
)
# The bars an intraday window asks for, per IB bar size, as learned from IB's answer times (ib.windows).
WINDOW_SIZES_SCHEMA = pa.schema([("bar_size", pa.string()), ("target_bars", pa.int64()), ("learned_at", _TS)])
# One row per qualification that saw a conId's symbol or exchanges change (identity is the conId; a symbol is
# an attribute with a validity range, docs/history-changes.md §4). valid_to NULL: still current.
SYMBOLS_SCHEMA = pa.schema(
    [
        ("con_id", pa.int64()),
        ("symbol", pa.string()),
        ("exchange", pa.string()),
        ("primary_exchange", pa.string()),
        ("valid_from", _TS),
        ("valid_to", _TS),
    ]
)
SYMBOLS_IDENTITY = ["con_id", "symbol", "exchange", "primary_exchange"]
# Bars a later fetch changed (IB revises recent history): the stored values and the ones that replaced them.
REVISED_COLUMNS = ("open", "high", "low", "close", "volume", "wap", "bar_count")
REVISIONS_SCHEMA = pa.schema(
    [("con_id", pa.int64()), ("symbol", pa.string()), ("bar_size", pa.string()), ("what_to_show", pa.string()),
     ("use_rth", pa.bool_()), ("ts", _TS), ("session_date", pa.date32())]
    + [(f"{c}_{age}", BARS_SCHEMA.field(c).type) for c in REVISED_COLUMNS for age in ("old", "new")]
    + [("run_id", pa.string()), ("revised_at", _TS)]
)
REVISIONS_IDENTITY = ["con_id", "bar_size", "what_to_show", "use_rth", "ts", "run_id"]
# Splits (and reverse splits) found by comparing a fetch with stored bars, and how each series was repaired.
CORPORATE_ACTIONS_SCHEMA = pa.schema(
    [
        ("con_id", pa.int64()),
        ("symbol", pa.string()),
        ("bar_size", pa.string()),
        ("what_to_show", pa.string()),
        ("use_rth", pa.bool_()),
        ("ex_date", pa.date32()),  # the first session after the last one stored at the old scale
        ("kind", pa.string()),  # "split" | "reverse_split"
        ("ratio", pa.float64()),  # new shares per old share (10 for 10:1)
        ("detected_at", _TS),  # the gateway's now
        ("run_id", pa.string()),
        ("repair", pa.string()),  # "rescale" (stored bars × 1/ratio, one verification request) | "refetch"
        ("requests", pa.int64()),  # requests the repair spent (attempts, retries included)
    ]
)
CORPORATE_ACTIONS_IDENTITY = ["con_id", "bar_size", "what_to_show", "use_rth", "ex_date", "run_id"]
JOURNAL_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("sent_at", _TS),
        ("con_id", pa.int64()),
        ("symbol", pa.string()),
        ("kind", pa.string()),
        ("bar_size", pa.string()),
        ("what_to_show", pa.string()),
        ("use_rth", pa.bool_()),
        ("start_ts", _TS),
        ("end_ts", _TS),
        ("duration", pa.string()),
        ("outcome", pa.string()),
        ("error_code", pa.int64()),
        ("error_text", pa.string()),
        ("bars", pa.int64()),
        ("latency_s", pa.float64()),
        ("attempt", pa.int64()),
    ]
)
CLAIMS_SCHEMA = pa.schema(
    _SERIES + [
        ("run_id", pa.string()),
        ("host", pa.string()),
        ("pid", pa.int64()),
        ("pid_started", pa.float64()),  # the process's start time: a reused pid is not the holder
        ("claimed_at", _TS),
        ("expires_at", _TS),
    ]
)


def bar_ts(instant: datetime | pd.Timestamp | str) -> pa.Scalar:
    """An instant as a scalar comparable with a stored bar's `ts` (naive ones are UTC, as staged before format 3)."""
    stamp = pd.Timestamp(instant)
    return pa.scalar(stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC), BAR_TS)


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
