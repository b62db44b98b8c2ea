"""One settings path for every verb: defaults ← harvest.toml ← environment ← the group's options ← the verb's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from harvester.cli import Exit, main
from harvester.warehouse import Warehouse


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no harvest.toml and no HARVEST_* variables, as cron starts a job."""
    for name in ("HARVEST_CONFIG", "HARVEST_DATA_DIR", "HARVEST_HOST", "HARVEST_PORT", "HARVEST_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def warehouse(path: Path) -> Path:
    Warehouse.open(path, simulated=True, gateway="sim:1").close()
    return path


def test_compact_reads_the_data_dir_from_harvest_toml(in_tmp: Path) -> None:
    warehouse(in_tmp / "wh")
    (in_tmp / "harvest.toml").write_text('data_dir = "wh"\n')
    code, out, err = run("compact")
    assert (code, err) == (0, ""), err
    assert "rewrote 0 partition(s)" in out and "version" in out
    assert not (in_tmp / "data").exists(), "compact opened ./data instead of harvest.toml's warehouse"


@pytest.mark.parametrize("verb", ["status", "compact"])
def test_data_dir_before_the_verb_is_honoured(in_tmp: Path, verb: str) -> None:
    chosen = warehouse(in_tmp / "chosen")
    args = ["--data-dir", str(chosen), verb] + (["--json"] if verb == "status" else [])
    code, out, err = run(*args)
    assert code == 0, err
    assert not (in_tmp / "data").exists(), "the default warehouse was opened"
    if verb == "status":
        assert json.loads(out)["data_dir"] == str(chosen.resolve())


def test_the_verbs_own_data_dir_wins_over_the_groups(in_tmp: Path) -> None:
    inner, outer = warehouse(in_tmp / "inner"), warehouse(in_tmp / "outer")
    code, out, _ = run("--data-dir", str(outer), "status", "--json", "--data-dir", str(inner))
    assert code == 0 and json.loads(out)["data_dir"] == str(inner.resolve())


@pytest.mark.parametrize(("option", "value"), [("--universe", "u.csv"), ("--bar-size", "1 min"), ("--port", "4002")])
def test_a_group_option_the_verb_cannot_use_is_refused_in_one_line(in_tmp: Path, option: str, value: str) -> None:
    code, _, err = run(option, value, "status")
    assert code == Exit.BAD_INPUT
    assert option in err and "status" in err and len(err.strip().splitlines()) == 1
