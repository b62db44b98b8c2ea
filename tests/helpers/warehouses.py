"""Build small warehouses (Delta tables, harvester/warehouse/layout.py) for the query-layer tests.

Deliberately independent of the harvester's writer: rows go straight to `deltalake`, so the readers are
tested against the layout itself.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import exchange_calendars
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, WriterProperties, write_deltalake
from deltalake.transaction import AddAction

from harvester import tables
from harvester.ibrules import BAR_SIZES

XNYS = exchange_calendars.get_calendar("XNYS", start="2019-01-02")


def sessions(first: str, last: str) -> pd.DataFrame:
    """XNYS sessions [first, last] as session_date, open_ts, close_ts (naive UTC)."""
    s = XNYS.schedule.loc[first:last]
    return pd.DataFrame(
        {
            "session_date": s.index.date,
            "open_ts": s["open"].dt.tz_localize(None).to_numpy(),
            "close_ts": s["close"].dt.tz_localize(None).to_numpy(),
        }
    )


def minute_bars(symbols: list[str], first: str, last: str, seed: int = 7) -> pd.DataFrame:
    """Random-walk RTH 1-min bars for `symbols` over the XNYS sessions [first, last]."""
    rng = np.random.default_rng(seed)
    frames = []
    for i, sym in enumerate(symbols):
        for s in sessions(first, last).itertuples():
            ts = pd.date_range(s.open_ts, s.close_ts, freq="1min", inclusive="left")
            frames.append(pd.DataFrame({"symbol": sym, "con_id": 1000 + i, "ts": ts, "session_date": s.session_date}))
    df = pd.concat(frames, ignore_index=True)
    n = len(df)
    close = 100 + np.cumsum(rng.normal(0, 0.1, n))
    open_ = close + rng.normal(0, 0.05, n)
    df["open"] = open_
    df["high"] = np.maximum(open_, close) + rng.random(n) * 0.1
    df["low"] = np.minimum(open_, close) - rng.random(n) * 0.1
    df["close"] = close
    df["volume"] = rng.integers(100, 10_000, n).astype(float)
    df["wap"] = (df["high"] + df["low"]) / 2
    df["bar_count"] = rng.integers(1, 100, n)
    return df


def daily_from_minutes(minutes: pd.DataFrame) -> pd.DataFrame:
    """Daily bars (ts = session open) aggregated from minute bars, as IB would serve them."""
    g = minutes.sort_values(["symbol", "ts"]).groupby(["symbol", "con_id", "session_date"], as_index=False)
    daily = g.agg(
        ts=("ts", "min"), open=("open", "first"), high=("high", "max"), low=("low", "min"),
        close=("close", "last"), volume=("volume", "sum"), bar_count=("bar_count", "sum"),
    )
    daily["wap"] = daily["close"]
    return daily


def snapshot_files(data_dir: Path, table: str = "bars") -> list[str]:
    """The data files of a table's latest snapshot, straight from the Delta log (files it no longer lists stay
    on disk until vacuum, so a glob would read them too)."""
    if not (data_dir / table / "_delta_log").is_dir():
        return []
    return DeltaTable(str(data_dir / table)).file_uris()


def split_partitions(data_dir: Path) -> int:
    """Rewrite every bars partition as two data files (first half, the rest) in one transaction, as an
    appending Delta writer would leave it: work for `harvest compact`. Returns the partitions rewritten."""
    from harvester.warehouse.layout import partition_of

    table_dir = data_dir / "bars"
    snapshot = DeltaTable(str(table_dir))
    version = snapshot.version()
    actions = []
    for n, path in enumerate(snapshot.file_uris()):
        key = partition_of(table_dir, Path(path))
        rows = pq.read_table(path)
        values = {"bar_size": key.label, "what_to_show": key.what_to_show, "use_rth": str(key.use_rth).lower(),
                  "period": key.period}
        half = (rows.num_rows + 1) // 2
        for k, part in enumerate((rows.slice(0, half), rows.slice(half))):
            # a name of its own each call: an earlier call's file may still be read through an older snapshot
            target = Path(path).with_name(f"split-{version}-{n}-{k}.parquet")
            pq.write_table(part, target)
            actions.append(AddAction(str(target.relative_to(table_dir)), target.stat().st_size, values,
                                     int(time.time() * 1000), True, json.dumps({"numRecords": part.num_rows})))
    snapshot.create_write_transaction(actions, "overwrite", snapshot.schema(),
                                      partition_by=["bar_size", "what_to_show", "use_rth", "period"])
    return len(actions) // 2


def write_bars(data_dir: Path, df: pd.DataFrame, bar_size: str = "1 min", what: str = "TRADES",
               use_rth: bool = True, row_group_rows: int | None = None) -> list[str]:
    """Append `df` (bars columns) to the bars table, one data file per partition, sorted (symbol, ts) (one
    write per partition: delta-rs keeps the rows' order within a partition only when handed it alone), in
    row groups of `row_group_rows` (delta-rs's default: one); returns the table's data files afterwards."""
    b = BAR_SIZES[bar_size]
    sd = pd.to_datetime(df["session_date"])
    period = {"year": sd.dt.strftime("%Y"), "month": sd.dt.strftime("%Y-%m"), "day": sd.dt.strftime("%Y-%m-%d")}
    frame = df.assign(bar_size=b.label, what_to_show=what, use_rth=use_rth, period=period[b.partition])
    frame = frame.sort_values(["symbol", "ts"])[tables.BARS_TABLE_SCHEMA.names]
    uri = str(data_dir / "bars")
    for _, part in frame.groupby("period", sort=True):
        # one contiguous batch, as the harvester's `delta.one_batch`: without it 6 of 15 files came out of order
        table = pa.Table.from_pandas(part, preserve_index=False).cast(tables.BARS_TABLE_SCHEMA).combine_chunks()
        write_deltalake(uri, table, mode="append", partition_by=["bar_size", "what_to_show", "use_rth", "period"],
                        writer_properties=WriterProperties(max_row_group_size=row_group_rows) if row_group_rows else None)
    return DeltaTable(uri).file_uris()


def write_table(data_dir: Path, name: str, rows: list[dict]) -> None:
    """Append rows to contracts/heads/coverage/journal/quarantine with the layout's schema."""
    schema = getattr(tables, f"{name.upper()}_SCHEMA")
    write_deltalake(str(data_dir / name), pa.Table.from_pylist(rows, schema=schema), mode="append")


def contracts_rows(symbols: list[str]) -> list[dict]:
    return [
        {"con_id": 1000 + i, "symbol": s, "sec_type": "STK", "exchange": "SMART", "primary_exchange": "NASDAQ",
         "currency": "USD", "long_name": f"{s} Inc", "time_zone": "US/Eastern", "trading_hours": "",
         "liquid_hours": "", "qualified_at": datetime(2024, 1, 1)}
        for i, s in enumerate(symbols)
    ]


def coverage_row(con_id: int, bar_size: str, start: datetime, end: datetime, kind: str = "bars",
                 bars: int = 0, what: str = "TRADES", use_rth: bool = True) -> dict:
    return {"con_id": con_id, "bar_size": bar_size, "what_to_show": what, "use_rth": use_rth,
            "start_ts": start, "end_ts": end, "kind": kind, "bars": bars, "recorded_at": datetime(2024, 7, 1)}


def write_format_2_bars(source: Path, uri: str, storage_options: dict[str, str] | None = None) -> None:
    """`source`'s bars as a format-2 warehouse held them at `uri`: a bars table created with `ts` naive (Delta
    timestamp_ntz), one write per data file (each stays sorted)."""
    from harvester.warehouse.layout import BARS_PARTITION_BY, partition_of, with_partition

    naive = tables.BARS_TABLE_SCHEMA.set(tables.BARS_TABLE_SCHEMA.get_field_index("ts"),
                                         pa.field("ts", pa.timestamp("us")))
    for path in snapshot_files(source):
        key = partition_of(source / "bars", Path(path))
        rows = with_partition(key, pq.read_table(path).select(tables.BAR_COLUMNS)).cast(naive)
        write_deltalake(uri, rows, mode="append", partition_by=list(BARS_PARTITION_BY),
                        storage_options=storage_options)
