"""Scheduler against the simulated gateway: pacing, retries, permanent failures, reconnects, 1100/1102."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from harvester.ib.client import IBSource
from harvester.ib.pacing import PacingWindow
from harvester.ib.scheduler import (
    Answer,
    RetryPolicy,
    Scheduler,
    TimeoutPolicy,
    Work,
    interleave,
    paced_limits,
)
from harvester.ibrules import PacingLimits
from harvester.model import BarRequest, ContractSpec, Outcome, SeriesKey, WorkKind
from harvester.sim import SimConfig, SimGateway
from tests.helpers.gateways import FAST, next_client_id

END = datetime(2024, 6, 14, 20, 0, tzinfo=UTC)
SYMBOLS = ["AAPL", "MSFT", "JPM", "XOM"]
FAST_RETRY = RetryPolicy(max_attempts=4, backoff_s=0.02, backoff_max_s=0.2, reconnect_attempts=5)
FAST_TIMEOUTS = TimeoutPolicy(base_s=5.0, per_bar_s=0.0, head_s=5.0)


def _work(contracts, per_symbol: int) -> list[list[Work]]:
    groups = []
    for info in contracts:
        key = SeriesKey(info.con_id, "1 day", "TRADES", True)
        group = []
        for k in range(per_symbol):
            end = END - timedelta(weeks=k)
            group.append(Work(WorkKind.BARS, info, key, BarRequest(key, end - timedelta(days=7), end, "5 D", 5)))
        groups.append(group)
    return groups


def harvest(gw, *, per_symbol=2, symbols=SYMBOLS, timeouts=FAST_TIMEOUTS, retry=FAST_RETRY, on_answer=None,
            before_run=None, scale=0.01, max_in_flight=4):
    """Qualify, then run per_symbol daily requests per symbol; returns (answers, failures, progress)."""
    answers: list[Answer] = []

    async def scenario():
        source = IBSource("127.0.0.1", gw.port, next_client_id(), connect_timeout=5)
        await source.connect()
        try:
            qualified = await source.qualify([ContractSpec(s) for s in symbols])
            contracts = [info for (info,) in qualified.contracts.values()]
            window = PacingWindow(paced_limits(scale), time.monotonic)

            def record(answer: Answer) -> None:
                answers.append(answer)
                if on_answer is not None:
                    on_answer(answer)

            scheduler = Scheduler(source, window, max_in_flight=max_in_flight, retry=retry, timeouts=timeouts,
                                  on_answer=record)
            if before_run is not None:
                before_run(source)
            failures = await scheduler.run(interleave(_work(contracts, per_symbol)))
            return failures, scheduler.progress
        finally:
            source.disconnect()

    failures, progress = asyncio.run(scenario())
    return answers, failures, progress


def _outcomes(answers):
    return [a.result.outcome for a in answers]


def test_interleave_round_robins_series():
    a, b = [1, 2, 3], [4]
    assert interleave([a, b]) == [1, 4, 2, 3]


def test_rejects_a_cap_at_ibs_open_limit(sim_gateway):
    with pytest.raises(ValueError, match="max_in_flight"):
        Scheduler(IBSource("127.0.0.1", 1, 1), PacingWindow(PacingLimits(), time.monotonic), max_in_flight=50)


def test_runs_everything_paced_and_interleaved(sim_gateway):
    answers, failures, progress = harvest(sim_gateway, per_symbol=20, max_in_flight=6)
    assert failures == []
    assert _outcomes(answers) == [Outcome.BARS] * 80
    assert progress.done == 80 and progress.violations == 0 and progress.bars == 80 * 5
    sent = sim_gateway.journal.matching(kind="historical")
    assert len(sent) == 80 and {e["outcome"] for e in sent} == {"bars"}
    assert len({e["symbol"] for e in sent[:4]}) == 4  # the first sends hit four different contracts


def test_pacing_violation_is_retried(sim_gateway):
    sim_gateway.faults.force_error = "pacing"

    def heal(answer: Answer) -> None:
        sim_gateway.faults.force_error = None

    answers, failures, progress = harvest(sim_gateway, per_symbol=1, symbols=["AAPL"], on_answer=heal)
    assert _outcomes(answers) == [Outcome.PACING, Outcome.BARS]
    assert failures == [] and progress.violations == 1 and progress.retries == 1


def test_timeout_is_retried_never_empty(sim_gateway):
    def silence_first(_source) -> None:
        sim_gateway.faults.never_answer_nth = 1

    timeouts = TimeoutPolicy(base_s=0.5, per_bar_s=0.0, head_s=0.5)
    answers, failures, _ = harvest(sim_gateway, per_symbol=1, symbols=["AAPL"], timeouts=timeouts,
                                   before_run=silence_first)
    assert _outcomes(answers) == [Outcome.TIMEOUT, Outcome.BARS]
    assert answers[0].final is False and answers[1].final is True
    assert failures == []


def test_permanent_failure_is_final_and_others_go_on(sim_gateway):
    sim_gateway.faults.error_symbols = {"MSFT": "no_permissions"}
    answers, failures, progress = harvest(sim_gateway, per_symbol=2)
    msft = [a for a in answers if a.work.symbol == "MSFT"]
    assert [a.result.outcome for a in msft] == [Outcome.NO_PERMISSION] * 2
    assert all(a.attempt == 1 and a.final for a in msft)
    assert {a.work.symbol for a in failures} == {"MSFT"}
    assert sum(a.result.outcome is Outcome.BARS for a in answers) == 6
    assert progress.retries == 0


def test_gives_up_after_max_attempts(sim_gateway):
    sim_gateway.faults.force_error = "pacing"
    answers, failures, _ = harvest(sim_gateway, per_symbol=1, symbols=["AAPL"])
    assert _outcomes(answers) == [Outcome.PACING] * FAST_RETRY.max_attempts
    assert len(failures) == 1 and failures[0].attempt == FAST_RETRY.max_attempts


def test_socket_loss_reconnects_and_resumes(sim_gateway):
    def drop_soon(_source) -> None:
        sim_gateway.faults.drop_after_requests = 3

    answers, failures, progress = harvest(sim_gateway, per_symbol=3, before_run=drop_soon)
    assert failures == []
    assert progress.reconnects >= 1
    done = {(a.work.symbol, a.work.request.end) for a in answers if a.result.outcome is Outcome.BARS}
    assert len(done) == 12
    assert Outcome.DISCONNECTED in _outcomes(answers)


def test_reconnect_gives_up_when_the_gateway_stays_away():
    context = SimGateway(SimConfig(**FAST)).running_in_thread()
    gw = context.__enter__()
    retry = RetryPolicy(max_attempts=3, backoff_s=0.02, backoff_max_s=0.05, reconnect_attempts=2)

    def stop_gateway(answer: Answer) -> None:
        if answer.result.outcome is Outcome.BARS:
            context.__exit__(None, None, None)

    try:
        answers, failures, progress = harvest(gw, per_symbol=3, symbols=["AAPL"], retry=retry,
                                              on_answer=stop_gateway, max_in_flight=1)
    finally:
        context.__exit__(None, None, None)
    assert _outcomes(answers)[0] is Outcome.BARS
    assert len(failures) == 2 and progress.reconnects == 0
    assert all(f.result.outcome is Outcome.DISCONNECTED for f in failures)
    assert "2 reconnect attempts failed" in failures[-1].result.error_text


def test_outage_pauses_sending_until_restored(sim_gateway):
    events: list[tuple[int, datetime]] = []

    def listen(source: IBSource) -> None:
        source.connectivity_listeners.append(lambda code: events.append((code, datetime.now(UTC))))

    fired: list[bool] = []

    def outage_after_first(answer: Answer) -> None:
        if not fired and answer.result.outcome is Outcome.BARS:
            fired.append(True)
            sim_gateway.fire_outage(0.4)

    timeouts = TimeoutPolicy(base_s=1.0, per_bar_s=0.0, head_s=1.0)
    answers, failures, _ = harvest(sim_gateway, per_symbol=4, timeouts=timeouts, before_run=listen,
                                   on_answer=outage_after_first, max_in_flight=2)
    assert failures == []
    assert [code for code, _ in events] == [1100, 1102]
    lost, restored = events[0][1], events[1][1]
    assert not [a for a in answers if lost < a.sent_at < restored]
    assert sum(a.result.outcome is Outcome.BARS for a in answers) == 16


def test_backoff_doubles_up_to_the_cap():
    policy = RetryPolicy(backoff_s=1.0, backoff_max_s=5.0)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_timeout_grows_with_expected_bars():
    policy = TimeoutPolicy(base_s=10.0, per_bar_s=0.01, head_s=7.0)
    key = SeriesKey(1, "1 min", "TRADES", True)
    small = Work(WorkKind.BARS, None, key, BarRequest(key, END, END, "1 D", 100))
    large = Work(WorkKind.BARS, None, key, BarRequest(key, END, END, "10 D", 4000))
    assert policy.for_work(small) == 11.0 and policy.for_work(large) == 50.0
    assert policy.for_work(Work(WorkKind.HEAD, None, key)) == 7.0


def test_paced_limits_keep_an_absolute_safety_margin():
    assert paced_limits(1.0).safety_s == 1.0
    assert paced_limits(0.001).safety_s == 0.1
    assert paced_limits(0.01, min_safety_s=0.5).window_s == 6.0


def test_an_outage_without_restore_does_not_hang_the_run(sim_gateway):
    retry = RetryPolicy(max_attempts=2, backoff_s=0.02, backoff_max_s=0.05, max_pause_s=0.3)
    timeouts = TimeoutPolicy(base_s=0.3, per_bar_s=0.0, head_s=0.3)

    def outage_forever(_source) -> None:
        sim_gateway.fire_outage(600)

    answers, failures, _ = harvest(sim_gateway, per_symbol=1, symbols=["AAPL"], retry=retry, timeouts=timeouts,
                                   before_run=outage_forever)
    assert _outcomes(answers) == [Outcome.TIMEOUT, Outcome.TIMEOUT]
    assert len(failures) == 1
