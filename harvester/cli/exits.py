"""The exit codes every `harvest` verb uses, and the one-line failure that ends a verb.

  0  done (the nightly job: every series complete, or left to another harvest that holds it)
  1  some series failed (the summary lists them by symbol with the reason)
  2  bad input or configuration (option, universe file, harvest.toml, data directory, query) — nothing touched
  3  no IB gateway reachable at host:port
  4  the warehouse lock is held (a migration is running)
  5  the client id is in use by another API client (IB error 326)
130  interrupted (Ctrl-C); whatever was staged is committed by the next run
"""

from __future__ import annotations

import contextlib
import enum
import sys
from collections.abc import Iterator
from typing import NoReturn

import click

from harvester.warehouse import WarehouseError, WarehouseLocked
from harvester.warehouse.storage import StorageError


class Exit(enum.IntEnum):
    OK = 0
    FAILED = 1
    BAD_INPUT = 2
    UNREACHABLE = 3
    LOCKED = 4
    CLIENT_ID = 5
    INTERRUPTED = 130  # Ctrl-C, the shell's convention


def fail(code: Exit, message: str) -> NoReturn:
    """One line on stderr naming the culprit, then the documented exit code; never a traceback."""
    click.echo(f"harvest: {message}", err=True)
    sys.exit(int(code))


@contextlib.contextmanager
def warehouse_errors() -> Iterator[None]:
    """A warehouse that cannot be used (old layout, unreadable, locked) ends a verb in one line."""
    try:
        yield
    except WarehouseLocked as exc:
        fail(Exit.LOCKED, f"another harvest holds the warehouse lock: {exc}")
    except (WarehouseError, StorageError) as exc:
        fail(Exit.BAD_INPUT, str(exc))
