"""Where everything lives in the warehouse: every table, file and partition name is written here and nowhere else.

Every table is a Delta table in a folder of its own under the warehouse root (`bars/`, `contracts/`, ...).
Bars are partitioned by series family and a time slot of the exchange session date (so a session's
evening bars never straddle two partitions): `bar_size=<label>/what_to_show=<W>/use_rth=<bool>/period=<P>`,
where P is a year (`2024`, hourly and longer bars), a month (`2024-06`, minute bars) or a day
(`2024-06-03`, bars of 30 s and less): the storage study's 1–20 M rows a partition for a large universe.
Every partition value comes from an allow-list (ibrules), never from a symbol.
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

META_FILE = "warehouse.json"  # simulated or real, gateway, account, format
FORMAT = 3  # 1: Parquet files replaced in place; 2: Delta tables, bar times naive; 3: bar times UTC-aware
# (`harvest migrate` converts 1 and 2 in place)
VERIFIED_FILE = "verified.json"  # the bars data files read back whole since they were written
LOCK_FILE = ".harvest.lock"
STAGING_DIR = "_staging"  # answers fetched, not yet committed
CORRUPT_DIR = "corrupt"  # copies of data files found unreadable, kept for inspection
LOCAL_STATE_ENV = "HARVEST_STATE_DIR"  # where an S3 warehouse's local files live (default ~/.cache/harvester)

BARS = "bars"
CONTRACTS = "contracts"
HEADS = "heads"
COVERAGE = "coverage"
JOURNAL = "journal"
QUARANTINE = "quarantine"  # rows refused at the door
CLAIMS = "claims"  # which harvest is fetching which series, until when
SYMBOLS = "symbols"  # each conId's symbols and exchanges over time
REVISIONS = "revisions"  # stored bars a later fetch changed
CORPORATE_ACTIONS = "corporate_actions"  # splits found in the overlap of a fetch with stored bars, and repairs
WINDOW_SIZES = "window_sizes"
WANTED = "wanted"  # the span each series was asked for: what gaps and status measure against
TABLES = (BARS, CONTRACTS, HEADS, COVERAGE, JOURNAL, QUARANTINE, CLAIMS, SYMBOLS, REVISIONS, CORPORATE_ACTIONS,
          WINDOW_SIZES, WANTED)
BARS_PARTITION_BY = ("bar_size", "what_to_show", "use_rth", "period")
PARTITIONS = {BARS: BARS_PARTITION_BY}  # the other tables are small and unpartitioned


def local_state_dir(location) -> Path:
    """Where the files that are this machine's own live (staged answers, the simulator's journal): the
    warehouse folder itself, or for an S3 warehouse a folder per bucket/prefix under the user's cache."""
    if location.is_local:
        return Path(location.root)
    import hashlib
    import os

    base = Path(os.environ.get(LOCAL_STATE_ENV) or Path.home() / ".cache" / "harvester")
    return base / f"{location.bucket}-{hashlib.sha256(location.root.encode()).hexdigest()[:12]}"


@dataclass(frozen=True, order=True)
class PartitionKey:
    """One bars partition: the series family (bar size label, whatToShow, RTH) and its time slot."""

    label: str
    what_to_show: str
    use_rth: bool
    period: str  # "YYYY", "YYYY-MM" or "YYYY-MM-DD", by the bar size's granularity

    def __post_init__(self) -> None:
        if self.label not in BY_LABEL:
            raise WarehouseError(f"unknown bar size label {self.label!r}")
        if self.what_to_show not in WHAT_TO_SHOW:
            raise WarehouseError(f"unknown whatToShow {self.what_to_show!r}")
        if not _legal_period(self.period, BY_LABEL[self.label].partition):
            raise WarehouseError(f"illegal period {self.period!r} for {self.label}")

    def session_range(self) -> tuple[date, date]:
        """Session dates [first, end) the partition holds."""
        if len(self.period) == 4:
            y = int(self.period)
            return date(y, 1, 1), date(y + 1, 1, 1)
        if len(self.period) == 7:
            y, m = int(self.period[:4]), int(self.period[5:])
            return date(y, m, 1), (date(y + 1, 1, 1) if m == 12 else date(y, m + 1, 1))
        d = date.fromisoformat(self.period)
        return d, d + timedelta(days=1)

    def utc_range(self) -> tuple[datetime, datetime]:
        """A UTC window surely holding every bar of the partition: a session date is within a day of its bars."""
        first, end = self.session_range()
        return (datetime.combine(first - timedelta(days=1), time(), UTC),
                datetime.combine(end + timedelta(days=1), time(), UTC))

    def ib_bar_sizes(self) -> list[str]:
        return [name for name, b in BAR_SIZES.items() if b.label == self.label]


