"""The example universes of every asset class harvest with `--sim`; `--plan` counts requests by class;
a whatToShow a class cannot show is refused in one line before anything is asked."""

from __future__ import annotations

from pathlib import Path

import pytest

import queries
from tests.cli.test_harvest import invoke, one_line_error, sim_journal
from tests.helpers.gateways import SIM_NOW

EXAMPLES = Path(__file__).resolve().parents[2] / "universes" / "examples"
RECENT = ("--sim", "--sim-now", SIM_NOW, "--start", "2024-06-03")  # two weeks: a short test


@pytest.mark.parametrize("name", ["stk", "ind", "cash", "fut", "contfut", "mixed"])
def test_each_example_universe_harvests_in_one_run(tmp_path, name):
    data = tmp_path / "data"
    result = invoke("--universe", str(EXAMPLES / f"{name}.csv"), "--data-dir", str(data), *RECENT)
    assert result.exit_code == 0, result.output + result.stderr
    assert "series complete" in result.output
    con = queries.connect(data)
    assert con.sql("SELECT count(*) FROM gaps").fetchall() == [(0,)]
    assert con.sql("SELECT count(DISTINCT con_id) FROM bars").fetchall()[0][0] >= 2
    if name == "mixed":
        again = invoke("--universe", str(EXAMPLES / f"{name}.csv"), "--data-dir", str(data), *RECENT)
        assert again.exit_code == 0 and "requests by outcome: none" in again.output  # a rerun asks nothing


def test_plan_counts_requests_by_asset_class(tmp_path):
    result = invoke("--universe", str(EXAMPLES / "mixed.csv"), "--data-dir", str(tmp_path / "d"), "--plan", *RECENT)
    assert result.exit_code == 0, result.output + result.stderr
    (line,) = [x for x in result.output.splitlines() if x.startswith("by asset class:")]
    # ES 202409, and CL CONTFUT's expiries alive since the start up to its front month (July, to 20 June)
    assert line == "by asset class: CASH 1, FUT 2, IND 1, STK 3"
    assert not [e for e in sim_journal(tmp_path / "d") if e["kind"] == "historical"]


def test_trades_for_forex_is_refused_naming_the_legal_ones(tmp_path):
    result = invoke("--universe", str(EXAMPLES / "cash.csv"), "--data-dir", str(tmp_path / "d"), "--what",
                    "TRADES", *RECENT)
    assert result.exit_code == 2
    assert one_line_error(result).endswith("EUR.USD (line 3): whatToShow TRADES is not served for CASH; "
                                           "legal: MIDPOINT, BID, ASK, BID_ASK")
    assert not (tmp_path / "d").exists()
