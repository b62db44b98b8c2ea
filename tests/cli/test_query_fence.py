"""`harvest query` fenced and streaming, and every output edge one line and exit 2 (issue 18, items 5-7)."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner

import queries
from harvester.cli import main
from tests.helpers.warehouses import (
    contracts_rows,
    coverage_row,
    minute_bars,
    sessions,
    write_bars,
    write_table,
)

SECRET = "the-secret-is-42"


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("fence") / "it's a warehouse"  # a quote and spaces in every path
    data_dir.mkdir()
    write_bars(data_dir, minute_bars(["AAA", "BBB"], "2024-06-03", "2024-06-05"), "1 min")
    write_table(data_dir, "contracts", contracts_rows(["AAA", "BBB"]))
    s = sessions("2024-06-03", "2024-06-05").reset_index(drop=True)
    write_table(data_dir, "coverage", [coverage_row(1000, "1 min", s.open_ts[0], s.close_ts[0]),
                                       coverage_row(1000, "1 min", s.open_ts[2], s.close_ts[2])])
    return data_dir


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def one_line_exit_2(code: int, err: str) -> bool:
    return code == 2 and err.startswith("harvest: ") and err.count("\n") == 1


@pytest.fixture
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the tool's private directories go (the system temp dir, redirected), to see them removed."""
    temp = tmp_path / "system-tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


