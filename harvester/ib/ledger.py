"""One pacing budget per gateway across processes: a ledger of every send, in one small SQLite file.

IB's budget is at least per gateway (docs/ib-rules.md §1.6): the nightly job, a notebook's
`fetch='missing'` and a second harvest into another warehouse spend the same 60 requests per 10 minutes.
So every harvester process of this user records each send to a gateway in `pacing.sqlite` under the
ledger directory (`ledger_dir`). A send is decided and recorded in one `BEGIN IMMEDIATE` transaction (a
`turn`): the rows within the window are read into a `PacingWindow`, IB's rules pick the request, it goes
on the wire and its row is written before the transaction commits, so two processes never both take the
last slot. WAL and a busy timeout keep turns short and concurrent readers unblocked; a crash mid-turn
rolls back. A send stays open until its answer; the open rows of a process that died are closed by the
next turn (pid and start time, so a reused pid does not keep them). The learned margin (`pacing.Margin`)
is kept per gateway too: what one process learns from a violation, all of them use. No server runs.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from harvester.ib.pacing import Margin, MessageThrottle, PacedRequest, PacingWindow
from harvester.ibrules import PacingLimits
from harvester.model import WorkKind
from harvester.settings import user_temp_dir

LEDGER_DIR_ENV = "HARVEST_PACING_DIR"  # overrides where the ledger lives (tests, shared setups)
LEDGER_FILE = "pacing.sqlite"
BUSY_TIMEOUT_MS = 10_000
KEEP_S = 3600.0  # answered sends older than this are deleted (longer than any window and margin)
OPEN_TTL_S = 3600.0  # an open send older than this is taken as lost even if its process lives
OPEN_POLL_S = 0.25  # while other processes' requests fill the open cap, look again this often

SCHEMA_VERSION = 1  # a ledger of another version is dropped and made anew: it holds minutes of sends, no data
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sends (
    id INTEGER PRIMARY KEY,
    gateway TEXT NOT NULL,      -- host:port/account
    at REAL NOT NULL,           -- send time, seconds since the epoch (one clock for every process)
    window_s REAL NOT NULL,     -- the sender's 10-minute window (scaled in demos and tests)
    weight INTEGER NOT NULL,
    con_id INTEGER NOT NULL,
    exchange TEXT NOT NULL,
    what_to_show TEXT NOT NULL,
    identity TEXT NOT NULL,     -- IB's "identical request" key, as text
    kind TEXT NOT NULL,
    open INTEGER NOT NULL,      -- 1 until answered or cancelled
    answered_at REAL,           -- when its answer came (a violation's is not kept): send→answer delays
    pid INTEGER NOT NULL,
    started REAL NOT NULL,      -- the process's start time: a reused pid is another process
    command TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sends_by_gateway ON sends (gateway, at);
CREATE TABLE IF NOT EXISTS margins (
    gateway TEXT PRIMARY KEY,
    peak_s REAL NOT NULL,       -- the margin as last widened
    since REAL NOT NULL         -- when (epoch seconds), after which it halves back every clean window
);
"""


def ledger_dir() -> Path:
    """Where the ledger lives: $HARVEST_PACING_DIR, else $XDG_RUNTIME_DIR/harvester (per user, cleared at
    logout and reboot), else <tmp>/harvester-<uid>."""
    if os.environ.get(LEDGER_DIR_ENV):
        return Path(os.environ[LEDGER_DIR_ENV])
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK):
        return Path(runtime) / "harvester"
    return user_temp_dir("harvester")


def ledger_path() -> Path:
    return ledger_dir() / LEDGER_FILE


def gateway_key(host: str, port: int, account: str = "") -> str:
    """The budget's name: host:port, and the account the gateway reports when known."""
    host = host.strip().lower()
    host = "127.0.0.1" if host in ("localhost", "::1", "[::1]") else host
    return f"{host}:{port}" + (f"/{account}" if account else "")


