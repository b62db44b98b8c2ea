"""Message ids (one table per direction: 9, 17, 20, 90 mean different things each way) and layouts.

Everything here is version-176 layout (docs/wire-protocol.md §11). Builders return field lists; the server
frames them. The `*End` messages carry exactly the fields ibapi expects, or it drops them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from harvester.sim.wire.framing import Field, FieldReader


class In(enum.IntEnum):
    """Client → server message ids."""

    REQ_OPEN_ORDERS = 5
    REQ_ACCOUNT_UPDATES = 6
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_CONTRACT_DATA = 9
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_MANAGED_ACCTS = 17
    REQ_HISTORICAL_DATA = 20
    CANCEL_HISTORICAL_DATA = 25
    REQ_CURRENT_TIME = 49
    REQ_POSITIONS = 61
    CANCEL_POSITIONS = 64
    START_API = 71
    REQ_ACCOUNT_UPDATES_MULTI = 76
    CANCEL_ACCOUNT_UPDATES_MULTI = 77
    REQ_HEAD_TIMESTAMP = 87
    CANCEL_HEAD_TIMESTAMP = 90
    REQ_COMPLETED_ORDERS = 99


class Out(enum.IntEnum):
    """Server → client message ids."""

    ERROR = 4
    ACCT_VALUE = 6
    ACCT_UPDATE_TIME = 8
    NEXT_VALID_ID = 9
    CONTRACT_DATA = 10
    MANAGED_ACCTS = 15
    HISTORICAL_DATA = 17
    CURRENT_TIME = 49
    CONTRACT_DATA_END = 52
    OPEN_ORDER_END = 53
    ACCT_DOWNLOAD_END = 54
    EXECUTION_DATA_END = 55
    POSITION_END = 62
    ACCOUNT_UPDATE_MULTI_END = 74
    HEAD_TIMESTAMP = 88
    COMPLETED_ORDERS_END = 102


# IB's texts, as seen from real gateways
# (docs/wire-protocol.md §6.9, §8.3; docs/ib-rules.md §1.7, §4.1, §6).
HMDS = "Historical Market Data Service error message:"
TEXT_PACING = HMDS + "Historical data request pacing violation"
TEXT_CANCELLED = HMDS + "API historical data query cancelled: {req_id}"
TEXT_NO_DATA = HMDS + "HMDS query returned no data: {symbol}@{exchange} {what}"
TEXT_NO_PERMISSIONS = HMDS + "No market data permissions for {primary} {sec_type}"
TEXT_TOO_MANY_OPEN = (
    "Error processing request:-'wd' : cause - Only 50 simultaneous API historical data requests allowed."
)
TEXT_UNKNOWN_CONTRACT = "No security definition has been found for the request"
# TRADES asked for forex (ib-ruby#50: "...for EUR/CASH@IDEALPRO Last 60"); the same form for what an index lacks.
# The simulator's own wording under IB's 321 (validation) code: a replay cannot make up finer bars.
TEXT_NOT_REPLAYED = ("Error validating request.-'bK' : cause - the replay file holds {held} bars; {asked} bars "
                     "are neither held nor exact aggregates of them")
TEXT_NOT_SHOWN = HMDS + "No historical market data for {symbol}/{sec_type}@{exchange} {what} {bar}"
TEXT_EXPIRED = "HMDS Expired Contract Violation."
TEXT_CONTFUT_END = "Setting end date/time for continuous future security type is not allowed."
TEXT_AMBIGUOUS = "The contract description specified for {symbol} is ambiguous."
TEXT_DUPLICATE_CLIENT = "Unable to connect as the client id is already in use. Retry with a unique client id."
TEXT_NO_ZONE = (
    "Warning: You submitted request with date-time attributes without explicit time zone. "
    "Please switch to use yyyymmdd-hh:mm:ss in UTC or use instrument time zone, like US/Eastern. "
    "Implied time zone functionality will be removed in the next API release"
)
TEXT_BAD_END = (
    "End Date/Time: The date, time, or time-zone entered is invalid. The correct format is "
    "yyyymmdd hh:mm:ss xx/xxxx where yyyymmdd and xx/xxxx are optional. E.g.: 20031126 15:59:00 US/Eastern  "
    "Note that there is a space between the date and time, and between the time and time-zone.  "
    "If no date is specified, current date is assumed. If no time-zone is specified, local time-zone is "
    "assumed(deprecated).  You can also provide yyyymmddd-hh:mm:ss time is in UTC. Note that there is a "
    "dash between the date and time in UTC notation."
)
FARM_OK = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
)
TEXT_CONNECTIVITY_LOST = "Connectivity between IB and Trader Workstation has been lost."
TEXT_CONNECTIVITY_RESTORED = (
    "Connectivity between IB and Trader Workstation has been restored - data maintained."
)
TEXT_HMDS_BROKEN = "HMDS data farm connection is broken:ushmds"
TEXT_HMDS_OK = "HMDS data farm connection is OK:ushmds"


def error(req_id: int, code: int, text: str) -> list[Field]:
    """Error frame at 176: six fields, the last (advancedOrderRejectJson) empty but required."""
    return [Out.ERROR, 2, req_id, code, text, ""]


@dataclass(frozen=True)
class ContractSpec:
    """The 12 contract fields every request carries (strike `0.0` from ib_insync, `""` from ibapi)."""

    con_id: int
    symbol: str
    sec_type: str
    last_trade_date: str
    strike: float
    right: str
    multiplier: str
    exchange: str
    primary_exchange: str
    currency: str
    local_symbol: str
    trading_class: str

    @classmethod
    def read(cls, fields: FieldReader) -> ContractSpec:
        return cls(
            con_id=fields.int(),
            symbol=fields.str(),
            sec_type=fields.str(),
            last_trade_date=fields.str(),
            strike=fields.float(),
            right=fields.str(),
            multiplier=fields.str(),
            exchange=fields.str(),
            primary_exchange=fields.str(),
            currency=fields.str(),
            local_symbol=fields.str(),
            trading_class=fields.str(),
        )

    @property
    def label(self) -> str:
        return self.symbol or self.local_symbol or str(self.con_id)
