"""Bars at the door: normalise one IB answer and split it into rows to keep and rows to quarantine.

IB uses -1 as "not available" for volume, WAP and bar count (MIDPOINT/BID/ASK bars have no volume); those
become NULL. A row that breaks OHLC order (beyond float representation: prices are compared within a
relative 1e-9, docs/ib-numbers.md §3), has negative volume, repeats a timestamp within one answer or lies
outside the requested window or the instrument's sessions is not stored and not dropped either: it goes to
quarantine with a reason. A row that passes is stored exactly as IB sent it, never clipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from harvester.calendar import TradingCalendar
from harvester.ibrules import bar_size
from harvester.model import BarRequest
from harvester.warehouse.files import WarehouseError
from harvester.warehouse.tables import BARS_SCHEMA, REJECTED_SCHEMA

OUTSIDE_WINDOW = "outside request window"
DUPLICATE_TS = "duplicate ts in one answer"
PRICE_TOLERANCE = 1e-9  # relative: float noise is ~1e-16, the finest tick relative to its price ~1e-8
INPUT_COLUMNS = ("ts", "session_date", "open", "high", "low", "close", "volume", "wap", "bar_count")


class BarsFormatError(WarehouseError):
    """The bars frame handed to the warehouse does not have the agreed shape (a caller bug, not bad data)."""


@dataclass(frozen=True)
class CheckedBars:
    kept: pa.Table  # BARS_SCHEMA
    quarantined: pa.Table  # REJECTED_SCHEMA


def check_bars(request: BarRequest, bars: pd.DataFrame | None, symbol: str,
               calendar: TradingCalendar | None = None) -> CheckedBars:
    """Normalise (ts UTC: aware when kept, naive when refused; sentinels → NULL) and validate one answer against its request and,
    when the instrument's calendar is given, against its sessions (RTH or extended, per the series)."""
    if bars is None or len(bars) == 0:
        return CheckedBars(BARS_SCHEMA.empty_table(), REJECTED_SCHEMA.empty_table())
    missing = [c for c in INPUT_COLUMNS if c not in bars.columns]
    if missing:
        raise BarsFormatError(f"bars for {symbol or request.series.con_id} lack column(s): {', '.join(missing)}")
    frame = _normalise(bars, request, symbol)
    reason = _reasons(frame, request, calendar)
    bad = reason.notna().to_numpy()
    kept = pa.Table.from_pandas(frame[~bad], schema=BARS_SCHEMA, preserve_index=False)
    rejected = frame[bad].assign(reason=reason[bad])
    quarantined = pa.Table.from_pandas(rejected, schema=REJECTED_SCHEMA, preserve_index=False)
    return CheckedBars(kept, quarantined)


def _normalise(bars: pd.DataFrame, request: BarRequest, symbol: str) -> pd.DataFrame:
    ts = bars["ts"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise BarsFormatError(f"bars for {symbol or request.series.con_id}: column ts must be timezone-aware UTC")
    frame = pd.DataFrame(
        {
            "symbol": symbol,
            "con_id": np.int64(request.series.con_id),
            "ts": ts.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]").to_numpy(),
            "session_date": pd.to_datetime(bars["session_date"]).dt.date.to_numpy(),
        }
    )
    for col in ("open", "high", "low", "close"):
        frame[col] = pd.to_numeric(bars[col]).astype("float64").to_numpy()
    for col in ("volume", "wap"):
        values = pd.to_numeric(bars[col]).astype("float64").to_numpy()
        frame[col] = np.where(values == -1, np.nan, values)
    counts = pd.Series(pd.to_numeric(bars["bar_count"]).to_numpy()).astype("Int64")
    frame["bar_count"] = counts.mask(counts == -1).to_numpy()
    return frame


def outside_sessions(frame: pd.DataFrame, request: BarRequest, calendar: TradingCalendar) -> np.ndarray:
    """True where a bar does not start inside one of the instrument's sessions of the series' flavour;
    daily and longer bars must also carry that session's date (a bar dated on a holiday is outside)."""
    opens, closes = calendar.bounds(request.series.use_rth)
    ts = frame["ts"].to_numpy().astype("datetime64[s]").astype(np.int64)
    index = np.searchsorted(opens, ts, side="right") - 1
    found = index >= 0
    index = index.clip(min=0)
    inside = found & (ts < closes[index])
    if not bar_size(request.series.bar_size).intraday:
        dated, is_session = calendar.day_index(pd.to_datetime(frame["session_date"]).to_numpy())
        inside &= is_session & (dated == index)
    return ~inside


def _reasons(frame: pd.DataFrame, request: BarRequest, calendar: TradingCalendar | None) -> pd.Series:
    """First failed check per row (None when the row is fine); checks ordered from most to least basic."""
    start = pd.Timestamp(request.start).tz_convert("UTC").tz_localize(None)
    end = pd.Timestamp(request.end).tz_convert("UTC").tz_localize(None)
    o, h, low, c, v = (frame[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    checks = [
        (frame["ts"].isna() | frame["session_date"].isna(), "missing ts or session_date"),
        (np.isnan(o) | np.isnan(h) | np.isnan(low) | np.isnan(c), "missing price"),
        (~_at_most(low, h), "low above high"),
        (~_at_most(low, np.minimum(o, c)), "low above open or close"),
        (~_at_most(np.maximum(o, c), h), "open or close above high"),
        (~np.isnan(v) & (v < 0), "negative volume"),
        ((frame["ts"] < start) | (frame["ts"] >= end), OUTSIDE_WINDOW),
        (frame["ts"].duplicated(keep="first"), DUPLICATE_TS),
    ]
    if calendar is not None:
        checks.append((pd.Series(outside_sessions(frame, request, calendar)), "outside the instrument's sessions"))
    reason = pd.Series([None] * len(frame), index=frame.index, dtype="object")
    for failed, text in reversed(checks):
        reason = reason.mask(np.asarray(failed), text)
    return reason


def _at_most(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a <= b up to float representation: within PRICE_TOLERANCE of the larger magnitude (docs/ib-numbers.md
    §3), far below any tick, so 18.540000000000003 <= 18.54 holds and a cent too high never does."""
    return a <= b + PRICE_TOLERANCE * np.maximum(np.abs(a), np.abs(b))
