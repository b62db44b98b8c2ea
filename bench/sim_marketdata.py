"""Micro-benchmark of the simulator's market data generator (run: python bench/sim_marketdata.py).

Times (a) daily bars from listing for 100 symbols, first call per symbol (includes building its
session table) and again (cached), and (b) one month of 1-min bars (extended hours) for 100 symbols.
"""

from __future__ import annotations

import datetime as dt
import time

from harvester.sim.calendar import SessionCalendar
from harvester.sim.marketdata import MarketData
from harvester.sim.securities import SecuritiesMaster

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
EPOCH = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)
MONTH = (dt.datetime(2024, 11, 1, tzinfo=dt.UTC), dt.datetime(2024, 12, 1, tzinfo=dt.UTC))


def timed(label: str, instruments, fetch) -> None:
    started = time.perf_counter()
    bars = sum(len(fetch(inst)) for inst in instruments)
    elapsed = time.perf_counter() - started
    print(f"{label:<44} {elapsed:7.3f} s  {1000 * elapsed / len(instruments):6.2f} ms/symbol  {bars:>9} bars")


def main() -> None:
    master = SecuritiesMaster.load()
    instruments = [i for i in master if i.stock_type == "COMMON"][:100]
    SessionCalendar.for_instrument(instruments[0])  # build the calendar once, outside the timings
    md = MarketData(master)
    timed("daily from listing, first call (100 symbols)", instruments,
          lambda i: md.bars(i, "1 day", "TRADES", True, EPOCH, NOW, NOW))  # fmt: skip
    timed("daily from listing, cached (100 symbols)", instruments,
          lambda i: md.bars(i, "1 day", "TRADES", True, EPOCH, NOW, NOW))  # fmt: skip
    timed("1 month of 1-min bars, useRTH 0 (100 symbols)", instruments,
          lambda i: md.bars(i, "1 min", "TRADES", False, *MONTH, NOW))  # fmt: skip
    timed("1 month of 1-min bars, useRTH 1 (100 symbols)", instruments,
          lambda i: md.bars(i, "1 min", "TRADES", True, *MONTH, NOW))  # fmt: skip


if __name__ == "__main__":
    main()
