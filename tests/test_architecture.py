"""The rules of the house (import-linter contracts in pyproject.toml) hold, and would catch a break."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).with_name("lint-imports"))


def lint(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([LINT, "--no-cache"], check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_every_import_contract_is_kept() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " 0 broken" in result.stdout.split("Contracts:")[-1]


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("harvester/plan.py", "import ib_insync", "Only harvester.ib.client imports ib_insync"),
        ("harvester/warehouse/store.py", "import click", "Only harvester.cli imports click"),
        ("harvester/warehouse/coverage.py", "import harvester.ib.scheduler", "never talk to IB"),
        ("harvester/model.py", "import harvester.calendar", "Rooms are layered"),
        ("queries/scanners.py", "import harvester.warehouse.store", "queries imports only harvester's public names"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    for package in ("harvester", "queries"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # a violation planted by the test\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts")[-1]
    assert contract in broken, result.stdout[-3000:]
