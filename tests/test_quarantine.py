"""A quarantined bar is a gap that heals, end to end: the simulator serves genuinely broken bars for two
symbols on the first night, the harvest refuses them, `gaps` and `harvest status` show them missing, the
next night asks for them again inside its one request a series, stores the clean answer, and `gaps` is
empty; a rerun asks nothing. A warehouse that stays bad gives up after `quarantine_nights`.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

import queries
from harvester.job import HarvestJob, HarvestReport
from harvester.model import ContractSpec
from harvester.settings import ConfigError, resolve_settings
from harvester.sim import Faults
from tests.helpers.gateways import next_client_id
from tests.helpers.reference import Span, compare, harvest_with

SPAN = Span(("AAPL", "MSFT", "KO"), bar_size="1 min", start=date(2024, 6, 10), target_bars=5000)
BROKEN = {"AAPL", "MSFT"}
NIGHTS = ["2024-06-11T22:00:00+00:00", "2024-06-12T22:00:00+00:00", "2024-06-13T22:00:00+00:00",
          "2024-06-14T22:00:00+00:00"]  # after Tuesday's to Friday's close


def nightly(gateway, data_dir: Path, night: str, **job) -> tuple[HarvestReport, list[dict]]:
    """One nightly run at `night` on the gateway's clock: the report and the historical requests it sent."""
    gateway.clock.set(night)
    before = len(gateway.journal.matching(kind="historical"))
    report = harvest_with(gateway, data_dir, SPAN, next_client_id(), end=None, **job)
    assert report.ok, report.failures
    return report, gateway.journal.matching(kind="historical")[before:]


def per_symbol(requests: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in requests:
        counts[r["symbol"]] = counts.get(r["symbol"], 0) + 1
    return counts


def gaps(data_dir: Path) -> list[tuple]:
    con = queries.connect(data_dir)
    return con.execute("SELECT symbol, session_date, reason FROM gaps ORDER BY ALL").fetchall()


def bad_bar_faults(until: str | None) -> Faults:
    return Faults(bad_bar_rate=0.01, bad_bar_symbols=BROKEN, seed=4,
                  bad_bars_until=datetime.fromisoformat(until) if until else None)


def test_quarantined_bars_are_gaps_until_the_next_night_heals_them(make_gateway, tmp_path):
    gw = make_gateway(now=NIGHTS[0], faults=bad_bar_faults(until="2024-06-12T12:00:00+00:00"))
    data = tmp_path / "data"

    first, asked = nightly(gw, data, NIGHTS[0])
    assert first.bars_quarantined > 0 and first.bars_held > 0 and first.bars_given_up == 0
    assert sum(r.get("broken", 0) for r in asked) >= first.bars_quarantined
    held = gaps(data)
    assert {s for s, _, _ in held} == BROKEN
    assert {d for _, d, _ in held} == {date(2024, 6, 10), date(2024, 6, 11)}
    assert all(reason.startswith("quarantined: ") for _, _, reason in held), held
    status = queries.warehouse_status(data)["bar_sizes"]
    assert status[0]["missing_sessions"] == len(held)
    pending = queries.connect(data).execute(
        "SELECT count(*) FROM quarantine WHERE resolved_at IS NULL AND nights = 1 AND NOT given_up").fetchone()[0]
    assert pending == first.bars_held

    rerun, asked = nightly(gw, data, NIGHTS[0])  # the same night: nothing is asked again
    assert asked == [] and rerun.bars_held == first.bars_held

    second, asked = nightly(gw, data, NIGHTS[1])  # the fault has stopped: IB's history is clean now
    assert per_symbol(asked) == {"AAPL": 1, "MSFT": 1, "KO": 1}  # healing shares the increment's request
    assert second.bars_quarantined == second.bars_held == 0
    assert gaps(data) == []
    history = queries.connect(data).execute(
        "SELECT count(*), count(resolved_at), min(first_seen), max(resolved_at) FROM quarantine").fetchone()
    assert history[0] == history[1] >= first.bars_quarantined
    assert history[2] == datetime.fromisoformat(NIGHTS[0]).replace(tzinfo=None)
    assert history[3] == datetime.fromisoformat(NIGHTS[1]).replace(tzinfo=None)

    clean = make_gateway(now=NIGHTS[1])
    fresh = tmp_path / "fresh"
    harvest_with(clean, fresh, SPAN, next_client_id(), end=None)
    diff = compare(data, fresh)
    assert diff.clean and diff.actual == 3 * 3 * 390, diff

    again, asked = nightly(gw, data, NIGHTS[1])
    assert asked == [] and again.bars_written == 0


def test_a_bar_bad_every_night_is_given_up_and_stays_a_gap(make_gateway, tmp_path):
    """quarantine_nights=2: Monday's and Tuesday's broken bars come back bad on the second night too, so the
    third night no longer asks for Monday (Wednesday's, bad once, are still asked for)."""
    gw = make_gateway(now=NIGHTS[0], faults=bad_bar_faults(until=None))
    data = tmp_path / "data"
    nightly(gw, data, NIGHTS[0], quarantine_nights=2)
    second, asked = nightly(gw, data, NIGHTS[1], quarantine_nights=2)
    assert per_symbol(asked) == {"AAPL": 1, "MSFT": 1, "KO": 1} and second.bars_given_up > 0
    reasons = {(s, d): r for s, d, r in gaps(data)}
    for symbol in BROKEN:
        assert reasons[symbol, date(2024, 6, 10)] == "quarantined, given up"
        assert reasons[symbol, date(2024, 6, 12)].startswith("quarantined: ")
    third, asked = nightly(gw, data, NIGHTS[2], quarantine_nights=2)
    assert per_symbol(asked) == {"AAPL": 1, "MSFT": 1, "KO": 1}
    assert all(r.start.date() > date(2024, 6, 10) for r in third.plan), third.plan
    assert third.bars_given_up >= second.bars_given_up
    assert {(s, r) for (s, d), r in {(s, d): r for s, d, r in gaps(data)}.items() if d == date(2024, 6, 10)} == {
        ("AAPL", "quarantined, given up"), ("MSFT", "quarantined, given up")}


def test_quarantine_nights_is_a_setting(tmp_path):
    (tmp_path / "harvest.toml").write_text("quarantine_nights = 5\n")
    settings = resolve_settings(environ={}, cwd=tmp_path)
    assert HarvestJob.from_settings(settings, [ContractSpec("AAPL")]).quarantine_nights == 5
    (tmp_path / "harvest.toml").write_text("quarantine_nights = 0\n")
    with pytest.raises(ConfigError, match="quarantine_nights: must be >= 1"):
        resolve_settings(environ={}, cwd=tmp_path)
