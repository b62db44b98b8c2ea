"""The simulator's securities master: bundled file, stable conIds, ambiguity, bad input."""

from __future__ import annotations

import csv

import pytest

from harvester.sim.market.securities import BUNDLED_MASTER, SecuritiesMaster, derive_con_id


@pytest.fixture(scope="module")
def master() -> SecuritiesMaster:
    return SecuritiesMaster.load()


def _bundled_rows() -> list[dict[str, str]]:
    with BUNDLED_MASTER.open(encoding="utf-8") as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))


def test_bundled_master_covers_sp500_and_etfs(master):
    assert len(master) >= 500
    for symbol in ("AAPL", "MSFT", "BRK B", "SPY", "QQQ", "IWM", "DIA"):
        assert len(master.match(symbol=symbol, sec_type="STK", currency="USD")) == 1, symbol
    assert master.match(symbol="SPY")[0].primary_exchange == "ARCA"
    assert master.match(symbol="AAPL")[0].primary_exchange == "NASDAQ"
    assert master.match(symbol="BRK.B") == []  # IB spells share classes with a space


def test_con_ids_unique_and_persisted_as_derived():
    rows = _bundled_rows()
    con_ids = [int(r["con_id"]) for r in rows]
    assert len(set(con_ids)) == len(con_ids)
    for row in rows[:5] + [r for r in rows if r["symbol"] == "DUAL"]:
        derived = derive_con_id(row["symbol"], row["primary_exchange"], row["sec_type"], row["currency"])
        assert (
            derived
            == int(row["con_id"])
            == derive_con_id(row["symbol"], row["primary_exchange"], row["sec_type"], row["currency"])
        )


def test_blank_con_id_is_derived_and_stable(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(
        "symbol,sec_type,primary_exchange,currency,con_id,listing_date,long_name,stock_type,isin\n"
        "ZZZ,STK,NYSE,USD,,2001-02-03,ZED CORP,COMMON,\n"
    )
    first = SecuritiesMaster.load(path).match(symbol="ZZZ")[0]
    second = SecuritiesMaster.load(path).match(symbol="ZZZ")[0]
    assert first.con_id == second.con_id == derive_con_id("ZZZ", "NYSE", "STK", "USD")
    assert 1_000_000 <= first.con_id < 900_000_000
    assert (first.calendar_name, first.time_zone) == ("XNYS", "US/Eastern")


def test_dual_listing_is_ambiguous_without_primary_exchange(master):
    both = master.match(symbol="DUAL", sec_type="STK", exchange="SMART", currency="USD")
    assert {i.primary_exchange for i in both} == {"NYSE", "NASDAQ"}
    nasdaq = master.match(symbol="DUAL", exchange="SMART", primary_exchange="NASDAQ")
    assert len(nasdaq) == 1 and nasdaq[0].primary_exchange == "NASDAQ"
    assert master.match(con_id=nasdaq[0].con_id) == nasdaq


def test_unknown_and_filters(master):
    assert master.match(symbol="NOSUCH") == []
    assert master.match(symbol="AAPL", currency="EUR") == []
    assert master.match(symbol="AAPL", exchange="NYSE") == []
    assert len(master.match(symbol="AAPL", exchange="ISLAND")) == 1
    assert master.match() == []


def test_listing_dates_in_range(master):
    dates = [i.listing_date for i in master if i.sec_type != "FUT"]  # futures are listed up to 2030
    assert min(dates).isoformat() >= "1990-01-02"
    assert max(dates).year <= 2022
    assert sum(d.year >= 2015 for d in dates) >= 5  # a handful of recent listings


@pytest.mark.parametrize(
    ("body", "culprit"),
    [
        (
            "AAA,STK,NYSE,USD,,2001-02-03,A,COMMON,\nBBB,STK,MARS,USD,,2001-02-03,B,COMMON,\n",
            ":3: unknown primary",
        ),
        ("AAA,STK,NYSE,USD,,20010203,A,COMMON,\n", ":2: listing_date"),
        ("AAA,STK,NYSE,USD,x1,2001-02-03,A,COMMON,\n", ":2: con_id"),
        ("AAA,STK,NYSE\n", ":2: "),
    ],
)
def test_bad_master_names_file_and_line(tmp_path, body, culprit):
    path = tmp_path / "bad.csv"
    path.write_text(
        "symbol,sec_type,primary_exchange,currency,con_id,listing_date,long_name,stock_type,isin\n" + body
    )
    with pytest.raises(ValueError, match=f"bad.csv{culprit}"):
        SecuritiesMaster.load(path)