def family_predicate(label: str, what_to_show: str, use_rth: bool, periods: list[str]) -> str:
    """The Delta predicate selecting some partitions of one series family (values are allow-listed)."""
    listed = ", ".join(f"'{p}'" for p in sorted(periods))
    return (f"bar_size = '{label}' AND what_to_show = '{what_to_show}' AND use_rth = {str(use_rth).lower()} "
            f"AND period IN ({listed})")


def family_filters(label: str, what_to_show: str, use_rth: bool, periods: list[str] | None = None) -> list:
    """The same selection as partition filters for a snapshot's file list."""
    filters = [("bar_size", "=", label), ("what_to_show", "=", what_to_show), ("use_rth", "=", str(use_rth).lower())]
    return filters + ([("period", "in", sorted(periods))] if periods is not None else [])


def _legal_period(period: str, granularity: str) -> bool:
    try:
        if granularity == "year":
            return len(period) == 4 and period.isdigit()
        if granularity == "month":
            return len(period) == 7 and date.fromisoformat(period + "-01") is not None
        return len(period) == 10 and date.fromisoformat(period) is not None
    except ValueError:
        return False


def period_of(session_day: date, granularity: str) -> str:
    if granularity == "year":
        return f"{session_day.year:04d}"
    if granularity == "month":
        return f"{session_day.year:04d}-{session_day.month:02d}"
    return session_day.isoformat()


def periods_for(size: BarSize, start: datetime, end: datetime) -> list[str]:
    """Every period that can hold bars starting in [start, end): a session date is within a day of its
    bars' UTC start, so the range is widened by a day each side."""
    first = start.date() - timedelta(days=1)
    last = (end - timedelta(microseconds=1)).date() + timedelta(days=1)
    days = (first + timedelta(days=i) for i in range((last - first).days + 1))
    return list(dict.fromkeys(period_of(d, size.partition) for d in days))


_SLOT_FORMAT = {"year": "%Y", "month": "%Y-%m", "day": "%Y-%m-%d"}


def _slots(session_dates: pa.Array | pa.ChunkedArray, label: str) -> pa.Array:
    return pc.strftime(pc.cast(session_dates, pa.timestamp("s")), format=_SLOT_FORMAT[BY_LABEL[label].partition])


def split_by_partition(table: pa.Table, label: str, what_to_show: str, use_rth: bool
                       ) -> Iterator[tuple[PartitionKey, pa.Table]]:
    """The rows of one series family, cut into the partitions their session dates belong to.
    Commit and compaction both file rows with this, so they can never disagree on where a row goes."""
    slots = _slots(table["session_date"], label)
    for slot in pc.unique(slots).to_pylist():
        yield PartitionKey(label, what_to_show, use_rth, slot), table.filter(pc.equal(slots, slot))


def partitions_of(session_dates: pa.Array | pa.ChunkedArray, label: str, what_to_show: str, use_rth: bool
                  ) -> dict[PartitionKey, int]:
    """The partitions rows of these session dates go to (as `split_by_partition` files them), with how many."""
    counts = pc.value_counts(_slots(session_dates, label))
    return {PartitionKey(label, what_to_show, use_rth, slot): n
            for slot, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)}


def with_partition(key: PartitionKey, rows: pa.Table) -> pa.Table:
    """Bars rows with their partition's columns, as the bars table stores them."""
    n = rows.num_rows
    for name, value, kind in (("bar_size", key.label, pa.string()), ("what_to_show", key.what_to_show, pa.string()),
                              ("use_rth", key.use_rth, pa.bool_()), ("period", key.period, pa.string())):
        rows = rows.append_column(name, pa.array([value] * n, kind))
    return rows


def partitions_predicate(keys: list[PartitionKey]) -> str:
    """One predicate naming exactly these partitions, grouped by series family."""
    families: dict[tuple[str, str, bool], list[str]] = {}
    for k in keys:
        families.setdefault((k.label, k.what_to_show, k.use_rth), []).append(k.period)
    return " OR ".join(f"({family_predicate(*family, periods)})" for family, periods in sorted(families.items()))


def partition_of(table_root: str | Path, path: str | Path) -> PartitionKey:
    """The partition a bars data file lies in, read off its hive-style path (a local path or a URI)."""
    root, text = str(table_root).rstrip("/") + "/", str(path)
    if not text.startswith(root):
        raise WarehouseError(f"{text} is not a data file of {table_root}")
    values = dict(p.split("=", 1) for p in text[len(root):].split("/")[:-1])
    return PartitionKey(values["bar_size"], values["what_to_show"], values["use_rth"] == "true", values["period"])

