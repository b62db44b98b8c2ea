"""Re-run a read that lost a race with the harvest's atomic file replacement.

DuckDB 2.0 opens each Parquet file by path twice per query: once to bind (footer, schema) and once to scan.
When a commit or a compaction `os.replace`s a partition between the two opens, the scan decodes the new file
at the old footer's offsets and fails with a Thrift error ("TProtocolException: Invalid data", "invalid TType",
"don't know what type", ...) or "Prefetch registered for bytes outside file"; a stray file compaction deletes
between the glob and the open fails with "Cannot open file ...: No such file or directory". Both files are
whole (atomic writes), so running the read again sees one consistent version: rows are never torn.

Only those messages are retried (file errors only for paths inside the warehouse); syntax, binder and every
other error is raised at once. `RetryingConnection` / `RetryingRelation` wrap DuckDB's objects so that every
read (`sql`, `execute` + fetch, relation terminals such as `df`, `fetchall`, `to_arrow_table`, `pl`, `show`)
retries, and anything else is passed through untouched.
"""

from __future__ import annotations

import functools
import logging
import operator
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Self, TypeVar

import duckdb
from duckdb._relation import GroupedRelation

log = logging.getLogger(__name__)
T = TypeVar("T")

# Thrift decoding a footer or page header at the offsets of a file that was replaced meanwhile.
_RACE = re.compile(
    r"^(?:[A-Za-z ]+ Error: )?(?:TProtocolException: |don't know what type|invalid TType|Out of buffer"
    r"|Variable-length int over 10 bytes|Prefetch registered (?:requested )?for bytes outside file)"
)
# A warehouse file that vanished, or shrank or changed under a reader that had sized it: only inside the warehouse.
_FILE = re.compile(
    r'(?:Cannot open file "(?P<gone>[^"]+)": No such file or directory'
    r'|Could not read enough bytes from file "(?P<short>[^"]+)"'
    r'|Failed to read file "(?P<garbled>[^"]+)": \w+ [Dd]ecompression fail)'
)


def is_transient(exc: BaseException, roots: Sequence[str]) -> bool:
    """Whether `exc` is the reader/writer race that an immediate re-run fixes (see the module docstring)."""
    if not isinstance(exc, duckdb.Error):
        return False
    message = str(exc)
    if _RACE.match(message):
        return True
    found = _FILE.search(message)
    path = found and next(p for p in found.groups() if p)
    return bool(path) and any(path.startswith(root.rstrip("/") + "/") for root in roots)


@dataclass(frozen=True)
class RetryPolicy:
    """How often a transient read failure is re-run: `attempts` runs in all, waiting `delays[i]` before run i+2.

    `on_retry(attempt, exc)` is called before each re-run (attempt = the run that failed, from 1): for logs and tests.
    """

    attempts: int = 4
    delays: tuple[float, ...] = (0.0, 0.02, 0.2)
    sleep: Callable[[float], None] = time.sleep
    on_retry: Callable[[int, BaseException], None] | None = None


DEFAULT_POLICY = RetryPolicy()


def retry_reads(call: Callable[[], T], roots: Sequence[str], policy: RetryPolicy = DEFAULT_POLICY) -> T:
    """`call()`, run again while it fails with a transient error, at most `policy.attempts` runs in all."""
    attempt, first = 1, None
    while True:
        try:
            return call()
        except duckdb.Error as exc:
            if first is not None and isinstance(exc, duckdb.TransactionException):
                raise first from exc  # inside BEGIN ... COMMIT the failure aborted the transaction: no re-run
            if attempt >= policy.attempts or not is_transient(exc, roots):
                raise
            first = first or exc
            log.info("read lost a race with a warehouse commit (run %d): %s; running it again", attempt, exc)
            if policy.on_retry is not None:
                policy.on_retry(attempt, exc)
            delay = policy.delays[min(attempt - 1, len(policy.delays) - 1)] if policy.delays else 0.0
            if delay > 0:
                policy.sleep(delay)
            attempt += 1


