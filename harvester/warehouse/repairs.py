"""What the commit does beyond merging answers: split repairs, revisions, corporate actions, symbol history.

Pure helpers of `store.Warehouse`: a repair entry (staging) says how to make one series consistent — rescale
its stored bars by the detected price ratio, applied once (its anchor bar tells whether a recovery commit
already did), or replace them by the refetched bars staged after it; revisions and the action row ride in
the staged entries until the commit records them after the bars.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from harvester.ibrules import BAR_SIZES
from harvester.warehouse.changes import close_to, rescale
from harvester.warehouse.delta import DeltaTables, parquet_source, read_bars_file
from harvester.warehouse.layout import BARS, PartitionKey, family_filters, partition_of, periods_for
from harvester.warehouse.staging import StagedEntry
from harvester.warehouse.tables import (
    BARS_SCHEMA,
    BARS_TABLE_SCHEMA,
    CORPORATE_ACTIONS_SCHEMA,
    REVISED_COLUMNS,
    REVISIONS_SCHEMA,
    SYMBOLS_IDENTITY,
    bar_ts,
    rows_to_table,
)


def read_window(tables: DeltaTables, files: list[str], start: datetime, end: datetime, con_id: int | None = None
                ) -> pa.Table:
    """The bars starting in [start, end) in these data files (every conId's, or one's), by (con_id, ts):
    DuckDB reads local files with the filter pushed down; remote ones are read whole and filtered."""
    if not files:
        return BARS_SCHEMA.empty_table()
    if not tables.location.is_local:
        rows = pa.concat_tables([read_bars_file(f, tables.location) for f in files])
        ts = rows["ts"]
        keep = pc.and_(pc.greater_equal(ts, bar_ts(start)), pc.less(ts, bar_ts(end)))
        if con_id is not None:
            keep = pc.and_(keep, pc.equal(rows["con_id"], con_id))
        return rows.filter(keep).sort_by([("con_id", "ascending"), ("ts", "ascending")])
    columns = ", ".join(f'"{c}"' for c in BARS_SCHEMA.names)
    params = [bar_ts(start).as_py(), bar_ts(end).as_py()]  # aware: no cast by the session's TimeZone
    only = ""
    if con_id is not None:
        only, params = " AND con_id = ?", [*params, con_id]
    con = duckdb.connect()
    try:
        return con.sql(f"SELECT {columns} FROM {parquet_source(files, BARS_TABLE_SCHEMA, union=False)} "
                       f"WHERE ts >= ? AND ts < ?{only} ORDER BY con_id, ts", params=params
                       ).to_arrow_table().cast(BARS_SCHEMA)
    finally:
        con.close()


def repair_partitions(tables: DeltaTables, snapshot, entry: StagedEntry) -> set[PartitionKey]:
    """The partitions of the repaired series' family that exist and can hold its bars in [start, end)."""
    if snapshot is None:
        return set()
    s = entry.series
    size = BAR_SIZES[s.bar_size]
    filters = family_filters(size.label, s.what_to_show, s.use_rth, periods_for(size, entry.start, entry.end))
    return {partition_of(Path(tables.uri(BARS)), Path(f)) for f in tables.files(BARS, snapshot, filters)}


def repair_applies(entry: StagedEntry, rows_of: Callable[[PartitionKey], list[pa.Table]]) -> bool:
    """A rescale is applied once: not if its anchor bar already shows the new scale (a recovery commit)."""
    repair = entry.extra["repair"]
    anchor = repair.get("anchor")
    if repair["mode"] != "rescale" or anchor is None:
        return True
    s = entry.series
    key = PartitionKey(BAR_SIZES[s.bar_size].label, s.what_to_show, s.use_rth, anchor["period"])
    ts = bar_ts(anchor["ts"])
    for table in rows_of(key):
        hit = table.filter(pc.and_(pc.equal(table["con_id"], s.con_id), pc.equal(table["ts"], ts)))
        if hit.num_rows:
            close = hit["close"].to_numpy()
            return not close_to(close, np.full(len(close), anchor["close"] * repair["price_ratio"])).all()
    return True


