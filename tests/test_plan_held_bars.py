"""The planner and bars refused at the door: asked for again once a night, inside the nightly increment
when one window reaches, else one request a series; never again once given up."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from harvester.calendar import TradingCalendar
from harvester.ibrules import check_duration
from harvester.model import HeldBar, SeriesKey
from harvester.plan import SeriesState, plan_requests

NYSE = TradingCalendar.for_exchange("NYSE")
SERIES = SeriesKey(265598, "1 min", "TRADES", True)
MONDAY_OPEN = datetime(2024, 6, 10, 13, 30, tzinfo=UTC)
DAY = timedelta(days=1)


def night(day: int) -> datetime:
    return datetime(2024, 6, day, 22, tzinfo=UTC)


MONDAY_NIGHT = night(10)


def held_at(when: datetime, last_seen: datetime | None = MONDAY_NIGHT, given_up: bool = False) -> HeldBar:
    return HeldBar(when, when + timedelta(minutes=1), last_seen, given_up)


def plan(held: list[HeldBar], now: datetime, covered_until: datetime, start: datetime = MONDAY_OPEN,
         target_bars: int = 5000):
    """Coverage from `start` to `covered_until`, minus each held bar's minute (as the warehouse records it)."""
    spans, cursor = [], start
    for h in sorted(held, key=lambda h: h.start):
        spans.append((cursor, h.start))
        cursor = h.end
    spans.append((cursor, covered_until))
    state = SeriesState(SERIES, "AAPL", NYSE, None, tuple(spans), tuple(held))
    requests = plan_requests(state, start=start, end=now, now=now, target_bars=target_bars)
    for r in requests:
        check_duration(r.series.bar_size, r.duration)
    return requests


def test_a_held_bar_rides_in_the_nightly_increment():
    monday_close = MONDAY_OPEN + timedelta(hours=6, minutes=30)
    requests = plan([held_at(MONDAY_OPEN + timedelta(hours=2))], now=night(11), covered_until=monday_close)
    assert [(r.start, r.duration) for r in requests] == [(MONDAY_OPEN, "2 D")]


def test_the_same_night_asks_nothing_and_a_given_up_bar_is_never_asked_for():
    monday_close = MONDAY_OPEN + timedelta(hours=6, minutes=30)
    assert plan([held_at(MONDAY_OPEN + timedelta(hours=2))], now=night(10) + timedelta(hours=1),
                covered_until=monday_close) == []
    given_up = held_at(MONDAY_OPEN + timedelta(hours=2), last_seen=night(11), given_up=True)
    assert plan([given_up], now=night(14), covered_until=night(14) - timedelta(hours=2)) == []
    tuesday_open = MONDAY_OPEN + DAY
    requests = plan([given_up], now=night(11), covered_until=monday_close)
    assert [(r.start, r.duration) for r in requests] == [(tuesday_open, "1 D")]  # only the increment


def test_a_held_bar_too_old_for_the_increment_costs_one_request_for_every_held_bar():
    """1-min bars with a 1,000-bar target (two sessions a window): the increment is 2 D; held bars three
    weeks back get one request of their own, reaching back from the newest as far as one window goes (the
    oldest waits for a later night)."""
    start = datetime(2024, 5, 20, 13, 30, tzinfo=UTC)
    held = [held_at(start + timedelta(days=d, hours=1)) for d in (0, 1, 2)]
    covered_until = datetime(2024, 6, 11, 20, tzinfo=UTC)
    requests = plan(held, now=night(13), covered_until=covered_until, start=start, target_bars=1000)
    assert [(r.start, r.end, r.duration) for r in requests] == [
        (datetime(2024, 6, 12, 13, 30, tzinfo=UTC), night(13) - timedelta(hours=2), "2 D"),
        (start + DAY, datetime(2024, 5, 22, 20, tzinfo=UTC), "2 D"),
    ]


def test_a_held_bar_between_sessions_is_asked_with_both_sessions():
    """A bar stamped at Monday's close (outside the session): the window must hold its time."""
    after_close = MONDAY_OPEN + timedelta(hours=6, minutes=30)
    tuesday_close = after_close + DAY
    requests = plan([held_at(after_close, last_seen=night(11))], now=night(12), covered_until=tuesday_close)
    (request,) = requests
    assert request.start <= after_close and request.end == night(12) - timedelta(hours=2)
    assert request.duration == "3 D"


def test_a_held_bar_never_seen_again_since_an_older_version_is_due():
    monday_close = MONDAY_OPEN + timedelta(hours=6, minutes=30)
    legacy = held_at(MONDAY_OPEN + timedelta(hours=2), last_seen=None)
    requests = plan([legacy], now=night(10) + timedelta(hours=1), covered_until=monday_close)
    assert [(r.start, r.duration) for r in requests] == [(MONDAY_OPEN, "1 D")]


def test_held_bars_over_a_month_ride_in_the_increment_and_one_request_more():
    """A refused bar in each of 25 sessions, 1-min bars, 5,000-bar target (12 sessions a window): the
    increment reaches back over the newest 11, one more request over the next 12, the oldest two wait."""
    start = datetime(2024, 5, 6, 13, 30, tzinfo=UTC)
    sessions = NYSE.sessions(start, datetime(2024, 6, 10, 20, 1, tzinfo=UTC), True)
    assert len(sessions) == 25
    held = [held_at(s.open_utc + timedelta(hours=1)) for s in sessions]
    requests = plan(held, now=night(11), covered_until=sessions[-1].close_utc, start=start)
    assert [(r.duration, r.end.date()) for r in requests] == [("12 D", date(2024, 6, 11)),
                                                              ("12 D", sessions[-12].date)]
    assert requests[1].start == sessions[2].open_utc
