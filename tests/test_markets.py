"""Beyond US stocks, end to end: one instrument of every asset class harvested with ib_insync against the
simulator (plan → pacer → warehouse → bars), each on its own market's calendar, over two weeks holding
Easter (a holiday in London, Frankfurt, Warsaw, New York and at CME, not in Tokyo or for forex) and
Europe's DST change (2024-03-31, three weeks after America's)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

import queries
from harvester.job import HarvestConfigError, HarvestJob, run_harvest
from harvester.model import ContractSpec
from tests.helpers.gateways import next_client_id
from tests.test_job import FAST_RETRY, historical

AFTER_EASTER = "2024-04-06T12:00:00+00:00"  # Saturday: every market's Friday session has closed
START, END = date(2024, 3, 25), date(2024, 4, 5)
UNIVERSE = [
    ContractSpec("VOD", primary_exchange="LSE", currency="GBP", line=2),
    ContractSpec("7203", primary_exchange="TSEJ", currency="JPY", line=3),
    ContractSpec("PKN", primary_exchange="WSE", currency="PLN", line=4),  # no known calendar
    ContractSpec("SPX", "IND", "CBOE", line=5),
    ContractSpec("DAX", "IND", "EUREX", currency="EUR", line=6),
    ContractSpec("EUR", "CASH", "IDEALPRO", currency="USD", line=7),
    ContractSpec("ES", "FUT", "CME", last_trade_date="202406", line=8),
]
# Sessions from Monday 25 March to Friday 5 April 2024 by each market's holidays (counted by hand):
# Good Friday and Easter Monday close London, Xetra and Warsaw (8); Good Friday closes New York and CME (9);
# Tokyo and forex trade all ten weekdays.
SESSIONS = {"VOD": 8, "7203": 10, "PKN": 8, "SPX": 9, "DAX": 8, "EUR.USD": 10, "ESM4": 9}


def harvest(gw, data_dir, universe, **job):
    return run_harvest(HarvestJob(universe=universe, data_dir=data_dir, port=gw.port,
                                  client_id=next_client_id(), pacing_scale=0.01, retry=FAST_RETRY, **job))


def test_every_asset_class_harvests_on_its_own_calendar(make_gateway, tmp_path):
    gw = make_gateway(now=AFTER_EASTER)
    data = tmp_path / "data"
    report = harvest(gw, data, UNIVERSE, start=START, end=END)
    assert report.ok, report.failures
    assert report.plan_by_class == {"STK": 3, "IND": 2, "CASH": 1, "FUT": 1}
    con = queries.connect(data)
    counts = dict(con.sql("SELECT symbol, count(*) FROM bars WHERE session_date BETWEEN ? AND ? GROUP BY 1",
                          params=[START, END]).fetchall())
    assert counts == SESSIONS  # PKN's calendar, from its details, knows no holidays: it is paged by the year
    shown = dict(con.sql("SELECT symbol, any_value(what_to_show) FROM bars GROUP BY 1").fetchall())
    assert shown == {**{s: "TRADES" for s in SESSIONS}, "EUR.USD": "MIDPOINT"}  # each class's default
    no_volume = {s for (s,) in con.sql("SELECT symbol FROM bars GROUP BY 1 HAVING count(volume) = 0").fetchall()}
    assert no_volume == {"EUR.USD", "SPX", "DAX"}  # IB's -1 stored as NULL
    assert con.sql("SELECT count(*) FROM gaps").fetchall() == [(0,)]

    opens = dict(con.sql("SELECT session_date, ts FROM bars WHERE symbol = 'VOD'").fetchall())
    assert opens[date(2024, 3, 28)].hour == 8 and opens[date(2024, 4, 2)].hour == 7  # 08:00 London: GMT → BST
    spx = dict(con.sql("SELECT session_date, ts FROM bars WHERE symbol = 'SPX'").fetchall())
    assert {d.hour for d in spx.values()} == {13}  # 09:30 New York, EDT throughout (since 10 March)

    contracts = {r[0]: r[1:] for r in con.sql(
        "SELECT coalesce(nullif(local_symbol, ''), symbol), sec_type, exchange, currency, multiplier, expiry, "
        "calendar, calendar_from_details FROM contracts").fetchall()}
    assert contracts["VOD"][:3] == ("STK", "SMART", "GBP") and contracts["VOD"][-2:] == ("XLON", False)
    assert contracts["PKN"][-2:] == ("contract details", True)  # flagged, never New York's
    assert contracts["ESM4"] == ("FUT", "CME", "USD", "50", date(2024, 6, 21), "CMES", False)
    assert contracts["EUR.USD"][-2:] == ("24/5", False) and contracts["DAX"][-2:] == ("XETR", False)

    sent = len(historical(gw))
    again = harvest(gw, data, UNIVERSE, start=START, end=END)
    assert again.ok and again.plan == [] and len(historical(gw)) == sent


def test_overnight_sessions_are_dated_as_ib_dates_them(make_gateway, tmp_path):
    """CME's session opening Sunday 17:00 Chicago is Monday's, as is forex's opening Sunday 17:15 New York."""
    gw = make_gateway(now=AFTER_EASTER)
    data = tmp_path / "data"
    universe = [UNIVERSE[-1], UNIVERSE[-2]]  # ES 202406, EUR.USD
    report = harvest(gw, data, universe, bar_sizes=("1 hour",), use_rth=False, start=date(2024, 3, 24),
                     end=date(2024, 3, 26))
    assert report.ok, report.failures
    con = queries.connect(data)
    first = dict(con.sql("SELECT symbol, min(ts) FROM bars GROUP BY 1").fetchall())
    assert first == {"ESM4": datetime(2024, 3, 24, 22, tzinfo=UTC), "EUR.USD": datetime(2024, 3, 24, 21, 15, tzinfo=UTC)}
    dated = dict(con.sql("SELECT symbol, arg_min(session_date, ts) FROM bars GROUP BY 1").fetchall())
    assert dated == {"ESM4": date(2024, 3, 25), "EUR.USD": date(2024, 3, 25)}  # a Sunday evening: Monday's
    per_day = set(con.sql("SELECT symbol, session_date, count(*) FROM bars GROUP BY 1, 2").fetchall())
    # ES: 17:00-16:00 Chicago (23 bars); forex: 17:15-17:00 New York (23 h 45: 24 bars, the last one short);
    # the end date is an exchange date: Wednesday's sessions, opened on Tuesday evening, are not asked for.
    assert per_day == {("ESM4", date(2024, 3, 25), 23), ("ESM4", date(2024, 3, 26), 23),
                       ("EUR.USD", date(2024, 3, 25), 24), ("EUR.USD", date(2024, 3, 26), 24)}
    assert con.sql("SELECT count(*) FROM quarantine").fetchall() == [(0,)]
    assert con.sql("SELECT count(*) FROM gaps").fetchall() == [(0,)]
    sent = len(historical(gw))
    again = harvest(gw, data, universe, bar_sizes=("1 hour",), use_rth=False, start=date(2024, 3, 24),
                    end=date(2024, 3, 26))
    assert again.ok and again.plan == [] and len(historical(gw)) == sent


