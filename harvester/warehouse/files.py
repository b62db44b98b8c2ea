"""Atomic, durable file writes: temp name outside every reader glob, fsync, os.replace, fsync the directory.

Readers glob `*.parquet` with no lock, so a temp file must never match it (DuckDB's own `tmp_<name>.parquet`
was measured to be double-counted by concurrent readers). A rename is only durable once its directory is
fsynced. A failed write (full disk, EFBIG, EACCES) removes its temp file and leaves the old file untouched.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_ROWS = 16_384
TEMP_MARK = ".tmp-"


class WarehouseError(Exception):
    """Anything the warehouse cannot do; the message names the path or value at fault."""


def temp_path_for(path: Path) -> Path:
    """`<dir>/.<name>.tmp-<pid>-<rand>`: hidden and not ending in .parquet, so no reader glob matches it."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def is_temp_file(path: Path) -> bool:
    return path.name.startswith(".") and TEMP_MARK in path.name


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new entry in `directory` durable. POSIX only: Windows cannot open a directory
    (no O_DIRECTORY) and NTFS journals its metadata itself, so there it is a no-op."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(directory: Path) -> None:
    """mkdir -p, fsyncing each parent whose entry was created so the new directory survives a crash."""
    missing = []
    d = directory
    while not d.exists():
        missing.append(d)
        d = d.parent
    try:
        for new in reversed(missing):
            new.mkdir(exist_ok=True)
            fsync_dir(new.parent)
    except OSError as exc:
        raise WarehouseError(f"cannot create directory {directory}: {exc.strerror or exc}") from exc


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    ensure_dir(path.parent)
    tmp = temp_path_for(path)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except (OSError, pa.ArrowException) as exc:
        tmp.unlink(missing_ok=True)
        reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            reason = f"disk full ({reason})"
        raise WarehouseError(f"cannot write {path}: {reason}") from exc


def write_bytes_atomic(path: Path, data: bytes) -> None:
    _write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_json_atomic(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def write_parquet_atomic(
    path: Path, table: pa.Table, *, compression: str = "zstd", row_group_rows: int = ROW_GROUP_ROWS
) -> None:
    """One Parquet file, zstd, 16k-row groups (bench/queries.py: a one-symbol read decodes a quarter of what
    64k-row groups cost it, cross-sections and full scans no slower),
    with CRC page checksums so a garbled page is detected on read instead of decoding to wrong values."""
    _write_atomic(
        path,
        lambda tmp: pq.write_table(table, tmp, compression=compression, row_group_size=row_group_rows,
                                   write_page_checksum=True),
    )


def remove_durably(path: Path) -> None:
    """Unlink and fsync the directory so the removal is not undone by a crash."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)
