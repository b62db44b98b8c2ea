"""The `harvest` command: a thin click skin over the Python API (parsing, output, exit codes).

`harvest --universe FILE` is the nightly job itself (the group's own options, `cli/harvest.py`); every
other verb is a subcommand in a module of its own, registered below. Exit codes: `cli/exits.py`.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import click

from harvester.cli.compact import compact_command
from harvester.cli.exits import Exit, fail, interrupted, sigterm_as_interrupt
from harvester.cli.harvest import run_nightly_job
from harvester.cli.migrate import migrate_command
from harvester.cli.options import group_options_for_subcommand
from harvester.cli.plot import plot_command
from harvester.cli.query import query_command
from harvester.cli.sim import sim_command
from harvester.cli.sql_init import sql_init_command
from harvester.cli.status import status_command
from harvester.cli.verify import verify_command
from harvester.simulated import SIM_PACING_SCALE


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
    """Usage errors of the group's own options print as one line (no usage block), exit 2. SIGTERM is
    handled as Ctrl-C by every verb: one line and exit 143 (130 for Ctrl-C), never a silent death."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            exc.ctx = None
            raise

    def invoke(self, ctx):
        try:
            with sigterm_as_interrupt():
                return super().invoke(ctx)
        except KeyboardInterrupt:
            interrupted()


@click.group(cls=HarvestGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--universe", type=click.Path(dir_okay=False, path_type=Path), help="Universe CSV (symbol column).")
@click.option("--bar-size", "bar_sizes", multiple=True, help="IB bar size, repeatable (default '1 day').")
@click.option("--what", "what_to_show", help="whatToShow (default: each class's own, TRADES; MIDPOINT for CASH, CFD).")
@click.option("--start", type=StartType(), default="head", show_default=True, help="'head' or YYYY-MM-DD: the exchange date of the first session.")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), help="Exchange date of the last session, included (default: the gateway's now).")
@click.option("--rth/--all-hours", "use_rth", default=None, help="Regular trading hours only (default).")
@click.option("--adjusted", is_flag=True, default=None,
              help="Also keep a split- and dividend-adjusted (ADJUSTED_LAST) daily series: the adjusted_bars view.")
@click.option("--host", help="Gateway host (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Gateway port (default 7497).")
@click.option("--client-id", type=click.IntRange(min=0), help="API client id (default 17).")
@click.option("--data-dir", type=str, help="Warehouse: a folder or s3://bucket/prefix (default ./data).")
@click.option("--plan", "plan_only", is_flag=True, help="Print the request count and ETA; fetch nothing.")
@click.option("--sim", is_flag=True,
              help=f"Harvest from an in-process simulated gateway; its pacing runs {SIM_PACING_SCALE:g}× IB's windows "
                   "(600 s become 3 s) unless --pacing-scale says otherwise.")
@click.option("--pacing-scale", type=click.FloatRange(min=0, min_open=True),
              help="Scale IB's pacing windows (below 1 only for the simulator: a real gateway enforces IB's).")
@click.option("--pacing", type=click.Choice(["strict", "adaptive"]),
              help="strict (default): IB's hard rules for every request; adaptive: bars of 1 min and up at a rate "
                   "that follows IB's answer times (back to strict on a pacing violation).")
@click.option("--sim-now", help="With --sim: the simulated clock's start (ISO 8601; default: real time).")
@click.option("--sim-journal", type=click.Path(dir_okay=False),
              help="With --sim: append the simulator's request journal (JSON lines) to this file.")
@click.pass_context
def main(ctx: click.Context, universe: Path | None, sim: bool, sim_now: str | None, **options) -> None:
    """Harvest historical bars from IB into a local Parquet warehouse.

    The nightly job: `harvest --universe universes/sp500.csv`. Exit codes: 0 success, 1 some series
    failed, 2 bad input/config, 3 gateway unreachable, 4 warehouse locked (migrate), 5 client id in use,
    130 interrupted (Ctrl-C), 143 terminated (SIGTERM); staged answers are committed by the next run.
    """
    if ctx.invoked_subcommand is not None:
        given = {"universe": universe, "sim": sim, "sim_now": sim_now, **options}
        ctx.obj = {"settings": group_options_for_subcommand(ctx, given, usable={"data_dir"})}
        return
    if universe is None:
        if any(v not in (None, (), False, "head") for v in options.values()) or sim:
            fail(Exit.BAD_INPUT, "--universe FILE is required")
        click.echo(ctx.get_help())
        return
    sys.exit(run_nightly_job(universe, sim, sim_now, **options))


for command in (sim_command, compact_command, migrate_command, query_command, status_command, sql_init_command,
                plot_command, verify_command):
    main.add_command(command)
