"""Wire-level behaviour of the simulated gateway, driven over a raw loopback socket."""

from __future__ import annotations

import socket
import struct

import pytest

from harvester.sim.wire.framing import FieldReader, ProtocolError, decode_payload, encode_frame, format_number


class RawClient:
    """The smallest TWS API client: enough to see exactly which frames the server sends."""

    def __init__(self, port: int, version_range: str = "v157..176") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        payload = version_range.encode()
        self.sock.sendall(b"API\0" + struct.pack(">I", len(payload)) + payload)

    def send(self, *fields) -> None:
        self.sock.sendall(encode_frame(list(fields)))

    def frame(self) -> list[str]:
        size = struct.unpack(">I", self._exactly(4))[0]
        return decode_payload(self._exactly(size))

    def at_eof(self) -> bool:
        return self.sock.recv(1) == b""

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(sim_gateway):
    clients = []

    def connect(version_range: str = "v157..176") -> RawClient:
        clients.append(RawClient(sim_gateway.port, version_range))
        return clients[-1]

    yield connect
    for client in clients:
        client.close()


def test_frames_round_trip_and_escape_non_ascii():
    frame = encode_frame([17, "Société", 1.5, True, None, -1])
    assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4
    assert decode_payload(frame[4:]) == ["17", "Soci\\u00e9t\\u00e9", "1.5", "1", "", "-1"]
    assert format_number(100.0) == "100" and format_number(1e-05) == "0.00001"


def test_field_reader_names_the_missing_field():
    reader = FieldReader(["20", "x"])
    assert reader.int() == 20
    with pytest.raises(ProtocolError, match="expected an integer"):
        reader.int()
    with pytest.raises(ProtocolError, match="ended after"):
        reader.str()


def test_handshake_then_nothing_until_start_api_then_the_greeting(raw, sim_gateway):
    client = raw()
    assert client.frame()[0] == "176"
    client.send(71, 2, 5, "")  # startApi: the very next frame must be the greeting
    assert client.frame() == ["15", "1", "DUSIM0001"]
    assert client.frame() == ["9", "1", "1"]
    notices = [client.frame() for _ in range(3)]
    assert [n[3] for n in notices] == ["2104", "2106", "2158"]
    assert all(len(n) == 6 and n[:3] == ["4", "2", "-1"] and n[5] == "" for n in notices)


def test_handshake_reply_has_exactly_two_fields(raw):
    reply = raw("v100..226 +PACEAPI").frame()
    assert len(reply) == 2 and reply[0] == "176"


def test_client_whose_range_excludes_176_is_refused(raw):
    client = raw("v100..150")
    with pytest.raises(EOFError):
        client.frame()


def test_duplicate_client_id_gets_326_and_a_closed_socket(raw):
    first, second = raw(), raw()
    first.frame(), second.frame()
    first.send(71, 2, 9, "")
    assert first.frame()[0] == "15"
    second.send(71, 2, 9, "")
    assert second.frame()[:4] == ["4", "2", "-1", "326"]
    assert second.at_eof()


def test_start_up_sync_replies(raw):
    client = raw()
    client.frame()
    client.send(71, 2, 3, "")
    for _ in range(5):
        client.frame()
    client.send(61, 1)
    assert client.frame() == ["62", "1"]
    client.send(99, 0)
    assert client.frame() == ["102"]
    client.send(7, 3, 42, 0, "", "", "", "", "", "")
    assert client.frame() == ["55", "1", "42"]
    client.send(76, 1, 43, "DUSIM0001", "", 0)
    assert client.frame() == ["74", "1", "43"]
    client.send(12345)  # an unknown message is ignored, the connection carries on
    client.send(49, 1)
    reply = client.frame()
    assert reply[:2] == ["49", "1"] and len(reply) == 3


def test_current_time_follows_the_settable_clock(raw, sim_gateway):
    client = raw()
    client.frame()
    client.send(71, 2, 4, "")
    for _ in range(5):
        client.frame()
    sim_gateway.clock.set("2030-01-02T03:04:05Z")
    client.send(49, 1)
    assert abs(int(client.frame()[2]) - 1893553445) <= 2
