"""The planner: IB-legal windows, exact coverage semantics, empty once satisfied, one request per session."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from harvester.calendar import TradingCalendar
from harvester.ibrules import BAR_SIZES, bar_size, check_duration
from harvester.model import BarRequest, SeriesKey
from harvester.plan import (
    PlanError,
    SeriesState,
    lower_bound_requests,
    needs_head_timestamp,
    plan_requests,
)

NYSE = TradingCalendar.for_exchange("NYSE")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def state(bar: str, rth: bool = True, what: str = "TRADES", head=None, coverage=()) -> SeriesState:
    return SeriesState(SeriesKey(265598, bar, what, rth), "AAPL", NYSE, head, tuple(coverage))


def ib_window_start(req: BarRequest) -> datetime:
    """How the gateway reads a duration, computed independently of the planner."""
    count, unit = req.duration.split(" ")
    n = int(count)
    end = req.end
    if unit == "S":
        return end - timedelta(seconds=n)
    if unit == "D":
        before = [s for s in NYSE.sessions(end - timedelta(days=2 * n + 10), end, req.series.use_rth)]
        return before[-n].open_utc
    if unit == "W":
        return end - timedelta(weeks=n)
    months = n * 12 if unit == "Y" else n
    return (pd.Timestamp(end) - pd.DateOffset(months=months)).to_pydatetime()


def windows(reqs: list[BarRequest]) -> list[tuple[datetime, datetime]]:
    return [(r.start, r.end) for r in reqs]


def covered(t: datetime, spans) -> bool:
    return any(lo <= t < hi for lo, hi in spans)


def check_legal(reqs: list[BarRequest], now: datetime, target: int) -> None:
    for r in reqs:
        check_duration(r.series.bar_size, r.duration)
        assert r.start == ib_window_start(r), r
        assert r.start < r.end <= now
        bar = bar_size(r.series.bar_size)
        per_session = 57600 if not r.series.use_rth else 23400
        if bar.intraday and per_session // bar.seconds + 2 <= target:
            assert r.expected_bars <= target, r


def test_daily_backfill_without_head_is_one_long_request():
    now = utc(2026, 11, 24, 12)
    (req,) = plan_requests(state("1 day"), start=None, end=now, now=now)
    assert req.duration == "40 Y"
    assert req.end == utc(2026, 11, 23, 21)  # Monday's close; Tuesday is still trading
    assert req.start == ib_window_start(req)
    assert plan_requests(state("1 day", coverage=[(req.start, req.end)]), start=None, end=now, now=now) == []


def test_daily_gap_of_a_few_sessions_uses_days_and_rereads_the_last_stored_one():
    now = utc(2024, 12, 3, 1)
    old = [(utc(1980, 1, 1), utc(2024, 11, 26, 21))]
    (req,) = plan_requests(state("1 day", coverage=old), start=None, end=now, now=now)
    assert req.duration == "4 D"  # 11-26 (stored, compared), 11-27, 11-29 (half day), 12-02; not Thanksgiving
    assert (req.start, req.end) == (utc(2024, 11, 26, 14, 30), utc(2024, 12, 2, 21))
    assert req.check_until == utc(2024, 11, 26, 21) and req.expected_bars == 4
    (plain,) = plan_requests(state("1 day", coverage=old), start=None, end=now, now=now, overlap_sessions=0)
    assert (plain.duration, plain.start, plain.check_until) == ("3 D", utc(2024, 11, 27, 14, 30), None)


def test_no_overlap_without_a_whole_stored_session_before_the_gap():
    now = utc(2024, 12, 3, 1)
    partial = [(utc(2024, 11, 26, 18), utc(2024, 11, 26, 21))]  # the session's last hours only
    (req,) = plan_requests(state("1 day", coverage=partial), start=utc(2024, 11, 27), end=now, now=now)
    assert req.check_until is None and req.start == utc(2024, 11, 27, 14, 30)


@pytest.mark.parametrize(
    ("bar", "rth"), [("1 min", True), ("1 min", False), ("1 hour", True), ("1 day", True), ("30 mins", False)]
)
def test_increment_after_one_more_session_is_one_request_rereading_the_last_stored_session(bar, rth):
    now1 = utc(2024, 6, 12, 2)
    reqs = plan_requests(state(bar, rth), start=utc(2024, 5, 1), end=now1, now=now1)
    assert len(reqs) >= 1
    now2 = now1 + timedelta(days=1)
    (inc,) = plan_requests(state(bar, rth, coverage=windows(reqs)), start=utc(2024, 5, 1), end=now2, now=now2)
    assert inc.duration == "2 D"
    (stored,) = NYSE.sessions(utc(2024, 6, 11, 2), utc(2024, 6, 12, 2), rth)
    (session,) = NYSE.sessions(utc(2024, 6, 12, 2), now2, rth)
    assert (inc.start, inc.end, inc.check_until) == (stored.open_utc, session.close_utc, stored.close_utc)


def test_plan_is_newest_first_and_contiguous_on_sessions():
    now = utc(2024, 6, 12, 2)
    reqs = plan_requests(state("1 min"), start=utc(2024, 1, 1), end=now, now=now)
    assert all(a.start > b.start for a, b in itertools.pairwise(reqs))
    assert all(r.duration.endswith(" D") for r in reqs)
    for newer, older in itertools.pairwise(reqs):
        assert NYSE.sessions(older.end, newer.start, True) == []  # only closed time between chunks


def test_small_bars_stay_inside_the_six_month_horizon():
    now = utc(2026, 11, 24, 12)
    reqs = plan_requests(state("5 secs", rth=False), start=utc(2020, 1, 1), end=now, now=now)
    horizon = now - timedelta(days=180)
    assert min(r.start for r in reqs) >= horizon - timedelta(days=1)
    assert all(r.expected_bars <= 5000 for r in reqs)
    check_legal(reqs, now, 5000)


def test_adjusted_last_is_one_full_refresh_covering_finished_sessions_only():
    now = utc(2026, 11, 24, 16)  # Tuesday, mid-session: IB's answer includes today's unfinished bar
    (req,) = plan_requests(state("1 day", what="ADJUSTED_LAST"), start=None, end=now, now=now)
    assert req.end == utc(2026, 11, 23, 21)  # Monday's close: the unfinished bar is never covered
    assert req.duration == "40 Y" and req.check_until is None
    again = state("1 day", what="ADJUSTED_LAST", coverage=[(req.start, req.end)])
    assert plan_requests(again, start=None, end=now, now=now) == []
    later = now + timedelta(days=1)
    (refresh,) = plan_requests(again, start=None, end=later, now=later)
    assert refresh.end == utc(2026, 11, 24, 21) and refresh.duration == "40 Y"


def test_weekly_bars_wait_for_the_week_to_end():
    now = utc(2024, 6, 12, 2)  # Wednesday: this week's bar is incomplete
    (req,) = plan_requests(state("1 week"), start=utc(2020, 1, 1), end=now, now=now)
    assert req.end == utc(2024, 6, 7, 20)  # last Friday's close
    assert req.duration.endswith(" Y")


def test_needs_head_timestamp():
    assert needs_head_timestamp(SeriesKey(1, "1 min", "TRADES", True), None)
    assert not needs_head_timestamp(SeriesKey(1, "1 min", "TRADES", True), utc(2024, 1, 1))
    assert not needs_head_timestamp(SeriesKey(1, "1 day", "TRADES", True), None)
    assert not needs_head_timestamp(SeriesKey(1, "1 week", "MIDPOINT", False), None)


def test_bad_inputs_raise_plan_errors():
    now = utc(2024, 6, 12)
    with pytest.raises(PlanError, match="no start and no head"):
        plan_requests(state("1 min"), start=None, end=now, now=now)
    with pytest.raises(PlanError, match="target_bars"):
        plan_requests(state("1 day"), start=None, end=now, now=now, target_bars=0)
    with pytest.raises(PlanError, match="not timezone-aware"):
        plan_requests(state("1 day", coverage=[(datetime(2024, 1, 1), now)]), start=None, end=now, now=now)
    with pytest.raises(ValueError, match="naive"):
        plan_requests(state("1 day"), start=None, end=datetime(2024, 1, 1), now=now)


def test_nothing_before_head_and_nothing_in_closed_time():
    now = utc(2024, 6, 12, 2)
    head = utc(2024, 6, 11, 13, 30)
    (req,) = plan_requests(state("1 min", head=head), start=None, end=now, now=now)
    assert (req.duration, req.start) == ("1 D", utc(2024, 6, 11, 13, 30))
    assert plan_requests(state("1 min"), start=utc(2024, 6, 8), end=utc(2024, 6, 10), now=now) == []


def random_case(rng: random.Random) -> tuple[SeriesState, datetime | None, datetime, datetime, int]:
    bar = rng.choice(list(BAR_SIZES))
    rth = rng.random() < 0.5
    what = rng.choice(["TRADES", "TRADES", "MIDPOINT", "BID_ASK"])
    now = utc(2025, 1, 1) + timedelta(seconds=rng.randrange(0, 650 * 86_400))
    info = BAR_SIZES[bar]
    span_days = 3 if info.seconds <= 5 else 40 if info.intraday else 3000
    start = now - timedelta(seconds=rng.randrange(3600, span_days * 86_400))
    head = start + timedelta(seconds=rng.randrange(0, 5 * 86_400)) if rng.random() < 0.3 else None
    if rng.random() < 0.25 and not info.intraday:
        start = None
    end = now - timedelta(seconds=rng.randrange(0, 3 * 86_400)) if rng.random() < 0.3 else now
    coverage = []
    for _ in range(rng.randrange(0, 4)):
        lo = (start or now - timedelta(days=span_days)) + timedelta(
            seconds=rng.randrange(0, span_days * 86_400)
        )
        coverage.append((lo, lo + timedelta(seconds=rng.randrange(1, 5 * 86_400))))
    target = rng.choice([5000, 5000, 2000, 10**12])
    return state(bar, rth, what, head, coverage), start, end, now, target


@pytest.mark.parametrize("seed", range(120))
def test_property_applied_plan_leaves_nothing_to_do(seed):
    rng = random.Random(seed)
    st, start, end, now, target = random_case(rng)
    reqs = plan_requests(st, start=start, end=end, now=now, target_bars=target)
    if st.series.what_to_show != "ADJUSTED_LAST":
        check_legal(reqs, now, target)
    applied = SeriesState(st.series, st.symbol, st.calendar, st.head, st.coverage + tuple(windows(reqs)))
    assert plan_requests(applied, start=start, end=end, now=now, target_bars=target) == []
    bar = bar_size(st.series.bar_size)
    if bar.ib_name in ("1 week", "1 month") or start is None:
        return
    # Every trading instant of the wanted span is covered by old coverage or a planned window.
    lo = max([start, st.head or start] + ([now - timedelta(days=180)] if bar.small else []))
    last = NYSE.last_closed_session(now, st.series.use_rth)
    hi = min(end, last.close_utc)
    spans = list(st.coverage) + windows(reqs)
    for session in NYSE.sessions(lo, hi, st.series.use_rth) if lo < hi else []:
        for t in (session.open_utc, session.open_utc + (session.close_utc - session.open_utc) / 2):
            t = max(t, lo)
            if t < min(hi, session.close_utc):
                assert covered(t, spans), (t, session)


def test_lower_bound_never_exceeds_the_plan():
    now = utc(2026, 11, 24, 12)
    states = [state("1 min", head=utc(2019, 1, 1)), state("1 day"), state("5 secs", rth=False)]
    planned = sum(len(plan_requests(s, start=None, end=now, now=now)) for s in states)
    bound = lower_bound_requests(states, start=None, end=now, now=now)
    assert 3 <= bound < planned


def test_five_hundred_daily_series_each_plan_one_request_from_where_coverage_ends():
    """(How long planning takes is measured in bench/harvest.py, not asserted here.)"""
    now = utc(2026, 11, 24, 12)
    rng = random.Random(1)
    states = []
    for k in range(500):
        covered_until = utc(2026, 11, 1) + timedelta(days=rng.randrange(0, 20))
        coverage = [(utc(1990, 1, 1), covered_until)] if k % 2 else []
        states.append(
            SeriesState(SeriesKey(k, "1 day", "TRADES", True), f"S{k}", NYSE, None, tuple(coverage))
        )
    plans = [plan_requests(s, start=utc(1990, 1, 1), end=now, now=now) for s in states]
    assert all(len(p) == 1 for p in plans)
    for state, (request,) in zip(states, plans, strict=True):
        assert now - timedelta(days=4) < request.end <= now  # the last session close before now
        if state.coverage:  # covered up to a day this month: the request re-reads the last stored session
            covered_until = state.coverage[0][1]
            (last_stored,) = NYSE.sessions(covered_until - timedelta(days=5), covered_until, True)[-1:]
            assert (request.start, request.check_until) == (last_stored.open_utc, covered_until)


def test_nothing_is_asked_past_a_futures_expiry():
    es = TradingCalendar.for_exchange("CME", "FUT")
    expiry = es.close_on_or_before(datetime(2024, 6, 21).date(), use_rth=True)
    futures = SeriesState(SeriesKey(11, "1 hour", "TRADES", True), "ESM4", es, None, (), expires=expiry)
    now = utc(2024, 7, 10)
    requests = plan_requests(futures, start=utc(2024, 6, 17), end=now, now=now)
    assert requests and max(r.end for r in requests) == expiry == utc(2024, 6, 21, 22)  # CME closes 17:00
    covered = SeriesState(futures.series, "ESM4", es, None, tuple(windows(requests)), expires=expiry)
    assert plan_requests(covered, start=utc(2024, 6, 17), end=now + timedelta(days=30), now=now) == []


def test_a_calendar_from_contract_details_is_paged_in_time_units_not_sessions():
    """`N D` counts sessions, and a calendar that knows no holidays would miscount them."""
    unknown = TradingCalendar.for_exchange("WSE")
    assert unknown.from_details
    daily = SeriesState(SeriesKey(12, "1 day", "TRADES", True), "PKN", unknown, None, ())
    now = utc(2024, 6, 15)
    assert [r.duration for r in plan_requests(daily, start=utc(2024, 6, 3), end=now, now=now)] == ["1 Y"]
    hourly = SeriesState(SeriesKey(12, "1 hour", "TRADES", True), "PKN", unknown, None, ())
    assert all(not r.duration.endswith(" D") for r in plan_requests(hourly, start=utc(2024, 1, 2), end=now, now=now))


def test_split_request_halves_along_sessions_and_keeps_the_check_on_the_oldest_part():
    """Issue 14 item 2: a timed-out window is asked again as smaller ones that cover exactly the same."""
    from harvester.plan import split_request

    cal = TradingCalendar.for_exchange("NASDAQ")
    series = SeriesKey(1, "1 min", "TRADES", True)
    state = SeriesState(series, "AAPL", cal, head=None, coverage=())
    start, end = datetime(2024, 6, 3, 13, 30, tzinfo=UTC), datetime(2024, 6, 14, 20, tzinfo=UTC)
    (whole,) = plan_requests(state, start=start, end=end, now=end, target_bars=10_000)
    whole = replace(whole, check_until=datetime(2024, 6, 3, 20, tzinfo=UTC))
    parts = split_request(whole, cal)
    assert parts is not None and len(parts) >= 2
    assert all(p.expected_bars <= whole.expected_bars // 2 + 391 for p in parts)
    assert all(p.duration.endswith(" D") for p in parts), "whole sessions"
    assert parts[0].end == whole.end and min(p.start for p in parts) == whole.start
    spans = sorted((p.start, p.end) for p in parts)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), "no overlap"
    assert [p.check_until for p in parts] == [None] * (len(parts) - 1) + [whole.check_until]
    one_session = plan_requests(state, start=datetime(2024, 6, 14, 13, 30, tzinfo=UTC), end=end, now=end)[0]
    assert split_request(one_session, cal) is None, "never below one session"
    daily = replace(whole, series=SeriesKey(1, "1 day", "TRADES", True))
    assert split_request(daily, cal) is None
