"""The single-writer lock: fcntl.flock on <data_dir>/.harvest.lock.

flock is released by the kernel when its holder dies, so a lock file left by a killed harvest is free
again: we take it over and say so. The file's content (pid, host, start time) only feeds the messages.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from harvester.warehouse.files import WarehouseError
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
        self._fd: int | None = None
        self.took_over: dict | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise WarehouseError(f"cannot open lock file {self.path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise WarehouseLocked(self.path, holder.get("pid"), holder.get("started"), holder.get("host")) from None
        previous = _read_holder(fd)
        if previous:
            self.took_over = previous
            log.warning("stale lock taken over: %s held by dead pid %s since %s",
                        self.path, previous.get("pid"), previous.get("started"))
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.now(UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Empty the file first, so the next holder knows this one ended cleanly."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    raw = os.pread(fd, 4096, 0)
    try:
        holder = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}
