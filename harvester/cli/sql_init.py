"""`harvest sql-init`: a DuckDB CLI init script with the same views as `queries.connect()`."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from harvester.cli.exits import warehouse_errors
from harvester.cli.options import data_dir_option, settings_for
from harvester.cli.outputs import checked_output
from queries import resolve_data_dir, write_init_script


@click.command("sql-init")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("harvest_init.sql"),
              show_default=True, help="Init script for `duckdb -init FILE`.")
@data_dir_option
@click.pass_context
def sql_init_command(ctx: click.Context, output: Path, data_dir: str | None) -> None:
    """Write a DuckDB CLI init script creating the same views (absolute paths).

    The script is the warehouse's snapshot of the moment, gaps included: to see later commits, run
    sql-init again and `.read FILE` in the open CLI (or restart it with -init)."""
    target = checked_output(output)
    with warehouse_errors():
        script = write_init_script(target, resolve_data_dir(settings_for(ctx, data_dir=data_dir).data_dir))
    click.echo(f"wrote {script}; run: duckdb -init {shlex.quote(str(script))}  "
               "(to see later commits: rerun this, then .read the script in the open CLI)")
