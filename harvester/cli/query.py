"""`harvest query NAME|SQL`: a named scanner or SQL over the warehouse views, as a table, CSV, JSON or Parquet."""

from __future__ import annotations

from pathlib import Path

import click
import duckdb

import queries
from harvester.cli.exits import Exit, fail, warehouse_errors
from harvester.cli.options import data_dir_option, settings_for
from queries import scanners

FORMATS = ("table", "csv", "json", "parquet")


def _bad(message: str) -> None:
    fail(Exit.BAD_INPUT, message)


def _param(pair: str) -> tuple[str, str | None]:
    name, sep, value = pair.partition("=")
    if not sep or not name.strip().lstrip("$"):
        _bad(f"--param {pair!r}: expected NAME=VALUE")
    return name.strip().lstrip("$"), (None if value.upper() == "NULL" else value)


def _emit(relation: queries.Relation, fmt: str, output: Path | None) -> None:
    if fmt == "parquet":
        if output is None:
            _bad("--format parquet needs --output FILE")
        relation.to_arrow_table().to_pandas().to_parquet(output, index=False)
        return
    frame = relation.df()
    if fmt == "csv":
        text = frame.to_csv(index=False)
    elif fmt == "json":
        text = frame.to_json(orient="records", date_format="iso", indent=1) + "\n"
    else:
        text = frame.to_string(index=False, max_rows=200) + "\n" if len(frame) else "(no rows)\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)


@click.command("query")
@click.argument("name_or_sql", required=False)
@click.option("--list", "list_scanners", is_flag=True, help="List the named scanners and their parameters.")
@click.option("--param", "params", multiple=True, help="Scanner parameter NAME=VALUE (repeatable; NULL unsets).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
@click.option("--allow-writes", is_flag=True, help="Allow COPY, ATTACH, SET, ... and files outside the warehouse.")
@data_dir_option
@click.pass_context
def query_command(ctx: click.Context, name_or_sql: str | None, list_scanners: bool, params: tuple[str, ...],
                  fmt: str, output: Path | None, allow_writes: bool, data_dir: str | None) -> None:
    """Run a named scanner (see --list) or SQL over the warehouse views (bars, coverage, gaps, ...)."""
    if list_scanners:
        for name in scanners.names():
            click.echo(scanners.load(name).doc + "\n")
        return
    if not name_or_sql:
        _bad("query needs a scanner NAME or SQL text (see --list)")
    directory = queries.resolve_data_dir(settings_for(ctx, data_dir=data_dir).data_dir)
    with warehouse_errors():
        con = queries.connect(directory)
    if not allow_writes:
        queries.restrict(con, directory)
    try:
        relation = scanners.run(con, name_or_sql, dict(map(_param, params)), allow_writes=allow_writes)
        if relation is None:
            return
        _emit(relation, fmt, output)
    except scanners.ScannerError as exc:
        _bad(str(exc))
    except duckdb.Error as exc:
        _bad(str(exc).splitlines()[0])
