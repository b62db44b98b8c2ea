"""The warehouse on S3 (SeaweedFS on loopback): every verb with `--data-dir s3://…`, several writers at once,
and bad locations refused in one line. Small spans: each S3 request costs milliseconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import queries
from harvester.warehouse.delta import DeltaTables
from harvester.warehouse.layout import JOURNAL
from harvester.warehouse.tables import JOURNAL_SCHEMA
from tests.helpers import crash
from tests.helpers.gateways import PACING_SCALE, SIM_NOW, next_client_id
from tests.helpers.reference import Span, reference_dir, write_toml
from tests.helpers.s3 import S3Server, s3_server_fixture
from tests.helpers.warehouses import write_format_2_bars

s3 = s3_server_fixture()
SPAN = Span(("AAPL", "MSFT", "NVDA", "KO"), target_bars=120)
HARVEST = [sys.executable, "-c", "from harvester.cli import main; main()"]
KEY = ["con_id", "ts"]


def run(cwd: Path, env: dict, *args: str, wait: bool = True):
    proc = subprocess.Popen([*HARVEST, *args], cwd=cwd, env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def harvest_args(uri: str) -> list[str]:
    return ["--universe", "u.csv", "--data-dir", uri, *SPAN.cli_args(), "--sim", "--sim-now", SIM_NOW,
            "--pacing-scale", str(PACING_SCALE)]


@pytest.fixture
def job_dir(tmp_path: Path, s3: S3Server) -> tuple[Path, dict]:
    write_toml(tmp_path, SPAN)
    (tmp_path / "u.csv").write_text(SPAN.universe_csv())
    return tmp_path, {**s3.env(), "HARVEST_STATE_DIR": str(tmp_path / "state")}


def stored(uri: str, env: dict) -> pd.DataFrame:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        con = queries.connect(uri)
        return con.sql("SELECT * FROM bars ORDER BY con_id, ts").df()


def reference_rows() -> pd.DataFrame:
    return queries.connect(reference_dir(SPAN)).sql("SELECT * FROM bars ORDER BY con_id, ts").df()


def journal_of(uri: str, env: dict) -> pd.DataFrame:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        return DeltaTables(uri).read(JOURNAL, JOURNAL_SCHEMA).to_pandas()


def test_harvest_rerun_status_query_on_s3_equal_a_local_harvest(job_dir, s3: S3Server) -> None:
    cwd, env = job_dir
    uri = f"s3://{s3.bucket}/one/wh"
    code, out, err = run(cwd, env, *harvest_args(uri))
    assert code == 0, out + err
    assert not list(cwd.glob("s3*")), "an s3:// URI became a local folder"
    pd.testing.assert_frame_equal(stored(uri, env), reference_rows())

    before = set(journal_of(uri, env)["run_id"])
    code, out, err = run(cwd, env, *harvest_args(uri))
    assert code == 0, out + err
    again = journal_of(uri, env)
    assert again[~again["run_id"].isin(before)].query("kind == 'bars'").empty  # the rerun asks nothing

    code, out, err = run(cwd, env, "status", "--json", "--data-dir", uri)
    assert code == 0, err
    status = json.loads(out)
    assert status["data_dir"] == uri and status["simulated"] is True and status["version"] >= 1
    code, out, err = run(cwd, env, "query", "SELECT count(*) AS n FROM bars", "--data-dir", uri,
                         "--format", "csv")
    assert code == 0, err
    assert out.split() == ["n", str(len(reference_rows()))]


def test_fetch_missing_into_s3(job_dir, s3: S3Server, make_gateway, monkeypatch) -> None:
    _, env = job_dir
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    gateway = make_gateway()
    uri = f"s3://{s3.bucket}/notebook"
    kwargs = {"fetch": "missing", "host": "127.0.0.1", "port": gateway.port, "data_dir": uri,
              "job_options": {"pacing_scale": 0.01}}
    first = queries.bars(["AAPL"], "1 day", "2024-06-03", "2024-06-08", client_id=next_client_id(), **kwargs)
    assert sorted(first.session_date.astype(str)) == [f"2024-06-0{d}" for d in range(3, 8)]
    requests = len(journal_of(uri, env))
    again = queries.bars(["AAPL"], "1 day", "2024-06-03", "2024-06-08", client_id=next_client_id(), **kwargs)
    pd.testing.assert_frame_equal(first, again)
    assert len(journal_of(uri, env)) == requests  # covered: nothing asked


def test_two_jobs_at_once_on_s3_store_one_harvest(job_dir, s3: S3Server) -> None:
    cwd, env = job_dir
    with (cwd / "harvest.toml").open("a") as f:
        f.write("claim_batch = 1\n")
    uri = f"s3://{s3.bucket}/two/wh"
    jobs = [run(cwd, env, *harvest_args(uri), wait=False) for _ in range(2)]
    for job in jobs:
        out, err = job.communicate(timeout=300)
        assert job.returncode == 0, out + err
    rows = stored(uri, env)
    assert not rows.duplicated(KEY).any()
    pd.testing.assert_frame_equal(rows, reference_rows())
    fetched = journal_of(uri, env).query("kind == 'bars' and outcome == 'bars'")
    assert (fetched.groupby("con_id")["run_id"].nunique() == 1).all()


def test_migrate_converts_a_format_2_warehouse_on_s3(job_dir, s3: S3Server) -> None:
    """Bar times stored naive (format 2) on S3: a writer refuses in one line; `harvest migrate` rewrites them."""
    cwd, env = job_dir
    loc = s3.location("format2/wh")
    write_format_2_bars(reference_dir(SPAN), loc.uri("bars"), loc.storage_options)
    code, out, err = run(cwd, env, *harvest_args(loc.root))
    assert code == 2 and "harvest migrate" in err and len(err.strip().splitlines()) == 1, out + err
    code, out, err = run(cwd, env, "migrate", "--data-dir", loc.root)
    assert code == 0 and "bar times UTC-aware" in out, out + err
    rows = stored(loc.root, env)
    assert str(rows.ts.dtype) == "datetime64[us, UTC]"
    pd.testing.assert_frame_equal(rows, reference_rows())


@pytest.mark.parametrize(("override", "says"), [
    ({"AWS_SECRET_ACCESS_KEY": "wrong"}, "credentials rejected"),
    ({"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, "unreachable"),
])
def test_bad_s3_settings_are_one_line_and_exit_2(job_dir, s3: S3Server, override, says) -> None:
    cwd, env = job_dir
    code, out, err = run(cwd, {**env, **override}, *harvest_args(f"s3://{s3.bucket}/bad"))
    assert code == 2, out + err
    assert says in err and len(err.strip().splitlines()) == 1


def test_unknown_bucket_is_named(job_dir) -> None:
    cwd, env = job_dir
    code, _, err = run(cwd, env, *harvest_args("s3://no-such-bucket/x"))
    assert code == 2 and "no-such-bucket" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("nth", "after"), [(7, True), pytest.param(3, False, marks=pytest.mark.slow),
                                            pytest.param(12, False, marks=pytest.mark.slow)])
def test_sigkill_at_an_s3_commit_then_rerun_loses_and_duplicates_nothing(job_dir, s3: S3Server, monkeypatch,
                                                                        nth: int, after: bool) -> None:
    """The crash harness's victim (tests/helpers/crash.py) killed at its nth Delta transaction on S3."""
    cwd, env = job_dir
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    uri = f"s3://{s3.bucket}/crash-{nth}-{after}"
    victim = crash.start_victim(cwd, harvest_args(uri), "commit", nth, after)
    assert victim.wait(timeout=300) == -signal.SIGKILL
    code, out, err = run(cwd, env, *harvest_args(uri))
    assert code == 0, out + err
    rows = stored(uri, env)
    assert not rows.duplicated(KEY).any()
    pd.testing.assert_frame_equal(rows, reference_rows())