def test_query_cannot_read_a_secret_in_dot_tmp_here_or_in_home(warehouse: Path, tmp_path: Path, private_dirs: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    for place in (home, work):
        (place / ".tmp").mkdir(parents=True)
        (place / ".tmp" / "secret.txt").write_text(SECRET)
    monkeypatch.setenv("HOME", str(home))
    for cwd in (work, home):
        monkeypatch.chdir(cwd)
        for path in (".tmp/secret.txt", str(cwd / ".tmp" / "secret.txt"), "~/.tmp/secret.txt"):
            code, out, err = run("query", f"SELECT content FROM read_text('{path}')", "--data-dir", str(warehouse))
            assert one_line_exit_2(code, err) and SECRET not in out + err, (cwd, path, out, err)
    code, out, err = run("query", "SELECT current_setting('allowed_directories') AS a, "
                         "current_setting('temp_directory') AS t", "--format", "json", "--data-dir", str(warehouse))
    assert code == 0, err
    (settings,) = json.loads(out)
    private = settings["t"]
    assert Path(private).parent == private_dirs and Path(private).name.startswith(".harvest-query-")
    assert sorted(settings["a"]) == sorted([f"{warehouse}/", f"{private}/"])
    assert list(private_dirs.iterdir()) == []  # the private directory is gone afterwards
    assert not (work / ".tmp" / "harvest").exists() and sorted(os.listdir(work / ".tmp")) == ["secret.txt"]


def test_files_are_duckdbs_own_output_byte_for_byte(warehouse: Path, tmp_path: Path) -> None:
    sql = "SELECT * FROM bars ORDER BY symbol, ts"
    as_text = "SELECT * REPLACE (strftime(timezone('UTC', ts), '%Y-%m-%dT%H:%M:%SZ') AS ts) FROM bars ORDER BY symbol, ts"
    con = queries.connect(warehouse)
    for fmt, options in (("csv", "FORMAT csv, HEADER true"), ("json", "FORMAT json, ARRAY true")):
        reference = tmp_path / f"reference.{fmt}"
        con.execute(f"COPY ({as_text}) TO {queries.sql_literal(reference)} ({options})")
        target = tmp_path / f"out.{fmt}"
        code, _, err = run("query", sql, "--format", fmt, "--output", str(target), "--data-dir", str(warehouse))
        assert code == 0, err
        assert target.read_bytes() == reference.read_bytes()
        code, out, _ = run("query", sql, "--format", fmt, "--data-dir", str(warehouse))
        assert code == 0 and out.encode() == reference.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["out.csv", "out.json", "reference.csv", "reference.json"]


def test_bar_times_come_out_in_utc_with_z(warehouse: Path) -> None:
    """Issue 11 item 18: `ts` is an instant; CSV and JSON say so the way IB users read it, `Z`."""
    sql = ("SELECT ts, session_date, TIMESTAMPTZ '2024-06-03 13:30:00.25+00' AS fraction FROM bars "
           "WHERE symbol = 'AAA' ORDER BY ts LIMIT 1")
    code, out, err = run("query", sql, "--format", "csv", "--data-dir", str(warehouse))
    assert code == 0, err
    assert out.splitlines() == ["ts,session_date,fraction", "2024-06-03T13:30:00Z,2024-06-03,2024-06-03T13:30:00.250000Z"]
    code, out, err = run("query", sql, "--format", "json", "--data-dir", str(warehouse))
    assert code == 0, err
    assert json.loads(out) == [{"ts": "2024-06-03T13:30:00Z", "session_date": "2024-06-03",
                                "fraction": "2024-06-03T13:30:00.250000Z"}]


def test_integers_lists_and_install_come_out_as_written(warehouse: Path) -> None:
    sql = "SELECT sum(bar_count) AS n, [1, 2] AS l FROM bars"  # sum of BIGINT is a HUGEINT
    total = int(minute_bars(["AAA", "BBB"], "2024-06-03", "2024-06-05").bar_count.sum())
    code, out, _ = run("query", sql, "--format", "csv", "--data-dir", str(warehouse))
    assert code == 0 and out.splitlines() == ["n,l", f'{total},"[1, 2]"']
    code, out, _ = run("query", sql, "--data-dir", str(warehouse))
    assert code == 0 and f"{total}" in out and f"{total}.0" not in out and "[1, 2]" in out
    code, out, _ = run("query", sql, "--format", "json", "--data-dir", str(warehouse))
    assert json.loads(out) == [{"n": total, "l": [1, 2]}]
    code, _, err = run("query", "INSTALL httpfs", "--data-dir", str(warehouse))
    assert one_line_exit_2(code, err) and "refused INSTALL statement" in err


@pytest.mark.parametrize(("args", "message"), [
    (("SELECT 1 AS x", "--format", "csv", "--output", "/nonexistent/x.csv"), "directory /nonexistent does not exist"),
    (("SELECT 1 AS a, 2 AS a", "--format", "parquet", "--output", "{tmp}/dup.parquet"), "column 'a' appears twice"),
    (("SELECT 1 AS a, 2 AS a", "--format", "json"), "column 'a' appears twice"),
    (("SELECT 1 AS x", "--format", "csv", "--output", "{tmp}"), "is a directory"),
    (("SELECT 1 AS x", "--format", "parquet"), "--format parquet needs --output FILE"),
])
def test_every_output_edge_is_one_line_and_exit_2(warehouse: Path, tmp_path: Path, args, message) -> None:
    code, _out, err = run("query", *(a.format(tmp=tmp_path) for a in args), "--data-dir", str(warehouse))
    assert one_line_exit_2(code, err) and message in err, err
    assert os.listdir(tmp_path) == []  # nothing half-written left behind


@pytest.mark.parametrize("verb", [("sql-init",), ("plot", "coverage")])
def test_other_verbs_outputs_into_a_missing_directory_are_one_line(warehouse: Path, verb) -> None:
    code, _, err = run(*verb, "--output", "/nonexistent/out.file", "--data-dir", str(warehouse))
    assert one_line_exit_2(code, err) and "/nonexistent does not exist" in err


def test_sql_init_quotes_every_path_and_bar_files_are_real_files(warehouse: Path, tmp_path: Path) -> None:
    (tmp_path / "it's").mkdir()
    script = tmp_path / "it's" / "init.sql"
    code, _out, err = run("sql-init", "--output", str(script), "--data-dir", str(warehouse))
    assert code == 0, err
    cli = duckdb.connect()
    cli.execute(script.read_text())  # what `duckdb -init` parses
    files = [row[0] for row in cli.execute("SELECT file_name FROM bar_files").fetchall()]
    assert files and all(Path(f).is_file() and str(warehouse) in f for f in files)
    assert cli.execute("SELECT count(*) FROM gaps").fetchall() == [(1,)]
    assert pd.read_csv(io.StringIO(run("query", "SELECT count(*) AS n FROM bars", "--format", "csv",
                                       "--data-dir", str(warehouse))[1])).n[0] == 2 * 3 * 390
