"""RFC 8441: the pubsub WebSocket over HTTP/2 streams (extended CONNECT), driven by python-h2
over h2c with prior knowledge and over TLS (ALPN h2): the handshake and its refusals, the same
ids as an SSE subscriber on HTTP/1.1, WebSockets and SSE multiplexed on one connection,
RST_STREAM and protocol errors confined to one stream, flow control, shutdown."""

from __future__ import annotations

import json
import signal
import struct
import time

import h2.settings
import pytest

from hpack import Decoder

from h2_client import (CANCEL, DATA, END_HEADERS, END_STREAM, HEADERS, NO_ERROR, PREFACE,
                       RST_STREAM, H2Client, RawH2, Stream, client_tls_context, frame,
                       goaway_code, https_port, make_cert, settings_frame)
from harness import metric_values, open_subscriber
from ws_helpers import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, close_code
from ws_helpers import frame as ws_frame
from ws_helpers import text as ws_text

ENABLE_CONNECT_PROTOCOL = h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL


def parse_ws_frame(buf: bytes):
    """(fin, opcode, payload, bytes used) of the first complete server frame, or None."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    assert b1 & 0x80 == 0, "server frames must not be masked"
    assert b0 & 0x70 == 0, "server frames must not set RSV bits"
    n, at = b1 & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, at = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, at = struct.unpack("!Q", buf[2:10])[0], 10
    if len(buf) < at + n:
        return None
    return bool(b0 & 0x80), b0 & 0x0F, bytes(buf[at:at + n]), at + n


class H2WebSocket:
    """One WebSocket on one stream of an H2Client (RFC 8441, 4-5). Test thread only."""

    def __init__(self, c: H2Client, path: str = "/ws", protocol: str | None = "pubsub",
                 headers: dict | None = None, ws_protocol: str = "websocket",
                 version: str = "13", expect: int | None = 200):
        self.c = c
        c.pump_until(lambda: c.remote_settings, 5, "server SETTINGS")
        assert c.conn.remote_settings[ENABLE_CONNECT_PROTOCOL] == 1
        sid = c.conn.get_next_available_stream_id()
        hdrs = [(":method", "CONNECT"), (":protocol", ws_protocol), (":scheme", c.scheme),
                (":path", path), (":authority", c.authority), ("sec-websocket-version", version)]
        if protocol is not None:
            hdrs.append(("sec-websocket-protocol", protocol))
        hdrs += [(k.lower(), str(v)) for k, v in (headers or {}).items()]
        self.st = c.streams[sid] = Stream(sid)
        c.conn.send_headers(sid, hdrs, end_stream=False)
        c.flush()
        self.id = sid
        self.pos = 0  # bytes of st.data parsed
        self.backlog: list[dict] = []  # messages received, not taken yet
        c.pump_until(lambda: self.st.status is not None or self.st.done, 5, "the CONNECT answer")
        if expect is not None:
            assert self.st.status == expect, self.st

    # -- output ---------------------------------------------------------------------------

    def send(self, data: bytes, end_stream: bool = False) -> None:
        self.c.conn.send_data(self.id, data, end_stream=end_stream)
        self.c.flush()

    def send_op(self, obj) -> None:
        self.send(ws_text(obj))

    # -- input ----------------------------------------------------------------------------

    def recv_frame(self, timeout: float = 5.0):
        """(fin, opcode, payload) of the next server frame, or None (timeout, stream end)."""
        deadline = time.monotonic() + timeout
        while True:
            f = parse_ws_frame(self.st.data[self.pos:])
            if f is not None:
                self.pos += f[3]
                return f[:3]
            if self.st.done or time.monotonic() >= deadline:
                return None
            self.c.pump(min(0.2, max(0.001, deadline - time.monotonic())))

    def recv_op(self, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            assert f is not None, f"no message within {timeout} s: {self.st}"
            fin, op, payload = f
            if op == OP_TEXT:
                assert fin
                return json.loads(payload.decode("utf-8"))
            assert op != OP_CLOSE, f"closed: {close_code(payload)}"

    def take(self, pred, timeout: float = 5.0) -> dict:
        """The first message satisfying pred, in arrival order; the others stay for later."""
        deadline = time.monotonic() + timeout
        i = 0
        while True:
            while i < len(self.backlog):
                if pred(self.backlog[i]):
                    return self.backlog.pop(i)
                i += 1
            self.backlog.append(self.recv_op(max(0.01, deadline - time.monotonic())))

    def wait_close(self, timeout: float = 5.0):
        """The status code of the server's close frame (None: no close frame came)."""
        deadline = time.monotonic() + timeout
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if f is None:
                return None
            if f[1] == OP_CLOSE:
                return close_code(f[2])

    def wait_done(self, timeout: float = 5.0) -> None:
        self.c.pump_until(lambda: self.st.done, timeout, f"the end of stream {self.id}")


