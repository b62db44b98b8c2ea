"""`gaps` lists what the wanted span lacks and `harvest status` counts it (issue 11 items 3 and 16): sessions a
series' own calendar and flavour say should have bars, with the reason, from real harvests against the
simulator (a replay file for sessions it lacks, a symbol IB refuses for sessions never fetched)."""

from __future__ import annotations

import json
from datetime import date

from click.testing import CliRunner

import queries
from harvester.cli import main
from harvester.sim.faults import Faults
from tests.cli.test_sources import five_minute_rows
from tests.helpers.gateways import next_client_id
from tests.helpers.reference import Span, harvest_with

WEEK = Span(("MSFT",), bar_size="5 mins", start=date(2024, 6, 10), end=date(2024, 6, 14), target_bars=5000)


def gaps(data) -> list[tuple]:
    con = queries.connect(data)
    return con.execute("SELECT symbol, session_date, reason, bars, expected_bars FROM gaps ORDER BY ALL").fetchall()


def status(data) -> dict:
    result = CliRunner().invoke(main, ["status", "--json", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output + result.stderr
    return {r["bar_size"]: r for r in json.loads(result.output)["bar_sizes"]}


def test_gaps_lists_a_session_the_answer_lacked_and_a_hole_inside_one(make_gateway, tmp_path):
    rows = five_minute_rows(["2024-06-10", "2024-06-11", "2024-06-12", "2024-06-14"])  # no 2024-06-13
    rows = rows.drop(rows.index[(rows.ts.dt.date == date(2024, 6, 11))][:3])  # 09:30-09:45 lost on 06-11
    replay = tmp_path / "msft.csv"
    rows.to_csv(replay, index=False)
    gw = make_gateway(replay=str(replay), now="2024-06-17T12:00:00Z")
    data = tmp_path / "data"
    report = harvest_with(gw, data, WEEK, next_client_id())
    assert report.ok, report.failures
    assert gaps(data) == [("MSFT", date(2024, 6, 11), "bars missing inside a session", 75, 78),
                          ("MSFT", date(2024, 6, 13), "fetched, no bars", 0, 78)]
    assert status(data)["5 mins"]["missing_sessions"] == 2
    sent = len(gw.journal.matching(kind="historical"))
    assert harvest_with(gw, data, WEEK, next_client_id()).ok
    assert len(gw.journal.matching(kind="historical")) == sent  # covered: a rerun asks nothing, gaps say why


def test_sessions_never_fetched_are_gaps_and_status_counts_them(make_gateway, tmp_path):
    gw = make_gateway(faults=Faults(error_symbols={"MSFT": "no_permissions"}), now="2024-06-17T12:00:00Z")
    data = tmp_path / "data"
    span = Span(("AAPL", "MSFT"), bar_size="1 day", start=date(2024, 6, 3), end=date(2024, 6, 14))
    report = harvest_with(gw, data, span, next_client_id())
    assert list(report.failures) == ["MSFT"]
    found = gaps(data)
    assert [(s, r) for s, _, r, _, _ in found] == [("MSFT", "never fetched")] * 10  # two weeks of sessions
    assert found[0][1] == date(2024, 6, 3) and found[-1][1] == date(2024, 6, 14)
    daily = status(data)["1 day"]
    assert daily["series"] == 2 and daily["missing_sessions"] == 10  # never `missing 0` after a failed series
    assert (daily["first_day"][:10], daily["last_day"][:10]) == ("2024-06-03", "2024-06-14")


def test_an_empty_warehouse_has_every_gap_column(tmp_path):
    (tmp_path / "data").mkdir()
    con = queries.connect(tmp_path / "data")
    names = [r[0] for r in con.execute("DESCRIBE gaps").fetchall()]
    assert names == ["con_id", "symbol", "bar_size", "what_to_show", "use_rth", "session_date", "open_ts",
                     "close_ts", "reason", "bars", "expected_bars"]
    assert con.execute("SELECT count(*) FROM gaps").fetchone() == (0,)
    assert [r[0] for r in con.execute("DESCRIBE wanted").fetchall()][:4] == ["con_id", "bar_size", "what_to_show",
                                                                             "use_rth"]


def test_status_from_and_to_are_the_first_and_last_stored_session(sim_gateway, tmp_path):
    data = tmp_path / "data"
    span = Span(("AAPL",), bar_size="1 day", start=None, end=None)  # from the listing: one long request
    assert harvest_with(sim_gateway, data, span, next_client_id()).ok
    con = queries.connect(data)
    first, last = con.execute("SELECT min(session_date), max(session_date) FROM bars").fetchone()
    window = con.execute("SELECT min(start_ts) FROM coverage").fetchone()[0]
    assert window.date() < first  # the request reached back before the listing
    daily = status(data)["1 day"]
    assert (daily["first_day"][:10], daily["last_day"][:10]) == (first.isoformat(), last.isoformat())
    assert daily["missing_sessions"] == 0


def test_all_hours_gaps_show_the_pre_and_post_market_a_replay_lacks(make_gateway, tmp_path):
    """Regular-hours bars only, harvested with all hours: each session lacks its pre- and post-market."""
    replay = tmp_path / "msft.csv"
    five_minute_rows(["2024-06-10", "2024-06-11"]).to_csv(replay, index=False)
    gw = make_gateway(replay=str(replay), now="2024-06-17T12:00:00Z")
    data = tmp_path / "data"
    span = Span(("MSFT",), bar_size="5 mins", start=date(2024, 6, 10), end=date(2024, 6, 11), target_bars=5000)
    assert harvest_with(gw, data, span, next_client_id(), use_rth=False).ok
    assert gaps(data) == [("MSFT", date(2024, 6, 10), "bars missing inside a session", 78, 192),
                          ("MSFT", date(2024, 6, 11), "bars missing inside a session", 78, 192)]
