"""What a notebook user meets first (issue 11): a typo'd warehouse is an error, every view has its columns
when empty, importing the harvester leaves the process's logging alone, `connect()` is DuckDB's own.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import traceback
from pathlib import Path

import duckdb
import pytest

import queries
from harvester import WarehouseError
from tests.helpers.gateways import next_client_id
from tests.helpers.reference import Span, reference_dir

SPAN = Span(("AAPL", "MSFT"))


def test_a_warehouse_that_does_not_exist_is_an_error_not_an_empty_one(tmp_path: Path) -> None:
    typo = tmp_path / "typo"
    with pytest.raises(WarehouseError, match="does not exist"):
        queries.connect(typo)
    with pytest.raises(WarehouseError, match="does not exist"):
        queries.bars("AAPL", data_dir=typo)
    with pytest.raises(WarehouseError, match="does not exist"):
        queries.write_init_script(tmp_path / "init.sql", typo)
    assert not typo.exists()


def _schemas(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, str]]]:
    names = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                       "WHERE table_name <> 'harvest_source'").fetchall()]
    # as sets: the hive partition columns of `bars_files` come in the files' order, not the schema's
    return {n: sorted((r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM {n}").fetchall()) for n in names}


def test_every_view_has_its_full_schema_when_empty(tmp_path: Path) -> None:
    """The columns (and types) of every view over an empty warehouse equal those over a harvested one, e.g.
    `select bar_size, what_to_show, quarantined_at from quarantine` works before anything is quarantined."""
    empty = _schemas(queries.connect(tmp_path))
    full = _schemas(queries.connect(reference_dir(SPAN)))
    assert set(empty) == set(full) and len(empty) > 15
    assert {n: c for n, c in empty.items() if c != full[n]} == {}
    con = queries.connect(tmp_path)
    assert con.execute("SELECT bar_size, what_to_show, quarantined_at FROM quarantine").fetchall() == []


def test_importing_the_harvester_leaves_ib_insyncs_loggers_alone() -> None:
    """A notebook's own ib_insync errors still reach its logging; only the harvester's clients are quiet."""
    code = ("import logging, harvester, queries; from harvester.ib.client import IBSource; from ib_insync import IB; "
            "ours = IBSource('127.0.0.1', 1, 1).ib; theirs = IB(); "
            "print(logging.getLogger('ib_insync').level, theirs.wrapper._logger.isEnabledFor(logging.ERROR), "
            "ours.wrapper._logger.isEnabledFor(logging.ERROR), ours.client.decoder.logger.isEnabledFor(logging.ERROR))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == [str(logging.NOTSET), "True", "False", "False"], out.stderr


def test_connect_is_duckdbs_own_connection_and_its_tracebacks_are_duckdbs(tmp_path: Path) -> None:
    con = queries.connect(tmp_path)
    assert isinstance(con, duckdb.DuckDBPyConnection)
    with pytest.raises(duckdb.BinderException) as caught:
        con.sql("SELECT no_such_column FROM bars")
    frames = [f.filename for f in traceback.extract_tb(caught.value.__traceback__)]
    assert not [f for f in frames if f"{Path('queries')}" in f and "test_" not in f], frames


def _fetch(gateway, data_dir: Path, symbols, start: str, end: str):
    return queries.bars(symbols, "1 day", start, end, fetch="missing", host="127.0.0.1", port=gateway.port,
                        client_id=next_client_id(), data_dir=data_dir,
                        job_options={"pacing_scale": 0.01})


def test_a_future_range_is_decided_by_the_gateways_now_and_says_so(tmp_path: Path, make_gateway) -> None:
    """The simulator's now is 2024-06-14; the local clock's (2026) would call 2025 the past."""
    gateway = make_gateway()
    for start, end in (("2025-01-02", "2025-02-01"), ("2030-01-01", "2030-02-01")):
        with pytest.raises(queries.BarsRequestError, match=r"2\d\d\d-01-0\d is in the future \(the gateway's now "
                                                            r"is 2024-06-14 20:00 UTC\)"):
            _fetch(gateway, tmp_path, ["AAPL"], start, end)


def test_a_failed_symbol_warns_and_the_found_ones_come_back(tmp_path: Path, make_gateway) -> None:
    gateway = make_gateway()
    with pytest.warns(queries.FetchWarning, match="NOPE: unknown contract") as caught:
        df = _fetch(gateway, tmp_path, ["NOPE", "AAPL"], "2024-06-03", "2024-06-08")
    assert sorted(set(df.symbol)) == ["AAPL"] and len(df) == 5
    (warning,) = [w.message for w in caught if isinstance(w.message, queries.FetchWarning)]
    assert list(warning.failures) == ["NOPE"]
