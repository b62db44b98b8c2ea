"""Claims on series: what lets several harvest jobs share one warehouse without fetching a series twice."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import datetime

import psutil

from harvester.model import SeriesKey
from harvester.warehouse.claims import CLAIM_TTL, Claims, Me, live_claims
from harvester.warehouse.delta import DeltaTables

KEYS = [SeriesKey(con_id, "1 day", "TRADES", True) for con_id in range(1, 7)]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 6, 14, 20, 0)

    def __call__(self) -> datetime:
        return self.now


def claimant(tmp_path, run_id: str, clock: Clock, **me) -> Claims:
    base = Me.for_run(run_id)
    return Claims(DeltaTables(tmp_path), Me(run_id, me.get("host", base.host), me.get("pid", base.pid),
                                            me.get("pid_started", base.pid_started)), clock=clock)


def test_a_second_job_gets_only_what_the_first_does_not_hold(tmp_path):
    clock = Clock()
    a, b = claimant(tmp_path, "a", clock), claimant(tmp_path, "b", clock)
    assert a.take(KEYS[:4]) == {}
    held = b.take(KEYS[2:])
    assert set(held) == set(KEYS[2:4]) and all(h.run_id == "a" for h in held.values())
    assert b.held == set(KEYS[4:]) and a.held == set(KEYS[:4])


def test_a_claim_lapses_unless_renewed(tmp_path):
    clock = Clock()
    a, b = claimant(tmp_path, "a", clock, host="elsewhere"), claimant(tmp_path, "b", clock)
    a.take(KEYS)
    clock.now += CLAIM_TTL * 0.9
    a.renew()
    clock.now += CLAIM_TTL * 0.2  # past the first expiry, within the renewed one
    assert set(b.take(KEYS)) == set(KEYS)
    clock.now += CLAIM_TTL
    assert b.take(KEYS) == {} and b.held == set(KEYS)


def test_release_frees_the_series_at_once(tmp_path):
    clock = Clock()
    a, b = claimant(tmp_path, "a", clock), claimant(tmp_path, "b", clock)
    a.take(KEYS)
    a.release()
    assert b.take(KEYS) == {}
    assert len(live_claims(DeltaTables(tmp_path), clock)) == len(KEYS)


def test_a_dead_holder_on_this_host_is_seen_before_expiry(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(child.pid).create_time()
    child.wait()
    clock = Clock()
    dead = claimant(tmp_path, "dead", clock, pid=child.pid, pid_started=started)
    reused = claimant(tmp_path, "reused", clock, pid=psutil.Process().pid, pid_started=1.0)  # pid of a younger process
    dead.take(KEYS[:3])
    reused.take(KEYS[3:])
    fresh = claimant(tmp_path, "fresh", clock)
    assert fresh.take(KEYS) == {}


def test_claims_taken_at_the_same_instant_never_overlap(tmp_path):
    clock = Clock()
    jobs = [claimant(tmp_path, f"job{i}", clock) for i in range(3)]
    claimant(tmp_path, "seed", clock).take([])  # the table exists: every job starts from one snapshot
    barrier = threading.Barrier(len(jobs))

    def take(job: Claims) -> None:
        barrier.wait()
        job.take(KEYS)

    threads = [threading.Thread(target=take, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    granted = [j.held for j in jobs]
    assert sum(len(g) for g in granted) == len(KEYS)
    assert set().union(*granted) == set(KEYS)
    assert sum(1 for g in granted if g) == 1  # each took all it saw free; the losers rebuilt on the winner's rows
    assert len(live_claims(DeltaTables(tmp_path), clock)) == len(KEYS)
