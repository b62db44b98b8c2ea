"""The Warehouse facade: open, lock, stage answered requests, commit them, and the small tables.

Commit order is the crash-safety argument: (1) merge staged bars into partition files (each an atomic
replace), (2) only then record their coverage, (3) write the journal, (4) drop the staging. A crash at any
instant leaves staging in place; the next commit re-merges it (dedupe on (con_id, ts) makes that a no-op for
rows already merged) and re-records coverage (deduped), which yields exactly the fault-free state.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harvester.calendar import TradingCalendar
from harvester.ibrules import BAR_SIZES, WHAT_TO_SHOW
from harvester.model import BarRequest, HeadKey, Outcome
from harvester.warehouse.checks import check_bars
from harvester.warehouse.compaction import merge_newest_wins
from harvester.warehouse.coverage import CoverageIndex, dedupe_rows, naive_utc, trim_rows
from harvester.warehouse.files import (
    WarehouseError,
    ensure_dir,
    fsync_dir,
    write_json_atomic,
    write_parquet_atomic,
)
from harvester.warehouse.layout import (
    BARS_GLOB,
    CONTRACTS_FILE,
    COVERAGE_FILE,
    HEADS_FILE,
    META_FILE,
    QUARANTINE_FILES_DIR,
    VERIFIED_FILE,
    PartitionKey,
    journal_file,
    parse_partition_path,
    quarantine_file,
    split_by_partition,
)
from harvester.warehouse.lock import WarehouseLocked, WriterLock
from harvester.warehouse.staging import StagedEntry, StagingArea
from harvester.warehouse.tables import (
    BARS_SCHEMA,
    CONTRACTS_SCHEMA,
    COVERAGE_SCHEMA,
    HEADS_SCHEMA,
    JOURNAL_SCHEMA,
    QUARANTINE_SCHEMA,
    frame_to_table,
    rows_to_table,
    utc_now_naive,
)

__all__ = ["CommitStats", "MixedWarehouseError", "StageResult", "Warehouse", "WarehouseError", "WarehouseLocked"]

FORMAT = 1
_run_counter = itertools.count()


class MixedWarehouseError(WarehouseError):
    """Simulated bars must never land in a real warehouse (or the reverse)."""


@dataclass(frozen=True)
class StageResult:
    kept: int
    quarantined: int
    covers: bool  # the request's window will be recorded as covered at commit


@dataclass(frozen=True)
class CorruptFile:
    path: Path
    moved_to: Path
    error: str


@dataclass
class CommitStats:
    requests: int = 0
    rows_staged: int = 0
    partitions_written: int = 0
    rows_in_written_files: int = 0
    coverage_rows: int = 0
    journal_rows: int = 0
    corrupt: list[CorruptFile] = field(default_factory=list)
    seconds: float = 0.0


def new_run_id() -> str:
    """Sortable by start time, so staged runs recover oldest first (newest fetch wins)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"{stamp}-p{os.getpid()}-{next(_run_counter)}"


