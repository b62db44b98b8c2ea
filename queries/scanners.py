"""Named scanner SQL (queries/sql/*.sql) and the guarded runner behind `harvest query`.

A scanner file opens with a comment block: what it answers, then one line per parameter,
`--   $name = default   meaning` (default is a literal; NULL means "not set"). Callers pass values
by name; unknown names are refused so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from queries.connection import connect

Connection = duckdb.DuckDBPyConnection
Relation = duckdb.DuckDBPyRelation

SQL_DIR = Path(__file__).with_name("sql")
_PARAM_LINE = re.compile(r"^--\s+\$(\w+)\s*=\s*('[^']*'|\S+)\s*(.*)$")


class ScannerError(ValueError):
    """Unknown scanner or parameter, or a refused statement; the message names the culprit."""


@dataclass(frozen=True)
class Scanner:
    """One named SQL file: its text, its documentation and its parameters' defaults."""

    name: str
    sql: str
    doc: str
    defaults: dict[str, str | None]


def _literal(text: str) -> str | None:
    if text.upper() == "NULL":
        return None
    return text[1:-1] if text.startswith("'") and text.endswith("'") else text


def load(name: str) -> Scanner:
    """The scanner `name` (file stem under queries/sql/)."""
    path = SQL_DIR / f"{name}.sql"
    if not re.fullmatch(r"\w+", name) or not path.is_file():
        raise ScannerError(f"no scanner named {name!r}; known: {', '.join(names())}")
    sql = path.read_text()
    header = []
    for line in sql.splitlines():
        if not line.startswith("--"):
            break
        header.append(line)
    defaults = {m[1]: _literal(m[2]) for m in map(_PARAM_LINE.match, header) if m}
    doc = "\n".join(line[2:].strip() for line in header)
    return Scanner(name, sql, doc, defaults)


def names() -> list[str]:
    """Every scanner name, sorted."""
    return sorted(p.stem for p in SQL_DIR.glob("*.sql"))


def bind(scanner: Scanner, params: dict[str, Any]) -> dict[str, Any]:
    """Defaults overridden by `params`; unknown parameter names raise ScannerError."""
    unknown = sorted(set(params) - set(scanner.defaults))
    if unknown:
        known = ", ".join(f"${k}" for k in scanner.defaults) or "none"
        raise ScannerError(f"scanner {scanner.name!r} has no parameter ${unknown[0]}; it takes: {known}")
    return {**scanner.defaults, **params}


_EXPLAIN_PREFIX = re.compile(r"^\s*(?:--[^\n]*\n\s*)*EXPLAIN\s+(?:ANALYZE\s+)?(?:\(\s*(?:FORMAT|ANALYZE)\b[^)]*\)\s*)?", re.IGNORECASE)


_INSTALL = re.compile(r"^\s*(?:--[^\n]*\n\s*)*(?:FORCE\s+)?INSTALL\b", re.IGNORECASE)
# DuckDB types a PIVOT whose columns come from the data as MULTI (it first reads the distinct values into an
# enum type of the connection's memory, then selects): a read, however it is typed
_PIVOT = re.compile(r"^\s*(?:--[^\n]*\n\s*)*PIVOT(?:_WIDER)?\b", re.IGNORECASE)


def check_read_only(sql: str) -> None:
    """Refuse anything but SELECT (or EXPLAIN of a SELECT: EXPLAIN ANALYZE runs its statement).

    COPY, ATTACH, INSTALL/LOAD, SET, CREATE, PRAGMA, CALL, ... are all refused by statement type.
    """
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ScannerError(f"SQL does not parse: {str(exc).splitlines()[0]}") from exc
    if not statements:
        raise ScannerError("SQL is empty")
    for st in statements:
        kind = st.type
        if kind == duckdb.StatementType.EXPLAIN:
            inner = _EXPLAIN_PREFIX.sub("", st.query, count=1)
            inner_statements = duckdb.extract_statements(inner) if inner.strip() else []
            kind = inner_statements[0].type if len(inner_statements) == 1 else duckdb.StatementType.INVALID
        if kind == duckdb.StatementType.MULTI and _PIVOT.match(st.query):
            kind = duckdb.StatementType.SELECT
        if kind != duckdb.StatementType.SELECT:
            name = "INSTALL" if _INSTALL.match(st.query) else kind.name  # DuckDB types INSTALL as LOAD
            raise ScannerError(f"refused {name} statement (only SELECT is allowed without --allow-writes)")


def run(con: Connection, name_or_sql: str, params: dict[str, Any] | None = None,
        allow_writes: bool = False) -> Relation | None:
    """Run a scanner (bare name) or SQL text on `con`; the last statement's result is returned.

    Without `allow_writes` only SELECT/EXPLAIN statements pass; the CLI also `restrict()`s `con`.
    """
    text = name_or_sql.strip()
    if re.fullmatch(r"\w+", text):
        scanner = load(text)
        sql, values = scanner.sql, bind(scanner, params or {})
    else:
        sql, values = text, dict(params or {})
    if not allow_writes:
        check_read_only(sql)
    statements = duckdb.extract_statements(sql)
    for st in statements[:-1]:
        con.execute(st.query)
    last = statements[-1].query
    used = {k: v for k, v in values.items() if re.search(rf"\${k}\b", last)}
    return con.sql(last, params=used or None)


def scan(name: str, con: Connection | None = None,
         data_dir: str | os.PathLike[str] | None = None, as_: str = "pandas", **params: Any) -> Any:
    """Run scanner `name` with `params` (notebook face of `harvest query NAME`) on `con` or a new
    `connect(data_dir)`; returns a DataFrame."""
    relation = run(con if con is not None else connect(data_dir), name, params)
    if as_ == "arrow":
        return relation.to_arrow_table()
    if as_ == "polars":
        return relation.pl()
    return relation.df()
