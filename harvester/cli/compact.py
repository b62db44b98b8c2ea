"""`harvest compact`: one sorted data file per bars partition, then vacuum what no reader still needs."""

from __future__ import annotations

import sys

import click

from harvester.cli.exits import Exit, warehouse_errors
from harvester.cli.options import data_dir_option, settings_for
from harvester.warehouse.compaction import compact
from harvester.warehouse.damage import DAMAGED_FIX


@click.command("compact")
@data_dir_option
@click.pass_context
def compact_command(ctx: click.Context, data_dir: str | None) -> None:
    """Rewrite partitions of several files (or out of order) into one sorted file each, then vacuum.

    Exit 1 when a damaged data file kept its partition from being compacted (each is named)."""
    settings = settings_for(ctx, data_dir=data_dir)
    with warehouse_errors():
        stats = compact(settings.data_dir, retention_hours=settings.vacuum_retention_hours)
    click.echo(f"rewrote {stats.partitions_rewritten} partition(s) ({stats.rows} rows) into one sorted file each; "
               f"vacuum removed {stats.files_removed} file(s) older than {settings.vacuum_retention_hours:g} h; "
               f"bars table version {stats.version}")
    for path in stats.unreadable:
        click.echo(f"harvest: damaged data file {path}: its partition was left as it is; {DAMAGED_FIX}", err=True)
    if stats.unreadable:
        sys.exit(int(Exit.FAILED))
