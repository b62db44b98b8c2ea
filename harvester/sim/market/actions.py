"""Corporate actions: splits, cash dividends, renames and new conIds, in effect from their ex-date.

IB re-adjusts history as of the day you ask (docs/history-changes.md §1): TRADES and the quote types
are split-adjusted as of now (volume inversely), ADJUSTED_LAST also for dividends; a rename keeps the
conId and changes the symbol; some actions move a listing to a new conId and relabel the old line
`<symbol>.OLD`. A table row is `symbol` or `con_id`, `ex_date`, `kind`, `value`: the split ratio as new
shares per old share (10 for 10:1, 0.1 for 1:10), the cash amount per share, the new symbol, or the new
conId. The bundled table holds real events of the bundled master's names (sources in the docs).
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from harvester.sim.market.securities import Instrument, SecuritiesMaster
from harvester.sim.market.tabular import read_table, where

BUNDLED_ACTIONS = Path(__file__).parent / "data" / "actions.csv"
KINDS = ("split", "dividend", "rename", "new_con_id")
OLD_SUFFIX = ".OLD"  # IB's label for the line a new conId replaced
_EVER = datetime.date(1, 1, 1)


@dataclass(frozen=True)
class CorporateAction:
    con_id: int
    ex_date: datetime.date
    kind: str
    value: float | str | int
    old_symbol: str = ""  # a rename's previous symbol, when the row gave it


class CorporateActions:
    """The actions of every conId, and the price factors they imply as of a given day."""

    def __init__(self, actions: list[CorporateAction]) -> None:
        self.actions = sorted(actions, key=lambda a: (a.ex_date, a.con_id, a.kind))
        self._splits: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._dividends: dict[int, list[tuple[datetime.date, float]]] = {}
        splits: dict[int, list[tuple[datetime.date, float]]] = {}
        for a in self.actions:
            if a.kind == "split":
                splits.setdefault(a.con_id, []).append((a.ex_date, float(a.value)))
            elif a.kind == "dividend":
                self._dividends.setdefault(a.con_id, []).append((a.ex_date, float(a.value)))
        for con_id, rows in splits.items():
            self._splits[con_id] = (np.array([d for d, _ in rows], dtype="datetime64[D]"),
                                    np.array([r for _, r in rows], dtype=np.float64))

    @classmethod
    def none(cls) -> CorporateActions:
        return cls([])

    @classmethod
    def load(cls, path: str | Path | None, master: SecuritiesMaster) -> CorporateActions:
        """Read an actions file (None: the bundled one, whose names missing from `master` are skipped);
        a bad row raises ValueError naming file:line (CSV) or file: row N (Parquet)."""
        bundled = path is None
        path = BUNDLED_ACTIONS if bundled else Path(path)
        frame = read_table(path, "corporate actions", ("symbol", "con_id", "ex_date", "kind", "value"))
        missing = [c for c in ("ex_date", "kind", "value") if c not in frame.columns]
        if "symbol" not in frame.columns and "con_id" not in frame.columns:
            missing.insert(0, "symbol or con_id")
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        rows = [_Row.parse(path, i, record) for i, record in enumerate(frame.to_dict("records"))]
        return cls(_Resolver(path, master, skip_unknown=bundled).resolve(rows))

    # -- prices ------------------------------------------------------------------------------------
    def has_splits(self, con_id: int) -> bool:
        return con_id in self._splits

    def dividends(self, con_id: int) -> list[tuple[datetime.date, float]]:
        return self._dividends.get(con_id, [])

    def future_split_factor(self, con_id: int, day: datetime.date) -> float:
        """Product of the ratios of splits after `day`: generated prices are today's view of history,
        so as of `day` every generated price is this many times larger (volume this many times smaller)."""
        dates, ratios = self._splits.get(con_id, (None, None))
        if dates is None:
            return 1.0
        return float(np.prod(ratios[dates > np.datetime64(day)]))

    def split_divisors(self, con_id: int, sessions: np.ndarray, day: datetime.date) -> np.ndarray:
        """For traded (replayed) prices: per session date, the product of the ratios of splits after
        that session and in effect by `day`; an as-of-`day` price is the traded one divided by it."""
        out = np.ones(len(sessions))
        dates, ratios = self._splits.get(con_id, (None, None))
        if dates is None:
            return out
        for ex, ratio in zip(dates, ratios):
            if ex <= np.datetime64(day):
                out[sessions < ex] *= ratio
        return out

    # -- names and lines ---------------------------------------------------------------------------
    def apply_to(self, master: SecuritiesMaster) -> SecuritiesMaster:
        """The master with every rename and new conId in it: name histories, and for a new conId the
        old line relabelled `<symbol>.OLD` and closed, a new line opened under the symbol."""
        instruments = {i.con_id: i for i in master}
        for a in self.actions:
            if a.kind == "rename":
                inst = instruments[a.con_id]
                names = inst.names or ((_EVER, a.old_symbol or inst.symbol),)
                instruments[a.con_id] = replace(inst, names=(*names, (a.ex_date, str(a.value))))
            elif a.kind == "new_con_id":
                old = instruments[a.con_id]
                name = _name_on(old, a.ex_date)
                names = old.names or ((_EVER, old.symbol),)
                instruments[a.con_id] = replace(old, names=(*names, (a.ex_date, name + OLD_SUFFIX)),
                                                delisted=a.ex_date)
                instruments[int(a.value)] = replace(
                    old, con_id=int(a.value), symbol=name, names=(), listing_date=max(old.listing_date, a.ex_date),
                    listed_from=a.ex_date, delisted=None)
        return SecuritiesMaster(list(instruments.values()))


def _name_on(inst: Instrument, day: datetime.date) -> str:
    """The symbol the day before `day` (a name taking effect that day is not yet the old line's)."""
    current = inst.names[0][1] if inst.names else inst.symbol
    for since, name in inst.names:
        if since < day:
            current = name
    return current


@dataclass(frozen=True)
class _Row:
    index: int
    symbol: str
    con_id: int
    ex_date: datetime.date
    kind: str
    value: float | str | int

    @classmethod
    def parse(cls, path: Path, index: int, record: dict) -> _Row:
        def text(column: str) -> str:
            value = record.get(column)
            return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value).strip()

        symbol, con_id_text, kind, value_text = text("symbol").upper(), text("con_id"), text("kind"), text("value")
        if not symbol and not con_id_text:
            raise ValueError(f"{where(path, index, 'symbol')}: give a symbol or a con_id")
        if con_id_text and not con_id_text.isdigit():
            raise ValueError(f"{where(path, index, 'con_id')}: {con_id_text!r} is not a positive integer")
        try:
            ex_date = pd.Timestamp(text("ex_date")).date()
        except ValueError:
            raise ValueError(f"{where(path, index, 'ex_date')}: {text('ex_date')!r} is not a date") from None
        if kind not in KINDS:
            raise ValueError(f"{where(path, index, 'kind')}: {kind!r} is not one of {', '.join(KINDS)}")
        return cls(index, symbol, int(con_id_text or 0), ex_date, kind, _value(path, index, kind, value_text))


