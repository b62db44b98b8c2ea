"""`harvest --universe FILE`: the nightly job's parsing, progress bar, summary and exit code.

Everything else is the Python API: `HarvestJob` + `run_harvest`, with `simulated_gateway` for `--sim`.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import deque
from pathlib import Path

import click

from harvester.cli.exits import Exit, fail, interrupted, shorten
from harvester.ib.client import ClientIdInUse, GatewayUnreachable
from harvester.ib.pacing import time_left
from harvester.ib.scheduler import paced_limits
from harvester.ibrules import SMALL_BAR_HORIZON_DAYS, PacingLimits, bar_size
from harvester.job import (
    PLAN_ASSUMED_HISTORY,
    HarvestConfigError,
    HarvestJob,
    plan_from_warehouse,
    run_harvest,
)
from harvester.settings import ConfigError, resolve_settings
from harvester.sim.clock import ClockError, parse_instant
from harvester.simulated import SIM_PACING_SCALE, SIM_SAFETY_S, simulated_gateway
from harvester.universe import UniverseError, load_universe
from harvester.warehouse import WarehouseError


def run_nightly_job(universe: Path, sim: bool, sim_now: str | None, **options) -> int:
    sim_journal = options.pop("sim_journal")
    for flag, given in (("--sim-now", sim_now), ("--sim-journal", sim_journal)):
        if given and not sim:
            fail(Exit.BAD_INPUT, f"{flag} needs --sim")
    if sim_now:
        try:
            parse_instant(sim_now)
        except ClockError as exc:
            fail(Exit.BAD_INPUT, f"--sim-now {shorten(sim_now)}: {exc}")
    start, end, pacing_scale = options.pop("start"), options.pop("end"), options.pop("pacing_scale")
    plan_only = options.pop("plan_only")
    try:
        settings = resolve_settings(options)
        specs = load_universe(universe)
    except (ConfigError, UniverseError) as exc:
        fail(Exit.BAD_INPUT, str(exc))
    job = HarvestJob.from_settings(
        settings, specs, start=None if start == "head" else start, end=end.date() if end else None,
        plan_only=plan_only, pacing_scale=pacing_scale or (SIM_PACING_SCALE if sim else 1.0),
        **({"min_safety_s": SIM_SAFETY_S} if sim else {}),
    )
    try:
        job.validate()
    except HarvestConfigError as exc:
        fail(Exit.BAD_INPUT, str(exc))
    offline = plan_from_warehouse(job) if plan_only and not sim else None  # --sim: the simulator's now decides
    if offline is not None:
        _print_summary(offline, job)
        return Exit.OK
    try:
        with simulated_gateway(job, sim_now, sim_journal) if sim else contextlib.nullcontext(), _progress_bar(job) as progress:
            report = run_harvest(job, progress)
    except HarvestConfigError as exc:
        fail(Exit.BAD_INPUT, str(exc))
    except WarehouseError as exc:
        fail(Exit.BAD_INPUT, str(exc))
    except GatewayUnreachable as exc:
        fail(Exit.UNREACHABLE, str(exc))
    except ClientIdInUse as exc:
        fail(Exit.CLIENT_ID, str(exc))
    except KeyboardInterrupt:
        interrupted("answers already staged are committed by the next run")
    _print_summary(report, job)
    return Exit.FAILED if report.failures and not plan_only else Exit.OK


class ProgressReport:
    """Progress on stderr: a tqdm bar on a terminal; elsewhere (cron, a log file) a line each tenth of the
    plan and at least every `every_s`. The time left is what IB's window allows (`time_left`), never
    less than the pace so far: tqdm's rate guess said 8 s left at 28 % when the window had 40 s to run."""

    def __init__(self, limits: PacingLimits, stream=None, clock=time.monotonic, every_s: float = 60.0) -> None:
        self.limits, self.stream, self.clock, self.every_s = limits, stream or sys.stderr, clock, every_s
        self._answers: deque[float] = deque(maxlen=limits.max_weighted)  # when recent answers came (≈ sends)
        self._started = clock()
        self._done = self._printed = 0
        self._next_line = (1, self._started + every_s)  # (requests, time) that print the next line
        self._bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=0, unit="req", file=self.stream, dynamic_ncols=True,
                             bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} req [{elapsed}, {postfix}]")

    def left_s(self, planned: int, done: int, now: float) -> float:
        remaining = planned - done
        paced = time_left(remaining, self._answers, now, self.limits)
        rate = (now - self._started) / done * remaining if done else 0.0
        return max(paced, rate)

    def __call__(self, progress) -> None:
        now = self.clock()
        self._answers.extend([now] * min(progress.done - self._done, self.limits.max_weighted))
        self._done = progress.done
        left = _duration(self.left_s(progress.planned, progress.done, now))
        if self._bar is not None:
            self._bar.total, self._bar.n = progress.planned, progress.done
            self._bar.set_postfix_str(f"{left} left, bars={progress.bars:,}, violations={progress.violations}, "
                                      f"retries={progress.retries}", refresh=False)
            self._bar.refresh()
            return
        at_requests, at_time = self._next_line
        ended = progress.done == progress.planned != self._printed
        if progress.done and (progress.done >= at_requests or now >= at_time or ended):
            self._printed = progress.done
            print(f"progress: {progress.done}/{progress.planned} requests, {progress.bars:,} bars, "
                  f"{progress.violations} violations, {progress.retries} retries, {left} left",
                  file=self.stream, flush=True)
            step = max(1, progress.planned // 10)
            self._next_line = ((progress.done // step + 1) * step, now + self.every_s)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextlib.contextmanager
def _progress_bar(job: HarvestJob):
    """The job's progress on stderr (`ProgressReport`), at the pace its limits allow."""
    report = ProgressReport(paced_limits(job.pacing_scale, job.min_safety_s))
    try:
        yield report
    finally:
        report.close()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _print_summary(report, job: HarvestJob) -> None:
    echo = click.echo
    plan_only = job.plan_only
    if plan_only:
        source = " (from the warehouse alone: no gateway asked)" if report.planned_offline else ""
        echo(f"plan: {len(report.plan)} historical requests + {report.head_requests} head timestamps "
             f"for {report.series_total} series{source}")
        if report.plan_by_class:
            echo("by asset class: " + ", ".join(f"{k} {v}" for k, v in sorted(report.plan_by_class.items())))
        if job.pacing_scale == 1:
            echo(f"ETA under IB's pacing limits: {_duration(report.eta_s)} (nothing fetched)")
        else:
            echo(f"ETA at pacing scale {job.pacing_scale:g}: {_duration(report.eta_s)}; under IB's own limits "
                 f"{_duration(report.eta_ib_s)} (nothing fetched)")
        if report.unplanned:
            echo(f"{report.unplanned} series start at their head timestamp, not known yet: {report.estimated} of "
                 f"the requests are an estimate assuming {PLAN_ASSUMED_HISTORY.days} days of history each")
        if any(bar_size(name).small for name in job.bar_sizes):
            echo(f"bars of 30 secs and less: IB serves only the last six months; planned from "
                 f"{SMALL_BAR_HORIZON_DAYS} days back at the earliest")
    else:
        echo(f"series complete: {report.series_complete}/{report.series_total}")
        echo(f"bars written: {report.bars_written:,}")
        if report.bars_quarantined:
            echo(f"bars quarantined: {report.bars_quarantined:,} (see the quarantine view)")
        if report.bars_held or report.bars_given_up:
            echo(f"quarantined bars missing: {report.bars_held:,} asked for again next night, "
                 f"{report.bars_given_up:,} given up (see gaps)")
        if report.left_to_others:
            echo(f"left to another harvest: {len(report.left_to_others)} series "
                 f"(e.g. {next(iter(report.left_to_others.values()))})")
        for path in report.corrupt_files:
            echo(f"corrupt file quarantined and refetched: {path}")
        for line in report.notices:
            echo(f"note: {line}")
        for line in report.repairs:
            echo(f"repaired {line} (see the corporate_actions view)")
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(report.requests_by_outcome.items())) or "none"
        echo(f"requests by outcome: {outcomes}")
        if report.windows_split:
            echo(f"windows split after IB left them unanswered: {report.windows_split} (smaller windows asked "
                 "instead; the next run starts from the size that answered)")
        if job.pacing == "adaptive":
            echo(f"pacing: adaptive, fell back to strict ({report.pacing_fell_back})" if report.pacing_fell_back
                 else "pacing: adaptive for bars of 1 min and up")
        echo(f"pacing violations: {report.violations}, retries: {report.retries}, "
             f"reconnects: {report.reconnects}, wall time: {_duration(report.wall_s)}")
    if report.failures:
        echo(f"failed ({len(report.failures)} symbols):")
        for symbol, reasons in sorted(report.failures.items()):
            echo(f"  {symbol}: {'; '.join(reasons)}")
