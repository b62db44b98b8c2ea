"""Where the bars come from (issue 11 items 5-7): a bar size's alias is the same series as its name, a replay
serves only what its file holds, and a warehouse learns that it holds simulated bars from the gateway itself.
"""

from __future__ import annotations

import json
import socket
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import queries
from harvester.cli import Exit, main
from tests.helpers.gateways import SIM_NOW, next_client_id
from tests.helpers.reference import Span, harvest_with


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def one_line(result, code: int = Exit.BAD_INPUT) -> str:
    """The run ended with `code` and one stderr line, no traceback; that line."""
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
    message = result.stderr.strip()
    assert message.startswith("harvest: ") and "\n" not in message and "Traceback" not in message, message
    return message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def historical(journal: Path) -> list[dict]:
    """The simulator's answers to historical-bar requests, from its journal."""
    if not journal.exists():
        return []
    return [e for e in map(json.loads, journal.read_text().splitlines()) if e["kind"] == "historical"]


@pytest.fixture
def universe(tmp_path: Path) -> Path:
    path = tmp_path / "u.csv"
    path.write_text("symbol\nAAPL\n")
    return path


# ---- item 5: aliases are canonical names at the door ---------------------------------------------------------

@pytest.mark.parametrize(("alias", "name"), [("1W", "1 week"), ("1M", "1 month")])
def test_an_alias_is_stored_as_its_bar_size_and_the_rerun_asks_nothing(tmp_path, universe, alias, name):
    data, journal, again = tmp_path / "data", tmp_path / "first.jsonl", tmp_path / "again.jsonl"
    common = ("--universe", str(universe), "--sim", "--sim-now", SIM_NOW, "--data-dir", str(data),
              "--start", "2023-01-02")
    first = run(*common, "--bar-size", alias, "--bar-size", name, "--sim-journal", str(journal))
    assert first.exit_code == 0, first.output + first.stderr
    sent = historical(journal)
    assert [e["bar_size"] for e in sent] == [name], "one series, asked once, by its IB name"
    stored = queries.bars("AAPL", name, data_dir=data)
    assert len(stored) == sent[0]["bars"] > 0
    assert len(queries.bars("AAPL", alias, data_dir=data)) == len(stored)
    second = run(*common, "--bar-size", alias, "--sim-journal", str(again))
    assert second.exit_code == 0, second.output + second.stderr
    assert historical(again) == []


# ---- item 6: a replay serves only what its file holds ---------------------------------------------------------

def five_minute_rows(days: list[str]) -> pd.DataFrame:
    """MSFT's regular-hours 5-min bars on `days`, each with its own prices, volume and trades."""
    frames = []
    for day in days:
        ts = pd.date_range(f"{day} 13:30", periods=78, freq="5min", tz="UTC")  # June: New York is UTC-4
        n = np.arange(len(ts), dtype=float) + len(frames) * 100
        frames.append(pd.DataFrame({"symbol": "MSFT", "ts": ts, "open": 400 + n, "high": 402 + n, "low": 399 + n,
                                    "close": 401 + n, "volume": 1000 + n, "wap": 400.5 + n, "bar_count": 10}))
    return pd.concat(frames, ignore_index=True)


