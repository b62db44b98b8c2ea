"""reqHistoricalData (20) and reqHeadTimeStamp (87) in; historicalData (17) and headTimestamp (88) out.

Layouts as in docs/wire-protocol.md §6-§7. Message 17 is one frame built from bar columns in bulk.
Per bar: date, open, high, low, close, volume, wap, count. The date is `yyyyMMdd` for daily and longer
bars; otherwise epoch seconds (formatDate 2) or `yyyyMMdd HH:mm:ss <zone>` in the instrument's zone
(formatDate 1). Prices are written as Java's `Double.toString` (`framing.java_double`), volume and WAP,
Decimals at 176, as plain decimal text (`framing.format_number`); see columntext. -1 stays -1.
"""

from __future__ import annotations

import datetime
import struct
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np

from harvester.sim.market.barcolumns import BarColumns, yyyymmdd
from harvester.sim.wire import messages as m
from harvester.sim.wire.columntext import TextBlock, digits, doubles, integers, numbers, payload
from harvester.sim.wire.framing import MAX_FRAME, Field, FieldReader, ProtocolError, encode_field
from harvester.sim.wire.messages import ContractSpec

_HOUR = 3600


@dataclass(frozen=True)
class HistoricalRequest:
    """Message 20 as sent at version 176 (bar size BEFORE duration on the wire)."""

    req_id: int
    contract: ContractSpec
    include_expired: bool
    end: str
    bar_size: str
    duration: str
    use_rth: bool
    what_to_show: str
    format_date: int
    keep_up_to_date: bool

    @classmethod
    def read(cls, fields: FieldReader) -> HistoricalRequest:
        req_id = fields.int()
        contract = ContractSpec.read(fields)
        include_expired, end, bar_size, duration = fields.bool(), fields.str(), fields.str(), fields.str()
        use_rth, what, format_date = fields.bool(), fields.str(), fields.int()
        if contract.sec_type == "BAG":
            for _ in range(fields.int()):
                fields.int(), fields.int(), fields.str(), fields.str()
        keep_up_to_date = fields.bool() if fields.remaining() else False
        return cls(req_id, contract, include_expired, end, bar_size, duration, use_rth, what, format_date,
                   keep_up_to_date)  # fmt: skip


@dataclass(frozen=True)
class HeadTimestampRequest:
    """Message 87: note useRTH comes before whatToShow."""

    req_id: int
    contract: ContractSpec
    include_expired: bool
    use_rth: bool
    what_to_show: str
    format_date: int

    @classmethod
    def read(cls, fields: FieldReader) -> HeadTimestampRequest:
        req_id = fields.int()
        contract = ContractSpec.read(fields)
        return cls(req_id, contract, fields.bool(), fields.bool(), fields.str(), fields.int())


def ib_time(instant: datetime.datetime, zone: str) -> str:
    """`yyyyMMdd HH:mm:ss <zone>` in the zone, as IB labels intraday bars and request windows."""
    return instant.astimezone(ZoneInfo(zone)).strftime("%Y%m%d %H:%M:%S ") + zone


def historical_data_frame(
    req_id: int,
    bars: BarColumns,
    window: tuple[datetime.datetime, datetime.datetime],
    daily: bool,
    format_date: int,
    zone: str,
) -> bytes:
    """The complete frame: window strings, bar count, then 8 fields per bar."""
    header = [m.Out.HISTORICAL_DATA, req_id, ib_time(window[0], zone), ib_time(window[1], zone), len(bars)]
    text = "".join(encode_field(f) + "\0" for f in header).encode("ascii")
    if len(bars):
        text += _body(bars, daily, format_date, zone)
    if len(text) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(text)} bytes exceeds the 16 MiB limit")
    return struct.pack(">I", len(text)) + text


def _body(bars: BarColumns, daily: bool, format_date: int, zone: str) -> bytes:
    rows = len(bars)
    end = TextBlock.constant(rows, b"\0")
    if daily:
        stamp = [digits(yyyymmdd(bars.session_date), 8)]
    elif format_date == 2:
        stamp = integers(bars.start)
    else:
        stamp = _local_times(bars.start, zone)
    blocks = [*stamp, end]
    for column in (bars.open, bars.high, bars.low, bars.close):
        blocks += [*doubles(column), end]
    for column in (bars.volume, bars.wap):
        blocks += [*numbers(column), end]
    blocks += [*integers(bars.count), end]
    return payload(blocks)


def _local_times(starts: np.ndarray, zone: str) -> list[TextBlock]:
    """`yyyyMMdd HH:mm:ss <zone>` for every start, all the same width."""
    local = starts + _utc_offsets(starts, ZoneInfo(zone))
    days, seconds = np.divmod(local, 86400)
    dates = yyyymmdd(days.astype("datetime64[D]"))
    clock = seconds // 3600 * 10000 + seconds // 60 % 60 * 100 + seconds % 60
    time_digits = digits(clock, 6).data
    rows = len(starts)
    colon = np.full((rows, 1), ord(":"), dtype=np.uint8)
    text = np.concatenate(
        [
            digits(dates, 8).data,
            np.full((rows, 1), ord(" "), dtype=np.uint8),
            time_digits[:, -6:-4], colon, time_digits[:, -4:-2], colon, time_digits[:, -2:],
        ],
        axis=1,
    )  # fmt: skip
    return [TextBlock(text, np.ones(text.shape, dtype=bool)), TextBlock.constant(rows, f" {zone}".encode())]


def _utc_offsets(starts: np.ndarray, zone: ZoneInfo) -> np.ndarray:
    """The zone's UTC offset (seconds) at each start; looked up once per clock hour, per bar only in an
    hour where the offset changes."""
    hours, where = np.unique(starts // _HOUR, return_inverse=True)
    first = np.array([_offset(h * _HOUR, zone) for h in hours.tolist()], dtype=np.int64)
    last = np.array([_offset(h * _HOUR + _HOUR - 1, zone) for h in hours.tolist()], dtype=np.int64)
    offsets = first[where]
    changing = np.flatnonzero((first != last)[where])
    if len(changing):
        offsets[changing] = [_offset(s, zone) for s in starts[changing].tolist()]
    return offsets


def _offset(epoch: int, zone: ZoneInfo) -> int:
    return int(datetime.datetime.fromtimestamp(epoch, zone).utcoffset().total_seconds())


def head_timestamp(req_id: int, instant: datetime.datetime, format_date: int) -> list[Field]:
    """Message 88: formatDate 1 is `yyyyMMdd-HH:mm:ss` in UTC, 2 is epoch seconds."""
    if format_date == 2:
        return [m.Out.HEAD_TIMESTAMP, req_id, str(int(instant.timestamp()))]
    return [m.Out.HEAD_TIMESTAMP, req_id, instant.astimezone(ZoneInfo("UTC")).strftime("%Y%m%d-%H:%M:%S")]
