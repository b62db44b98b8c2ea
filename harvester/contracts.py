"""Which contracts a harvest uses: stored ones while fresh, a qualification round trip for the rest.

Qualifying 500 symbols costs 500 round trips under ib_insync's 45 messages/s, so a known contract is
reused until it is STALE_AFTER old; conId is the identity, the symbol only a label. A continuous future
is asked every night: IB's answer (its front month) is what rolls it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pandas as pd

from harvester.calendar import calendar_name
from harvester.ib.client import ContractInfo, IBSource, QualifyResult
from harvester.model import ContractSpec
from harvester.warehouse.store import Warehouse

STALE_AFTER = timedelta(days=7)  # contract details (hours, names) change; conIds practically don't


async def resolve_contracts(
    source: IBSource, warehouse: Warehouse, specs: Sequence[ContractSpec], now: datetime
) -> tuple[list[ContractInfo], dict[str, str]]:
    """Stored contracts for known specs, a qualification round trip only for new or stale ones."""
    known, todo = stored_contracts(warehouse, specs, now - STALE_AFTER)
    fresh: QualifyResult = await source.qualify(todo) if todo else QualifyResult({}, {})
    if fresh.contracts:
        warehouse.save_contracts(_contracts_frame([i for infos in fresh.contracts.values() for i in infos], now))
    ordered, seen = [], set()
    for spec in specs:
        for info in known.get(spec) or fresh.contracts.get(spec, ()):
            if info.con_id not in seen:
                seen.add(info.con_id)
                ordered.append(info)
    return ordered, dict(fresh.failures)


def stored_contracts(warehouse: Warehouse, specs: Sequence[ContractSpec], since: datetime | None
                     ) -> tuple[dict[ContractSpec, tuple[ContractInfo, ...]], list[ContractSpec]]:
    """The stored contract of each spec it names unambiguously (qualified at or after `since`; None: any age),
    and the specs that need a qualification round trip (a continuous future always: its front may roll)."""
    stored = _stored_contracts(warehouse.contracts(), since)
    known: dict[ContractSpec, tuple[ContractInfo, ...]] = {}
    todo = []
    for spec in specs:
        match = [i for i in stored.get(spec.symbol, ()) if _fits(spec, i)]
        if len(match) == 1 and spec.sec_type != "CONTFUT":
            known[spec] = (match[0],)
        else:
            todo.append(spec)
    return known, todo


def _fits(spec: ContractSpec, info: ContractInfo) -> bool:
    if spec.con_id:
        return spec.con_id == info.con_id
    return (
        spec.sec_type == info.sec_type
        and spec.currency == info.currency
        and spec.primary_exchange in ("", info.primary_exchange)
        and info.last_trade_date.startswith(spec.last_trade_date)
        and spec.multiplier in ("", info.multiplier)
    )


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
