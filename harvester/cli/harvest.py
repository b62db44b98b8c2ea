"""`harvest --universe FILE`: the nightly job's parsing, progress bar, summary and exit code.

Everything else is the Python API: `HarvestJob` + `run_harvest`, with `simulated_gateway` for `--sim`.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from harvester.cli.exits import Exit, fail, interrupted, shorten
from harvester.ib.client import ClientIdInUse, GatewayUnreachable
from harvester.job import HarvestConfigError, HarvestJob, run_harvest
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
    try:
        with simulated_gateway(job, sim_now, sim_journal) if sim else contextlib.nullcontext(), _progress_bar() as progress:
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
    _print_summary(report, plan_only)
    return Exit.FAILED if report.failures and not plan_only else Exit.OK


@contextlib.contextmanager
def _progress_bar():
    """A tqdm bar on stderr: requests done/planned with ETA, bars, violations, retries."""
    from tqdm import tqdm

    bar = tqdm(total=0, unit="req", file=sys.stderr, dynamic_ncols=True, disable=None)

    def update(progress) -> None:
        bar.total = progress.planned
        bar.n = progress.done
        bar.set_postfix(bars=progress.bars, violations=progress.violations, retries=progress.retries,
                        refresh=False)
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _print_summary(report, plan_only: bool) -> None:
    echo = click.echo
    if plan_only:
        echo(f"plan: {len(report.plan)} historical requests + {report.head_requests} head timestamps "
             f"for {report.series_total} series")
        if report.plan_by_class:
            echo("by asset class: " + ", ".join(f"{k} {v}" for k, v in sorted(report.plan_by_class.items())))
        echo(f"ETA under IB's pacing limits: {_duration(report.eta_s)} (nothing fetched)")
        if report.unplanned:
            echo(f"{report.unplanned} series start at their head timestamp: their bars are planned once it is known")
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
        echo(f"pacing violations: {report.violations}, retries: {report.retries}, "
             f"reconnects: {report.reconnects}, wall time: {_duration(report.wall_s)}")
    if report.failures:
        echo(f"failed ({len(report.failures)} symbols):")
        for symbol, reasons in sorted(report.failures.items()):
            echo(f"  {symbol}: {'; '.join(reasons)}")
