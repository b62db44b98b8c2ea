"""The simulator's market data: deterministic, chunking-invariant, exact aggregates, real calendar, replay."""

from __future__ import annotations

import datetime as dt
import itertools

import pandas as pd
import pytest

from harvester.sim.market.barsizes import parse_bar_size
from harvester.sim.market.marketdata import Bar, MarketData, UnsupportedWhatToShow
from harvester.sim.market.replay import ReplayBook
from harvester.sim.market.securities import SecuritiesMaster

UTC = dt.UTC
NOW = dt.datetime(2025, 1, 1, tzinfo=UTC)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
def master() -> SecuritiesMaster:
    return SecuritiesMaster.load()


@pytest.fixture(scope="module")
def md(master) -> MarketData:
    return MarketData(master)


@pytest.fixture(scope="module")
def aapl(master):
    return master.match(symbol="AAPL")[0]


def aggregate(bars: list[Bar]) -> dict:
    """An independent aggregation of consecutive bars (what a warehouse resample would do)."""
    volume = sum(b.volume for b in bars)
    return {
        "open": bars[0].open,
        "high": max(b.high for b in bars),
        "low": min(b.low for b in bars),
        "close": bars[-1].close,
        "volume": volume,
        "wap": sum(b.volume * b.wap for b in bars) / volume,
        "count": sum(b.count for b in bars),
    }


def assert_is_aggregate(coarse: Bar, fine: list[Bar]) -> None:
    expected = aggregate(fine)
    assert fine[0].start == coarse.start
    for field in ("open", "high", "low", "close", "volume", "count"):
        assert getattr(coarse, field) == expected[field], field
    assert coarse.wap == pytest.approx(expected["wap"], rel=1e-9)


def split_window(
    start: dt.datetime, end: dt.datetime, step: dt.timedelta
) -> list[tuple[dt.datetime, dt.datetime]]:
    edges = [start]
    while edges[-1] + step < end:
        edges.append(edges[-1] + step)
    edges.append(end)
    return list(itertools.pairwise(edges))


def test_deterministic_across_instances(master, aapl):
    a = MarketData(master).bars(aapl, "1 hour", "TRADES", False, utc(2024, 6, 3), utc(2024, 6, 8), NOW)
    b = MarketData(master).bars(aapl, "1 hour", "TRADES", False, utc(2024, 6, 3), utc(2024, 6, 8), NOW)
    assert a == b and len(a) == 5 * 16


@pytest.mark.parametrize(
    ("bar_size", "start", "end", "step"),
    [
        ("1 min", utc(2024, 3, 7), utc(2024, 3, 13), dt.timedelta(hours=7, minutes=13)),
        ("5 mins", utc(2024, 3, 7), utc(2024, 3, 13), dt.timedelta(hours=5, minutes=7)),
        ("1 hour", utc(2024, 3, 1), utc(2024, 3, 20), dt.timedelta(days=1, hours=3)),
        ("1 day", utc(2015, 1, 1), utc(2024, 12, 1), dt.timedelta(days=97)),
        ("5 secs", utc(2024, 3, 8, 14), utc(2024, 3, 8, 16), dt.timedelta(minutes=17, seconds=3)),
    ],
)
@pytest.mark.parametrize("use_rth", [True, False])
def test_chunking_invariance(md, aapl, bar_size, start, end, step, use_rth):
    whole = md.bars(aapl, bar_size, "TRADES", use_rth, start, end, NOW)
    pieces = [
        b
        for s, e in split_window(start, end, step)
        for b in md.bars(aapl, bar_size, "TRADES", use_rth, s, e, NOW)
    ]
    assert len(whole) > 10
    assert pieces == whole


@pytest.mark.parametrize("use_rth", [True, False])
def test_daily_bar_is_aggregate_of_its_minutes(md, aapl, use_rth):
    days = md.bars(aapl, "1 day", "TRADES", use_rth, utc(2024, 11, 25), utc(2024, 12, 3), NOW)
    assert [d.session_date.day for d in days] == [25, 26, 27, 29, 2]
    for day in days:
        minutes = md.bars(aapl, "1 min", "TRADES", use_rth, day.start, day.start + dt.timedelta(days=1), NOW)
        minutes = [m for m in minutes if m.session_date == day.session_date]
        assert_is_aggregate(day, minutes)


def test_bid_ask_daily_open_is_time_average_of_minutes(md, aapl):
    (day,) = md.bars(aapl, "1 day", "BID_ASK", True, utc(2024, 6, 4), utc(2024, 6, 5), NOW)
    minutes = md.bars(aapl, "1 min", "BID_ASK", True, utc(2024, 6, 4), utc(2024, 6, 5), NOW)
    assert day.open == pytest.approx(sum(m.open for m in minutes) / len(minutes), rel=1e-9)
    assert day.close == pytest.approx(sum(m.close for m in minutes) / len(minutes), rel=1e-9)
    assert day.high == max(m.high for m in minutes) and day.low == min(m.low for m in minutes)