def test_futures_end_at_expiry_and_the_continuous_series_rolls(make_gateway, tmp_path):
    gw = make_gateway()  # 2024-06-14: IB's front month for ES is June (ESM4, last trade 21 June)
    data = tmp_path / "data"
    universe = [ContractSpec("ES", "CONTFUT", "CME", line=2)]
    first = harvest(gw, data, universe, start=date(2024, 3, 1))
    assert first.ok, first.failures
    asked = {e["con_id"] for e in historical(gw)}
    con = queries.connect(data)
    by_contract = dict(con.sql("SELECT symbol, max(session_date) FROM bars GROUP BY 1").fetchall())
    assert by_contract == {"ESH4": date(2024, 3, 15), "ESM4": date(2024, 6, 14)}  # March expired on the 15th
    assert len(asked) == 2  # the older expiries (stored, reachable) ended before the start: nothing to ask

    gw.clock.set("2024-06-25T22:00:00+00:00")  # June expired on Friday the 21st: September is the front
    rolled = harvest(gw, data, universe, start=date(2024, 3, 1))
    assert rolled.ok, rolled.failures
    new = historical(gw)[len(historical(gw)) - len(rolled.plan):]
    june = con.sql("SELECT con_id FROM contracts WHERE local_symbol = 'ESM4'").fetchall()[0][0]
    june_end = max(datetime.strptime(e["end"], "%Y%m%d-%H:%M:%S") for e in new if e["con_id"] == june)
    assert june_end == datetime(2024, 6, 21, 20)  # its last regular session's close (15:00 Chicago), no later
    con = queries.connect(data)
    rolls = con.sql("SELECT from_local_symbol, to_local_symbol, roll_date FROM rolls WHERE roll_date >= '2024-03-01' "
                    "ORDER BY roll_date").fetchall()
    assert rolls == [("ESH4", "ESM4", date(2024, 3, 15)), ("ESM4", "ESU4", date(2024, 6, 21))]
    stitched = con.sql("SELECT contract, min(session_date), max(session_date) FROM continuous "
                       "WHERE session_date >= '2024-03-01' GROUP BY 1 ORDER BY 2").fetchall()
    assert stitched == [("ESH4", date(2024, 3, 1), date(2024, 3, 15)), ("ESM4", date(2024, 3, 18), date(2024, 6, 21)),
                        ("ESU4", date(2024, 6, 24), date(2024, 6, 25))]
    ids = con.sql("SELECT count(DISTINCT con_id), count(DISTINCT symbol) FROM bars").fetchall()
    assert ids == [(3, 3)]  # each expiry's bars under its own conId
    assert con.sql("SELECT count(*) FROM gaps").fetchall() == [(0,)]

    sent = len(historical(gw))
    again = harvest(gw, data, universe, start=date(2024, 3, 1))
    assert again.ok and again.plan == [] and len(historical(gw)) == sent


@pytest.mark.parametrize("what, legal", [("TRADES", "MIDPOINT, BID, ASK, BID_ASK"), ("MIDPOINT", "TRADES")])
def test_an_illegal_what_to_show_is_refused_before_any_request(sim_gateway, tmp_path, what, legal):
    spec = UNIVERSE[5] if what == "TRADES" else UNIVERSE[3]  # EUR.USD, SPX
    with pytest.raises(HarvestConfigError, match=f"{spec.label} .*not served for {spec.sec_type}; legal: {legal}$"):
        harvest(sim_gateway, tmp_path / "data", [spec], what_to_show=what)
    assert sim_gateway.journal.matching() == [] and not (tmp_path / "data").exists()


def test_expired_futures_history_is_asked_up_to_its_last_session(make_gateway, tmp_path):
    """A contract expired a year ago: one request ending at its last session, none after; a rerun a month on
    asks nothing."""
    gw = make_gateway()
    data = tmp_path / "data"
    universe = [ContractSpec("ES", "FUT", "CME", last_trade_date="202306", line=2)]
    report = harvest(gw, data, universe, start=date(2023, 5, 1))
    assert report.ok, report.failures
    (request,) = report.plan
    assert request.end == datetime(2023, 6, 16, 20, tzinfo=UTC)
    gw.clock.set("2024-07-15T22:00:00+00:00")
    assert harvest(gw, data, universe, start=date(2023, 5, 1)).plan == []
