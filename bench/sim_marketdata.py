"""Benchmarks of the simulator's market data: the generator alone, and serving through the gateway.

    python bench/sim_marketdata.py                 # both parts
    python bench/sim_marketdata.py generator       # generator only
    python bench/sim_marketdata.py serve [N]       # gateway only, N symbols (default 40)

The generator part times, for 100 symbols, (a) daily bars from listing, first call per symbol
(includes building its session table) and again (cached), and (b) one month of 1-min bars; first as
`Bar` objects (`MarketData.bars`), then as the columns the gateway encodes (`bar_columns`). The serving part runs a gateway thread and fetches through a real ib_insync client; the
client dominates wall time, so it also reports the gateway thread's own CPU time per million bars
(read from the thread's CPU clock, so the client's work is not counted).
"""

from __future__ import annotations

import datetime as dt
import sys
import threading
import time

from ib_insync import IB, Stock

from harvester.sim import SimConfig, SimGateway
from harvester.sim.market.calendar import SessionCalendar
from harvester.sim.market.marketdata import MarketData
from harvester.sim.market.securities import SecuritiesMaster

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
EPOCH = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)
MONTH = (dt.datetime(2024, 11, 1, tzinfo=dt.UTC), dt.datetime(2024, 12, 1, tzinfo=dt.UTC))
SERVE_CASES = (  # (label, duration, bar size, useRTH, formatDate)
    ("daily from listing", "40 Y", "1 day", True, 1),
    ("1-min month, useRTH 0, formatDate 1", "1 M", "1 min", False, 1),
    ("1-min month, useRTH 0, formatDate 2", "1 M", "1 min", False, 2),
)


def timed(label: str, instruments, fetch) -> None:
    started = time.perf_counter()
    bars = sum(len(fetch(inst)) for inst in instruments)
    elapsed = time.perf_counter() - started
    print(f"{label:<44} {elapsed:7.3f} s  {1000 * elapsed / len(instruments):6.2f} ms/symbol  {bars:>9} bars")


def common_stocks(count: int):
    return [i for i in SecuritiesMaster.load() if i.stock_type == "COMMON"][:count]


def bench_generator() -> None:
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
    md = MarketData(master)  # again without cached histories, through the columnar path the gateway uses
    timed("columns: daily from listing, first call", instruments,
          lambda i: md.bar_columns(i, "1 day", "TRADES", True, EPOCH, NOW, NOW).start)  # fmt: skip
    timed("columns: daily from listing, cached", instruments,
          lambda i: md.bar_columns(i, "1 day", "TRADES", True, EPOCH, NOW, NOW).start)  # fmt: skip
    timed("columns: 1-min month, useRTH 0", instruments,
          lambda i: md.bar_columns(i, "1 min", "TRADES", False, *MONTH, NOW).start)  # fmt: skip


def thread_cpu(thread_id: int) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(thread_id))


def bench_serving(count: int) -> None:
    instruments = common_stocks(count)
    config = SimConfig(now=NOW, pacing_scale=0.0001, latency_scale=0.0)
    with SimGateway(config).running_in_thread() as gateway:
        ib = IB()
        ib.connect("127.0.0.1", gateway.port, clientId=1, timeout=10)
        gateway_thread = next(t.ident for t in threading.enumerate() if t.name == "sim-gateway")
        try:
            warm_up = Stock("SPY", "SMART", "USD", primaryExchange="ARCA")  # one-time calendar build, untimed
            ib.reqHistoricalData(warm_up, "", "1 D", "1 hour", "TRADES", True)
            for label, duration, bar_size, use_rth, format_date in SERVE_CASES:
                cpu0, wall0, bars = thread_cpu(gateway_thread), time.perf_counter(), 0
                for inst in instruments:
                    contract = Stock(inst.symbol, "SMART", "USD", primaryExchange=inst.primary_exchange)
                    bars += len(ib.reqHistoricalData(contract, "", duration, bar_size, "TRADES", use_rth,
                                                     formatDate=format_date))  # fmt: skip
                cpu, wall = thread_cpu(gateway_thread) - cpu0, time.perf_counter() - wall0
                print(f"serve {label:<38} {bars:>9} bars  {bars / wall:>9,.0f} bars/s via ib_insync  "
                      f"gateway CPU {cpu:6.2f} s = {1e6 * cpu / bars:6.2f} s per million bars")  # fmt: skip
        finally:
            ib.disconnect()


def main() -> None:
    part = sys.argv[1] if len(sys.argv) > 1 else "all"
    if part in ("all", "generator"):
        bench_generator()
    if part in ("all", "serve"):
        bench_serving(int(sys.argv[2]) if len(sys.argv) > 2 else 40)


if __name__ == "__main__":
    main()
