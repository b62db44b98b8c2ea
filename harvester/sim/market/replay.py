"""Serve user-supplied bars (CSV or Parquet) exactly as given, for the bar size the file holds.

A `date` column means daily bars (each labelled with its session's open, as generated bars are); a
`ts` column means intraday bars whose size is inferred from the smallest spacing or given explicitly.
The `symbol` column names an instrument by IB's local symbol (EUR.USD, ESM4, VOD) or, where that is
its symbol (stocks, indices), by symbol; an intraday bar takes the trading date of the session it is in.
Naive `ts` values are read as UTC. Missing `wap` defaults to (high+low+close)/3, missing `bar_count`
to 0. A replay serves only what its file holds: symbols the file lacks are unknown to the gateway (IB's
200), and a bar size the file does not hold is derived where its bars are exact aggregates of the file's
(coarser multiples of an intraday size, by the session's open as IB aligns them; days from intraday bars;
weeks and months from days or intraday bars). Anything else is refused with IB's 321 (`derives`), never
answered "no data", which a harvester would rightly record as verified empty.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harvester.sim.market.barcolumns import Bar
from harvester.sim.market.barsizes import BAR_SIZE_NAMES, BarKind, BarSize, parse_bar_size
from harvester.sim.market.calendar import SessionCalendar
from harvester.sim.market.securities import Instrument
from harvester.sim.market.tabular import read_table, where

_REQUIRED = ("symbol", "open", "high", "low", "close", "volume")
_NUMERIC = ("open", "high", "low", "close", "volume", "wap", "bar_count")
_TRADES_LIKE = frozenset({"TRADES", "ADJUSTED_LAST"})
_UTC = datetime.UTC
_INTRADAY = frozenset({BarKind.SECONDS, BarKind.MINUTES})


@dataclass(frozen=True)
class _Rows:
    """One symbol's bars, oldest first: epoch seconds (ts files) or dates (date files)."""

    keys: list
    values: np.ndarray  # (n, 7): open, high, low, close, volume, wap, bar_count


