"""`harvest migrate`: a warehouse in the old file layout becomes Delta tables row for row, nothing refetched,
safe to rerun after a crash at any transaction; the old layout is refused by every reader until then. A
format-2 warehouse (bar times naive) becomes format 3 (UTC-aware) in one transaction; writers refuse it until
then, readers read it as stored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import queries
from harvester import OldLayoutError
from harvester.cli import Exit, main
from harvester.warehouse import migrate as migrate_module
from harvester.warehouse.delta import DeltaTables
from harvester.warehouse.layout import partition_of
from harvester.warehouse.migrate import ASIDE, migrate, needs_migration
from queries.connection import snapshot_of
from tests.helpers.gateways import next_client_id
from tests.helpers.reference import Span, compare, harvest_with, reference_dir
from tests.helpers.warehouses import snapshot_files, write_format_2_bars

SPAN = Span(("AAPL", "MSFT"))


def old_layout(delta_dir: Path, old: Path) -> Path:
    """The same warehouse written the way the harvester wrote it before Delta (format 1): one Parquet file a
    partition at bars/bar_size=<label>/what_to_show=<W>/use_rth=<0|1>/year=<Y>/<data|YYYY-MM|YYYY-MM-DD>.parquet,
    one file per small table, journal files per run."""
    old.mkdir(parents=True)
    for path in snapshot_files(delta_dir):
        key = partition_of(delta_dir / "bars", Path(path))
        part = "data" if len(key.period) == 4 else key.period
        target = (old / "bars" / f"bar_size={key.label}" / f"what_to_show={key.what_to_show}"
                  / f"use_rth={int(key.use_rth)}" / f"year={key.period[:4]}" / f"{part}.parquet")
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pq.read_table(path), target)
    for name, file in (("contracts", "contracts.parquet"), ("coverage", "coverage.parquet"),
                       ("journal", "run-1-0001.parquet")):
        (old / name).mkdir()
        pq.write_table(pq.ParquetDataset(snapshot_files(delta_dir, name)).read(), old / name / file)
    meta = json.loads((delta_dir / "warehouse.json").read_text())
    (old / "warehouse.json").write_text(json.dumps({**meta, "format": 1}))
    return old


@pytest.fixture
def old(tmp_path: Path) -> Path:
    return old_layout(reference_dir(SPAN), tmp_path / "data")


def rows(data: Path, table: str) -> int:
    return queries.connect(data).execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def test_migration_is_row_for_row_and_the_next_harvest_asks_nothing(old: Path, make_gateway) -> None:
    assert needs_migration(old)
    stats = migrate(old)
    assert stats.migrated and stats.bars > 0 and not needs_migration(old)
    assert compare(old, reference_dir(SPAN)).clean
    for table in ("contracts", "coverage", "journal"):
        assert rows(old, table) == rows(reference_dir(SPAN), table)
    assert not (old / ASIDE).exists()
    assert json.loads((old / "warehouse.json").read_text())["format"] == 3  # bars written UTC-aware at once
    assert bars_type(old) == "TIMESTAMP WITH TIME ZONE"
    assert not migrate(old).migrated  # a rerun has nothing to do
    report = harvest_with(make_gateway(), old, SPAN, next_client_id())
    assert report.ok and report.plan == [] and report.head_requests == 0


@pytest.mark.parametrize("crash_at", [1, 3, 5])
def test_a_migration_killed_after_any_transaction_resumes_to_the_same_tables(old: Path, crash_at: int,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real, calls = DeltaTables.transact, []

    def dying(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == crash_at:
            raise KeyboardInterrupt  # the process dies here: nothing after this transaction happens
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DeltaTables, "transact", dying)
    with pytest.raises(KeyboardInterrupt):
        migrate(old)
    monkeypatch.setattr(DeltaTables, "transact", real)
    assert (old / ASIDE / "bars").is_dir(), "the old files must stay until the new tables are committed"
    with pytest.raises(OldLayoutError, match="harvest migrate"):
        queries.connect(old)  # a half-converted warehouse is never read as if it were whole
    assert migrate(old).migrated
    assert compare(old, reference_dir(SPAN)).clean
    assert rows(old, "coverage") == rows(reference_dir(SPAN), "coverage")


def test_every_verb_refuses_the_old_layout_in_one_line_naming_migrate(old: Path) -> None:
    def stored() -> list:
        return sorted(p.relative_to(old) for p in old.rglob("*") if p.name != "sim-journal.jsonl")

    before = stored()
    universe = old.parent / "u.csv"
    universe.write_text("symbol\nAAPL\n")
    for args in (["status"], ["query", "SELECT 1"], ["sql-init", "--output", str(old.parent / "i.sql")],
                 ["compact"]):
        result = CliRunner().invoke(main, [*args, "--data-dir", str(old)])
        assert result.exit_code == Exit.BAD_INPUT, (args, result.output)
        assert "harvest migrate" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    nightly = CliRunner().invoke(main, ["--universe", str(universe), "--sim", "--data-dir", str(old)])
    assert nightly.exit_code == Exit.BAD_INPUT and "harvest migrate" in nightly.stderr
    assert stored() == before  # nothing stored was touched


def bars_type(data: Path) -> str:
    return dict(queries.connect(data).execute("SELECT column_name, column_type FROM (DESCRIBE bars)").fetchall())["ts"]


def format_2(delta_dir: Path, target: Path) -> Path:
    """The same warehouse as format 2 wrote it (`ts` naive), warehouse.json saying format 2."""
    shutil.copytree(delta_dir, target)
    shutil.rmtree(target / "bars")
    write_format_2_bars(delta_dir, str(target / "bars"))
    meta = json.loads((target / "warehouse.json").read_text())
    (target / "warehouse.json").write_text(json.dumps({**meta, "format": 2}))
    return target


@pytest.fixture
def naive(tmp_path: Path) -> Path:
    return format_2(reference_dir(SPAN), tmp_path / "data")


def test_a_format_2_warehouse_is_refused_by_writers_and_migrates_to_utc_bar_for_bar(naive: Path, make_gateway) -> None:
    assert bars_type(naive) == "TIMESTAMP"  # readers read it as stored
    universe = naive.parent / "u.csv"
    universe.write_text("symbol\nAAPL\n")
    for args in (["--universe", str(universe), "--sim"], ["compact"]):
        result = CliRunner().invoke(main, [*args, "--data-dir", str(naive)])
        assert result.exit_code == Exit.BAD_INPUT, (args, result.output)
        assert "harvest migrate" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    version = DeltaTables(naive).version("bars")
    result = CliRunner().invoke(main, ["migrate", "--data-dir", str(naive)])
    assert result.exit_code == 0 and "bar times UTC-aware, format 3" in result.stdout, result.output
    assert DeltaTables(naive).version("bars") == version + 1  # one transaction
    assert bars_type(naive) == "TIMESTAMP WITH TIME ZONE"
    assert json.loads((naive / "warehouse.json").read_text())["format"] == 3
    assert compare(naive, reference_dir(SPAN)).clean
    for path in snapshot_files(naive):  # each file still sorted by (symbol, ts): reads skip the sort
        rows = pq.read_table(path, columns=["symbol", "ts"])
        assert rows.equals(rows.sort_by([("symbol", "ascending"), ("ts", "ascending")])), path
    files = [f for family in snapshot_of(queries.connect(naive)).files.values() for f in family]
    assert files and all(None not in (f.first_ts, f.last_ts, f.first_session, f.last_session) for f in files)
    assert queries.connect(naive).sql("SELECT * FROM bars ORDER BY con_id, ts").df().equals(
        queries.connect(reference_dir(SPAN)).sql("SELECT * FROM bars ORDER BY con_id, ts").df())
    assert "nothing to do" in CliRunner().invoke(main, ["migrate", "--data-dir", str(naive)]).stdout
    before = queries.connect(naive, as_of=version)  # the version before the migration: as it was stored
    assert before.execute("SELECT typeof(ts), count(*) FROM bars GROUP BY 1").fetchall() == \
        [("TIMESTAMP", queries.connect(naive).execute("SELECT count(*) FROM bars").fetchall()[0][0])]
    report = harvest_with(make_gateway(), naive, SPAN, next_client_id())
    assert report.ok and report.plan == [] and report.head_requests == 0


def test_a_migration_to_utc_killed_while_writing_leaves_the_format_2_warehouse(naive: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    version = DeltaTables(naive).version("bars")
    real, reads = migrate_module.read_bars_file, []

    def dying(*args, **kwargs):
        reads.append(1)
        if len(reads) == 2:
            raise KeyboardInterrupt  # the process dies after one file was written again
        return real(*args, **kwargs)

    monkeypatch.setattr(migrate_module, "read_bars_file", dying)
    with pytest.raises(KeyboardInterrupt):
        migrate(naive)
    assert len(reads) == 2
    monkeypatch.setattr(migrate_module, "read_bars_file", real)
    assert DeltaTables(naive).version("bars") == version and bars_type(naive) == "TIMESTAMP"
    assert compare(naive, reference_dir(SPAN)).clean  # readable, whole
    assert migrate(naive).migrated and bars_type(naive) == "TIMESTAMP WITH TIME ZONE"
    assert compare(naive, reference_dir(SPAN)).clean


def test_a_migration_to_utc_killed_after_its_commit_is_marked_by_the_rerun(naive: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def dying(loc) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(migrate_module, "_mark_format", dying)
    with pytest.raises(KeyboardInterrupt):
        migrate(naive)
    monkeypatch.undo()
    assert bars_type(naive) == "TIMESTAMP WITH TIME ZONE" and compare(naive, reference_dir(SPAN)).clean
    assert json.loads((naive / "warehouse.json").read_text())["format"] == 2
    assert not migrate(naive).migrated  # nothing left to rewrite
    assert json.loads((naive / "warehouse.json").read_text())["format"] == 3


def test_a_file_outside_the_old_layout_stops_the_migration_naming_it(old: Path) -> None:
    source = next(old.glob("bars/*/*/*/*/*.parquet"))
    odd = source.with_name("copy (1).parquet")
    shutil.copy(source, odd)
    result = CliRunner().invoke(main, ["migrate", "--data-dir", str(old)])
    assert result.exit_code == Exit.BAD_INPUT and "copy (1).parquet" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
