"""Which contracts a harvest uses: stored ones qualified tonight, a qualification round trip for the rest.

Qualifying 500 symbols costs 500 round trips under ib_insync's 45 messages/s (~11 s), so a contract is
reused within a night (a rerun asks nothing) and qualified again the next: symbols change under a conId,
listings move to a new conId (docs/history-changes.md §4). A continuous future is asked every night: IB's
answer (its front month) is what rolls it. conId is the identity, the symbol an attribute with a history
(the `symbols` table):
- a universe row whose con_id IB knows under another symbol is an error naming both, unless that conId
  carried the row's symbol before (a rename: the series continues, and the report says so);
- a stored symbol IB no longer knows is looked up by its conId: renamed, the series continues;
- a row whose exchange or primary exchange differs from the stored contract's is qualified again;
- a symbol that now qualifies to another conId (a new line) gets its old conId qualified too, to learn the
  old line's name (IB appends `.OLD`): its history stays under the old conId, which is harvested that once
  more (its last stored session re-read and settled), then no longer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pandas as pd

from harvester.calendar import calendar_name
from harvester.ib.client import UNKNOWN_CONTRACT, ContractInfo, IBSource, QualifyResult
from harvester.model import ContractSpec
from harvester.warehouse.store import Warehouse

STALE_AFTER = timedelta(hours=12)  # once a night: a rerun the same night reuses them

Resolved = tuple[ContractInfo, ...]  # one contract, or a continuous future's chain


async def resolve_contracts(
    source: IBSource, warehouse: Warehouse, specs: Sequence[ContractSpec], now: datetime
) -> tuple[list[ContractInfo], dict[str, str], list[str]]:
    """(contracts in universe order, failures by label, notices): stored contracts for specs qualified
    tonight, a qualification round trip for the others."""
    frame = warehouse.contracts()
    known, todo = stored_contracts(warehouse, specs, now - STALE_AFTER, frame)
    fresh: QualifyResult = await source.qualify(todo) if todo else QualifyResult({}, {})
    contracts: dict[ContractSpec, Resolved] = dict(fresh.contracts)
    failures = dict(fresh.failures)
    current = history = _names(frame)
    if any(f == UNKNOWN_CONTRACT for f in failures.values()) or any(
            s.con_id and i[0].symbol != s.symbol for s, i in contracts.items()):
        history = _names(warehouse.symbols(), history)  # every name a conId had, not only its latest
    notices: list[str] = []
    for spec, (info, *_) in list(contracts.items()):
        if spec.con_id and info.symbol != spec.symbol:
            del contracts[spec]
            if spec.symbol in history.get(info.con_id, ()):
                contracts[spec] = (info,)
                notices.append(_renamed(spec, info))
            else:
                where = f" (universe line {spec.line})" if spec.line else ""
                failures[spec.label] = (f"con_id {spec.con_id} is {info.symbol} at IB, not {spec.symbol}{where}; "
                                        f"fix the symbol or the con_id")
    for spec in todo:
        if failures.get(spec.label) == UNKNOWN_CONTRACT and (con_id := _former_con_id(spec, history)):
            found = await source.qualify([replace(spec, symbol="", con_id=con_id)])
            infos = next(iter(found.contracts.values()), None)
            if infos:
                del failures[spec.label]
                contracts[spec] = infos
                notices.append(_renamed(spec, infos[0]))
    moved = await _old_lines(source, contracts, current)
    notices += [f"{new.symbol} moved to conId {new.con_id}: a new series starts there; the old line is "
                f"{old.symbol} (conId {old.con_id}) and keeps its history" for new, old in moved]
    if contracts or moved:
        infos = [*(i for resolved in contracts.values() for i in resolved), *(old for _, old in moved)]
        warehouse.save_contracts(_contracts_frame(infos, now))
    ordered, seen = [], set()
    resolved = [*(known.get(spec) or contracts.get(spec, ()) for spec in specs), *((old,) for _, old in moved)]
    for info in (i for infos in resolved for i in infos):
        if info.con_id not in seen:
            seen.add(info.con_id)
            ordered.append(info)
    return ordered, failures, notices


async def _old_lines(source: IBSource, contracts: dict[ContractSpec, Resolved], current: dict[int, set[str]]
                     ) -> list[tuple[ContractInfo, ContractInfo]]:
    """(new line, old line as IB names it now) for stocks that qualified to a conId other than the one whose
    stored contract carries that symbol."""
    moved = []
    for spec, infos in contracts.items():
        if spec.con_id or len(infos) != 1 or infos[0].sec_type != "STK":
            continue
        info = infos[0]
        for con_id, names in current.items():
            if con_id != info.con_id and info.symbol in names:
                found = await source.qualify([ContractSpec("", info.sec_type, spec.exchange, con_id=con_id)])
                old = next(iter(found.contracts.values()), (None,))[0]
                if old is not None and old.symbol != info.symbol:
                    moved.append((info, old))
    return moved


def stored_contracts(warehouse: Warehouse, specs: Sequence[ContractSpec], since: datetime | None,
                     frame: pd.DataFrame | None = None) -> tuple[dict[ContractSpec, Resolved], list[ContractSpec]]:
    """The stored contract of each spec it names unambiguously (qualified at or after `since`; None: any age),
    and the specs that need a qualification round trip (a continuous future always: its front may roll;
    `frame`: the contracts table, when already read)."""
    stored = _stored_contracts(warehouse.contracts() if frame is None else frame, since)
    known: dict[ContractSpec, Resolved] = {}
    todo = []
    for spec in specs:
        match = [i for i in stored.get(spec.symbol, ()) if _fits(spec, i)]
        if len(match) == 1 and spec.sec_type != "CONTFUT":
            known[spec] = (match[0],)
        else:
            todo.append(spec)
    return known, todo


def _fits(spec: ContractSpec, info: ContractInfo) -> bool:
    if spec.con_id and spec.con_id != info.con_id:
        return False
    return (
        spec.sec_type == info.sec_type
        and spec.currency == info.currency
        and spec.exchange == info.exchange
        and spec.primary_exchange in ("", info.primary_exchange)
        and info.last_trade_date.startswith(spec.last_trade_date)
        and spec.multiplier in ("", info.multiplier)
    )


def _renamed(spec: ContractSpec, info: ContractInfo) -> str:
    return (f"{spec.symbol} is now {info.symbol} (conId {info.con_id}): its series continue; "
            f"name it {info.symbol} in the universe")


def _names(frame: pd.DataFrame, names: dict[int, set[str]] | None = None) -> dict[int, set[str]]:
    """The symbols each conId was stored under (added to `names`)."""
    names = {k: set(v) for k, v in (names or {}).items()}
    for con_id, symbol in zip(frame["con_id"].tolist(), frame["symbol"].tolist()):
        names.setdefault(int(con_id), set()).add(symbol)
    return names


def _former_con_id(spec: ContractSpec, history: dict[int, set[str]]) -> int:
    """The one conId stored under this symbol (0 when none, or several: a conId is never guessed)."""
    found = [con_id for con_id, names in history.items() if spec.symbol in names]
    return found[0] if len(found) == 1 else 0


def _stored_contracts(frame: pd.DataFrame, since: datetime | None) -> dict[str, list[ContractInfo]]:
    by_symbol: dict[str, list[ContractInfo]] = {}
    if frame is None or frame.empty:
        return by_symbol
    qualified = pd.to_datetime(frame["qualified_at"])
    if qualified.dt.tz is None:
        qualified = qualified.dt.tz_localize(UTC)
    fresh = frame if since is None else frame[(qualified >= since).to_numpy()]
    names = [f for f in ContractInfo.__dataclass_fields__]
    known = fresh[names].astype(object)
    for row in known.where(known.notna(), "").itertuples(index=False):  # NULL: a column added since
        info = ContractInfo(*row)
        by_symbol.setdefault(info.symbol, []).append(info)
    return by_symbol


def _contracts_frame(infos: list[ContractInfo], now: datetime) -> pd.DataFrame:
    """Rows of the contracts table: IB's details, and the calendar the harvest dates their bars by
    (flagged where no exchange calendar is known and the sessions come from the details alone)."""
    frame = pd.DataFrame([vars(i) for i in infos])
    frame["calendar"] = [calendar_name(i) for i in infos]
    frame["calendar_from_details"] = [i.calendar.from_details for i in infos]
    frame["con_id"] = frame["con_id"].astype("int64")
    frame["qualified_at"] = pd.Timestamp(now).tz_convert(UTC).tz_localize(None)
    return frame
