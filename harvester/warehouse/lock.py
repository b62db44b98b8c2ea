"""The single-writer lock (`harvest migrate`): an OS file lock on <data_dir>/.harvest.lock.

Taken with `filelock` rather than `fcntl` so it also works on Windows, where many TWS users run (filelock
uses flock on Unix and msvcrt's byte-range lock on Windows). Either is released by the OS when its holder
dies, so a lock left by a killed harvest is free again: we take it over and say so. Who holds it (pid, host,
start time) is written beside it in `.harvest.lock.holder` (filelock owns the lock file's content); that
only feeds the messages.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from filelock import FileLock, Timeout

from harvester.warehouse.files import WarehouseError, write_bytes_atomic
from harvester.warehouse.layout import LOCK_FILE

log = logging.getLogger(__name__)


class WarehouseLocked(WarehouseError):
    """Another live process holds the writer lock."""

    def __init__(self, path: Path, holder_pid: int | None, since: str | None, host: str | None = None) -> None:
        self.holder_pid = holder_pid
        self.since = since
        self.host = host
        where = f" on {host}" if host else ""
        super().__init__(f"{path} is held by pid {holder_pid}{where} since {since}; another harvest is running")


class WriterLock:
    """Exclusive, non-blocking; `took_over` tells whether a dead holder's lock was taken over."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self.holder_path = self.path.with_name(self.path.name + ".holder")
        self._lock: FileLock | None = None
        self.took_over: dict | None = None

    def acquire(self) -> None:
        lock = FileLock(self.path, timeout=0, is_singleton=False, thread_local=False)
        try:
            lock.acquire()
        except Timeout:
            holder = _read_holder(self.holder_path)
            raise WarehouseLocked(self.path, holder.get("pid"), holder.get("started"), holder.get("host")) from None
        except OSError as exc:
            raise WarehouseError(f"cannot open lock file {self.path}: {exc.strerror or exc}") from exc
        previous = _read_holder(self.holder_path)
        if previous:
            self.took_over = previous
            log.warning("stale lock taken over: %s held by dead pid %s since %s",
                        self.path, previous.get("pid"), previous.get("started"))
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.now(UTC).isoformat(timespec="seconds")}
        write_bytes_atomic(self.holder_path, json.dumps(me).encode())
        self._lock = lock

    def release(self) -> None:
        """Empty the holder file first, so the next holder knows this one ended cleanly."""
        if self._lock is None:
            return
        write_bytes_atomic(self.holder_path, b"")
        self._lock.release()
        self._lock = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(path: Path) -> dict:
    try:
        raw = path.read_bytes()
    except OSError:
        return {}
    try:
        holder = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}
