"""Faults on demand. Mutable at runtime (tests flip fields on `gw.faults`); the data service consults
it for every data request (contract details, historical data, head timestamp), the server's ticker for
the scheduled ones (drop_at, outage_at, hmds_outage_at).

Catalogue
=========
| field                      | effect                                                                   |
|----------------------------|--------------------------------------------------------------------------|
| drop_after_requests = N    | serve N more data requests, close every socket when the next one arrives  |
|                            | (one-shot: resets to None after firing)                                  |
| drop_at = instant          | close every socket once the simulated clock reaches it (one-shot)        |
| never_answer = True        | no data request gets any reply (the client's timeout path)               |
| never_answer_nth = N       | the Nth data request from now gets no reply (one-shot countdown)         |
| never_answer_symbols       | requests for these symbols get no reply                                  |
| force_error = KIND         | every historical request fails with catalogue error KIND (see ERRORS)    |
| error_symbols = {SYM: E}   | historical/head-timestamp requests for SYM fail with E: a KIND or        |
|                            | (code, text)                                                             |
| random_error_rate = p      | each historical request fails with `random_error` with probability p,    |
| random_error, seed         | drawn from a Random(seed) (deterministic per gateway)                    |
| outage_at / outage_seconds | at that simulated instant: 1100 to every client, 1102 `outage_seconds`   |
|                            | (× latency scale) later; requests in between get no reply                |
| hmds_outage_at / _seconds  | the same with 2105 (HMDS broken) then 2106 (HMDS OK)                     |
| bad_bar_rate = p           | this fraction of served bars is genuinely broken, chosen per bar by a    |
| bad_bar_symbols            | hash of (seed, conId, bar size, whatToShow, bar start), so a re-ask gets |
| bad_bars_until = instant   | the same ones: high a tick below low, negative volume (bars with volume) |
|                            | or an extra bar at the session's close (intraday). Only the named        |
|                            | symbols when some are named; none once the simulated clock reaches       |
|                            | `bad_bars_until` (IB revised its history: the next night is clean)       |
Also on the gateway: `drop_connections()`, `fire_outage(seconds)`, `fire_hmds_outage(seconds)`.

ERRORS (KIND → code, text; `{…}` filled from the request):
  no_data → 162 HMDS query returned no data · pacing → 162 pacing violation ·
  no_permissions → 162 No market data permissions for <primary> <secType> ·
  cancelled → 162 API historical data query cancelled: <reqId> · too_many_open → 322.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

from harvester.sim.market import pricepath as pp
from harvester.sim.market.barcolumns import BarColumns
from harvester.sim.wire import messages as m

ERRORS: dict[str, tuple[int, str]] = {
    "no_data": (162, m.TEXT_NO_DATA),
    "pacing": (162, m.TEXT_PACING),
    "no_permissions": (162, m.TEXT_NO_PERMISSIONS),
    "cancelled": (162, m.TEXT_CANCELLED),
    "too_many_open": (322, m.TEXT_TOO_MANY_OPEN),
}

ErrorSpec = str | tuple[int, str]


class FaultError(ValueError):
    """A fault setting that names no catalogue error or has an impossible value."""


def resolve_error(spec: ErrorSpec) -> tuple[int, str]:
    """(code, text template) for a catalogue KIND or an explicit (code, text)."""
    if isinstance(spec, str):
        if spec not in ERRORS:
            raise FaultError(f"unknown error kind {spec!r}; known: {', '.join(sorted(ERRORS))}")
        return ERRORS[spec]
    code, text = spec
    return int(code), str(text)


@dataclass
class Faults:
    """See the module docstring for the catalogue."""

    drop_after_requests: int | None = None
    drop_at: datetime | None = None
    never_answer: bool = False
    never_answer_nth: int | None = None
    never_answer_symbols: set[str] = field(default_factory=set)
    force_error: ErrorSpec | None = None
    error_symbols: dict[str, ErrorSpec] = field(default_factory=dict)
    random_error_rate: float = 0.0
    random_error: ErrorSpec = "pacing"
    seed: int = 0
    outage_at: datetime | None = None
    outage_seconds: float = 30.0
    hmds_outage_at: datetime | None = None
    hmds_outage_seconds: float = 30.0
    bad_bar_rate: float = 0.0
    bad_bar_symbols: set[str] = field(default_factory=set)
    bad_bars_until: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("random_error_rate", "bad_bar_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise FaultError(f"{name} must be within [0, 1], got {getattr(self, name)}")
        if self.bad_bar_symbols and not self.bad_bar_rate:
            raise FaultError("bad_bar_symbols needs a bad_bar_rate above 0 (the fraction of their bars to break)")
        for spec in [self.force_error, self.random_error, *self.error_symbols.values()]:
            if spec is not None:
                resolve_error(spec)

    def take_drop(self) -> bool:
        """Count one data request against `drop_after_requests`; True when this one must drop."""
        if self.drop_after_requests is None:
            return False
        if self.drop_after_requests <= 0:
            self.drop_after_requests = None
            return True
        self.drop_after_requests -= 1
        return False

    def breaks_bars(self, symbol: str, now: datetime) -> bool:
        """Whether this answer gets broken bars (which ones: `break_bars`)."""
        return (self.bad_bar_rate > 0 and (not self.bad_bar_symbols or symbol in self.bad_bar_symbols)
                and (self.bad_bars_until is None or now < self.bad_bars_until))

    def take_silence(self, symbol: str) -> bool:
        """Whether this data request must never be answered (counts down `never_answer_nth`)."""
        nth_fires = False
        if self.never_answer_nth is not None:
            self.never_answer_nth -= 1
            if self.never_answer_nth <= 0:
                self.never_answer_nth = None
                nth_fires = True
        return self.never_answer or nth_fires or symbol in self.never_answer_symbols


def break_bars(bars: BarColumns, faults: Faults, series: tuple[int, int, str], tick: float,
               session_bounds: tuple[np.ndarray, np.ndarray], intraday: bool) -> tuple[BarColumns, int]:
    """`bars` with `faults.bad_bar_rate` of them broken, and how many; `series` is (conId, bar seconds,
    whatToShow), `session_bounds` the flavour's (opens, closes)."""
    con_id, seconds, what = series
    keys = (faults.seed, con_id, seconds, zlib.crc32(what.encode()), bars.start)
    chosen = pp.uniform(pp.hash_keys(*keys)) < faults.bad_bar_rate
    if not chosen.any():
        return bars, 0
    kind = (pp.hash_keys(*keys, 1) % np.uint64(3)).astype(np.int64)
    kind = np.where((kind == 1) & (bars.volume < 0), 0, kind)  # no volume to make negative (-1: none)
    kind = np.where((kind == 2) & (not intraday), 0, kind)
    broken = replace(
        bars,
        high=np.where(chosen & (kind == 0), bars.low - tick, bars.high),
        volume=np.where(chosen & (kind == 1), -(bars.volume + 100), bars.volume),
    )
    opens, closes = session_bounds
    late = np.flatnonzero(chosen & (kind == 2))  # each adds one bar at its session's close, one a session
    after_close, pick = np.unique(closes[np.searchsorted(opens, bars.start[late], side="right") - 1],
                                  return_index=True)
    extra = BarColumns(after_close, *(getattr(broken, f)[late[pick]] for f in _COLUMNS[1:]))
    merged = BarColumns(*(np.concatenate([getattr(broken, f), getattr(extra, f)]) for f in _COLUMNS))
    order = np.argsort(merged.start, kind="stable")
    served = BarColumns(*(getattr(merged, f)[order] for f in _COLUMNS))
    return served, int(chosen.sum()) - len(late) + len(extra)


_COLUMNS = ("start", "session_date", "open", "high", "low", "close", "volume", "wap", "count")
