"""The `harvest` command: a thin click skin over the Python API (parsing, output, exit codes).

`harvest --universe FILE` is the nightly job itself (the group's own options); everything else is a
subcommand registered at the bottom.

Exit codes:
  0  every series is complete
  1  some series failed (the summary lists them by symbol with the reason)
  2  bad input or configuration (options, universe file, harvest.toml, warehouse) — nothing touched
  3  no IB gateway reachable at host:port
  4  another harvest holds the warehouse lock
  5  the client id is in use by another API client (error 326)
130  interrupted (Ctrl-C); whatever was staged is committed by the next run
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import click

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_UNREACHABLE, EXIT_LOCKED, EXIT_CLIENT_ID = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130  # Ctrl-C, the shell's convention
# --sim: the S&P 500 daily backfill (503 requests = 9 windows of 3 s, floor 24 s) in about a minute; the
# rest is qualification (ib_insync sends at most 45 messages/s), decoding 3.6 M bars and the commit.
SIM_PACING_SCALE = 0.005
# The in-process gateway competes with the harvester for the GIL, so its arrival stamps trail our send
# times by up to a few generation times: a wider margin than a separate gateway process needs.
SIM_SAFETY_S = 0.5


class StartType(click.ParamType):
    """`head` (earliest available, the default) or a date YYYY-MM-DD."""

    name = "head|YYYY-MM-DD"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, date) or value == "head":
            return value
        try:
            return date.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not 'head' or a date YYYY-MM-DD", param, ctx)


class HarvestGroup(click.Group):
    """Usage errors of the group's own options print as one line (no usage block), exit 2."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            exc.ctx = None
            raise


def _fail(code: int, message: str) -> None:
    click.echo(f"harvest: {message}", err=True)
    sys.exit(code)


@click.group(cls=HarvestGroup, invoke_without_command=True)
@click.option("--universe", type=click.Path(dir_okay=False, path_type=Path), help="Universe CSV (symbol column).")
@click.option("--bar-size", "bar_sizes", multiple=True, help="IB bar size, repeatable (default '1 day').")
@click.option("--what", "what_to_show", help="whatToShow (default TRADES).")
@click.option("--start", type=StartType(), default="head", show_default=True, help="'head' or YYYY-MM-DD.")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), help="Last day (default: the gateway's now).")
@click.option("--rth/--all-hours", "use_rth", default=None, help="Regular trading hours only (default).")
@click.option("--host", help="Gateway host (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Gateway port (default 7497).")
@click.option("--client-id", type=click.IntRange(min=0), help="API client id (default 17).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Warehouse (default ./data).")
@click.option("--plan", "plan_only", is_flag=True, help="Print the request count and ETA; fetch nothing.")
@click.option("--sim", is_flag=True, help="Harvest from an in-process simulated gateway.")
@click.option("--pacing-scale", type=click.FloatRange(min=0, min_open=True), help="Scale IB's pacing windows.")
@click.option("--sim-now", help="With --sim: the simulated clock's start (ISO 8601; default: real time).")
@click.pass_context
def main(ctx: click.Context, universe: Path | None, sim: bool, sim_now: str | None, **options) -> None:
    """Harvest historical bars from IB into a local Parquet warehouse.

    The nightly job: `harvest --universe universes/sp500.csv`. Exit codes: 0 success, 1 some series
    failed, 2 bad input/config, 3 gateway unreachable, 4 warehouse locked, 5 client id in use.
    """
    if ctx.invoked_subcommand is not None:
        return
    if universe is None:
        if any(v not in (None, (), False, "head") for v in options.values()) or sim:
            _fail(EXIT_BAD_INPUT, "--universe FILE is required")
        click.echo(ctx.get_help())
        return
    sys.exit(_run(universe, sim, sim_now, **options))