class ReplayBook:
    """Bars per symbol from one file; MarketData serves these symbols from here instead of generating."""

    def __init__(self, bar_size: str, rows: dict[str, _Rows]) -> None:
        self.bar_size = parse_bar_size(bar_size)
        self._rows = rows

    @classmethod
    def load(cls, path: str | Path, bar_size: str | None = None) -> ReplayBook:
        """Read CSV or Parquet; a bad file raises ValueError naming file:line (CSV) or file:column."""
        path = Path(path)
        frame = read_table(path, "replay file", ("symbol", "date", "ts"))
        missing = [c for c in _REQUIRED if c not in frame.columns]
        if "date" not in frame.columns and "ts" not in frame.columns:
            missing.append("date or ts")
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        daily = "date" in frame.columns
        if "wap" not in frame.columns:
            frame["wap"] = np.nan
        if "bar_count" not in frame.columns:
            frame["bar_count"] = 0
        for column in _NUMERIC:
            frame[column] = _numeric(path, frame, column)
        frame["wap"] = frame["wap"].fillna((frame["high"] + frame["low"] + frame["close"]) / 3)
        keys = _dates(path, frame) if daily else _epochs(path, frame)
        frame = frame.assign(_key=keys).sort_values(["symbol", "_key"], kind="stable")
        rows = {
            str(symbol).upper(): _Rows(list(group["_key"]), group[list(_NUMERIC)].to_numpy(dtype=np.float64))
            for symbol, group in frame.groupby("symbol", sort=True)
        }
        if bar_size is None:
            bar_size = "1 day" if daily else _infer_bar_size(path, rows)
        return cls(bar_size, rows)

    def symbols(self) -> set[str]:
        return set(self._rows)

    def serves(self, inst: Instrument) -> bool:
        return inst.label in self._rows

    def derives(self, asked: BarSize) -> bool:
        """Whether bars of `asked` are the file's own or exact aggregates of them."""
        held = self.bar_size
        if (asked.seconds, asked.kind) == (held.seconds, held.kind):
            return True
        if held.kind in _INTRADAY:
            return asked.kind not in _INTRADAY or (asked.seconds > held.seconds and asked.seconds % held.seconds == 0)
        return held.kind is BarKind.DAY and asked.kind in (BarKind.WEEK, BarKind.MONTH)

    def bars(
        self,
        inst: Instrument,
        bar_size: str,
        what_to_show: str,
        use_rth: bool,
        start_utc: datetime.datetime,
        end_utc: datetime.datetime,
        now_utc: datetime.datetime,
    ) -> list[Bar]:
        """The file's bars (or their aggregates, see `derives`) starting in [start, end) and complete by now;
        useRTH 1 keeps regular-session bars."""
        asked = parse_bar_size(bar_size)
        rows = self._rows.get(inst.label)
        if rows is None or not self.derives(asked):
            return []
        calendar = SessionCalendar.for_instrument(inst)
        start, end, now = start_utc.timestamp(), end_utc.timestamp(), now_utc.timestamp()
        spans = [(self._span(calendar, key, use_rth), values) for key, values in zip(rows.keys, rows.values)]
        spans = [(span, values) for span, values in spans if span is not None]
        if (asked.seconds, asked.kind) != (self.bar_size.seconds, self.bar_size.kind):
            spans = _aggregated(spans, _Buckets(calendar, asked, use_rth))
        return [_bar(span[0], span[2], values, what_to_show) for span, values in spans
                if start <= span[0] < end and span[1] <= now]

    def head_timestamp(self, inst: Instrument, use_rth: bool) -> datetime.datetime:
        calendar = SessionCalendar.for_instrument(inst)
        for key in self._rows[inst.label].keys:
            span = self._span(calendar, key, use_rth)
            if span is not None:
                return datetime.datetime.fromtimestamp(span[0], _UTC)
        raise ValueError(f"replay has no {'regular-hours ' if use_rth else ''}bars for {inst.symbol}")

    def close_before(self, inst: Instrument, day: datetime.date) -> tuple[float, datetime.date] | None:
        """The close of the file's last bar in a session before `day`, and that session's date."""
        rows = self._rows.get(inst.label)
        if rows is None:
            return None
        calendar = SessionCalendar.for_instrument(inst)
        found = None
        for key, values in zip(rows.keys, rows.values):
            span = self._span(calendar, key, True)
            if span is not None and span[2] < day:
                found = (float(values[3]), span[2])
        return found

    def _span(self, calendar: SessionCalendar, key, use_rth: bool) -> tuple[int, int, datetime.date] | None:
        """(start, end, session date) of one file row, or None when useRTH excludes it."""
        if self.bar_size.kind is BarKind.DAY:
            k = calendar.first_ordinal_on_or_after(key)
            opens, closes = calendar.bounds(use_rth)
            if k < len(calendar.dates) and calendar.dates[k] == key:
                return int(opens[k]), int(closes[k]), key
            midnight = int(datetime.datetime.combine(key, datetime.time(), tzinfo=calendar.zone).timestamp())
            return midnight, midnight + 86400, key
        k = calendar.ordinal_at(key, use_rth)
        if k is None and use_rth:
            return None
        session_date = calendar.dates[k] if k is not None else datetime.datetime.fromtimestamp(key, calendar.zone).date()
        return key, key + self.bar_size.seconds, session_date


class _Buckets:
    """Which bar of `asked` a file bar falls in: (key, start, end, session date), laid out as the generator
    lays IB's bars (intraday ones counted from the session's open, weeks and months by their sessions)."""

    def __init__(self, calendar: SessionCalendar, asked: BarSize, use_rth: bool) -> None:
        self.calendar, self.asked = calendar, asked
        self.opens, self.closes = calendar.bounds(use_rth)
        self.periods = None if asked.kind in _INTRADAY or asked.kind is BarKind.DAY else \
            calendar.period_ids(asked.kind is BarKind.WEEK)

    def of(self, span: tuple[int, int, datetime.date]) -> tuple[object, int, int, datetime.date] | None:
        k = self.calendar.first_ordinal_on_or_after(span[2])
        if k >= len(self.calendar.dates) or self.calendar.dates[k] != span[2]:
            return None  # a bar outside every session belongs to no session's aggregate
        opens, closes = self.opens, self.closes
        if self.periods is not None:
            first = int(np.searchsorted(self.periods, self.periods[k], side="left"))
            last = int(np.searchsorted(self.periods, self.periods[k], side="right")) - 1
            return self.periods[k], int(opens[first]), int(closes[last]), self.calendar.dates[first]
        if self.asked.kind is BarKind.DAY:
            return k, int(opens[k]), int(closes[k]), span[2]
        number = (span[0] - int(opens[k])) // self.asked.seconds
        bar_start = int(opens[k]) + number * self.asked.seconds
        return (k, number), bar_start, min(bar_start + self.asked.seconds, int(closes[k])), span[2]


