"""Symbols → conIds for readers. Identity is the conId; a symbol is an attribute with a history.

The `symbols` table holds each conId's symbols and exchanges with the instants they were first and last
current (docs/history-changes.md §4). A name asks for every conId it ever named; when that is more than one
(DUAL on two exchanges, a ticker reused), only those naming it during the asked range count (a conId's first
name reaches back to its first bar, its current one on to now; days, not instants), and if still more than one the caller must
choose with `con_id=` or `exchange=`: rows of two instruments are never interleaved. Spellings are the
universe loader's (`BRK.B`, `BF/B` → `BRK B`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pandas as pd

from harvester import ib_symbol, tables


class BarsRequestError(ValueError):
    """An argument of `bars()` is unusable; the message names it."""


@dataclass(frozen=True)
class Chosen:
    """What to read: these conIds, whose rows are stored under these symbols; names no conId ever had are
    read by stored symbol alone (`loose`: bars written without contracts)."""

    con_ids: list[int]
    stored_names: list[str]
    loose: list[str]


def normalise(symbols: list[str]) -> list[str]:
    return [ib_symbol(s) for s in symbols]


def symbol_rows(symbols: pd.DataFrame, contracts: pd.DataFrame) -> pd.DataFrame:
    """Every conId's symbols over time: the symbols table's rows, and for a conId it lacks (a warehouse from
    before it) its contracts row, current since its qualification (the `symbols` view says the same in SQL)."""
    older = contracts[~contracts["con_id"].isin(symbols["con_id"])]
    older = older.rename(columns={"qualified_at": "valid_from"}).assign(valid_to=pd.NaT)
    rows = pd.concat([symbols, older[tables.SYMBOLS_SCHEMA.names]], ignore_index=True)
    return rows.sort_values(["con_id", "valid_from"], kind="stable").reset_index(drop=True)


def choose(rows: pd.DataFrame, names: list[str], start: date | datetime | None, end: date | datetime | None,
           con_id: list[int] | None = None, exchange: str | None = None) -> Chosen | None:
    """The conIds `names` mean in [start, end), from `symbol_rows` (None: no symbol history stored, read by
    stored symbol)."""
    if rows.empty:
        return None
    chosen: list[int] = list(con_id or [])
    loose = []
    for name in names:
        hits = rows[rows["symbol"] == name]
        if exchange is not None:
            hits = hits[(hits["exchange"] == exchange.upper()) | (hits["primary_exchange"] == exchange.upper())]
        if con_id:
            continue  # con_id= chooses: the names only narrow nothing further
        candidates = sorted(set(hits["con_id"].tolist()))
        if not candidates and exchange is None:
            loose.append(name)
        if len(candidates) > 1:
            candidates = [c for c in candidates if _named_during(rows[rows["con_id"] == c], name, start, end)] \
                or candidates
        if len(candidates) > 1:
            raise BarsRequestError(_ambiguous(name, rows, candidates, start, end))
        chosen += candidates
    chosen = sorted(set(chosen))
    stored = sorted(set(rows.loc[rows["con_id"].isin(chosen), "symbol"].tolist()) | (set(names) - set(loose)))
    return Chosen(chosen, stored, loose)


def as_instant(bound: date | datetime | None, days_after: int = 0) -> datetime | None:
    """A `bars()` bound as naive UTC: an instant as it is, a date's UTC midnight (`days_after` days later)."""
    if bound is None or isinstance(bound, datetime):
        return bound
    return datetime(bound.year, bound.month, bound.day) + timedelta(days=days_after)


def _named_during(history: pd.DataFrame, name: str, start: date | datetime | None, end: date | datetime | None
                  ) -> bool:
    """Whether the conId had the name during the range (dates: exchange dates, the end included). Qualification
    sees a change the night after the ex-date's session, so validity counts from that day (a nightly harvest:
    exactly the ex-date)."""
    start, end = as_instant(start), as_instant(end, 1)
    first = history["valid_from"].min()
    for row in history[history["symbol"] == name].itertuples(index=False):
        lo = None if row.valid_from == first else row.valid_from.normalize()
        hi = None if pd.isna(row.valid_to) else row.valid_to.normalize()
        if (hi is None or start is None or start < hi) and (lo is None or end is None or lo < end):
            return True
    return False


def _ambiguous(name: str, rows: pd.DataFrame, candidates: list[int], start, end) -> str:
    listed = ", ".join(
        f"conId {c} ({rows.loc[rows['con_id'] == c, 'primary_exchange'].iloc[-1] or '?'})" for c in candidates)
    span = f" in {_when(start)}..{_when(end)}" if start or end else ""
    return f"{name} names {len(candidates)} contracts{span}: {listed}; choose one with con_id= or exchange="


def _when(instant: date | datetime | None) -> str:
    if instant is None:
        return "…"
    if not isinstance(instant, datetime):
        return instant.isoformat()
    return instant.date().isoformat() if instant.time() == datetime.min.time() else instant.isoformat()
