"""What is missing → the fewest requests that cover it. Pure: state, clock and calendar come in as data.

A request with endDateTime E covers (as IB and the simulated gateway count it):
  `N S` → [E − N s, E); `N D` → from the open of the N-th session starting before E, to E;
  `N W` / `N M` / `N Y` → [E − N calendar weeks / months / years, E), months clamped at month end.
Only bars that start in the window and are complete by the gateway's "now" come back, so the wanted
span ends where the first incomplete bar begins. Internally every instant is an epoch second (int).
The newest gap of a series with stored bars reaches back over its last stored session (`check_until`
marks it): IB changes history under the cache, and that overlap is how a split or a revision is seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime

import numpy as np

from harvester.calendar import TradingCalendar, from_epoch, to_epoch
from harvester.ibrules import (
    DAILY_HORIZON_YEARS,
    SMALL_BAR_HORIZON_DAYS,
    BarSize,
    bar_size,
    max_duration,
)
from harvester.model import BarRequest, HeldBar, SeriesKey, merge_intervals, subtract_intervals

NO_TARGET = 10**12  # target_bars for "as few requests as IB's durations allow"
_UNIT_ORDER = ("D", "S", "W", "M", "Y")  # tie-break: session-aligned windows first
_CALENDAR_UNITS = ("W", "M", "Y")
_UNIT_SECONDS = {"W": 7 * 86_400, "M": 2_629_746, "Y": 31_556_952}


class PlanError(ValueError):
    """The planner cannot decide what to ask for (e.g. intraday backfill with neither start nor head)."""


@dataclass(frozen=True)
class SeriesState:
    """What the warehouse knows about one series: its head timestamp and what is already covered."""

    series: SeriesKey
    symbol: str
    calendar: TradingCalendar
    head: datetime | None  # earliest available bar (UTC) if known
    coverage: tuple[tuple[datetime, datetime], ...]  # covered half-open UTC spans, any order/overlap
    held: tuple[HeldBar, ...] = ()  # bars refused at the door whose time coverage leaves out
    expires: datetime | None = None  # a future's last session close: nothing exists, nothing is asked, after it


@dataclass(frozen=True)
class _Window:
    unit: str
    count: int
    start: int
    expected: int


def needs_head_timestamp(series: SeriesKey, start: date | datetime | None) -> bool:
    """Head timestamps only where they save requests: intraday backfills "from the beginning".

    A daily request reaching 40 years back already starts at the listing, so daily+ never needs one.
    """
    return start is None and bar_size(series.bar_size).intraday and series.what_to_show != "ADJUSTED_LAST"


def plan_requests(
    state: SeriesState,
    *,
    start: datetime | None,
    end: datetime,
    now: datetime,
    target_bars: int = 5000,
    overlap_sessions: int = 1,
) -> list[BarRequest]:
    """Requests covering [start or head, end) minus coverage, newest first; [] when already satisfied.

    `target_bars` bounds intraday windows only: daily and longer bars come back in one quick answer,
    so they take one request per 68 Y (`N D` up to 365 sessions). ADJUSTED_LAST cannot be paged (IB
    needs an empty endDateTime), so it is one full refresh: IB counts it back from now and answers the
    bar in progress too, but the request covers only finished sessions. The newest gap reaches back
    over `overlap_sessions` complete stored sessions; for nightly increments that costs no request.
    Held bars (refused at the door) are asked for again within the nightly budget: see `_ask_again`.
    """
    if target_bars < 1:
        raise PlanError(f"target_bars must be positive, got {target_bars}")
    series = state.series
    bar = bar_size(series.bar_size)
    span = _wanted_span(state, bar, start, end, now)
    if span is None:
        return []
    planner = _Chunker(state, bar, target_bars, floor=span[0])
    again, wait = planner.held_spans(to_epoch(now))
    again = [(max(a, span[0]), min(b, span[1])) for a, b in again if a < span[1] and b > span[0]]
    gaps = subtract_intervals([span], _coverage_epochs(state.coverage) + wait + again)
    if not gaps and not again:
        return []
    if series.what_to_show == "ADJUSTED_LAST":
        window = planner.best_window(span[0], to_epoch(now))
        return [] if window is None else [planner.request(window, span[1])]
    requests: list[BarRequest] = []
    check = None
    for a, b in reversed(gaps):
        chunks = planner.cover(a, b)
        if chunks and check is None and not requests and overlap_sessions > 0:
            check = _overlap(state, a, overlap_sessions)  # the newest gap that needs a request re-reads
            chunks = planner.cover(check[0], b) if check is not None else chunks
        requests.extend(chunks)
    requests = _ask_again(planner, requests, again)
    if check is None:
        return requests
    since, until = from_epoch(check[0]), from_epoch(check[1])
    return [replace(r, check_until=min(until, r.end)) if r.start < until and r.end > since else r for r in requests]


def _overlap(state: SeriesState, gap_start: int, sessions: int) -> tuple[int, int] | None:
    """[open of the last `sessions` complete sessions before the gap, gap start), when they are covered."""
    opens, closes = state.calendar.bounds(state.series.use_rth)
    last = int(np.searchsorted(closes, gap_start, side="right")) - 1
    first = last - sessions + 1
    if first < 0:
        return None
    window = (int(opens[first]), int(closes[last]))
    if subtract_intervals([window], merge_intervals(_coverage_epochs(state.coverage))):
        return None  # not stored whole: nothing to compare it with
    return window[0], gap_start


def wanted_span(state: SeriesState, *, start: datetime | None, end: datetime, now: datetime
                ) -> tuple[datetime, datetime] | None:
    """The span `plan_requests` covers for the series (None: nothing yet): what `gaps` measures against."""
    span = _wanted_span(state, bar_size(state.series.bar_size), start, end, now)
    return None if span is None else (from_epoch(span[0]), from_epoch(span[1]))


def _ask_again(planner: _Chunker, requests: list[BarRequest], again: list[tuple[int, int]]) -> list[BarRequest]:
    """Held bars' sessions asked for once more, at most one extra request a series: the newest request (the
    nightly increment) reaches back over as many of them as one window holds, and one request of its own
    takes the next ones back from the newest; older ones wait for a later night."""
    if again and requests:
        newest = requests[0]
        start, end = to_epoch(newest.start), max(again[-1][1], to_epoch(newest.end))
        window = planner.best_window(min(again[0][0], start), end)
        if window is not None and window.start <= start:
            requests = [planner.request(window, end), *requests[1:]]
            again = subtract_intervals(again, [(window.start, end)])
    if not again:
        return requests
    window = planner.best_window(again[0][0], again[-1][1])
    if window is None:
        return requests
    return sorted([*requests, planner.request(window, again[-1][1])], key=lambda r: r.end, reverse=True)


def lower_bound_requests(
    states: Iterable[SeriesState], *, start: datetime | None, end: datetime, now: datetime
) -> int:
    """Fewest requests IB's maximum durations allow for these states, ignoring the bars target."""
    return sum(
        len(plan_requests(state, start=start, end=end, now=now, target_bars=NO_TARGET)) for state in states
    )


