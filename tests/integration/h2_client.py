"""HTTP/2 helpers for Herald's integration tests: a python-h2 client over a raw socket (h2c with
prior knowledge, or TLS with ALPN), raw frame writing for abusive clients, self-signed
certificates, and the broker's https port. Every wait is bounded by a timeout."""

from __future__ import annotations

import json
import re
import socket
import ssl
import struct
import subprocess
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hpack import Encoder

HTTPS_RE = re.compile(r"listening on https://(\[[^\]]*\]|[^\s/:]+):(\d+)")
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and flags (RFC 9113, 6).
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM = (
    0x0, 0x1, 0x2, 0x7, 0x8, 0xb)


def make_cert(directory: str) -> tuple[str, str]:
    """A self-signed certificate for localhost / 127.0.0.1 (openssl req -x509); (cert, key)."""
    cert, key = f"{directory}/cert.pem", f"{directory}/key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    return cert, key


def https_port(broker, timeout: float = 5.0) -> int:
    """The port of the broker's 'listening on https://' line (printed with --tls-listen)."""
    if broker.tls_port is not None:
        return broker.tls_port
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for _, line in list(broker.lines):
            m = HTTPS_RE.search(line)
            if m:
                return int(m.group(2))
        time.sleep(0.02)
    raise AssertionError("no 'listening on https://' line:\n" + broker.output_tail())


def client_tls_context(cafile: str, alpn: list[str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(alpn)
    return ctx


def sse_events(data: bytes) -> list[dict]:
    """Complete SSE events in `data` as {"id", "type", "data"} (comments and retry: skipped)."""
    out = []
    text = data.decode("utf-8")
    blocks = re.split(r"\r\n\r\n|\n\n|\r\r", text)
    blocks.pop()  # incomplete (or empty) tail
    for block in blocks:
        ev = {"id": None, "type": None, "data": None}
        for line in re.split(r"\r\n|\n|\r", block):
            if not line or line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                ev["data"] = value if ev["data"] is None else ev["data"] + "\n" + value
            elif field in ("id", "event"):
                ev["id" if field == "id" else "type"] = value
        if ev["data"] is not None:
            out.append(ev)
    return out


class Stream:
    """What one stream received."""

    def __init__(self, stream_id: int):
        self.id = stream_id
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.data = bytearray()
        self.ended = False  # END_STREAM received
        self.reset: int | None = None  # RST_STREAM error code (either side)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None

    def json(self):
        return json.loads(bytes(self.data).decode("utf-8"))

    def events(self) -> list[dict]:
        return sse_events(bytes(self.data))

    def ndjson(self) -> list[dict]:
        lines = bytes(self.data).split(b"\n")
        lines.pop()
        return [json.loads(l) for l in lines if l.strip()]

    def __repr__(self) -> str:
        return (f"<Stream {self.id} status={self.status} ended={self.ended} reset={self.reset} "
                f"{bytes(self.data[:200])!r}>")


class H2Client:
    """One HTTP/2 connection driven by python-h2 over a blocking socket. h2c with prior
    knowledge by default; TLS with `tls=` (an ssl.SSLContext offering h2). Test thread only."""

    def __init__(self, port: int, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None,
                 timeout: float = 5.0, window: int = 1 << 24, stream_window: int | None = None,
                 ack_data: bool = True):
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
            self.alpn = sock.selected_alpn_protocol()
        self.sock = sock
        self.authority = f"{host}:{port}"
        self.scheme = "https" if tls is not None else "http"
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(cfg)
        self.conn.initiate_connection()
        if stream_window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: stream_window})
        if window > 65535:
            self.conn.increment_flow_control_window(window - 65535)
        self.ack_data = ack_data
        self.unacked: dict[int, int] = {}  # stream id -> bytes not acknowledged (ack_data False)
        self.streams: dict[int, Stream] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.remote_settings = False
        self.eof = False
        self.flush()

    # -- I/O ------------------------------------------------------------------------------

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, timeout: float) -> bool:
        """Reads once (up to `timeout`) and handles what came; False on timeout or EOF."""
        if self.eof:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(1 << 20)
        except (socket.timeout, ssl.SSLWantReadError):
            return False
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            self.eof = True
            return False
        if not data:
            self.eof = True
            return False
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.eof = True
            raise
        for ev in events:
            self._handle(ev)
        try:
            self.flush()
        except OSError:
            self.eof = True
        return True

    def _handle(self, ev) -> None:
        sid = getattr(ev, "stream_id", None)
        st = self.streams.get(sid) if sid else None
        if isinstance(ev, h2.events.ResponseReceived) and st:
            st.headers = list(ev.headers)
            st.status = int(st.header(":status"))
        elif isinstance(ev, h2.events.DataReceived):
            if st:
                st.data += ev.data
            if self.ack_data:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
            else:
                self.unacked[sid] = self.unacked.get(sid, 0) + ev.flow_controlled_length
        elif isinstance(ev, h2.events.StreamEnded) and st:
            st.ended = True
        elif isinstance(ev, h2.events.StreamReset) and st:
            st.reset = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            self.remote_settings = True

    def pump_until(self, cond, timeout: float, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"h2: {what} not reached within {timeout} s")
            if not self.pump(min(left, 0.5)) and self.eof and not cond():
                raise AssertionError(f"h2: connection closed before {what} "
                                     f"(goaway={self.goaway})")

    def acknowledge(self, stream_id: int) -> None:
        """Opens the window of a stream whose data was held back (ack_data=False)."""
        n = self.unacked.pop(stream_id, 0)
        if n:
            self.conn.acknowledge_received_data(n, stream_id)
            self.flush()

    # -- requests -------------------------------------------------------------------------

    def request(self, method: str, path: str, headers: dict | None = None,
                body: bytes | str | None = None, flush: bool = True,
                timeout: float = 5.0) -> Stream:
        """Opens a stream for one request. A body larger than the peer lets us send at once
        goes out as its flow-control windows open (waiting at most `timeout`), and stops early
        if the server answers first (413)."""
        if isinstance(body, str):
            body = body.encode("utf-8")
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":path", path), (":scheme", self.scheme),
                (":authority", self.authority)]
        hdrs += [(k.lower(), str(v)) for k, v in (headers or {}).items()]
        st = self.streams[sid] = Stream(sid)
        self.conn.send_headers(sid, hdrs, end_stream=not body)
        if body:
            self._send_body(st, memoryview(body), timeout)
        if flush:
            self.flush()
        return st

    def _send_body(self, st: Stream, body: memoryview, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while body and not st.done:
            room = min(self.conn.local_flow_control_window(st.id),
                       self.conn.max_outbound_frame_size)
            if room <= 0:
                self.flush()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"h2: request body of stream {st.id} not sent within "
                                         f"{timeout} s: the window stayed shut")
                if not self.pump(min(left, 0.5)) and self.eof:
                    raise AssertionError(f"h2: connection closed while sending stream {st.id}")
                continue
            n = min(room, len(body))
            self.conn.send_data(st.id, body[:n].tobytes(), end_stream=n == len(body))
            body = body[n:]

    def get(self, path: str, headers: dict | None = None, timeout: float = 5.0) -> Stream:
        st = self.request("GET", path, headers)
        self.pump_until(lambda: st.done, timeout, f"response to GET {path}")
        return st

    def publish(self, topic: str, data: str, timeout: float = 5.0) -> str:
        st = self.request("POST", f"/topics/{topic}", {"content-type": "text/plain"}, data)
        self.pump_until(lambda: st.done, timeout, f"response to POST /topics/{topic}")
        assert st.status == 201, st
        return st.json()["id"]

    def subscribe(self, topics, transport: str = "sse", since=None, flush: bool = True,
                  **query) -> Stream:
        from harness import sub_path
        accept = {"sse": "text/event-stream", "stream": "application/x-ndjson"}.get(transport)
        path = sub_path(topics, transport=transport, since=since, **query)
        return self.request("GET", path, {"accept": accept} if accept else None, flush=flush)

    def reset(self, stream_id: int, code: int = CANCEL) -> None:
        self.conn.reset_stream(stream_id, code)
        self.flush()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def shutdown(self) -> None:
        """Ends the connection without releasing its descriptor: a thread blocked on it wakes
        with EOF; close() stays for the thread that uses it."""
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# Raw frames, for clients that break the rules on purpose


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", ftype, flags, stream_id) + payload