def test_a_replay_serves_what_its_file_holds_derives_exact_aggregates_and_refuses_the_rest(make_gateway, tmp_path):
    rows = five_minute_rows(["2024-06-10", "2024-06-11", "2024-06-13"])
    replay = tmp_path / "msft.csv"
    rows.to_csv(replay, index=False)
    gw = make_gateway(replay=str(replay))
    span = Span(("MSFT", "AAPL"), start=date(2024, 6, 10), end=date(2024, 6, 13))
    report = harvest_with(gw, tmp_path / "data", span, next_client_id(),
                          bar_sizes=("5 mins", "30 mins", "1 day", "1 min"))
    assert "AAPL" in report.failures, "a symbol the file lacks is unknown to the gateway, never generated"
    con = queries.connect(tmp_path / "data")
    assert con.execute("SELECT count(*) FROM bars WHERE symbol = 'AAPL'").fetchone() == (0,)

    five = queries.bars("MSFT", "5 mins", data_dir=tmp_path / "data")
    assert len(five) == len(rows) and list(five.volume) == list(rows.volume)
    expected = rows.assign(session_date=rows.ts.dt.tz_convert("America/New_York").dt.date)
    for size, key in (("30 mins", expected.ts.dt.floor("30min")), ("1 day", expected.session_date)):
        stored = queries.bars("MSFT", size, data_dir=tmp_path / "data")
        by = expected.groupby(key, sort=True)
        assert len(stored) == by.ngroups, size
        assert list(stored.volume) == list(by.volume.sum()), size
        assert list(stored.high) == list(by.high.max()) and list(stored.low) == list(by.low.min()), size
        assert list(stored.open) == list(by.open.first()) and list(stored.close) == list(by.close.last()), size

    minutes = [e for e in gw.journal.matching(kind="historical") if e["bar_size"] == "1 min"]
    assert minutes and {e["error_code"] for e in minutes} == {321}, "finer bars than the file's are refused"
    assert con.execute("SELECT count(*) FROM coverage WHERE bar_size = '1 min'").fetchone() == (0,), \
        "a refusal is never recorded as verified-empty coverage"


# ---- item 7: the simulated/real mark comes from the gateway, once it has answered -----------------------------

def origin(data: Path) -> bool | None:
    meta = data / "warehouse.json"
    return json.loads(meta.read_text())["simulated"] if meta.exists() else None


def test_a_run_that_never_connected_or_only_planned_leaves_no_mark(tmp_path, universe):
    data = tmp_path / "data"
    unreachable = run("--universe", str(universe), "--data-dir", str(data), "--port", str(free_port()))
    assert unreachable.exit_code == Exit.UNREACHABLE, unreachable.output + unreachable.stderr
    planned = run("--universe", str(universe), "--sim", "--sim-now", SIM_NOW, "--data-dir", str(data), "--plan")
    assert planned.exit_code == 0, planned.output + planned.stderr
    assert origin(data) is None
    harvested = run("--universe", str(universe), "--sim", "--sim-now", SIM_NOW, "--data-dir", str(data),
                    "--start", "2024-06-03")
    assert harvested.exit_code == 0, harvested.output + harvested.stderr
    assert origin(data) is True


def test_a_standalone_simulator_marks_its_bars_simulated_and_a_real_gateway_real(make_gateway, tmp_path, universe):
    sim, paper = make_gateway(), make_gateway(account="DU7654321")  # the second answers as a paper account does
    from_sim, from_paper = tmp_path / "sim", tmp_path / "paper"
    first = run("--universe", str(universe), "--port", str(sim.port), "--pacing-scale", "0.01",
                "--data-dir", str(from_sim), "--start", "2024-06-03")
    assert first.exit_code == 0, first.output + first.stderr
    assert origin(from_sim) is True
    second = run("--universe", str(universe), "--port", str(paper.port), "--data-dir", str(from_paper),
                 "--start", "2024-06-03")
    assert second.exit_code == 0, second.output + second.stderr
    assert origin(from_paper) is False

    mixed = run("--universe", str(universe), "--sim", "--sim-now", SIM_NOW, "--data-dir", str(from_paper))
    message = one_line(mixed)
    assert str(from_paper) in message and "real" in message and "--data-dir" in message, message
    assert len(queries.bars("AAPL", data_dir=from_paper)) > 0, "the refused run touched nothing"


def test_compressed_pacing_against_a_real_gateway_is_refused(make_gateway, tmp_path, universe):
    paper = make_gateway(account="DU7654321")
    message = one_line(run("--universe", str(universe), "--port", str(paper.port), "--pacing-scale", "0.01",
                           "--data-dir", str(tmp_path / "data")))
    assert "pacing scale 0.01" in message and "real IB gateway" in message, message
    assert origin(tmp_path / "data") is None
