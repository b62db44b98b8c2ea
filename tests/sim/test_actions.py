"""The simulator's history changes as IB's does: split-adjusted as of now, ADJUSTED_LAST, renames, new conIds,
unsettled latest sessions (market/actions.py, market/asof.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest
from ib_insync import Contract, Stock

from harvester.sim.market.actions import CorporateActions
from harvester.sim.market.marketdata import MarketData
from harvester.sim.market.replay import ReplayBook
from harvester.sim.market.securities import SecuritiesMaster

BEFORE, AFTER = datetime(2024, 6, 7, 21, tzinfo=UTC), datetime(2024, 6, 10, 21, tzinfo=UTC)  # NVDA 10:1 on 06-10


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
def bundled() -> tuple[SecuritiesMaster, CorporateActions]:
    master = SecuritiesMaster.load()
    actions = CorporateActions.load(None, master)
    return actions.apply_to(master), actions


def market(bundled, revise_latest: float = 0.0) -> MarketData:
    master, actions = bundled
    return MarketData(master, None, actions, revise_latest)


def test_bundled_table_holds_the_real_events(bundled):
    master, actions = bundled
    splits = {(master.by_con_id(a.con_id).symbol, a.ex_date.isoformat(), a.value) for a in actions.actions
              if a.kind == "split"}
    assert splits == {
        ("NVDA", "2024-06-10", 10), ("AVGO", "2024-07-15", 10), ("CMG", "2024-06-26", 50),
        ("WMT", "2024-02-26", 3), ("GOOGL", "2022-07-18", 20), ("AMZN", "2022-06-06", 20),
        ("TSLA", "2020-08-31", 5), ("TSLA", "2022-08-25", 3), ("AAPL", "2020-08-31", 4)}
    assert {master.by_con_id(a.con_id).symbol for a in actions.actions if a.kind == "dividend"} >= {"KO", "AAPL"}


@pytest.mark.parametrize("what", ["TRADES", "MIDPOINT", "BID_ASK", "ADJUSTED_LAST"])
def test_history_is_split_adjusted_as_of_now_with_volume_inversely(bundled, what):
    md = market(bundled)
    (nvda,) = md.master.match(symbol="NVDA")
    before = md.bars(nvda, "1 day", what, True, utc(2024, 5, 1), BEFORE, BEFORE)
    after = md.bars(nvda, "1 day", what, True, utc(2024, 5, 1), BEFORE, AFTER)
    assert [b.start for b in before] == [b.start for b in after] and len(before) > 20
    for old, new in zip(before, after):
        assert new.close == pytest.approx(old.close / 10, rel=1e-12)
        assert new.low == pytest.approx(old.low / 10, rel=1e-12)
        if what in ("TRADES", "ADJUSTED_LAST"):
            assert new.volume == pytest.approx(old.volume * 10, rel=1e-12) and new.count == old.count
        else:
            assert new.volume == old.volume == -1


def test_coarse_bars_stay_aggregates_of_fine_ones_as_of_any_day(bundled):
    md = market(bundled)
    (nvda,) = md.master.match(symbol="NVDA")
    (day,) = md.bars(nvda, "1 day", "TRADES", True, utc(2024, 6, 3), utc(2024, 6, 4), BEFORE)
    minutes = md.bars(nvda, "1 min", "TRADES", True, utc(2024, 6, 3), utc(2024, 6, 4), BEFORE)
    assert (day.open, day.close) == (minutes[0].open, minutes[-1].close)
    assert day.high == max(b.high for b in minutes) and day.volume == pytest.approx(sum(b.volume for b in minutes))


def test_adjusted_last_divides_history_by_each_dividend_and_includes_the_bar_in_progress(bundled):
    md = market(bundled)
    (ko,) = md.master.match(symbol="KO")  # 0.485 ex 2024-06-14
    now = utc(2024, 6, 17, 15)  # Monday, mid-session
    trades = md.bars(ko, "1 day", "TRADES", True, utc(2024, 6, 10), now, now)
    adjusted = md.bars(ko, "1 day", "ADJUSTED_LAST", True, utc(2024, 6, 10), now, now)
    assert [b.session_date for b in adjusted] == [b.session_date for b in trades] + [date(2024, 6, 17)]
    thursday = next(b for b in trades if b.session_date == date(2024, 6, 13))
    factor = 1 - 0.485 / thursday.close
    for t, a in zip(trades, adjusted):
        expected = t.close * factor if t.session_date < date(2024, 6, 14) else t.close
        assert a.close == pytest.approx(expected, rel=1e-12)
    minutes = md.bars(ko, "1 min", "TRADES", True, utc(2024, 6, 17), now, now)
    assert adjusted[-1].close == minutes[-1].close and adjusted[-1].volume == sum(b.volume for b in minutes)
    hour = md.bars(ko, "1 hour", "ADJUSTED_LAST", True, utc(2024, 6, 17), now, now)
    assert hour[-1].start == utc(2024, 6, 17, 14, 30) and hour[-1].close == minutes[-1].close  # unfinished


def test_the_latest_session_is_unsettled_until_the_next_one_closes(bundled):
    md, settled = market(bundled, revise_latest=0.2), market(bundled)
    (msft,) = md.master.match(symbol="MSFT")
    friday = (utc(2024, 6, 7), utc(2024, 6, 8))
    (early,) = md.bars(msft, "1 day", "TRADES", True, *friday, BEFORE)
    (late,) = md.bars(msft, "1 day", "TRADES", True, *friday, AFTER)
    assert late == settled.bars(msft, "1 day", "TRADES", True, *friday, BEFORE)[0]
    assert early.volume == round(late.volume * 0.8) and early.high < late.high and early.low > late.low
    assert (early.open, early.close, early.count) == (late.open, late.close, late.count)


def test_replayed_prices_are_traded_ones_divided_by_later_splits(tmp_path):
    master = SecuritiesMaster.load()
    path = tmp_path / "replay.csv"
    path.write_text("symbol,date,open,high,low,close,volume\nNVDA,2024-06-07,1200,1210,1190,1208,100\n"
                    "NVDA,2024-06-10,121,122,120,121.5,1000\n")
    actions = CorporateActions.load(None, master)
    md = MarketData(actions.apply_to(master), ReplayBook.load(path), actions)
    (nvda,) = md.master.match(symbol="NVDA")
    before = md.bars(nvda, "1 day", "TRADES", True, utc(2024, 6, 1), AFTER, BEFORE)
    after = md.bars(nvda, "1 day", "TRADES", True, utc(2024, 6, 1), AFTER, AFTER)
    assert [(b.close, b.volume) for b in before] == [(1208, 100)]
    assert [(b.close, b.volume) for b in after] == [(pytest.approx(120.8, rel=1e-12), 1000), (121.5, 1000)]


def test_rename_and_new_con_id_in_contract_details(make_gateway, connect, tmp_path):
    actions = tmp_path / "actions.parquet"
    pd.DataFrame({"symbol": ["JPM", "PG"], "ex_date": ["2024-06-10", "2024-06-10"],
                  "kind": ["rename", "new_con_id"], "value": ["JPMX", "99000001"]}).to_parquet(actions)
    gw = make_gateway(now=BEFORE, actions=actions)
    ib = connect(gw)
    (jpm,) = ib.reqContractDetails(Stock("JPM", "SMART", "USD"))
    (pg,) = ib.reqContractDetails(Stock("PG", "SMART", "USD"))
    assert ib.reqContractDetails(Contract(conId=99000001)) == []  # not listed yet
    gw.clock.set(AFTER)
    assert ib.reqContractDetails(Stock("JPM", "SMART", "USD")) == []  # the old symbol: 200
    (renamed,) = ib.reqContractDetails(Contract(conId=jpm.contract.conId))
    assert renamed.contract.symbol == "JPMX"
    (new,) = ib.reqContractDetails(Stock("PG", "SMART", "USD"))
    (old,) = ib.reqContractDetails(Contract(conId=pg.contract.conId))
    assert (new.contract.conId, old.contract.symbol) == (99000001, "PG.OLD")
    history = ib.reqHistoricalData(old.contract, "", "1 M", "1 day", "TRADES", True)
    assert history and history[-1].date == date(2024, 6, 7)  # the old line's history ends before the ex-date


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("NVDA,2024-06-10,split,1\n", "actions.csv:2: column value: '1' is not a split ratio"),
        ("NVDA,2024-13-10,split,2\n", "actions.csv:2: column ex_date: '2024-13-10' is not a date"),
        ("NVDA,2024-06-10,merger,2\n", "actions.csv:2: column kind: 'merger' is not one of"),
        ("DUAL,2024-06-10,dividend,1\n", "actions.csv:2: column symbol: DUAL names 2 listings"),
        ("PG,2024-06-10,new_con_id,484775933\n", "conId 484775933 is already taken"),
    ],
)
def test_bad_actions_files_name_file_line_and_column(tmp_path, rows, message):
    path = tmp_path / "actions.csv"
    path.write_text("symbol,ex_date,kind,value\n" + rows)
    with pytest.raises(ValueError, match=message):
        CorporateActions.load(path, SecuritiesMaster.load())