def settings_frame(settings: dict | None = None, ack: bool = False) -> bytes:
    payload = b"".join(struct.pack(">HI", k, v) for k, v in (settings or {}).items())
    return frame(SETTINGS, ACK if ack else 0, 0, payload)


def rst_frame(stream_id: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream_id, struct.pack(">I", code))


class RawH2:
    """An HTTP/2 client that writes frames itself (HPACK by the hpack package) and reads
    frames without judging them."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.encoder = Encoder()
        self.authority = f"{host}:{port}"
        self.buf = b""
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def headers(self, stream_id: int, path: str, end_stream: bool = True,
                extra: list[tuple[str, str]] | None = None) -> bytes:
        block = self.encoder.encode([(":method", "GET"), (":path", path), (":scheme", "http"),
                                     (":authority", self.authority)] + (extra or []))
        return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), stream_id, block)

    def read_frames(self, timeout: float, until=None) -> list[tuple[int, int, int, bytes]]:
        """Frames (type, flags, stream id, payload) until `until(frames)` is true, EOF, or
        `timeout`."""
        frames = []
        deadline = time.monotonic() + timeout
        while not (until and until(frames)):
            while len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + length:
                    break
                ftype, flags, sid = struct.unpack(">BBI", self.buf[3:9])
                frames.append((ftype, flags, sid & 0x7fffffff, self.buf[9:9 + length]))
                self.buf = self.buf[9 + length:]
            if until and until(frames):
                break
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                break
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                break
            except ConnectionResetError:
                self.eof = True
                break
            if not data:
                self.eof = True
                continue
            self.buf += data
        return frames

    def close(self) -> None:
        self.sock.close()


def goaway_code(frames) -> int | None:
    for ftype, _, _, payload in frames:
        if ftype == GOAWAY:
            return struct.unpack(">I", payload[4:8])[0]
    return None
