"""The staging area: answered requests stored durably, outside every reader glob, until a commit merges them.

One entry = `<seq>.bars.parquet` (when it has bars) then `<seq>.outcome.json`. The outcome file is written
last and is the entry's commit marker: bars without it belong to a stage() call that never returned and are
garbage. Entries are ordered by (run_id, seq), which is fetch order, so the newest fetch wins at merge.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from harvester.atomic import fsync_dir, remove_durably, write_json_atomic, write_parquet_atomic
from harvester.series import BarRequest, Outcome, SeriesKey

STAGING_DIR = "_staging"


@dataclass(frozen=True)
class StagedEntry:
    run_id: str
    seq: int
    series: SeriesKey
    start: datetime
    end: datetime
    outcome: Outcome
    symbol: str
    rows: int
    marker: Path

    @property
    def bars_path(self) -> Path | None:
        return self.marker.with_name(f"{self.seq:08d}.bars.parquet") if self.rows else None

    def read_bars(self) -> pa.Table | None:
        path = self.bars_path
        return pq.read_table(path) if path else None


class StagingArea:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / STAGING_DIR

    def put(self, run_id: str, seq: int, request: BarRequest, outcome: Outcome, bars: pa.Table, symbol: str) -> None:
        """Durably store one answered request (bars first, then the marker)."""
        run_dir = self.root / run_id
        if bars.num_rows:
            write_parquet_atomic(run_dir / f"{seq:08d}.bars.parquet", bars, compression="snappy")
        s = request.series
        marker = {
            "con_id": s.con_id, "bar_size": s.bar_size, "what_to_show": s.what_to_show, "use_rth": s.use_rth,
            "start": request.start.isoformat(), "end": request.end.isoformat(),
            "outcome": outcome.value, "symbol": symbol, "rows": bars.num_rows,
        }
        write_json_atomic(run_dir / f"{seq:08d}.outcome.json", marker)

    def entries(self) -> list[StagedEntry]:
        """Every complete entry of every run, in fetch order."""
        if not self.root.is_dir():
            return []
        found = []
        for run_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for marker in sorted(run_dir.glob("*.outcome.json")):
                m = json.loads(marker.read_text())
                found.append(
                    StagedEntry(
                        run_id=run_dir.name,
                        seq=int(marker.name.split(".")[0]),
                        series=SeriesKey(m["con_id"], m["bar_size"], m["what_to_show"], m["use_rth"]),
                        start=datetime.fromisoformat(m["start"]),
                        end=datetime.fromisoformat(m["end"]),
                        outcome=Outcome(m["outcome"]),
                        symbol=m["symbol"],
                        rows=m["rows"],
                        marker=marker,
                    )
                )
        return found

    def drop(self, entries: list[StagedEntry], current_run: str) -> None:
        """Forget committed entries (marker first, so a crash midway leaves only ignorable orphans),
        then remove other runs' directories, which hold nothing but orphans once their entries are gone."""
        for entry in entries:
            remove_durably(entry.marker)
            if entry.bars_path:
                remove_durably(entry.bars_path)
        if not self.root.is_dir():
            return
        for run_dir in self.root.iterdir():
            if run_dir.is_dir() and run_dir.name != current_run and not any(run_dir.glob("*.outcome.json")):
                shutil.rmtree(run_dir)
                fsync_dir(self.root)
