"""Pacing that holds at scale 0.01 against a gateway whose stamps trail our sends (issue 13, item 4): the
simulator stamps at receipt plus a modelled lag of up to 50 ms (`--stamp-lag`), the harvest runs in its own
process, and two processes spin on the CPU beside them. 0 violations in the simulator's journal for a
130-symbol daily run followed by its next-night run, and for a 40-symbol 1-min run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers.gateways import PACING_SCALE, SIM_NOW, next_client_id

ROOT = Path(__file__).resolve().parents[1]
STAMP_LAG_S = 0.05
NEXT_NIGHT = "2024-06-17T20:00:00+00:00"  # Monday's close, after Friday's run


@pytest.fixture
def spinning_cpus() -> Iterator[None]:
    """Two processes that keep both cores busy for the test's length (a loaded machine)."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def universe(path: Path, count: int) -> Path:
    symbols = pd.read_csv(ROOT / "universes/sp500.csv", comment="#").symbol.tolist()[:count]
    path.write_text("symbol\n" + "\n".join(symbols) + "\n")
    return path


def harvest(universe_file: Path, data_dir: Path, port: int, *options: str) -> str:
    harvest_cli = str(Path(sys.executable).with_name("harvest"))
    done = subprocess.run(
        [harvest_cli, "--universe", str(universe_file), "--data-dir", str(data_dir), "--port", str(port),
         "--client-id", str(next_client_id()), "--pacing-scale", str(PACING_SCALE), *options],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def lagging_gateway(make_gateway):
    """Pacing ×0.01, answers as slow as the scale makes them, stamps up to 50 ms behind receipt."""
    return make_gateway(now=SIM_NOW, latency_scale=None, stamp_lag_s=STAMP_LAG_S)


def violations(gateway) -> int:
    return gateway.journal.count_where(outcome="pacing") + gateway.journal.count_where(outcome="too_many_open")


@pytest.mark.slow
def test_a_daily_run_and_its_next_night_draw_no_violation(tmp_path, make_gateway, spinning_cpus) -> None:
    gateway = lagging_gateway(make_gateway)
    symbols = universe(tmp_path / "u.csv", 130)
    harvest(symbols, tmp_path / "data", gateway.port, "--start", "2024-06-10")
    first = len(gateway.journal.matching(kind="historical"))
    gateway.clock.set(NEXT_NIGHT)
    harvest(symbols, tmp_path / "data", gateway.port, "--start", "2024-06-10")
    asked = gateway.journal.matching(kind="historical")
    assert first >= 130 and len(asked) - first >= 130  # each night asked every series, past one window
    assert max(e["stamp_lag_s"] for e in asked) > STAMP_LAG_S / 2  # the modelled lag was in play
    assert violations(gateway) == 0


@pytest.mark.slow
def test_a_one_minute_run_draws_no_violation(tmp_path, make_gateway, spinning_cpus) -> None:
    gateway = lagging_gateway(make_gateway)
    harvest(universe(tmp_path / "u.csv", 40), tmp_path / "data", gateway.port,
            "--bar-size", "1 min", "--start", "2024-05-01")  # three windows a series
    assert len(gateway.journal.matching(kind="historical")) > 60  # past one window
    assert violations(gateway) == 0
