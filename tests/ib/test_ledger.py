"""The pacing ledger on an injected clock: several processes (budgets with their own process ids) draw on
one gateway's budget in one SQLite file, a dead process's open requests lapse, the learned margin is shared."""

from __future__ import annotations

import json
import os
import sqlite3
import threading

import pytest
from click.testing import CliRunner

from harvester.cli import main
from harvester.ib import ledger
from harvester.ib.ledger import LedgerBudget, ProcessId, gateway_key, ledger_dir, ledger_usage
from harvester.ibrules import PacingLimits
from tests.ib.test_pacing import EXACT, FakeClock, req

ALIVE: set[int] = {1, 2}


def alive(pid: int, started: float) -> bool:
    return pid in ALIVE


def budget(tmp_path, clock, pid: int = 1, limits: PacingLimits = EXACT, gateway: str = "127.0.0.1:4002/DU1"
           ) -> LedgerBudget:
    return LedgerBudget(gateway, limits, tmp_path / "pacing.sqlite", clock,
                        ProcessId(pid, 100.0 + pid, f"harvest --job {pid}"), alive)


def take(b: LedgerBudget, r) -> bool:
    """Send `r` if the budget lets it go now (one turn, as the scheduler does)."""
    with b.turn() as turn:
        if turn.wait_time(r) > 0:
            return False
        turn.sent(r)
        return True


@pytest.fixture(autouse=True)
def both_alive():
    ALIVE.clear()
    ALIVE.update({1, 2})


def test_two_processes_share_sixty_per_window(tmp_path) -> None:
    clock = FakeClock()
    first, second = budget(tmp_path, clock, 1), budget(tmp_path, clock, 2)
    for n in range(30):
        assert take(first, req(con_id=n))
        assert take(second, req(con_id=100 + n))
        first.finished(req(con_id=n))
        second.finished(req(con_id=100 + n))
    assert not take(first, req(con_id=999)) and not take(second, req(con_id=998))
    with first.turn() as turn:
        assert turn.wait_time(req(con_id=999)) == pytest.approx(EXACT.window_s)
    clock.now += EXACT.window_s
    assert take(second, req(con_id=998))


def test_identical_and_burst_rules_hold_across_processes(tmp_path) -> None:
    clock = FakeClock()
    first, second = budget(tmp_path, clock, 1), budget(tmp_path, clock, 2)
    assert take(first, req(con_id=7, n=1))
    assert not take(second, req(con_id=7, n=1))  # identical, within 15 s
    for n in range(2, 6):
        assert take(second if n % 2 else first, req(con_id=7, n=n))
    assert not take(second, req(con_id=7, n=6))  # the 6th for one contract within 2 s
    clock.now += EXACT.same_contract_s
    assert take(second, req(con_id=7, n=6))


def test_open_requests_count_for_everyone_and_lapse_with_their_dead_process(tmp_path) -> None:
    limits = PacingLimits(safety_s=0.0, max_open=3, max_weighted=1000, same_contract_max=1000)
    clock = FakeClock()
    first, second = budget(tmp_path, clock, 1, limits), budget(tmp_path, clock, 2, limits)
    for n in range(3):
        assert take(first, req(con_id=n))
    with second.turn() as turn:
        assert turn.wait_time(req(con_id=50)) == ledger.OPEN_POLL_S  # full: look again soon
    ALIVE.discard(1)  # the first process died with its three requests open
    assert take(second, req(con_id=50))
    assert [u.open for u in ledger_usage(tmp_path / "pacing.sqlite", clock, alive)] == [1]


def test_finished_frees_the_slot_of_the_oldest_open_send(tmp_path) -> None:
    limits = PacingLimits(safety_s=0.0, max_open=1, max_weighted=1000, same_contract_max=1000, identical_s=0.0)
    clock = FakeClock()
    first, second = budget(tmp_path, clock, 1, limits), budget(tmp_path, clock, 2, limits)
    assert take(first, req(con_id=1))
    assert not take(second, req(con_id=2))
    first.finished(req(con_id=1))
    first.finished(req(con_id=1))  # a late cancel after the answer: harmless
    assert take(second, req(con_id=2))


def test_a_violation_widens_the_margin_for_every_process_and_it_decays_back(tmp_path) -> None:
    limits = PacingLimits(safety_s=1.0)
    clock = FakeClock()
    first, second = budget(tmp_path, clock, 1, limits), budget(tmp_path, clock, 2, limits)
    for n in range(60):
        assert take(first, req(con_id=n))
        first.finished(req(con_id=n))
    clock.now += limits.window_s + 1.0
    assert take(second, req(con_id=60))  # cleared its rule by exactly the 1 s margin
    clock.now += 0.5
    second.finished(req(con_id=60), violated=True)  # ... yet IB said 162, half a second later
    learned = first.margin_now()
    assert learned == pytest.approx(2.0)  # at least twice the margin, at least clearance + round trip
    with first.turn() as turn:  # the next send waits for the wider margin past the second-oldest send
        assert turn.wait_time(req(con_id=61)) == pytest.approx(learned - 1.0 - 0.5)
    clock.now += limits.window_s  # one clean window: the excess halves
    assert second.margin_now() == pytest.approx(1.5)
    clock.now += 10 * limits.window_s
    assert second.margin_now() == pytest.approx(1.0, abs=1e-3)