def test_five_minutes_aggregate_one_minute(md, aapl):
    fives = md.bars(aapl, "5 mins", "TRADES", False, utc(2024, 11, 29), utc(2024, 11, 30), NOW)
    ones = md.bars(aapl, "1 min", "TRADES", False, utc(2024, 11, 29), utc(2024, 11, 30), NOW)
    assert len(fives) == 13 * 12 and len(ones) == 13 * 60  # 04:00-17:00 on the half day
    for k, five in enumerate(fives):
        assert_is_aggregate(five, ones[5 * k : 5 * k + 5])


def test_one_minute_aggregates_five_seconds(md, aapl):
    ones = md.bars(aapl, "1 min", "TRADES", True, utc(2024, 3, 8, 15), utc(2024, 3, 8, 15, 30), NOW)
    fives = md.bars(aapl, "5 secs", "TRADES", True, utc(2024, 3, 8, 15), utc(2024, 3, 8, 15, 30), NOW)
    assert len(ones) == 30 and len(fives) == 360
    for k, one in enumerate(ones):
        assert_is_aggregate(one, fives[12 * k : 12 * k + 12])


def test_weekly_and_monthly_aggregate_daily(md, aapl):
    weeks = md.bars(aapl, "1W", "TRADES", True, utc(2024, 11, 1), utc(2024, 12, 31), NOW)
    days = md.bars(aapl, "1 day", "TRADES", True, utc(2024, 11, 1), utc(2025, 1, 1), NOW)
    assert weeks[0].session_date == dt.date(2024, 11, 4)  # the week of Nov 1 started before the window
    for week in weeks:
        monday = week.session_date - dt.timedelta(days=week.session_date.weekday())
        members = [d for d in days if monday <= d.session_date < monday + dt.timedelta(days=7)]
        assert_is_aggregate(week, members)
    (december,) = md.bars(aapl, "1M", "TRADES", True, utc(2024, 12, 1), utc(2025, 1, 1), NOW)
    assert_is_aggregate(december, [d for d in days if d.session_date.month == 12])


def test_holiday_has_no_bars(md, aapl):
    assert md.bars(aapl, "1 min", "TRADES", False, utc(2024, 7, 4), utc(2024, 7, 5), NOW) == []
    days = md.bars(aapl, "1 day", "TRADES", True, utc(2024, 7, 1), utc(2024, 7, 8), NOW)
    assert [d.session_date.day for d in days] == [1, 2, 3, 5]


def test_half_day_ends_at_13_et(md, aapl):
    rth = md.bars(aapl, "1 min", "TRADES", True, utc(2024, 11, 29), utc(2024, 11, 30), NOW)
    ext = md.bars(aapl, "1 min", "TRADES", False, utc(2024, 11, 29), utc(2024, 11, 30), NOW)
    assert rth[-1].start == utc(2024, 11, 29, 17, 59)  # 12:59 EST
    assert ext[0].start == utc(2024, 11, 29, 9, 0) and ext[-1].start == utc(2024, 11, 29, 21, 59)
    hours = md.bars(aapl, "1 hour", "TRADES", True, utc(2024, 11, 29), utc(2024, 11, 30), NOW)
    assert [h.start.hour for h in hours] == [14, 15, 16, 17]  # the last bar is short: 13:30 to 13:00 ET


@pytest.mark.parametrize(
    ("day", "rth_open", "ext_open"),
    [
        (dt.date(2024, 3, 8), 14, 9),  # EST
        (dt.date(2024, 3, 11), 13, 8),  # EDT from Sunday 2024-03-10
        (dt.date(2024, 11, 1), 13, 8),
        (dt.date(2024, 11, 4), 14, 9),  # EST from Sunday 2024-11-03
    ],
)
def test_dst_weeks_open_at_the_right_utc_hour(md, aapl, day, rth_open, ext_open):
    start = dt.datetime.combine(day, dt.time(), tzinfo=UTC)
    (rth,) = md.bars(aapl, "1 day", "TRADES", True, start, start + dt.timedelta(days=1), NOW)
    (ext,) = md.bars(aapl, "1 day", "TRADES", False, start, start + dt.timedelta(days=1), NOW)
    assert (rth.start.hour, rth.start.minute) == (rth_open, 30)
    assert (ext.start.hour, ext.start.minute) == (ext_open, 0)
    bars = md.bars(aapl, "1 min", "TRADES", False, start, start + dt.timedelta(days=2), NOW)
    same_day = [b for b in bars if b.session_date == day]
    assert len(same_day) == 16 * 60 and same_day[-1].start == ext.start + dt.timedelta(hours=16, minutes=-1)


