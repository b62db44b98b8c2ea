"""Reliability helpers: a fault-free reference harvest (built once per process) and a row-for-row diff.

The simulated gateway is deterministic for a given "now", so the same universe, bar size and span
harvested without faults is the exact answer every faulted, crashed or concurrent run must reproduce:
nothing lost, nothing duplicated, no value different.

    spec = Span(("AAPL", "MSFT"))
    expected = reference_dir(spec)                  # cached per process
    assert compare(data_dir, expected).clean
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from deltalake import DeltaTable

from harvester import layout
from harvester.ib.scheduler import RetryPolicy, TimeoutPolicy
from harvester.job import HarvestJob, HarvestReport, run_harvest
from harvester.model import ContractSpec
from harvester.sim import SimConfig, SimGateway
from tests.helpers.gateways import PACING_SCALE, SIM_NOW

FAST_RETRY = RetryPolicy(max_attempts=8, backoff_s=0.02, backoff_max_s=0.2, reconnect_attempts=8)
SHORT_TIMEOUTS = TimeoutPolicy(base_s=1.0, per_bar_s=0.001, head_s=1.0)
VALUE_COLUMNS = ("symbol", "session_date", "open", "high", "low", "close", "volume", "wap", "bar_count")
KEY_COLUMNS = ("con_id", "bar_size", "what_to_show", "use_rth", "ts")


@dataclass(frozen=True)
class Span:
    """What to harvest: a small universe, intraday bars over a few weeks (several requests per series)."""

    symbols: tuple[str, ...]
    bar_size: str = "30 mins"
    start: date = date(2024, 5, 1)
    end: date = date(2024, 6, 13)
    target_bars: int = 120

    def job(self, data_dir: Path, port: int, client_id: int, **overrides) -> HarvestJob:
        """A HarvestJob for this span against a gateway on loopback `port`, tuned for fast tests."""
        settings = {
            "universe": [ContractSpec(s, line=i + 2) for i, s in enumerate(self.symbols)],
            "data_dir": data_dir, "bar_sizes": (self.bar_size,), "start": self.start, "end": self.end,
            "target_bars": self.target_bars, "port": port, "client_id": client_id,
            "pacing_scale": PACING_SCALE, "retry": FAST_RETRY, "commit_every_s": 0.2,
        }
        return HarvestJob(**{**settings, **overrides})

    def cli_args(self) -> list[str]:
        """The same span as `harvest` options (target_bars goes in harvest.toml: see `write_toml`)."""
        return ["--bar-size", self.bar_size, "--start", self.start.isoformat(), "--end", self.end.isoformat()]

    def universe_csv(self) -> str:
        return "symbol\n" + "".join(f"{s}\n" for s in self.symbols)

    def without(self, *symbols: str) -> Span:
        return Span(tuple(s for s in self.symbols if s not in symbols), self.bar_size, self.start, self.end,
                    self.target_bars)


def write_toml(directory: Path, span: Span, commit_every_s: float = 0.2) -> Path:
    """A harvest.toml in `directory` so CLI runs started there plan like `span.job(...)`."""
    path = directory / "harvest.toml"
    path.write_text(f"commit_every_s = {commit_every_s}\ntarget_bars = {span.target_bars}\n")
    return path


def harvest_with(gateway: SimGateway, data_dir: Path, span: Span, client_id: int, progress=None,
                 **overrides) -> HarvestReport:
    """Run the harvest of `span` in this process against `gateway`."""
    return run_harvest(span.job(data_dir, gateway.port, client_id, **overrides), progress)


_built: dict[Span, Path] = {}


def reference_dir(span: Span) -> Path:
    """The fault-free warehouse of `span`, harvested once per process on a private gateway."""
    if span not in _built:
        root = Path(tempfile.mkdtemp(prefix="harvest-reference-"))
        atexit.register(shutil.rmtree, root, True)
        config = SimConfig(now=SIM_NOW, pacing_scale=PACING_SCALE, latency_scale=0.001)
        with SimGateway(config).running_in_thread() as gateway:
            report = harvest_with(gateway, root / "data", span, client_id=1)
        if not report.ok:
            raise AssertionError(f"the reference harvest failed: {report.failures}")
        _built[span] = root / "data"
    return _built[span]


@dataclass(frozen=True)
class Diff:
    """How a warehouse's bars differ from the reference, counted by (con_id, bar_size, what, rth, ts)."""

    expected: int
    actual: int
    lost: int  # keys in the reference, missing here
    extra: int  # keys here, absent from the reference
    duplicated: int  # rows beyond the first per key
    differing: int  # keys present in both with any value different

    @property
    def clean(self) -> bool:
        return self.lost == self.extra == self.duplicated == self.differing == 0 and self.expected == self.actual


