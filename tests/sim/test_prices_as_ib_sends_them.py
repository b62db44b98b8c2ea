"""Prices as IB writes them: traded prices on the instrument's tick, every bar in OHLC order, doubles as
Java's `Double.toString` writes them (docs/ib-numbers.md).

The whole bundled master is checked in process through the market data module (the wire is not what
is tested there); one request goes over the wire to a real client.
"""

from __future__ import annotations

import datetime as dt
import struct

import numpy as np
import pytest
from ib_insync import Stock

from harvester.sim.market.barcolumns import BarColumns
from harvester.sim.market.barsizes import _TABLE as SIM_BAR_SIZES
from harvester.sim.market.marketdata import WHAT_TO_SHOW, MarketData
from harvester.sim.market.securities import SecuritiesMaster
from harvester.sim.wire.framing import java_double

UTC = dt.UTC
WEEK = (dt.datetime(2024, 6, 3, tzinfo=UTC), dt.datetime(2024, 6, 8, tzinfo=UTC))
NOW = dt.datetime(2024, 6, 14, 22, tzinfo=UTC)
# Traded or quoted prices, which IB keeps on the tick; BID_ASK's open and close are time averages.
ON_TICK = {what: ("open", "high", "low", "close") for what in WHAT_TO_SHOW} | {"BID_ASK": ("high", "low")}


@pytest.fixture(scope="module")
def md() -> MarketData:
    return MarketData(SecuritiesMaster.load())


def broken(bars: BarColumns) -> np.ndarray:
    """Rows out of OHLC order, compared exactly."""
    o, h, low, c = bars.open, bars.high, bars.low, bars.close
    return ~((low <= np.minimum(o, c)) & (np.maximum(o, c) <= h))


def off_tick(values: np.ndarray, tick: float) -> np.ndarray:
    """Values that are not the double nearest a multiple of the tick (tick = 1/q for every listed one)."""
    q = round(1 / tick)
    return np.rint(values * q) / q != values


def us_stocks(master) -> list:
    return [i for i in master if i.sec_type == "STK" and i.calendar_name == "XNYS"]


def check_minutes(md, instruments, use_rth: bool, us: bool = True) -> int:
    checked = 0
    for inst in instruments:
        for what in sorted(WHAT_TO_SHOW):
            bars = md.bar_columns(inst, "1 min", what, use_rth, *WEEK, NOW)
            assert not us or len(bars) == 5 * (390 if use_rth else 960) or inst.listing_date > WEEK[0].date(), \
                inst.symbol
            assert not broken(bars).any(), (inst.symbol, what, np.flatnonzero(broken(bars))[:3])
            for field in ON_TICK[what]:
                assert not off_tick(getattr(bars, field), inst.min_tick).any(), (inst.symbol, what, field)
            checked += len(bars)
    return checked


def test_a_week_of_regular_hours_minutes_for_every_instrument_and_what(md):
    """The issue's S&P 500 week, for every US stock of the master (the ETFs and DUAL too) and every whatToShow."""
    assert check_minutes(md, us_stocks(md.master), use_rth=True) > 5_900_000


def test_a_week_of_extended_hours_minutes_for_a_sample(md):
    """Pre- and after-market minutes come from segments of their own."""
    assert check_minutes(md, us_stocks(md.master)[::25], use_rth=False) > 500_000


def test_every_other_market_on_its_tick_and_in_ohlc_order(md):
    """Stocks abroad, forex, indices and the futures front months (ES: 0.25 points, EUR.USD: 0.00005), in
    both flavours; their sessions are counted elsewhere (tests/sim/test_markets.py)."""
    today = WEEK[0].date()
    world = [i for i in md.master if i.calendar_name != "XNYS" or i.sec_type != "STK"]
    fronts = [i for i in world if i.last_trade_date is None or today <= i.last_trade_date <= today.replace(month=9)]
    assert {i.sec_type for i in fronts} == {"STK", "CASH", "IND", "FUT"}
    for use_rth in (True, False):
        assert check_minutes(md, fronts, use_rth=use_rth, us=False) > 100_000


