"""The `harvest` command: a thin click skin over the Python API (parsing, output, exit codes)."""

from __future__ import annotations

import click


@click.group(invoke_without_command=True)
@click.pass_context
def main(ctx: click.Context) -> None:
    """Harvest historical bars from IB into a local Parquet warehouse."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


# Subcommands register below, one line each, from the module that owns them.
main.add_command(__import__("harvester.sim.cli", fromlist=["sim_command"]).sim_command)
