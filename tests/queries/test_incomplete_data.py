"""Scanners and candles on a warehouse with holes: "previous" and "last N" are the exchange calendar's
sessions, never the previous stored rows; rows whose reference sessions are missing are left out by
default and marked (`complete`, `missing_sessions`) when asked for.

The truth comes from pandas over the complete series (every session), the warehouse holds it with holes:
nothing before 2022-11-01, no January, February or April 2023 (the shape of the issue's warehouse).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import queries
from queries.plot import candle_positions, candles
from tests.helpers.warehouses import contracts_rows, sessions, write_bars, write_table

SYMBOLS = ["AAA", "BBB", "CCC", "DDD"]
LAST = date(2023, 6, 14)


def daily_bars(symbols: list[str], first: str, last: str, seed: int = 5) -> pd.DataFrame:
    """Random-walk daily bars on every XNYS session; opens within 0.5 % of the previous close (no gaps)."""
    rng = np.random.default_rng(seed)
    days = sessions(first, last)
    frames = []
    for i, symbol in enumerate(symbols):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days))))
        open_ = np.r_[100, close[:-1]] * (1 + rng.normal(0, 0.001, len(days)))
        frames.append(pd.DataFrame({
            "symbol": symbol, "con_id": 1000 + i, "ts": days.open_ts.to_numpy(), "session_date": days.session_date,
            "open": open_, "high": np.maximum(open_, close) * 1.002, "low": np.minimum(open_, close) * 0.998,
            "close": close, "volume": rng.integers(1_000, 2_000, len(days)).astype(float), "wap": close,
            "bar_count": 100}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def holed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    full = daily_bars(SYMBOLS, "2022-06-01", LAST.isoformat())
    at = lambda sym, day: (full.symbol == sym) & (full.session_date == day)
    full.loc[at("AAA", date(2023, 3, 1)), "open"] = 1.05 * full.loc[at("AAA", date(2022, 12, 30)), "close"].item()
    full.loc[at("DDD", date(2023, 5, 1)), "volume"] *= 6
    full.loc[at("AAA", LAST), "high"] = full[full.symbol == "AAA"].high.max() + 50
    full = full[(full.symbol != "CCC") | (full.session_date >= date(2023, 6, 12))]  # CCC: listed on 06-12
    full.loc[at("CCC", LAST), "high"] = full[full.symbol == "CCC"].high.max() + 10
    stored = full[full.session_date.map(lambda d: d >= date(2022, 11, 1) and not date(2023, 1, 1) <= d < date(
        2023, 3, 1) and not date(2023, 4, 1) <= d < date(2023, 5, 1))]
    data_dir = tmp_path_factory.mktemp("holed")
    write_bars(data_dir, stored, "1 day")
    write_table(data_dir, "contracts", contracts_rows(SYMBOLS))
    return data_dir, full, stored


def _calendar_prev(full: pd.DataFrame) -> pd.DataFrame:
    """The truth: each bar with the previous *session's* close (NaN where the series has no such session)."""
    days = list(sessions("2022-06-01", LAST.isoformat()).session_date)
    previous = dict(zip(days[1:], days[:-1], strict=True))
    closes = full.set_index(["symbol", "session_date"]).close
    out = full.copy()
    out["prev_close"] = [closes.get((s, previous.get(d))) for s, d in zip(out.symbol, out.session_date, strict=True)]
    return out


