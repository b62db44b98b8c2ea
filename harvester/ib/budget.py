"""One pacing budget per gateway: every harvest that talks to one gateway, in this process or another (the
nightly job, each `queries.bars(fetch='missing')`, a second harvest into another warehouse), draws on it.

IB paces per gateway at least (docs/ib-rules.md §1.6). Across processes the budget is the ledger
(`ib.ledger`: one SQLite file in a per-user runtime directory); inside a process every harvest to one
gateway shares one budget object. Where the ledger cannot be opened (no writable runtime or temp
directory), or `HARVEST_PACING_DIR=off`, the budget falls back to one in-process window per gateway,
which `job.pacing_budget` seeds from the warehouse journal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator

from harvester.ib.ledger import LEDGER_DIR_ENV, LedgerBudget, gateway_key
from harvester.ib.pacing import PacedRequest, PacingWindow
from harvester.ibrules import PacingLimits

log = logging.getLogger(__name__)


class SharedWindow(PacingWindow):
    """A PacingWindow that several harvests (threads with event loops of their own) use at once."""

    def __init__(self, limits: PacingLimits, clock: Callable[[], float]) -> None:
        super().__init__(limits, clock)
        self._mutex = threading.RLock()

    @contextlib.contextmanager
    def turn(self) -> Iterator[SharedWindow]:
        """The window, held for one pick-send-record step."""
        with self._mutex:
            yield self

    def wait_time(self, req: PacedRequest) -> float:
        with self._mutex:
            return super().wait_time(req)

    def message_wait(self) -> float:
        with self._mutex:
            return super().message_wait()

    def sent(self, req: PacedRequest) -> float:
        with self._mutex:
            return super().sent(req)

    def remember(self, req: PacedRequest, at: float, still_open: bool = False, round_trip: float | None = None
                 ) -> None:
        with self._mutex:
            super().remember(req, at, still_open, round_trip)

    def finished(self, req: PacedRequest, violated: bool = False) -> float | None:
        with self._mutex:
            return super().finished(req, violated)

    def open_count(self) -> int:
        with self._mutex:
            return super().open_count()


_windows: dict[tuple[str, int, PacingLimits], SharedWindow] = {}
_ledgers: dict[tuple[str, PacingLimits], LedgerBudget] = {}
_guard = threading.Lock()


def gateway_window(host: str, port: int, limits: PacingLimits, clock: Callable[[], float]
                   ) -> tuple[SharedWindow, bool]:
    """The process's in-process window for the gateway at host:port under `limits`, and whether it was just
    made (then the caller seeds it with sends it knows of)."""
    key = (host, port, limits)
    with _guard:
        window = _windows.get(key)
        if window is not None:
            return window, False
        window = _windows[key] = SharedWindow(limits, clock)
        return window, True


def gateway_budget(host: str, port: int, account: str, limits: PacingLimits) -> LedgerBudget | None:
    """The ledger-backed budget of the gateway at host:port (and the account it reports), shared by every
    process of this user; None when the ledger is switched off or cannot be opened (then use
    `gateway_window`)."""
    if os.environ.get(LEDGER_DIR_ENV, "").lower() == "off":
        return None
    key = (gateway_key(host, port, account), limits)
    with _guard:
        budget = _ledgers.get(key)
        if budget is None:
            try:
                budget = _ledgers[key] = LedgerBudget(key[0], limits)
            except (OSError, sqlite3.Error) as exc:
                log.warning("pacing ledger unavailable (%s): pacing this process alone", exc)
                return None
        return budget