def metrics(c: H2Client) -> dict:
    return metric_values(c.get("/metrics").data.decode())


def sub(ws: H2WebSocket, topic: str, **extra) -> dict:
    ws.send_op({"op": "sub", "topic": topic, **extra})
    return ws.take(lambda o: o["op"] == "subscribed")


def publish(ws: H2WebSocket, topic: str, data: str, ref) -> str:
    ws.send_op({"op": "pub", "topic": topic, "data": data, "ref": ref})
    op = ws.take(lambda o: o["op"] in ("ack", "error") and o.get("ref") == ref)
    assert op["op"] == "ack", op
    return op["id"]


@pytest.fixture
def tls_broker(broker_factory, workdir):
    cert, key = make_cert(workdir)
    b = broker_factory("--tls-listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key)
    b.tls_port = https_port(b)
    b.cafile = cert
    return b


def connect(b, mode: str, **kw) -> H2Client:
    if mode == "tls":
        c = H2Client(b.tls_port, tls=client_tls_context(b.cafile, ["h2"]), **kw)
        assert c.alpn == "h2"
        return c
    return H2Client(b.port, **kw)


# ---------------------------------------------------------------------------------------------
# Handshake, and the same ids as HTTP/1.1 SSE


@pytest.mark.parametrize("mode", ["h2c", "tls"])
def test_extended_connect_pub_sub_same_ids_as_sse_on_http1(tls_broker, mode):
    b = tls_broker
    c = connect(b, mode)
    sse = open_subscriber(b, "sse", "h2ws/a")
    try:
        ws = H2WebSocket(c)
        assert ws.st.header("sec-websocket-protocol") == "pubsub"
        assert ws.st.header("sec-websocket-accept") is None  # none on HTTP/2 (RFC 8441, 5)
        assert not ws.st.done
        m = metrics(c)
        assert m["herald_ws_h2_streams"] == 1 and m["herald_ws_h2_streams_total"] == 1
        subscribed = sub(ws, "h2ws/a", ref="s")
        assert subscribed["ref"] == "s"
        ack = publish(ws, "h2ws/a", f"over {mode}", 1)
        ev = ws.take(lambda o: o["op"] == "event")
        assert (ev["id"], ev["topic"], ev["data"]) == (ack, "h2ws/a", f"over {mode}")
        http1_id = b.publish("h2ws/a", "from HTTP/1.1")
        ev2 = ws.take(lambda o: o["op"] == "event")
        assert (ev2["id"], ev2["data"]) == (http1_id, "from HTTP/1.1")
        assert [(e["id"], e["data"]) for e in sse.events(2)] == \
            [(ack, f"over {mode}"), (http1_id, "from HTTP/1.1")]
        # A client close: echoed, then END_STREAM both ways (RFC 8441, 5).
        ws.send(ws_frame(OP_CLOSE, struct.pack("!H", 1000)))
        assert ws.wait_close() == 1000
        c.pump_until(lambda: ws.st.ended, 5, "the server's END_STREAM")
        ws.send(b"", end_stream=True)
        deadline = time.monotonic() + 5
        while metrics(c)["herald_ws_h2_streams"] != 0:
            assert time.monotonic() < deadline, "the WebSocket stream did not close"
            time.sleep(0.05)
    finally:
        sse.close()
        c.close()


def test_websocket_over_h2_answers_pings_and_survives_the_request_timeout(broker_factory):
    b = broker_factory("--request-timeout", "1")
    c = H2Client(b.port)
    try:
        ws = H2WebSocket(c)
        sub(ws, "h2ws/t")
        time.sleep(2.5)  # past --request-timeout: an open WebSocket has no request timeout
        ws.send(ws_frame(OP_PING, b"hi"))
        f = ws.recv_frame()
        assert f is not None and f[1:] == (OP_PONG, b"hi"), f
        assert not ws.st.done
        ack = publish(ws, "h2ws/t", "still here", "r")
        assert ws.take(lambda o: o["op"] == "event")["id"] == ack
    finally:
        c.close()


def test_refusals_of_bad_extended_connects(broker):
    c = H2Client(broker.port)
    try:
        cases = [
            ({"path": "/nope"}, 404),
            ({"ws_protocol": "chat-over-h2"}, 501),
            ({"protocol": None}, 400),
            ({"protocol": "chat"}, 400),
            ({"version": "12"}, 426),
            ({"headers": {"origin": "http://evil.example"}}, 403),
        ]
        for kw, status in cases:
            ws = H2WebSocket(c, expect=None, **kw)
            ws.wait_done()
            assert ws.st.status == status, (kw, ws.st)
            assert "error" in ws.st.json(), ws.st
        # The same origin as :authority is allowed.
        ok = H2WebSocket(c, headers={"origin": f"http://{c.authority}"})
        sub(ok, "h2ws/origin")
        assert metrics(c)["herald_ws_h2_streams"] == 1
    finally:
        c.close()


def test_plain_connect_gets_405(broker):
    # A CONNECT without :protocol carries only :method and :authority (RFC 9113, 8.5), which
    # python-h2 will not send: raw frames.
    r = RawH2(broker.port)
    try:
        block = r.encoder.encode([(":method", "CONNECT"), (":authority", "example.com:443")])
        r.send(PREFACE + settings_frame() + frame(HEADERS, END_HEADERS, 1, block))
        frames = r.read_frames(5, until=lambda fs: any(f[2] == 1 and f[1] & END_STREAM
                                                       for f in fs if f[0] in (DATA, HEADERS)))
        heads = [f for f in frames if f[0] == HEADERS and f[2] == 1]
        assert heads, frames
        status = dict(Decoder().decode(heads[0][3]))[":status"]
        assert status == "405", frames
    finally:
        r.close()


# ---------------------------------------------------------------------------------------------
# Multiplexing: streams are independent


@pytest.mark.parametrize("mode", ["h2c", "tls"])
def test_two_websockets_and_sse_share_one_connection(tls_broker, mode):
    b = tls_broker
    c = connect(b, mode)
    try:
        w1, w2 = H2WebSocket(c), H2WebSocket(c)
        sse = c.subscribe("h2ws/m")
        c.pump_until(lambda: sse.status == 200, 5, "the SSE head")
        sub(w1, "h2ws/m")
        ack = publish(w2, "h2ws/m", "one connection", "p")
        ev = w1.take(lambda o: o["op"] == "event")
        c.pump_until(lambda: sse.events(), 5, "the SSE event")
        assert ev["id"] == ack == sse.events()[0]["id"]
        m = metrics(c)
        assert m["herald_ws_h2_streams"] == 2 and m["herald_h2_connections"] == 1
    finally:
        c.close()


def test_rst_stream_of_one_websocket_leaves_the_others(broker):
    c = H2Client(broker.port)
    try:
        w1, w2 = H2WebSocket(c), H2WebSocket(c)
        sse = c.subscribe("h2ws/r")
        c.pump_until(lambda: sse.status == 200, 5, "the SSE head")
        sub(w1, "h2ws/r")
        sub(w2, "h2ws/r")
        c.reset(w1.id, CANCEL)
        deadline = time.monotonic() + 5
        while metrics(c)["herald_ws_h2_streams"] != 1:
            assert time.monotonic() < deadline, "the reset WebSocket is still open"
            time.sleep(0.05)
        ack = publish(w2, "h2ws/r", "after the reset", 1)
        assert w2.take(lambda o: o["op"] == "event")["id"] == ack
        c.pump_until(lambda: sse.events(), 5, "the SSE event")
        assert sse.events()[0]["id"] == ack
        assert not w2.st.done and not sse.done
    finally:
        c.close()


def test_unmasked_frame_closes_only_its_stream_with_1002(broker):
    c = H2Client(broker.port)
    try:
        bad, good = H2WebSocket(c), H2WebSocket(c)
        sse = c.subscribe("h2ws/bad")
        c.pump_until(lambda: sse.status == 200, 5, "the SSE head")
        sub(good, "h2ws/bad")
        bad.send(ws_frame(OP_TEXT, b'{"op":"sub","topic":"x"}', mask=False))
        assert bad.wait_close() == 1002
        # Our close frame ends the handshake; the server ends the stream.
        bad.send(ws_frame(OP_CLOSE, struct.pack("!H", 1002)))
        bad.wait_done()
        assert bad.st.ended or bad.st.reset is not None
        ack = publish(good, "h2ws/bad", "unaffected", 2)
        assert good.take(lambda o: o["op"] == "event")["id"] == ack
        c.pump_until(lambda: sse.events(), 5, "the SSE event")
        assert sse.events()[0]["id"] == ack
        # Reserved bits on another stream: 1002 as well, the good one still goes on.
        rsv = H2WebSocket(c)
        rsv.send(ws_frame(OP_TEXT, b"{}", rsv=4))
        assert rsv.wait_close() == 1002
        ack2 = publish(good, "h2ws/bad", "still unaffected", 3)
        assert good.take(lambda o: o["op"] == "event")["id"] == ack2
    finally:
        c.close()


def test_slow_websocket_stream_falls_back_to_history_and_misses_nothing(broker_factory):
    # The WebSocket's stream window stays closed: its events wait in its own queue up to
    # --subscriber-queue-bytes, then its subscription reads history at its pace; an SSE stream
    # on the same connection keeps going meanwhile.
    b = broker_factory("--subscriber-queue-bytes", "32768")
    c = H2Client(b.port, ack_data=False)
    try:
        ws = H2WebSocket(c)
        sse = c.subscribe("h2ws/slow")
        c.pump_until(lambda: sse.status == 200, 5, "the SSE head")
        ws.send_op({"op": "sub", "topic": "h2ws/slow"})
        c.pump_until(lambda: ws.id in c.unacked, 5, "subscribed")
        payload = "y" * 8000
        ids = [b.publish("h2ws/slow", f"{i}:{payload}") for i in range(30)]
        while len(sse.events()) < 30:
            c.pump_until(lambda: sse.id in c.unacked, 5, "SSE data")
            c.acknowledge(sse.id)
        assert [e["id"] for e in sse.events()] == ids
        deadline = time.monotonic() + 20
        events = []
        while len(events) < 30 and time.monotonic() < deadline:
            c.acknowledge(ws.id)
            c.pump(0.2)
            while True:
                f = parse_ws_frame(ws.st.data[ws.pos:])
                if f is None:
                    break
                ws.pos += f[3]
                op = json.loads(f[2])
                if op["op"] == "event":
                    events.append(op["id"])
        assert events == ids
        assert metric_values(b.get("/metrics").body.decode())[
            "herald_subscriber_catchups_total"] >= 1
    finally:
        c.close()


def test_websocket_input_is_bounded_by_the_stream_window(broker_factory):
    # A client that publishes without reading: once the server's queue for it is full it stops
    # reading that stream, so the stream's window closes and python-h2 cannot send more; the
    # connection's other streams are unaffected.
    b = broker_factory("--subscriber-queue-bytes", "16384")
    c = H2Client(b.port, ack_data=False)
    try:
        ws = H2WebSocket(c)
        big = "z" * 2000
        sent = 0
        blocked = False
        for i in range(2000):
            msg = ws_text({"op": "pub", "topic": "h2ws/in", "data": big, "ref": i})
            if c.conn.local_flow_control_window(ws.id) < len(msg):
                c.pump(0.3)
                if c.conn.local_flow_control_window(ws.id) < len(msg):
                    blocked = True
                    break
            ws.send(msg)
            sent += 1
        assert blocked, "the stream window never closed"
        assert sent < 2000
        # Another stream of the same connection still works.
        h = c.get("/healthz")
        assert h.status == 200
        # Reading again lets the rest through: every pub is acked.
        acks = 0
        deadline = time.monotonic() + 20
        while acks < sent and time.monotonic() < deadline:
            c.acknowledge(ws.id)
            c.pump(0.2)
            while True:
                f = parse_ws_frame(ws.st.data[ws.pos:])
                if f is None:
                    break
                ws.pos += f[3]
                if f[1] == OP_TEXT and json.loads(f[2])["op"] == "ack":
                    acks += 1
        assert acks == sent
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------
# Shutdown


def test_sigterm_closes_websocket_streams_with_1001(broker_factory):
    # Raw frames: python-h2 refuses frames that follow a GOAWAY.
    b = broker_factory()
    r = RawH2(b.port)
    try:
        block = r.encoder.encode([(":method", "CONNECT"), (":protocol", "websocket"),
                                  (":scheme", "http"), (":path", "/ws"),
                                  (":authority", r.authority), ("sec-websocket-version", "13"),
                                  ("sec-websocket-protocol", "pubsub")])
        r.send(PREFACE + settings_frame() + frame(HEADERS, END_HEADERS, 1, block))
        r.read_frames(5, until=lambda fs: any(f[0] == HEADERS and f[2] == 1 for f in fs))
        b.send_signal(signal.SIGTERM)
        frames = r.read_frames(5, until=lambda fs: any(
            f[0] == DATA and f[2] == 1 and parse_ws_frame(b"".join(
                g[3] for g in fs if g[0] == DATA and g[2] == 1)) for f in fs))
        data = b"".join(f[3] for f in frames if f[0] == DATA and f[2] == 1)
        assert goaway_code(frames) == NO_ERROR, frames
        f = parse_ws_frame(data)
        assert f is not None and f[1] == OP_CLOSE and close_code(f[2]) == 1001, frames
        # The client answers the close and ends its side: the server ends the stream cleanly.
        r.send(frame(DATA, END_STREAM, 1, ws_frame(OP_CLOSE, struct.pack("!H", 1001))))
        more = r.read_frames(5, until=lambda fs: r.eof)
        ends = [f for f in frames + more if f[2] == 1 and f[0] == DATA and f[1] & END_STREAM]
        assert ends, f"stream 1 did not end with END_STREAM: {frames + more}"
        assert not [f for f in frames + more if f[0] == RST_STREAM], frames + more
        assert r.eof, "the connection was not closed"
        assert b.wait_exit(5) == 0
    finally:
        r.close()
