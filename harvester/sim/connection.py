"""One client connection: handshake, startApi, the start-up sync replies, and message dispatch.

IB quirks that bite here (docs/wire-protocol.md §2-§4): send nothing between the handshake reply and
startApi (ibapi throws the rest of that read away); managedAccounts must list an account and
execDetailsEnd must come, or ib_insync never finishes connecting; a duplicate client id gets 326 and a
closed socket.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from harvester.sim.clients import ClientRegistry
from harvester.sim.clock import SimClock
from harvester.sim.connectivity import Connectivity
from harvester.sim.dataservice import DataService, Slot
from harvester.sim.wire import messages as m
from harvester.sim.wire.framing import (
    SERVER_VERSION,
    Field,
    FieldReader,
    ProtocolError,
    decode_payload,
    encode_frame,
    read_frame,
    read_handshake,
)
from harvester.sim.wire.messages import In, Out

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewayContext:
    """The gateway state a connection works with (never the server itself, which creates connections)."""

    clock: SimClock
    account: str
    clients: ClientRegistry
    connectivity: Connectivity
    data: DataService


class ClientConnection:
    """State of one API connection; request ids are per connection (key pending work by reqId here)."""

    def __init__(
        self, context: GatewayContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.context = context
        self.reader = reader
        self.writer = writer
        self.client_id: int | None = None
        self.ready = False
        self.next_id = 1
        self.pending: dict[int, asyncio.Task] = {}  # historical / head-timestamp work in progress
        self.open_heads: dict[int, Slot] = {}  # answered head timestamps holding a slot until cancelled

    def send(self, fields: list[Field]) -> None:
        self.send_frame(encode_frame(fields))

    def send_frame(self, frame: bytes) -> None:
        """A frame already encoded (large historical answers are built in bulk, not field by field)."""
        if not self.writer.is_closing():
            self.writer.write(frame)

    def error(self, req_id: int, code: int, text: str) -> None:
        self.send(m.error(req_id, code, text))

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()

    async def serve(self) -> None:
        """Run the connection until EOF, then drop every pending request and free the client id."""
        try:
            low, high = await read_handshake(self.reader)
            if not low <= SERVER_VERSION <= high:
                log.info("refusing client with version range %s..%s", low, high)
                return
            self.send([SERVER_VERSION, self._connection_time()])
            while True:
                fields = decode_payload(await read_frame(self.reader))
                if fields:
                    self._dispatch(fields)
                await self.writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except ProtocolError as exc:
            log.info("closing connection: %s", exc)
        finally:
            for task in list(self.pending.values()):
                task.cancel()
            self.context.data.release_heads(self)
            self.context.clients.forget(self)
            self.close()

    def _connection_time(self) -> str:
        local = self.context.clock.now().astimezone(ZoneInfo("US/Eastern"))
        return local.strftime("%Y%m%d %H:%M:%S ") + (local.tzname() or "EST")

    def _dispatch(self, fields: list[str]) -> None:
        reader = FieldReader(fields)
        try:
            msg_id = In(reader.int())
        except ValueError:
            log.info("ignoring unsupported message %s", fields[:1])
            return
        if msg_id is In.START_API:
            self._start_api(reader)
            return
        if not self.ready:
            log.info("ignoring %s before startApi", msg_id.name)
            return
        try:
            self._handle(msg_id, reader)
        except ProtocolError as exc:
            self.error(-1, 320, f"Error reading request:{exc}")

    def _start_api(self, fields: FieldReader) -> None:
        fields.int()  # version
        client_id = fields.int()
        if not self.context.clients.claim(client_id, self):
            self.error(-1, 326, m.TEXT_DUPLICATE_CLIENT)
            self.close()
            return
        self.client_id = client_id
        self.ready = True
        self.send([Out.MANAGED_ACCTS, 1, self.context.account])
        self.send([Out.NEXT_VALID_ID, 1, self.next_id])
        notices = list(m.FARM_OK)
        if self.context.connectivity.hmds_down:
            notices[1] = (2105, m.TEXT_HMDS_BROKEN)
        for code, text in notices:
            self.error(-1, code, text)

    def _handle(self, msg_id: In, fields: FieldReader) -> None:
        account = self.context.account
        data = self.context.data
        match msg_id:
            case In.REQ_HISTORICAL_DATA:
                data.historical(self, fields)
            case In.CANCEL_HISTORICAL_DATA:
                fields.int()
                data.cancel_historical(self, fields.int())
            case In.REQ_HEAD_TIMESTAMP:
                data.head_timestamp(self, fields)
            case In.CANCEL_HEAD_TIMESTAMP:
                data.cancel_head_timestamp(self, fields.int())
            case In.REQ_CONTRACT_DATA:
                data.contract_details(self, fields)
            case In.REQ_CURRENT_TIME:
                self.send([Out.CURRENT_TIME, 1, int(self.context.clock.now().timestamp())])
            case In.REQ_IDS:
                self.send([Out.NEXT_VALID_ID, 1, self.next_id])
            case In.REQ_MANAGED_ACCTS:
                self.send([Out.MANAGED_ACCTS, 1, account])
            case In.REQ_POSITIONS:
                self.send([Out.POSITION_END, 1])
            case In.REQ_OPEN_ORDERS:
                self.send([Out.OPEN_ORDER_END, 1])
            case In.REQ_COMPLETED_ORDERS:
                self.send([Out.COMPLETED_ORDERS_END])
            case In.REQ_ACCOUNT_UPDATES:
                fields.int()
                if fields.bool():
                    self.send([Out.ACCT_VALUE, 2, "NetLiquidation", "100000.00", "USD", account])
                    self.send([Out.ACCT_UPDATE_TIME, 1, self.context.clock.now().strftime("%H:%M")])
                    self.send([Out.ACCT_DOWNLOAD_END, 1, account])
            case In.REQ_ACCOUNT_UPDATES_MULTI:
                fields.int()
                self.send([Out.ACCOUNT_UPDATE_MULTI_END, 1, fields.int()])
            case In.REQ_EXECUTIONS:
                fields.int()
                self.send([Out.EXECUTION_DATA_END, 1, fields.int()])
            case _:
                pass  # auto-open orders, cancels of subscriptions we never stream: no reply
