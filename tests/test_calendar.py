"""The harvester's own calendar: holidays, half days, DST, both IB session flavours."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime

import numpy as np
import pytest

from harvester.calendar import (
    ContractListing,
    Session,
    TradingCalendar,
    calendar_for,
    calendar_name,
    parse_hours,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
def nyse() -> TradingCalendar:
    return TradingCalendar.for_exchange("NYSE")


@pytest.mark.parametrize("exchange", ["NYSE", "NASDAQ", "island", "ARCA", "BATS", "AMEX", "CBOE"])
def test_us_exchanges_share_the_nyse_calendar(exchange, nyse):
    calendar = TradingCalendar.for_exchange(exchange)
    assert calendar is nyse
    assert (calendar.name, calendar.time_zone, calendar.from_details) == ("XNYS", "US/Eastern", False)


@pytest.mark.parametrize("exchange", ["", "MOON"])
def test_unknown_exchanges_are_never_given_new_york(exchange, nyse):
    calendar = TradingCalendar.for_exchange(exchange)
    assert calendar.from_details and calendar.name == "contract details"


def test_thanksgiving_week_regular_hours(nyse):
    sessions = nyse.sessions(utc(2024, 11, 27), utc(2024, 12, 3), use_rth=True)
    assert sessions == [
        Session(date(2024, 11, 27), utc(2024, 11, 27, 14, 30), utc(2024, 11, 27, 21)),
        Session(date(2024, 11, 29), utc(2024, 11, 29, 14, 30), utc(2024, 11, 29, 18)),  # half day
        Session(date(2024, 12, 2), utc(2024, 12, 2, 14, 30), utc(2024, 12, 2, 21)),
    ]


def test_extended_hours_and_half_day_cut_to_five_pm(nyse):
    sessions = nyse.sessions(utc(2024, 11, 28, 12), utc(2024, 11, 30), use_rth=False)
    assert sessions == [
        Session(date(2024, 11, 29), utc(2024, 11, 29, 9), utc(2024, 11, 29, 22)),
    ]


def test_daylight_saving_moves_utc_bounds(nyse):
    friday, monday = nyse.sessions(utc(2024, 3, 8, 12), utc(2024, 3, 11, 23), use_rth=False)
    assert (friday.open_utc, friday.close_utc) == (utc(2024, 3, 8, 9), utc(2024, 3, 9, 1))
    assert (monday.open_utc, monday.close_utc) == (utc(2024, 3, 11, 8), utc(2024, 3, 12, 0))


def test_sessions_overlap_half_open(nyse):
    assert nyse.sessions(utc(2024, 6, 8), utc(2024, 6, 10), use_rth=True) == []  # weekend
    assert nyse.sessions(utc(2024, 6, 10, 20), utc(2024, 6, 11, 13, 30), use_rth=True) == []
    (only,) = nyse.sessions(utc(2024, 6, 10, 19, 59), utc(2024, 6, 11, 13, 30), use_rth=True)
    assert only.date == date(2024, 6, 10)


def test_last_closed_session(nyse):
    assert nyse.last_closed_session(utc(2024, 11, 29, 21), use_rth=False).date == date(2024, 11, 27)
    assert nyse.last_closed_session(utc(2024, 11, 29, 22), use_rth=False).date == date(2024, 11, 29)
    assert nyse.last_closed_session(utc(2024, 11, 29, 18), use_rth=True).date == date(2024, 11, 29)
    assert nyse.last_closed_session(utc(1970, 1, 2), use_rth=True) is None


def test_thirty_six_years_of_sessions(nyse):
    sessions = nyse.sessions(utc(1990, 1, 1), utc(2026, 1, 1), use_rth=True)
    assert 9000 < len(sessions) < 9100
    assert all(a.close_utc <= b.open_utc for a, b in itertools.pairwise(sessions))


def test_naive_datetimes_are_refused(nyse):
    with pytest.raises(ValueError, match="naive datetime"):
        nyse.sessions(datetime(2024, 1, 1), utc(2024, 2, 1), use_rth=True)


# -- every market on its own calendar ------------------------------------------------------------------

CME_HOURS = "20240322:1700-20240322:1600;20240323:CLOSED;20240324:1700-20240325:1600;20240325:1700-20240326:1600"
CME_LIQUID = "20240322:0830-20240322:1500;20240323:CLOSED;20240324:CLOSED;20240325:0830-20240325:1500"
FX_HOURS = "20240308:1715-20240308:1700;20240309:CLOSED;20240310:1715-20240311:1700;20240311:1715-20240312:1700"


def contract(exchange: str, sec_type: str = "STK", zone: str = "", trading: str = "", liquid: str = "",
             primary: str = ""):
    return ContractListing(sec_type, exchange, primary, zone, trading, liquid)


@pytest.mark.parametrize("exchange, sec_type, name", [
    ("LSE", "STK", "XLON"), ("IBIS", "STK", "XETR"), ("TSEJ", "STK", "XTKS"), ("SEHK", "STK", "XHKG"),
    ("ASX", "STK", "XASX"), ("TSE", "STK", "XTSE"), ("EBS", "STK", "XSWX"), ("SBF", "STK", "XPAR"),
    ("AEB", "STK", "XAMS"), ("CME", "FUT", "CMES"), ("NYMEX", "FUT", "CMES"), ("IDEALPRO", "CASH", "24/5"),
    ("EUREX", "FUT", "XEUR"), ("EUREX", "IND", "XETR"), ("CBOE", "IND", "XNYS"),
])
def test_each_exchange_maps_to_its_calendar(exchange, sec_type, name):
    assert calendar_name(contract(exchange, sec_type)) == name


def test_ib_hours_in_both_forms():
    assert parse_hours("20180320:1715-1700;20180324:CLOSED") == {date(2018, 3, 20): (-24300, 61200),
                                                                 date(2018, 3, 24): None}
    # ranges after a comma are the same day's; a session opening the evening before belongs to the next day
    assert parse_hours("20130114:1700-1515,1530-1615") == {date(2013, 1, 14): (-25200, 58500)}
    assert parse_hours("20240616:1700-20240617:1600") == {date(2024, 6, 17): (-25200, 57600)}
    # Tokyo's lunch break: one session from the first open to the last close
    assert parse_hours("20240614:0900-20240614:1130;20240614:1230-20240614:1500;junk") == \
        {date(2024, 6, 14): (32400, 54000)}


def test_cme_session_opening_sunday_evening_is_mondays():
    es = calendar_for(contract("CME", "FUT", "US/Central", CME_HOURS, CME_LIQUID))
    (monday,) = es.sessions(utc(2024, 3, 24), utc(2024, 3, 25, 12), use_rth=False)
    assert monday == Session(date(2024, 3, 25), utc(2024, 3, 24, 22), utc(2024, 3, 25, 21))  # 17:00-16:00 CDT
    (regular,) = es.sessions(utc(2024, 3, 25), utc(2024, 3, 26), use_rth=True)
    assert (regular.open_utc, regular.close_utc) == (utc(2024, 3, 25, 13, 30), utc(2024, 3, 25, 20))
    assert es.sessions(utc(2024, 3, 29), utc(2024, 3, 30), use_rth=False) == []  # Good Friday: CME closed
    friday = es.sessions(utc(2024, 11, 28, 23), utc(2024, 11, 29, 23), use_rth=False)[-1]
    assert friday.close_utc == utc(2024, 11, 29, 18)  # CME's early close (12:00 Chicago) cuts it


def test_forex_week_follows_new_york_dst():
    fx = calendar_for(contract("IDEALPRO", "CASH", "US/Eastern", FX_HOURS, FX_HOURS))
    friday, monday = fx.sessions(utc(2024, 3, 8), utc(2024, 3, 11, 12), use_rth=True)
    assert (friday.date, friday.open_utc, friday.close_utc) == (date(2024, 3, 8), utc(2024, 3, 7, 22, 15),
                                                                utc(2024, 3, 8, 22))  # EST
    assert (monday.date, monday.open_utc) == (date(2024, 3, 11), utc(2024, 3, 10, 21, 15))  # EDT since 02:00


def test_european_dst_moves_london_three_weeks_after_new_york():
    london = TradingCalendar.for_exchange("LSE")
    days = london.sessions(utc(2024, 3, 28), utc(2024, 4, 3), use_rth=True)
    assert [(s.date, s.open_utc.hour) for s in days] == [(date(2024, 3, 28), 8), (date(2024, 4, 2), 7)]
    tokyo = TradingCalendar.for_exchange("TSEJ")
    assert [s.open_utc.hour for s in tokyo.sessions(utc(2024, 3, 25), utc(2024, 4, 6), True)] == [0] * 10


def test_contract_details_override_the_calendar_where_they_differ():
    """A closure and an early close announced lately: IB's details win for the days they list."""
    hours = ("20240624:0400-20240624:2000;20240625:CLOSED;20240626:0400-20240626:1700;"
             "20240627:0400-20240627:2000")
    liquid = ("20240624:0930-20240624:1600;20240625:CLOSED;20240626:0930-20240626:1300;"
              "20240627:0930-20240627:1600")
    stock = calendar_for(contract("NASDAQ", "STK", "US/Eastern", hours, liquid, primary="NASDAQ"))
    days = stock.sessions(utc(2024, 6, 24), utc(2024, 6, 28), use_rth=True)
    assert [(s.date, s.close_utc.hour) for s in days] == [(date(2024, 6, 24), 20), (date(2024, 6, 26), 17),
                                                          (date(2024, 6, 27), 20)]
    assert stock is not TradingCalendar.for_exchange("NYSE")
    usual = [f"202406{d}:{{}}-202406{d}:{{}}" for d in (24, 25, 26, 27)]
    plain = calendar_for(contract("NASDAQ", "STK", "US/Eastern", ";".join(u.format("0400", "2000") for u in usual),
                                  ";".join(u.format("0930", "1600") for u in usual), primary="NASDAQ"))
    assert plain is TradingCalendar.for_exchange("NYSE")  # details that agree share the exchange's calendar


def test_no_known_calendar_takes_its_sessions_from_the_details():
    hours = "20240614:0900-20240614:1700;20240615:CLOSED;20240616:CLOSED;20240617:0900-20240617:1700"
    warsaw = calendar_for(contract("WSE", "STK", "Europe/Warsaw", hours, hours, primary="WSE"))
    assert warsaw.from_details and warsaw.name == "contract details"
    week = warsaw.sessions(utc(2024, 3, 25), utc(2024, 3, 30), use_rth=True)
    assert [(s.date.day, s.open_utc.hour) for s in week] == [(25, 8), (26, 8), (27, 8), (28, 8), (29, 8)]


def test_session_dates_of_evening_bars():
    es = calendar_for(contract("CME", "FUT", "US/Central", CME_HOURS, CME_LIQUID))
    instants = np.array([utc(2024, 3, 24, 22).timestamp(), utc(2024, 3, 25, 20, 59).timestamp(),
                         utc(2024, 3, 25, 22).timestamp()], dtype=np.int64)
    assert es.session_dates(instants, use_rth=False).tolist() == [date(2024, 3, 25), date(2024, 3, 25),
                                                                  date(2024, 3, 26)]
