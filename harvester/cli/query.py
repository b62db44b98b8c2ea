"""`harvest query NAME|SQL`: a named scanner or SQL over the warehouse views, as a table, CSV, JSON or Parquet.

Fenced: the query runs in a private directory the tool creates (DuckDB's `temp_directory`, never under
the working directory) and removes afterwards, and reads only the warehouse and that directory. Files are
written by DuckDB's own writers (`COPY ... TO`), streaming: memory stays flat whatever the result's size
(rows come in the query's ORDER BY; without one, in whatever order DuckDB reads them).
The result goes into the private directory first, then is renamed onto --output (or copied to stdout).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import click
import duckdb
import pyarrow as pa

import queries
from harvester import damaged_file_in
from harvester.cli.exits import Exit, fail, warehouse_errors
from harvester.cli.options import data_dir_option, settings_for
from harvester.cli.outputs import checked_output, put_in_place
from queries import scanners

FORMATS = ("table", "csv", "json", "parquet")
COPY_OPTIONS = {"csv": "FORMAT csv, HEADER true", "json": "FORMAT json, ARRAY true",
                "parquet": "FORMAT parquet, COMPRESSION zstd"}
TABLE_ROWS = 200  # the terminal table shows this many; files take every row
CHUNK = 1 << 20


def _bad(message: str) -> None:
    fail(Exit.BAD_INPUT, message)


def _param(pair: str) -> tuple[str, str | None]:
    name, sep, value = pair.partition("=")
    if not sep or not name.strip().lstrip("$"):
        _bad(f"--param {pair!r}: expected NAME=VALUE")
    return name.strip().lstrip("$"), (None if value.upper() == "NULL" else value)


def _table(relation: queries.Relation) -> str:
    """The first TABLE_ROWS rows as text: integers stay integers (HUGEINT sums), lists print as lists."""
    rows = relation.limit(TABLE_ROWS + 1).to_arrow_table()
    if rows.num_rows == 0:
        return "(no rows)\n"
    shown = rows.slice(0, TABLE_ROWS)
    frame = shown.to_pandas()
    for name, column in zip(shown.column_names, shown.columns, strict=True):
        if pa.types.is_nested(column.type) or pa.types.is_decimal(column.type):
            frame[name] = column.to_pylist()  # Python lists and Decimals print as written
    more = ""
    if rows.num_rows > TABLE_ROWS:  # counted only when cut: the whole result is read once more
        ((total,),) = relation.aggregate("count(*)").fetchall()
        more = (f"({TABLE_ROWS} of {total:,} rows shown, {total - TABLE_ROWS:,} cut; "
                "--format csv --output FILE writes them all)\n")
    return frame.to_string(index=False) + "\n" + more


def _text_columns(relation: queries.Relation) -> str:
    """The result's columns for CSV and JSON: a TIMESTAMPTZ (`bars.ts`) as ISO 8601 UTC with `Z`
    ('2024-06-03T13:30:00Z', fractions only where there are some), whatever the session's TimeZone; the rest
    as DuckDB writes them. Parquet keeps the type itself."""
    out = []
    for name, kind in zip(relation.columns, relation.types, strict=True):
        quoted = '"' + name.replace('"', '""') + '"'
        if str(kind) != "TIMESTAMP WITH TIME ZONE":
            out.append(quoted)
            continue
        utc = f"timezone('UTC', {quoted})"
        out.append(f"CASE WHEN microsecond({utc}) % 1000000 = 0 THEN strftime({utc}, '%Y-%m-%dT%H:%M:%SZ') "
                   f"ELSE strftime({utc}, '%Y-%m-%dT%H:%M:%S.%fZ') END AS {quoted}")
    return ", ".join(out)


def _emit(con: duckdb.DuckDBPyConnection, relation: queries.Relation, fmt: str, output: Path | None,
          private: Path) -> None:
    if fmt == "table":
        text = _table(relation)
        if output is None:
            click.echo(text, nl=False)
        else:
            written = private / "result.txt"
            written.write_text(text)
            put_in_place(written, output)
        return
    twice = [name for name, n in Counter(relation.columns).items() if n > 1]
    if twice:
        _bad(f"column {twice[0]!r} appears twice in the result; rename one (... AS other_name) for --format {fmt}")
    written = private / f"result.{fmt}"
    con.register("harvest_result", relation)  # a view; a PIVOT's relation is already read, which create_view refuses
    columns = "*" if fmt == "parquet" else _text_columns(relation)
    con.execute(f"COPY (SELECT {columns} FROM harvest_result) TO {queries.sql_literal(written)} ({COPY_OPTIONS[fmt]})")
    if output is not None:
        put_in_place(written, output)
        return
    sys.stdout.flush()
    out = sys.stdout.buffer
    with written.open("rb") as f:
        while chunk := f.read(CHUNK):
            out.write(chunk)
    out.flush()


@click.command("query")
@click.argument("name_or_sql", required=False)
@click.option("--list", "list_scanners", is_flag=True, help="List the named scanners and their parameters.")
@click.option("--param", "params", multiple=True, help="Scanner parameter NAME=VALUE (repeatable; NULL unsets).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--output", type=click.Path(path_type=Path), help="Write here instead of stdout.")
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
    if fmt == "parquet" and output is None:
        _bad("--format parquet needs --output FILE")
    target = checked_output(output) if output is not None else None
    directory = queries.resolve_data_dir(settings_for(ctx, data_dir=data_dir).data_dir)
    with warehouse_errors():
        con = queries.connect(directory)
    # beside the output, so the finished file is renamed into place on one file system
    private = Path(tempfile.mkdtemp(prefix=".harvest-query-", dir=target.parent if target else None))
    try:
        # rows stream to the writer instead of being held to keep an order no ORDER BY asked for (measured:
        # 3 M rows to CSV peaked 200 MB above the interpreter with it on, 15 MB with it off; bench/query_output.py)
        con.execute("SET preserve_insertion_order = false")
        queries.limit_memory(con)
        queries.fence(con, directory, private, lock_down=not allow_writes)
        relation = scanners.run(con, name_or_sql, dict(map(_param, params)), allow_writes=allow_writes)
        if relation is not None:
            _emit(con, relation, fmt, target, private)
    except scanners.ScannerError as exc:
        _bad(str(exc))
    except duckdb.Error as exc:
        _bad(str(damaged_file_in(exc, directory) or str(exc).splitlines()[0]))
    finally:
        con.close()
        shutil.rmtree(private, ignore_errors=True)