def test_a_crash_inside_a_turn_leaves_no_send_behind(tmp_path) -> None:
    clock = FakeClock()
    first = budget(tmp_path, clock, 1)
    with pytest.raises(ConnectionError), first.turn() as turn:
        turn.sent(req(con_id=1))
        raise ConnectionError("socket gone before commit")
    assert ledger_usage(tmp_path / "pacing.sqlite", clock, alive) == []
    assert take(first, req(con_id=1))  # not identical to anything: the rolled-back send never happened


def test_turns_are_atomic_across_connections(tmp_path) -> None:
    """Threads with budgets of their own (separate SQLite connections) race for the last 10 slots."""
    clock = FakeClock()
    filler = budget(tmp_path, clock, 1)
    for n in range(50):
        assert take(filler, req(con_id=n))
        filler.finished(req(con_id=n))
    won: list[int] = []
    racers = [budget(tmp_path, clock, 2) for _ in range(4)]

    def race(b: LedgerBudget, base: int) -> None:
        won.extend(base + n for n in range(10) if take(b, req(con_id=base + n)))

    threads = [threading.Thread(target=race, args=(b, 1000 * (i + 1))) for i, b in enumerate(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 10
    assert ledger_usage(tmp_path / "pacing.sqlite", clock, alive)[0].weighted == 60


def test_usage_shows_the_budget_in_use_and_by_whom(tmp_path) -> None:
    clock = FakeClock()
    first, second = budget(tmp_path, clock, 1), budget(tmp_path, clock, 2)
    other = budget(tmp_path, clock, 2, gateway="127.0.0.1:7497/DU2")
    for n in range(3):
        assert take(first, req(con_id=n))
    assert take(second, req(con_id=10, what="BID_ASK"))
    assert take(other, req(con_id=20))
    first.finished(req(con_id=0))
    (paper, tws) = ledger_usage(tmp_path / "pacing.sqlite", clock, alive)
    assert (paper.gateway, paper.weighted, paper.open) == ("127.0.0.1:4002/DU1", 5, 3)
    assert sorted((s.pid, s.command, s.weighted, s.open) for s in paper.senders) == [
        (1, "harvest --job 1", 3, 2), (2, "harvest --job 2", 2, 1)]
    assert (tws.gateway, tws.weighted) == ("127.0.0.1:7497/DU2", 1)
    clock.now += EXACT.window_s + 1
    assert ledger_usage(tmp_path / "pacing.sqlite", clock, alive)[0].weighted == 0


def test_old_answered_sends_are_deleted(tmp_path) -> None:
    clock = FakeClock()
    first = budget(tmp_path, clock, 1)
    assert take(first, req(con_id=1))
    first.finished(req(con_id=1))
    clock.now += ledger.KEEP_S + 1
    assert take(first, req(con_id=2))
    rows = sqlite3.connect(tmp_path / "pacing.sqlite").execute("SELECT con_id FROM sends").fetchall()
    assert rows == [(2,)]


def test_where_the_ledger_lives(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(ledger.LEDGER_DIR_ENV, str(tmp_path / "mine"))
    assert ledger_dir() == tmp_path / "mine"
    monkeypatch.delenv(ledger.LEDGER_DIR_ENV)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert ledger_dir() == tmp_path / "harvester"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "absent"))
    assert ledger_dir().name == f"harvester-{os.getuid()}"
    assert gateway_key("LocalHost", 4002, "DU1") == "127.0.0.1:4002/DU1"
    assert gateway_key("10.1.2.3", 7497) == "10.1.2.3:7497"


def test_margin_is_not_widened_past_a_tenth_of_the_window(tmp_path) -> None:
    clock = FakeClock()
    first = budget(tmp_path, clock, 1, PacingLimits(safety_s=1.0))
    for _ in range(20):
        sent = req(con_id=1, n=clock.now)
        assert take(first, sent)
        first.finished(sent, violated=True)
        clock.now += 100
    assert first.margin_now() == pytest.approx(PacingLimits().window_s / 10)


def test_harvest_status_pacing_shows_the_budget_and_who_holds_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(ledger.LEDGER_DIR_ENV, str(tmp_path))
    me = ProcessId.current()
    live = LedgerBudget("127.0.0.1:4002/DU1", EXACT, tmp_path / "pacing.sqlite", process=me)
    for n in range(3):
        assert take(live, req(con_id=n, what="BID_ASK"))
    live.finished(req(con_id=0, what="BID_ASK"))
    result = CliRunner().invoke(main, ["status", "--pacing"])
    assert result.exit_code == 0, result.output
    assert f"pacing ledger: {tmp_path / 'pacing.sqlite'}" in result.output
    assert "127.0.0.1:4002/DU1: 6 weighted sends in the window, 2 open" in result.output
    assert f"pid {me.pid}: 6 weighted, 2 open" in result.output
    report = json.loads(CliRunner().invoke(main, ["status", "--pacing", "--json"]).output)
    assert report["gateways"][0]["senders"][0]["pid"] == me.pid and report["gateways"][0]["open"] == 2


def test_harvest_status_pacing_without_a_ledger(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(ledger.LEDGER_DIR_ENV, str(tmp_path / "none"))
    result = CliRunner().invoke(main, ["status", "--pacing"])
    assert result.exit_code == 0 and "no sends within any gateway's window" in result.output
