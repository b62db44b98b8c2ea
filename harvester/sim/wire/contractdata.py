"""reqContractDetails (message 9) in, contractData (10) out: the exact 42-field layout at 176.

IB answers an ambiguous description with one contractData per candidate (no error); only data requests
on an ambiguous contract get 200 (docs/wire-protocol.md §5). tradingHours/liquidHours come from the
instrument's calendar; a future carries its expiry (lastTradeDateOrContractMonth, contractMonth,
realExpirationDate) and multiplier; a continuous future is described as its front month with secType
CONTFUT and that contract's conId.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from harvester.sim.market.calendar import SessionCalendar
from harvester.sim.market.securities import Instrument
from harvester.sim.wire.framing import Field, FieldReader, java_double
from harvester.sim.wire.messages import ContractSpec, Out

VALID_EXCHANGES = "SMART,AMEX,NYSE,CBOE,PHLX,ISE,CHX,ARCA,ISLAND,NASDAQ,BATS,IEX,PEARL,LTSE"
_MARKET_RULE = "26"  # IB's market rule id for US stocks; other classes send their own listing's
ORDER_TYPES = (
    "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,AVGCOST,BASKET,DAY,GAT,GTC,GTD,IOC,LIT,LMT,MIT,MKT,MOC,STP"
)


@dataclass(frozen=True)
class ContractDetailsRequest:
    req_id: int
    contract: ContractSpec
    include_expired: bool
    sec_id_type: str
    sec_id: str

    @classmethod
    def read(cls, fields: FieldReader) -> ContractDetailsRequest:
        fields.int()  # version 8
        req_id = fields.int()
        contract = ContractSpec.read(fields)
        include_expired = fields.bool()
        sec_id_type = fields.str() if fields.remaining() else ""
        sec_id = fields.str() if fields.remaining() else ""
        return cls(req_id, contract, include_expired, sec_id_type, sec_id)


def contract_data(
    req_id: int, inst: Instrument, requested_exchange: str, calendar: SessionCalendar, now: datetime
) -> list[Field]:
    """One contractData message; integer fields stay integer strings (ib_insync uses int())."""
    stock = inst.sec_type == "STK"
    trading_class = ("NMS" if inst.primary_exchange == "NASDAQ" else inst.symbol) if stock else inst.symbol
    if inst.sec_type == "CASH":
        trading_class = inst.local_symbol
    exchanges = VALID_EXCHANGES if stock else inst.exchange
    sec_ids: list[Field] = [1, "ISIN", inst.isin] if inst.isin else [0]
    expiry = f"{inst.last_trade_date:%Y%m%d}" if inst.last_trade_date else ""
    exchange = requested_exchange if stock and requested_exchange else inst.exchange
    return [
        Out.CONTRACT_DATA, req_id, inst.symbol, inst.sec_type, expiry, "0", "",
        exchange, inst.currency, inst.local_symbol, trading_class,
        trading_class, inst.con_id, java_double(inst.min_tick), inst.multiplier, ORDER_TYPES, exchanges, 1, 0,
        inst.long_name, inst.primary_exchange, expiry[:6], "", "", "", inst.time_zone,
        calendar.trading_hours(now), calendar.liquid_hours(now), "", "",
        *sec_ids, 1, "", "", ",".join([_MARKET_RULE] * len(exchanges.split(","))), expiry, inst.stock_type,
        "0.0001", "0.0001", "100",
    ]  # fmt: skip


def contract_data_end(req_id: int) -> list[Field]:
    return [Out.CONTRACT_DATA_END, 1, req_id]
