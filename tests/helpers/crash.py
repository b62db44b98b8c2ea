"""Crash trials: SIGKILL `harvest` (and `harvest compact`) at random points, rerun, compare with a reference.

Each trial starts a real CLI process (`harvest --sim`, its gateway in-process) on a fresh warehouse and
kills it with SIGKILL at a point drawn from a seeded RNG, in one of five phases:

  fetch    after the k-th request reached the gateway (its journal, observed from outside)
  stage    just before or after the k-th staged answer is renamed into `_staging/` (inside the victim)
  commit   just before or after the k-th Delta transaction (bars, coverage, journal, contracts, heads) or
           rename/unlink outside `_staging/` (the staging batch's retirement), inside the victim
  random   after a uniform delay over the whole run (observed from outside)
  compact  `harvest compact` over a warehouse whose partitions hold several files, killed at its k-th step

Then, with the victim dead: every data file the latest snapshot of each table lists must read whole,
`queries.connect()` must count bars; the rerun must not be refused by a stale lock (exit 0) and must
leave exactly the reference rows: 0 lost, 0 duplicated, 0 extra, 0 different.

    python -m tests.helpers.crash                    # 50 trials, seed 0
    python -m tests.helpers.crash --trials 5 --seed 3 --keep /tmp/crash
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from tests.helpers.gateways import PACING_SCALE, SIM_NOW
from tests.helpers.reference import Diff, Span, compare, reader_hazards, write_toml
from tests.helpers.warehouses import split_partitions

ROOT = Path(__file__).resolve().parents[2]  # the victim runs this module by name from its trial directory

SPAN = Span(("AAPL", "MSFT", "JPM", "XOM", "KO", "PEP"), start=date(2024, 3, 1))
PHASES = ("fetch", "stage", "commit", "random", "compact")
HARVEST = str(Path(sys.executable).with_name("harvest"))
VICTIM_ENV = "CRASH_VICTIM"  # JSON: {"kind": "staging"|"commit"|"any", "nth": k, "after": bool, "count_file": path}
RUN_DEADLINE_S = 120.0


@dataclass
class Trial:
    number: int
    phase: str
    point: str = ""
    killed: bool = False
    rows_at_kill: int = 0
    hazards: list[str] = field(default_factory=list)
    rerun_exit: int | None = None
    rerun_error: str = ""
    diff: Diff | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.hazards and self.rerun_exit == 0 and self.diff is not None and self.diff.clean


# ---- inside the victim process -------------------------------------------------------------------------

def run_victim(argv: list[str]) -> None:
    """Run the harvest CLI with os.replace/os.rename/os.unlink counted; SIGKILL ourselves at the chosen one."""
    spec = json.loads(os.environ[VICTIM_ENV])
    counts = {"staging": 0, "commit": 0}

    def counted(real: Callable) -> Callable:
        def call(*args, **kwargs):
            target = str(args[1] if len(args) > 1 else args[0])
            kind = "staging" if "/_staging/" in target else "commit"
            counts[kind] += 1
            hit = spec["kind"] in (kind, "any") and counts[kind] == spec["nth"]
            if hit and not spec["after"]:
                os.kill(os.getpid(), signal.SIGKILL)
            result = real(*args, **kwargs)
            if hit:
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        return call

    os.replace, os.rename, os.unlink = counted(os.replace), counted(os.rename), counted(os.unlink)
    import deltalake

    write = deltalake.write_deltalake

    def transaction(uri, *args, **kwargs):  # a Delta commit, counted like a rename outside the staging
        return counted(lambda *_: write(uri, *args, **kwargs))(uri)

    deltalake.write_deltalake = transaction
    from harvester.cli import main

    try:
        main(argv, prog_name="harvest")
    finally:
        if spec.get("count_file"):
            Path(spec["count_file"]).write_text(json.dumps(counts))


# ---- the driver ----------------------------------------------------------------------------------------

def harvest_args(data: Path) -> list[str]:
    return ["--universe", "u.csv", "--data-dir", str(data), *SPAN.cli_args(), "--sim", "--sim-now", SIM_NOW,
            "--pacing-scale", str(PACING_SCALE), "--sim-journal", str(journal_file(data))]


def journal_file(data: Path) -> Path:
    """The in-process simulator's journal: beside the warehouse (nothing of the gateway's goes inside it)."""
    return data.with_name("sim-journal.jsonl")


def prepare(cwd: Path) -> Path:
    cwd.mkdir(parents=True, exist_ok=True)
    write_toml(cwd, SPAN)
    (cwd / "u.csv").write_text(SPAN.universe_csv())
    return cwd / "data"


def start_victim(cwd: Path, argv: list[str], kind: str = "any", nth: int = 0, after: bool = False,
                 count_file: Path | None = None) -> subprocess.Popen:
    spec = {"kind": kind, "nth": nth, "after": after, "count_file": str(count_file) if count_file else None}
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, VICTIM_ENV: json.dumps(spec), "PYTHONPATH": path}
    return subprocess.Popen([sys.executable, "-m", "tests.helpers.crash", "--victim", *argv], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=RUN_DEADLINE_S)
    return proc.returncode, err.decode(errors="replace").strip()[-300:]


def kill_when(proc: subprocess.Popen, condition: Callable[[], bool]) -> bool:
    """SIGKILL `proc` once `condition` holds (polled); False if it ended on its own first."""
    deadline = time.monotonic() + RUN_DEADLINE_S
    while proc.poll() is None:
        if condition():
            proc.send_signal(signal.SIGKILL)
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError("the victim neither finished nor reached its kill point")
        time.sleep(0.001)
    return proc.wait(timeout=RUN_DEADLINE_S) == -signal.SIGKILL


def journal_lines(data: Path) -> int:
    try:
        with journal_file(data).open("rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def rows_in(data: Path) -> int:
    import duckdb
    from deltalake import DeltaTable

    if not (data / "bars" / "_delta_log").is_dir():
        return 0
    try:
        files = DeltaTable(str(data / "bars")).file_uris()
        return duckdb.sql(f"SELECT count(*) FROM read_parquet({files})").fetchall()[0][0] if files else 0
    except Exception:  # noqa: BLE001 - an unreadable file or log: reader_problems names it
        return -1


def reader_problems(data: Path) -> list[str]:
    """What a reader would meet right now: unreadable or temp files in its glob, or a failing query."""
    problems = reader_hazards(data)
    if not data.is_dir():  # killed before the warehouse was made: a reader is rightly told there is none
        return problems
    try:
        import queries

        queries.connect(data).execute("SELECT count(*), count(DISTINCT con_id) FROM bars").fetchall()
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        problems.append(f"queries.connect: {type(exc).__name__}: {str(exc)[:200]}")
    return problems


@dataclass
class Calibration:
    """Counts from one undisturbed run: where the kill points can fall."""

    reference: Path
    seconds: float
    requests: int
    staging: int
    commit: int
    compact: int


def calibrate(work: Path) -> Calibration:
    cwd = work / "reference"
    data = prepare(cwd)
    started = time.monotonic()
    code, err = finish(start_victim(cwd, harvest_args(data), count_file=cwd / "counts.json"))
    if code != 0:
        raise SystemExit(f"the reference harvest failed ({code}): {err}")
    seconds = time.monotonic() - started
    counts = json.loads((cwd / "counts.json").read_text())
    scattered = work / "calibrate-compact"
    shutil.copytree(data, scattered / "data")
    split_partitions(scattered / "data")
    code, err = finish(start_victim(scattered, ["compact", "--data-dir", str(scattered / "data")],
                                    count_file=scattered / "counts.json"))
    if code != 0:
        raise SystemExit(f"compaction of the scattered copy failed ({code}): {err}")
    compact_steps = sum(json.loads((scattered / "counts.json").read_text()).values())
    shutil.rmtree(scattered)
    return Calibration(data, seconds, journal_lines(data), counts["staging"], counts["commit"], compact_steps)


def run_trial(number: int, phase: str, rng: random.Random, cal: Calibration, work: Path) -> Trial:
    trial = Trial(number, phase)
    started = time.monotonic()
    cwd = work / f"trial-{number:03d}"
    data = prepare(cwd)
    after = rng.random() < 0.5
    when = "after" if after else "before"
    if phase == "compact":
        shutil.copytree(cal.reference, data)
        split_partitions(data)
        nth = rng.randint(1, cal.compact)
        trial.point = f"{when} step {nth}/{cal.compact} of compact"
        victim = start_victim(cwd, ["compact", "--data-dir", str(data)], "any", nth, after)
    elif phase in ("stage", "commit"):
        kind = "staging" if phase == "stage" else "commit"
        total = cal.staging if phase == "stage" else cal.commit
        nth = rng.randint(1, max(1, total * 9 // 10))  # commit counts vary a little from run to run
        trial.point = f"{when} {kind} rename {nth}/{total}"
        victim = start_victim(cwd, harvest_args(data), kind, nth, after)
    else:
        victim = start_victim(cwd, harvest_args(data))
        if phase == "fetch":
            nth = rng.randint(1, cal.requests)
            trial.point = f"request {nth}/{cal.requests} sent"
            condition = lambda: journal_lines(data) >= nth
        else:
            delay = rng.uniform(0.3, 0.8 * cal.seconds)  # the run startup leaves the tail short
            trial.point = f"{delay:.2f}s of {cal.seconds:.2f}s"
            deadline = time.monotonic() + delay
            condition = lambda: time.monotonic() >= deadline
        kill_when(victim, condition)
    trial.killed = victim.wait(timeout=RUN_DEADLINE_S) == -signal.SIGKILL
    trial.rows_at_kill = rows_in(data)
    trial.hazards = reader_problems(data)
    rerun = [HARVEST, "compact", "--data-dir", str(data)] if phase == "compact" else [HARVEST, *harvest_args(data)]
    done = subprocess.run(rerun, check=False, cwd=cwd, capture_output=True, timeout=RUN_DEADLINE_S)
    trial.rerun_exit = done.returncode
    trial.rerun_error = done.stderr.decode(errors="replace").strip()[-300:] if done.returncode else ""
    trial.diff = compare(data, cal.reference)
    trial.seconds = time.monotonic() - started
    return trial


def run_trials(trials: int = 50, seed: int = 0, work: Path | None = None, phases: tuple[str, ...] = PHASES,
               echo: Callable[[str], None] = print) -> list[Trial]:
    """Run `trials` crash trials (`phases` in turn, points drawn from Random(seed)); returns every trial."""
    own = work is None
    work = Path(tempfile.mkdtemp(prefix="harvest-crash-")) if own else work
    try:
        cal = calibrate(work)
        echo(f"reference: {rows_in(cal.reference)} rows, {cal.requests} gateway requests, {cal.staging} staging "
             f"renames, {cal.commit} commit steps, {cal.compact} compact steps, {cal.seconds:.1f}s")
        rng = random.Random(seed)
        echo(HEADER)
        results = []
        for number in range(1, trials + 1):
            trial = run_trial(number, phases[(number - 1) % len(phases)], rng, cal, work)
            echo(row(trial))
            results.append(trial)
            shutil.rmtree(work / f"trial-{number:03d}", ignore_errors=True)
        echo(summary(results))
        return results
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


HEADER = f"{'#':>3} {'phase':8} {'kill point':34} {'killed':6} {'rows@kill':>9} {'hazards':>7} {'rerun':>5} " \
         f"{'lost':>5} {'dup':>5} {'extra':>5} {'diff':>5} {'secs':>5}"


def row(t: Trial) -> str:
    d = t.diff
    line = (f"{t.number:>3} {t.phase:8} {t.point:34} {'yes' if t.killed else 'no':6} {t.rows_at_kill:>9} "
            f"{len(t.hazards):>7} {t.rerun_exit!s:>5} {d.lost:>5} {d.duplicated:>5} {d.extra:>5} {d.differing:>5} "
            f"{t.seconds:>5.1f}")
    details = [*t.hazards, *([f"rerun: {t.rerun_error}"] if t.rerun_error else [])]
    return "\n".join([line, *(f"      ! {x}" for x in details)])


def summary(results: list[Trial]) -> str:
    killed = sum(t.killed for t in results)
    total = lambda attr: sum(getattr(t.diff, attr) for t in results)
    by_phase = ", ".join(f"{p} {sum(t.phase == p and t.killed for t in results)}" for p in PHASES)
    return (f"trials {len(results)} (killed {killed}: {by_phase}); rows lost {total('lost')}, duplicated "
            f"{total('duplicated')}, extra {total('extra')}, different {total('differing')}; reader hazards "
            f"{sum(len(t.hazards) for t in results)}; reruns refused or failed {sum(t.rerun_exit != 0 for t in results)}"
            f"; trials not clean {sum(not t.ok for t in results)}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--victim":
        run_victim(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="Work directory to use and keep (default: a temp dir).")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    results = run_trials(args.trials, args.seed, args.keep)
    sys.exit(0 if all(t.ok for t in results) else 1)


if __name__ == "__main__":
    main()