def _run(universe: Path, sim: bool, sim_now: str | None, **options) -> int:
    from harvester.ib.client import ClientIdInUse, GatewayUnreachable
    from harvester.job import HarvestConfigError, HarvestJob, run_harvest
    from harvester.settings import ConfigError, load_settings
    from harvester.universe import UniverseError, load_universe
    from harvester.warehouse.lock import WarehouseLocked
    from harvester.warehouse.store import WarehouseError

    if sim_now and not sim:
        _fail(EXIT_BAD_INPUT, "--sim-now needs --sim")
    start, end, pacing_scale = options.pop("start"), options.pop("end"), options.pop("pacing_scale")
    plan_only = options.pop("plan_only")
    try:
        settings = load_settings(options)
        specs = load_universe(universe)
    except (ConfigError, UniverseError) as exc:
        _fail(EXIT_BAD_INPUT, str(exc))
    scale = pacing_scale or (SIM_PACING_SCALE if sim else 1.0)
    job = HarvestJob(
        universe=specs, data_dir=settings.data_dir, bar_sizes=settings.bar_sizes,
        what_to_show=settings.what_to_show, start=None if start == "head" else start,
        end=end.date() if end else None, use_rth=settings.use_rth, host=settings.host, port=settings.port,
        client_id=settings.client_id, sim=sim, pacing_scale=scale, commit_every_s=settings.commit_every_s,
        target_bars=settings.target_bars, plan_only=plan_only, max_in_flight=settings.max_in_flight,
        **({"min_safety_s": SIM_SAFETY_S} if sim else {}),
    )
    try:
        job.validate()
    except HarvestConfigError as exc:
        _fail(EXIT_BAD_INPUT, str(exc))
    try:
        with _gateway(job, sim, sim_now, scale), _progress_bar() as progress:
            report = run_harvest(job, progress)
    except HarvestConfigError as exc:
        _fail(EXIT_BAD_INPUT, str(exc))
    except WarehouseLocked as exc:
        _fail(EXIT_LOCKED, f"another harvest holds the warehouse lock: {exc}")
    except WarehouseError as exc:
        _fail(EXIT_BAD_INPUT, str(exc))
    except GatewayUnreachable as exc:
        _fail(EXIT_UNREACHABLE, str(exc))
    except ClientIdInUse as exc:
        _fail(EXIT_CLIENT_ID, str(exc))
    except KeyboardInterrupt:
        _fail(EXIT_INTERRUPTED, "interrupted; answers already staged are committed by the next run")
    _print_summary(report, plan_only)
    return EXIT_FAILED if report.failures and not plan_only else EXIT_OK


@contextlib.contextmanager
def _gateway(job, sim: bool, sim_now: str | None, scale: float) -> Iterator[None]:
    """With --sim: a simulated gateway in this process; the job is pointed at it."""
    if not sim:
        yield
        return
    from harvester.sim import SimConfig, SimGateway

    try:
        job.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail(EXIT_BAD_INPUT, f"--data-dir {job.data_dir}: {exc.strerror or exc}")
    config = SimConfig(host="127.0.0.1", port=0, now=sim_now, pacing_scale=scale,
                       journal_path=job.data_dir / "sim-journal.jsonl")
    with SimGateway(config).running_in_thread() as gateway:
        job.host, job.port = "127.0.0.1", gateway.port
        yield


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
        echo(f"ETA under IB's pacing limits: {_duration(report.eta_s)} (nothing fetched)")
        if report.unplanned:
            echo(f"{report.unplanned} series start at their head timestamp: their bars are planned once it is known")
    else:
        echo(f"series complete: {report.series_complete}/{report.series_total}")
        echo(f"bars written: {report.bars_written:,}")
        if report.bars_quarantined:
            echo(f"bars quarantined: {report.bars_quarantined:,} (see the quarantine view)")
        for path in report.corrupt_files:
            echo(f"corrupt file quarantined and refetched: {path}")
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(report.requests_by_outcome.items())) or "none"
        echo(f"requests by outcome: {outcomes}")
        echo(f"pacing violations: {report.violations}, retries: {report.retries}, "
             f"reconnects: {report.reconnects}, wall time: {_duration(report.wall_s)}")
    if report.failures:
        echo(f"failed ({len(report.failures)} symbols):")
        for symbol, reasons in sorted(report.failures.items()):
            echo(f"  {symbol}: {'; '.join(reasons)}")


# Subcommands register below, one line each, from the module that owns them.
main.add_command(__import__("harvester.sim.cli", fromlist=["sim_command"]).sim_command)
main.add_command(__import__("harvester.warehouse.compaction", fromlist=["compact_command"]).compact_command)
[main.add_command(c) for c in __import__("queries.cli", fromlist=["COMMANDS"]).COMMANDS]
