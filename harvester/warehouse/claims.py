"""Claims: which harvest fetches which series tonight, kept in the warehouse so several jobs can share it.

Several harvest jobs (one machine or several, each with its own gateway) may fill one warehouse at once.
Before it asks IB for anything, a job claims its series in one transaction of the `claims` table; a series
another live job holds is left to that job, so no series is fetched twice in a night. A claim expires
(`CLAIM_TTL`) unless its job renews it, so a job that died on another machine frees its series; on the
same host a dead holder (its pid gone, or reused by a younger process) is seen at once.

The table is rewritten whole by every change (it is small), and a rewrite conflicts with any concurrent one
(Delta's optimistic commit), so two jobs claiming at once are serialised: the loser rebuilds its claim on
the winner's rows and takes only what is left. Expiry uses each host's UTC clock: hosts must keep NTP time.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
import psutil
import pyarrow as pa

from harvester.model import SeriesKey
from harvester.warehouse.delta import DeltaTables
from harvester.warehouse.layout import CLAIMS
from harvester.warehouse.tables import CLAIMS_SCHEMA, utc_now_naive

CLAIM_TTL = timedelta(minutes=10)  # renewed every third of it while the job runs
_KEY = ["con_id", "bar_size", "what_to_show", "use_rth"]


@dataclass(frozen=True)
class Holder:
    """Who holds a series: enough for a message an operator can act on."""

    run_id: str
    host: str
    pid: int
    expires_at: datetime

    def __str__(self) -> str:
        return f"run {self.run_id} (pid {self.pid} on {self.host}, claim until {self.expires_at:%H:%M:%S} UTC)"


@dataclass(frozen=True)
class Me:
    """This process as a claimant."""

    run_id: str
    host: str
    pid: int
    pid_started: float

    @classmethod
    def for_run(cls, run_id: str) -> Me:
        return cls(run_id, socket.gethostname(), os.getpid(), psutil.Process().create_time())


def holder_alive(row, host: str, now: datetime) -> bool:
    """A claim holds while it has not expired, and, on this host, while its process still runs."""
    if row.expires_at <= now:
        return False
    if row.host != host:
        return True  # another machine: only expiry tells
    try:
        proc = psutil.Process(int(row.pid))
        return abs(proc.create_time() - float(row.pid_started)) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Claims:
    """One job's claims on one warehouse; `clock` (naive UTC) is injectable for tests."""

    def __init__(self, tables: DeltaTables, me: Me, ttl: timedelta = CLAIM_TTL,
                 clock: Callable[[], datetime] = utc_now_naive) -> None:
        self.tables, self.me, self.ttl, self.clock = tables, me, ttl, clock
        self.held: set[SeriesKey] = set()

    def take(self, keys: Iterable[SeriesKey]) -> dict[SeriesKey, Holder]:
        """Claim every series of `keys` no other live job holds; returns the others with their holders."""
        wanted = list(dict.fromkeys(keys))
        others: dict[SeriesKey, Holder] = {}

        def change(rows: pd.DataFrame, now: datetime) -> pd.DataFrame:
            others.clear()
            for r in rows.itertuples(index=False):
                if r.run_id != self.me.run_id:
                    others[SeriesKey(int(r.con_id), r.bar_size, r.what_to_show, bool(r.use_rth))] = Holder(
                        r.run_id, r.host, int(r.pid), r.expires_at)
            mine = [k for k in wanted if k not in others]
            return pd.concat([rows, self._rows(mine, now)], ignore_index=True)

        self._write(change)
        self.held = {k for k in wanted if k not in others}
        return {k: others[k] for k in wanted if k in others}

    def renew(self) -> None:
        """Push this job's claims' expiry forward (the job's heartbeat)."""
        if self.held:
            self._write(lambda rows, now: rows.assign(expires_at=rows["expires_at"].where(
                rows["run_id"] != self.me.run_id, now + self.ttl)))

    def release(self) -> None:
        """The job is done: its series are free for anyone."""
        if self.held:
            self._write(lambda rows, now: rows[rows["run_id"] != self.me.run_id])
            self.held = set()

    def _rows(self, keys: list[SeriesKey], now: datetime) -> pd.DataFrame:
        me = self.me
        return pd.DataFrame(
            [{"con_id": k.con_id, "bar_size": k.bar_size, "what_to_show": k.what_to_show, "use_rth": k.use_rth,
              "run_id": me.run_id, "host": me.host, "pid": me.pid, "pid_started": me.pid_started,
              "claimed_at": now, "expires_at": now + self.ttl} for k in keys], columns=CLAIMS_SCHEMA.names)

    def _write(self, change: Callable[[pd.DataFrame, datetime], pd.DataFrame]) -> None:
        """One transaction: live claims of the latest snapshot (dead ones dropped), changed by `change`."""
        def build(snapshot) -> tuple[pa.Table, str]:
            now = self.clock()
            rows = self.tables.read(CLAIMS, CLAIMS_SCHEMA, snapshot).to_pandas()
            live = rows[[holder_alive(r, self.me.host, now) or r.run_id == self.me.run_id
                         for r in rows.itertuples(index=False)]] if len(rows) else rows
            new = change(live.reset_index(drop=True), now).drop_duplicates(_KEY, keep="first")
            return pa.Table.from_pandas(new, schema=CLAIMS_SCHEMA, preserve_index=False), "true"

        self.tables.transact(CLAIMS, build, CLAIMS_SCHEMA)


def live_claims(tables: DeltaTables, clock: Callable[[], datetime] = utc_now_naive) -> pd.DataFrame:
    """The claims held now (for `harvest status`)."""
    rows = tables.read(CLAIMS, CLAIMS_SCHEMA).to_pandas()
    now, host = clock(), socket.gethostname()
    return rows[[holder_alive(r, host, now) for r in rows.itertuples(index=False)]] if len(rows) else rows