def connect(path: Path) -> sqlite3.Connection:
    """The ledger database, made if missing (directory private to the user), in WAL mode."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            db.execute("DROP TABLE IF EXISTS sends")
            db.execute("DROP TABLE IF EXISTS margins")
        for statement in filter(str.strip, _SCHEMA.split(";")):
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return db


@dataclass(frozen=True)
class ProcessId:
    """A process as the ledger names it: pid, start time (pid reuse), command line."""

    pid: int
    started: float
    command: str

    @classmethod
    def current(cls) -> ProcessId:
        me = psutil.Process()
        return cls(me.pid, me.create_time(), " ".join(sys.argv)[:200] or me.name())


def is_alive(pid: int, started: float) -> bool:
    try:
        return abs(psutil.Process(pid).create_time() - started) < 1.0
    except psutil.Error:
        return False


class LedgerTurn:
    """One decision against the ledger: the window as every process's sends make it; `sent` records."""

    def __init__(self, budget: LedgerBudget, window: PacingWindow) -> None:
        self._budget, self.window = budget, window
        self.limits = window.limits

    def wait_time(self, req: PacedRequest) -> float:
        """As PacingWindow's, but a full open cap is looked at again soon: other processes free it unseen."""
        wait = self.window.wait_time(_stored(req))
        return OPEN_POLL_S if math.isinf(wait) else wait

    def message_wait(self) -> float:
        return self._budget.throttle.wait()

    def open_count(self) -> int:
        return self.window.open_count()

    def sent(self, req: PacedRequest) -> None:
        self._budget.record(req, self.window.sent(_stored(req)))


class LedgerBudget:
    """The pacing budget of one gateway shared by every process through the ledger; thread-safe. It has
    PacingWindow's face as the scheduler uses it (`turn`, then `finished`), so the scheduler takes either."""

    def __init__(self, gateway: str, limits: PacingLimits, path: Path | None = None,
                 clock: Callable[[], float] = time.time, process: ProcessId | None = None,
                 alive: Callable[[int, float], bool] = is_alive) -> None:
        self.gateway, self.limits, self.clock = gateway, limits, clock
        self.path = path or ledger_path()
        self.process = process or ProcessId.current()
        self._alive = alive
        self._db = connect(self.path)
        self._mutex = threading.RLock()
        self.throttle = MessageThrottle(clock)  # ib_insync throttles per connection: this process's own
        self._rows: dict[PacedRequest, deque[tuple[int, float, float]]] = defaultdict(deque)  # (id, at, clearance)

    @contextlib.contextmanager
    def turn(self) -> Iterator[LedgerTurn]:
        """Hold the ledger's write lock while one request is picked, sent and recorded."""
        with self._mutex:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield LedgerTurn(self, self._load())
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def record(self, req: PacedRequest, clearance: float) -> None:
        """Write a send just taken inside a turn (`clearance`: how far past its rules it went)."""
        self.throttle.record(req.messages)
        me, now = self.process, self.clock()
        cursor = self._db.execute(
            "INSERT INTO sends (gateway, at, window_s, weight, con_id, exchange, what_to_show, identity, kind,"
            " open, pid, started, command) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
            (self.gateway, now, self.limits.window_s, req.weight, req.con_id, req.exchange,
             req.what_to_show, _stored(req).identity[0], req.kind.value, me.pid, me.started, me.command))
        self._rows[req].append((int(cursor.lastrowid), now, clearance))

    def finished(self, req: PacedRequest, violated: bool = False) -> float | None:
        """Close the oldest open send of `req` with its send→answer delay; on a violation, widen the
        gateway's margin for every process from what the ledger holds (`pacing.Margin.widen`)."""
        with self._mutex:
            rows = self._rows.get(req)
            if not rows:
                return None
            row_id, sent_at, clearance = rows.popleft()
            if not rows:
                del self._rows[req]
            with self.turn() as turn:
                now = self.clock()
                self._db.execute("UPDATE sends SET open = 0, answered_at = ? WHERE id = ?",
                                 (None if violated else now, row_id))
                if violated:
                    margin = turn.window.margin
                    margin.widen(clearance, now - sent_at, turn.window.longest_round_trip(), now)
                    self._db.execute("INSERT OR REPLACE INTO margins (gateway, peak_s, since) VALUES (?, ?, ?)",
                                     (self.gateway, margin.peak_s, margin.since))
            return now - sent_at

    def margin_now(self) -> float:
        with self._mutex:
            return self._stored_margin().at(self.clock())

    def close(self) -> None:
        with self._mutex:
            self._db.close()

    def _stored_margin(self) -> Margin:
        row = self._db.execute("SELECT peak_s, since FROM margins WHERE gateway = ?", (self.gateway,)).fetchone()
        margin = Margin(self.limits.safety_s, self.limits.window_s)
        if row is not None:
            margin.peak_s, margin.since = max(margin.base_s, min(margin.cap_s, row[0])), row[1]
        return margin

    def _load(self) -> PacingWindow:
        """The window every process's sends make now: closed-off dead senders, old rows dropped."""
        now = self.clock()
        self._db.execute("DELETE FROM sends WHERE at < ? AND (open = 0 OR at < ?)", (now - KEEP_S, now - OPEN_TTL_S))
        window = PacingWindow(self.limits, self.clock, margin=self._stored_margin())
        horizon = now - (self.limits.window_s + window.margin.cap_s)
        rows = self._db.execute(
            "SELECT id, at, weight, con_id, exchange, what_to_show, identity, kind, open, pid, started, answered_at"
            " FROM sends WHERE gateway = ? AND (at > ? OR open = 1) ORDER BY at", (self.gateway, horizon)).fetchall()
        dead: list[int] = []
        checked: dict[tuple[int, float], bool] = {(self.process.pid, self.process.started): True}
        for row_id, at, weight, con_id, exchange, what, identity, kind, is_open, pid, started, answered in rows:
            if is_open:
                key = (pid, started)
                if key not in checked:
                    checked[key] = self._alive(pid, started)
                if not checked[key] or at < now - OPEN_TTL_S:
                    dead.append(row_id)
                    is_open = 0
            req = PacedRequest(con_id, exchange, what, (identity,), weight, WorkKind(kind))
            window.remember(req, at, bool(is_open), None if answered is None else answered - at)
        if dead:
            self._db.executemany("UPDATE sends SET open = 0 WHERE id = ?", [(i,) for i in dead])
        return window


