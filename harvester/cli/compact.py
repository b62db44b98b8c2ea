"""`harvest compact`: rewrite partitions with stray files or poor row groups into the canonical layout."""

from __future__ import annotations

from pathlib import Path

import click

from harvester.cli.exits import Exit, fail
from harvester.cli.options import data_dir_option, settings_for
from harvester.warehouse import WarehouseError, WarehouseLocked
from harvester.warehouse.compaction import compact


@click.command("compact")
@data_dir_option
@click.pass_context
def compact_command(ctx: click.Context, data_dir: Path | None) -> None:
    """Rewrite partitions with stray files or poor row groups into the canonical layout."""
    directory = settings_for(ctx, data_dir=data_dir).data_dir
    try:
        stats = compact(directory)
    except WarehouseLocked as exc:
        fail(Exit.LOCKED, f"another harvest holds the warehouse lock: {exc}")
    except WarehouseError as exc:
        fail(Exit.BAD_INPUT, str(exc))
    click.echo(f"rewrote {stats.partitions_rewritten} partition(s) ({stats.rows} rows), removed "
               f"{stats.files_removed} stray file(s) and {stats.temp_files_removed} temp file(s)")
    for path in stats.unreadable:
        click.echo(f"unreadable, left for `verify`: {path}", err=True)
