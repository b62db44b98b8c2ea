"""Message 17 built from bar columns in bulk is byte-identical to the per-bar field-by-field encoding."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from harvester.sim.market.barcolumns import Bar, BarColumns
from harvester.sim.market.barsizes import BarKind, parse_bar_size
from harvester.sim.market.marketdata import MarketData
from harvester.sim.market.securities import SecuritiesMaster
from harvester.sim.wire.framing import encode_frame, format_number, java_double
from harvester.sim.wire.historicaldata import historical_data_frame

UTC = dt.UTC
NOW = dt.datetime(2025, 1, 1, tzinfo=UTC)
ZONE = "US/Eastern"
DAILY = (BarKind.DAY, BarKind.WEEK, BarKind.MONTH)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def reference_frame(req_id, bars: list[Bar], window, daily: bool, format_date: int, zone: str) -> bytes:
    """The encoding the gateway used before columns: one Bar at a time, prices through java_double, the
    Decimal fields (volume, WAP) through format_number."""

    def ib_time(instant: dt.datetime) -> str:
        return instant.astimezone(ZoneInfo(zone)).strftime("%Y%m%d %H:%M:%S ") + zone

    fields = [17, req_id, ib_time(window[0]), ib_time(window[1]), len(bars)]
    for bar in bars:
        if daily:
            stamp = bar.session_date.strftime("%Y%m%d")
        elif format_date == 2:
            stamp = str(int(bar.start.timestamp()))
        else:
            stamp = ib_time(bar.start)
        fields += [stamp, java_double(bar.open), java_double(bar.high), java_double(bar.low)]
        fields += [java_double(bar.close), format_number(bar.volume), format_number(bar.wap)]
        fields.append(str(int(bar.count)))
    return encode_frame(fields)


@pytest.fixture(scope="module")
def md() -> MarketData:
    return MarketData(SecuritiesMaster.load())


@pytest.fixture(scope="module")
def aapl(md):
    return md.master.match(symbol="AAPL")[0]


@pytest.mark.parametrize(
    ("bar_size", "start", "end"),
    [
        ("1 day", utc(1990, 1, 1), NOW),  # from listing: yyyyMMdd labels over decades
        ("1W", utc(2020, 1, 1), NOW),
        ("1M", utc(2015, 1, 1), NOW),
        ("1 hour", utc(2024, 3, 1), utc(2024, 3, 20)),  # spans the March DST change
        ("1 min", utc(2024, 10, 28), utc(2024, 11, 6)),  # spans the November DST change
        ("5 secs", utc(2024, 11, 29, 14), utc(2024, 11, 29, 16)),
    ],
)
@pytest.mark.parametrize("what", ["TRADES", "MIDPOINT", "BID_ASK", "BID"])
@pytest.mark.parametrize("format_date", [1, 2])
def test_bulk_frame_matches_per_bar_encoding(md, aapl, bar_size, start, end, what, format_date):
    use_rth = bar_size != "1 min"
    columns = md.bar_columns(aapl, bar_size, what, use_rth, start, end, NOW)
    daily = parse_bar_size(bar_size).kind in DAILY
    bars = columns.to_bars()
    assert len(bars) > 20
    if what != "TRADES":
        assert {b.volume for b in bars} == {-1.0} and {b.count for b in bars} == {-1}
    got = historical_data_frame(7, columns, (start, end), daily, format_date, ZONE)
    assert got == reference_frame(7, bars, (start, end), daily, format_date, ZONE)


ODD_VALUES = [0.0, -0.0, -1.0, 0.01, -0.02, 0.1, 0.3, 1e-05, 0.000123, 2.5e-07, 123.456789012345, 99.99,
              100.0, 1e13, 12345678901234.0, 1e16, 1.5e17, 1e21, -3.75, 1 / 3, float("inf"), 7.1e-4,
              123456789.123, 2**53 + 0.0]  # fmt: skip


def test_odd_values_match_the_per_bar_formatters():
    n = len(ODD_VALUES)
    values = np.array(ODD_VALUES)
    starts = np.arange(n, dtype=np.int64) * 86400 + 1_700_000_000
    columns = BarColumns(
        starts, starts.astype("datetime64[s]").astype("datetime64[D]"),
        values, values[::-1].copy(), np.roll(values, 3), np.roll(values, 7), np.abs(values), values * 3,
        np.array([-1, 0, 5, 10**12] * (n // 4), dtype=np.int64),
    )  # fmt: skip
    window = (utc(2023, 11, 1), utc(2024, 1, 1))
    for daily, format_date in [(True, 1), (False, 1), (False, 2)]:
        got = historical_data_frame(3, columns, window, daily, format_date, ZONE)
        assert got == reference_frame(3, columns.to_bars(), window, daily, format_date, ZONE)


def test_empty_answer_has_header_only():
    window = (utc(2024, 1, 1), utc(2024, 1, 2))
    assert historical_data_frame(1, BarColumns.empty(), window, True, 1, ZONE) == reference_frame(
        1, [], window, True, 1, ZONE
    )


def test_columns_round_trip_through_bars(md, aapl):
    columns = md.bar_columns(aapl, "1 day", "TRADES", True, utc(2024, 1, 1), utc(2024, 2, 1), NOW)
    again = BarColumns.from_bars(columns.to_bars())
    for field in ("start", "session_date", "open", "high", "low", "close", "volume", "wap", "count"):
        assert np.array_equal(getattr(again, field), getattr(columns, field)), field
    assert md.bars(aapl, "1 day", "TRADES", True, utc(2024, 1, 1), utc(2024, 2, 1), NOW) == columns.to_bars()


@pytest.mark.parametrize(
    ("zone", "day"), [("US/Eastern", utc(2024, 3, 10)), ("Australia/Lord_Howe", utc(2024, 4, 6))]
)
def test_local_times_across_a_clock_change(zone, day):
    """Lord Howe moves its clocks by 30 minutes at 15:00 UTC: the change falls inside a UTC hour."""
    starts = int(day.timestamp()) + np.arange(0, 86400, 60, dtype=np.int64)
    ones = np.ones(len(starts))
    columns = BarColumns(starts, starts.astype("datetime64[s]").astype("datetime64[D]"), ones, ones, ones, ones,
                         ones, ones, np.ones(len(starts), dtype=np.int64))  # fmt: skip
    window = (day, day + dt.timedelta(days=1))
    got = historical_data_frame(2, columns, window, False, 1, zone)
    assert got == reference_frame(2, columns.to_bars(), window, False, 1, zone)