def test_only_complete_bars_by_now(md, aapl):
    now = utc(2024, 6, 4, 15, 2, 30)
    bars = md.bars(aapl, "1 min", "TRADES", True, utc(2024, 6, 4), utc(2024, 6, 5), now)
    assert bars[-1].start == utc(2024, 6, 4, 15, 1)
    assert md.bars(aapl, "1 day", "TRADES", True, utc(2024, 6, 4), utc(2024, 6, 5), now) == []


def test_nothing_before_listing_and_head_timestamp_is_first_bar(master, md):
    dual = master.match(symbol="DUAL", primary_exchange="NASDAQ")[0]
    assert dual.listing_date == dt.date(2011, 3, 15)
    for use_rth in (True, False):
        head = md.head_timestamp(dual, "TRADES", use_rth)
        days = md.bars(dual, "1 day", "TRADES", use_rth, utc(2000, 1, 1), utc(2011, 3, 20), NOW)
        assert days[0].start == head and days[0].session_date == dual.listing_date
        minutes = md.bars(dual, "1 min", "TRADES", use_rth, utc(2011, 3, 10), utc(2011, 3, 16), NOW)
        assert minutes[0].start == head


def test_non_trades_have_minus_one_and_sane_quotes(md, aapl):
    window = (utc(2024, 6, 4), utc(2024, 6, 5), NOW)
    trades = md.bars(aapl, "5 mins", "TRADES", True, *window)
    bid = md.bars(aapl, "5 mins", "BID", True, *window)
    ask = md.bars(aapl, "5 mins", "ASK", True, *window)
    for what in ("MIDPOINT", "BID", "ASK", "BID_ASK"):
        for bar in md.bars(aapl, "5 mins", what, True, *window):
            assert (bar.volume, bar.wap, bar.count) == (-1, -1, -1)
            assert bar.high >= bar.low
    for t, b, a in zip(trades, bid, ask):
        assert b.low < t.low < a.low and b.high < t.high < a.high
        assert t.volume > 0 and t.count > 0 and t.low <= t.wap <= t.high
    adjusted = md.bars(aapl, "1 day", "ADJUSTED_LAST", True, *window)
    assert adjusted[0].volume > 0


def test_prices_positive_and_in_cents(md, aapl):
    days = md.bars(aapl, "1 day", "TRADES", True, utc(1990, 1, 1), NOW, NOW)
    assert len(days) > 4000
    for bar in days:
        assert 0 < bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
        assert round(bar.high * 100) == pytest.approx(bar.high * 100, abs=1e-6)
        assert bar.volume == int(bar.volume)


def test_unknown_what_to_show(md, aapl):
    with pytest.raises(UnsupportedWhatToShow, match="HISTORICAL_VOLATILITY"):
        md.bars(aapl, "1 day", "HISTORICAL_VOLATILITY", True, utc(2024, 1, 1), NOW, NOW)


def test_replay_csv_served_exactly(master, tmp_path, aapl):
    path = tmp_path / "daily.csv"
    path.write_text(
        "# my bars\nsymbol,date,open,high,low,close,volume,wap,bar_count\n"
        "AAPL,2024-01-03,10.5,12,10,11,2000,11.2,7\n"
        "AAPL,2024-01-02,10,11,9,10.5,1000,10.1,5\n"
    )
    md = MarketData(master, ReplayBook.load(path))
    bars = md.bars(aapl, "1 day", "TRADES", True, utc(2023, 1, 1), NOW, NOW)
    assert bars == [
        Bar(utc(2024, 1, 2, 14, 30), dt.date(2024, 1, 2), 10, 11, 9, 10.5, 1000, 10.1, 5),
        Bar(utc(2024, 1, 3, 14, 30), dt.date(2024, 1, 3), 10.5, 12, 10, 11, 2000, 11.2, 7),
    ]
    assert md.head_timestamp(aapl, "TRADES", True) == utc(2024, 1, 2, 14, 30)
    assert md.bars(aapl, "1 hour", "TRADES", True, utc(2023, 1, 1), NOW, NOW) == []
    msft = master.match(symbol="MSFT")[0]
    assert len(md.bars(msft, "1 day", "TRADES", True, utc(2024, 1, 1), utc(2024, 1, 5), NOW)) == 3


