"""`harvest query | status | sql-init | plot` through click's CliRunner on a real test warehouse."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from harvester.cli import main
from tests.helpers.warehouses import (
    contracts_rows,
    coverage_row,
    daily_from_minutes,
    minute_bars,
    sessions,
    write_bars,
    write_table,
)

SYMBOLS = ["AAA", "BBB"]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("cli")
    minutes = minute_bars(SYMBOLS, "2024-06-03", "2024-06-14")
    write_bars(data_dir, minutes, "1 min")
    write_bars(data_dir, daily_from_minutes(minutes), "1 day")
    write_table(data_dir, "contracts", contracts_rows(SYMBOLS))
    s = sessions("2024-06-03", "2024-06-14").reset_index(drop=True)
    write_table(data_dir, "coverage", [
        coverage_row(1000, "1 day", s.open_ts[0], s.close_ts[9], bars=10),
        coverage_row(1001, "1 day", s.open_ts[0], s.close_ts[3], bars=4),
        coverage_row(1001, "1 day", s.open_ts[5], s.close_ts[9], bars=5),
        coverage_row(1000, "1 min", s.open_ts[0], s.close_ts[9], bars=3900),
    ])
    (data_dir / "warehouse.json").write_text(json.dumps({"format": 1, "simulated": True, "gateway": "sim:1"}))
    return data_dir


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_query_scanner_with_params_as_csv(warehouse: Path) -> None:
    code, out, _ = run("query", "daily_from_minutes", "--param", "start=2024-06-05", "--param", "end=2024-06-07",
                       "--format", "csv", "--data-dir", str(warehouse))
    assert code == 0
    frame = pd.read_csv(__import__("io").StringIO(out))
    assert len(frame) == 2 * len(SYMBOLS) and set(frame.session_date) == {"2024-06-05", "2024-06-06"}


@pytest.mark.parametrize("fmt", ["json", "parquet", "table"])
def test_query_sql_text_in_each_format(warehouse: Path, tmp_path: Path, fmt: str) -> None:
    target = tmp_path / f"out.{fmt}"
    sql = "SELECT symbol, count(*) AS n FROM bars WHERE bar_size = '1 min' GROUP BY symbol ORDER BY symbol"
    code, _, err = run("query", sql, "--format", fmt, "--output", str(target), "--data-dir", str(warehouse))
    assert code == 0, err
    if fmt == "json":
        assert [r["symbol"] for r in json.loads(target.read_text())] == SYMBOLS
    elif fmt == "parquet":
        assert list(pd.read_parquet(target).n) == [390 * 10] * 2
    else:
        assert "AAA" in target.read_text() and "3900" in target.read_text()


@pytest.mark.parametrize("sql", [
    "COPY (SELECT * FROM bars) TO '{d}/bars/evil.parquet'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "ATTACH '{d}/x.db'",
    "SET enable_external_access = true",
])
def test_query_refuses_writes_and_outside_reads(warehouse: Path, sql: str) -> None:
    code, _, err = run("query", sql.format(d=warehouse), "--data-dir", str(warehouse))
    assert code == 2
    assert err.startswith("harvest: ") and err.count("\n") == 1
    assert not (warehouse / "bars" / "evil.parquet").exists()


def test_query_with_allow_writes_may_copy(warehouse: Path, tmp_path: Path) -> None:
    target = tmp_path / "copy.csv"
    code, _, err = run("query", f"COPY (SELECT 1 AS x) TO '{target}'", "--allow-writes", "--data-dir", str(warehouse))
    assert code == 0, err
    assert target.read_text().splitlines() == ["x", "1"]


def test_query_bad_param_and_bad_sql_exit_2(warehouse: Path) -> None:
    assert run("query", "gap_ups", "--param", "nope=1", "--data-dir", str(warehouse))[0] == 2
    assert run("query", "gap_ups", "--param", "novalue", "--data-dir", str(warehouse))[0] == 2
    assert run("query", "SELEC 1", "--data-dir", str(warehouse))[0] == 2
    assert run("query", "SELECT * FROM no_such_view", "--data-dir", str(warehouse))[0] == 2


def test_status_json_and_table(warehouse: Path) -> None:
    code, out, _ = run("status", "--json", "--data-dir", str(warehouse))
    assert code == 0
    report = json.loads(out)
    assert report["simulated"] is True
    rows = {r["bar_size"]: r for r in report["bar_sizes"]}
    assert rows["1 day"]["series"] == 2 and rows["1 day"]["missing_sessions"] == 1
    assert rows["1 day"]["bars"] == 20 and rows["1 min"]["bars"] == 2 * 390 * 10
    assert rows["1 min"]["files"] == 1 and rows["1 min"]["bytes"] > 0
    code, out, _ = run("status", "--data-dir", str(warehouse))
    assert code == 0 and "SIMULATED" in out and "1 min" in out


def test_status_of_an_empty_warehouse(tmp_path: Path) -> None:
    code, out, _ = run("status", "--data-dir", str(tmp_path))
    assert code == 0 and "empty warehouse" in out


def test_sql_init_writes_a_script(warehouse: Path, tmp_path: Path) -> None:
    import duckdb

    code, out, _ = run("sql-init", "--output", str(tmp_path / "init.sql"), "--data-dir", str(warehouse))
    assert code == 0 and "duckdb -init" in out
    con = duckdb.connect()
    con.execute((tmp_path / "init.sql").read_text())
    assert con.execute("SELECT count(*) FROM gaps").fetchall() == [(1,)]


@pytest.mark.parametrize("args", [("coverage",), ("candles", "--symbol", "AAA"),
                                  ("candles", "--symbol", "BBB", "--bar-size", "1 min", "--start", "2024-06-05",
                                   "--end", "2024-06-06")])
def test_plot_writes_a_png(warehouse: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    target = tmp_path / "p.png"
    code, _, err = run("plot", *args, "--output", str(target), "--data-dir", str(warehouse))
    assert code == 0, err
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and target.stat().st_size > 5_000


def test_plot_of_nothing_is_a_one_line_error(warehouse: Path, tmp_path: Path) -> None:
    code, _, err = run("plot", "candles", "--symbol", "ZZZ", "--output", str(tmp_path / "x.png"),
                       "--data-dir", str(warehouse))
    assert code == 2 and "no 1 day bars stored for ZZZ" in err


def test_coverage_grid_marks_the_missing_session(warehouse: Path) -> None:
    from queries.plot import COVERED, MISSING, coverage_grid

    labels, days, grid = coverage_grid(warehouse, "1 day")
    assert labels == ["AAA", "BBB"], "one whatToShow in the grid: not repeated on every label"
    assert (grid[0] == COVERED).all()
    assert [str(d) for d, state in zip(days, grid[1]) if state == MISSING] == [str(
        sessions("2024-06-03", "2024-06-14").session_date.iloc[4])]
    assert len(days) == 10


def test_a_long_coverage_map_is_drawn_narrower_but_never_hides_a_missing_session() -> None:
    import numpy as np

    from queries.plot import COVERED, EMPTY, MISSING, fit_columns

    grid = np.full((2, 10_001), COVERED, dtype=np.int8)
    grid[0, 5_000], grid[1, 10_000] = MISSING, EMPTY
    shown, step = fit_columns(grid, 2_400)
    assert step == 5 and shown.shape == (2, 2_001)
    assert list(np.flatnonzero(shown[0] != COVERED)) == [1_000] and shown[0, 1_000] == MISSING
    assert list(np.flatnonzero(shown[1] != COVERED)) == [2_000] and shown[1, 2_000] == EMPTY
    same, one = fit_columns(grid[:, :2_400], 2_400)
    assert one == 1 and (same == grid[:, :2_400]).all()


def test_query_list_shows_every_scanner_with_its_parameters() -> None:
    code, out, _ = run("query", "--list")
    assert code == 0
    for name in ("new_52w_highs", "gap_ups", "unusual_volume", "daily_from_minutes", "coverage_report"):
        assert f"{name}:" in out
    assert "$min_gap = 0.02" in out
    assert run("query")[0] == 2