def _wanted_span(
    state: SeriesState, bar: BarSize, start: datetime | None, end: datetime, now: datetime
) -> tuple[int, int] | None:
    now_s = to_epoch(now)
    b = min(to_epoch(end), _complete_until(state.calendar, bar, state.series.use_rth, now_s))
    if state.expires is not None:
        b = min(b, to_epoch(state.expires))
    if start is not None:
        a = to_epoch(start)
    elif state.head is not None:
        a = to_epoch(state.head)
    elif not bar.intraday:
        a = _months_back(now_s, 12 * DAILY_HORIZON_YEARS)
    elif bar.small:
        a = now_s - SMALL_BAR_HORIZON_DAYS * 86_400
    else:
        raise PlanError(
            f"{state.symbol or state.series.con_id} {bar.ib_name}: no start and no head timestamp; "
            "fetch the head first"
        )
    if state.head is not None:
        a = max(a, to_epoch(state.head))
    if bar.small:
        a = max(a, now_s - SMALL_BAR_HORIZON_DAYS * 86_400)
    return (a, b) if a < b else None


def _complete_until(calendar: TradingCalendar, bar: BarSize, use_rth: bool, now: int) -> int:
    """Where the first bar not complete by `now` may begin: we only ask for finished sessions, and for
    weekly/monthly bars for the periods whose last session has closed (a Saturday run gets the week just
    ended, a run on the 1st before the open last month)."""
    opens, closes = calendar.bounds(use_rth)
    last = calendar.last_closed_index(now, use_rth)
    if last < 0 or bar.ib_name not in ("1 week", "1 month"):
        return int(closes[last]) if last >= 0 else 0
    days = calendar.day_numbers
    key = _period_key(bar, int(days[last]))
    if last + 1 == len(days) or _period_key(bar, int(days[last + 1])) != key:
        return int(closes[last])  # its period's last session has closed
    first = last
    while first > 0 and _period_key(bar, int(days[first - 1])) == key:
        first -= 1
    return int(opens[first])


