"""`harvest migrate`: convert a warehouse in the old file layout to Delta tables, in place, nothing refetched."""

from __future__ import annotations

import click

from harvester.cli.exits import warehouse_errors
from harvester.cli.options import data_dir_option, settings_for
from harvester.warehouse.migrate import migrate


@click.command("migrate")
@data_dir_option
@click.pass_context
def migrate_command(ctx: click.Context, data_dir: str | None) -> None:
    """Convert the warehouse to Delta tables (safe to rerun; old files go only after the new are committed)."""
    directory = settings_for(ctx, data_dir=data_dir).data_dir
    with warehouse_errors():
        stats = migrate(directory)
    if not stats.migrated:
        click.echo(f"{directory}: already Delta tables, nothing to do")
        return
    tables = ", ".join(f"{name} {rows:,}" for name, rows in stats.rows_by_table.items())
    click.echo(f"{directory}: converted {stats.bar_files} bars file(s) to Delta tables (rows: {tables})")
