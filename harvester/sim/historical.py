"""The HMDS side of the simulator: resolve contracts, turn durations into windows, fetch bars.

Windows (docs/ib-rules.md §2.2, §5.1): `S` = seconds back from the end; `D` = the last N sessions that
start before the end; `W`/`M`/`Y` = calendar weeks/months/years back from the end. The end is
clipped to "now"; bars of 30 s or less older than six months do not exist (IB's horizon).
What an asset class cannot show is refused as IB refuses it (TRADES for forex, quotes for an index); a
future expired more than two years ago has no history (166); a continuous future takes no end time
(10339) and serves its front months' own bars, each expiry up to its last trade date (docs/markets.md).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

import numpy as np

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
# What each class cannot show, and the name IB's refusal gives it ("Last" is IB's word for trades).
_NOT_SHOWN = {"CASH": {"TRADES", "ADJUSTED_LAST"}, "IND": {"MIDPOINT", "BID", "ASK", "BID_ASK", "ADJUSTED_LAST"},
              "FUT": {"ADJUSTED_LAST"}, "CONTFUT": {"ADJUSTED_LAST"}}
_REFUSED_LABEL = {"TRADES": "Last", "ADJUSTED_LAST": "Adjusted_Last"}
_EXPIRED_REACH_DAYS = 730  # IB keeps an expired future's history for two years


class HistoricalDesk:
    """Answers data questions from the securities master, calendars and market data."""

    def __init__(self, master: SecuritiesMaster, market_data: MarketData) -> None:
        self.master = master
        self.market_data = market_data
        self._calendars: dict[int, SessionCalendar] = {}

    def candidates(self, spec: ContractSpec, include_expired: bool, now: datetime, isin: str = ""
                   ) -> list[Instrument]:
        """What the description matches at `now`: symbols as renamed by then (market/actions.py); with a
        replay, only what its file holds (a universe symbol it lacks is unknown, never generated)."""
        found = self.master.match(
            con_id=spec.con_id,
            symbol=spec.symbol,
            sec_type=spec.sec_type,
            exchange=spec.exchange,
            primary_exchange=spec.primary_exchange,
            currency=spec.currency,
            isin=isin,
            last_trade_date=spec.last_trade_date,
            multiplier=spec.multiplier,
            local_symbol="" if spec.symbol else spec.local_symbol,
            include_expired=include_expired,
            today=now.date(),
            now=now,
        )
        replay = self.market_data.replay
        return found if replay is None else [i for i in found if replay.serves(i)]

    @staticmethod
    def named(inst: Instrument, now: datetime) -> Instrument:
        """The instrument as contract details show it at `now` (its symbol then)."""
        symbol = inst.symbol_on(now)
        if symbol == inst.symbol:
            return inst
        return replace(inst, symbol=symbol, local_symbol=symbol if inst.local_symbol == inst.symbol else inst.local_symbol)

    def resolve(self, spec: ContractSpec, include_expired: bool, now: datetime) -> Instrument:
        """The one instrument a data request means at `now`, or IB's 200 (unknown or ambiguous); 166 for a
        future expired beyond IB's two years."""
        today = now.date()
        found = self.candidates(spec, include_expired, now)
        if not found:
            gone = self.master.match(con_id=spec.con_id, include_expired=True) if spec.con_id else []
            if include_expired and gone and gone[0].last_trade_date and \
                    (today - gone[0].last_trade_date).days > _EXPIRED_REACH_DAYS:
                raise RequestRejected(166, m.TEXT_EXPIRED, "no_data")
            raise RequestRejected(200, m.TEXT_UNKNOWN_CONTRACT, "unknown_contract")
        if len(found) > 1:
            raise RequestRejected(200, m.TEXT_AMBIGUOUS.format(symbol=spec.label), "unknown_contract")
        return found[0]

    def check_replayed(self, inst: Instrument, bar_size: BarSize) -> None:
        """321 for a bar size a replay file neither holds nor derives exactly (market/replay.py)."""
        replay = self.market_data.replay
        if replay is not None and replay.serves(inst) and not replay.derives(bar_size):
            raise RequestRejected(321, m.TEXT_NOT_REPLAYED.format(asked=bar_size.name, held=replay.bar_size.name),
                                  "invalid")

    def check_what(self, inst: Instrument, what: str, bar_seconds: int | None) -> None:
        """IB's 162 for a whatToShow the class has no data for (TRADES for forex, quotes for an index)."""
        if what in _NOT_SHOWN.get(inst.sec_type, ()):
            bar = "1d" if bar_seconds is None else str(bar_seconds)
            label = _REFUSED_LABEL.get(what, WHAT_LABEL[what])
            raise RequestRejected(162, m.TEXT_NOT_SHOWN.format(
                symbol=inst.symbol, sec_type=inst.sec_type, exchange=inst.exchange, what=label, bar=bar),
                "no_data")

    def front_months(self, inst: Instrument, start: datetime, end: datetime, today: date
                     ) -> list[tuple[Instrument, datetime, datetime]]:
        """A continuous future's expiries over [start, end): each from the session after the one before
        expired to its own last trade date's close (the simulator rolls at expiry)."""
        chain = sorted(self.master.match(symbol=inst.symbol, sec_type="FUT", exchange=inst.exchange,
                                         currency=inst.currency, multiplier=inst.multiplier,
                                         include_expired=True, today=today), key=lambda i: i.last_trade_date)
        out, previous_close = [], None
        for contract in chain:
            calendar = self.calendar(contract)
            close = datetime.fromtimestamp(
                int(calendar.ext_close[calendar.last_ordinal_on_or_before(contract.last_trade_date)]), start.tzinfo)
            lo = start if previous_close is None else max(start, previous_close)
            if lo < min(end, close):
                out.append((contract, lo, min(end, close)))
            previous_close = close
        return out

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

    def continuous_bars(self, inst: Instrument, bar_size: BarSize, what: str, use_rth: bool,
                        window: tuple[datetime, datetime], now: datetime) -> BarColumns:
        """A continuous future's bars: each front month's own, unadjusted, in order."""
        parts = [self.bar_columns(c, bar_size, what, use_rth, (lo, hi), now)
                 for c, lo, hi in self.front_months(inst, *window, now.date())]
        parts = [p for p in parts if len(p)]
        if not parts:
            return BarColumns.empty()
        return BarColumns(*(np.concatenate([getattr(p, f) for p in parts]) for f in BarColumns.__dataclass_fields__))

    def no_data(self, spec: ContractSpec, what: str, inst: Instrument | None = None) -> RequestRejected:
        text = m.TEXT_NO_DATA.format(
            symbol=inst.label if inst else spec.label, exchange=spec.exchange or "SMART",
            what=WHAT_LABEL.get(what, what),
        )
        return RequestRejected(162, text, "no_data")
