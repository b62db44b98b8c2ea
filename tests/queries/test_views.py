"""The DuckDB views over the warehouse: empty warehouses, late commits, temp files, gaps, lockdown."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

import queries
from queries.connection import resolve_data_dir, restrict
from tests.helpers.warehouses import (
    contracts_rows,
    coverage_row,
    minute_bars,
    sessions,
    write_bars,
    write_table,
)

VIEWS = ["bars", "bar_files", "contracts", "heads", "coverage", "covered", "series", "wanted", "journal", "quarantine",
         "gaps", "session_bars", "contract_calendars"]
BARS_COLUMNS = ["symbol", "con_id", "bar_size", "what_to_show", "use_rth", "ts", "session_date", "open", "high",
                "low", "close", "volume", "wap", "bar_count"]


@pytest.mark.parametrize("tables", [True, False])
def test_empty_warehouse_answers_zero_rows_everywhere(tmp_path: Path, tables: bool) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "bars").mkdir(parents=True) if tables else data_dir.mkdir()
    con = queries.connect(data_dir)
    for view in VIEWS:
        assert con.execute(f"SELECT count(*) FROM {view}").fetchall() == [(0,)], view
    assert [r[0] for r in con.execute("DESCRIBE bars").fetchall()] == BARS_COLUMNS
    # `sessions` is the calendar, not data: there even before the first bar, numbered without a hole
    (calendar, n, first, last), = con.execute("SELECT calendar, count(*), min(session_no), max(session_no) "
                                              "FROM sessions GROUP BY 1").fetchall()
    assert calendar == "XNYS" and n > 10_000 and (first, last) == (0, n - 1)


def test_a_connection_reads_one_snapshot_until_refreshed(tmp_path: Path) -> None:
    con = queries.connect(tmp_path)
    assert type(con) is duckdb.DuckDBPyConnection  # DuckDB's own connection: no wrapper, no retries
    assert con.execute("SELECT count(*) FROM bars").fetchall() == [(0,)]
    df = minute_bars(["AAA", "BBB"], "2024-06-03", "2024-06-04")
    write_bars(tmp_path, df)
    write_table(tmp_path, "contracts", contracts_rows(["AAA", "BBB"]))
    assert con.execute("SELECT count(*) FROM bars").fetchall() == [(0,)]  # its snapshot: nothing yet
    assert queries.refresh(con) == 0  # the bars table's first version
    assert con.execute("SELECT count(*) FROM bars").fetchall() == [(len(df),)]
    assert con.execute("SELECT count(*) FROM contracts").fetchall() == [(2,)]
    assert queries.bars(None, "1 min", con=con).shape[0] == len(df)


def test_time_travel_reads_the_warehouse_as_it_was(tmp_path: Path) -> None:
    first = minute_bars(["AAA"], "2024-06-03", "2024-06-03")
    write_bars(tmp_path, first)
    write_bars(tmp_path, minute_bars(["BBB"], "2024-06-04", "2024-06-04"))
    now = queries.connect(tmp_path)
    then = queries.connect(tmp_path, as_of=0)
    assert now.execute("SELECT count(DISTINCT symbol) FROM bars").fetchall() == [(2,)]
    assert then.execute("SELECT symbol, count(*) FROM bars GROUP BY 1").fetchall() == [("AAA", len(first))]
    assert queries.refresh(then) == 0  # pinned stays pinned
    assert len(queries.bars(None, "1 min", "2024-06-01", "2024-07-01", con=then)) == len(first)


def test_bars_view_types_and_ib_bar_size_spelling(tmp_path: Path) -> None:
    df = minute_bars(["AAA"], "2024-06-03", "2024-06-03")
    write_bars(tmp_path, df, "1 min", use_rth=False)
    write_bars(tmp_path, df.head(3), "5 secs")
    con = queries.connect(tmp_path)
    rows = con.execute("SELECT bar_size, use_rth, count(*) FROM bars GROUP BY ALL ORDER BY 1").fetchall()
    assert rows == [("1 min", False, len(df)), ("5 secs", True, 3)]
    types = {r[0]: r[1] for r in con.execute("DESCRIBE bars").fetchall()}
    assert types["ts"] == "TIMESTAMP WITH TIME ZONE" and types["use_rth"] == "BOOLEAN"
    assert types["session_date"] == "DATE"
    got = con.execute("SELECT * FROM bars WHERE bar_size = '1 min' ORDER BY ts").df()
    pd.testing.assert_series_equal(got["close"], df["close"], check_names=False)


def test_types_for_notebooks_are_the_same_in_sql_in_bars_and_in_dot_df(tmp_path: Path) -> None:
    """Issue 11 item 18: `ts` is an instant (TIMESTAMPTZ in DuckDB, datetime64[us, UTC] in pandas) and
    `session_date` a DATE (datetime64[us] in pandas, as DuckDB's .df() gives a DATE), by every path."""
    df = minute_bars(["AAA"], "2024-06-03", "2024-06-04")
    write_bars(tmp_path, df)
    con = queries.connect(tmp_path)
    assert dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE bars)").fetchall())["ts"] \
        == "TIMESTAMP WITH TIME ZONE"
    assert con.execute("SELECT typeof(session_date) FROM bars LIMIT 1").fetchall() == [("DATE",)]
    frames = [con.sql("SELECT ts, session_date FROM bars ORDER BY ts").df(),
              queries.bars("AAA", "1 min", "2024-06-03", "2024-06-04", data_dir=tmp_path),
              queries.bars("AAA", "1 min", datetime(2024, 6, 3), datetime(2024, 6, 5), con=con)]
    for i, frame in enumerate(frames):
        assert str(frame["ts"].dtype) == "datetime64[us, UTC]"
        assert str(frame["session_date"].dtype) == "datetime64[us]"
        assert frame["ts"].iloc[0] == pd.Timestamp("2024-06-03 13:30", tz="UTC"), i
        assert frame["session_date"].iloc[0] == pd.Timestamp("2024-06-03")
    arrow = queries.bars("AAA", "1 min", "2024-06-03", "2024-06-03", data_dir=tmp_path, as_="arrow")
    assert str(arrow.schema.field("ts").type) == "timestamp[us, tz=UTC]" and str(arrow.schema.field("session_date").type) == "date32[day]"
    # a naive literal is UTC: the connection's TimeZone is UTC whatever the machine's
    assert con.execute("SELECT current_setting('TimeZone'), min(ts)::VARCHAR FROM bars WHERE ts >= '2024-06-04 13:30'"
                       ).fetchall() == [("UTC", "2024-06-04 13:30:00+00")]


