"""One client interface over HTTP/1.1, h2c and TLS h2, so that a test body written once runs over
each protocol where the broker promises the same behaviour (as h2o's test suite runs one body
with curl over each protocol). `connect(broker, protocol)` gives a `harness.Requests`: plain
requests answer a `Response` (status, headers, body), streams answer the same `Subscriber` types
(the SSE and NDJSON parsers of harness read an HTTP/2 stream's DATA as they read an HTTP/1.1
body), whatever the protocol. The broker of an "h2-tls" client runs with --tls-listen and a
certificate its maker set as `broker.cafile`."""

from __future__ import annotations

import threading
import time

from h2_client import CANCEL, H2Client, Stream, client_tls_context
from harness import HTTP_TIMEOUT, Broker, PendingResponse, Requests, Response

PROTOCOLS = ("h1", "h2c", "h2-tls")


def connect(broker: Broker, protocol: str) -> Requests:
    """A client of `broker` over `protocol` (one of PROTOCOLS); close() it when done."""
    if protocol == "h1":
        return Http1Requests(broker)
    if protocol in ("h2c", "h2-tls"):
        return H2Requests(broker, tls=protocol == "h2-tls")
    raise ValueError(f"unknown protocol {protocol!r}")


class Http1Requests(Requests):
    """HTTP/1.1 as the broker's own client speaks it (a connection per request or stream);
    follows the broker across restarts. Any thread."""

    protocol = "h1"

    def __init__(self, broker: Broker):
        self._broker = broker

    @property
    def broker(self) -> Broker:
        return self._broker

    def begin(self, method, path, body=None, headers=None, timeout=HTTP_TIMEOUT):
        return self._broker.begin(method, path, body, headers, timeout)

    def open_stream(self, path, headers=None, rcvbuf=None):
        return self._broker.open_stream(path, headers, rcvbuf)


class _H2Pending(PendingResponse):
    def __init__(self, conn: H2Client, st: Stream, what: str, timeout: float):
        self._conn = conn
        self._st = st
        self._what = what
        self._timeout = timeout

    def response(self) -> Response:
        st = self._st
        self._conn.pump_until(lambda: st.done, self._timeout, f"response to {self._what}")
        if st.status is None:
            raise AssertionError(f"h2: {self._what}: stream reset with code {st.reset} and no "
                                 f"response")
        return Response(st.status, "", _plain_headers(st), bytes(st.data))


def _plain_headers(st: Stream) -> list[tuple[str, str]]:
    return [(k, v) for k, v in st.headers if not k.startswith(":")]


class H2BodyStream:
    """The response body of one HTTP/2 stream, read as harness.HTTPStream reads an HTTP/1.1
    body. Owns its connection (one stream on it), so reading it never takes another stream's
    frames away from another thread. Test thread only."""

    def __init__(self, conn: H2Client, st: Stream, timeout: float = HTTP_TIMEOUT):
        self.conn = conn
        self.st = st
        conn.pump_until(lambda: st.status is not None or st.done, timeout, "response head")
        if st.status is None:
            raise AssertionError(f"h2: stream reset with code {st.reset} before a response head")
        self.status = st.status
        self.headers = _plain_headers(st)
        self._pos = 0

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name.lower():
                return v
        return None

    @property
    def body(self) -> bytes:
        """All body bytes so far."""
        return bytes(self.st.data)

    @property
    def terminated(self) -> bool:
        """END_STREAM came: the body is complete."""
        return self.st.ended

    @property
    def eof(self) -> bool:
        return self.st.reset is not None or self.conn.eof

    def read_some(self, deadline: float) -> bytes:
        while self._pos >= len(self.st.data) and not (self.st.done or self.conn.eof):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.conn.pump(left)
        out = bytes(self.st.data[self._pos:])
        self._pos = len(self.st.data)
        return out

    def error_body(self, timeout: float = 2.0) -> bytes:
        try:
            self.conn.pump_until(lambda: self.st.done, timeout, "end of the error response")
        except AssertionError:
            pass
        return bytes(self.st.data)

    def close(self, reset: bool = False) -> None:
        """RST_STREAM (CANCEL), as a client that stops reading does, then the connection."""
        if not (self.st.done or self.conn.eof):
            try:
                self.conn.reset(self.st.id, CANCEL)
            except Exception:  # noqa: BLE001 -- the connection may be gone already
                pass
        self.conn.close()


class H2Requests(Requests):
    """HTTP/2 in cleartext (prior knowledge) or over TLS (ALPN h2, checked on every connection).
    Plain requests share one connection per calling thread, reopened when the broker closed it
    (GOAWAY, restart); each stream opened by open_stream() gets a connection of its own. Any
    thread; close() from the test thread once the others are done with it."""

    def __init__(self, broker: Broker, tls: bool):
        self._broker = broker
        self.tls = tls
        self.protocol = "h2-tls" if tls else "h2c"
        self.connections_opened = 0
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[tuple[H2Client, threading.Thread]] = []  # with the thread using it

    @property
    def broker(self) -> Broker:
        return self._broker

    def new_connection(self, **kw) -> H2Client:
        b = self._broker
        if self.tls:
            assert b.tls_port and b.cafile, "an h2-tls client needs a broker with --tls-listen"
            c = H2Client(b.tls_port, tls=client_tls_context(b.cafile, ["h2"]), **kw)
            assert c.alpn == "h2", f"ALPN selected {c.alpn!r}, not h2"
        else:
            c = H2Client(b.port, **kw)
        with self._lock:
            self._all.append((c, threading.current_thread()))
            self.connections_opened += 1
        return c

    def connection(self) -> H2Client:
        """This thread's connection for plain requests."""
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.pump(0)  # takes in a GOAWAY or close that came while it was idle
        if c is None or c.eof or c.goaway is not None:
            if c is not None:
                c.close()
            c = self._local.conn = self.new_connection()
        return c

    def begin(self, method, path, body=None, headers=None, timeout=HTTP_TIMEOUT):
        c = self.connection()
        st = c.request(method, path, headers, body, timeout=timeout)
        return _H2Pending(c, st, f"{method} {path}", timeout)

    def open_stream(self, path, headers=None, rcvbuf=None):
        c = self.new_connection()
        try:
            return H2BodyStream(c, c.request("GET", path, headers))
        except BaseException:
            c.close()
            raise

    def close(self) -> None:
        """Closes the connections of this thread and of threads that ended. One still in use by
        another thread (a poll in flight) is only shut down: that thread gets EOF, and the
        descriptor is closed when it lets go of it. Closing it here could let its next read (by
        number, as OpenSSL's socket BIO does) take bytes from the next socket given that
        number."""
        with self._lock:
            conns, self._all = self._all, []
        me = threading.current_thread()
        for c, user in conns:
            if user is me or not user.is_alive():
                c.close()
            else:
                c.shutdown()
