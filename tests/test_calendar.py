"""The harvester's own calendar: holidays, half days, DST, both IB session flavours."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime

import pytest

from harvester.calendar import Session, TradingCalendar


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
