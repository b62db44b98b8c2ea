"""The staging area: answered requests stored durably, outside every reader glob, until a commit merges them.

One entry = one `<seq>.stage.parquet` holding the kept bars (maybe none) with the request and its outcome in
the file's key-value metadata: a single atomic write (two fsyncs) makes the entry durable and complete at
once. Rows refused at the door go to `<seq>.rejected.parquet`, written first, so an entry is complete when its
stage file exists. Entries are ordered by (batch, seq), batch = `<run_id>-b<n>`, which is fetch order, so the
newest fetch wins at merge.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from harvester.model import BarRequest, Outcome, SeriesKey
from harvester.warehouse.files import fsync_dir, write_parquet_atomic
from harvester.warehouse.layout import STAGING_DIR

META_KEY = "harvester.stage"
TRASH_PREFIX = ".trash-"
REJECTED_SUFFIX = ".rejected.parquet"


@dataclass(frozen=True)
class StagedEntry:
    batch: str
    seq: int
    series: SeriesKey
    start: datetime
    end: datetime
    outcome: Outcome
    symbol: str
    rows: int
    path: Path
    rejected: int = 0  # rows refused at the door, beside the entry
    seen_at: datetime | None = None  # the gateway's clock when the answer came

    @property
    def answer_id(self) -> str:
        """Sorts in fetch order across runs (batch names start with the run's start time)."""
        return f"{self.batch}/{self.seq:08d}"

    def read_bars(self) -> pa.Table | None:
        return pq.read_table(self.path) if self.rows else None

    def read_rejected(self) -> pa.Table | None:
        return pq.read_table(_rejected_path(self.path)) if self.rejected else None

    def read_session_dates(self) -> pa.ChunkedArray:
        """One column: enough to know which partitions the entry touches without holding its rows."""
        return pq.read_table(self.path, columns=["session_date"])["session_date"]


class StagingArea:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / STAGING_DIR

    def put(self, batch: str, seq: int, request: BarRequest, outcome: Outcome, bars: pa.Table, symbol: str,
            rejected: pa.Table | None = None, seen_at: datetime | None = None) -> None:
        """Durably store one answered request (and the rows refused from it)."""
        s = request.series
        path = self.root / batch / f"{seq:08d}.stage.parquet"
        n_rejected = 0 if rejected is None else rejected.num_rows
        if n_rejected:
            write_parquet_atomic(_rejected_path(path), rejected, compression="snappy")
        meta = {
            "con_id": s.con_id, "bar_size": s.bar_size, "what_to_show": s.what_to_show, "use_rth": s.use_rth,
            "start": request.start.isoformat(), "end": request.end.isoformat(),
            "outcome": outcome.value, "symbol": symbol, "rows": bars.num_rows, "rejected": n_rejected,
            "seen_at": seen_at.isoformat() if seen_at else None,
        }
        table = bars.replace_schema_metadata({META_KEY: json.dumps(meta)})
        write_parquet_atomic(path, table, compression="snappy")

    def entries(self) -> list[StagedEntry]:
        """Every entry of every run, in fetch order."""
        if not self.root.is_dir():
            return []
        found = []
        for run_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for path in sorted(run_dir.glob("*.stage.parquet")):
                try:
                    m = json.loads(pq.read_schema(path).metadata[META_KEY.encode()])
                except FileNotFoundError:
                    continue  # another job's entry, committed and dropped by it since the listing
                found.append(
                    StagedEntry(
                        batch=run_dir.name,
                        seq=int(path.name.split(".")[0]),
                        series=SeriesKey(m["con_id"], m["bar_size"], m["what_to_show"], m["use_rth"]),
                        start=datetime.fromisoformat(m["start"]),
                        end=datetime.fromisoformat(m["end"]),
                        outcome=Outcome(m["outcome"]),
                        symbol=m["symbol"],
                        rows=m["rows"],
                        path=path,
                        rejected=m.get("rejected", 0),
                        seen_at=datetime.fromisoformat(m["seen_at"]) if m.get("seen_at") else None,
                    )
                )
        return found

    def drop(self, entries: list[StagedEntry]) -> None:
        """Forget committed entries. A fully committed batch directory is renamed to a hidden trash name
        (one rename + one fsync instead of an unlink per file; `empty_trash` deletes it later). A crash before
        that only means the next commit merges the entries again, which changes nothing."""
        by_dir: dict[Path, set[Path]] = {}
        for entry in entries:
            by_dir.setdefault(entry.path.parent, set()).add(entry.path)
        for batch_dir, paths in by_dir.items():
            if set(batch_dir.glob("*.stage.parquet")) <= paths:
                batch_dir.rename(self.root / f"{TRASH_PREFIX}{batch_dir.name}")
            else:
                for path in paths:
                    path.unlink(missing_ok=True)
                    _rejected_path(path).unlink(missing_ok=True)
                fsync_dir(batch_dir)
        if by_dir:
            fsync_dir(self.root)

    def empty_trash(self) -> None:
        if self.root.is_dir():
            for trash in self.root.glob(f"{TRASH_PREFIX}*"):
                shutil.rmtree(trash, ignore_errors=True)


def _rejected_path(stage_path: Path) -> Path:
    return stage_path.with_name(stage_path.name.split(".")[0] + REJECTED_SUFFIX)
