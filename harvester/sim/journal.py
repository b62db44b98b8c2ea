"""Request journal: every data request and its outcome, in memory (`gw.journal`) and as JSON lines.

Entry keys: time (simulated, ISO), client_id, kind, req_id, con_id, symbol, bar_size, duration, end,
what_to_show, use_rth, outcome, error_code, bars, latency_s, stamp_lag_s (historical and head-timestamp
requests: pacing judged them at `time` + stamp_lag_s, docs/ib-rules.md §1.9), and broken (bars broken on
purpose by the bad-bar fault) where it fired, withheld ("size": over the HMDS model's max_bars) and late where
the model did that. Outcomes: bars, no_data, error, pacing, too_many_open, unanswered, cancelled, dropped,
disconnected (the soft throttle closed the client), details (contract details answered), timestamp (head
timestamp answered), unknown (cancel of nothing).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Journal(list):
    """A list of entry dicts that also appends each entry to a JSON-lines file when given one."""

    def __init__(self, path: str | Path | None = None) -> None:
        super().__init__()
        self.path = Path(path) if path is not None else None
        self._lock = threading.Condition()
        self._file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.append(entry)
            if self._file is not None:
                self._file.write(json.dumps(entry, default=str) + "\n")
                self._file.flush()
            self._lock.notify_all()

    def wait_for(self, predicate: Callable[[Journal], bool], timeout: float) -> bool:
        """Block until `predicate(journal)` holds (re-checked on every new entry); False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: predicate(self), timeout)

    def matching(self, **criteria: Any) -> list[dict[str, Any]]:
        """Entries whose fields equal every given criterion, e.g. `matching(kind="historical")`."""
        with self._lock:
            return [e for e in list(self) if all(e.get(k) == v for k, v in criteria.items())]

    def count_where(self, **criteria: Any) -> int:
        """How many entries match, e.g. `count_where(kind="historical", outcome="pacing")`."""
        return len(self.matching(**criteria))

    def tally(self) -> dict[tuple[str, str], int]:
        """Counts by (kind, outcome)."""
        counts: dict[tuple[str, str], int] = {}
        with self._lock:
            for entry in self:
                key = (entry.get("kind", ""), entry.get("outcome", ""))
                counts[key] = counts.get(key, 0) + 1
        return counts

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
