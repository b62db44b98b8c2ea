"""Bars at the door: sentinels become NULL, each bad-row reason, and malformed frames refused by name."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from harvester.calendar import TradingCalendar
from harvester.model import BarRequest, SeriesKey
from harvester.warehouse.checks import BarsFormatError, check_bars

START = datetime(2024, 6, 3, 13, 30, tzinfo=UTC)
REQ = BarRequest(SeriesKey(7, "1 min", "MIDPOINT", True), START, START + timedelta(minutes=10), "600 S", 10)


def frame(n: int = 10, **overrides) -> pd.DataFrame:
    base = pd.DataFrame({
        "ts": pd.date_range(START, periods=n, freq="min"), "session_date": [date(2024, 6, 3)] * n,
        "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5, "volume": 100.0, "wap": 10.2, "bar_count": 5,
    })
    return base.assign(**overrides)


def test_clean_answer_is_kept_whole():
    checked = check_bars(REQ, frame(), "X")
    assert (checked.kept.num_rows, checked.quarantined.num_rows) == (10, 0)
    assert set(checked.kept["con_id"].to_pylist()) == {7} and set(checked.kept["symbol"].to_pylist()) == {"X"}
    assert checked.kept["ts"][0].as_py() == START  # stored UTC-aware


def test_minus_one_sentinels_become_null():
    kept = check_bars(REQ, frame(volume=-1.0, wap=-1.0, bar_count=-1), "X").kept
    assert kept["volume"].null_count == kept["wap"].null_count == kept["bar_count"].null_count == 10


@pytest.mark.parametrize(("row", "change", "reason"), [
    (0, {"low": 12.0}, "low above high"),
    (1, {"low": 10.4, "open": 10.0}, "low above open or close"),
    (2, {"close": 11.5}, "open or close above high"),
    (3, {"volume": -2.0}, "negative volume"),
    (4, {"open": float("nan")}, "missing price"),
])
def test_each_bad_row_gets_its_reason(row, change, reason):
    data = frame()
    for col, value in change.items():
        data.loc[row, col] = value
    checked = check_bars(REQ, data, "X")
    assert checked.kept.num_rows == 9
    assert checked.quarantined["reason"].to_pylist() == [reason]


@pytest.mark.parametrize(("open_", "high", "low", "close"), [
    (18.540000000000003, 18.54, 18.52, 18.54),  # BRK B 2024-06-04, as the simulator once sent it
    (18.54, 18.54, 18.52, 18.540000000000003),
    (18.51, 18.54, 18.509999999999998, 18.52),
    (600_000.0000000001, 600_000.0, 599_000.0, 599_500.0),
    (0.30000000000000004, 0.3, 0.1, 0.2),
])
def test_float_noise_passes_and_is_stored_as_sent(open_, high, low, close):
    checked = check_bars(REQ, frame(1, open=open_, high=high, low=low, close=close), "X")
    assert checked.quarantined.num_rows == 0
    row = checked.kept.to_pylist()[0]
    assert (row["open"], row["high"], row["low"], row["close"]) == (open_, high, low, close)


@pytest.mark.parametrize(("change", "reason"), [
    ({"high": 18.53, "low": 18.54, "open": 18.53, "close": 18.53}, "low above high"),
    ({"open": 18.55, "high": 18.54, "low": 18.52, "close": 18.54}, "open or close above high"),
    ({"open": 18.51, "high": 18.54, "low": 18.52, "close": 18.54}, "low above open or close"),
    ({"open": 600_000.01, "high": 600_000.0, "low": 599_000.0, "close": 599_500.0}, "open or close above high"),
    ({"open": 0.0102, "high": 0.0101, "low": 0.01, "close": 0.01}, "open or close above high"),
])
def test_one_tick_out_of_order_still_fails(change, reason):
    checked = check_bars(REQ, frame(1, **change), "X")
    assert checked.quarantined["reason"].to_pylist() == [reason]


def test_outside_window_and_duplicates():
    data = pd.concat([frame(), frame(1)], ignore_index=True)  # first bar repeated
    late = frame(1, ts=pd.date_range(START + timedelta(minutes=10), periods=1, freq="min"))
    checked = check_bars(REQ, pd.concat([data, late], ignore_index=True), "X")
    assert checked.kept.num_rows == 10
    assert sorted(checked.quarantined["reason"].to_pylist()) == ["duplicate ts in one answer", "outside request window"]


def test_empty_or_none_answer():
    assert check_bars(REQ, None, "X").kept.num_rows == 0
    assert check_bars(REQ, frame(0), "X").quarantined.num_rows == 0


def test_malformed_frames_are_refused_by_name():
    with pytest.raises(BarsFormatError, match="wap"):
        check_bars(REQ, frame().drop(columns=["wap"]), "X")
    with pytest.raises(BarsFormatError, match="timezone-aware"):
        check_bars(REQ, frame(ts=pd.date_range("2024-06-03 13:30", periods=10, freq="min")), "X")


def test_bars_outside_the_instruments_sessions_are_quarantined():
    """09:00 ET is before the regular open: inside the request window, outside the session."""
    calendar = TradingCalendar.for_exchange("NYSE")
    request = BarRequest(REQ.series, START - timedelta(hours=1), START + timedelta(hours=1), "7200 S", 120)
    ts = pd.DatetimeIndex([START - timedelta(minutes=30), START, START + timedelta(minutes=1)])
    checked = check_bars(request, frame(3, ts=ts), "X", calendar)
    assert checked.kept.num_rows == 2
    assert checked.quarantined.column("reason").to_pylist() == ["outside the instrument's sessions"]


def test_daily_bar_dated_on_a_weekend_is_outside_sessions():
    calendar = TradingCalendar.for_exchange("NYSE")
    series = SeriesKey(1, "1 day", "TRADES", True)
    request = BarRequest(series, datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 6, 10, tzinfo=UTC), "5 D", 5)
    friday_open = pd.Timestamp("2024-06-07 13:30", tz="UTC")
    data = frame(2, ts=pd.DatetimeIndex([friday_open, friday_open + pd.Timedelta(days=1)]))
    data["session_date"] = [date(2024, 6, 7), date(2024, 6, 8)]
    checked = check_bars(request, data, "X", calendar)
    assert checked.kept.column("session_date").to_pylist() == [date(2024, 6, 7)]
    assert checked.quarantined.column("reason").to_pylist() == ["outside the instrument's sessions"]