def test_a_day_of_five_seconds_for_a_sample(md):
    day = (dt.datetime(2024, 6, 4, tzinfo=UTC), dt.datetime(2024, 6, 5, tzinfo=UTC))
    for inst in us_stocks(md.master)[::100] + md.master.match(symbol="BRK B"):
        for what in sorted(WHAT_TO_SHOW):
            bars = md.bar_columns(inst, "5 secs", what, True, *day, NOW)
            assert len(bars) == 390 * 12 and not broken(bars).any(), (inst.symbol, what)


@pytest.mark.parametrize("bar_size", sorted(SIM_BAR_SIZES, key=lambda b: SIM_BAR_SIZES[b][0]))
def test_every_bar_size_for_a_sample(md, bar_size):
    seconds = SIM_BAR_SIZES[bar_size][0]
    span = dt.timedelta(hours=2) if seconds < 60 else dt.timedelta(days=10) if seconds < 86_400 else None
    start = dt.datetime(2024, 6, 3, 14, tzinfo=UTC) if span else dt.datetime(2020, 1, 1, tzinfo=UTC)
    for symbol in ("BRK B", "WDAY"):
        (inst,) = md.master.match(symbol=symbol)
        for what in sorted(WHAT_TO_SHOW):
            for use_rth in (True, False):
                bars = md.bar_columns(inst, bar_size, what, use_rth, start, start + span if span else NOW, NOW)
                assert len(bars) and not broken(bars).any(), (symbol, bar_size, what, use_rth)


def test_the_noisy_bar_of_the_issue_reads_on_the_cent_through_ib_insync(ib):
    """BRK B's 2024-06-04 minutes once read open=18.540000000000003 against high=18.54."""
    brk = Stock("BRK B", "SMART", "USD")
    (details,) = ib.reqContractDetails(brk)
    assert details.minTick == 0.01
    for what in ("TRADES", "MIDPOINT", "BID_ASK"):
        bars = ib.reqHistoricalData(brk, "20240604 16:00:00 US/Eastern", "1 D", "1 min", what, True, 2)
        assert len(bars) == 390
        assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in bars), what
        assert all(round(b.high, 2) == b.high and round(b.low, 2) == b.low for b in bars), what


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (18.54, "18.54"), (185.0, "185.0"), (0.001, "0.001"), (9.0e-4, "9.0E-4"), (1e-4, "1.0E-4"),
        (-2.5e-7, "-2.5E-7"), (9999999.5, "9999999.5"), (1e7, "1.0E7"), (12345678.9, "1.23456789E7"),
        (0.0, "0.0"), (-0.0, "-0.0"), (1 / 3, "0.3333333333333333"), (0.1 + 0.2, "0.30000000000000004"),
        (5e-324, "4.9E-324"), (1e23, "1.0E23"), (float("inf"), "Infinity"), (float("nan"), "NaN"),
    ],
)  # fmt: skip
def test_java_double_writes_what_double_tostring_writes(value, text):
    assert java_double(value) == text


def test_java_double_reads_back_to_the_same_double():
    rng = np.random.default_rng(17)
    values = rng.integers(0, 2**63, 20_000, dtype=np.uint64).view(np.float64)
    values = values[np.isfinite(values)]
    assert all(float(java_double(v)) == v for v in values.tolist())
    assert struct.pack(">d", float(java_double(-0.0))) == struct.pack(">d", -0.0)


def test_replayed_rows_reach_the_client_as_given_bad_ones_and_noise_included(make_gateway, connect, tmp_path):
    path = tmp_path / "replay.csv"
    path.write_text(
        "symbol,date,open,high,low,close,volume,wap,bar_count\n"
        "AAPL,2024-06-03,18.540000000000003,18.54,18.52,18.54,1000,18.53,5\n"
        "AAPL,2024-06-04,10,9,11,10,-5,10,1\n"  # high below low, negative volume
        "AAPL,2024-06-05,1.0E-4,0.00015,0.00005,0.0001,7,0.0001,1\n"
    )
    ib = connect(make_gateway(replay=str(path)))
    bars = ib.reqHistoricalData(Stock("AAPL", "SMART", "USD"), "", "1 M", "1 day", "TRADES", True)
    assert [(b.open, b.high, b.low, b.close, b.volume) for b in bars] == [
        (18.540000000000003, 18.54, 18.52, 18.54, 1000), (10, 9, 11, 10, -5), (1e-4, 1.5e-4, 5e-5, 1e-4, 7)]