def test_gap_ups_use_the_previous_session_not_the_previous_stored_bar(holed) -> None:
    data_dir, full, stored = holed
    march_first = queries.scan("gap_ups", data_dir=data_dir, start="2023-03-01", end="2023-03-01")
    assert march_first.empty  # AAA opened 5 % above the close of 2022-12-30, two months earlier: not a gap
    marked = queries.scan("gap_ups", data_dir=data_dir, start="2023-03-01", end="2023-03-01",
                          include_incomplete=True)
    assert sorted(marked.symbol) == ["AAA", "BBB", "DDD"]
    assert marked.gap.isna().all() and (marked.missing_sessions == 1).all() and not marked.complete.any()
    # every complete row, whatever its size, equals the calendar truth; every stored pair of sessions is there
    truth = _calendar_prev(full).merge(stored[["symbol", "session_date"]])
    truth = truth[truth.prev_close.notna() & truth.set_index(["symbol", "session_date"]).index.isin(
        pd.MultiIndex.from_arrays([stored.symbol, stored.session_date]))]
    both = truth[truth.apply(lambda r: ((stored.symbol == r.symbol) & (stored.close == r.prev_close)).any(), axis=1)]
    got = queries.scan("gap_ups", data_dir=data_dir, min_gap=-1.0).sort_values(["symbol", "session_date"])
    assert got.complete.all() and len(got) == len(both) > 100
    np.testing.assert_allclose(got.gap.to_numpy(), (both.open / both.prev_close - 1).to_numpy(), rtol=1e-12)


def test_unusual_volume_averages_the_calendars_last_sessions(holed) -> None:
    data_dir, full, stored = holed
    assert queries.scan("unusual_volume", data_dir=data_dir, as_of="2023-05-01").empty
    marked = queries.scan("unusual_volume", data_dir=data_dir, as_of="2023-05-01", include_incomplete=True)
    prior = [d for d in sessions("2023-03-01", "2023-04-28").session_date][-20:]
    missing = sum(d not in set(stored.session_date) for d in prior)
    row = marked.set_index("symbol").loc["DDD"]
    assert not row.complete and row.missing_sessions == missing == 19
    assert row.avg_volume == stored[(stored.symbol == "DDD") & (stored.session_date == prior[0])].volume.item()
    # where the 20 sessions are all stored the average is the calendar's (pandas over the complete series)
    on_last = queries.scan("unusual_volume", data_dir=data_dir, multiple=0.0).set_index("symbol")
    for symbol in ("AAA", "BBB", "DDD"):
        series = full[full.symbol == symbol].sort_values("session_date")
        assert on_last.avg_volume[symbol] == pytest.approx(series.volume.iloc[-21:-1].mean(), rel=1e-12)
    assert "CCC" not in on_last.index  # two sessions of history are not twenty


def test_new_52w_highs_need_the_window_covered(holed) -> None:
    data_dir, full, stored = holed
    assert queries.scan("new_52w_highs", data_dir=data_dir).empty
    marked = queries.scan("new_52w_highs", data_dir=data_dir, include_incomplete=True).set_index("symbol")
    assert {"AAA", "CCC"} <= set(marked.index) and (marked.note == "insufficient history").all()
    window = sessions((LAST - timedelta(days=365)).isoformat(), (LAST - timedelta(days=1)).isoformat())
    kept = stored[(stored.symbol == "AAA") & stored.session_date.isin(window.session_date)]
    assert marked.history["AAA"] == pytest.approx(len(kept) / len(window))
    assert marked.missing_sessions["AAA"] == len(window) - len(kept)
    covered = queries.scan("new_52w_highs", data_dir=data_dir, window_days=30)
    month = full[(full.session_date < LAST) & (full.session_date >= LAST - timedelta(days=30))]
    today = full[full.session_date == LAST].set_index("symbol").high
    want = sorted(s for s in ("AAA", "BBB", "DDD") if today[s] > month[month.symbol == s].high.max())
    assert "AAA" in want and sorted(covered.symbol) == want and covered.complete.all()  # CCC: left out
    ccc = queries.scan("new_52w_highs", data_dir=data_dir, window_days=30, include_incomplete=True)
    assert ccc.set_index("symbol").note["CCC"] == "insufficient history"


def test_candle_positions_leave_a_slot_per_missing_session() -> None:
    x, breaks = candle_positions(np.array([10, 11, 12, 15, 16]))
    assert list(x) == [0, 1, 2, 5, 6] and breaks == [(2.5, 4.5)]
    x, breaks = candle_positions(np.array([3, 3, 4, 4, 6, 6]))  # intraday: two bars a session
    assert list(x) == [0, 1, 2, 3, 6, 7] and breaks == [(3.5, 5.5)]
    assert candle_positions(np.array([7, 8, 9]))[1] == []


