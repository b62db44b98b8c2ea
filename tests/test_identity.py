"""Identity is the conId; a symbol is an attribute with a history (harvester/contracts.py, queries/identity.py).

Real harvests against the simulated gateway (ib_insync over loopback), read back through `queries`.
"""

from __future__ import annotations

from datetime import date

import pytest

import queries
from harvester.job import HarvestJob, run_harvest
from harvester.model import ContractSpec
from tests.helpers.gateways import next_client_id
from tests.helpers.reference import FAST_RETRY, PACING_SCALE

MSFT_CON_ID = 484775933


def harvest(gw, data_dir, specs, **job):
    return run_harvest(HarvestJob(
        universe=specs, data_dir=data_dir, port=gw.port, client_id=next_client_id(),
        pacing_scale=PACING_SCALE, retry=FAST_RETRY, start=date(2024, 5, 1), **job))


def test_one_symbol_on_two_listings_never_interleaves(sim_gateway, tmp_path):
    data = tmp_path / "data"
    specs = [ContractSpec("DUAL", primary_exchange="NYSE", line=2), ContractSpec("DUAL", primary_exchange="NASDAQ",
                                                                               line=3)]
    report = harvest(sim_gateway, data, specs)
    assert report.ok and report.series_complete == 2
    with pytest.raises(queries.BarsRequestError, match=r"DUAL names 2 contracts in 2024-05-01..2024-07-01: "
                                                         r".*con_id= or exchange=") as error:
        queries.bars("DUAL", "1 day", "2024-05-01", "2024-07-01", data_dir=data)
    assert "(NYSE)" in str(error.value) and "(NASDAQ)" in str(error.value)
    nyse = queries.bars("DUAL", "1 day", "2024-05-01", "2024-07-01", data_dir=data, exchange="NYSE")
    nasdaq = queries.bars("DUAL", "1 day", "2024-05-01", "2024-07-01", data_dir=data, exchange="NASDAQ")
    assert nyse.con_id.nunique() == nasdaq.con_id.nunique() == 1 and set(nyse.con_id) != set(nasdaq.con_id)
    assert not nyse.ts.duplicated().any() and len(nyse) == len(nasdaq)
    by_id = queries.bars("DUAL", "1 day", "2024-05-01", "2024-07-01", data_dir=data, con_id=int(nyse.con_id[0]))
    assert by_id.equals(nyse)


def test_share_class_spellings_are_the_universe_loaders(sim_gateway, tmp_path):
    data = tmp_path / "data"
    assert harvest(sim_gateway, data, [ContractSpec("BRK B"), ContractSpec("BF B")]).ok
    frames = [queries.bars(s, "1 day", "2024-05-01", "2024-07-01", data_dir=data) for s in ("BRK.B", "BRK B", "brk/b")]
    assert len(frames[0]) > 20 and all(f.equals(frames[0]) for f in frames) and set(frames[0].symbol) == {"BRK B"}
    assert len(queries.bars("BF.B", "1 day", "2024-05-01", "2024-07-01", data_dir=data)) > 20


def test_a_con_id_of_another_symbol_is_an_error_naming_both(sim_gateway, tmp_path):
    report = harvest(sim_gateway, tmp_path / "data", [ContractSpec("AAPL", con_id=MSFT_CON_ID, line=2)])
    assert list(report.failures) == ["AAPL"]
    (reason,) = report.failures["AAPL"]
    assert f"con_id {MSFT_CON_ID} is MSFT at IB, not AAPL (universe line 2)" in reason
    assert sim_gateway.journal.count_where(kind="historical") == 0


def test_a_changed_exchange_is_qualified_again(sim_gateway, tmp_path):
    data = tmp_path / "data"
    assert harvest(sim_gateway, data, [ContractSpec("MSFT")]).ok
    assert harvest(sim_gateway, data, [ContractSpec("MSFT", exchange="ISLAND")]).ok
    assert sim_gateway.journal.count_where(kind="contract_details") == 2  # the same night: only the change asks
    con = queries.connect(data)
    assert con.sql("SELECT exchange FROM contracts").fetchall() == [("ISLAND",)]
    history = con.sql("SELECT con_id, exchange, valid_to IS NULL AS now FROM symbols ORDER BY valid_from, now"
                      ).fetchall()  # the same second twice: the closed row first
    assert history == [(MSFT_CON_ID, "SMART", False), (MSFT_CON_ID, "ISLAND", True)]
