"""`harvest verify`: read back every data file of the warehouse's current snapshot; list the damaged ones."""

from __future__ import annotations

import sys

import click

from harvester.cli.exits import Exit, warehouse_errors
from harvester.cli.options import data_dir_option, settings_for
from harvester.warehouse.damage import DAMAGED_FIX, damaged_files
from queries import existing_warehouse, resolve_data_dir


@click.command("verify")
@data_dir_option
@click.pass_context
def verify_command(ctx: click.Context, data_dir: str | None) -> None:
    """Read every data file of the current snapshot whole; list the damaged ones. Changes nothing.

    Exit 0 when every file reads, 1 when some are damaged (each named, with the fix), 2 for a data dir
    that does not exist."""
    with warehouse_errors():
        directory = existing_warehouse(resolve_data_dir(settings_for(ctx, data_dir=data_dir).data_dir))
        checked, damaged = damaged_files(directory)
    for d in damaged:
        click.echo(f"damaged: {d.path} ({d.table} table): {d.error}")
    click.echo(f"checked {checked} data file(s): {len(damaged)} damaged")
    if damaged:
        click.echo(f"harvest: {DAMAGED_FIX}", err=True)
        sys.exit(int(Exit.FAILED))
