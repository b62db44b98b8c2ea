"""`harvest --universe ...` end to end: options, exit codes, --sim, --plan, and a SIGKILLed run resumed."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from ib_insync import IB

from harvester.cli import main
from harvester.cli.harvest import ProgressReport
from harvester.ib.scheduler import Progress
from harvester.ibrules import PacingLimits
from harvester.model import SeriesKey
from harvester.warehouse.claims import Claims, Me
from harvester.warehouse.store import Warehouse
from tests.helpers.gateways import SIM_NOW, next_client_id
from tests.helpers.warehouses import snapshot_files

HARVEST = str(Path(sys.executable).with_name("harvest"))


@pytest.fixture
def universe(tmp_path: Path) -> Path:
    path = tmp_path / "universe.csv"
    path.write_text("Symbol,Security\nAAPL,Apple\nMSFT,Microsoft\n")
    return path


def invoke(*args: str, env: dict | None = None):
    """`harvest ARGS` in this process; a --sim run keeps its simulator's journal beside the data dir."""
    args = list(args)
    if "--sim" in args and "--data-dir" in args and "--sim-journal" not in args:
        args += ["--sim-journal", str(journal_file(Path(args[args.index("--data-dir") + 1])))]
    return CliRunner().invoke(main, args, env=env)


def journal_file(data_dir: Path) -> Path:
    """Where these tests keep the in-process simulator's journal: beside the warehouse, never inside it."""
    return data_dir.with_name(data_dir.name + ".sim-journal.jsonl")


def one_line_error(result) -> str:
    message = result.stderr.strip()
    assert "\n" not in message, message
    return message


def sim_journal(data_dir: Path) -> list[dict]:
    path = journal_file(data_dir)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def stored(data_dir: Path) -> list[tuple]:
    return duckdb.sql(
        f"SELECT con_id, ts, open, high, low, close, volume, wap, bar_count "
        f"FROM read_parquet({snapshot_files(data_dir)}, hive_partitioning=false) ORDER BY con_id, ts"
    ).fetchall()


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["--bar-size", "7 min"], "bar size"),
        (["--what", "VOLUME"], "VOLUME"),
        (["--start", "2024-02-30"], "--start"),
        (["--start", "2024-05-01", "--end", "2024-04-01"], "start"),
        (["--end", "2999-01-01"], "future"),
        (["--port", "-1"], "--port"),
        (["--client-id", "-3"], "--client-id"),
        (["--pacing-scale", "0"], "--pacing-scale"),
        (["--bogus"], "--bogus"),
    ],
)
def test_bad_options_exit_2_with_one_line_and_touch_nothing(tmp_path, universe, args, culprit):
    data = tmp_path / "data"
    result = invoke("--universe", str(universe), "--data-dir", str(data), "--sim", *args)
    assert result.exit_code == 2
    assert culprit in one_line_error(result)
    assert not data.exists()


@pytest.mark.parametrize(
    ("content", "culprit"),
    [
        ("name,sector\nApple,Tech\n", ":1:"),
        ("", "empty"),
        ("symbol\nAAPL\n../../etc\n", ":3:"),
        ("symbol,currency\nAAPL,USD\nAAPL,EUR\n", ":3:"),
    ],
)
def test_bad_universe_exits_2_naming_the_file_and_line(tmp_path, content, culprit):
    path = tmp_path / "u.csv"
    path.write_text(content)
    result = invoke("--universe", str(path), "--data-dir", str(tmp_path / "data"), "--sim")
    assert result.exit_code == 2
    message = one_line_error(result)
    assert "u.csv" in message and culprit in message
    assert not (tmp_path / "data").exists()


def test_missing_universe_file(tmp_path):
    result = invoke("--universe", str(tmp_path / "nope.csv"), "--sim")
    assert result.exit_code == 2 and "nope.csv" in one_line_error(result)


def test_options_without_universe_are_an_error(tmp_path):
    result = invoke("--sim", "--data-dir", str(tmp_path / "d"))
    assert result.exit_code == 2 and "--universe" in one_line_error(result)