def _stored(req: PacedRequest) -> PacedRequest:
    """`req` as the ledger keeps it: its identity as text, so sends of other processes compare equal."""
    return replace(req, identity=(repr(req.identity),))


@dataclass(frozen=True)
class SenderUsage:
    pid: int
    command: str
    alive: bool
    weighted: int  # sent within its window
    open: int


@dataclass(frozen=True)
class GatewayUsage:
    gateway: str
    weighted: int
    open: int
    margin_peak_s: float | None  # the margin as last widened by a violation, if ever
    margin_since: float | None  # when (epoch seconds)
    senders: tuple[SenderUsage, ...]


def ledger_usage(path: Path | None = None, clock: Callable[[], float] = time.time,
                 alive: Callable[[int, float], bool] = is_alive) -> list[GatewayUsage]:
    """What each gateway's budget holds now: weighted sends within their window, open requests, the last
    widened margin, and by whom (pid, command). Read only; an absent ledger is an empty list."""
    path = path or ledger_path()
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        now = clock()
        rows = db.execute("SELECT gateway, at, window_s, weight, open, pid, started, command FROM sends"
                          " WHERE at > ? OR open = 1", (now - KEEP_S,)).fetchall()
        margins = {g: (p, s) for g, p, s in db.execute("SELECT gateway, peak_s, since FROM margins")}
    finally:
        db.close()
    senders: dict[str, dict[tuple[int, float, str], list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    liveness: dict[tuple[int, float], bool] = {}
    for gateway, at, window_s, weight, is_open, pid, started, command in rows:
        if (pid, started) not in liveness:
            liveness[(pid, started)] = alive(pid, started)
        counts = senders[gateway][(pid, started, command)]
        counts[0] += weight if at > now - window_s else 0
        counts[1] += 1 if is_open and liveness[(pid, started)] and at > now - OPEN_TTL_S else 0
    usage = []
    for gateway, by_sender in sorted(senders.items()):
        listed = tuple(SenderUsage(pid, command, liveness[(pid, started)], weighted, held)
                       for (pid, started, command), (weighted, held) in by_sender.items() if weighted or held)
        if listed:
            peak, since = margins.get(gateway, (None, None))
            usage.append(GatewayUsage(gateway, sum(s.weighted for s in listed), sum(s.open for s in listed),
                                      peak, since, listed))
    return usage
