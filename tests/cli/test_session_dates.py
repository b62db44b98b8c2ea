"""Dates a user gives are exchange dates (issue 11): `--start`/`--end` and `queries.bars(start=, end=)` mean the
sessions dated so, the end included, by the series' own calendar and flavour; real harvests against the simulator."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

import queries
from harvester.calendar import TradingCalendar, from_epoch
from tests.cli.test_harvest import invoke, sim_journal


@pytest.fixture
def aapl(tmp_path: Path) -> Path:
    path = tmp_path / "u1.csv"
    path.write_text("symbol\nAAPL\n")
    return path


def harvest(aapl: Path, data: Path, *args: str) -> None:
    result = invoke("--universe", str(aapl), "--sim", "--data-dir", str(data), *args)
    assert result.exit_code == 0, result.output + result.stderr


def historical(data: Path) -> list[dict]:
    return [e for e in sim_journal(data) if e["kind"] == "historical"]


def test_an_end_date_with_all_hours_includes_its_session_to_the_extended_close(tmp_path, aapl):
    data = tmp_path / "data"
    args = ("--sim-now", "2024-12-02T22:00:00Z", "--bar-size", "1 min", "--all-hours",
            "--start", "2024-10-28", "--end", "2024-11-08")
    harvest(aapl, data, *args)
    con = queries.connect(data)
    per_session = dict(con.sql("SELECT session_date, count(*) FROM bars GROUP BY 1").fetchall())
    assert per_session == {d: 960 for d in per_session} and len(per_session) == 10  # 04:00-20:00 New York
    assert max(per_session) == date(2024, 11, 8)
    # in winter that session's post-market closes at 01:00 UTC the next day, and coverage says so
    assert con.execute("SELECT max(end_ts) FROM coverage").fetchone()[0] == datetime(2024, 11, 9, 1)
    sent = len(historical(data))
    harvest(aapl, data, *args)
    assert len(historical(data)) == sent  # the rerun asks for nothing

    # queries.bars takes a date the same way: the session, end included, whatever its UTC hours
    day = queries.bars("AAPL", "1 min", "2024-11-08", "2024-11-08", use_rth=False, data_dir=data)
    assert len(day) == 960 and day.ts.max() == datetime(2024, 11, 9, 0, 59, tzinfo=UTC)
    assert len(queries.bars("AAPL", "1 min", date(2024, 11, 4), date(2024, 11, 8), use_rth=False,
                            data_dir=data)) == 5 * 960
    # an instant stays an instant: bars starting in [start, end)
    hour = queries.bars("AAPL", "1 min", datetime(2024, 11, 9, 0, tzinfo=UTC), "2024-11-09T01:00:00+00:00",
                        use_rth=False, data_dir=data)
    assert len(hour) == 60 and set(hour.session_date.dt.date) == {date(2024, 11, 8)}


def test_a_date_bound_is_its_sessions_open_or_close_by_the_calendar():
    nyse = TradingCalendar.for_exchange("NYSE")
    assert from_epoch(nyse.day_bound(date(2024, 11, 9), "start", True)) == datetime(2024, 11, 11, 14, 30, tzinfo=UTC)
    assert from_epoch(nyse.day_bound(date(2024, 11, 10), "end", True)) == datetime(2024, 11, 8, 21, tzinfo=UTC)
    assert from_epoch(nyse.day_bound(date(2024, 11, 8), "end", False)) == datetime(2024, 11, 9, 1, tzinfo=UTC)
    assert from_epoch(nyse.day_bound(date(2024, 7, 3), "end", True)) == datetime(2024, 7, 3, 17, tzinfo=UTC)  # half day


def test_a_window_starting_mid_session_stores_no_partial_session_before_the_start(tmp_path, aapl):
    data = tmp_path / "data"
    args = ("--sim-now", "2024-07-03T22:00:00Z", "--bar-size", "3 hours", "--start", "2024-07-01")
    harvest(aapl, data, *args)
    (sent,) = historical(data)
    assert sent["duration"] == "1 W"  # one request, reaching back into the middle of 2024-06-26
    con = queries.connect(data)
    per_session = dict(con.sql("SELECT session_date, count(*) FROM bars GROUP BY 1").fetchall())
    # three bars a regular session (09:30, 12:30, 15:30 New York), two on the 07-03 half day; 06-26 had
    # only its last bar in the window: not kept, and coverage does not claim it
    assert date(2024, 6, 26) not in per_session and per_session[date(2024, 7, 3)] == 2
    assert {n for d, n in per_session.items() if d != date(2024, 7, 3)} == {3}
    assert con.execute("SELECT min(start_ts) FROM coverage").fetchone()[0] == datetime(2024, 6, 27, 13, 30)
    assert con.execute("SELECT count(*) FROM gaps").fetchone()[0] == 0
    harvest(aapl, data, *args)
    assert len(historical(data)) == 1  # the rerun asks for nothing


@pytest.mark.parametrize(("size", "now", "last_period"), [
    ("1 week", "2024-06-15T12:00:00Z", date(2024, 6, 10)),  # a Saturday: the week that closed Friday
    ("1 month", "2024-07-01T12:00:00Z", date(2024, 6, 3)),  # the 1st, before the open: June
])
def test_a_week_or_month_is_fetched_once_its_last_session_has_closed(tmp_path, aapl, size, now, last_period):
    data = tmp_path / "data"
    harvest(aapl, data, "--sim-now", now, "--bar-size", size, "--start", "2024-01-01")
    con = queries.connect(data)
    assert con.execute("SELECT max(session_date) FROM bars").fetchone()[0] == last_period
