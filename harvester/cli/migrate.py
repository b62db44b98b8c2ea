"""`harvest migrate`: convert a warehouse in the old file layout to Delta tables, in place, nothing refetched."""

from __future__ import annotations

import click

from harvester.cli.exits import warehouse_errors
from harvester.cli.options import data_dir_option, settings_for
from harvester.warehouse.layout import FORMAT
from harvester.warehouse.migrate import migrate


@click.command("migrate")
@data_dir_option
@click.pass_context
def migrate_command(ctx: click.Context, data_dir: str | None) -> None:
    """Convert an older warehouse to the current format in place (safe to rerun; nothing is refetched)."""
    directory = settings_for(ctx, data_dir=data_dir).data_dir
    with warehouse_errors():
        stats = migrate(directory)
    if not stats.migrated:
        click.echo(f"{directory}: already the current format, nothing to do")
        return
    tables = ", ".join(f"{name} {rows:,}" for name, rows in stats.rows_by_table.items())
    what = "to Delta tables" if stats.from_format == 1 else "with bar times UTC-aware"
    click.echo(f"{directory}: converted {stats.bar_files} bars file(s) {what}, format {FORMAT} (rows: {tables})")
