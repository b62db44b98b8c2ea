"""The simulator beyond US stocks, through ib_insync: contract details per asset class, expired futures,
continuous futures, IB's refusals for what a class cannot show, and replay of non-stock instruments."""

from __future__ import annotations

from datetime import date

import pytest
from ib_insync import IB, ContFuture, Contract, Forex, Future, Index, Stock

from harvester.sim.market.calendar import VENUES, SessionCalendar
from harvester.sim.market.securities import SecuritiesMaster

ESM4 = Future("ES", "202406", "CME")


@pytest.fixture
def errors(ib: IB) -> list[tuple[int, int, str]]:
    seen: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, text, contract: seen.append((req_id, code, text))
    return seen


def bars(ib: IB, contract: Contract, what: str = "TRADES", end: str = "", duration: str = "10 D",
         size: str = "1 day", rth: bool = True):
    return list(ib.reqHistoricalData(contract, end, duration, size, what, rth, 2, timeout=10))


def test_contract_details_per_asset_class(ib):
    (vod,) = ib.reqContractDetails(Stock("VOD", "SMART", "GBP", primaryExchange="LSE"))
    assert (vod.contract.exchange, vod.timeZoneId, vod.minTick) == ("SMART", "Europe/London", 0.02)
    assert vod.liquidHours.startswith("20240614:0800-20240614:1630")
    (fx,) = ib.reqContractDetails(Forex("EURUSD"))
    assert (fx.contract.localSymbol, fx.contract.exchange, fx.minTick) == ("EUR.USD", "IDEALPRO", 5e-05)
    assert "20240616:1715-20240617:1700" in fx.tradingHours and "20240615:CLOSED" in fx.tradingHours
    (spx,) = ib.reqContractDetails(Index("SPX", "CBOE"))
    assert (spx.timeZoneId, spx.liquidHours[:27]) == ("US/Central", "20240614:0830-20240614:1500")
    (es,) = ib.reqContractDetails(ESM4)
    c = es.contract
    assert (c.lastTradeDateOrContractMonth, c.multiplier, c.localSymbol, es.minTick) == ("20240621", "50", "ESM4", 0.25)
    assert (es.contractMonth, es.realExpirationDate, es.timeZoneId) == ("202406", "20240621", "US/Central")
    assert "20240616:1700-20240617:1600" in es.tradingHours  # Monday's session opens Sunday evening
    (cont,) = ib.reqContractDetails(ContFuture("ES", "CME"))
    assert (cont.contract.secType, cont.contract.conId) == ("CONTFUT", c.conId)  # the front month's conId


def test_expired_futures_need_include_expired(ib):
    assert ib.reqContractDetails(Future("ES", "202403", "CME")) == []
    (march,) = ib.reqContractDetails(Future("ES", "202403", "CME", includeExpired=True))
    march.contract.includeExpired = True  # IB's details do not carry it; every data request must
    chain = ib.reqContractDetails(Future("ES", exchange="CME", includeExpired=True))
    expiries = sorted(d.contract.lastTradeDateOrContractMonth for d in chain)
    assert expiries[0] == "20220617" and expiries[-1] > "20250000"  # two years back, listed ones ahead
    served = bars(ib, march.contract, duration="1 M", end="20240320-00:00:00")
    assert served and served[-1].date == date(2024, 3, 15)  # nothing after its last trade date


def test_history_past_expiry_and_beyond_two_years(ib, errors):
    (march,) = ib.reqContractDetails(Future("ES", "202403", "CME", includeExpired=True))
    march.contract.includeExpired = True
    assert bars(ib, march.contract, end="20240601-00:00:00") == []
    assert errors[-1][1] == 162 and errors[-1][2].endswith("HMDS query returned no data: ESH4@CME Trades")
    (gone,) = [i for i in SecuritiesMaster.load().match(symbol="ES", sec_type="FUT")
               if i.last_trade_date == date(2022, 3, 18)]  # over two years before the gateway's 2024-06-14
    assert ib.reqContractDetails(Future(conId=gone.con_id, exchange="CME", includeExpired=True)) == []
    assert bars(ib, Future(conId=gone.con_id, exchange="CME", includeExpired=True), end="20220301-00:00:00") == []
    assert errors[-1][1:] == (166, "HMDS Expired Contract Violation.")