def _period_key(bar: BarSize, day_number: int) -> tuple[int, int]:
    day = datetime.fromordinal(day_number)
    if bar.ib_name == "1 week":
        iso = day.isocalendar()
        return (iso.year, iso.week)
    return (day.year, day.month)


def _coverage_epochs(coverage: tuple[tuple[datetime, datetime], ...]) -> list[tuple[int, int]]:
    """Covered spans rounded inwards to whole seconds (a rounded-out span would claim unseen time)."""
    spans = []
    for lo, hi in coverage:
        lo_s, hi_s = math.ceil(lo.timestamp()), math.floor(hi.timestamp())
        if lo.tzinfo is None or hi.tzinfo is None:
            raise PlanError(f"coverage span {lo.isoformat()}..{hi.isoformat()} is not timezone-aware")
        if lo_s < hi_s:
            spans.append((lo_s, hi_s))
    return spans


def _months_back(epoch: int, months: int) -> int:
    """`epoch` moved back by calendar months in UTC, clamping the day (Mar 31 − 1 M → Feb 28/29)."""
    when = from_epoch(epoch)
    total = when.year * 12 + when.month - 1 - months
    year, month = divmod(total, 12)
    for day in range(when.day, 27, -1):
        try:
            return to_epoch(when.replace(year=year, month=month + 1, day=day))
        except ValueError:
            continue
    return to_epoch(when.replace(year=year, month=month + 1, day=min(when.day, 28)))


def _back(end: int, unit: str, count: int) -> int:
    """Start of the window `count unit` ending at `end` (calendar units)."""
    if unit == "W":
        return end - count * 7 * 86_400
    return _months_back(end, count * (12 if unit == "Y" else 1))