def apply_repair(rows: pa.Table, entry: StagedEntry) -> pa.Table:
    """rescale: prices × ratio; replace: the series' rows go (its refetched ones follow); relabel: its rows
    take the conId's new symbol."""
    repair, con_id = entry.extra["repair"], entry.series.con_id
    if repair["mode"] == "rescale":
        return rescale(rows, con_id, repair["price_ratio"])
    mine = pc.equal(rows["con_id"], con_id)
    if repair["mode"] == "relabel":
        symbols = pc.if_else(mine, pa.scalar(repair["symbol"]), rows["symbol"])
        return rows.set_column(rows.schema.get_field_index("symbol"), "symbol", symbols)
    return rows.filter(pc.invert(mine))


def json_rows(frame: pd.DataFrame) -> dict[str, list]:
    """Columns as JSON lists (timestamps and dates as ISO text, NaN as null)."""
    out = {}
    for column in frame.columns:
        values = frame[column]
        if column in ("ts", "session_date"):
            out[column] = [pd.Timestamp(v).isoformat() for v in values]
        else:
            out[column] = [None if pd.isna(v) else float(v) for v in values]
    return out


def _from_json_rows(frame: pd.DataFrame) -> pd.DataFrame:
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.tz_localize(None)  # revisions keep naive UTC
    frame["session_date"] = pd.to_datetime(frame["session_date"]).dt.date
    for column in REVISED_COLUMNS:
        if column == "bar_count":
            for age in ("old", "new"):
                frame[f"{column}_{age}"] = frame[f"{column}_{age}"].astype("Int64")
    return frame


def revision_rows(entries: list[StagedEntry]) -> pa.Table | None:
    """REVISIONS_SCHEMA rows of the staged answers that revised stored bars."""
    frames = []
    for e in entries:
        revised = e.extra.get("revised")
        if revised:
            s = e.series
            frames.append(pd.DataFrame(revised["rows"]).assign(
                con_id=s.con_id, symbol=e.symbol, bar_size=s.bar_size, what_to_show=s.what_to_show,
                use_rth=s.use_rth, run_id=e.run_id, revised_at=pd.Timestamp(revised["at"]).tz_convert(None)))
    if not frames:
        return None
    frame = _from_json_rows(pd.concat(frames, ignore_index=True))
    return pa.Table.from_pandas(frame[REVISIONS_SCHEMA.names], schema=REVISIONS_SCHEMA, preserve_index=False)


def action_rows(entries: list[StagedEntry]) -> pa.Table | None:
    """CORPORATE_ACTIONS_SCHEMA rows of the staged repairs."""
    rows = [e.extra["repair"]["action"] for e in entries if e.is_repair and "action" in e.extra["repair"]]
    if not rows:
        return None
    return rows_to_table(
        [{**r, "ex_date": date.fromisoformat(r["ex_date"]), "detected_at": datetime.fromisoformat(r["detected_at"])}
         for r in rows], CORPORATE_ACTIONS_SCHEMA, "corporate_actions")


def symbol_history(rows: pd.DataFrame, qualified: pd.DataFrame, contracts: pd.DataFrame) -> pd.DataFrame:
    """SYMBOLS rows after a qualification: a conId seen with another symbol or exchange closes its current
    row at that instant and opens a new one; seen unchanged, nothing changes. A conId with no row yet but a
    stored contract (a warehouse older than the symbols table) starts from that contract."""
    seed = contracts[contracts["con_id"].isin(qualified["con_id"]) & ~contracts["con_id"].isin(rows["con_id"])]
    if len(seed):
        seed = seed.rename(columns={"qualified_at": "valid_from"})[SYMBOLS_IDENTITY + ["valid_from"]]
        rows = pd.concat([rows, seed.assign(valid_to=pd.NaT)], ignore_index=True)
    current = rows[rows["valid_to"].isna()]
    seen = qualified.rename(columns={"qualified_at": "valid_from"})[SYMBOLS_IDENTITY + ["valid_from"]]
    unchanged = seen.merge(current[SYMBOLS_IDENTITY], on=SYMBOLS_IDENTITY, how="inner")
    new = seen[~seen["con_id"].isin(unchanged["con_id"])].drop_duplicates("con_id", keep="last")
    ends = dict(zip(new["con_id"].tolist(), new["valid_from"].tolist()))
    valid_to = [ends.get(c, v) if pd.isna(v) else v for c, v in zip(rows["con_id"].tolist(), rows["valid_to"].tolist())]
    rows = rows.assign(valid_to=pd.to_datetime(pd.Series(valid_to, index=rows.index, dtype="object")))
    return pd.concat([rows, new.assign(valid_to=pd.NaT)], ignore_index=True).sort_values(
        ["con_id", "valid_from"], kind="stable")
