"""History that changes under the cache, around nightly runs against the simulated gateway (real ib_insync).

Each test steps the simulator's clock night by night across one corporate action or revision, harvesting
into one warehouse, then harvests the same universe fresh on the last night into another: the invariant is
that both hold the same bars (raw values exactly; rescaled ones within RESCALED_TOLERANCE), and a rerun
asks IB for nothing. The requests each repair spent are asserted from the simulator's own journal.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from ib_insync import IB, Stock

import queries
from harvester.job import HarvestJob, HarvestReport, run_harvest
from harvester.model import ContractSpec
from harvester.warehouse import Warehouse
from tests.helpers.gateways import ensure_event_loop, next_client_id
from tests.helpers.reference import FAST_RETRY, PACING_SCALE, compare

RESCALED_TOLERANCE = 1e-9  # relative: stored bars × a split's price ratio against IB's own (float rounding)
FRIDAY = "2024-06-07T21:00:00+00:00"  # NVDA's last session before its 10:1 split (ex-date Monday 2024-06-10)
MONDAY = "2024-06-10T21:00:00+00:00"
TUESDAY = "2024-06-11T21:00:00+00:00"


def harvest(gw, data_dir: Path, symbols, **job) -> HarvestReport:
    settings = {
        "universe": [ContractSpec(s, line=i + 2) for i, s in enumerate(symbols)], "data_dir": data_dir,
        "port": gw.port, "client_id": next_client_id(), "pacing_scale": PACING_SCALE,
        "retry": FAST_RETRY, "start": date(2024, 5, 1),
    }
    report = run_harvest(HarvestJob(**{**settings, **job}))
    assert report.ok, report.failures
    return report


def historical(gw) -> list[dict]:
    return gw.journal.matching(kind="historical")


def nightly(gw, data_dir: Path, symbols, nights, **job) -> list[list[dict]]:
    """One harvest per night; the historical requests each night sent."""
    sent = []
    for night in nights:
        gw.clock.set(night)
        before = len(historical(gw))
        harvest(gw, data_dir, symbols, **job)
        sent.append(historical(gw)[before:])
    return sent


def actions(data_dir: Path) -> list[dict]:
    warehouse = Warehouse.open(data_dir, simulated=True)
    try:
        return warehouse.corporate_actions().to_dict("records")
    finally:
        warehouse.close()


ACTIONS = """NVDA,2024-06-10,split,10
XOM,2024-06-10,split,0.1
JPM,2024-06-10,rename,JPMX
PG,2024-06-10,new_con_id,99000001
"""
UNIVERSE = ["NVDA", "XOM", "JPM", "PG", "MSFT"]  # never edited: JPM and PG are followed by conId
REVISE = 0.2  # the latest session's bars 20 % short (volume, wicks) until the next session closes


def write_actions(tmp_path: Path, rows: str) -> Path:
    path = tmp_path / "actions.csv"
    path.write_text("symbol,ex_date,kind,value\n" + rows)
    return path


@pytest.mark.parametrize(("bar_size", "repair"), [("1 day", "refetch"), ("1 min", "rescale")])
def test_every_kind_across_nightly_runs_equals_a_fresh_harvest(make_gateway, tmp_path, bar_size, repair):
    """Friday, Monday (every action's ex-date), Tuesday; each night's latest session is still unsettled."""
    gw = make_gateway(now=FRIDAY, actions=write_actions(tmp_path, ACTIONS), revise_latest=REVISE)
    old_pg, jpm = queries_con_id(gw, "PG"), queries_con_id(gw, "JPM")
    job = {"bar_sizes": (bar_size,), "start": date(2024, 5, 1)}
    if bar_size == "1 min":  # five sessions in requests of ≤ 1,000 bars: refetching costs 2, rescaling 1
        job.update(start=date(2024, 6, 3), target_bars=1000)
    data = tmp_path / "nightly"
    _, monday, tuesday = nightly(gw, data, UNIVERSE, [FRIDAY, MONDAY, TUESDAY], **job)
    by_symbol = {s: [e for e in monday if e["symbol"] == s] for s in ("NVDA", "XOM", "JPMX", "PG", "MSFT")}
    assert [len(by_symbol[s]) for s in ("NVDA", "XOM", "MSFT")] == [2, 2, 1]  # increment (+ one repair request)
    assert [e["con_id"] for e in by_symbol["JPMX"]] == [jpm]  # the same conId, under its new name
    assert {e["con_id"] for e in by_symbol["PG"]} == {99000001}  # the new line; the old one is left alone
    assert sorted((e["symbol"], e["con_id"] == 99000001) for e in tuesday) == [  # one each: repairs are done
        ("JPMX", False), ("MSFT", False), ("NVDA", False), ("PG", True), ("XOM", False)]

    found = {a["symbol"]: a for a in actions(data)}
    assert set(found) == {"NVDA", "XOM"}
    assert [(found[s]["kind"], found[s]["ratio"], found[s]["ex_date"]) for s in ("NVDA", "XOM")] == [
        ("split", 10.0, date(2024, 6, 10)), ("reverse_split", 0.1, date(2024, 6, 10))]
    assert {(a["repair"], a["requests"], a["bar_size"]) for a in found.values()} == {(repair, 1, bar_size)}

    fresh = tmp_path / "fresh"
    harvest(gw, fresh, ["NVDA", "XOM", "JPMX", "PG", "PG.OLD", "MSFT"], **job)
    diff = compare(data, fresh, rel_tol=RESCALED_TOLERANCE)
    assert diff.clean and diff.actual > 0, diff
    if repair == "refetch":
        assert compare(data, fresh).clean  # refetched: IB's own values
    else:  # only the rescaled bars may differ, and within the tolerance
        assert compare(data, fresh).differing <= len(queries.bars(["NVDA", "XOM"], bar_size, data_dir=data))

    revisions = queries.connect(data).sql(
        "SELECT symbol, session_date, count(*) AS bars, bool_and(volume_new > volume_old) AS late_volume "
        "FROM revisions GROUP BY ALL ORDER BY session_date, symbol").df()
    friday_revised = revisions[revisions.session_date == pd.Timestamp("2024-06-07")]
    assert set(friday_revised.symbol) >= {"NVDA", "XOM", "MSFT"} and friday_revised.late_volume.all()
    assert (revisions.session_date == pd.Timestamp("2024-06-10")).any()  # Monday's, revised on Tuesday

    before = len(historical(gw))
    again = harvest(gw, data, UNIVERSE, **job)
    assert again.plan == [] and len(historical(gw)) == before and again.repairs == []

    old = queries.bars("PG.OLD", bar_size, "2024-05-01", "2024-07-01", data_dir=data)
    assert set(old.con_id) == {old_pg} and old.session_date.max() == pd.Timestamp("2024-06-07")
    with pytest.raises(queries.BarsRequestError, match=r"PG names 2 contracts .*con_id= or exchange=") as error:
        queries.bars("PG", bar_size, "2024-05-01", "2024-07-01", data_dir=data)
    assert f"conId {old_pg} (NYSE)" in str(error.value) and "conId 99000001 (NYSE)" in str(error.value)
    assert set(queries.bars("PG", bar_size, "2024-06-10", "2024-07-01", data_dir=data).con_id) == {99000001}
    renamed = queries.bars("JPMX", bar_size, "2024-05-01", "2024-07-01", data_dir=data)
    assert set(renamed.symbol) == {"JPMX"} and renamed.session_date.min() < pd.Timestamp("2024-06-10")
    assert renamed.equals(queries.bars("JPM", bar_size, "2024-05-01", "2024-07-01", data_dir=data))


def test_actions_file_with_an_unknown_symbol_is_refused(make_gateway, tmp_path):
    with pytest.raises(ValueError, match=r"actions.csv:2: column symbol: NOPE is not in the securities master"):
        make_gateway(actions=write_actions(tmp_path, "NOPE,2024-06-10,split,2\n"))


BEFORE_RENAME = "2022-06-08T21:00:00+00:00"  # FB's last session; META from Thursday 2022-06-09 (bundled)
AFTER_RENAME = "2022-06-09T21:00:00+00:00"


def test_bundled_fb_to_meta_rename_keeps_one_series_under_the_conid(make_gateway, tmp_path):
    bar_size, universe_after = "1 day", "META"
    gw = make_gateway(now=BEFORE_RENAME)
    job = {"bar_sizes": (bar_size,), "start": date(2022, 5, 1)}
    nightly(gw, tmp_path / "nightly", ["FB"], [BEFORE_RENAME], **job)
    gw.clock.set(AFTER_RENAME)
    after = harvest(gw, tmp_path / "nightly", [universe_after], **job)
    assert after.notices == []  # the universe says META now: the same conId, nothing to report
    harvest(gw, tmp_path / "fresh", ["META"], **job)
    assert compare(tmp_path / "nightly", tmp_path / "fresh").clean  # stored symbol included: META everywhere

    whole = queries.bars("META", bar_size, "2022-05-01", "2022-07-01", data_dir=tmp_path / "nightly")
    assert set(whole.symbol) == {"META"} and whole.ts.min() < pd.Timestamp("2022-06-09", tz="UTC")
    assert whole.equals(queries.bars("FB", bar_size, "2022-05-01", "2022-07-01", data_dir=tmp_path / "nightly"))
    con = queries.connect(tmp_path / "nightly")
    history = con.sql("SELECT symbol, valid_to IS NULL AS current FROM symbols ORDER BY valid_from, current").fetchall()
    assert history == [("FB", False), ("META", True)]


def queries_con_id(gw, symbol: str) -> int:
    ensure_event_loop()
    ib = IB()
    ib.connect("127.0.0.1", gw.port, clientId=next_client_id(), timeout=5)
    try:
        (details,) = ib.reqContractDetails(Stock(symbol, "SMART", "USD"))
        return details.contract.conId
    finally:
        ib.disconnect()


THURSDAY = "2024-06-13T21:00:00+00:00"
EX_DIVIDEND = "2024-06-14T21:00:00+00:00"  # KO goes ex 0.485 (bundled)
MONDAY_NOON = "2024-06-17T16:00:00+00:00"  # mid-session: ADJUSTED_LAST would include the unfinished bar


def test_dividend_adjusted_series_across_an_ex_date_equals_a_fresh_harvest(make_gateway, tmp_path):
    gw = make_gateway(now=THURSDAY)
    job = {"adjusted": True, "bar_sizes": ("1 day", "1 min"), "start": date(2024, 6, 10)}
    _, friday = nightly(gw, tmp_path / "nightly", ["KO", "MSFT"], [THURSDAY, EX_DIVIDEND], **job)
    assert sorted(e["what_to_show"] for e in friday) == ["ADJUSTED_LAST"] * 2 + ["TRADES"] * 4
    assert all(e["end"] == "" for e in friday if e["what_to_show"] == "ADJUSTED_LAST")  # IB: always up to now
    gw.clock.set(MONDAY_NOON)
    harvest(gw, tmp_path / "nightly", ["KO", "MSFT"], **job)
    harvest(gw, tmp_path / "fresh", ["KO", "MSFT"], **job)  # asked mid-session: today's bar comes back too
    assert compare(tmp_path / "nightly", tmp_path / "fresh").clean

    con = queries.connect(tmp_path / "fresh")
    assert con.sql("SELECT max(session_date) FROM bars WHERE what_to_show = 'ADJUSTED_LAST'").fetchall() == [(
        date(2024, 6, 14),)]  # the unfinished bar is never stored as final
    assert con.sql("SELECT max(end_ts) FROM coverage WHERE what_to_show = 'ADJUSTED_LAST'").fetchall()[0][0] == \
        pd.Timestamp("2024-06-14 20:00").to_pydatetime()  # nor covered
    factors = con.sql("SELECT symbol, session_date, factor FROM adjusted_bars WHERE bar_size = '1 day' "
                      "ORDER BY symbol, session_date").df()
    ko = factors[factors.symbol == "KO"].set_index("session_date").factor
    ((close_before,),) = con.sql("SELECT close FROM bars WHERE symbol = 'KO' AND what_to_show = 'TRADES' "
                                 "AND bar_size = '1 day' AND session_date = '2024-06-13'").fetchall()
    assert ko[ko.index < pd.Timestamp("2024-06-14")].to_numpy() == pytest.approx(1 - 0.485 / close_before, rel=1e-9)
    assert ko[ko.index >= pd.Timestamp("2024-06-14")].to_numpy() == pytest.approx(1.0)
    assert factors[factors.symbol == "MSFT"].factor.to_numpy() == pytest.approx(1.0)  # no dividend in the table
    minutes = "SELECT * FROM adjusted_bars WHERE bar_size = '1 min' ORDER BY symbol, ts"
    fresh_minutes = con.sql(minutes).df()
    assert len(fresh_minutes) == 2 * 5 * 390  # every minute of every session up to Friday, adjusted
    by_day = fresh_minutes[fresh_minutes.symbol == "KO"].groupby("session_date").factor.first()
    assert by_day.to_numpy() == pytest.approx(ko.reindex(by_day.index).to_numpy(), rel=1e-12)
    nightly_con = queries.connect(tmp_path / "nightly")
    for sql in (minutes, "SELECT * FROM adjusted_bars WHERE bar_size = '1 day' ORDER BY symbol, ts"):
        pd.testing.assert_frame_equal(nightly_con.sql(sql).df(), con.sql(sql).df(), rtol=RESCALED_TOLERANCE)