def test_a_one_day_filter_on_ts_reads_only_that_days_row_groups(tmp_path: Path) -> None:
    """Stored UTC-aware, `ts` is compared as stored: DuckDB prunes row groups by their statistics. (A view that
    converted a naive `ts` scanned all 50 of 50 row groups for one day.)"""
    from deltalake import WriterProperties, write_deltalake

    from harvester import tables
    from harvester.warehouse.layout import BARS_PARTITION_BY

    df = minute_bars(["AAA"], "2024-06-03", "2024-06-28").assign(bar_size="1min", what_to_show="TRADES",
                                                                 use_rth=True, period="2024-06")
    rows = pa.Table.from_pandas(df[tables.BARS_TABLE_SCHEMA.names], preserve_index=False).cast(tables.BARS_TABLE_SCHEMA)
    write_deltalake(str(tmp_path / "bars"), rows, partition_by=list(BARS_PARTITION_BY),
                    writer_properties=WriterProperties(max_row_group_size=390))  # a session a row group
    con = queries.connect(tmp_path)
    con.execute("PRAGMA enable_profiling = 'json'")  # EXPLAIN ANALYZE answers with the profile as JSON

    def row_groups(sql: str) -> tuple[int, int]:
        """(row groups scanned, row groups of the files) of the query's one Parquet scan."""
        scans = []

        def walk(node: dict) -> None:
            if "row_groups_scanned" in node:
                scans.append((node["row_groups_scanned"], node["total_row_groups_to_scan"]))
            for child in node.get("operator", []) + node.get("children", []):
                walk(child)

        walk(json.loads(con.execute(f"EXPLAIN ANALYZE {sql}").fetchall()[0][1]))
        (scan,) = scans
        return scan

    sessions_stored = df.session_date.nunique()  # 19: June 19th is a holiday
    assert row_groups("SELECT close FROM bars WHERE ts >= '2024-06-05' AND ts < '2024-06-06'") == (1, sessions_stored)
    assert row_groups("SELECT close FROM bars WHERE ts >= TIMESTAMPTZ '2024-06-05 09:30-04' "
                      "AND ts < TIMESTAMPTZ '2024-06-05 16:00-04'") == (1, sessions_stored)


