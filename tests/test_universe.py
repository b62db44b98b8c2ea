"""Universe CSV parsing: what real-world files look like, and what must be refused with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from harvester.model import ContractSpec
from harvester.universe import MAX_BYTES, MAX_ROWS, UniverseError, ib_symbol, load_universe


def write(tmp_path: Path, content: str | bytes, name: str = "u.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def symbols(specs: list[ContractSpec]) -> list[str]:
    return [s.symbol for s in specs]


def test_minimal_file_gives_defaults(tmp_path):
    specs = load_universe(write(tmp_path, "symbol\nAAPL\nMSFT\n"))
    assert specs == [ContractSpec("AAPL", line=2), ContractSpec("MSFT", line=3)]
    assert specs[0].exchange == "SMART" and specs[0].currency == "USD" and specs[0].sec_type == "STK"


def test_wikipedia_style_sp500_with_bom_and_extra_columns(tmp_path):
    content = "\ufeffSymbol,Security,GICS Sector\nMMM,3M,Industrials\nBRK.B,Berkshire Hathaway,Financials\n"
    specs = load_universe(write(tmp_path, content))
    assert symbols(specs) == ["MMM", "BRK B"]


def test_ticker_alias_header_case_whitespace_comments_and_blank_lines(tmp_path):
    content = (
        "# my universe\n\n TICKER , Primary_Exchange ,Currency\n# tech\n aapl , nasdaq , usd \n"
        "\n,,\nbf/b,NYSE,USD\n# end\n"
    )
    specs = load_universe(write(tmp_path, content))
    assert specs == [
        ContractSpec("AAPL", primary_exchange="NASDAQ", line=5),
        ContractSpec("BF B", primary_exchange="NYSE", line=8),
    ]


def test_all_optional_columns(tmp_path):
    content = "symbol,sec_type,exchange,primary_exchange,currency,con_id\nSPY,STK,ARCA,ARCA,USD,756733\n"
    (spec,) = load_universe(write(tmp_path, content))
    assert spec == ContractSpec("SPY", "STK", "ARCA", "ARCA", "USD", 756733, line=2)


def test_identical_duplicates_are_merged(tmp_path):
    specs = load_universe(write(tmp_path, "symbol,currency\nAAPL,USD\nMSFT,USD\naapl,usd\n"))
    assert symbols(specs) == ["AAPL", "MSFT"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("BRK.B", "BRK B"), ("BF/B", "BF B"), ("BP.", "BP."), ("rds.a", "RDS A"), ("A", "A")],
)
def test_share_class_spelling(raw, expected):
    assert ib_symbol(raw) == expected


def error_for(tmp_path: Path, content: str | bytes) -> UniverseError:
    path = write(tmp_path, content)
    with pytest.raises(UniverseError) as info:
        load_universe(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:")
    return info.value


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(UniverseError, match="nope.csv: file not found"):
        load_universe(tmp_path / "nope.csv")


def test_one_symbol_on_two_listings_is_two_contracts(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("symbol,primary_exchange,con_id\nDUAL,NYSE,\nDUAL,NASDAQ,\nAAPL,,265598\nAAPL,,1\nDUAL,NYSE,\n")
    specs = load_universe(path)
    assert [(s.symbol, s.primary_exchange, s.con_id) for s in specs] == [
        ("DUAL", "NYSE", 0), ("DUAL", "NASDAQ", 0), ("AAPL", "", 265598), ("AAPL", "", 1)]


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        ("", 1, "empty file"),
        ("# only a comment\n\n", 1, "empty file"),
        ("symbol\n\n# nothing\n", 1, "no rows"),
        ("name,sector\nAAPL,Tech\n", 1, "no 'symbol' column"),
        ("symbol,currency\nAAPL,USD\nAAPL,EUR\n", 3, "conflicts with line 2"),
        ("symbol,primary_exchange,exchange\nX,NYSE,SMART\nX,NYSE,ARCA\n", 3, "conflicts with line 2"),
        ("symbol,security\nAAPL,Apple\nMSFT\n", 3, "expected 2 fields, found 1"),
        ('symbol,security\nAAPL,"Apple\n', 2, "unparseable"),
        ("symbol,con_id\nAAPL,12x\n", 2, "bad con_id"),
        ("symbol,con_id\nAAPL,-5\n", 2, "bad con_id"),
        ("symbol,sec_type\nAAPL,WARRANTY\n", 2, "unknown sec_type"),
        ("symbol,sec_type\nSPY,ETF\n", 2, "unknown sec_type 'ETF'"),
        ("symbol\nAAPL\nMSFT,extra\n", 3, "expected 1 fields, found 2"),
        ("symbol,exchange\nAAPL,SMART;DROP\n", 2, "invalid exchange"),
    ],
)
def test_rejected_files(tmp_path, content, line, reason):
    error = error_for(tmp_path, content)
    assert error.line == line
    assert reason in str(error)


@pytest.mark.parametrize(
    "symbol",
    [
        "../../etc",
        "A';DROP TABLE bars;--",
        "$(rm -rf)",
        "\u0410APL",
        "ÅAPL",
        "ßPY",
        "ABCDEFGHIJKLM",
        "A\tB",
        "A*",
        "A/../B",
        "-A",
    ],
)
def test_hostile_symbols_are_refused(tmp_path, symbol):
    error = error_for(tmp_path, f'symbol\nAAPL\n"{symbol}"\n')
    assert error.line == 3
    assert "invalid symbol" in str(error)


def test_binary_content_is_refused(tmp_path):
    error = error_for(tmp_path, b"symbol\nAAPL\nMS\x00FT\n")
    assert error.line == 3
    assert "NUL" in str(error)


def test_non_utf8_is_refused_with_line(tmp_path):
    error = error_for(tmp_path, "symbol\nAAPL\nNESTL\xc9\n".encode("latin-1"))
    assert error.line == 3
    assert "not UTF-8" in str(error)


def test_row_limit_is_named(tmp_path):
    rows = "\n".join(f"S{i}" for i in range(MAX_ROWS + 1))
    error = error_for(tmp_path, f"symbol\n{rows}\n")
    assert str(MAX_ROWS) in str(error)
    assert error.line == MAX_ROWS + 2


def test_huge_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.csv"
    with path.open("wb") as out:
        out.truncate(MAX_BYTES + 1)
    with pytest.raises(UniverseError, match="larger than 16 MiB"):
        load_universe(path)


def test_at_the_row_limit_is_accepted(tmp_path):
    rows = "\n".join(f"S{i}" for i in range(MAX_ROWS))
    assert len(load_universe(write(tmp_path, f"symbol\n{rows}\n"))) == MAX_ROWS


def test_every_asset_class_in_one_file(tmp_path):
    content = (
        "symbol,sec_type,exchange,primary_exchange,currency,expiry,multiplier\n"
        "VOD,STK,SMART,LSE,GBP,,\nEUR.USD,CASH,,,,,\nUSD,CASH,IDEALPRO,,JPY,,\nSPX,IND,CBOE,,USD,,\n"
        "ES,FUT,CME,,USD,202406,50\nES,CONTFUT,CME,,USD,,\nES,STK,SMART,NYSE,USD,,\n"
    )
    specs = load_universe(write(tmp_path, content))
    assert [s.label for s in specs] == ["VOD", "EUR.USD", "USD.JPY", "SPX", "ES 202406", "ES", "ES"]
    eur = specs[1]
    assert (eur.symbol, eur.currency, eur.exchange) == ("EUR", "USD", "IDEALPRO")  # IDEALPRO by default
    es = specs[4]
    assert (es.sec_type, es.last_trade_date, es.multiplier) == ("FUT", "202406", "50")
    assert {s.sec_type for s in specs if s.symbol == "ES"} == {"FUT", "CONTFUT", "STK"}  # three instruments


def test_two_expiries_of_one_future_are_two_instruments(tmp_path):
    content = "symbol,sec_type,exchange,last_trade_date\nES,FUT,CME,202406\nES,FUT,CME,20240920\n"
    assert [s.label for s in load_universe(write(tmp_path, content))] == ["ES 202406", "ES 20240920"]


@pytest.mark.parametrize("row, reason", [
    ("ES,FUT,CME,,", "u.csv:2: FUT 'ES' needs last_trade_date as YYYYMM or YYYYMMDD, got ''"),
    ("ES,FUT,CME,202413,", "needs last_trade_date as YYYYMM or YYYYMMDD, got '202413'"),
    ("ES,FUT,,202406,", "u.csv:2: FUT 'ES' needs an exchange (IB does not route it SMART)"),
    ("SPX,IND,,,", "IND 'SPX' needs an exchange"),
    ("AAPL,STK,SMART,202406,", "last_trade_date '202406' only applies to FUT, not STK"),
    ("AAPL,STK,SMART,,50", "bad multiplier '50': a number, for FUT or CONTFUT only"),
    ("ES,FUT,CME,202406,x5", "bad multiplier 'x5'"),
])
def test_bad_futures_and_indices_are_refused_by_line(tmp_path, row, reason):
    path = write(tmp_path, f"symbol,sec_type,exchange,last_trade_date,multiplier\n{row}\n")
    with pytest.raises(UniverseError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        load_universe(path)


def test_a_pair_and_a_conflicting_currency_are_refused(tmp_path):
    path = write(tmp_path, "symbol,sec_type,currency\nEUR.USD,CASH,GBP\n")
    with pytest.raises(UniverseError, match="u.csv:2: pair 'EUR.USD' is quoted in USD, not GBP"):
        load_universe(path)
