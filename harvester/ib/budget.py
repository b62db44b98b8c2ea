"""One pacing budget per gateway in a process: every harvest that talks to one gateway (the nightly job, each
`queries.bars(fetch='missing')`, one after another or at once) draws on the same `PacingWindow`.

IB paces per gateway at least (docs/ib-rules.md §1), so a second harvest started seconds after a first must
see the first's sends; a window made for it empty drew 5 pacing violations where the first drew none. This
module is the single seam a crash-safe per-gateway ledger shared across processes replaces; until then the
window is seeded from the warehouse journal when first made (`job.pacing_budget`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from harvester.ib.pacing import PacedRequest, PacingWindow
from harvester.ibrules import PacingLimits


class SharedWindow(PacingWindow):
    """A PacingWindow that several harvests (threads with event loops of their own) use at once."""

    def __init__(self, limits: PacingLimits, clock: Callable[[], float]) -> None:
        super().__init__(limits, clock)
        self._mutex = threading.RLock()

    def wait_time(self, req: PacedRequest) -> float:
        with self._mutex:
            return super().wait_time(req)

    def message_wait(self) -> float:
        with self._mutex:
            return super().message_wait()

    def sent(self, req: PacedRequest) -> None:
        with self._mutex:
            super().sent(req)

    def remember(self, req: PacedRequest, at: float) -> None:
        with self._mutex:
            super().remember(req, at)

    def finished(self, req: PacedRequest) -> None:
        with self._mutex:
            super().finished(req)

    def open_count(self) -> int:
        with self._mutex:
            return super().open_count()


_windows: dict[tuple[str, int, PacingLimits], SharedWindow] = {}
_guard = threading.Lock()


def gateway_window(host: str, port: int, limits: PacingLimits, clock: Callable[[], float]
                   ) -> tuple[SharedWindow, bool]:
    """The process's window for the gateway at host:port under `limits`, and whether it was just made
    (then the caller seeds it with sends it knows of)."""
    key = (host, port, limits)
    with _guard:
        window = _windows.get(key)
        if window is not None:
            return window, False
        window = _windows[key] = SharedWindow(limits, clock)
        return window, True
