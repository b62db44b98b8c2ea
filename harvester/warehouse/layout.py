"""Where bars live on disk and how one partition file is merged: the fixed layout of ../prompts/layout.md.

bars/bar_size=<label>/what_to_show=<W>/use_rth=<0|1>/year=<YYYY>/<part>.parquet, keyed by the exchange
session date (so a session's evening bars never straddle two files). Every path component comes from an
allow-list (ibrules), never from a symbol, so nothing can escape the data directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from harvester.ibrules import BAR_SIZES, BY_LABEL, WHAT_TO_SHOW
from harvester.warehouse.files import WarehouseError

BARS_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("con_id", pa.int64()),
        ("ts", pa.timestamp("us")),
        ("session_date", pa.date32()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
        ("wap", pa.float64()),
        ("bar_count", pa.int64()),
    ]
)
BAR_COLUMNS = BARS_SCHEMA.names


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
            / "bars"
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


def key_for(bar_size_ib: str, what_to_show: str, use_rth: bool, session_day: date) -> PartitionKey:
    b = BAR_SIZES[bar_size_ib]
    return PartitionKey(b.label, what_to_show, use_rth, session_day.year, part_name(session_day, b.partition))


def parse_partition_path(data_dir: Path, path: Path) -> PartitionKey | None:
    """The PartitionKey a bars file path spells, or None for anything that is not a legal partition file."""
    try:
        rel = path.relative_to(data_dir / "bars").parts
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


def merge_newest_wins(tables: list[pa.Table]) -> pa.Table:
    """Concatenate oldest→newest, keep the newest row per (con_id, ts), sort (symbol, ts).

    Dedupe is on the key, never on values: IB revises bars, and the latest fetch is the truth.
    """
    ordered = [
        t.select(BAR_COLUMNS).cast(BARS_SCHEMA).append_column("_o", pa.array(np.full(t.num_rows, i, np.int32)))
        for i, t in enumerate(tables)
    ]
    combined = pa.concat_tables(ordered)
    con = duckdb.connect()
    try:
        con.register("combined", combined)
        result = con.sql(
            "SELECT * EXCLUDE (_o, _r) FROM ("
            " SELECT *, row_number() OVER (PARTITION BY con_id, ts ORDER BY _o DESC) AS _r FROM combined)"
            " WHERE _r = 1 ORDER BY symbol, ts, con_id"
        ).to_arrow_table()
    finally:
        con.close()
    return result.cast(BARS_SCHEMA)
