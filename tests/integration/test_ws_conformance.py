"""RFC 6455 conformance of the WebSocket endpoint, with a raw socket: frames a real client
would never send get the right close code, fragments and interleaved control frames work, the
closing handshake echoes the status, floods stay bounded, and the broker keeps serving."""

from __future__ import annotations

import json
import struct

import pytest

from ws_helpers import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawWS, frame,
                        text)

SUB = json.dumps({"op": "sub", "topic": "conf"}).encode()


def expect_close(ws: RawWS, code: int, timeout: float = 5):
    got, frames = ws.wait_close(timeout)
    assert got == code, f"expected close {code}, got {got} after {frames}"
    # We answer with our close frame: the server then ends the TCP connection.
    ws.send(frame(OP_CLOSE, struct.pack("!H", 1000)))
    assert ws.wait_eof(3), "server did not close the TCP connection after the closing handshake"
    ws.close()
    return frames


@pytest.mark.parametrize("bad,code", [
    (frame(OP_TEXT, SUB, mask=False), 1002),
    (frame(OP_TEXT, b"\xff\xfe not utf-8"), 1007),
    (frame(OP_TEXT, SUB, rsv=4), 1002),
    (frame(OP_TEXT, SUB, rsv=1), 1002),
    (frame(0x3, b"x"), 1002),
    (frame(0xB, b""), 1002),
    (frame(OP_CONT, b"no message to continue"), 1002),
    (frame(OP_BINARY, b"\x00\x01"), 1003),
    (frame(OP_PING, b"x" * 126), 1002),
    (frame(OP_PING, b"x", fin=False), 1002),
    (frame(OP_CLOSE, struct.pack("!H", 1005)), 1002),
], ids=["unmasked", "invalid-utf8", "rsv1", "rsv3", "opcode-3", "opcode-11", "lone-continuation",
        "binary", "control-over-125", "fragmented-control", "close-code-1005"])
def test_bad_frame_gets_close_code(broker, bad, code):
    ws = RawWS(broker.port)
    ws.send(bad)
    expect_close(ws, code)
    broker.assert_healthy()


def test_invalid_utf8_split_across_fragments_is_1007(broker):
    ws = RawWS(broker.port)
    # "é" is C3 A9: a valid lead byte at the end of one fragment, an invalid byte after it.
    ws.send(frame(OP_TEXT, b'{"op":"\xc3', fin=False) + frame(OP_CONT, b"\x41\"}"))
    expect_close(ws, 1007)


def test_oversized_message_is_1009(broker_factory):
    b = broker_factory("--ws-max-message", "1000")
    ws = RawWS(b.port)
    ws.send(frame(OP_TEXT, b"x" * 1001))
    expect_close(ws, 1009)
    ws = RawWS(b.port)  # the same limit holds for a message in many fragments
    ws.send(frame(OP_TEXT, b"x" * 400, fin=False) + frame(OP_CONT, b"x" * 400, fin=False) +
            frame(OP_CONT, b"x" * 400))
    expect_close(ws, 1009)
    ws = RawWS(b.port)  # a header announcing a huge frame is refused before any payload
    # (wslay checks the length when the first payload bytes arrive, before buffering any.)
    ws.send(frame(OP_TEXT, b"", length_override=1 << 40)[:14] + b"xxxx")
    expect_close(ws, 1009)
    b.assert_healthy()


def test_fragmented_message_reassembled_with_ping_interleaved(broker):
    ws = RawWS(broker.port)
    ws.send(frame(OP_TEXT, SUB[:5], fin=False))
    ws.send(frame(OP_PING, b"mid"))
    ws.send(frame(OP_CONT, SUB[5:12], fin=False))
    ws.send(frame(OP_CONT, b"", fin=False))
    ws.send(frame(OP_CONT, SUB[12:]))
    # The pong and the answer to the reassembled message, in either order.
    frames = [ws.recv_frame(), ws.recv_frame()]
    assert None not in frames, frames
    assert sorted(op for _, op, _ in frames) == [OP_TEXT, OP_PONG], frames
    for fin, op, payload in frames:
        if op == OP_PONG:
            assert payload == b"mid"
        else:
            answer = json.loads(payload)
            assert (answer["op"], answer["topic"]) == ("subscribed", "conf"), answer
    ws.close()


def test_client_ping_gets_pong_with_the_same_payload(broker):
    ws = RawWS(broker.port)
    ws.send(frame(OP_PING, b"hello"))
    assert ws.recv_frame()[1:] == (OP_PONG, b"hello")
    ws.close()


@pytest.mark.parametrize("code", [1000, 1001, 3000, 4001])
def test_close_handshake_echoes_status_and_server_closes_tcp(broker, code):
    ws = RawWS(broker.port)
    ws.send_op({"op": "sub", "topic": "c"})
    ws.recv_op()
    ws.send(frame(OP_CLOSE, struct.pack("!H", code) + b"bye"))
    got, frames = ws.wait_close()
    assert got == code, frames
    assert ws.wait_eof(3)
    ws.close()


def test_close_without_status_is_answered_with_an_empty_close(broker):
    ws = RawWS(broker.port)
    ws.send(frame(OP_CLOSE, b""))
    fin, op, payload = ws.recv_frame()
    assert (op, payload) == (OP_CLOSE, b"")
    assert ws.wait_eof(3)
    ws.close()


def test_ping_flood_is_bounded_and_closed_with_1008(broker):
    ws = RawWS(broker.port)
    ws.send(b"".join(frame(OP_PING, b"p") for _ in range(500)))
    frames = expect_close(ws, 1008)
    # Pongs not yet sent when the close is queued are dropped (RFC 6455 section 5.5.1: nothing
    # but the close after it).
    pongs = [f for f in frames if f[1] == OP_PONG]
    assert len(pongs) < 100, len(pongs)
    broker.assert_healthy()


def test_flood_of_tiny_fragments_is_closed_with_1008(broker):
    ws = RawWS(broker.port)
    data = frame(OP_TEXT, b"[", fin=False) + b"".join(
        frame(OP_CONT, b" ", fin=False) for _ in range(5000))
    try:
        ws.send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    got, _ = ws.wait_close()
    assert got == 1008
    ws.close()
    broker.assert_healthy()


def test_flood_of_bad_messages_keeps_memory_bounded_and_others_served(broker):
    ws = RawWS(broker.port)
    burst = text({"op": "nope"}) * 2000
    for _ in range(5):
        ws.send(burst)
    errors = 0
    while errors < 10000:
        op = ws.recv_op(timeout=10)
        assert op["op"] == "error"
        errors += 1
    other = RawWS(broker.port)
    other.send(frame(OP_TEXT, SUB))
    assert other.recv_op()["op"] == "subscribed"
    other.close()
    ws.close()
    broker.assert_healthy()
