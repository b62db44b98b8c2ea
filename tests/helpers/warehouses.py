"""Build small warehouses in the fixed layout (harvester/warehouse/layout.py) for the query-layer tests.

Deliberately independent of the harvester's writer: the readers are tested against the layout itself.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import exchange_calendars
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

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


def write_bars(data_dir: Path, df: pd.DataFrame, bar_size: str = "1 min", what: str = "TRADES",
               use_rth: bool = True) -> list[Path]:
    """Write `df` (bars file columns) into its partition files, one per partition, sorted (symbol, ts)."""
    b = BAR_SIZES[bar_size]
    sd = pd.to_datetime(df["session_date"])
    part = {"year": pd.Series("data", index=df.index), "month": sd.dt.strftime("%Y-%m"),
            "day": sd.dt.strftime("%Y-%m-%d")}[b.partition]
    paths = []
    for (year, name), chunk in df.groupby([sd.dt.year, part]):
        d = data_dir / "bars" / f"bar_size={b.label}" / f"what_to_show={what}" / f"use_rth={int(use_rth)}"
        path = d / f"year={year}" / f"{name}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(chunk.sort_values(["symbol", "ts"])[tables.BARS_SCHEMA.names],
                                     preserve_index=False).cast(tables.BARS_SCHEMA)
        pq.write_table(table, path, compression="zstd", row_group_size=65_536)
        paths.append(path)
    return paths


def write_table(data_dir: Path, name: str, rows: list[dict], file: str | None = None) -> Path:
    """Write rows to contracts/heads/coverage/journal/quarantine with the layout's schema."""
    schema = getattr(tables, f"{name.upper()}_SCHEMA")
    path = data_dir / name / (file or f"{name}.parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


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
