"""The edges a nightly operator meets first (issue 11): each bad input is one line naming the culprit and the
documented exit code, never a traceback; a data dir that does not exist is an error for every read verb;
SIGTERM ends a run like Ctrl-C; the help says what the exit codes and the simulator's pacing are.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from harvester.cli import Exit, main
from harvester.cli.sim import SIM_PORT
from harvester.simulated import SIM_PACING_SCALE
from tests.helpers.gateways import SIM_NOW
from tests.helpers.warehouses import contracts_rows, minute_bars, write_bars, write_table

HARVEST = str(Path(sys.executable).with_name("harvest"))
IB_PORTS = {7496, 7497, 4001, 4002}  # TWS live/paper, IB Gateway live/paper


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env=env)


def one_line(result, code: int = Exit.BAD_INPUT) -> str:
    """The result ended with `code` and exactly one stderr line and no traceback; that line."""
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    message = result.stderr.strip()
    assert message.startswith("harvest: ") and "\n" not in message and "Traceback" not in message, message
    return message


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("edges")
    write_bars(data_dir, minute_bars(["AAA"], "2024-06-03", "2024-06-04"), "1 min")
    write_table(data_dir, "contracts", contracts_rows(["AAA"]))
    return data_dir


@pytest.fixture
def universe(tmp_path: Path) -> Path:
    path = tmp_path / "u.csv"
    path.write_text("symbol\nAAPL\n")
    return path


# ---- item 8: one line, exit 2, for the nightly job's and the simulator's bad input ---------------------------

def test_an_unusable_data_dir_with_sim_is_one_line_and_the_journal_stays_out_of_it(universe):
    message = one_line(run("--universe", str(universe), "--sim", "--sim-now", SIM_NOW, "--data-dir", "/proc"))
    assert "/proc" in message


def test_sim_journal_goes_where_asked_never_into_the_data_dir(tmp_path, universe):
    data, journal = tmp_path / "data", tmp_path / "logs" / "sim.jsonl"
    result = run("--universe", str(universe), "--sim", "--sim-now", SIM_NOW, "--data-dir", str(data),
                 "--start", "2024-06-03", "--sim-journal", str(journal))
    assert result.exit_code == 0, result.output + result.stderr
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [e["outcome"] for e in entries if e["kind"] == "historical"] == ["bars"]
    assert not [p for p in data.rglob("*journal*.jsonl")]
    assert one_line(run("--universe", str(universe), "--sim-journal", str(journal))).endswith("--sim-journal needs --sim")


def test_sim_now_garbage_is_one_line(tmp_path, universe):
    message = one_line(run("--universe", str(universe), "--sim", "--sim-now", "garbage",
                           "--data-dir", str(tmp_path / "d")))
    assert "--sim-now garbage" in message and not (tmp_path / "d").exists()


def test_sim_replay_with_an_empty_cell_is_one_line_naming_file_line_and_column(tmp_path):
    replay = tmp_path / "bad.csv"
    replay.write_text("symbol,date,open,high,low,close,volume,bar_count\n"
                      "AAPL,2024-06-03,1,2,0.5,1.5,100,\nAAPL,2024-06-04,1,2,0.5,1.5,100,3\n")
    message = one_line(run("sim", "--port", "0", "--replay", str(replay)))
    assert f"{replay}:2: column bar_count is empty" in message and "nan" not in message


def test_sim_on_a_busy_port_is_one_line_naming_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = one_line(run("sim", "--port", str(port)))
    assert f"--port {port}" in message and "Errno" not in message


def test_sim_bad_fault_option_is_one_line_without_a_usage_block():
    assert "SYMBOL=KIND" in one_line(run("sim", "--port", "0", "--error-symbol", "x"))


# ---- item 9: the universe file is read to a cap, whatever st_size says ----------------------------------------

def test_a_device_as_universe_is_refused_after_the_cap(tmp_path):
    message = one_line(run("--universe", "/dev/zero", "--data-dir", str(tmp_path / "d"), "--plan"))
    assert "/dev/zero: file larger than 16 MiB" in message


# ---- item 12: a data dir that does not exist is an error for every read verb ----------------------------------

READ_VERBS = [("status",), ("query", "SELECT count(*) FROM bars"), ("compact",), ("plot", "coverage"),
              ("sql-init",)]


@pytest.mark.parametrize("verb", READ_VERBS, ids=[v[0] for v in READ_VERBS])
def test_every_read_verb_refuses_a_data_dir_that_does_not_exist(tmp_path, verb):
    typo = tmp_path / "typo"
    outputs = ("--output", str(tmp_path / "out.file")) if verb[0] in ("plot", "sql-init") else ()
    message = one_line(run(*verb, *outputs, "--data-dir", str(typo)))
    assert f"{typo}: does not exist" in message or f"{typo}: no such folder" in message
    assert not typo.exists() and not (tmp_path / "out.file").exists()


@pytest.mark.parametrize("where", ["option", "group option"])
def test_an_empty_data_dir_is_refused_never_the_current_directory(where):
    args = ("status", "--data-dir", "") if where == "option" else ("--data-dir", "", "status")
    assert "data_dir is empty" in one_line(run(*args))


def test_a_file_as_data_dir_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    assert "is not a folder" in one_line(run("status", "--data-dir", str(tmp_path / "f")))


def test_an_existing_empty_folder_is_an_empty_warehouse(tmp_path):
    result = run("status", "--data-dir", str(tmp_path))
    assert result.exit_code == 0 and "empty warehouse" in result.output


# ---- item 14: SIGTERM is handled as Ctrl-C ---------------------------------------------------------------------

def test_sigterm_ends_a_harvest_like_ctrl_c_with_143_and_one_line(tmp_path, universe):
    """A harvest paced at IB's real windows waits long enough between requests to be terminated mid-run."""
    data = tmp_path / "data"
    proc = subprocess.Popen([HARVEST, "--universe", str(universe), "--sim", "--sim-now", SIM_NOW, "--data-dir",
                             str(data), "--bar-size", "1 hour", "--start", "2022-01-01", "--pacing-scale", "1"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    staging = data / "_staging"
    try:
        while proc.poll() is None and not (staging.is_dir() and any(staging.iterdir())):
            try:
                proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == Exit.TERMINATED == 143, err
    lines = [line for line in err.splitlines() if line.startswith("harvest: ")]
    assert lines == ["harvest: terminated (SIGTERM); answers already staged are committed by the next run"], err
    assert "Traceback" not in err


# ---- item 20: small things ----------------------------------------------------------------------------------

def test_dash_h_is_help_and_help_lists_every_exit_code_and_the_sim_scale():
    short, long = run("-h"), run("--help")
    assert short.exit_code == long.exit_code == 0 and short.output == long.output
    text = " ".join(long.output.split())
    assert "130 interrupted" in text and "143 terminated (SIGTERM)" in text
    assert f"{SIM_PACING_SCALE:g}× IB's windows" in text
    assert run("sim", "-h").exit_code == 0


def test_harvest_sim_defaults_to_a_port_no_ib_product_uses():
    option = next(p for p in main.commands["sim"].params if p.name == "port")
    assert option.default == SIM_PORT and SIM_PORT not in IB_PORTS


def test_the_table_says_how_many_rows_it_cut(warehouse):
    result = run("query", "SELECT * FROM range(1000)", "--data-dir", str(warehouse))
    assert result.exit_code == 0
    assert result.output.splitlines()[-1].startswith("(200 of 1,000 rows shown, 800 cut;")


def test_pivot_is_a_read(warehouse):
    result = run("query", "PIVOT bars ON what_to_show USING count(*) GROUP BY symbol", "--format", "csv",
                 "--data-dir", str(warehouse))
    assert result.exit_code == 0, result.stderr
    assert result.output.splitlines() == ["symbol,TRADES", "AAA,780"]


def test_a_5000_character_symbol_is_cut_in_the_message(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("symbol\n" + "A" * 5000 + "\n")
    message = one_line(run("--universe", str(path), "--data-dir", str(tmp_path / "d")))
    assert len(message) < 300 and "(5,000 characters)" in message and message.endswith("≤12)")


def test_sql_init_script_keeps_duckdb_spilling_outside_the_working_directory(warehouse, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("sql-init", "--data-dir", str(warehouse))
    assert result.exit_code == 0, result.stderr
    cli = duckdb.connect()
    cli.execute((tmp_path / "harvest_init.sql").read_text())
    ((spill,),) = cli.execute("SELECT current_setting('temp_directory')").fetchall()
    assert spill and not Path(spill).resolve().is_relative_to(tmp_path.resolve())
    assert sorted(os.listdir(tmp_path)) == ["harvest_init.sql", "harvest_init.sql.sessions.parquet"]
