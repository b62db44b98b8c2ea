"""Damaged data files: which files of the current snapshot cannot be read back, and what to say about one.

Delta data files are never rewritten, so a damaged one was damaged from outside (a disk, a copy cut short,
a hand). `harvest verify` reads every file of every table's current snapshot and lists those that fail;
the next nightly run drops a damaged bars file from its partition (a copy kept under `corrupt/`), forgets
that partition's coverage and refetches it (`Warehouse.verify`). Every reader names the real file and that
fix in one line (`DAMAGED_FIX`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from harvester.warehouse.delta import UNREADABLE, DeltaTables
from harvester.warehouse.files import WarehouseError
from harvester.warehouse.layout import PARTITIONS, TABLES
from harvester.warehouse.storage import Location, filesystem, fs_paths

DAMAGED_FIX = ("`harvest verify` lists every damaged file; the next `harvest --universe FILE` run drops a damaged "
               "bars file (a copy under corrupt/) and refetches its partition")
_QUOTED_FILE = re.compile(r"""['"]([^'"]+\.parquet)['"]""")


class DamagedFile(WarehouseError):
    """A data file of the warehouse cannot be read; the message names it and the fix."""

    def __init__(self, path: str, error: str) -> None:
        super().__init__(f"damaged data file {path} ({error}); {DAMAGED_FIX}")
        self.path, self.error = path, error


@dataclass(frozen=True)
class Damage:
    table: str
    path: str
    error: str


def damaged_files(root: Path | str | Location) -> tuple[int, list[Damage]]:
    """(files checked, the damaged ones) over every table's current snapshot: each file read whole."""
    location = Location.parse(root)
    store = DeltaTables(location, PARTITIONS)
    fs = filesystem(location)[0] if not location.is_local else None
    checked, damaged = 0, []
    for name in TABLES:
        table = store.open(name)
        if table is None:
            continue
        files = store.files(name, table)
        for path, opened in zip(files, fs_paths(files) if fs is not None else files, strict=True):
            checked += 1
            try:
                pq.read_table(opened, filesystem=fs)
            except UNREADABLE as exc:
                damaged.append(Damage(name, path, _without_path(first_line(exc))))
    return checked, damaged


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _without_path(line: str) -> str:
    """A reader's message without the quoted path (the caller names the file once) and its error class."""
    text = re.sub(r"^[A-Z][A-Za-z ]*Error:\s*", "", _QUOTED_FILE.sub("", line))
    return re.sub(r"\s+([:.,])", r"\1", " ".join(text.split())).strip(" :")


def damaged_file_in(exc: BaseException, root: Path | str) -> DamagedFile | None:
    """A reader's error (DuckDB quotes the file it failed on) as the DamagedFile of the warehouse it names."""
    line = first_line(exc)
    match = _QUOTED_FILE.search(line)
    if match is None or str(root) not in match.group(1):
        return None
    return DamagedFile(match.group(1), _without_path(line))