def test_files_no_snapshot_lists_and_staging_are_invisible(tmp_path: Path) -> None:
    df = minute_bars(["AAA"], "2024-06-03", "2024-06-03")
    (path,) = map(Path, write_bars(tmp_path, df))
    (path.parent / "orphan-of-a-dead-writer.parquet").write_bytes(path.read_bytes())  # data file, no log entry
    staged = tmp_path / "_staging" / "run1" / "bars.parquet"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(path.read_bytes())
    con = queries.connect(tmp_path)
    assert con.execute("SELECT count(*) FROM bars").fetchall() == [(len(df),)]
    assert con.execute("SELECT count(*), sum(num_rows) FROM bar_files").fetchall() == [(1, len(df))]


def test_gaps_are_sessions_inside_the_covered_span_that_no_interval_spans(tmp_path: Path) -> None:
    days = sessions("2024-05-01", "2024-06-14")
    write_table(tmp_path, "contracts", contracts_rows(["AAA", "BBB"]))
    # AAA: two intervals leaving sessions 10..12 uncovered, and one verified-empty interval covering 20..21.
    s = days.reset_index(drop=True)
    rows = [
        coverage_row(1000, "1 min", s.open_ts[0], s.close_ts[9]),
        coverage_row(1000, "1 min", s.open_ts[13], s.close_ts[19]),
        coverage_row(1000, "1 min", s.open_ts[20], s.close_ts[21], kind="empty"),
        coverage_row(1000, "1 min", s.open_ts[22] - timedelta(hours=1), s.close_ts[len(s) - 1]),
        # BBB: complete but for a session only half covered (an interval ending at noon).
        coverage_row(1001, "1 min", s.open_ts[0], s.open_ts[5] + timedelta(hours=2)),
        coverage_row(1001, "1 min", s.open_ts[6], s.close_ts[len(s) - 1]),
    ]
    write_table(tmp_path, "coverage", rows)
    con = queries.connect(tmp_path)
    got = con.execute("SELECT symbol, session_date FROM gaps ORDER BY 1, 2").fetchall()
    expected = [("AAA", d) for d in s.session_date[10:13]] + [("BBB", s.session_date[5])]
    assert got == expected
    series = con.execute("SELECT symbol, bar_intervals, empty_intervals FROM series ORDER BY 1").fetchall()
    assert series == [("AAA", 3, 1), ("BBB", 2, 0)]


def test_data_dir_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARVEST_DATA_DIR", str(tmp_path / "wh"))
    assert resolve_data_dir() == (tmp_path / "wh").resolve()
    monkeypatch.delenv("HARVEST_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARVEST_CONFIG", raising=False)
    (tmp_path / "harvest.toml").write_text('data_dir = "elsewhere"\n')
    assert resolve_data_dir() == (tmp_path / "elsewhere").resolve()


def test_restricted_connection_reads_the_warehouse_and_nothing_else(tmp_path: Path) -> None:
    write_bars(tmp_path / "wh", minute_bars(["AAA"], "2024-06-03", "2024-06-03"))
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    con = queries.connect(tmp_path / "wh")
    restrict(con, tmp_path / "wh")
    assert con.execute("SELECT count(*) FROM bars").fetchall()[0][0] > 0
    for sql in [f"SELECT * FROM read_csv('{secret}')", f"ATTACH '{tmp_path}/x.db'", "SET threads = 1",
                "INSTALL httpfs", f"COPY (SELECT 1) TO '{tmp_path}/out.csv'"]:
        with pytest.raises(duckdb.Error):
            con.execute(sql).fetchall()
    assert not (tmp_path / "out.csv").exists()