def test_bad_config_file_exits_2(tmp_path, universe):
    config = tmp_path / "harvest.toml"
    config.write_text("port = 'seven'\n")
    result = invoke("--universe", str(universe), env={"HARVEST_CONFIG": str(config)})
    assert result.exit_code == 2 and "port" in one_line_error(result)


def test_gateway_unreachable_exits_3(tmp_path, universe):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = invoke("--universe", str(universe), "--port", str(port), "--data-dir", str(tmp_path / "d"))
    assert result.exit_code == 3
    assert f"127.0.0.1:{port}" in one_line_error(result)


def test_client_id_in_use_exits_5(sim_gateway, tmp_path, universe):
    client_id = next_client_id()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # ib_insync looks its loop up with get_event_loop()
    holder = IB()
    loop.run_until_complete(holder.connectAsync("127.0.0.1", sim_gateway.port, clientId=client_id, timeout=10))
    try:
        result = invoke("--universe", str(universe), "--port", str(sim_gateway.port), "--client-id", str(client_id),
                        "--data-dir", str(tmp_path / "d"))
    finally:
        holder.disconnect()
        loop.close()
        asyncio.set_event_loop(None)
    assert result.exit_code == 5
    assert f"client id {client_id} is already in use" in one_line_error(result)


def test_series_another_live_job_holds_are_left_to_it_and_not_fetched(tmp_path, universe):
    data = tmp_path / "data"
    args = ["--universe", str(universe), "--sim", "--data-dir", str(data)]
    assert invoke(*args, "--sim-now", SIM_NOW).exit_code == 0
    warehouse = Warehouse.open(data, simulated=True)
    con_ids = warehouse.contracts()["con_id"].tolist()
    other = Claims(warehouse.tables, Me("nightly-elsewhere", "other-host", 4242, 1.0))  # alive until it expires
    other.take([SeriesKey(c, "1 day", "TRADES", True) for c in con_ids])
    journal = len(sim_journal(data))

    result = invoke(*args, "--sim-now", "2024-06-18T20:00:00+00:00")  # two sessions later: work to do
    assert result.exit_code == 0, result.output + result.stderr
    assert "left to another harvest: 2 series" in result.output and "nightly-elsewhere" in result.output
    assert [e for e in sim_journal(data)[journal:] if e["kind"] == "historical"] == []


def test_sim_harvest_then_rerun_fetches_nothing(tmp_path, universe):
    data = tmp_path / "data"
    args = ["--universe", str(universe), "--sim", "--sim-now", SIM_NOW, "--data-dir", str(data)]
    first = invoke(*args)
    assert first.exit_code == 0, first.output + first.stderr
    assert "series complete: 2/2" in first.output
    journal = sim_journal(data)
    assert [e["outcome"] for e in journal if e["kind"] == "historical"] == ["bars", "bars"]
    assert json.loads((data / "warehouse.json").read_text())["simulated"] is True

    second = invoke(*args)
    assert second.exit_code == 0
    assert len([e for e in sim_journal(data) if e["kind"] == "historical"]) == 2