class Warehouse:
    def __init__(self, data_dir: Path, simulated: bool) -> None:
        self.data_dir = data_dir
        self.simulated = simulated
        self.run_id = new_run_id()
        self._staging = StagingArea(data_dir)
        self._seq = itertools.count(1)
        self._batches = itertools.count(1)
        self._batch = self._next_batch()
        self._journal_seq = itertools.count(1)
        self._journal: list[dict] = []
        self._crash_hook: Callable[[str], None] = lambda step: None

    def _next_batch(self) -> str:
        """Each commit closes the current staging batch, so committed batches go away with one rename."""
        return f"{self.run_id}-b{next(self._batches):06d}"

    @classmethod
    def open(cls, data_dir: str | Path, *, simulated: bool, gateway: str = "", account: str = "") -> Warehouse:
        path = Path(data_dir).absolute()
        if path.exists() and not path.is_dir():
            raise WarehouseError(f"data directory {path} is not a directory")
        ensure_dir(path)
        if not os.access(path, os.W_OK | os.X_OK):
            raise WarehouseError(f"data directory {path} is not writable")
        meta_path = path / META_FILE
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError) as exc:
                raise WarehouseError(f"cannot read {meta_path}: {exc}") from exc
            if bool(meta.get("simulated")) != simulated:
                theirs, mine = ("simulated", "real") if meta.get("simulated") else ("real", "simulated")
                raise MixedWarehouseError(f"{path} holds {theirs} bars; refusing to add {mine} ones")
        else:
            write_json_atomic(meta_path, {
                "format": FORMAT, "simulated": simulated, "gateway": gateway, "account": account,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            })
        return cls(path, simulated)

    @contextmanager
    def lock(self) -> Iterator[None]:
        with WriterLock(self.data_dir):
            yield

    # -- small tables -------------------------------------------------------------------------------------

    def _read_table(self, rel: str, schema: pa.Schema) -> pa.Table:
        path = self.data_dir / rel
        if not path.exists():
            return schema.empty_table()
        try:
            return pq.read_table(path).select(schema.names).cast(schema)
        except (pa.ArrowException, OSError, KeyError) as exc:
            self._quarantine_file(path, str(exc))
            return schema.empty_table()

    def coverage(self) -> CoverageIndex:
        return CoverageIndex.from_frame(self._read_table(COVERAGE_FILE, COVERAGE_SCHEMA).to_pandas())

    def heads(self) -> dict[HeadKey, datetime]:
        frame = self._read_table(HEADS_FILE, HEADS_SCHEMA).to_pandas()
        return {
            HeadKey(int(r.con_id), str(r.what_to_show), bool(r.use_rth)): pd.Timestamp(r.head_ts)
            .tz_localize(UTC).to_pydatetime()
            for r in frame.itertuples(index=False)
        }

    def save_head(self, key: HeadKey, head_ts: datetime) -> None:
        if key.what_to_show not in WHAT_TO_SHOW:
            raise WarehouseError(f"unknown whatToShow {key.what_to_show!r}")
        row = {"con_id": key.con_id, "what_to_show": key.what_to_show, "use_rth": key.use_rth,
               "head_ts": naive_utc(head_ts).to_pydatetime(), "fetched_at": utc_now_naive()}
        self._upsert(HEADS_FILE, HEADS_SCHEMA, rows_to_table([row], HEADS_SCHEMA, "head"),
                     ["con_id", "what_to_show", "use_rth"])

    def contracts(self) -> pd.DataFrame:
        return self._read_table(CONTRACTS_FILE, CONTRACTS_SCHEMA).to_pandas()

    def save_contracts(self, df: pd.DataFrame) -> None:
        if "con_id" not in df.columns or df["con_id"].isna().any():
            raise WarehouseError("contracts frame needs a con_id on every row")
        if "qualified_at" not in df.columns:
            df = df.assign(qualified_at=utc_now_naive())
        self._upsert(CONTRACTS_FILE, CONTRACTS_SCHEMA,
                     frame_to_table(df, CONTRACTS_SCHEMA, "contracts"), ["con_id"])

    def _upsert(self, rel: str, schema: pa.Schema, new: pa.Table, key: list[str]) -> None:
        merged = pd.concat([self._read_table(rel, schema).to_pandas(), new.to_pandas()], ignore_index=True)
        merged = merged.drop_duplicates(subset=key, keep="last").sort_values(key)
        write_parquet_atomic(self.data_dir / rel, pa.Table.from_pandas(merged, schema=schema, preserve_index=False))

    # -- staging and journal ------------------------------------------------------------------------------

    def stage(self, request: BarRequest, outcome: Outcome, bars: pd.DataFrame | None, *, symbol: str,
              calendar: TradingCalendar | None = None) -> StageResult:
        s = request.series
        if s.bar_size not in BAR_SIZES:
            raise WarehouseError(f"unknown bar size {s.bar_size!r} for {symbol}")
        if s.what_to_show not in WHAT_TO_SHOW:
            raise WarehouseError(f"unknown whatToShow {s.what_to_show!r} for {symbol}")
        checked = check_bars(request, bars, symbol, calendar)
        seq = next(self._seq)
        if checked.quarantined.num_rows:
            extra = pa.table({
                "bar_size": [s.bar_size] * checked.quarantined.num_rows,
                "what_to_show": [s.what_to_show] * checked.quarantined.num_rows,
                "use_rth": [s.use_rth] * checked.quarantined.num_rows,
                "quarantined_at": pa.array([utc_now_naive()] * checked.quarantined.num_rows, pa.timestamp("us")),
            })
            table = checked.quarantined
            for name in extra.column_names:
                table = table.append_column(name, extra[name])
            table = table.cast(QUARANTINE_SCHEMA)
            write_parquet_atomic(self.data_dir / quarantine_file(self.run_id, seq), table)
        self._staging.put(self._batch, seq, request, outcome, checked.kept, symbol)
        return StageResult(checked.kept.num_rows, checked.quarantined.num_rows, outcome.covers)

    def record_request(self, row: dict) -> None:
        self._journal.append({"run_id": self.run_id, **row})

    def _flush_journal(self) -> int:
        if not self._journal:
            return 0
        table = rows_to_table(self._journal, JOURNAL_SCHEMA, "journal")
        write_parquet_atomic(self.data_dir / journal_file(self.run_id, next(self._journal_seq)), table)
        self._journal.clear()
        return table.num_rows

    # -- commit ---------------------------------------------------------------------------------------------

    def commit(self) -> CommitStats:
        started = datetime.now(UTC)
        self._batch = self._next_batch()
        entries = self._staging.entries()
        stats = CommitStats(requests=len(entries), rows_staged=sum(e.rows for e in entries))
        self._merge_partitions(entries, stats)
        self._crash_hook("bars_durable")
        stats.coverage_rows = self._record_coverage(entries)
        self._crash_hook("coverage_durable")
        stats.journal_rows = self._flush_journal()
        self._crash_hook("journal_durable")
        self._staging.drop(entries)
        stats.seconds = (datetime.now(UTC) - started).total_seconds()
        return stats

    def _merge_partitions(self, entries: list[StagedEntry], stats: CommitStats) -> None:
        """Each touched partition is read once, merged with all its staged slices and replaced once."""
        slices: dict[PartitionKey, list[pa.Table]] = {}
        for entry in entries:
            table = entry.read_bars()
            if table is None:
                continue
            s = entry.series
            for key, part in split_by_partition(table, BAR_SIZES[s.bar_size].label, s.what_to_show, s.use_rth):
                slices.setdefault(key, []).append(part)
        for key in sorted(slices):
            path = key.path(self.data_dir)
            existing = self._read_partition(path, key, stats)
            merged = merge_newest_wins(([existing] if existing is not None else []) + slices[key])
            write_parquet_atomic(path, merged)
            stats.partitions_written += 1
            stats.rows_in_written_files += merged.num_rows
            self._crash_hook(f"partition:{path}")

    def _read_partition(self, path: Path, key: PartitionKey, stats: CommitStats) -> pa.Table | None:
        if not path.exists():
            return None
        try:
            table = pq.read_table(path, page_checksum_verification=True)
            return table.select(BARS_SCHEMA.names).cast(BARS_SCHEMA)
        except (pa.ArrowException, OSError, KeyError) as exc:
            stats.corrupt.append(self._quarantine_partition(path, key, str(exc)))
            return None

    def _quarantine_partition(self, path: Path, key: PartitionKey, error: str) -> CorruptFile:
        """Forget its coverage first (durably), then move it aside: claiming less than is stored is safe."""
        start, end = key.utc_range()
        rows = self._read_table(COVERAGE_FILE, COVERAGE_SCHEMA).to_pandas()
        for bar_size in key.ib_bar_sizes():
            rows = trim_rows(rows, [bar_size], key.what_to_show, key.use_rth, start, end)
        self._write_coverage(rows)
        return self._quarantine_file(path, error)

    def _quarantine_file(self, path: Path, error: str) -> CorruptFile:
        rel = path.relative_to(self.data_dir)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        target = self.data_dir / QUARANTINE_FILES_DIR / rel.parent / f"{rel.name}.corrupt-{stamp}"
        ensure_dir(target.parent)
        shutil.move(path, target)
        fsync_dir(target.parent)
        fsync_dir(path.parent)
        return CorruptFile(path, target, error)

    def _record_coverage(self, entries: list[StagedEntry]) -> int:
        now = utc_now_naive()
        new = [
            {
                "con_id": e.series.con_id, "bar_size": e.series.bar_size, "what_to_show": e.series.what_to_show,
                "use_rth": e.series.use_rth, "start_ts": naive_utc(e.start).to_pydatetime(),
                "end_ts": naive_utc(e.end).to_pydatetime(), "kind": "bars" if e.outcome is Outcome.BARS else "empty",
                "bars": e.rows, "recorded_at": now,
            }
            for e in entries
            if e.outcome.covers
        ]
        if not new:
            return 0
        rows = self._read_table(COVERAGE_FILE, COVERAGE_SCHEMA).to_pandas()
        fresh = rows_to_table(new, COVERAGE_SCHEMA, "coverage").to_pandas()
        self._write_coverage(pd.concat([rows, fresh], ignore_index=True))
        return len(new)

    def _write_coverage(self, rows: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(dedupe_rows(rows), schema=COVERAGE_SCHEMA, preserve_index=False)
        write_parquet_atomic(self.data_dir / COVERAGE_FILE, table)

    def verify(self) -> list[CorruptFile]:
        """Read every partition file changed since it was last verified; quarantine the unreadable ones
        and forget their coverage, so the next plan refetches them.

        A (size, mtime) record per file keeps the nightly cost to the files the last run touched;
        a file damaged since (truncated, garbled, replaced by hand) no longer matches and is read again.
        """
        record_path = self.data_dir / VERIFIED_FILE
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            record = {}
        stats, seen = CommitStats(), {}
        for path in sorted(self.data_dir.glob(BARS_GLOB)):
            key = parse_partition_path(self.data_dir, path)
            if key is None:
                continue
            rel, st = str(path.relative_to(self.data_dir)), path.stat()
            stamp = [st.st_size, st.st_mtime_ns]
            if record.get(rel) != stamp and self._read_partition(path, key, stats) is None:
                continue
            seen[rel] = stamp
        write_json_atomic(record_path, seen)
        return stats.corrupt

    def close(self) -> None:
        """Flush the journal and delete committed staging batches. stage() and commit() must not overlap."""
        self._flush_journal()
        self._staging.empty_trash()

