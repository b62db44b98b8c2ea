"""The fault catalogue: every fault the simulated gateway can inject, survived by a real harvest.

Each test harvests a small intraday span through one fault and compares the warehouse row for row
with the fault-free reference harvest (tests/helpers/reference.py): nothing lost, nothing duplicated, no value
different. Permanent failures (no permission, unknown symbol) are reported by name, never retried.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from ib_insync import IB

from harvester.cli import Exit, main
from harvester.sim import Faults
from tests.helpers.gateways import next_client_id
from tests.helpers.reference import (
    PACING_SCALE,
    SHORT_TIMEOUTS,
    Span,
    compare,
    harvest_with,
    reference_dir,
    write_toml,
)
from tests.helpers.warehouses import snapshot_files

SPAN = Span(("AAPL", "MSFT", "JPM", "XOM"))
LONG_SPAN = Span(("AAPL", "MSFT", "JPM", "XOM", "KO", "PEP"), target_bars=60)


def once_after(done: int, action: Callable[[], None]) -> Callable:
    """A progress callback firing `action` once, when `done` answers have arrived (mid-run)."""
    fired: list[bool] = []

    def progress(p) -> None:
        if p.done >= done and not fired:
            fired.append(True)
            action()

    progress.fired = fired
    return progress


def historical(gw, symbol: str | None = None) -> list[dict]:
    entries = gw.journal.matching(kind="historical")
    return [e for e in entries if symbol is None or e["symbol"] == symbol]


def assert_same_as_reference(data_dir: Path, span: Span, only: tuple[str, ...] | None = None) -> None:
    diff = compare(data_dir, reference_dir(span), only)
    assert diff.clean, diff
    assert diff.actual > 0


def test_socket_dropped_mid_request(make_gateway, tmp_path):
    gw = make_gateway(faults=Faults(drop_after_requests=len(SPAN.symbols) + 3))  # after qualification
    report = harvest_with(gw, tmp_path / "data", SPAN, next_client_id())
    assert report.ok and report.reconnects >= 1
    assert gw.journal.count_where(outcome="dropped") >= 1
    assert_same_as_reference(tmp_path / "data", SPAN)


def test_socket_dropped_mid_run(make_gateway, tmp_path):
    gw = make_gateway()
    progress = once_after(5, gw.drop_connections)
    report = harvest_with(gw, tmp_path / "data", SPAN, next_client_id(), progress)
    assert progress.fired and report.ok and report.reconnects >= 1
    assert_same_as_reference(tmp_path / "data", SPAN)


def test_request_never_answered_times_out_and_is_asked_again_smaller(make_gateway, tmp_path):
    gw = make_gateway()
    gw.faults.never_answer_nth = len(SPAN.symbols) + 3
    report = harvest_with(gw, tmp_path / "data", SPAN, next_client_id(), timeouts=SHORT_TIMEOUTS)
    assert report.ok and report.requests_by_outcome.get("timeout") == 1
    assert report.windows_split + report.retries >= 1  # split along sessions, or retried when one session
    assert "empty" not in report.requests_by_outcome  # silence is never taken for "no data"
    assert_same_as_reference(tmp_path / "data", SPAN)


def test_pacing_violation_storm(make_gateway, tmp_path):
    gw = make_gateway()

    def storm(p) -> None:  # every historical request answers 162 pacing until six have
        if p.done >= 2 and p.violations < 6:
            gw.faults.force_error = "pacing"
        elif p.violations >= 6:
            gw.faults.force_error = None

    report = harvest_with(gw, tmp_path / "data", SPAN, next_client_id(), storm)
    assert report.ok and report.violations >= 6
    assert report.violations == len([e for e in historical(gw) if e["outcome"] == "pacing"])
    assert_same_as_reference(tmp_path / "data", SPAN)


@pytest.mark.parametrize(("kind", "outcome"), [("cancelled", "cancelled"), ("too_many_open", "too_many_open")])
def test_transient_errors_are_retried(make_gateway, tmp_path, kind, outcome):
    gw = make_gateway(faults=Faults(random_error_rate=0.3, random_error=kind, seed=5))
    report = harvest_with(gw, tmp_path / "data", SPAN, next_client_id())
    assert report.ok and report.retries >= 1
    assert any(e["outcome"] == outcome for e in historical(gw))
    assert_same_as_reference(tmp_path / "data", SPAN)


@pytest.mark.parametrize(
    "fire",
    [lambda gw: gw.fire_outage(0.3), lambda gw: gw.fire_hmds_outage(0.3)],
    ids=["connectivity_lost_1100_then_restored_1102", "hmds_broken_2105_then_ok_2106"],
)
def test_outage_mid_harvest_is_ridden_out(make_gateway, tmp_path, fire):
    gw = make_gateway()
    progress = once_after(3, lambda: fire(gw))
    report = harvest_with(gw, tmp_path / "data", SPAN, next_client_id(), progress, timeouts=SHORT_TIMEOUTS)
    assert progress.fired and report.ok
    assert_same_as_reference(tmp_path / "data", SPAN)


def test_no_data_is_stored_as_empty_coverage_and_asked_once(make_gateway, tmp_path):
    gw = make_gateway(faults=Faults(error_symbols={"JPM": "no_data"}))
    report = harvest_with(gw, tmp_path / "data", SPAN, next_client_id())
    assert report.ok
    planned = [r for r in report.plan if r.symbol == "JPM"]
    assert len(historical(gw, "JPM")) == len(planned) > 1  # each asked once: no_data is an answer
    assert_same_as_reference(tmp_path / "data", SPAN, SPAN.without("JPM").symbols)


def test_no_permission_is_named_exit_1_and_never_retried(make_gateway, tmp_path):
    gw = make_gateway(faults=Faults(error_symbols={"MSFT": "no_permissions"}))
    data = tmp_path / "data"
    result = cli(tmp_path, SPAN, "--port", str(gw.port), "--data-dir", str(data))
    assert result.exit_code == Exit.FAILED, result.output
    assert "MSFT" in result.stdout and "no_permission" in result.stdout
    asked = [(e["end"], e["duration"]) for e in historical(gw, "MSFT")]
    assert len(asked) == len(set(asked)) >= 1  # each planned request once: a refusal is final
    assert_same_as_reference(data, SPAN, SPAN.without("MSFT").symbols)


def test_unknown_symbol_is_named_and_the_rest_harvested(make_gateway, tmp_path):
    gw = make_gateway()
    span = Span((*SPAN.symbols, "NOPEX"))
    report = harvest_with(gw, tmp_path / "data", span, next_client_id())
    assert set(report.failures) == {"NOPEX"} and report.series_complete == len(SPAN.symbols)
    assert gw.journal.count_where(kind="contract_details", symbol="NOPEX") == 1
    assert_same_as_reference(tmp_path / "data", SPAN)


def test_client_id_in_use_exits_5_then_rerun_completes(make_gateway, tmp_path):
    gw = make_gateway()
    client_id = next_client_id()
    squatter = IB()
    squatter.connect("127.0.0.1", gw.port, clientId=client_id, timeout=10)
    data = tmp_path / "data"
    try:
        refused = cli(tmp_path, SPAN, "--port", str(gw.port), "--client-id", str(client_id), "--data-dir", str(data))
    finally:
        squatter.disconnect()
    assert refused.exit_code == Exit.CLIENT_ID
    assert "client id" in refused.stderr and str(client_id) in refused.stderr
    assert historical(gw) == []
    rerun = cli(tmp_path, SPAN, "--port", str(gw.port), "--client-id", str(client_id), "--data-dir", str(data))
    assert rerun.exit_code == Exit.OK, rerun.output
    assert_same_as_reference(data, SPAN)


def test_gateway_down_at_start_exits_3_touching_nothing_and_the_later_rerun_completes(make_gateway, tmp_path):
    port = free_port()
    data = tmp_path / "data"
    down = cli(tmp_path, SPAN, "--port", str(port), "--data-dir", str(data))
    assert down.exit_code == Exit.UNREACHABLE and str(port) in down.stderr
    assert len(down.stderr.strip().splitlines()) == 1 and "Traceback" not in down.output
    assert snapshot_files(data) == [] and snapshot_files(data, "coverage") == []
    gw = make_gateway(port=port)  # the gateway comes back on the same port
    back = cli(tmp_path, SPAN, "--port", str(gw.port), "--data-dir", str(data))
    assert back.exit_code == Exit.OK, back.output
    assert_same_as_reference(data, SPAN)


def test_seeded_random_errors_drops_and_silences_over_a_longer_run(make_gateway, tmp_path):
    faults = Faults(random_error_rate=0.25, random_error="pacing", seed=11, drop_after_requests=20,
                    never_answer_nth=30)
    gw = make_gateway(faults=faults)
    report = harvest_with(gw, tmp_path / "data", LONG_SPAN, next_client_id(), timeouts=SHORT_TIMEOUTS)
    assert report.ok and len(report.plan) >= 30
    assert report.violations >= 3 and report.reconnects >= 1 and report.requests_by_outcome.get("timeout")
    assert_same_as_reference(tmp_path / "data", LONG_SPAN)


def cli(cwd: Path, span: Span, *args: str):
    """`harvest --universe ...` in this process, against a gateway given by --port."""
    universe = cwd / "universe.csv"
    universe.write_text(span.universe_csv())
    toml = write_toml(cwd, span)
    return CliRunner().invoke(main, ["--universe", str(universe), *span.cli_args(), "--pacing-scale", str(PACING_SCALE),
                                     *args], env={"HARVEST_CONFIG": str(toml)})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
