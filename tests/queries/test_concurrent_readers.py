"""Readers during writes: a separate reader process queries `bars` through `queries.connect()` and
`queries.bars()` in a loop while real `harvest` processes commit and `harvest compact` rewrites partitions.

It must see no error, no partial file, no row twice, and a row count that never goes down. A second
harvest on the same warehouse exits 4 naming the holder; a lock left by a SIGKILLed harvest is taken over.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

import tests
from harvester.cli import main
from harvester.warehouse.claims import live_claims
from harvester.warehouse.delta import DeltaTables
from harvester.warehouse.tables import CLAIMS_SCHEMA
from tests.helpers.reference import PACING_SCALE, SIM_NOW, Span, compare, reference_dir, write_toml
from tests.helpers.warehouses import split_partitions

SPAN = Span(("AAPL", "MSFT", "JPM", "XOM", "KO", "PEP"), start=date(2024, 3, 1))
FIRST_HALF = replace(SPAN, end=date(2024, 4, 15))
HARVEST = str(Path(sys.executable).with_name("harvest"))
ROOT = Path(tests.__file__).resolve().parents[1]  # where `tests` imports from, for the reader process
READ_SECONDS_MAX = 120.0


def read_loop(data_dir: str, stop_file: str) -> None:
    """The reader process: query until `stop_file` exists; print one JSON line of findings."""
    import queries

    con = queries.connect(data_dir)
    found = {"queries": 0, "errors": [], "duplicates": 0, "decreases": 0, "rows_seen": []}
    last = 0
    print("ready", flush=True)
    deadline = time.monotonic() + READ_SECONDS_MAX
    while not os.path.exists(stop_file) and time.monotonic() < deadline:
        try:
            if found["queries"] % 2:
                frame = queries.bars(None, "30 mins", data_dir=data_dir, con=con)
                rows, twice = len(frame), int(frame.duplicated(["con_id", "ts"]).sum())
            else:
                queries.refresh(con)  # the view reads one snapshot: move it to the latest
                rows, distinct = con.execute(
                    "SELECT count(*), count(DISTINCT (con_id, bar_size, ts)) FROM bars").fetchall()[0]
                twice = rows - distinct
        except Exception as exc:  # noqa: BLE001 - every failure a reader meets is the finding
            found["errors"].append(f"{type(exc).__name__}: {str(exc)[:300]}")
        else:
            found["duplicates"] += twice
            found["decreases"] += rows < last
            last = rows
            if not found["rows_seen"] or found["rows_seen"][-1] != rows:
                found["rows_seen"].append(rows)
        found["queries"] += 1
    print(json.dumps(found), flush=True)


def start_reader(data: Path, stop: Path) -> subprocess.Popen:
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from {__name__} import read_loop; " \
           f"read_loop({str(data)!r}, {str(stop)!r})"
    reader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "ready"  # blocks until the reader has its connection
    return reader


def harvest_process(cwd: Path, data: Path, span: Span, *extra: str) -> subprocess.Popen:
    write_toml(cwd, span)
    (cwd / "u.csv").write_text(span.universe_csv())
    args = ["--universe", "u.csv", "--data-dir", str(data), *span.cli_args(), "--sim", "--sim-now", SIM_NOW,
            "--pacing-scale", str(PACING_SCALE), *extra]
    return subprocess.Popen([HARVEST, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def claims_of(proc: subprocess.Popen, data: Path) -> int:
    held = live_claims(DeltaTables(data)) if (data / "claims").is_dir() else None
    return 0 if held is None else int((held["pid"] == proc.pid).sum())


def wait_holding_claims(proc: subprocess.Popen, data: Path) -> None:
    """Wait (bounded) until `proc` holds claims on series in the warehouse."""
    deadline = time.monotonic() + 60
    while not claims_of(proc, data):
        assert time.monotonic() < deadline, "the harvest never claimed a series"
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.02)




def test_reader_during_harvests_and_compactions_sees_no_error_no_duplicate_no_decrease(tmp_path):
    data, stop = tmp_path / "data", tmp_path / "stop"
    first = harvest_process(tmp_path, data, FIRST_HALF)
    assert first.wait(timeout=120) == 0, first.stderr.read()
    reader = start_reader(data, stop)
    try:
        second = harvest_process(tmp_path, data, SPAN)
        wait_holding_claims(second, data)
        beside = CliRunner().invoke(main, ["--universe", str(tmp_path / "u.csv"), "--data-dir", str(data),
                                            *SPAN.cli_args(), "--sim", "--sim-now", SIM_NOW])
        assert second.wait(timeout=120) == 0, second.stderr.read()
        compactions = []
        for _ in range(3):
            assert split_partitions(data) >= 2
            compacted = subprocess.run([HARVEST, "compact", "--data-dir", str(data)], capture_output=True, text=True,
                                       timeout=60, check=False)
            compactions.append((compacted.returncode, compacted.stdout))
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    found = json.loads(out.strip().splitlines()[-1])

    assert beside.exit_code == 0, beside.output + beside.stderr  # a second job shares the warehouse
    assert all(code == 0 and "rewrote" in text and "rewrote 0 " not in text for code, text in compactions)
    assert found["queries"] >= 20
    assert found["errors"] == [], f"{len(found['errors'])} of {found['queries']} reads failed: {found['errors'][:3]}"
    assert found["duplicates"] == 0 and found["decreases"] == 0
    assert len(found["rows_seen"]) >= 2  # the reader saw commits land
    assert compare(data, reference_dir(SPAN)).clean


def test_claims_left_by_a_killed_harvest_are_taken_over_at_once(tmp_path):
    data = tmp_path / "data"
    victim = harvest_process(tmp_path, data, SPAN)
    wait_holding_claims(victim, data)
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    left = DeltaTables(data).read("claims", CLAIMS_SCHEMA).to_pandas()
    assert (left["pid"] == victim.pid).any()  # the dead job's claims are still in the table, unexpired
    rerun = harvest_process(tmp_path, data, SPAN)
    out, err = rerun.communicate(timeout=120)  # well inside CLAIM_TTL: the dead pid is seen, not waited out
    assert rerun.returncode == 0, err
    assert "left to another harvest" not in out
    assert compare(data, reference_dir(SPAN)).clean
