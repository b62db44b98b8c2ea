"""Rebuild the bundled securities master and `universes/sp500.csv` from pytickersymbols (offline).

Usage: python scripts/build_reference_data.py   (needs `pip install -e '.[data]'`)

pytickersymbols' google symbol (`NYSE:MMM`) names the primary exchange when present; otherwise the
Wikipedia `traded_as` text does; a handful with neither are listed by hand below.
"""

from __future__ import annotations

import csv
import datetime
import re
import zlib
from importlib.metadata import version
from pathlib import Path

from pytickersymbols import PyTickerSymbols

from harvester.sim.market.securities import BUNDLED_MASTER, COLUMNS, assign_con_ids

ROOT = Path(__file__).resolve().parent.parent
UNIVERSE = ROOT / "universes" / "sp500.csv"
BUILD_COMMAND = "python scripts/build_reference_data.py"

_IB_EXCHANGE = {
    "NYSE": "NYSE",
    "NASDAQ": "NASDAQ",
    "NYSEAMERICAN": "AMEX",
    "AMEX": "AMEX",
    "NYSE AMERICAN": "AMEX",
    "BATS": "BATS",
    "CBOE": "BATS",
    "NYSEARCA": "ARCA",
    "NYSE ARCA": "ARCA",
}
_TRADED_AS = re.compile(r"NYSE American|NYSE Arca|NYSE|Nasdaq|Cboe|BATS", re.IGNORECASE)
_BY_HAND = {"GDDY": "NYSE", "PODD": "NASDAQ", "NSC": "NYSE", "Q": "NYSE", "LUV": "NYSE", "UAL": "NASDAQ"}

# (symbol, primary, listing date, long name, isin)
_ETFS = [
    ("SPY", "ARCA", "1993-01-29", "SPDR S&P 500 ETF TRUST", "US78462F1030"),
    ("QQQ", "NASDAQ", "1999-03-10", "INVESCO QQQ TRUST SERIES 1", "US46090E1038"),
    ("IWM", "ARCA", "2000-05-26", "ISHARES RUSSELL 2000 ETF", "US4642876555"),
    ("DIA", "ARCA", "1998-01-20", "SPDR DOW JONES INDUSTRIAL AVERAGE ETF", "US78467X1090"),
    ("EFA", "ARCA", "2001-08-17", "ISHARES MSCI EAFE ETF", "US4642874659"),
    ("EEM", "ARCA", "2003-04-14", "ISHARES MSCI EMERGING MARKETS ETF", "US4642872349"),
    ("GLD", "ARCA", "2004-11-18", "SPDR GOLD SHARES", "US78463V1070"),
    ("TLT", "NASDAQ", "2002-07-30", "ISHARES 20+ YEAR TREASURY BOND ETF", "US4642874329"),
    ("XLF", "ARCA", "1998-12-22", "FINANCIAL SELECT SECTOR SPDR FUND", "US81369Y6059"),
    ("VTI", "ARCA", "2001-06-15", "VANGUARD TOTAL STOCK MARKET ETF", "US9229087690"),
]
# A fictional symbol on two primary exchanges: the ambiguity path of contract lookup.
_DUAL = [
    ("DUAL", "NYSE", "2005-06-01", "DUAL LISTING TEST CORP A"),
    ("DUAL", "NASDAQ", "2011-03-15", "DUAL LISTING TEST CORP B"),
]

_FIRST_LISTING = datetime.date(1990, 1, 2)
_LAST_LISTING = datetime.date(2022, 12, 30)


def listing_date(symbol: str) -> datetime.date:
    """Deterministic from the symbol: half listed at the 1990 start, the rest spread to 2022."""
    h = zlib.crc32(f"listing|{symbol}".encode())
    if h % 2 == 0:
        return _FIRST_LISTING
    span = (_LAST_LISTING - _FIRST_LISTING).days
    return _FIRST_LISTING + datetime.timedelta(days=(h // 2) % span)


def primary_exchange(stock: dict) -> str:
    for entry in stock.get("symbols") or []:
        prefix, _, _ = entry.get("google", "").partition(":")
        if prefix in _IB_EXCHANGE and entry.get("currency") == "USD":
            return _IB_EXCHANGE[prefix]
    match = _TRADED_AS.search((stock.get("metadata") or {}).get("traded_as") or "")
    if match:
        return _IB_EXCHANGE[match.group(0).upper()]
    if stock["symbol"] in _BY_HAND:
        return _BY_HAND[stock["symbol"]]
    raise SystemExit(f"no primary exchange known for {stock['symbol']}; add it to _BY_HAND")


def sp500_stocks() -> list[dict[str, str]]:
    stocks = PyTickerSymbols().get_stocks_by_index("S&P 500")
    out = {}
    for s in stocks:
        isin = next((i for i in s.get("isins") or [] if i.startswith("US")), "")
        out[s["symbol"]] = {
            "symbol": s["symbol"],
            "primary": primary_exchange(s),
            "name": s["name"],
            "isin": isin,
        }
    return sorted(out.values(), key=lambda r: r["symbol"])


def _master_row(symbol: str, primary: str, listed: str, name: str, stock_type: str, isin: str) -> dict[str, str]:
    """One securities-master row; con_id is filled in once every row is known."""
    return {
        "symbol": symbol,
        "sec_type": "STK",
        "primary_exchange": primary,
        "currency": "USD",
        "con_id": "",
        "listing_date": listed,
        "long_name": name,
        "stock_type": stock_type,
        "isin": isin,
    }


def master_rows(stocks: list[dict[str, str]]) -> list[dict[str, str]]:
    rows = [
        _master_row(
            s["symbol"].replace(".", " "),  # IB spells share classes "BRK B"
            s["primary"],
            listing_date(s["symbol"]).isoformat(),
            s["name"].upper(),
            "COMMON",
            s["isin"],
        )
        for s in stocks
    ]
    rows += [_master_row(sym, prim, listed, name, "ETF", isin) for sym, prim, listed, name, isin in _ETFS]
    rows += [_master_row(sym, prim, listed, name, "COMMON", "") for sym, prim, listed, name in _DUAL]
    for row, con_id in zip(rows, assign_con_ids(rows)):
        row["con_id"] = str(con_id)
    return rows


def main() -> None:
    source = f"pytickersymbols {version('pytickersymbols')}"
    stocks = sp500_stocks()
    UNIVERSE.parent.mkdir(parents=True, exist_ok=True)
    with UNIVERSE.open("w", newline="", encoding="utf-8") as fh:
        fh.write(f"# S&P 500 constituents from {source} (index 'S&P 500'); rebuild: {BUILD_COMMAND}\n")
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["symbol", "primary_exchange", "currency", "name"])
        writer.writerows([s["symbol"], s["primary"], "USD", s["name"]] for s in stocks)
    rows = master_rows(stocks)
    with BUNDLED_MASTER.open("w", newline="", encoding="utf-8") as fh:
        fh.write(
            f"# Simulator securities master from {source} plus ETFs and DUAL; rebuild: {BUILD_COMMAND}\n"
        )
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(stocks)} rows to {UNIVERSE} and {len(rows)} rows to {BUNDLED_MASTER}")


if __name__ == "__main__":
    main()