def _bars_sql(data_dir: Path) -> str:
    """The bars of the latest snapshot, read straight from the Delta log's file list (not through queries)."""
    files = DeltaTable(str(data_dir / layout.BARS)).file_uris() if (data_dir / layout.BARS / "_delta_log").is_dir() \
        else []
    if not files:
        cols = ", ".join(f"NULL AS {c}" for c in (*KEY_COLUMNS, *VALUE_COLUMNS))
        return f"SELECT {cols} WHERE false"
    listed = ", ".join(f"'{f}'" for f in files)
    return (f"SELECT * FROM read_parquet([{listed}], hive_partitioning = true, "
            "hive_types = {'bar_size': VARCHAR, 'what_to_show': VARCHAR, 'use_rth': BOOLEAN, 'period': VARCHAR})")


def _differs(column: str, rel_tol: float) -> str:
    exact = f"a.{column} IS DISTINCT FROM e.{column}"
    if not rel_tol or column in ("symbol", "session_date"):
        return exact
    return f"({exact} AND NOT coalesce(abs(a.{column} - e.{column}) <= {rel_tol} * abs(e.{column}), false))"


def compare(actual_dir: Path, expected_dir: Path, symbols: tuple[str, ...] | None = None, rel_tol: float = 0.0,
            columns: tuple[str, ...] = VALUE_COLUMNS) -> Diff:
    """Row-for-row diff of two warehouses' bars (optionally only `symbols` of the reference); `rel_tol` lets
    numbers differ by that fraction (bars rescaled by a split repair), `columns` are the values compared."""
    con = duckdb.connect()
    con.execute(f"CREATE VIEW a AS {_bars_sql(actual_dir)}")
    con.execute("CREATE TABLE wanted (symbol VARCHAR)")
    if symbols:
        con.executemany("INSERT INTO wanted VALUES (?)", [[s] for s in symbols])
    where = "" if symbols is None else "WHERE symbol IN (SELECT symbol FROM wanted)"
    con.execute(f"CREATE VIEW e AS SELECT * FROM ({_bars_sql(expected_dir)}) {where}")
    key = ", ".join(KEY_COLUMNS)
    on = " AND ".join(f"a.{c} = e.{c}" for c in KEY_COLUMNS)
    differ = " OR ".join(_differs(c, rel_tol) for c in columns)
    (expected, actual, lost, extra, duplicated, differing), = con.execute(f"""
        SELECT (SELECT count(*) FROM e), (SELECT count(*) FROM a),
          (SELECT count(*) FROM (SELECT DISTINCT {key} FROM e) e WHERE NOT EXISTS (SELECT 1 FROM a WHERE {on})),
          (SELECT count(*) FROM (SELECT DISTINCT {key} FROM a) a WHERE NOT EXISTS (SELECT 1 FROM e WHERE {on})),
          (SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) n FROM a GROUP BY {key})),
          (SELECT count(*) FROM a JOIN e ON {on} WHERE {differ})
    """).fetchall()
    return Diff(expected, actual, lost, extra, int(duplicated), differing)


def reader_hazards(data_dir: Path) -> list[str]:
    """What a reader would trip over: a data file the latest snapshot of a table lists that is missing
    or does not read whole."""
    found = []
    for name in layout.TABLES:
        if not (data_dir / name / "_delta_log").is_dir():
            continue
        try:
            files = DeltaTable(str(data_dir / name)).file_uris()
        except Exception as exc:  # noqa: BLE001 - any failure to open is the finding
            found.append(f"table {name} does not open: {exc}")
            continue
        for path in files:
            try:
                pq.read_table(path)
            except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
                found.append(f"unreadable: {path}: {exc}")
    return found