def test_sql_init_script_builds_the_same_views(tmp_path: Path) -> None:
    df = minute_bars(["AAA"], "2024-06-03", "2024-06-04")
    write_bars(tmp_path / "wh", df)
    start = datetime(2024, 6, 3)
    write_table(tmp_path / "wh", "coverage", [coverage_row(1000, "1 min", start, start + timedelta(days=2))])
    write_table(tmp_path / "wh", "contracts", contracts_rows(["AAA"]))
    script = queries.connection.write_init_script(tmp_path / "init.sql", tmp_path / "wh")
    con = duckdb.connect()
    con.execute(script.read_text())
    assert con.execute("SELECT count(*) FROM bars").fetchall() == [(len(df),)]
    assert con.execute("SELECT count(*) FROM gaps").fetchall() == [(0,)]
    assert con.execute("SELECT count(*) FROM sessions WHERE session_date = '2024-06-04'").fetchall() == [(1,)]


def _daily(symbol: str, days: pd.DataFrame) -> pd.DataFrame:
    return days.assign(symbol=symbol, con_id=1000, ts=days.open_ts, open=1.0, high=1.0, low=1.0, close=1.0,
                       volume=1.0, wap=1.0, bar_count=1).drop(columns=["open_ts", "close_ts"])


def _cover(days: pd.DataFrame) -> dict:
    return coverage_row(1000, "1 day", days.open_ts.iloc[0], days.close_ts.iloc[-1], bars=len(days))


def test_gaps_move_with_the_bars_at_refresh_and_never_before(tmp_path: Path) -> None:
    """A long-lived connection never shows new bars beside old gaps: both move at refresh(con)."""
    recent, older = sessions("2023-03-01", "2023-03-31"), sessions("2022-11-01", "2022-12-30")
    write_bars(tmp_path, _daily("AAA", recent), "1 day")
    write_table(tmp_path, "contracts", contracts_rows(["AAA"]))
    write_table(tmp_path, "coverage", [_cover(recent)])
    con = queries.connect(tmp_path)
    write_bars(tmp_path, _daily("AAA", older), "1 day")  # an older backfill lands: Jan-Feb stay a hole
    write_table(tmp_path, "coverage", [_cover(older)])
    count = "SELECT (SELECT count(*) FROM bars), (SELECT count(*) FROM gaps)"
    assert con.execute(count).fetchall() == [(len(recent), 0)]
    assert len(queries.bars("AAA", con=con)) == len(recent)  # bars() with `con` reads its snapshot too
    queries.refresh(con)
    hole = len(sessions("2023-01-01", "2023-02-28"))
    assert con.execute(count).fetchall() == [(len(recent) + len(older), hole)]
    assert len(queries.bars("AAA", con=con)) == len(recent) + len(older)
    assert queries.connect(tmp_path).execute(count).fetchall() == con.execute(count).fetchall()


def test_sql_init_is_one_snapshot_and_rereading_a_new_one_moves_every_view(tmp_path: Path) -> None:
    """Written on an empty warehouse it still has the calendar; re-run and `.read` again, bars and gaps
    move together (what a DuckDB CLI user does to see later commits)."""
    wh = tmp_path / "wh"
    wh.mkdir()
    script = queries.write_init_script(tmp_path / "init.sql", wh)
    cli = duckdb.connect()
    cli.execute(script.read_text())
    count = "SELECT (SELECT count(*) FROM bars), (SELECT count(*) FROM gaps), (SELECT count(*) > 0 FROM sessions)"
    assert cli.execute(count).fetchall() == [(0, 0, True)]
    days = sessions("2023-03-01", "2023-03-31")
    write_bars(wh, _daily("AAA", days[days.session_date != days.session_date.iloc[5]]), "1 day")
    write_table(wh, "coverage", [coverage_row(1000, "1 day", days.open_ts.iloc[0], days.close_ts.iloc[4]),
                                 coverage_row(1000, "1 day", days.open_ts.iloc[6], days.close_ts.iloc[-1])])
    assert cli.execute(count).fetchall() == [(0, 0, True)]  # the script's snapshot
    cli.execute(queries.write_init_script(tmp_path / "init.sql", wh).read_text())
    assert cli.execute(count).fetchall() == [(len(days) - 1, 1, True)]
    assert cli.execute("SELECT count(*) FROM gaps").fetchall() == \
        queries.connect(wh).execute("SELECT count(*) FROM gaps").fetchall()