def test_candles_break_where_sessions_are_missing(holed) -> None:
    data_dir, _, _ = holed
    fig = candles("AAA", None, start="2023-03-20", end="2023-05-10", data_dir=data_dir)
    price = fig.axes[0]
    assert [t.get_text() for t in price.get_legend().get_texts()] == ["missing sessions"]
    x = sorted(p.get_x() + p.get_width() / 2 for p in price.patches if p.get_width() == pytest.approx(0.7))
    april = len(sessions("2023-04-01", "2023-04-30"))
    assert max(np.diff(x)) == pytest.approx(april + 1)  # 03-31 → 05-01: the April sessions stay empty


def test_the_calendar_comes_from_the_contract(tmp_path: Path) -> None:
    """A London listing follows London's sessions: 2023-05-08 (a UK holiday, New York open) is no hole."""
    days = pd.DataFrame({"session_date": [date(2023, 5, 4), date(2023, 5, 5), date(2023, 5, 9)]})
    bars = days.assign(symbol="EEE", con_id=1000, ts=pd.to_datetime(days.session_date) + pd.Timedelta(hours=8),
                       open=[10.0, 10.0, 10.5], high=11.0, low=9.0, close=10.0, volume=1.0, wap=10.0, bar_count=1)
    write_bars(tmp_path, bars, "1 day")
    write_table(tmp_path, "contracts", [{**contracts_rows(["EEE"])[0], "primary_exchange": "LSE"}])
    got = queries.scan("gap_ups", data_dir=tmp_path, include_incomplete=True)
    rows = {str(d)[:10]: r for d, r in zip(got.session_date, got.itertuples(), strict=True)}
    assert rows["2023-05-09"].complete and rows["2023-05-09"].gap == pytest.approx(0.05)
    assert not rows["2023-05-04"].complete  # 05-03 has no bar: the series' first stored day


def test_candles_say_when_the_range_is_cut_to_the_last_bars(holed) -> None:
    """Issue 11 item 17: `--start 1990-01-01` drew the last 400 bars and said nothing."""
    data_dir, _, stored = holed
    held = len(stored[stored.symbol == "AAA"])
    title = candles("AAA", None, start="1990-01-01", data_dir=data_dir, max_bars=50).axes[0].get_title()
    assert f"the last 50 of {held:,} bars" in title, title
    assert "of" not in candles("AAA", None, data_dir=data_dir, max_bars=held).axes[0].get_title().split("UTC")[1]


def test_the_coverage_map_draws_years_before_the_listing_as_verified_empty(tmp_path: Path) -> None:
    """One daily request from 40 years back covers the years before the first bar: IB had nothing there."""
    from click.testing import CliRunner

    from harvester.cli import main
    from queries.plot import COVERED, EMPTY, coverage_grid, coverage_map

    universe = tmp_path / "u.csv"
    universe.write_text("symbol\nAAPL\n")
    result = CliRunner().invoke(main, ["--universe", str(universe), "--sim", "--sim-now", "2024-06-14T20:00:00Z",
                                       "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output + result.stderr
    labels, days, grid = coverage_grid(tmp_path / "data", "1 day")
    first = queries.bars("AAPL", data_dir=tmp_path / "data").session_date.min()
    first = first.date() if hasattr(first, "date") else first
    before = [state for day, state in zip(days, grid[0]) if day < first]
    after = [state for day, state in zip(days, grid[0]) if day >= first]
    assert before and set(before) == {EMPTY}, "sessions before the first bar are not covered bars"
    assert set(after) == {COVERED}
    assert labels == ["AAPL"]
    ax = coverage_map(None, data_dir=tmp_path / "data").axes[0]
    assert ax.get_xlabel() == "exchange session" and ax.get_ylabel() == "series"
