"""The simulator's "now": settable, then advancing in real time, so nightly increments are testable.

reqCurrentTime and empty endDateTime read it; the harvester plans from it, never from its own clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class ClockError(ValueError):
    """A clock setting that is not a timezone-aware instant or an ISO 8601 string."""


def parse_instant(value: datetime | str) -> datetime:
    """An aware UTC datetime from a datetime or ISO 8601 text (naive values are read as UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ClockError(f"not an ISO 8601 instant: {value!r}") from None
    if not isinstance(value, datetime):
        raise ClockError(f"not a datetime: {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class SimClock:
    """Simulated wall clock: an anchor instant plus the real time elapsed since it was set."""

    def __init__(self, now: datetime | str | None = None, monotonic: Callable[[], float] = time.monotonic):
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._anchor = parse_instant(now) if now is not None else datetime.now(UTC)
        self._anchor_real = monotonic()

    def now(self) -> datetime:
        """Current simulated instant (aware, UTC)."""
        with self._lock:
            return self._anchor + timedelta(seconds=self._monotonic() - self._anchor_real)

    def set(self, when: datetime | str) -> None:
        """Jump to `when`; time keeps running from there."""
        instant = parse_instant(when)
        with self._lock:
            self._anchor, self._anchor_real = instant, self._monotonic()

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward (or back, with a negative delta)."""
        with self._lock:
            self._anchor += delta
