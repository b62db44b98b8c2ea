"""Where everything lives in the warehouse: every path and file name is written here and nowhere else.

Bars: bars/bar_size=<label>/what_to_show=<W>/use_rth=<0|1>/year=<YYYY>/<part>.parquet, keyed by the exchange
session date (so a session's evening bars never straddle two files); <part> is `data` (a year), `YYYY-MM`
or `YYYY-MM-DD` by bar size. Every path component comes from an allow-list (ibrules), never from a
symbol, so nothing can escape the data directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from harvester.ibrules import BAR_SIZES, BY_LABEL, WHAT_TO_SHOW, BarSize
from harvester.warehouse.files import WarehouseError

# Every file and directory of the warehouse, relative to its root. Readers (queries) glob these too.
META_FILE = "warehouse.json"  # simulated or real, gateway, account
VERIFIED_FILE = "verified.json"  # (size, mtime) of each partition file read back whole since it changed
LOCK_FILE = ".harvest.lock"
STAGING_DIR = "_staging"  # answers fetched, not yet committed
BARS_DIR = "bars"
BARS_GLOB = "bars/*/*/*/*/*.parquet"  # every partition file, and nothing else
CONTRACTS_FILE = "contracts/contracts.parquet"
HEADS_FILE = "heads/heads.parquet"
COVERAGE_FILE = "coverage/coverage.parquet"
JOURNAL_DIR = "journal"
JOURNAL_GLOB = "journal/*.parquet"
QUARANTINE_DIR = "quarantine"
QUARANTINE_GLOB = "quarantine/bars-*.parquet"  # rows refused at the door
QUARANTINE_FILES_DIR = "quarantine/files"  # whole files found unreadable, moved aside


def journal_file(run_id: str, seq: int) -> str:
    return f"{JOURNAL_DIR}/{run_id}-{seq:04d}.parquet"


def quarantine_file(run_id: str, seq: int) -> str:
    return f"{QUARANTINE_DIR}/bars-{run_id}-{seq:08d}.parquet"


@dataclass(frozen=True, order=True)
class PartitionKey:
    """One partition file: the series family (bar size label, whatToShow, RTH) and its time slot."""

    label: str
    what_to_show: str
    use_rth: bool
    year: int
    part: str  # "data", "YYYY-MM" or "YYYY-MM-DD"

    def __post_init__(self) -> None:
        if self.label not in BY_LABEL:
            raise WarehouseError(f"unknown bar size label {self.label!r}")
        if self.what_to_show not in WHAT_TO_SHOW:
            raise WarehouseError(f"unknown whatToShow {self.what_to_show!r}")
        if not _legal_part(self.part, BY_LABEL[self.label].partition, self.year):
            raise WarehouseError(f"illegal partition part {self.part!r} for {self.label} year {self.year}")

    def path(self, data_dir: Path) -> Path:
        return (
            data_dir
            / BARS_DIR
            / f"bar_size={self.label}"
            / f"what_to_show={self.what_to_show}"
            / f"use_rth={int(self.use_rth)}"
            / f"year={self.year:04d}"
            / f"{self.part}.parquet"
        )

    def session_range(self) -> tuple[date, date]:
        """Session dates [first, end) the partition holds."""
        if self.part == "data":
            return date(self.year, 1, 1), date(self.year + 1, 1, 1)
        if len(self.part) == 7:
            y, m = int(self.part[:4]), int(self.part[5:])
            return date(y, m, 1), (date(y + 1, 1, 1) if m == 12 else date(y, m + 1, 1))
        d = date.fromisoformat(self.part)
        return d, d + timedelta(days=1)

    def utc_range(self) -> tuple[datetime, datetime]:
        """A UTC window surely holding every bar of the partition: a session date is within a day of its bars."""
        first, end = self.session_range()
        utc = UTC
        return (
            datetime.combine(first - timedelta(days=1), time(), utc),
            datetime.combine(end + timedelta(days=1), time(), utc),
        )

    def ib_bar_sizes(self) -> list[str]:
        return [name for name, b in BAR_SIZES.items() if b.label == self.label]


def _legal_part(part: str, granularity: str, year: int) -> bool:
    try:
        if granularity == "year":
            return part == "data"
        if granularity == "month":
            return len(part) == 7 and date.fromisoformat(part + "-01").year == year
        return len(part) == 10 and date.fromisoformat(part).year == year
    except ValueError:
        return False


def part_name(session_day: date, granularity: str) -> str:
    if granularity == "year":
        return "data"
    if granularity == "month":
        return f"{session_day.year:04d}-{session_day.month:02d}"
    return session_day.isoformat()


def parse_partition_path(data_dir: Path, path: Path) -> PartitionKey | None:
    """The PartitionKey a bars file path spells, or None for anything that is not a legal partition file."""
    try:
        rel = path.relative_to(data_dir / BARS_DIR).parts
    except ValueError:
        return None
    if len(rel) != 5 or not rel[4].endswith(".parquet"):
        return None
    fields = [p.partition("=") for p in rel[:4]]
    if [f[0] for f in fields] != ["bar_size", "what_to_show", "use_rth", "year"]:
        return None
    label, what, rth, year = (f[2] for f in fields)
    if rth not in ("0", "1") or not year.isdigit():
        return None
    try:
        return PartitionKey(label, what, rth == "1", int(year), rel[4][: -len(".parquet")])
    except WarehouseError:
        return None


def partition_files(root: Path, size: BarSize, what_to_show: str, use_rth: bool,
                    start: datetime, end: datetime) -> list[Path]:
    """Every partition file (existing or not) that can hold bars starting in [start, end): a session
    date is within a day of its bars' UTC start, so the range is widened by a day each side."""
    first = start.date() - timedelta(days=1)
    last = (end - timedelta(microseconds=1)).date() + timedelta(days=1)
    days = (first + timedelta(days=i) for i in range((last - first).days + 1))
    keys = dict.fromkeys(PartitionKey(size.label, what_to_show, use_rth, d.year, part_name(d, size.partition))
                         for d in days)
    return [key.path(root) for key in keys]


_SLOT_FORMAT = {"year": "%Y", "month": "%Y-%m", "day": "%Y-%m-%d"}


def split_by_partition(table: pa.Table, label: str, what_to_show: str, use_rth: bool
                       ) -> Iterator[tuple[PartitionKey, pa.Table]]:
    """The rows of one series family, cut into the partitions their session dates belong to.
    Commit and compaction both file rows with this, so they can never disagree on where a row goes."""
    granularity = BY_LABEL[label].partition
    slots = pc.strftime(table["session_date"].cast(pa.timestamp("s")), format=_SLOT_FORMAT[granularity])
    for slot in pc.unique(slots).to_pylist():
        part = table.filter(pc.equal(slots, slot))
        first_day = part["session_date"][0].as_py()
        yield PartitionKey(label, what_to_show, use_rth, first_day.year, part_name(first_day, granularity)), part
