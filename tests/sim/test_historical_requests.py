"""Historical-data rules: parameter forms, IB's validation errors, windows, horizon, cancel, pacing."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from ib_insync import IB, Stock

from harvester.sim import Faults, PacingLimits
from harvester.sim.requestchecks import RequestRejected, check_step, parse_bar_size, parse_duration, parse_end
from harvester.sim.wire.messages import TEXT_PACING

AAPL = Stock("AAPL", "SMART", "USD", primaryExchange="NASDAQ")


@pytest.fixture
def errors(ib: IB) -> list[tuple[int, int, str]]:
    seen: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, text, contract: seen.append((req_id, code, text))
    return seen


def codes(errors, req_id: int) -> list[int]:
    return [code for rid, code, _ in errors if rid == req_id]


@pytest.mark.parametrize(
    ("text", "expected", "warns"),
    [
        ("20240102 10:00:00 US/Eastern", datetime(2024, 1, 2, 15, tzinfo=UTC), False),
        ("20240102 10:00:00 UTC", datetime(2024, 1, 2, 10, tzinfo=UTC), False),
        ("20240102 10:00:00 Europe/London", datetime(2024, 1, 2, 10, tzinfo=UTC), False),
        ("20240102-10:00:00", datetime(2024, 1, 2, 10, tzinfo=UTC), False),
        ("20240702 10:00:00", datetime(2024, 7, 2, 14, tzinfo=UTC), True),
        ("", None, False),
    ],
)
def test_end_time_forms(text, expected, warns):
    end = parse_end(text)
    assert end.instant == expected and end.implied_zone is warns


@pytest.mark.parametrize("text", ["2024-01-02 10:00", "20240102 25:00:00 UTC", "20240102 10:00:00 Mars/Base"])
def test_malformed_end_is_10314(text):
    with pytest.raises(RequestRejected) as caught:
        parse_end(text)
    assert caught.value.code == 10314


@pytest.mark.parametrize(
    ("bar_size", "duration", "code"),
    [
        ("1 secs", "2000 S", None), ("1 secs", "2001 S", 162), ("1 secs", "1 D", 162), ("5 secs", "86400 S", None),
        ("5 secs", "86401 S", 162), ("5 secs", "1 W", 162), ("1 min", "365 D", None), ("1 day", "366 D", 321),
        ("1 min", "12 M", None), ("30 secs", "13 M", 162), ("1 day", "68 Y", None), ("30 secs", "1 Y", 162),
        ("1 day", "52 W", None), ("1 day", "53 W", 162), ("1W", "2 Y", None), ("1 month", "5 Y", None),
    ],
)  # fmt: skip
def test_step_table(bar_size, duration, code):
    if code is None:
        check_step(parse_bar_size(bar_size), parse_duration(duration))
        return
    with pytest.raises(RequestRejected) as caught:
        check_step(parse_bar_size(bar_size), parse_duration(duration))
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (("", "1 D", "1 sec", "TRADES", True, 1), 321, "bar size setting is invalid"),
        (("", "1 D", "1 min", "TRADES", True, 0), 321, "Date formatting selection of 0"),
        (("", "400 D", "1 day", "TRADES", True, 1), 321, "must be made in years"),
        (("", "1 D", "1 secs", "TRADES", True, 1), 162, "invalid step"),
        (("", "1 D", "1 min", "TRADES", True, 1, "bogus"), 321, None),
        (("2024/06/14", "1 D", "1 min", "TRADES", True, 1), 10314, "End Date/Time"),
        (("20240614 16:00:00 UTC", "1 D", "1 day", "ADJUSTED_LAST", True, 1), 162, "adjusted last"),
        (("20000101 00:00:00 UTC", "1 D", "1 day", "TRADES", True, 1), 162, "HMDS query returned no data: AAPL@SMART Trades"),
        (("20240101 00:00:00 UTC", "1800 S", "1 secs", "TRADES", True, 1), 162, "no data"),
    ],
)  # fmt: skip
def test_invalid_or_empty_requests_get_ibs_errors(ib, errors, args, code, fragment):
    if len(args) == 7:  # a bad whatToShow
        end, duration, bar_size, _, rth, fd, what = args
        args = (end, duration, bar_size, what, rth, fd)
    bars = ib.reqHistoricalData(AAPL, *args)
    assert len(bars) == 0
    assert codes(errors, bars.reqId) == [code]
    if fragment:
        assert fragment in next(text for rid, _, text in errors if rid == bars.reqId)


def test_zone_less_end_warns_2174_and_still_answers(ib, errors):
    bars = ib.reqHistoricalData(AAPL, "20240614 16:00:00", "1 D", "1 hour", "TRADES", True)
    assert len(bars) == 7 and codes(errors, bars.reqId) == [2174]


def test_date_formats_and_what_to_show(ib):
    fd1 = ib.reqHistoricalData(AAPL, "", "1 D", "30 mins", "BID", True, 1)
    fd2 = ib.reqHistoricalData(AAPL, "20240614-20:00:00", "1 D", "30 mins", "BID", True, 2)  # not identical
    assert [b.date for b in fd1] == [b.date for b in fd2]  # same instants, different zones
    assert str(fd1[0].date.tzinfo) == "US/Eastern" and fd2[0].date.tzinfo == UTC
    assert fd1[0].date == datetime(2024, 6, 14, 13, 30, tzinfo=UTC)
    assert all(b.volume == -1 and b.barCount == -1 for b in fd1)
    daily = ib.reqHistoricalData(AAPL, "", "1 M", "1 day", "ADJUSTED_LAST", True, 2)
    assert isinstance(daily[0].date, date) and daily[-1].date == date(2024, 6, 14) and daily[0].volume > 0
    bid_ask = ib.reqHistoricalData(AAPL, "", "1 D", "1 hour", "BID_ASK", True)
    assert all(b.low <= b.open and b.close <= b.high for b in bid_ask)


def test_extended_hours_serve_more_than_rth(ib):
    rth = ib.reqHistoricalData(AAPL, "", "1 D", "1 hour", "TRADES", True, 2)
    full = ib.reqHistoricalData(AAPL, "", "1 D", "1 hour", "TRADES", False, 2)
    assert len(full) > len(rth)


def test_small_bars_stop_at_the_six_month_horizon(ib, sim_now):
    old_end = (sim_now - timedelta(days=200)).strftime("%Y%m%d-%H:%M:%S")
    assert len(ib.reqHistoricalData(AAPL, old_end, "1800 S", "5 secs", "TRADES", False)) == 0
    assert ib.reqHistoricalData(AAPL, old_end, "1 D", "1 min", "TRADES", False)


def test_head_timestamp_formats_and_open_slot_until_cancelled(ib, sim_gateway):
    naive = ib.reqHeadTimeStamp(AAPL, "TRADES", True, 1)
    aware = ib.reqHeadTimeStamp(AAPL, "TRADES", True, 2)
    assert naive.tzinfo is None and aware.tzinfo is not None
    assert naive == aware.replace(tzinfo=None)
    assert sim_gateway.journal.wait_for(lambda j: j.count_where(kind="cancel_head_timestamp") == 2, 5)
    assert sim_gateway.open_requests == 0


def test_cancel_in_progress_answers_162_cancelled(make_gateway, connect):
    gateway = make_gateway(faults=Faults(never_answer=True))
    ib = connect(gateway)
    cancelled = asyncio.get_event_loop().create_future()
    ib.errorEvent += lambda req_id, code, text, contract: (
        cancelled.done() or cancelled.set_result((req_id, code, text))
    )
    bars = ib.reqHistoricalData(AAPL, "", "1 D", "1 hour", "TRADES", True, timeout=0.3)
    assert len(bars) == 0  # ib_insync's own timeout: it sends cancelHistoricalData
    req_id, code, text = ib.run(asyncio.wait_for(cancelled, 5))
    assert (req_id, code) == (bars.reqId, 162)
    assert (
        text == f"Historical Market Data Service error message:API historical data query cancelled: {req_id}"
    )
    assert gateway.open_requests == 0


def test_identical_request_within_15_seconds_is_a_pacing_violation(make_gateway, connect):
    gateway = make_gateway(pacing_scale=1.0, latency_scale=0.0)
    ib = connect(gateway)
    seen = []
    ib.errorEvent += lambda req_id, code, text, contract: seen.append((req_id, code, text))
    assert ib.reqHistoricalData(AAPL, "", "1 D", "1 hour", "TRADES", True)
    again = ib.reqHistoricalData(AAPL, "", "1 D", "1 hour", "TRADES", True)
    assert len(again) == 0 and (again.reqId, 162, TEXT_PACING) in seen
    for n in range(4):  # 5 for one contract+exchange+whatToShow in 2 s are fine (1 above + 4)...
        assert ib.reqHistoricalData(AAPL, "", f"{n + 2} D", "1 hour", "TRADES", True)
    sixth = ib.reqHistoricalData(AAPL, "", "9 D", "1 hour", "TRADES", True)
    assert len(sixth) == 0 and gateway.journal.count_where(outcome="pacing") == 2  # ...the 6th is not
    assert ib.reqHistoricalData(AAPL, "", "9 D", "1 hour", "MIDPOINT", True)


def test_sixty_per_window_then_violation_and_a_paced_script_never_violates(make_gateway, connect):
    gateway = make_gateway(pacing_scale=1.0, latency_scale=0.0)
    ib = connect(gateway)
    symbols = ["AAPL", "MSFT", "IBM", "KO", "SPY", "JPM", "XOM", "PG", "JNJ", "WMT", "CVX", "PFE"]
    for n in range(60):  # 12 contracts × 5 durations: no rule but the window is ever in play
        bars = ib.reqHistoricalData(Stock(symbols[n % 12], "SMART", "USD"), "", f"{n // 12 + 1} D",
                                    "1 day", "TRADES", True)  # fmt: skip
        assert bars, n
    assert gateway.journal.count_where(outcome="pacing") == 0
    assert len(ib.reqHistoricalData(Stock("AAPL", "SMART", "USD"), "", "30 D", "1 day", "TRADES", True)) == 0
    assert gateway.journal.count_where(outcome="pacing") == 1


def test_51st_open_request_gets_322(make_gateway, connect):
    gateway = make_gateway(faults=Faults(never_answer=True), pacing=PacingLimits(same_contract_max=100))
    ib = connect(gateway)
    seen = []
    ib.errorEvent += lambda req_id, code, text, contract: seen.append(code)
    for n in range(50):
        ib.client.reqHistoricalData(1000 + n, AAPL, "", f"{n + 1} D", "1 day", "TRADES", 1, 1, False, [])
    settled = asyncio.to_thread(
        gateway.journal.wait_for, lambda j: j.count_where(outcome="unanswered") == 50, 5
    )
    assert ib.run(settled)  # ib_insync's loop must run to flush its throttled queue
    assert gateway.open_requests == 50
    bars = ib.reqHistoricalData(AAPL, "", "60 D", "1 day", "TRADES", True)
    assert len(bars) == 0 and 322 in seen