class _Chunker:
    """Cuts gaps of one series into windows, newest first."""

    def __init__(self, state: SeriesState, bar: BarSize, target_bars: int, floor: int) -> None:
        self.state = state
        self.bar = bar
        self.rth = state.series.use_rth
        self.calendar = state.calendar
        self.opens, self.closes = state.calendar.bounds(self.rth)
        self.floor = floor  # nothing exists before the wanted start (head / horizon): for estimates
        longest = int((self.closes - self.opens).max())
        self.per_session = math.ceil(longest / bar.seconds) + 1 if bar.intraday else 1
        self.cap = target_bars if bar.intraday else NO_TARGET  # daily+ answers are small and quick
        # `N D` counts sessions; a calendar derived from contract details knows no holidays and would
        # miscount them, so such contracts are paged in units of time only.
        self.units = [u for u in _UNIT_ORDER if max_duration(bar.ib_name, u) > 0
                      and not (u == "D" and state.calendar.from_details)]
        self.max_days = max_duration(bar.ib_name, "D")

    def held_spans(self, now: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(sessions to ask again tonight, held times not to ask for). A held bar is asked for again when a
        session has closed since it last came back bad (once a night), as its whole session, or the two
        around it when it lies between sessions; a given-up one is never asked for."""
        tonight = self.calendar.last_closed_index(now, self.rth)
        again, wait = [], []
        for held in self.state.held:
            start, end = to_epoch(held.start), to_epoch(held.end)
            due = not held.given_up and (
                held.last_seen is None or self.calendar.last_closed_index(to_epoch(held.last_seen), self.rth) < tonight)
            if not due:
                wait.append((start, end))
                continue
            k = self._last_open_before(start + 1)
            inside = k >= 0 and start < int(self.closes[k])
            first, last = (k, k) if inside else (max(k, 0), min(k + 1, len(self.opens) - 1))
            again.append((min(start, int(self.opens[first])), max(end, int(self.closes[last]))))
        return merge_intervals(again), wait

    def cover(self, a: int, b: int) -> list[BarRequest]:
        requests = []
        end = self._session_end_at_or_before(b)
        while end is not None and end > a:
            window = self.best_window(a, end)
            if window is None:
                break
            requests.append(self.request(window, end, self._keep_from(window.start, a)))
            end = self._session_end_at_or_before(window.start)
        return requests

    def _keep_from(self, start: int, a: int) -> datetime | None:
        """Where a window reaching back past the gap `a` starts being kept: a window of weeks or seconds may
        begin inside a session before the gap, whose tail alone would be stored; the next open (or `a`) then."""
        k = self._last_open_before(start)
        if start >= a or k < 0 or start >= int(self.closes[k]) or k + 1 >= len(self.opens):
            return None
        return from_epoch(min(a, int(self.opens[k + 1])))

    def request(self, window: _Window, end: int, keep_from: datetime | None = None) -> BarRequest:
        return BarRequest(
            series=self.state.series,
            start=from_epoch(window.start),
            end=from_epoch(end),
            duration=f"{window.count} {window.unit}",
            expected_bars=window.expected,
            symbol=self.state.symbol,
            keep_from=keep_from,
        )

    def best_window(self, a: int, end: int) -> _Window | None:
        """The window ending at `end` that reaches furthest into [a, end), then fewest bars."""
        first, stop = self.calendar.index_range(a, end, self.rth)
        if first >= stop:
            return None
        reach_target = max(a, int(self.opens[first]))
        candidates = []
        for unit in self.units:
            if (
                unit in _CALENDAR_UNITS
                and candidates
                and candidates[0].unit == "D"
                and candidates[0].count < self.max_days
            ):
                break  # D is bounded by the gap or the bars target, which bound calendar windows too
            window = self._candidate(unit, a, end, first, stop)
            if window is not None:
                candidates.append(window)
        if not candidates:
            candidates = [self._smallest_window(end)]
        return min(
            candidates,
            key=lambda w: (
                self._trading_time(max(w.start, reach_target)),
                w.expected,
                _UNIT_ORDER.index(w.unit),
            ),
        )

    def _trading_time(self, t: int) -> int:
        """`t`, or the next open when `t` is in closed time: reaching into a weekend gains nothing."""
        k = int(np.searchsorted(self.closes, t, side="right"))
        return max(t, int(self.opens[k])) if k < len(self.opens) else t

    def _candidate(self, unit: str, a: int, end: int, first: int, stop: int) -> _Window | None:
        limit = max_duration(self.bar.ib_name, unit)
        if unit == "D":
            count = min(limit, stop - first, self.cap // self.per_session)
            if count < 1:
                return None
            return _Window("D", count, int(self.opens[stop - count]), count * self.per_session)
        if unit == "S":
            count = min(limit, end - a, max(1, self.cap - 1) * self.bar.seconds)
            window = _Window("S", count, end - count, self._expected(end - count, end))
            return window if window.expected <= self.cap else None
        count = self._calendar_count(unit, end, max(a, int(self.opens[first])), limit)

        def fits(n: int) -> bool:
            return self._expected(_back(end, unit, n), end) <= self.cap

        if not fits(1):
            return None
        if not fits(count):
            fitting, too_big = 1, count
            while too_big - fitting > 1:
                mid = (fitting + too_big) // 2
                fitting, too_big = (mid, too_big) if fits(mid) else (fitting, mid)
            count = fitting
        start = _back(end, unit, count)
        return _Window(unit, count, start, self._expected(start, end))

    def _calendar_count(self, unit: str, end: int, reach: int, limit: int) -> int:
        """Smallest count whose window starts at or before `reach`, at most `limit`."""
        count = min(limit, max(1, (end - reach) // _UNIT_SECONDS[unit]))
        while count < limit and _back(end, unit, count) > reach:
            count += 1
        while count > 1 and _back(end, unit, count - 1) <= reach:
            count -= 1
        return count

    def _expected(self, start: int, end: int) -> int:
        """Upper estimate of the bars a window returns."""
        first, stop = self.calendar.index_range(max(start, self.floor), end, self.rth)
        sessions = stop - first
        if self.bar.ib_name == "1 week":
            return min(sessions, (end - start) // (7 * 86_400) + 2)
        if self.bar.ib_name == "1 month":
            return min(sessions, (end - start) // (28 * 86_400) + 2)
        if self.bar.intraday:
            by_length = math.ceil((end - start) / self.bar.seconds) + 1
            return min(sessions * self.per_session, by_length)
        return sessions

    def _smallest_window(self, end: int) -> _Window:
        """When even the smallest legal window exceeds the target: send it anyway (IB still answers)."""
        unit = self.units[0]
        count = 1 if unit != "S" else min(max_duration(self.bar.ib_name, "S"), self.bar.seconds)
        start = (
            int(self.opens[self._last_open_before(end)])
            if unit == "D"
            else (end - count if unit == "S" else _back(end, unit, 1))
        )
        return _Window(unit, count, start, self._expected(start, end))

    def _last_open_before(self, t: int) -> int:
        return int(np.searchsorted(self.opens, t, side="left")) - 1

    def _session_end_at_or_before(self, t: int) -> int | None:
        """`t` if it lies in a session, else the close of the latest session before it (skips closed time)."""
        k = self._last_open_before(t)
        return None if k < 0 else min(t, int(self.closes[k]))


def split_request(request: BarRequest, calendar: TradingCalendar, target_bars: int | None = None
                  ) -> list[BarRequest] | None:
    """Windows covering an intraday request's [start, end) with at most `target_bars` each (default: half
    its bars, after a timeout), cut at session boundaries, newest first; None when it spans one session or
    less (never below a session: it is retried as it is) or is daily or longer. The oldest part keeps the
    request's re-read of stored bars (`check_until`)."""
    bar = bar_size(request.series.bar_size)
    if not bar.intraday:
        return None
    a, b = to_epoch(request.keep_from or request.start), to_epoch(request.end)  # what the request keeps
    first, stop = calendar.index_range(a, b, request.series.use_rth)
    if stop - first < 2:
        return None
    state = SeriesState(request.series, request.symbol, calendar, head=None, coverage=())
    target = max(1, request.expected_bars // 2 if target_bars is None else target_bars)
    chunker = _Chunker(state, bar, target_bars=target, floor=a)
    chunker.units = [u for u in chunker.units if u == "D"] or chunker.units  # whole sessions where IB allows
    parts = chunker.cover(a, b)
    if len(parts) < 2:
        return None
    oldest = parts[-1]
    if request.check_until is not None:
        parts[-1] = replace(oldest, check_until=min(request.check_until, oldest.end))
    return parts
