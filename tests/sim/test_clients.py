"""Real clients over real sockets: ib_insync, ib_async and IB's official ibapi, plus the CLI process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, date

import pytest
from ib_insync import IB, Contract, Stock, util


def test_ib_insync_connects_with_every_start_up_request_answered(sim_gateway, new_client_id, sim_now, caplog):
    ib = IB()
    with caplog.at_level(logging.ERROR, logger="ib_insync"):
        ib.connect("127.0.0.1", sim_gateway.port, clientId=new_client_id(), timeout=5)
    try:
        # A start-up reply left out makes ib_insync wait out its timeout and log it, not fail.
        assert not [r.getMessage() for r in caplog.records if "timed out" in r.getMessage()]
        assert ib.client.serverVersion() == 176
        assert ib.managedAccounts() == ["DUSIM0001"]
        assert ib.reqCurrentTime() == sim_now
        assert ib.client.clientId in sim_gateway.connected_clients
    finally:
        ib.disconnect()


def test_qualify_known_unknown_and_ambiguous(ib):
    aapl = Stock("AAPL", "SMART", "USD")
    assert ib.qualifyContracts(aapl) == [aapl]
    assert aapl.conId > 0 and aapl.primaryExchange == "NASDAQ" and aapl.tradingClass == "NMS"
    details = ib.reqContractDetails(Contract(conId=aapl.conId))[0]
    assert details.timeZoneId == "US/Eastern"
    assert details.liquidSessions() and details.tradingSessions()
    assert ib.qualifyContracts(Stock("NOSUCH", "SMART", "USD")) == []
    dual = ib.reqContractDetails(Stock("DUAL", "SMART", "USD"))
    assert sorted(d.contract.primaryExchange for d in dual) == ["NASDAQ", "NYSE"]
    assert ib.qualifyContracts(Stock("DUAL", "SMART", "USD")) == []
    assert ib.qualifyContracts(Stock("DUAL", "SMART", "USD", primaryExchange="NYSE"))


def test_bars_come_back_identical_however_the_span_is_chunked(ib):
    aapl = Stock("AAPL", "SMART", "USD", primaryExchange="NASDAQ")
    whole = ib.reqHistoricalData(aapl, "20240614 16:00:00 US/Eastern", "2 D", "5 mins", "TRADES", True, 2)
    assert len(whole) == 2 * 78
    first = ib.reqHistoricalData(aapl, "20240613 16:00:00 US/Eastern", "1 D", "5 mins", "TRADES", True, 2)
    second = ib.reqHistoricalData(aapl, "20240614-20:00:00", "1 D", "5 mins", "TRADES", True, 2)
    assert [tuple(vars(b).values()) for b in first + second] == [tuple(vars(b).values()) for b in whole]


def test_daily_bar_is_the_aggregate_of_its_minutes(ib):
    msft = Stock("MSFT", "SMART", "USD", primaryExchange="NASDAQ")
    days = ib.reqHistoricalData(msft, "", "1 D", "1 day", "TRADES", True)
    minutes = ib.reqHistoricalData(msft, "", "1 D", "1 min", "TRADES", True)
    assert len(days) == 1 and len(minutes) == 390
    day = days[0]
    assert day.date == date(2024, 6, 14)
    assert day.open == minutes[0].open and day.close == minutes[-1].close
    assert day.high == max(b.high for b in minutes) and day.low == min(b.low for b in minutes)
    assert day.volume == sum(b.volume for b in minutes)
    assert day.barCount == sum(b.barCount for b in minutes)


def test_ib_async_connects_and_fetches(sim_gateway, new_client_id):
    import ib_async

    async def run():
        ib = ib_async.IB()
        await ib.connectAsync("127.0.0.1", sim_gateway.port, clientId=new_client_id(), timeout=5)
        try:
            [spy] = await ib.qualifyContractsAsync(ib_async.Stock("SPY", "SMART", "USD"))
            return await ib.reqHistoricalDataAsync(spy, "", "3 D", "1 hour", "MIDPOINT", True, 1)
        finally:
            ib.disconnect()

    loop = asyncio.new_event_loop()  # not asyncio.run: it would unset the loop ib_insync tests share
    try:
        bars = loop.run_until_complete(run())
    finally:
        loop.close()
    assert len(bars) == 3 * 7
    assert bars[0].volume == -1 and str(bars[0].date.tzinfo) == "US/Eastern"


def test_ibapi_connects_and_fetches(sim_gateway, new_client_id):
    from ibapi.client import EClient
    from ibapi.contract import Contract as IbapiContract
    from ibapi.wrapper import EWrapper

    class App(EWrapper, EClient):
        def __init__(self):
            EClient.__init__(self, self)
            self.ready, self.done = threading.Event(), threading.Event()
            self.bars, self.end = [], None

        def nextValidId(self, orderId):
            self.ready.set()

        def historicalData(self, reqId, bar):
            self.bars.append(bar)

        def historicalDataEnd(self, reqId, start, end):
            self.end = (start, end)
            self.done.set()

    app = App()
    app.connect("127.0.0.1", sim_gateway.port, new_client_id())
    reader = threading.Thread(target=app.run, daemon=True)
    reader.start()
    try:
        assert app.ready.wait(5)
        contract = IbapiContract()
        contract.symbol, contract.secType, contract.exchange, contract.currency = "IBM", "STK", "SMART", "USD"
        app.reqHistoricalData(1, contract, "", "5 D", "1 day", "TRADES", 1, 1, False, [])
        assert app.done.wait(5)
        assert len(app.bars) == 5 and app.bars[-1].date == "20240614"
        assert app.end[1].endswith("US/Eastern")
    finally:
        app.disconnect()
        reader.join(5)


def test_cli_serves_until_sigint_and_exits_zero(tmp_path, sim_now):
    journal = tmp_path / "journal.jsonl"
    command = [sys.executable, "-c", "from harvester.cli import main; main()", "sim", "--port", "0",
               "--now", sim_now.isoformat(), "--pacing-scale", "0.01", "--journal", str(journal)]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:
        line = proc.stdout.readline()
        assert "listening on" in line, line
        port = int(line.split(":")[1].split()[0])
        ib = IB()
        ib.connect("127.0.0.1", port, clientId=1, timeout=5)
        bars = ib.reqHistoricalData(Stock("KO", "SMART", "USD"), "", "2 D", "1 day", "TRADES", True)
        ib.disconnect()
        assert len(bars) == 2
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert '"kind": "historical"' in journal.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize(("bar_size", "duration"), [("1 min", "1 M"), ("5 secs", "86400 S")])
def test_largest_requests_are_answered(make_gateway, new_client_id, sim_now, bar_size, duration):
    gateway = make_gateway(latency_scale=0.0)
    ib = IB()
    ib.connect("127.0.0.1", gateway.port, clientId=new_client_id(), timeout=5)
    try:
        started = time.perf_counter()
        bars = ib.reqHistoricalData(Stock("AAPL", "SMART", "USD"), "", duration, bar_size, "TRADES", False, 2)
        elapsed = time.perf_counter() - started
        assert len(bars) > 4000
        assert bars[-1].date <= sim_now.astimezone(UTC)
        print(
            f"{bar_size} x {duration}: {len(bars)} bars in {elapsed:.2f} s ({len(bars) / elapsed:.0f} bars/s)"
        )
    finally:
        ib.disconnect()


def test_util_df_sees_the_bars(ib):
    bars = ib.reqHistoricalData(Stock("AAPL", "SMART", "USD"), "", "1 W", "1 day", "BID_ASK", True)
    frame = util.df(bars)
    assert list(frame.columns)[:5] == ["date", "open", "high", "low", "close"] and len(frame) == 5
