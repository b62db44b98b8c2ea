"""The writer lock across real processes: a live holder refuses us, a SIGKILLed holder's lock is taken over."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harvester.warehouse.lock import WarehouseLocked, WriterLock

HOLDER = """
import sys
from harvester.warehouse.lock import WriterLock
lock = WriterLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
sys.stdin.readline()
"""


def start_holder(data_dir) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(data_dir)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"  # blocks until the child holds the lock
    return child


def test_live_holder_refuses_us_naming_its_pid(tmp_path):
    child = start_holder(tmp_path)
    try:
        with pytest.raises(WarehouseLocked) as info, WriterLock(tmp_path):
            pass
        assert info.value.holder_pid == child.pid and info.value.since
        assert str(child.pid) in str(info.value)
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    with WriterLock(tmp_path) as lock:  # released at the child's clean exit
        assert lock.took_over is None or lock.took_over.get("pid") == child.pid


def test_killed_holder_lock_is_taken_over(tmp_path):
    child = start_holder(tmp_path)
    child.kill()
    child.wait(timeout=30)
    with WriterLock(tmp_path) as lock:
        assert lock.took_over["pid"] == child.pid
        with pytest.raises(WarehouseLocked) as info:
            WriterLock(tmp_path).acquire()  # a second open file description conflicts even in-process
        assert info.value.holder_pid == os.getpid()


def test_clean_release_leaves_nothing_to_take_over(tmp_path):
    with WriterLock(tmp_path):
        pass
    with WriterLock(tmp_path) as lock:
        assert lock.took_over is None


def test_no_unix_only_call_is_left_the_lock_is_filelocks_and_directory_fsync_is_guarded(tmp_path, monkeypatch):
    """Windows has no fcntl and cannot open a directory (O_DIRECTORY): neither may stop a harvest there."""
    import harvester.warehouse.lock as lock_module
    from harvester.warehouse.files import fsync_dir, write_bytes_atomic

    assert "fcntl" not in vars(lock_module) and lock_module.FileLock.__module__.startswith("filelock")
    monkeypatch.delattr(os, "O_DIRECTORY")
    fsync_dir(tmp_path)  # a no-op where the OS has no O_DIRECTORY
    write_bytes_atomic(tmp_path / "f.json", b"{}")
    assert (tmp_path / "f.json").read_bytes() == b"{}"
