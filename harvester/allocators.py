"""The native allocators of a harvester process: tuned to hand freed memory back to the system.

Most of a harvest's memory is native, not Python's: delta-rs (its own jemalloc) and pyarrow (mimalloc by
default) keep what a commit freed for reuse, so a process's peak grew with every commit (bench/memory.py).
The `harvest` command calls `lean_allocators()` before anything imports deltalake; library users keep their
process as they set it up. Imports nothing of harvester.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import cache

# deltalake's wheel links jemalloc under the `_rjem_` prefix, which reads its options from this variable
# when it starts: return freed pages at once instead of after 10 s (measured: -70 MB on a 100-symbol backfill).
DELTA_JEMALLOC_ENV = "_RJEM_MALLOC_CONF"
DELTA_JEMALLOC_CONF = "dirty_decay_ms:0,muzzy_decay_ms:0"


def lean_allocators() -> None:
    """delta-rs returns freed memory at once, and pyarrow allocates from the C library, whose free pages
    `trim()` returns after each commit (mimalloc's pool kept them: -80 MB on the same backfill)."""
    os.environ.setdefault(DELTA_JEMALLOC_ENV, DELTA_JEMALLOC_CONF)
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


def trim() -> None:
    """Hand the C library's free heap pages back to the system (glibc's malloc_trim; a no-op elsewhere)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None