def test_replay_parquet_intraday_served_exactly(master, tmp_path, aapl):
    frame = pd.DataFrame(
        {
            "symbol": ["AAPL"] * 3,
            "ts": pd.to_datetime(["2024-01-02 14:30", "2024-01-02 14:35", "2024-01-02 14:45"], utc=True),
            "open": [1.0, 2.0, 3.0],
            "high": [1.5, 2.5, 3.5],
            "low": [0.5, 1.5, 2.5],
            "close": [1.2, 2.2, 3.2],
            "volume": [100, 200, 300],
        }
    )
    path = tmp_path / "bars.parquet"
    frame.to_parquet(path)
    book = ReplayBook.load(path)
    assert book.bar_size.name == "5 mins" and book.symbols() == {"AAPL"}
    bars = MarketData(master, book).bars(aapl, "5 mins", "MIDPOINT", True, utc(2024, 1, 2), NOW, NOW)
    assert [(b.start.minute, b.open, b.close, b.volume) for b in bars] == [
        (30, 1.0, 1.2, -1),
        (35, 2.0, 2.2, -1),
        (45, 3.0, 3.2, -1),
    ]


def test_replay_bad_file_names_line_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        "# c\nsymbol,date,open,high,low,close,volume\nA,2024-01-02,1,2,1,1,5\nA,2024-01-03,1,2,x,1,5\n"
    )
    with pytest.raises(ValueError, match=r"bad.csv:4: column low"):
        ReplayBook.load(path)
    path.write_text("symbol,open,high,low,close,volume\nA,1,2,1,1,5\n")
    with pytest.raises(ValueError, match="missing column"):
        ReplayBook.load(path)


def test_replay_derives_weeks_and_months_from_its_days_and_nothing_finer(master, tmp_path, aapl):
    days = pd.bdate_range("2024-05-27", "2024-06-14")  # Memorial Day (05-27) is no session
    frame = pd.DataFrame({"symbol": "AAPL", "date": days.strftime("%Y-%m-%d"), "open": range(1, len(days) + 1),
                          "high": 100.0, "low": 0.5, "close": range(2, len(days) + 2), "volume": 10.0})
    frame.loc[frame.date == "2024-06-05", "high"] = 200.0
    path = tmp_path / "days.csv"
    frame.to_csv(path, index=False)
    book = ReplayBook.load(path)
    md = MarketData(master, book)
    friday = utc(2024, 6, 14, 20)  # the last session in the file has just closed
    weeks = md.bars(aapl, "1 week", "TRADES", True, utc(2024, 5, 1), friday, friday)
    sessions = frame[frame.date != "2024-05-27"]
    by_week = sessions.groupby(pd.to_datetime(sessions.date).dt.to_period("W"))
    assert [b.session_date for b in weeks] == [dt.date(2024, 5, 28), dt.date(2024, 6, 3), dt.date(2024, 6, 10)]
    assert [b.volume for b in weeks] == list(by_week.volume.sum())
    assert [b.high for b in weeks] == list(by_week.high.max()) and weeks[1].high == 200.0
    assert [(b.open, b.close) for b in weeks] == list(zip(by_week.open.first(), by_week.close.last()))
    months = md.bars(aapl, "1 month", "TRADES", True, utc(2024, 5, 1), friday, friday)
    may = sessions[sessions.date < "2024-06"]
    assert [(b.session_date, b.volume) for b in months] == [(dt.date(2024, 5, 1), may.volume.sum())], \
        "May as the file holds it, labelled by its first session as IB labels months; June is not over"
    assert not book.derives(parse_bar_size("1 hour")) and not book.derives(parse_bar_size("30 secs"))
    assert book.derives(parse_bar_size("1M")) and book.derives(parse_bar_size("1 day"))


def test_the_history_cache_keeps_the_most_recently_asked_instruments_only(master) -> None:
    """A universe's histories all cached held 684 MB for the S&P 500; the cache is bounded, and an evicted
    instrument is generated again to the same bars (the generator is deterministic)."""
    from harvester.sim.market.marketdata import HISTORIES_KEPT

    md = MarketData(master)
    stocks = [i for i in master if i.sec_type == "STK" and i.listing_date.year < 2024][: HISTORIES_KEPT + 5]
    first = md.bars(stocks[0], "1 day", "TRADES", True, utc(2024, 6, 3), utc(2024, 6, 8), NOW)
    kept = md.history(stocks[1])
    for inst in stocks[2:]:
        md.history(inst)
        assert md.history(stocks[1]) is kept  # asked again each time: stays
    assert len(md._histories) == HISTORIES_KEPT
    assert stocks[0].con_id not in md._histories  # the least recently asked went
    assert md.bars(stocks[0], "1 day", "TRADES", True, utc(2024, 6, 3), utc(2024, 6, 8), NOW) == first