def test_failed_series_exit_1_and_are_listed(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("symbol\nAAPL\nNOPEX\n")
    result = invoke("--universe", str(path), "--sim", "--sim-now", SIM_NOW, "--data-dir", str(tmp_path / "d"))
    assert result.exit_code == 1
    assert "NOPEX: unknown contract" in result.output


def test_plan_prints_count_and_eta_and_fetches_nothing(tmp_path, universe):
    data = tmp_path / "data"
    result = invoke("--universe", str(universe), "--sim", "--sim-now", SIM_NOW, "--data-dir", str(data),
                    "--bar-size", "1 hour", "--start", "2023-01-01", "--plan")
    assert result.exit_code == 0, result.stderr
    assert "historical requests" in result.output and "ETA" in result.output
    assert not [e for e in sim_journal(data) if e["kind"] == "historical"]


def test_plan_from_head_estimates_says_its_assumption_the_scale_and_the_small_bar_horizon(tmp_path, universe):
    """Issue 11 item 15: no more "0 requests, ETA 0" for intraday bars from their head."""
    result = invoke("--universe", str(universe), "--sim", "--sim-now", SIM_NOW, "--data-dir", str(tmp_path / "d"),
                    "--bar-size", "1 min", "--bar-size", "5 secs", "--plan")
    assert result.exit_code == 0, result.stderr
    planned = int(result.output.split("plan: ")[1].split()[0])
    assert planned > 0, result.output
    assert "assuming 365 days of history" in result.output
    assert "at pacing scale 0.005" in result.output and "under IB's own limits" in result.output
    assert "six months" in result.output


def test_plan_needs_no_gateway_once_the_warehouse_knows_the_contracts(tmp_path, universe):
    data = tmp_path / "data"
    first = invoke("--universe", str(universe), "--sim", "--sim-now", SIM_NOW, "--data-dir", str(data),
                   "--start", "2024-06-03")
    assert first.exit_code == 0, first.stderr
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    plan = invoke("--universe", str(universe), "--data-dir", str(data), "--port", str(port), "--plan",
                  "--start", "2024-06-03")
    assert plan.exit_code == 0, plan.output + plan.stderr
    assert "from the warehouse alone" in plan.output and "ETA under IB's pacing limits" in plan.output
    assert int(plan.output.split("plan: ")[1].split()[0]) >= 1, "the sessions since the sim's now are missing"
    unknown = invoke("--universe", str(universe), "--data-dir", str(tmp_path / "new"), "--port", str(port), "--plan")
    assert unknown.exit_code == 3, "contracts never qualified: only the gateway can tell"


def test_simulated_bars_never_enter_a_real_warehouse(tmp_path, universe):
    data = tmp_path / "data"
    Warehouse.open(data, simulated=False).close()
    result = invoke("--universe", str(universe), "--sim", "--sim-now", SIM_NOW, "--data-dir", str(data))
    assert result.exit_code == 2 and "simulated" in one_line_error(result)


KILL_ARGS = ["--bar-size", "1 hour", "--start", "2022-01-01", "--sim", "--sim-now", SIM_NOW]
KILL_SYMBOLS = "symbol\nAAPL\nMSFT\nJPM\nXOM\nKO\nPEP\n"


def _run_cli(cwd: Path, data: Path, *extra: str) -> subprocess.Popen:
    (cwd / "harvest.toml").write_text("commit_every_s = 0.3\ntarget_bars = 300\n")
    (cwd / "u.csv").write_text(KILL_SYMBOLS)
    return subprocess.Popen([HARVEST, "--universe", "u.csv", "--data-dir", str(data), *KILL_ARGS, *extra],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_sigkilled_run_resumes_with_no_duplicate_and_no_missing_bar(tmp_path):
    reference_dir, killed_dir = tmp_path / "ref", tmp_path / "killed"
    reference_dir.mkdir()
    killed_dir.mkdir()
    reference = _run_cli(reference_dir, reference_dir / "data", "--pacing-scale", "0.002")
    victim = _run_cli(killed_dir, killed_dir / "data", "--pacing-scale", "0.05")  # > 60 requests: waits 30 s
    coverage = killed_dir / "data" / "coverage" / "_delta_log"
    deadline = time.monotonic() + 90
    while not coverage.exists():  # a commit has happened: the kill lands mid-run, after durable progress
        assert time.monotonic() < deadline, "the harvest made no progress"
        with pytest.raises(subprocess.TimeoutExpired):
            victim.wait(timeout=0.05)
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    partial = stored(killed_dir / "data")

    assert reference.wait(timeout=120) == 0, reference.stderr.read().decode()
    resumed = _run_cli(killed_dir, killed_dir / "data", "--pacing-scale", "0.002")
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read().decode()
    expected = stored(reference_dir / "data")
    assert 0 < len(partial) < len(expected)
    assert stored(killed_dir / "data") == expected


def test_settings_layers_defaults_file_environment_options(tmp_path):
    from harvester.settings import ConfigError, resolve_settings

    assert resolve_settings(environ={}, cwd=tmp_path).port == 7497
    assert resolve_settings(environ={}, cwd=tmp_path).client_id == 17
    (tmp_path / "harvest.toml").write_text("[harvest]\nport = 4002\nclient_id = 9\nhost = 'gw'\n")
    from_file = resolve_settings(environ={}, cwd=tmp_path)
    assert (from_file.port, from_file.client_id, from_file.host) == (4002, 9, "gw")
    from_env = resolve_settings(environ={"HARVEST_PORT": "4001", "HARVEST_DATA_DIR": "/srv/bars"}, cwd=tmp_path)
    assert from_env.port == 4001 and from_env.data_dir == "/srv/bars" and from_env.client_id == 9
    from_cli = resolve_settings({"port": 7496, "client_id": None}, environ={"HARVEST_PORT": "4001"}, cwd=tmp_path)
    assert from_cli.port == 7496 and from_cli.client_id == 9
    (tmp_path / "harvest.toml").write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        resolve_settings(environ={}, cwd=tmp_path)


@pytest.mark.slow
def test_sp500_daily_backfill_with_sim_then_nothing(tmp_path):
    """The README's demo: every qualified symbol gets daily bars, zero pacing violations; a rerun asks nothing."""
    universe = Path(__file__).resolve().parents[2] / "universes" / "sp500.csv"
    data = tmp_path / "data"
    command = [HARVEST, "--universe", str(universe), "--sim", "--data-dir", str(data), "--sim-journal",
               str(journal_file(data))]
    first = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    symbols = len([line for line in universe.read_text().splitlines() if line and not line.startswith("#")]) - 1
    assert f"series complete: {symbols}/{symbols}" in first.stdout
    journal = sim_journal(data)
    historical = [e for e in journal if e["kind"] == "historical"]
    assert len(historical) == symbols and {e["outcome"] for e in historical} == {"bars"}
    assert len({row[0] for row in stored(data)}) == symbols

    again = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert len([e for e in sim_journal(data) if e["kind"] == "historical"]) == symbols


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_progress_off_a_terminal_is_a_line_per_tenth_of_the_plan_with_the_window_s_time_left():
    """Issue 11 item 15: cron sees progress lines, and the time left is what the pacing window allows."""
    clock = iter(float(t) for t in range(1000)).__next__
    limits = PacingLimits(safety_s=0.0)
    out = _Stream(tty=False)
    report = ProgressReport(limits, stream=out, clock=clock, every_s=10_000)
    for done in range(1, 131):  # 130 requests answered one a second
        report(Progress(planned=130, done=done, bars=done * 10))
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == [f"{n}/130" for n in (1, *range(13, 131, 13))]
    assert all(line.startswith("progress: ") for line in lines), "not a one-line error's 'harvest: '"
    assert lines[-1].endswith("0m00s left")
    fresh = ProgressReport(limits, stream=_Stream(tty=False), clock=iter([0.0, 1.0, 2.0]).__next__)
    fresh(Progress(planned=130, done=60))  # a full window answered at t = 1, 70 to go
    assert fresh.left_s(120, 60, 2.0) == 601.0 - 2.0, "the window, not the 1 s the first 60 took"
    assert fresh.left_s(130, 60, 2.0) == 1201.0 - 2.0, "ten more than a window wait for a second one"


def test_a_harvest_under_cron_prints_progress_lines(tmp_path):
    universe = tmp_path / "u.csv"
    universe.write_text("symbol\nAAPL\nMSFT\n")
    result = CliRunner().invoke(main, ["--universe", str(universe), "--sim", "--sim-now", SIM_NOW,
                                       "--data-dir", str(tmp_path / "data"), "--start", "2024-04-01",
                                       "--bar-size", "1 min"])
    assert result.exit_code == 0, result.output + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("progress: ")]
    counts = [tuple(map(int, line.split()[1].split("/"))) for line in lines]
    assert len(counts) >= 3 and counts[-1][0] == counts[-1][1], lines
    assert [done for done, _ in counts] == sorted({done for done, _ in counts}), "each line further on"