def _rerunnable(query: object) -> bool:
    """A script may run again after a failure when it holds one statement (autocommit undid it) or only SELECTs.

    An earlier write of a multi-statement script has committed already and must not run twice.
    """
    if isinstance(query, duckdb.Statement):
        return True
    if not isinstance(query, str):
        return False
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error:
        return False
    return len(statements) <= 1 or all(s.type == duckdb.StatementType.SELECT for s in statements)


# Relation methods that are not retried: writes (their effects are not ours to repeat) and `iter_rows` (rows
# already handed out cannot be taken back). Streams (`arrow`, `to_arrow_reader`) retry their start only.
_NOT_RETRIED = frozenset({
    "create", "create_view", "insert", "insert_into", "to_csv", "to_parquet", "to_table", "to_view", "update",
    "write_csv", "write_parquet", "iter_rows", "close",
})
# Connection methods that build a relation (binding reads Parquet footers): pure, so safe to run again.
_CONNECTION_READS = frozenset({
    "table", "view", "values", "table_function", "read_parquet", "from_parquet", "read_csv", "from_csv_auto",
    "read_json", "from_df", "from_arrow",
})
# Connection methods that fetch the rows of the last `execute`.
_CONNECTION_FETCHES = frozenset({
    "fetchall", "fetchone", "fetchmany", "fetchdf", "fetch_df", "df", "fetchnumpy", "fetch_df_chunk", "torch", "tf",
    "to_arrow_table",
})
_CALL = compile("__retrying_fn__(*__retrying_args__, **__retrying_kwargs__)", "<queries.retrying>", "eval")


