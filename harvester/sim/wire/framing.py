"""TWS wire framing: the `API\\0` preamble, length-prefixed NUL-separated frames, ASCII-safe fields.

Server side of docs/wire-protocol.md §2. One TCP read may hold several frames or part of one, so the
reader buffers; every field (the last one included) ends in NUL; non-ASCII text goes out as `\\uXXXX`
because ibapi decodes some strings with `unicode-escape`.
"""

from __future__ import annotations

import asyncio
import math
import struct
from decimal import Decimal

PREAMBLE = b"API\0"
SERVER_VERSION = 176
MAX_FRAME = 16 * 1024 * 1024 - 1  # ibapi refuses anything larger


class ProtocolError(Exception):
    """The peer sent bytes that are not the TWS API protocol."""


Field = str | int | float | bool | None


def encode_field(value: Field) -> str:
    """One field as the clients parse it: bools as 1/0, None as empty, text escaped to ASCII."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_number(value)
    text = str(value)
    if "\0" in text:
        raise ProtocolError(f"NUL inside field {text!r}")
    return text if text.isascii() else "".join(c if c.isascii() else f"\\u{ord(c):04x}" for c in text)


def format_number(value: float) -> str:
    """Shortest decimal text for a number: integral values without `.0`, never exponent notation."""
    number = float(value)
    if number.is_integer():
        return str(int(number))
    text = repr(number)
    if "e" in text or "E" in text:
        text = f"{number:.12f}".rstrip("0").rstrip(".")
    return text


def java_double(value: float) -> str:
    """A double as Java's `Double.toString` writes it, which is how IB sends prices (docs/ib-numbers.md):
    the shortest digits that read back to the same double (Python's repr finds them; JDK 19+ keeps a
    second digit when one is not the closest), plain for 1e-3 <= |x| < 1e7 with at least one decimal
    (`185.0`), otherwise `d.dddE<exp>` (`1.0E-4`, `1.25E7`)."""
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if number == 0:
        return "-0.0" if math.copysign(1.0, number) < 0 else "0.0"
    magnitude = abs(number)
    if 1e-3 <= magnitude < 1e7:
        return repr(number)  # repr is plain here and already has its ".0"
    _, digits, exponent = Decimal(repr(magnitude)).normalize().as_tuple()
    if len(digits) == 1:  # JDK 19: of the one- and two-digit decimals that read back, the closest
        two = f"{magnitude:.1e}"
        if float(two) == magnitude:
            _, digits, exponent = Decimal(two).normalize().as_tuple()
    power = exponent + len(digits) - 1
    text = str(digits[0]) + "." + ("".join(map(str, digits[1:])) or "0") + f"E{power}"
    return "-" + text if number < 0 else text


def encode_frame(fields: list[Field] | tuple[Field, ...]) -> bytes:
    """A complete frame: 4-byte big-endian length, then each field NUL-terminated."""
    payload = "".join(encode_field(f) + "\0" for f in fields).encode("ascii")
    if len(payload) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(payload)} bytes exceeds the 16 MiB limit")
    return struct.pack(">I", len(payload)) + payload


def decode_payload(payload: bytes) -> list[str]:
    """Fields of one frame's payload; the empty string after the final NUL is dropped."""
    fields = payload.decode("latin-1").split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    return fields


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """The payload of the next frame; raises IncompleteReadError at EOF."""
    header = await reader.readexactly(4)
    (size,) = struct.unpack(">I", header)
    if size > MAX_FRAME:
        raise ProtocolError(f"frame length {size} exceeds the 16 MiB limit")
    return await reader.readexactly(size)


async def read_handshake(reader: asyncio.StreamReader) -> tuple[int, int]:
    """Read `API\\0` + `v<min>..<max>[ options]` and return (min, max).

    Connection options such as `+PACEAPI` after the space are ignored.
    """
    if await reader.readexactly(4) != PREAMBLE:
        raise ProtocolError("connection did not start with API\\0")
    text = (await read_frame(reader)).decode("ascii", "replace").strip("\0").strip()
    version_range = text.split(" ", 1)[0]
    if not version_range.startswith("v"):
        raise ProtocolError(f"bad version range {text!r}")
    low, _, high = version_range[1:].partition("..")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise ProtocolError(f"bad version range {text!r}") from None


class FieldReader:
    """Sequential reader over the fields of one inbound message, with typed getters."""

    def __init__(self, fields: list[str]) -> None:
        self._fields = fields
        self._pos = 0

    def str(self) -> str:
        if self._pos >= len(self._fields):
            raise ProtocolError(f"message {self._fields[:1]} ended after {self._pos} fields")
        value = self._fields[self._pos]
        self._pos += 1
        return value

    def int(self, default: int = 0) -> int:
        text = self.str()
        if text == "":
            return default
        try:
            return int(text)
        except ValueError:
            raise ProtocolError(f"expected an integer, got {text!r}") from None

    def float(self) -> float:
        text = self.str()
        return float(text) if text else 0.0

    def bool(self) -> bool:
        return self.int() != 0

    def remaining(self) -> int:
        return len(self._fields) - self._pos
