"""One pacing budget per gateway in a process (issue 18, item 4): the shared window, its seed from the
journal, and two back-to-back read-throughs against the simulator that together stay inside IB's rules."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

import queries
from harvester.ib.budget import gateway_window
from harvester.ib.client import ContractInfo
from harvester.ib.scheduler import Work
from harvester.ibrules import PacingLimits
from harvester.model import BarRequest, SeriesKey, WorkKind
from harvester.recorder import recent_sends
from tests.helpers.gateways import next_client_id
from tests.ib.test_pacing import EXACT, FakeClock, req


def test_one_window_per_gateway_and_limits() -> None:
    clock = FakeClock()
    first, made = gateway_window("10.0.0.1", 4001, EXACT, clock)
    again, made_again = gateway_window("10.0.0.1", 4001, EXACT, clock)
    other, _ = gateway_window("10.0.0.1", 4002, EXACT, clock)
    assert made and not made_again and again is first and other is not first
    assert gateway_window("10.0.0.1", 4001, PacingLimits(safety_s=1.0), clock)[0] is not first


def test_remembered_sends_use_up_the_window() -> None:
    window, _ = gateway_window("10.0.0.2", 4001, EXACT, clock := FakeClock())
    for n in range(EXACT.max_weighted):  # another process sent a full window 100 s ago
        window.remember(req(con_id=n), clock.now - 100)
    assert window.wait_time(req(con_id=999)) == pytest.approx(EXACT.window_s - 100)
    assert window.open_count() == 0  # answered long ago: no open slot held


def test_recent_sends_are_the_journal_of_other_processes_as_the_pacer_counts_them() -> None:
    now = datetime(2024, 6, 14, 20, tzinfo=UTC)
    info = ContractInfo(265598, "AAPL", "STK", "SMART", "NASDAQ", "USD")
    series = SeriesKey(265598, "1 day", "BID_ASK", True)
    request = BarRequest(series, now - timedelta(days=5), now, "5 D", expected_bars=5)
    row = {"run_id": "20240614T195500-1", "sent_at": (now - timedelta(minutes=2)).replace(tzinfo=None),
           "con_id": 265598, "kind": "bars", "bar_size": "1 day", "what_to_show": "BID_ASK", "use_rth": True,
           "end_ts": now.replace(tzinfo=None), "duration": "5 D"}
    journal = pd.DataFrame([row, {**row, "run_id": f"x-{os.getpid()}"},  # this process: counted in its window
                            {**row, "sent_at": row["sent_at"] - timedelta(minutes=20)}])  # too old to matter
    (sent,) = recent_sends(journal, {265598: "SMART"}, now, timedelta(minutes=10))
    assert sent == (Work(WorkKind.BARS, info, series, request).paced(), now - timedelta(minutes=2))


def test_back_to_back_fetches_share_one_budget(tmp_path, make_gateway) -> None:
    """Each call spends 32 of the window's 60 weighted requests (BID_ASK weighs 2): a second call with an
    empty window of its own would exceed it; sharing one, it waits, and IB (the simulator) sees no violation."""
    gateway = make_gateway()
    symbols = pd.read_csv("universes/sp500.csv", comment="#").symbol.tolist()[:32]
    options = {"data_dir": tmp_path, "fetch": "missing", "port": gateway.port, "what_to_show": "BID_ASK",
               "job_options": {"pacing_scale": 0.01}}
    for half in (symbols[:16], symbols[16:]):
        got = queries.bars(half, "1 day", "2024-06-10", "2024-06-13", client_id=next_client_id(), **options)
        assert sorted(set(got.symbol)) == sorted(half)
    outcomes = queries.connect(tmp_path).execute(
        "SELECT outcome, count(*) FROM journal WHERE kind = 'bars' GROUP BY 1").fetchall()
    assert outcomes == [("bars", 32)]
