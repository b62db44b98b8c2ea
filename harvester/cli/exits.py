"""The exit codes every `harvest` verb uses, and the one-line failure that ends a verb.

  0  done (the nightly job: every series complete, or left to another harvest that holds it)
  1  some series failed (the summary lists them by symbol with the reason)
  2  bad input or configuration (option, universe file, harvest.toml, data directory, query) — nothing touched
  3  no IB gateway reachable at host:port
  4  the warehouse lock is held (a migration is running)
  5  the client id is in use by another API client (IB error 326)
130  interrupted (Ctrl-C); whatever was staged is committed by the next run
143  terminated (SIGTERM, what systemd and cron wrappers send): handled as Ctrl-C, then 128 + 15
"""

from __future__ import annotations

import contextlib
import enum
import signal
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
    TERMINATED = 143  # SIGTERM: 128 + 15, the shell's convention


_terminated: list[int] = []


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM takes Ctrl-C's path (asyncio's runner cancels the harvest, staged answers stay staged)."""
    _terminated.append(signum)
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside, SIGTERM interrupts like Ctrl-C and the verb ends with exit 143 (`interrupted`); the previous
    handler comes back afterwards (verbs run inside other programs too: tests, notebooks)."""
    _terminated.clear()
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: signals are not ours to take
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted(what: str = "") -> NoReturn:
    """The end of an interrupted verb: 143 after SIGTERM, 130 after Ctrl-C."""
    code, cause = (Exit.TERMINATED, "terminated (SIGTERM)") if _terminated else (Exit.INTERRUPTED, "interrupted")
    fail(code, f"{cause}{'; ' + what if what else ''}")


MESSAGE_CHARS = 400  # a failure line is read by a human: a 5,000-character symbol is cut, not echoed whole
CULPRIT_CHARS = 60


def shorten(text: object, limit: int = CULPRIT_CHARS) -> str:
    """`text` cut to `limit` characters, saying how much was cut (a culprit stays recognisable)."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def fail(code: Exit, message: str) -> NoReturn:
    """One line on stderr naming the culprit, then the documented exit code; never a traceback."""
    line = " ".join(str(message).split("\n"))
    click.echo(f"harvest: {shorten(line, MESSAGE_CHARS)}", err=True)
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
