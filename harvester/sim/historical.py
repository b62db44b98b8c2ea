"""The HMDS side of the simulator: resolve contracts, turn durations into windows, fetch bars.

Windows (docs/ib-rules.md §2.2, §5.1): `S` = seconds back from the end; `D` = the last N sessions that
start before the end; `W`/`M`/`Y` = calendar weeks/months/years back from the end. The end is
clipped to "now"; bars of 30 s or less older than six months do not exist (IB's horizon).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from harvester.sim.market.barcolumns import BarColumns
from harvester.sim.market.barsizes import BarSize
from harvester.sim.market.calendar import SessionCalendar
from harvester.sim.market.marketdata import MarketData
from harvester.sim.market.securities import Instrument, SecuritiesMaster
from harvester.sim.requestchecks import SMALL_BAR_HORIZON, Duration, RequestRejected, subtract_months
from harvester.sim.wire import messages as m
from harvester.sim.wire.messages import ContractSpec

WHAT_LABEL = {
    "TRADES": "Trades",
    "MIDPOINT": "Midpoint",
    "BID": "Bid",
    "ASK": "Ask",
    "BID_ASK": "Bid_Ask",
    "ADJUSTED_LAST": "Adjusted_Last",
}


class HistoricalDesk:
    """Answers data questions from the securities master, calendars and market data."""

    def __init__(self, master: SecuritiesMaster, market_data: MarketData) -> None:
        self.master = master
        self.market_data = market_data
        self._calendars: dict[int, SessionCalendar] = {}

    def candidates(self, spec: ContractSpec, now: datetime, isin: str = "") -> list[Instrument]:
        """What the description matches at `now`: symbols as renamed by then (market/actions.py)."""
        return self.master.match(
            con_id=spec.con_id,
            symbol=spec.symbol,
            sec_type=spec.sec_type,
            exchange=spec.exchange,
            primary_exchange=spec.primary_exchange,
            currency=spec.currency,
            isin=isin,
            now=now,
        )

    @staticmethod
    def named(inst: Instrument, now: datetime) -> Instrument:
        """The instrument as contract details show it at `now` (its symbol then)."""
        symbol = inst.symbol_on(now)
        return inst if symbol == inst.symbol else replace(inst, symbol=symbol)

    def resolve(self, spec: ContractSpec, now: datetime) -> Instrument:
        """The one instrument a data request means at `now`, or IB's 200 (unknown or ambiguous)."""
        found = self.candidates(spec, now)
        if not found:
            raise RequestRejected(200, m.TEXT_UNKNOWN_CONTRACT, "unknown_contract")
        if len(found) > 1:
            raise RequestRejected(200, m.TEXT_AMBIGUOUS.format(symbol=spec.label), "unknown_contract")
        return found[0]

    def calendar(self, inst: Instrument) -> SessionCalendar:
        if inst.con_id not in self._calendars:
            self._calendars[inst.con_id] = SessionCalendar.for_instrument(inst)
        return self._calendars[inst.con_id]

    def window(
        self, inst: Instrument, end: datetime, duration: Duration, use_rth: bool
    ) -> tuple[datetime, datetime]:
        """[start, end) the duration covers, ending at `end`."""
        if duration.unit == "S":
            return end - timedelta(seconds=duration.count), end
        if duration.unit == "D":
            days = self.calendar(inst).trading_days_ending_by(end, duration.count, use_rth)
            return (days[0].open_utc if days else end), end
        if duration.unit == "W":
            return end - timedelta(weeks=duration.count), end
        months = duration.count * (12 if duration.unit == "Y" else 1)
        return subtract_months(end, months), end

    def bar_columns(
        self,
        inst: Instrument,
        bar_size: BarSize,
        what: str,
        use_rth: bool,
        window: tuple[datetime, datetime],
        now: datetime,
    ) -> BarColumns:
        """Bars starting in the window, complete by `now`; small bars stop at IB's six-month horizon."""
        start, end = window
        end = min(end, now)
        if bar_size.seconds <= 30:
            start = max(start, now - SMALL_BAR_HORIZON)
        if start >= end:
            return BarColumns.empty()
        return self.market_data.bar_columns(inst, bar_size.name, what, use_rth, start, end, now)

    def no_data(self, spec: ContractSpec, what: str) -> RequestRejected:
        text = m.TEXT_NO_DATA.format(
            symbol=spec.label, exchange=spec.exchange or "SMART", what=WHAT_LABEL.get(what, what)
        )
        return RequestRejected(162, text, "no_data")