def _value(path: Path, index: int, kind: str, text: str) -> float | str | int:
    place = where(path, index, "value")
    if kind in ("split", "dividend"):
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number <= 0 or (kind == "split" and number == 1):
            what = "a split ratio (new shares per old share, not 1)" if kind == "split" else "a cash amount"
            raise ValueError(f"{place}: {text!r} is not {what} > 0")
        return number
    if kind == "new_con_id":
        if not text.isdigit() or int(text) == 0:
            raise ValueError(f"{place}: {text!r} is not a positive conId")
        return int(text)
    if not text or len(text) > 12:
        raise ValueError(f"{place}: {text!r} is not a symbol")
    return text.upper()


class _Resolver:
    """Rows name a listing by conId, or by a symbol it has (had, or is renamed to) in the master."""

    def __init__(self, path: Path, master: SecuritiesMaster, skip_unknown: bool) -> None:
        self.path, self.master, self.skip_unknown = path, master, skip_unknown
        self.aliases: dict[str, int] = {}

    def resolve(self, rows: list[_Row]) -> list[CorporateAction]:
        renames = sorted((r for r in rows if r.kind == "rename"), key=lambda r: r.ex_date)
        others = [r for r in rows if r.kind != "rename"]
        out = []
        for row in renames:
            con_id = self._con_id(row, row.symbol, str(row.value))
            if con_id:
                self.aliases.update({name: con_id for name in (row.symbol, str(row.value)) if name})
                out.append(CorporateAction(con_id, row.ex_date, row.kind, row.value, row.symbol))
        taken = {i.con_id for i in self.master}
        for row in others:
            con_id = self._con_id(row, row.symbol)
            if not con_id:
                continue
            if row.kind == "new_con_id":
                if row.value in taken:
                    raise ValueError(f"{where(self.path, row.index, 'value')}: conId {row.value} is already taken")
                taken.add(int(row.value))
            out.append(CorporateAction(con_id, row.ex_date, row.kind, row.value))
        return out

    def _con_id(self, row: _Row, *symbols: str) -> int:
        if row.con_id:
            if self.master.by_con_id(row.con_id) is None:
                return self._unknown(row, "con_id", f"conId {row.con_id} is not in the securities master")
            return row.con_id
        for symbol in symbols:
            if symbol in self.aliases:
                return self.aliases[symbol]
            found = self.master.match(symbol=symbol)
            if len(found) > 1:
                listed = ", ".join(f"{i.con_id} ({i.primary_exchange})" for i in found)
                raise ValueError(f"{where(self.path, row.index, 'symbol')}: {symbol} names {len(found)} listings "
                                 f"({listed}); give its con_id")
            if found:
                return found[0].con_id
        return self._unknown(row, "symbol", f"{row.symbol} is not in the securities master")

    def _unknown(self, row: _Row, column: str, reason: str) -> int:
        if self.skip_unknown:
            return 0
        raise ValueError(f"{where(self.path, row.index, column)}: {reason}")
