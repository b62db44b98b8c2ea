"""Every scanner SQL file against a warehouse whose right answer pandas computes independently."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import queries
from queries import scanners
from tests.helpers.warehouses import (
    contracts_rows,
    coverage_row,
    daily_from_minutes,
    minute_bars,
    sessions,
    write_bars,
    write_table,
)

SYMBOLS = ["AAA", "BBB", "CCC", "DDD"]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    data_dir = tmp_path_factory.mktemp("scan")
    minutes = minute_bars(SYMBOLS, "2024-04-01", "2024-06-14", seed=3)
    daily = daily_from_minutes(minutes)
    # Make the scanners find something: gaps up, volume spikes and a new high on the last sessions.
    last, prev = daily.session_date.max(), sorted(daily.session_date.unique())[-2]
    daily.loc[(daily.symbol == "BBB") & (daily.session_date == prev), "open"] *= 1.05
    daily.loc[(daily.symbol == "CCC") & (daily.session_date == last), "open"] *= 1.03
    daily.loc[(daily.symbol == "DDD") & (daily.session_date == last), "volume"] *= 6
    daily.loc[(daily.symbol == "AAA") & (daily.session_date == last), "high"] += 50
    write_bars(data_dir, minutes, "1 min")
    write_bars(data_dir, daily, "1 day")
    write_table(data_dir, "contracts", contracts_rows(SYMBOLS))
    s = sessions("2024-04-01", "2024-06-14").reset_index(drop=True)
    cov = [coverage_row(1000 + i, "1 day", s.open_ts[0] - timedelta(hours=14), s.close_ts[len(s) - 1], bars=len(s))
           for i in range(len(SYMBOLS))]
    cov.append(coverage_row(1000, "1 min", s.open_ts[0], s.close_ts[9], bars=10 * 390))
    cov.append(coverage_row(1000, "1 min", s.open_ts[12], s.close_ts[len(s) - 1], bars=1))
    write_table(data_dir, "coverage", cov)
    return data_dir, minutes, daily


def test_every_scanner_documents_its_parameters() -> None:
    for name in scanners.names():
        scanner = scanners.load(name)
        assert scanner.doc.startswith(f"{name}:"), name
        for param in scanner.defaults:
            assert f"${param}" in scanner.sql.split("\n", len(scanner.doc.splitlines()))[-1], (name, param)
    assert {"new_52w_highs", "gap_ups", "unusual_volume", "daily_from_minutes", "coverage_report"} <= set(
        scanners.names())


def test_daily_from_minutes_matches_pandas_resample(warehouse) -> None:
    data_dir, minutes, _ = warehouse
    got = queries.scan("daily_from_minutes", data_dir=data_dir)
    want = daily_from_minutes(minutes)
    want["wap"] = (minutes.wap * minutes.volume).groupby([minutes.symbol, minutes.session_date]).sum().to_numpy() / \
        minutes.groupby(["symbol", "session_date"]).volume.sum().to_numpy()
    assert len(got) == len(want)
    for col in ("open", "high", "low", "close", "volume", "wap", "bar_count"):
        np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-12, err_msg=col)
    assert (got["ts"] == want["ts"].dt.tz_localize("UTC")).all()
    narrowed = queries.scan("daily_from_minutes", data_dir=data_dir, start="2024-06-03", end="2024-06-05")
    assert sorted(narrowed.session_date.astype(str).unique()) == ["2024-06-03", "2024-06-04"]


def _prev_close(daily: pd.DataFrame) -> pd.DataFrame:
    d = daily.sort_values(["symbol", "session_date"]).copy()
    d["prev_close"] = d.groupby("symbol").close.shift()
    return d


def test_gap_ups_match_pandas(warehouse) -> None:
    data_dir, _, daily = warehouse
    d = _prev_close(daily)
    d["gap"] = d.open / d.prev_close - 1
    for min_gap in (0.02, 0.0):
        want = d[d.gap >= min_gap].sort_values(["session_date", "gap", "symbol"], ascending=[True, False, True])
        got = queries.scan("gap_ups", data_dir=data_dir, min_gap=min_gap)
        assert list(zip(got.symbol, got.session_date.astype(str))) == list(
            zip(want.symbol, want.session_date.astype(str)))
        np.testing.assert_allclose(got.gap.to_numpy(), want.gap.to_numpy())
    assert len(queries.scan("gap_ups", data_dir=data_dir)) >= 2


def test_unusual_volume_matches_pandas(warehouse) -> None:
    data_dir, _, daily = warehouse
    d = daily.sort_values(["symbol", "session_date"]).copy()
    d["avg"] = d.groupby("symbol").volume.transform(lambda v: v.shift().rolling(20).mean())
    for as_of, multiple in ((None, 3.0), ("2024-05-15", 1.2)):
        day = pd.Timestamp(as_of).date() if as_of else d.session_date.max()
        want = d[(d.session_date == day) & (d.volume >= multiple * d.avg)]
        got = queries.scan("unusual_volume", data_dir=data_dir, as_of=as_of, multiple=multiple)
        assert sorted(got.symbol) == sorted(want.symbol)
        if as_of is None:
            assert list(got.symbol) == ["DDD"]
        np.testing.assert_allclose(sorted(got.avg_volume), sorted(want.avg), rtol=1e-12)


def test_new_52w_highs_match_pandas(warehouse) -> None:
    """On a window the warehouse covers (45 days here; the data starts 2024-04-01)."""
    data_dir, _, daily = warehouse
    for as_of in (None, "2024-05-20"):
        day = pd.Timestamp(as_of).date() if as_of else daily.session_date.max()
        window = daily[(daily.session_date < day) & (daily.session_date >= day - timedelta(days=45))]
        prior = window.groupby("symbol").high.max()
        today = daily[daily.session_date == day].set_index("symbol").high
        want = sorted(s for s in today.index if s in prior.index and today[s] > prior[s])
        got = queries.scan("new_52w_highs", data_dir=data_dir, as_of=as_of, window_days=45)
        assert sorted(got.symbol) == want and got.complete.all() and (got.history == 1.0).all()
    assert "AAA" in set(queries.scan("new_52w_highs", data_dir=data_dir, window_days=45).symbol)
    assert queries.scan("new_52w_highs", data_dir=data_dir).empty  # 365 days: ten weeks are not a year


def test_coverage_report_counts_missing_sessions(warehouse) -> None:
    data_dir, _, _ = warehouse
    got = queries.scan("coverage_report", data_dir=data_dir, bar_size="1 min")
    assert list(got.symbol) == ["AAA"]
    assert got.missing_sessions[0] == 2 and got.bar_intervals[0] == 2
    s = sessions("2024-04-01", "2024-06-14").reset_index(drop=True)
    assert str(got.first_missing[0])[:10] == str(s.session_date[10])
    daily = queries.scan("coverage_report", data_dir=data_dir, bar_size="1 day")
    assert list(daily.missing_sessions) == [0] * len(SYMBOLS)


def test_unknown_scanner_and_parameter_are_named(warehouse) -> None:
    data_dir, _, _ = warehouse
    with pytest.raises(scanners.ScannerError, match="no scanner named 'nope'"):
        queries.scan("nope", data_dir=data_dir)
    with pytest.raises(scanners.ScannerError, match=r"no parameter \$min_gapp"):
        queries.scan("gap_ups", data_dir=data_dir, min_gapp=0.1)


@pytest.mark.parametrize("sql", [
    "COPY (SELECT 1) TO 'x.csv'", "ATTACH 'x.db'", "INSTALL httpfs", "LOAD httpfs", "SET threads = 1",
    "CREATE TABLE t AS SELECT 1", "SELECT 1; DROP VIEW bars", "EXPORT DATABASE 'd'", "PRAGMA threads = 1",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO 'x.csv'", "explain (format json) copy (select 1) to 'x.csv'",
    "CALL pragma_version()", "-- note\nEXPLAIN ANALYZE INSERT INTO t VALUES (1)",
])
def test_non_select_statements_are_refused(sql: str) -> None:
    with pytest.raises(scanners.ScannerError, match="refused"):
        scanners.check_read_only(sql)


@pytest.mark.parametrize(
    "sql", ["WITH x AS (SELECT 1) SELECT * FROM x", "FROM bars LIMIT 1", "EXPLAIN SELECT 1",
            "-- why\nexplain analyze (select 1)"])
def test_select_and_explain_pass_the_guard_and_run(tmp_path: Path, sql: str) -> None:
    con = queries.connect(tmp_path)
    relation = scanners.run(con, sql)  # not allow_writes: the guard checks it first
    assert relation is not None and len(relation.columns) >= 1
    assert isinstance(relation.fetchall(), list)
