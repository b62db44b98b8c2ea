"""`harvest query | status | sql-init | plot`: the click skin over `queries` (parsing, output, exit codes).

Exit code 2 (as for the rest of `harvest`) means bad input: unknown scanner or parameter, SQL that
does not parse or fails, or a refused statement (writes, ATTACH, extensions, settings) without
--allow-writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import duckdb

from queries import scanners
from queries.connection import connect, resolve_data_dir, restrict, write_init_script
from queries.retrying import Relation

EXIT_BAD_INPUT = 2  # same meaning as harvester.cli.EXIT_BAD_INPUT
FORMATS = ("table", "csv", "json", "parquet")
data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Warehouse (default: settings, ./data)."
)


def _fail(message: str) -> None:
    click.echo(f"harvest: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _param(pair: str) -> tuple[str, str | None]:
    name, sep, value = pair.partition("=")
    if not sep or not name.strip().lstrip("$"):
        _fail(f"--param {pair!r}: expected NAME=VALUE")
    return name.strip().lstrip("$"), (None if value.upper() == "NULL" else value)


def _emit(relation: Relation, fmt: str, output: Path | None) -> None:
    if fmt == "parquet":
        if output is None:
            _fail("--format parquet needs --output FILE")
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
def query_command(name_or_sql: str | None, list_scanners: bool, params: tuple[str, ...], fmt: str,
                  output: Path | None, allow_writes: bool, data_dir: Path | None) -> None:
    """Run a named scanner (see --list) or SQL over the warehouse views (bars, coverage, gaps, ...)."""
    if list_scanners:
        for name in scanners.names():
            click.echo(scanners.load(name).doc + "\n")
        return
    if not name_or_sql:
        _fail("query needs a scanner NAME or SQL text (see --list)")
    directory = resolve_data_dir(data_dir)
    con = connect(directory)
    if not allow_writes:
        restrict(con, directory)
    try:
        relation = scanners.run(con, name_or_sql, dict(map(_param, params)), allow_writes=allow_writes)
        if relation is None:
            return
        _emit(relation, fmt, output)
    except scanners.ScannerError as exc:
        _fail(str(exc))
    except duckdb.Error as exc:
        _fail(str(exc).splitlines()[0])


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def warehouse_status(data_dir: Path | str | None = None) -> dict:
    """Per bar size: series, covered days, bars, missing sessions, files, bytes, last commit; + origin."""
    directory = resolve_data_dir(data_dir)
    meta_path = directory / "warehouse.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    rows = scanners.run(connect(directory), "status").df()
    return {
        "data_dir": str(directory),
        "simulated": meta.get("simulated"),
        "gateway": meta.get("gateway"),
        "bar_sizes": json.loads(rows.to_json(orient="records", date_format="iso")),
    }


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@data_dir_option
def status_command(as_json: bool, data_dir: Path | None) -> None:
    """What the warehouse holds, per bar size, readable in five seconds."""
    report = warehouse_status(data_dir)
    if as_json:
        click.echo(json.dumps(report, indent=1))
        return
    origin = {True: "SIMULATED", False: "real"}.get(report["simulated"], "unknown origin")
    click.echo(f"{report['data_dir']}  ({origin}{', ' + report['gateway'] if report['gateway'] else ''})")
    if not report["bar_sizes"]:
        click.echo("empty warehouse: no bars yet")
        return
    head = f"{'bar size':9} {'series':>6} {'from':>10} {'to':>10} {'bars':>12} {'missing':>7} {'files':>5} "
    click.echo(head + f"{'size':>9}  last commit (UTC)")
    for r in report["bar_sizes"]:
        click.echo(
            f"{r['bar_size']:9} {r['series']:>6} {(r['first_day'] or '-')[:10]:>10} {(r['last_day'] or '-')[:10]:>10} "
            f"{r['bars']:>12,} {r['missing_sessions']:>7} {r['files']:>5} {_human_bytes(r['bytes']):>9}  "
            f"{(r['last_commit'] or '-')[:19]}"
        )


@click.command("sql-init")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("harvest_init.sql"),
              show_default=True, help="Init script for `duckdb -init FILE`.")
@data_dir_option
def sql_init_command(output: Path, data_dir: Path | None) -> None:
    """Write a DuckDB CLI init script creating the same views (absolute paths)."""
    script = write_init_script(output, resolve_data_dir(data_dir))
    click.echo(f"wrote {script}; run: duckdb -init {script}")


@click.command("plot")
@click.argument("kind", type=click.Choice(["coverage", "candles"]))
@click.option("--symbol", help="Symbol (candles: required; coverage: optional filter).")
@click.option("--bar-size", default="1 day", show_default=True, help="IB bar size.")
@click.option("--start", help="First instant (UTC date or time); default: all.")
@click.option("--end", help="Last instant, excluded; default: all.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="PNG path (default KIND.png).")
@data_dir_option
def plot_command(kind: str, symbol: str | None, bar_size: str, start: str | None, end: str | None,
                 output: Path | None, data_dir: Path | None) -> None:
    """Coverage heat map (series × time) or candlesticks of one symbol, to PNG."""
    from queries import plot

    target = output or Path(f"{kind}.png")
    try:
        if kind == "candles":
            if not symbol:
                _fail("plot candles needs --symbol")
            plot.candles(symbol, target, bar_size=bar_size, start=start, end=end, data_dir=data_dir)
        else:
            plot.coverage_map(target, bar_size=bar_size, symbol=symbol, data_dir=data_dir)
    except (plot.PlotError, ValueError) as exc:
        _fail(str(exc))
    click.echo(f"wrote {target}")


COMMANDS = (query_command, status_command, sql_init_command, plot_command)
