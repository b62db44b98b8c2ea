"""The whole harvest (run_harvest) against the simulated gateway: real ib_insync over loopback, real files."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from harvester.ib.scheduler import RetryPolicy, TimeoutPolicy
from harvester.job import PLAN_ASSUMED_HISTORY, HarvestJob, HarvestReport, run_harvest
from harvester.model import BarRequest, ContractSpec, Outcome, SeriesKey
from harvester.sim import BUSY, QUIET, Faults
from harvester.warehouse import Warehouse
from tests.helpers.gateways import next_client_id
from tests.helpers.warehouses import snapshot_files

FAST_RETRY = RetryPolicy(max_attempts=5, backoff_s=0.02, backoff_max_s=0.2, reconnect_attempts=5)
SHORT_TIMEOUTS = TimeoutPolicy(base_s=1.0, per_bar_s=0.001, head_s=1.0)


def harvest(gw, data_dir: Path, symbols, **job) -> HarvestReport:
    settings = {
        "universe": [ContractSpec(s, line=i + 2) for i, s in enumerate(symbols)], "data_dir": data_dir,
        "port": gw.port, "client_id": next_client_id(), "pacing_scale": 0.01, "retry": FAST_RETRY,
    }
    return run_harvest(HarvestJob(**{**settings, **job}))


def stored(data_dir: Path) -> pd.DataFrame:
    """Every stored bar, in a canonical order (no hive columns: they depend on the partition)."""
    return duckdb.sql(
        f"SELECT symbol, con_id, ts, session_date, open, high, low, close, volume, wap, bar_count "
        f"FROM read_parquet({snapshot_files(data_dir)}, hive_partitioning=false) ORDER BY con_id, ts"
    ).df()


def historical(gw) -> list[dict]:
    return gw.journal.matching(kind="historical")


def reference(make_gateway, tmp_path: Path, symbols, **job) -> pd.DataFrame:
    """The fault-free result of the same harvest, on a fresh gateway and warehouse."""
    gw = make_gateway()
    report = harvest(gw, tmp_path / "reference", symbols, **job)
    assert report.ok
    return stored(tmp_path / "reference")


def test_daily_backfill_then_nothing_then_one_request_per_series(sim_gateway, tmp_path):
    data = tmp_path / "data"
    first = harvest(sim_gateway, data, ["AAPL", "MSFT", "JPM"])
    assert first.ok and first.series_complete == 3
    sent = historical(sim_gateway)
    assert len(sent) == len(first.plan) == 3
    assert {e["outcome"] for e in sent} == {"bars"}
    bars = stored(data)
    assert len(bars) == first.bars_written == sum(e["bars"] for e in sent)
    assert not bars.duplicated(["con_id", "ts"]).any()

    again = harvest(sim_gateway, data, ["AAPL", "MSFT", "JPM"])
    assert again.ok and again.plan == [] and len(historical(sim_gateway)) == 3
    assert sim_gateway.journal.count_where(kind="contract_details") == 3  # stored contracts reused

    sim_gateway.clock.set("2024-06-17T20:05:00+00:00")  # Monday's session has closed
    increment = harvest(sim_gateway, data, ["AAPL", "MSFT", "JPM"])
    new = historical(sim_gateway)[3:]
    assert increment.ok and len(new) == 3 and [e["bars"] for e in new] == [2, 2, 2]  # Friday re-read, Monday new
    after = stored(data)
    assert len(after) == len(bars) + 3
    assert set(after[after.session_date == pd.Timestamp("2024-06-17")].symbol) == {"AAPL", "MSFT", "JPM"}


def test_intraday_from_head_asks_the_head_once(sim_gateway, tmp_path):
    data = tmp_path / "data"
    report = harvest(sim_gateway, data, ["KLAC"], bar_sizes=("1 hour",))
    assert report.ok and report.head_requests == 1
    assert sim_gateway.journal.count_where(kind="head_timestamp") == 1
    bars = stored(data)
    assert bars.session_date.min() == pd.Timestamp("2022-11-25")  # KLAC's simulated listing day
    assert len(bars) == report.bars_written > 2000

    again = harvest(sim_gateway, data, ["KLAC"], bar_sizes=("1 hour",))
    assert again.ok and again.head_requests == 0 and again.plan == []
    assert sim_gateway.journal.count_where(kind="head_timestamp") == 1


def test_plan_only_fetches_nothing(sim_gateway, tmp_path):
    report = harvest(sim_gateway, tmp_path / "data", ["AAPL", "MSFT"], bar_sizes=("1 hour",),
                     start=date(2023, 1, 1), plan_only=True)
    assert len(report.plan) >= 2 and report.eta_s >= 0
    assert historical(sim_gateway) == []


def test_no_permission_is_reported_by_name_and_not_retried(make_gateway, tmp_path):
    gw = make_gateway(faults=Faults(error_symbols={"MSFT": "no_permissions"}))
    report = harvest(gw, tmp_path / "data", ["AAPL", "MSFT"])
    assert not report.ok and set(report.failures) == {"MSFT"}
    assert "no_permission" in report.failures["MSFT"][0]
    assert len([e for e in historical(gw) if e["symbol"] == "MSFT"]) == 1
    assert set(stored(tmp_path / "data").symbol) == {"AAPL"}


def test_unknown_and_ambiguous_symbols_are_skipped_by_name(sim_gateway, tmp_path):
    report = harvest(sim_gateway, tmp_path / "data", ["AAPL", "NOPEX", "DUAL"])
    assert set(report.failures) == {"NOPEX", "DUAL"}
    assert report.series_complete == 1 and report.series_total == 3


INTRADAY = {"bar_sizes": ("1 hour",), "start": date(2023, 6, 1), "target_bars": 600}
SYMBOLS = ["AAPL", "MSFT", "JPM"]


def test_timeout_is_split_never_resent_unchanged_and_never_recorded_as_empty(make_gateway, tmp_path):
    expected = reference(make_gateway, tmp_path, SYMBOLS, **INTRADAY)
    gw = make_gateway()
    gw.faults.never_answer_nth = len(SYMBOLS) + 2  # the second historical request (after qualification)
    report = harvest(gw, tmp_path / "data", SYMBOLS, timeouts=SHORT_TIMEOUTS, **INTRADAY)
    assert report.ok and report.requests_by_outcome.get("timeout") == 1 and report.windows_split == 1
    assert "empty" not in report.requests_by_outcome
    sent = historical(gw)
    (silent,) = [i for i, e in enumerate(sent) if e["outcome"] not in ("bars", "no_data")]
    window = lambda e: (e["symbol"], e["end"], e["duration"])
    assert window(sent[silent]) not in {window(e) for e in sent[silent + 1:]}, "the same window sent again"
    pd.testing.assert_frame_equal(stored(tmp_path / "data"), expected)


def test_pacing_violations_are_retried(make_gateway, tmp_path):
    expected = reference(make_gateway, tmp_path, SYMBOLS, **INTRADAY)
    gw = make_gateway(faults=Faults(random_error_rate=0.3, random_error="pacing", seed=3))
    report = harvest(gw, tmp_path / "data", SYMBOLS, **INTRADAY)
    assert report.ok and report.violations > 0
    assert report.violations == len([e for e in historical(gw) if e["outcome"] == "pacing"])
    pd.testing.assert_frame_equal(stored(tmp_path / "data"), expected)


def test_disconnect_mid_run_reconnects_and_resumes(make_gateway, tmp_path):
    expected = reference(make_gateway, tmp_path, SYMBOLS, **INTRADAY)
    gw = make_gateway()
    gw.faults.drop_after_requests = len(SYMBOLS) + 4
    report = harvest(gw, tmp_path / "data", SYMBOLS, **INTRADAY)
    assert report.ok and report.reconnects >= 1
    pd.testing.assert_frame_equal(stored(tmp_path / "data"), expected)


def test_outage_pauses_and_resumes(make_gateway, tmp_path):
    expected = reference(make_gateway, tmp_path, SYMBOLS, **INTRADAY)
    gw = make_gateway()
    fired = []

    def progress(p) -> None:
        if p.done == 2 and not fired:
            fired.append(True)
            gw.fire_outage(0.3)

    report = run_harvest(
        HarvestJob(universe=[ContractSpec(s) for s in SYMBOLS], data_dir=tmp_path / "data", port=gw.port,
                   client_id=next_client_id(), pacing_scale=0.01, retry=FAST_RETRY, timeouts=SHORT_TIMEOUTS,
                   **INTRADAY),
        progress,
    )
    assert fired and report.ok
    pd.testing.assert_frame_equal(stored(tmp_path / "data"), expected)


def test_head_without_data_means_nothing_to_fetch_and_head_refused_is_a_failure(make_gateway, tmp_path):
    gw = make_gateway(faults=Faults(error_symbols={"KLAC": "no_data", "GEHC": "no_permissions"}))
    report = harvest(gw, tmp_path / "data", ["KLAC", "GEHC"], bar_sizes=("1 hour",))
    assert set(report.failures) == {"GEHC"}
    assert "head timestamp no_permission" in report.failures["GEHC"][0]
    assert report.series_complete == 1 and report.plan == []
    assert historical(gw) == []


def test_contracts_are_requalified_once_a_night(sim_gateway, tmp_path):
    data = tmp_path / "data"
    assert harvest(sim_gateway, data, ["AAPL", "MSFT"]).ok
    sim_gateway.clock.set("2024-06-15T02:00:00+00:00")  # the same night: stored details reused
    assert harvest(sim_gateway, data, ["AAPL", "MSFT"]).ok
    assert sim_gateway.journal.count_where(kind="contract_details") == 2
    sim_gateway.clock.set("2024-06-17T20:05:00+00:00")  # the next night: symbols may have changed
    assert harvest(sim_gateway, data, ["AAPL", "MSFT"]).ok
    assert sim_gateway.journal.count_where(kind="contract_details") == 4


def test_plan_only_counts_heads_and_estimates_their_series_from_the_assumed_history(sim_gateway, tmp_path):
    report = harvest(sim_gateway, tmp_path / "data", ["KLAC", "GEHC"], bar_sizes=("1 hour", "30 mins"),
                     plan_only=True)
    assert report.head_requests == 2 and report.unplanned == 4
    assert report.estimated == len(report.plan) > 0, "an estimate, not '0 requests'"
    assert min(r.start for r in report.plan) >= report.gateway_now - PLAN_ASSUMED_HISTORY
    assert sim_gateway.journal.count_where(kind="head_timestamp") == 0


def test_a_failed_head_fails_every_bar_size_of_its_series(make_gateway, tmp_path):
    gw = make_gateway(faults=Faults(error_symbols={"GEHC": "no_permissions"}))
    report = harvest(gw, tmp_path / "data", ["GEHC", "KLAC"], bar_sizes=("1 hour", "30 mins"))
    assert set(report.failures) == {"GEHC"} and report.series_complete == 2 and report.series_total == 4


# ---- issue 14 item 2: windows sized from what IB answers --------------------------------------------------------

MINUTES = {"bar_sizes": ("1 min",), "start": date(2024, 5, 20),
           "timeouts": TimeoutPolicy(base_s=1.0, per_bar_s=0.0001, head_s=1.0)}  # an unanswered window: 1.5 s


@pytest.mark.parametrize("hmds", [QUIET.with_max_bars(2000), QUIET.with_max_bars(700), BUSY],
                         ids=["withheld-over-2000", "withheld-over-700", "busy"])
def test_a_gateway_leaving_big_answers_unanswered_still_gets_the_whole_backfill(make_gateway, tmp_path, hmds):
    """Done when: what an unhindered harvest stores, exit 0, a few unanswered windows per bar size and run
    (not per series), 0 violations, the rerun asks nothing, and the next night plans what answered."""
    symbols = ["AAPL", "MSFT", "JPM"]
    expected = reference(make_gateway, tmp_path, symbols, **MINUTES)
    gw = make_gateway(hmds=hmds)
    report = harvest(gw, tmp_path / "data", symbols, **MINUTES)
    assert report.ok, report.failures
    pd.testing.assert_frame_equal(stored(tmp_path / "data"), expected)
    unanswered = [e for e in historical(gw) if e["outcome"] not in ("bars", "no_data")]
    assert 1 <= len(unanswered) <= 3, [(e["symbol"], e["duration"], e["outcome"]) for e in unanswered]
    assert report.violations == 0 and report.windows_split >= 1
    learned = Warehouse(tmp_path / "data", None).window_sizes()["1 min"]
    assert learned <= hmds.max_bars

    again = harvest(gw, tmp_path / "data", symbols, **MINUTES)
    assert again.ok and again.requests_by_outcome == {}, "the rerun asks nothing"
    plan = harvest(gw, tmp_path / "fresh", symbols, plan_only=True, **MINUTES)
    assert plan.plan, "a new warehouse plans from the default target"
    replanned = harvest(gw, tmp_path / "data", symbols, plan_only=True, **{**MINUTES, "start": date(2023, 10, 2)})
    assert max(r.expected_bars for r in replanned.plan) <= learned, "--plan uses the learned target"


def test_window_sizes_learn_grow_shrink_and_probe_one_at_a_time():
    from harvester.ib.windows import MIN_TARGET, WindowSizes

    def request(bars: int, day: int = 1) -> BarRequest:
        return BarRequest(SeriesKey(1, "1 min", "TRADES", True), datetime(2024, 6, day, tzinfo=UTC),
                          datetime(2024, 6, day + 1, tzinfo=UTC), "1 D", bars)

    sizes = WindowSizes(ceiling=5000)
    probe, other = request(5000, 1), request(5000, 2)
    assert sizes.allowed("1 min", probe, 0.0, 30.0) == 5000, "the first window probes the target"
    assert sizes.allowed("1 min", other, 0.0, 30.0) is None, "the others wait while nothing has answered"
    assert sizes.allowed("1 min", other, 31.0, 61.0) == 5000, "a probe never answered frees its turn"
    sizes.answered("1 min", other, Outcome.TIMEOUT, 30.0, 30.0)
    assert sizes.target("1 min") == 1250 and sizes.allowed("1 min", probe, 32.0, 62.0) == 1250
    sizes.answered("1 min", request(1250), Outcome.BARS, 1.0, 30.0)  # quick: grows
    assert sizes.target("1 min") == round(1250 * 1.25) and sizes.worked() == {"1 min": 1250}
    sizes.answered("1 min", request(1562), Outcome.BARS, 20.0, 30.0)  # slow: shrinks
    assert sizes.target("1 min") == round(1562 * 0.7) and sizes.worked() == {"1 min": sizes.target("1 min")}
    sizes.answered("1 min", request(50), Outcome.BARS, 0.01, 30.0)
    assert sizes.target("1 min") == round(1562 * 0.7), "a small window says nothing about the target"
    for _ in range(10):
        sizes.answered("1 min", request(sizes.target("1 min")), Outcome.TIMEOUT, 30.0, 30.0)
    assert sizes.target("1 min") == MIN_TARGET
    daily = WindowSizes(ceiling=5000)
    daily.answered("1 day", request(9000), Outcome.TIMEOUT, 30.0, 30.0)
    assert daily.target("1 day") == 5000 and daily.allowed("1 day", request(9000), 0.0, 1.0) == 5000