def _aggregated(spans: list, buckets: _Buckets) -> list:
    """The file's bars (oldest first) merged per bucket: open first, high max, low min, close last,
    volume and trades summed, WAP volume-weighted (the mean price where no volume traded)."""
    groups: dict[object, tuple[tuple[int, int, datetime.date], list[np.ndarray]]] = {}
    for span, values in spans:
        bucket = buckets.of(span)
        if bucket is not None:
            groups.setdefault(bucket[0], (bucket[1:], []))[1].append(values)
    out = []
    for span, parts in groups.values():
        v = np.stack(parts)
        volume = v[:, 4].sum()
        wap = (v[:, 4] * v[:, 5]).sum() / volume if volume > 0 else v[:, 5].mean()
        out.append((span, np.array([v[0, 0], v[:, 1].max(), v[:, 2].min(), v[-1, 3], volume, wap, v[:, 6].sum()])))
    return out


def _bar(start: int, session_date: datetime.date, values: np.ndarray, what: str) -> Bar:
    o, h, low, c, volume, wap, count = values.tolist()
    if what not in _TRADES_LIKE:
        volume, wap, count = -1.0, -1.0, -1
    return Bar(
        datetime.datetime.fromtimestamp(start, _UTC), session_date, o, h, low, c, volume, wap, int(count)
    )


def _numeric(path: Path, frame: pd.DataFrame, column: str) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].notna()
    if column != "wap":
        bad |= frame[column].isna()
    if bad.any():
        index = int(np.flatnonzero(bad.to_numpy())[0])
        cell = frame[column].iloc[index]
        if pd.isna(cell):
            raise ValueError(f"{where(path, index, column)} is empty; give a number")
        raise ValueError(f"{where(path, index, column)} is not a number ({str(cell)[:40]!r})")
    return values


def _dates(path: Path, frame: pd.DataFrame) -> list[datetime.date]:
    out = []
    for index, text in enumerate(frame["date"].astype(str)):
        try:
            out.append(pd.Timestamp(text.strip()).date())
        except ValueError:
            raise ValueError(f"{where(path, index, 'date')} is not a date ({text!r})") from None
    return out


def _epochs(path: Path, frame: pd.DataFrame) -> list[int]:
    out = []
    for index, value in enumerate(frame["ts"]):
        try:
            stamp = pd.Timestamp(value)
            if pd.isna(stamp):
                raise ValueError
        except ValueError:
            raise ValueError(f"{where(path, index, 'ts')} is not a timestamp ({value!r})") from None
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
        out.append(int(stamp.timestamp()))
    return out


def _infer_bar_size(path: Path, rows: dict[str, _Rows]) -> str:
    """The smallest positive spacing between a symbol's bars, which must be an IB intraday bar size."""
    gaps = [np.diff(np.array(r.keys)) for r in rows.values() if len(r.keys) > 1]
    positive = np.concatenate(gaps) if gaps else np.zeros(0)
    positive = positive[positive > 0]
    if not len(positive):
        raise ValueError(f"{path}: cannot infer the bar size from one bar per symbol; pass bar_size")
    spacing = int(positive.min())
    for name in BAR_SIZE_NAMES:
        size = parse_bar_size(name)
        if size.seconds == spacing and size.kind in (BarKind.SECONDS, BarKind.MINUTES):
            return name
    raise ValueError(f"{path}: bar spacing of {spacing} s is not an IB bar size; pass bar_size")
