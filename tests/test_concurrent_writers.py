"""Several harvest jobs filling one warehouse at once, each with its own (simulated) gateway.

The invariant: together they store exactly what one fault-free harvest stores — no lost commit, no duplicate
(con_id, ts) — and no series is fetched by two jobs (claims), and a rerun asks for nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harvester.warehouse.delta import DeltaTables
from harvester.warehouse.layout import JOURNAL
from harvester.warehouse.tables import JOURNAL_SCHEMA
from tests.helpers.gateways import PACING_SCALE, SIM_NOW
from tests.helpers.reference import Span, compare, reference_dir, write_toml

SPAN = Span(("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM", "XOM", "KO"), target_bars=60)
HARVEST = [sys.executable, "-c", "from harvester.cli import main; main()"]


def start_job(cwd: Path, data: Path) -> subprocess.Popen:
    args = ["--universe", "u.csv", "--data-dir", str(data), *SPAN.cli_args(), "--sim", "--sim-now", SIM_NOW,
            "--pacing-scale", str(PACING_SCALE)]
    return subprocess.Popen([*HARVEST, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def journal(data: Path):
    return DeltaTables(data).read(JOURNAL, JOURNAL_SCHEMA).to_pandas()


def test_two_jobs_at_once_store_one_harvest_and_never_fetch_a_series_twice(tmp_path):
    write_toml(tmp_path, SPAN)
    with (tmp_path / "harvest.toml").open("a") as f:
        f.write("claim_batch = 2\n")  # small batches: the jobs take turns over the universe
    (tmp_path / "u.csv").write_text(SPAN.universe_csv())
    data = tmp_path / "data"
    jobs = [start_job(tmp_path, data) for _ in range(2)]
    outputs = [job.communicate(timeout=300) for job in jobs]
    for job, (out, err) in zip(jobs, outputs, strict=True):
        assert job.returncode == 0, out + err

    diff = compare(data, reference_dir(SPAN))
    assert diff.clean, diff
    bars = journal(data).query("kind == 'bars' and outcome == 'bars'")
    runs_per_series = bars.groupby("con_id")["run_id"].nunique()
    assert (runs_per_series == 1).all(), runs_per_series  # each series fetched by one job only
    assert len(runs_per_series) == len(SPAN.symbols)
    print(f"series fetched per job: {bars.groupby('run_id')['con_id'].nunique().to_dict()}")

    runs = set(journal(data)["run_id"])
    rerun = start_job(tmp_path, data)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, out + err
    new = journal(data).pipe(lambda j: j[~j["run_id"].isin(runs)])
    assert (new["kind"] == "bars").sum() == 0, new  # the rerun asks IB for nothing