@pytest.mark.parametrize("contract, what, text", [
    (Forex("EURUSD"), "TRADES", "No historical market data for EUR/CASH@IDEALPRO Last 1d"),
    (Index("SPX", "CBOE"), "MIDPOINT", "No historical market data for SPX/IND@CBOE Midpoint 1d"),
])
def test_what_a_class_cannot_show_is_refused_as_ib_does(ib, errors, contract, what, text):
    assert bars(ib, contract, what) == []
    assert errors[-1][1:] == (162, "Historical Market Data Service error message:" + text)


def test_indices_have_trades_without_volume_and_forex_midpoints(ib):
    spx = bars(ib, Index("SPX", "CBOE"))
    assert spx and {(b.volume, b.average, b.barCount) for b in spx} == {(-1, -1, -1)}
    fx = bars(ib, Forex("EURUSD"), "MIDPOINT")
    assert fx and all(b.volume == -1 for b in fx) and 0.5 < fx[-1].close < 2


def test_continuous_futures_take_no_end_and_stitch_front_months(ib, errors):
    cont = ContFuture("ES", "CME")
    assert bars(ib, cont, end="20240601-00:00:00") == []
    assert errors[-1][1] == 10339
    stitched = bars(ib, cont, duration="6 M")
    days = [b.date for b in stitched]
    assert days == sorted(set(days)) and days[0] < date(2024, 3, 15) < days[-1]
    (march,) = ib.reqContractDetails(Future("ES", "202403", "CME", includeExpired=True))
    march.contract.includeExpired = True
    own = {b.date: b.close for b in bars(ib, march.contract, duration="6 M", end="20240316-00:00:00")}
    december = date(2023, 12, 15)  # the contract before March expired that day: March's own bars after it
    assert {b.date: b.close for b in stitched if december < b.date <= date(2024, 3, 15)} == \
        {d: c for d, c in own.items() if d > december}
    june = {b.date: b.close for b in bars(ib, ESM4, duration="6 M")}
    assert {b.date: b.close for b in stitched if b.date > date(2024, 3, 15)} == \
        {d: c for d, c in june.items() if d > date(2024, 3, 15)}
    roll_gap = june[date(2024, 3, 18)] / own[date(2024, 3, 15)] - 1
    assert abs(roll_gap) < 0.05  # one chain, one price path: expiries differ by their basis and a day's move


def test_replay_serves_forex_and_futures_by_local_symbol(make_gateway, connect, tmp_path):
    replay = tmp_path / "replay.csv"
    replay.write_text("symbol,date,open,high,low,close,volume\n"
                      "EUR.USD,2024-06-13,1.08,1.09,1.07,1.085,0\nESM4,2024-06-13,5400,5450,5390,5440,1200\n")
    ib = connect(make_gateway(replay=str(replay)))
    fx = bars(ib, Forex("EURUSD"), "MIDPOINT", duration="5 D")
    assert [(b.date, b.close, b.volume) for b in fx] == [(date(2024, 6, 13), 1.085, -1)]
    (es,) = bars(ib, ESM4, duration="5 D")
    assert (es.date, es.close, es.volume) == (date(2024, 6, 13), 5440, 1200)


def test_sessions_follow_each_venue():
    """CME's Monday opens Sunday 17:00 Chicago; forex's Sunday 17:15 New York; Tokyo has no DST."""
    cme = SessionCalendar(VENUES["CME"])
    k = cme.first_ordinal_on_or_after(date(2024, 3, 25))
    monday = cme.trading_day(k, use_rth=False)
    assert (monday.date, monday.open_utc.isoformat()) == (date(2024, 3, 25), "2024-03-24T22:00:00+00:00")
    fx = SessionCalendar(VENUES["IDEALPRO"])
    k = fx.first_ordinal_on_or_after(date(2024, 3, 11))
    assert fx.trading_day(k, use_rth=True).open_utc.isoformat() == "2024-03-10T21:15:00+00:00"  # EDT from 10 March
    tokyo = SessionCalendar(VENUES["TSEJ"])
    k = tokyo.first_ordinal_on_or_after(date(2024, 3, 20))
    assert tokyo.dates[k] == date(2024, 3, 21)  # 20 March, the spring equinox, is a Japanese holiday
