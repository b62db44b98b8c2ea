"""One pacing budget per gateway across processes (issue 13, item 3): two harvests into two warehouses and
a notebook's `queries.bars(..., fetch='missing')`, each its own process, against one simulated gateway at
once. Together they break none of IB's rules, and their sends together run at the pacing floor of all their
requests, as one harvest of them all would (the simulator's journal, on its own clock)."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd

from tests.helpers.gateways import SIM_NOW, next_client_id

ROOT = Path(__file__).resolve().parents[1]
SCALE = 0.02  # a 12 s window: the harvesters' own work per answer fits well inside it on a busy machine
WINDOW_S = 600 * SCALE
START = "2024-06-10"
WHAT = "BID_ASK"  # weighs 2: the window binds after 30 requests, so the test needs half as many


def universe(path: Path, symbols: list[str]) -> Path:
    path.write_text("symbol\n" + "\n".join(symbols) + "\n")
    return path


def harvest(universe_file: Path, data_dir: Path, port: int) -> subprocess.Popen:
    harvest_cli = str(Path(sys.executable).with_name("harvest"))
    return subprocess.Popen(
        [harvest_cli, "--universe", str(universe_file), "--data-dir", str(data_dir), "--port", str(port),
         "--client-id", str(next_client_id()), "--pacing-scale", str(SCALE), "--start", START, "--what", WHAT],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def fetch_missing(symbols: list[str], data_dir: Path, port: int) -> subprocess.Popen:
    code = (
        "import queries, sys\n"
        f"got = queries.bars({symbols!r}, '1 day', '{START}', '2024-06-15', fetch='missing', data_dir={str(data_dir)!r},"
        f" port={port}, client_id={next_client_id()}, what_to_show={WHAT!r}, job_options={{'pacing_scale': {SCALE}}})\n"
        "print(got.symbol.nunique(), len(got))\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_two_harvests_and_a_fetch_share_one_budget(tmp_path, make_gateway) -> None:
    gateway = make_gateway(pacing_scale=SCALE, now=SIM_NOW)
    symbols = pd.read_csv(ROOT / "universes/sp500.csv", comment="#").symbol.tolist()[:35]
    jobs = [
        harvest(universe(tmp_path / "a.csv", symbols[:14]), tmp_path / "a", gateway.port),
        harvest(universe(tmp_path / "b.csv", symbols[14:28]), tmp_path / "b", gateway.port),
        fetch_missing(symbols[28:35], tmp_path / "c", gateway.port),
    ]
    outputs = [job.communicate(timeout=240)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0, 0], outputs
    assert outputs[2].splitlines()[-1] == "7 35", outputs[2]  # 7 symbols × 5 sessions, fetched

    asked = gateway.journal.matching(kind="historical")
    assert len(asked) == 35 and {e["outcome"] for e in asked} == {"bars"}  # no 162, no 322, nothing twice
    assert len({e["client_id"] for e in asked}) == 3
    stamps = sorted(datetime.fromisoformat(e["time"]).timestamp() + e["stamp_lag_s"] for e in asked)
    for k in range(len(stamps) - 30):  # IB's window on its own stamps: never 61 weighted within 600 s (scaled)
        assert stamps[k + 30] - stamps[k] >= WINDOW_S
    # Together at the floor of all 70 weighted: the 31st went as soon as the window let it (a margin and an
    # answer time later), so the three processes lost no window to each other.
    floor = (math.ceil(2 * len(asked) / 60) - 1) * WINDOW_S
    span = stamps[-1] - stamps[0]
    assert floor <= span < floor + WINDOW_S / 4, (span, floor)