def _call_as(frame: FrameType, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    """`fn(*args, **kwargs)` called from a copy of the caller's namespace.

    DuckDB reads an unknown table name (`select * from df`) from the variables of the innermost frame outside its
    own package; without this, that frame would be ours and notebooks' DataFrames would not be found. Our
    wrappers in that namespace are replaced by DuckDB's objects, which it can scan.
    """
    namespace = {k: v.raw if isinstance(v, (RetryingRelation, RetryingConnection)) else v
                 for k, v in frame.f_locals.items()}
    namespace.update(__retrying_fn__=fn, __retrying_args__=args, __retrying_kwargs__=kwargs)
    return eval(_CALL, frame.f_globals, namespace)


def _unwrapped(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Arguments with our wrappers replaced by DuckDB's objects (`join`, `union`, ... check the real type)."""
    def raw(value: Any) -> Any:
        return value.raw if isinstance(value, (RetryingRelation, RetryingConnection)) else value

    return tuple(map(raw, args)), {k: raw(v) for k, v in kwargs.items()}


class RetryingConnection:
    """A DuckDB connection whose reads re-run after a transient file-replacement error; otherwise DuckDB's own.

    `raw` is the wrapped `duckdb.DuckDBPyConnection` (for APIs that insist on the real type); `data_dir` the
    warehouse its views read, when known.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, roots: Sequence[str],
                 policy: RetryPolicy = DEFAULT_POLICY, data_dir: Path | None = None) -> None:
        self.raw = con
        self.roots = tuple(str(r) for r in roots)
        self.policy = policy
        self.data_dir = data_dir
        self._pending: tuple[object, object] | None = None  # the last execute() whose rows nobody fetched yet

    def _call(self, frame: FrameType, fn: Callable[..., Any], args: tuple[Any, ...] = (),
              kwargs: dict[str, Any] | None = None, rerunnable: bool = True) -> Any:
        """`fn(*args, **kwargs)` as if called from `frame` (the user's), retried when `rerunnable`; result wrapped."""
        args, kwargs = _unwrapped(args, kwargs or {})

        def call() -> Any:
            return _call_as(frame, fn, args, kwargs)

        return self._wrap(retry_reads(call, self.roots, self.policy) if rerunnable else call())

    def _wrap(self, value: Any) -> Any:
        if value is self.raw:
            return self
        if isinstance(value, (duckdb.DuckDBPyRelation, GroupedRelation)):
            return RetryingRelation(value, self)
        if isinstance(value, duckdb.DuckDBPyConnection):
            return RetryingConnection(value, self.roots, self.policy, self.data_dir)
        return value

    def read(self, call: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """`call(raw connection)`, run again whole on a transient error: for reads that must rebuild their SQL
        (a list of files named in it may have changed)."""
        return retry_reads(lambda: call(self.raw), self.roots, self.policy)

    def sql(self, query: object, *, alias: str = "", params: object = None) -> RetryingRelation | None:
        """DuckDB's `sql`: a lazy relation for a SELECT (each read of it retries), other statements run now."""
        self._pending = None
        return self._call(sys._getframe(1), self.raw.sql, (query,), {"alias": alias, "params": params},
                          _rerunnable(query))

    query = sql
    from_query = sql

    def execute(self, query: object, parameters: object = None) -> Self:
        """DuckDB's `execute`; the fetch that follows re-runs it when the rows fail to arrive (DuckDB streams them)."""
        self._pending = None
        rerunnable = _rerunnable(query)
        self._call(sys._getframe(1), self.raw.execute, (query, parameters), rerunnable=rerunnable)
        self._pending = (query, parameters) if rerunnable else None
        return self

    def _fetch(self, name: str, *args: Any, **kwargs: Any) -> Any:
        frame = sys._getframe(1)
        pending, self._pending = self._pending, None  # only the first fetch can start over: no row came out yet
        fetch = getattr(self.raw, name)
        if pending is None:
            return self._call(frame, fetch, args, kwargs, rerunnable=False)
        runs = 0

        def run(*args: Any, **kwargs: Any) -> Any:
            nonlocal runs
            runs += 1
            if runs > 1:
                _call_as(frame, self.raw.execute, pending, {})
            return fetch(*args, **kwargs)

        return self._call(frame, run, args, kwargs)

    def cursor(self) -> RetryingConnection:
        return self._wrap(self.raw.cursor())

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        if name == "raw":  # not yet set: during unpickling or a failed __init__
            raise AttributeError(name)
        value = getattr(self.raw, name)
        if not callable(value):
            return value
        if name in _CONNECTION_FETCHES:
            return functools.wraps(value)(functools.partial(self._fetch, name))

        @functools.wraps(value)
        def method(*args: Any, **kwargs: Any) -> Any:
            return self._call(sys._getframe(1), value, args, kwargs, name in _CONNECTION_READS)

        return method

    def __repr__(self) -> str:
        return f"<RetryingConnection over {self.raw!r}>"


class RetryingRelation:
    """A DuckDB relation whose reads retry; every relation it builds (`filter`, `aggregate`, ...) does too."""

    __slots__ = ("_owner", "raw")

    def __init__(self, relation: duckdb.DuckDBPyRelation | GroupedRelation, owner: RetryingConnection) -> None:
        self.raw = relation
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        if name in RetryingRelation.__slots__:
            raise AttributeError(name)
        owner = self._owner
        value = owner._call(sys._getframe(1), getattr, (self.raw, name))  # a column, or `shape`, runs SQL
        if not callable(value) or isinstance(value, RetryingRelation):
            return value

        @functools.wraps(value)
        def method(*args: Any, **kwargs: Any) -> Any:
            return owner._call(sys._getframe(1), value, args, kwargs, name not in _NOT_RETRIED)

        return method

    def __getitem__(self, name: str) -> RetryingRelation:
        return self._owner._call(sys._getframe(1), operator.getitem, (self.raw, name))

    def __len__(self) -> int:
        return self._owner._call(sys._getframe(1), len, (self.raw,))

    def __contains__(self, name: str) -> bool:
        return name in self.raw

    def __str__(self) -> str:
        return self._owner._call(sys._getframe(1), str, (self.raw,))

    def __repr__(self) -> str:
        return self._owner._call(sys._getframe(1), repr, (self.raw,))


def retrying(con: duckdb.DuckDBPyConnection | RetryingConnection, roots: Sequence[str]) -> RetryingConnection:
    """`con` itself when it already retries, else `con` wrapped to retry with the default policy."""
    return con if isinstance(con, RetryingConnection) else RetryingConnection(con, roots)


Connection = duckdb.DuckDBPyConnection | RetryingConnection
Relation = duckdb.DuckDBPyRelation | RetryingRelation
