"""Helpers for the WebSocket tests: a raw-socket RFC 6455 client (for the conformance cases a
real client would never send) and small wrappers around Debian's python3-websockets."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import struct
import time

from harness import HTTP_TIMEOUT, Response, _parse_head

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def handshake_request(port: int, path: str = "/ws", protocol: str | None = "pubsub",
                      key: str | None = None, version: str = "13",
                      extra: dict | None = None) -> tuple[bytes, str]:
    key = key or base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
             f"Sec-WebSocket-Version: {version}"]
    if protocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), key


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = True,
          rsv: int = 0, length_override: int | None = None) -> bytes:
    """A client frame (masked unless told otherwise)."""
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload) if length_override is None else length_override
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def text(obj) -> bytes:
    return frame(OP_TEXT, json.dumps(obj).encode())


class RawWS:
    """One WebSocket over a plain socket; frames from the server are parsed strictly."""

    def __init__(self, port: int, first_bytes: bytes = b"", **kw):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT)
        req, key = handshake_request(port, **kw)
        self.sock.sendall(req + first_bytes)
        self.buf = b""
        self.eof = False
        deadline = time.monotonic() + HTTP_TIMEOUT
        while b"\r\n\r\n" not in self.buf:
            assert self._recv(deadline), f"no handshake answer: {self.buf!r}"
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status, _, headers = _parse_head(head)
        self.response = Response(status, "", headers, b"")
        assert status == 101, f"handshake: {status} {headers} {self.buf!r}"
        assert self.response.header("Sec-WebSocket-Accept") == accept_for(key)
        assert self.response.header("Sec-WebSocket-Protocol") == "pubsub"

    def _recv(self, deadline: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0 or self.eof:
            return False
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            self.eof = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_op(self, obj) -> None:
        self.send(text(obj))

    def recv_frame(self, timeout: float = HTTP_TIMEOUT):
        """(fin, opcode, payload) of the next server frame, or None (timeout or EOF)."""
        deadline = time.monotonic() + timeout
        while True:
            f = self._parse()
            if f is not None:
                return f
            if not self._recv(deadline):
                return None

    def _parse(self):
        b = self.buf
        if len(b) < 2:
            return None
        b0, b1 = b[0], b[1]
        assert b1 & 0x80 == 0, "server frames must not be masked"
        assert b0 & 0x70 == 0, "server frames must not set RSV bits"
        n = b1 & 0x7F
        at = 2
        if n == 126:
            if len(b) < 4:
                return None
            n = struct.unpack("!H", b[2:4])[0]
            at = 4
        elif n == 127:
            if len(b) < 10:
                return None
            n = struct.unpack("!Q", b[2:10])[0]
            at = 10
        if len(b) < at + n:
            return None
        self.buf = b[at + n:]
        return bool(b0 & 0x80), b0 & 0x0F, b[at:at + n]

    def recv_op(self, timeout: float = HTTP_TIMEOUT) -> dict:
        """The next text message as JSON (control frames other than close are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            assert f is not None, f"no message within {timeout} s (eof={self.eof})"
            fin, op, payload = f
            if op == OP_TEXT:
                assert fin, "server messages are not fragmented"
                return json.loads(payload.decode("utf-8"))
            assert op != OP_CLOSE, f"closed: {close_code(payload)}"

    def wait_close(self, timeout: float = HTTP_TIMEOUT):
        """Frames until a close frame: (close code or None if none came, frames before it)."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if f is None:
                return None, seen
            if f[1] == OP_CLOSE:
                return close_code(f[2]), seen
            seen.append(f)

    def wait_eof(self, timeout: float = HTTP_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        while not self.eof:
            if not self._recv(deadline) and not self.eof:
                return False
        return True

    def close(self) -> None:
        self.sock.close()


def close_code(payload: bytes):
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


# ---- python3-websockets ----------------------------------------------------------------------

def ws_url(broker) -> str:
    return f"ws://127.0.0.1:{broker.port}/ws"


def run(coro, timeout: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def recv_op(ws, timeout: float = HTTP_TIMEOUT) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws, pred, timeout: float = HTTP_TIMEOUT) -> list[dict]:
    """Messages until one satisfies pred (included)."""
    got = []
    deadline = time.monotonic() + timeout
    while True:
        op = await recv_op(ws, max(0.01, deadline - time.monotonic()))
        got.append(op)
        if pred(op):
            return got


async def sub(ws, topic: str, since=None, ref=None) -> dict:
    msg = {"op": "sub", "topic": topic}
    if since is not None:
        msg["since"] = since
    if ref is not None:
        msg["ref"] = ref
    await ws.send(json.dumps(msg))
    op = await recv_op(ws)
    assert op["op"] == "subscribed" and op["topic"] == topic, op
    return op
