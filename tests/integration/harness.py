"""Helpers for Herald's integration tests.

Starts the real `herald` binary (path from $HERALD_BIN) on a free 127.0.0.1 port with its own
temp data dir, and talks to it with real clients built on the standard library only:
http.client for plain requests, raw sockets for streams (SSE, NDJSON) and for malformed HTTP.
`Requests` is what a test talks to: the broker itself over HTTP/1.1 here, or the HTTP/2 clients
of clients.py, which answer with the same `Response` and `Subscriber` types.
Every wait here is bounded by a timeout, so a broken broker fails a test instead of hanging it.
"""

from __future__ import annotations

import codecs
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent

START_TIMEOUT = 10.0  # until the "listening on" line
STOP_TIMEOUT = 5.0  # SIGTERM to exit, per docs/api.md
HTTP_TIMEOUT = 5.0  # one plain request

LISTEN_RE = re.compile(r"listening on http://(\[[^\]]*\]|[^\s/:]+):(\d+)")
HTTPS_RE = re.compile(r"listening on https://(\[[^\]]*\]|[^\s/:]+):(\d+)")
# The first line of a report by AddressSanitizer, LeakSanitizer or UndefinedBehaviorSanitizer.
SANITIZER_RE = re.compile(r"^==\d+==ERROR: \w+Sanitizer|: runtime error: |^SUMMARY: \w+Sanitizer")
TRANSPORTS = ("sse", "stream", "poll")
STREAMING_TRANSPORTS = ("sse", "stream")


class BrokerError(AssertionError):
    """The broker did not start, or did not stop as the contract says."""


def herald_bin() -> str:
    path = os.environ.get("HERALD_BIN") or str(REPO_ROOT / "build" / "herald")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise BrokerError(f"herald binary not found or not executable: {path!r} (set HERALD_BIN)")
    return path


def assert_no_sanitizer_report(output: bytes | str, what: str = "herald") -> None:
    """A process that exits non-zero on purpose (bad flags) must still not report memory errors,
    leaks or undefined behaviour (in a build with HERALD_SANITIZE)."""
    text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
    for line in text.splitlines():
        assert not SANITIZER_RE.search(line), f"{what} printed a sanitizer report:\n{text}"


def herald_cli() -> str | None:
    path = os.environ.get("HERALD_CLI") or str(REPO_ROOT / "build" / "herald-cli")
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    return None


# ---------------------------------------------------------------------------------------------
# Responses


class Response:
    """A complete HTTP response: status, headers (in order, names as sent) and body bytes."""

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise AssertionError(
                f"body of {self.status} response is not JSON: {self.body[:300]!r}") from e

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.headers!r} {self.body[:200]!r}>"


def assert_json_error(resp: Response, status: int) -> dict:
    """The documented error shape: the status, and a JSON body {"error": "..."}."""
    assert resp.status == status, f"expected {status}, got {resp!r}"
    ctype = resp.header("Content-Type") or ""
    assert ctype.startswith("application/json"), f"error Content-Type is {ctype!r}: {resp!r}"
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
    return body


# ---------------------------------------------------------------------------------------------
# What a test talks to


class PendingResponse:
    """A request that went out; response() waits for its answer."""

    def response(self) -> Response:
        raise NotImplementedError


class Requests:
    """A client of one broker over one protocol: plain requests answered as a `Response`,
    response bodies read as they come (`open_stream`), and the publish / poll / subscribe helpers
    built on those two, so that a test body reads the same whatever the protocol. `protocol` is
    "h1" for the broker's own HTTP/1.1 client (`Broker`), "h2c" or "h2-tls" for
    clients.H2Requests. Test thread only, except where a subclass says otherwise."""

    protocol = "h1"

    @property
    def broker(self) -> "Broker":
        raise NotImplementedError

    def begin(self, method: str, path: str, body: bytes | str | None = None,
              headers: dict | None = None, timeout: float = HTTP_TIMEOUT) -> PendingResponse:
        """Sends one request and returns once it went out."""
        raise NotImplementedError

    def open_stream(self, path: str, headers: dict | None = None, rcvbuf: int | None = None):
        """A GET whose body is read as it comes: `status`, `headers`, `header()`,
        `read_some(deadline)`, `terminated`, `eof`, `error_body()`, `close(reset)`. Returns once
        the response head arrived."""
        raise NotImplementedError

    def close(self) -> None:
        """Closes what the client holds open."""

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict | None = None, timeout: float = HTTP_TIMEOUT) -> Response:
        return self.begin(method, path, body, headers, timeout).response()

    def get(self, path: str, **kw) -> Response:
        return self.request("GET", path, **kw)

    def publish_raw(self, topic: str, data: bytes | str, type: str | None = None,
                    headers: dict | None = None) -> Response:
        path = f"/topics/{topic}"
        if type is not None:
            path += "?type=" + urllib.parse.quote(type, safe="")
        hdrs = {"Content-Type": "text/plain; charset=utf-8"}
        hdrs.update(headers or {})
        return self.request("POST", path, body=data, headers=hdrs)

    def publish(self, topic: str, data: bytes | str, type: str | None = None) -> str:
        """Publishes one event; asserts 201 {"id","topic"}; returns the id."""
        r = self.publish_raw(topic, data, type)
        assert r.status == 201, \
            f"publish to {topic!r} over {self.protocol}: expected 201, got {r!r}"
        body = r.json()
        assert body.get("topic") == topic, body
        assert isinstance(body.get("id"), str) and body["id"].isdigit(), body
        return body["id"]

    def poll(self, topics, since=None, timeout=1, limit=None, headers=None,
             **query) -> Response:
        """One long-poll request (transport=poll), held at most ?timeout=1 s unless told
        (timeout=None: no ?timeout=, the broker's default); the HTTP timeout covers the hold."""
        path = sub_path(topics, transport="poll", since=since, timeout=timeout, limit=limit,
                        **query)
        hold = float(timeout) if timeout is not None else 25.0
        return self.get(path, headers=headers, timeout=hold + HTTP_TIMEOUT)

    def poll_json(self, topics, **kw) -> dict:
        r = self.poll(topics, **kw)
        assert r.status == 200, f"poll over {self.protocol}: expected 200, got {r!r}"
        body = r.json()
        assert isinstance(body.get("events"), list) and isinstance(body.get("last_id"), str), body
        return body

    def subscribe(self, transport: str, topics, **kw) -> "Subscriber":
        return open_subscriber(self, transport, topics, **kw)

    def healthy(self) -> bool:
        try:
            return self.get("/healthz", timeout=3).status == 200
        except (OSError, AssertionError):
            return False

    def assert_healthy(self) -> None:
        assert self.broker.alive(), "herald exited:\n" + self.broker.output_tail()
        r = self.get("/healthz", timeout=3)
        assert r.status == 200, f"/healthz over {self.protocol} after the test's input: {r!r}"


class _Http1Pending(PendingResponse):
    """One HTTP/1.1 request on a connection of its own (http.client), sent."""

    def __init__(self, host: str, port: int, method: str, path: str, body, headers,
                 timeout: float):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self._conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            self._conn.request(method, path, body=body, headers=headers or {})
        except BaseException:
            self._conn.close()
            raise

    def response(self) -> Response:
        try:
            r = self._conn.getresponse()
            data = r.read()
            return Response(r.status, r.reason, r.getheaders(), data)
        finally:
            self._conn.close()


# ---------------------------------------------------------------------------------------------
# The broker process


class Broker(Requests):
    """One herald process (and its restarts) on one data dir, and its HTTP/1.1 client (one
    connection per request, as `Requests`). Test thread only, except `Requests` calls, which
    open connections of their own."""

    def __init__(self, *flags, data_dir: str, workdir: str):
        self.flags = [str(f) for f in flags]
        self.data_dir = data_dir
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.tls_port: int | None = None  # with --tls-listen: the current run's https port
        self.cafile: str | None = None  # the certificate a TLS client trusts, if set by its maker
        self.proc: subprocess.Popen | None = None
        self.lines: list[tuple[str, str]] = []  # (stream, line) over every run
        self._cond = threading.Condition()
        self._readers: list[threading.Thread] = []
        self._stopped = True  # stopped on purpose (or never started)
        self.runs = 0

    @property
    def broker(self) -> "Broker":
        return self

    # -- lifecycle ------------------------------------------------------------------------

    def command(self, port: int = 0) -> list[str]:
        return [herald_bin(), "--listen", f"127.0.0.1:{port}", "--data", self.data_dir, *self.flags]

    def start(self, port: int = 0) -> "Broker":
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        self.runs += 1
        with self._cond:
            first_line = len(self.lines)
        self.proc = subprocess.Popen(self.command(port), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=self.workdir, start_new_session=True)
        self._stopped = False
        self._readers = [
            threading.Thread(target=self._read_pipe, args=(name, pipe), daemon=True)
            for name, pipe in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr))
        ]
        for t in self._readers:
            t.start()
        # Both lines are printed together; the https one only with --tls-listen.
        wanted = {LISTEN_RE: "port"}
        if "--tls-listen" in self.flags:
            wanted[HTTPS_RE] = "tls_port"
        deadline = time.monotonic() + START_TIMEOUT
        with self._cond:
            while True:
                found = {}
                for _, line in self.lines[first_line:]:
                    for pattern, attr in wanted.items():
                        m = pattern.search(line)
                        if m:
                            found.setdefault(attr, int(m.group(2)))
                if len(found) == len(wanted):
                    for attr, port_ in found.items():
                        setattr(self, attr, port_)
                    return self
                if self.proc.poll() is not None:
                    self._stopped = True
                    raise BrokerError(f"herald exited with {self.proc.returncode} before "
                                      f"listening:\n{self.output_tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    self._kill_quietly()
                    raise BrokerError(f"no 'listening on ...' line within {START_TIMEOUT} s:\n"
                                      f"{self.output_tail()}")
                self._cond.wait(min(left, 0.05))

    def _read_pipe(self, name: str, pipe) -> None:
        for raw in iter(pipe.readline, b""):
            with self._cond:
                self.lines.append((name, raw.decode("utf-8", "replace").rstrip("\r\n")))
                self._cond.notify_all()
        pipe.close()

    def sanitizer_report(self, max_lines: int = 200) -> str | None:
        """The first sanitizer report in the output (a build with HERALD_SANITIZE), if any."""
        with self._cond:
            for i, (_, line) in enumerate(self.lines):
                if SANITIZER_RE.search(line):
                    return "\n".join(l for _, l in self.lines[i:i + max_lines])
        return None

    def output_tail(self, n: int = 40) -> str:
        with self._cond:
            tail = "\n".join(f"[{s}] {l}" for s, l in self.lines[-n:]) or "(no output)"
        report = self.sanitizer_report()
        if report and report not in tail:
            tail = f"{report}\n...\n{tail}"
        return tail

    def output(self) -> str:
        with self._cond:
            return "\n".join(l for _, l in self.lines)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def died(self) -> bool:
        """It exited, and not because a test stopped it."""
        return self.proc is not None and self.proc.poll() is not None and not self._stopped

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
            self._stopped = True  # the exit that follows is the test's doing
        os.kill(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT):
        """Sends `sig` to the broker's PID; returns (exit code or None if still running after
        `timeout` -- then it is SIGKILLed --, seconds it took)."""
        assert self.proc is not None
        self._stopped = True
        t0 = time.monotonic()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
            self._kill_quietly()
        elapsed = time.monotonic() - t0
        for t in self._readers:
            t.join(2)
        return rc, elapsed

    def wait_exit(self, timeout: float) -> int | None:
        """Waits for an exit the test caused; returns the exit status, or None (then kills)."""
        assert self.proc is not None
        self._stopped = True
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill_quietly()
            return None
        for t in self._readers:
            t.join(2)
        return rc

    def terminate(self) -> float:
        """SIGTERM; asserts the documented clean stop (exit status 0 within 5 s)."""
        rc, elapsed = self.stop(signal.SIGTERM)
        assert rc == 0, (f"SIGTERM: expected exit status 0 within {STOP_TIMEOUT} s, got "
                         f"{'still running' if rc is None else rc} after {elapsed:.1f} s\n"
                         + self.output_tail())
        return elapsed

    def kill9(self) -> None:
        rc, _ = self.stop(signal.SIGKILL)
        assert rc == -signal.SIGKILL, f"SIGKILL: exit status {rc}"

    def restart(self, same_port: bool = True) -> "Broker":
        """Starts again on the same data dir, on the same port when it can be had again (the
        https port of --tls-listen 127.0.0.1:0 is a new one)."""
        assert not self.alive()
        if same_port and self.port:
            try:
                return self.start(self.port)
            except BrokerError:
                pass
        return self.start(0)

    def _kill_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def close(self) -> list[str]:
        """Teardown: stops a running broker, which must exit 0 as SIGTERM promises (a leak report
        at exit makes it fail); reports one that died on its own and any sanitizer report."""
        problems = []
        if self.proc is None:
            return problems
        if not self._stopped and self.proc.poll() is not None:
            problems.append(f"herald died during the test with exit status "
                            f"{self.proc.returncode}:\n{self.output_tail()}")
        if self.proc.poll() is None:
            rc, elapsed = self.stop(signal.SIGTERM)
            if rc is None:
                problems.append(f"herald did not exit within {STOP_TIMEOUT} s of SIGTERM at "
                                f"teardown:\n{self.output_tail()}")
            elif rc != 0:
                problems.append(f"herald exited with status {rc} on SIGTERM at teardown:\n"
                                f"{self.output_tail()}")
        report = self.sanitizer_report()
        if report and not problems:
            problems.append(f"herald's output has a sanitizer report:\n{report}")
        return problems

    # -- HTTP/1.1 -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def begin(self, method: str, path: str, body: bytes | str | None = None,
              headers: dict | None = None, timeout: float = HTTP_TIMEOUT) -> PendingResponse:
        return _Http1Pending(self.host, self.port, method, path, body, headers, timeout)

    def open_stream(self, path: str, headers: dict | None = None,
                    rcvbuf: int | None = None) -> "HTTPStream":
        return HTTPStream(self.port, path, headers, host=self.host, rcvbuf=rcvbuf)


def sub_path(topics, use_subscribe: bool = False, **query) -> str:
    """/topics/{topic} for one topic, /subscribe?topic=..&topic=.. for several; `query` items
    whose value is None are left out."""
    if isinstance(topics, str):
        topics = [topics]
    q: list[tuple[str, str]] = []
    if len(topics) == 1 and not use_subscribe:
        base = f"/topics/{topics[0]}"
    else:
        base = "/subscribe"
        q += [("topic", t) for t in topics]
    for k, v in query.items():
        if v is not None:
            q.append((k, str(v)))
    return base + ("?" + urllib.parse.urlencode(q, safe="/") if q else "")


# ---------------------------------------------------------------------------------------------
# Raw sockets


class RawResult:
    def __init__(self, data: bytes, closed: bool, reset: bool, elapsed: float):
        self.data = data  # everything received
        self.closed = closed  # the peer closed (EOF or reset) before the deadline
        self.reset = reset
        self.elapsed = elapsed

    def responses(self) -> list[Response]:
        return parse_responses(self.data)

    def __repr__(self) -> str:
        return f"<RawResult closed={self.closed} reset={self.reset} {self.data[:300]!r}>"


def raw_exchange(port: int, chunks, *, timeout: float = HTTP_TIMEOUT, pause: float = 0.0,
                 until_responses: int | None = None, host: str = "127.0.0.1") -> RawResult:
    """Sends `chunks` (bytes or a list of bytes, `pause` s apart) on a new connection, then
    reads until the peer closes, `until_responses` complete responses arrived, or `timeout`."""
    if isinstance(chunks, (bytes, bytearray)):
        chunks = [chunks]
    t0 = time.monotonic()
    deadline = t0 + timeout
    data = b""
    closed = reset = False
    with socket.create_connection((host, port), timeout=timeout) as s:
        for i, c in enumerate(chunks):
            if i and pause:
                time.sleep(pause)
            try:
                s.sendall(c)
            except (BrokenPipeError, ConnectionResetError):
                break
        while True:
            if until_responses is not None and len(parse_responses(data)) >= until_responses:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                got = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = reset = True
                break
            if not got:
                closed = True
                break
            data += got
    return RawResult(data, closed, reset, time.monotonic() - t0)


def _parse_head(head: bytes):
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise AssertionError(f"bad status line: {lines[0]!r}")
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    return status, reason, headers


def parse_responses(data: bytes) -> list[Response]:
    """Splits bytes received on one connection into complete responses (Content-Length,
    chunked, or read-until-close framing). An incomplete last response is left out."""
    out = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        status, reason, headers = _parse_head(data[pos:end])
        pos = end + 4
        hmap = {k.lower(): v for k, v in headers}
        if status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in hmap.get("transfer-encoding", "").lower():
            dec = ChunkedDecoder()
            used = dec.feed(data[pos:])
            if not dec.done:
                break
            body = bytes(dec.out)
            pos += used
        elif "content-length" in hmap:
            n = int(hmap["content-length"])
            if len(data) - pos < n:
                break
            body = data[pos:pos + n]
            pos += n
        else:
            body = data[pos:]
            pos = len(data)
        out.append(Response(status, reason, headers, body))
    return out


class ChunkedDecoder:
    """Incremental decoder of the chunked transfer coding (RFC 9112 section 7.1)."""

    def __init__(self):
        self.out = bytearray()
        self.done = False  # the last chunk and the trailer section were seen
        self._state = "size"
        self._left = 0
        self._buf = b""

    def feed(self, data: bytes) -> int:
        """Decodes what it can; returns how many bytes of the stream so far were consumed up to
        the end of the message (only meaningful once done)."""
        self._buf += data
        consumed_total = getattr(self, "_consumed", 0)
        while not self.done:
            if self._state == "data":
                if not self._buf:
                    break
                take = self._buf[:self._left]
                self.out += take
                self._buf = self._buf[len(take):]
                consumed_total += len(take)
                self._left -= len(take)
                if self._left == 0:
                    self._state = "crlf"
            elif self._state == "crlf":
                if len(self._buf) < 2:
                    break
                if self._buf[:2] != b"\r\n":
                    raise AssertionError(f"chunk not followed by CRLF: {self._buf[:20]!r}")
                self._buf = self._buf[2:]
                consumed_total += 2
                self._state = "size"
            else:  # "size" or "trailer": one line
                i = self._buf.find(b"\r\n")
                if i < 0:
                    break
                line = self._buf[:i]
                self._buf = self._buf[i + 2:]
                consumed_total += i + 2
                if self._state == "trailer":
                    if not line:
                        self.done = True
                    continue
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    self._state = "trailer"
                else:
                    self._left = size
                    self._state = "data"
        self._consumed = consumed_total
        return consumed_total


# ---------------------------------------------------------------------------------------------
# Streaming responses


class HTTPStream:
    """A GET whose response body is read incrementally over a raw socket (so chunk framing,
    the chunked terminator and the close are all visible)."""

    def __init__(self, port: int, path: str, headers: dict | None = None,
                 host: str = "127.0.0.1", timeout: float = HTTP_TIMEOUT, method: str = "GET",
                 rcvbuf: int | None = None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # before connect, so the window stays small: a slow reader
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
        self.eof = False  # the peer closed
        self.reset = False
        self.closed = False  # we closed
        self.body = bytearray()  # all decoded body bytes so far
        self._pending = bytearray()  # decoded, not yet handed out
        self._raw = b""
        self.chunked = False
        self._chunks: ChunkedDecoder | None = None
        self._length: int | None = None
        self.status, self.reason, self.headers = self._read_head(time.monotonic() + timeout)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def _recv(self, deadline: float) -> bool:
        if self.eof or self.closed:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, ConnectionAbortedError):
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self._raw += data
        return True

    def _read_head(self, deadline: float):
        while b"\r\n\r\n" not in self._raw:
            if not self._recv(deadline):
                raise AssertionError(
                    f"no complete response head (eof={self.eof}): {self._raw[:300]!r}")
        head, _, rest = self._raw.partition(b"\r\n\r\n")
        status, reason, headers = _parse_head(head)
        hmap = {k.lower(): v for k, v in headers}
        self.chunked = "chunked" in hmap.get("transfer-encoding", "").lower()
        if self.chunked:
            self._chunks = ChunkedDecoder()
        elif "content-length" in hmap:
            self._length = int(hmap["content-length"])
        self._raw = rest
        self._decode()
        return status, reason, headers

    def _decode(self) -> None:
        if self._chunks is not None:
            before = len(self._chunks.out)
            self._chunks.feed(self._raw)
            new = self._chunks.out[before:]
        elif self._length is not None:
            new = self._raw[:self._length - len(self.body)]
        else:
            new = self._raw
        self._raw = b""
        self.body += new
        self._pending += new

    @property
    def terminated(self) -> bool:
        """The body is complete: chunked terminator seen, Content-Length reached, or, for a
        close-delimited body, the close."""
        if self._chunks is not None:
            return self._chunks.done
        if self._length is not None:
            return len(self.body) >= self._length
        return self.eof

    def read_some(self, deadline: float) -> bytes:
        """Decoded body bytes not handed out yet; waits for some until `deadline`. b"" when
        nothing came (timeout, end of body or close)."""
        while not self._pending:
            if self.terminated or not self._recv(deadline):
                break
            self._decode()
        out = bytes(self._pending)
        self._pending.clear()
        return out

    def read_to_end(self, timeout: float) -> bool:
        """Reads until the body ends or the peer closes; True if that happened in time."""
        deadline = time.monotonic() + timeout
        while not (self.terminated or self.eof):
            if not self._recv(deadline):
                if self.eof:
                    break
                return False
            self._decode()
        return True

    def wait_eof(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.eof:
            if not self._recv(deadline):
                return self.eof
            self._decode()
        return True

    def close(self, reset: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if reset:  # RST instead of FIN: an abrupt client
            import struct
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def error_body(self, timeout: float = 2.0) -> bytes:
        self.read_to_end(timeout)
        return bytes(self.body)


class Subscriber:
    """A subscription on one transport, normalized: `seq` holds, in arrival order,
    ("event", {"id","type","data","topic","raw"}), ("truncated", {"topic","since","oldest",...}),
    ("heartbeat", raw text) and transport-specific extras ("retry", "comment", "control")."""

    transport = ""

    def __init__(self):
        self.seq: list[tuple[str, object]] = []
        self._cursor = 0
        self.finished = False  # no more items can come
        self.error: str | None = None

    def _pump(self, deadline: float) -> bool:
        raise NotImplementedError

    def next_item(self, timeout: float, kinds=("event", "truncated")):
        deadline = time.monotonic() + timeout
        while True:
            while self._cursor < len(self.seq):
                kind, val = self.seq[self._cursor]
                self._cursor += 1
                if kind in kinds:
                    return kind, val
            if self.finished:
                if self.error:
                    raise AssertionError(f"{self.transport} subscriber failed: {self.error}")
                return None
            if time.monotonic() >= deadline:
                return None
            self._pump(deadline)

    def next_event(self, timeout: float = HTTP_TIMEOUT):
        item = self.next_item(timeout, kinds=("event",))
        return item[1] if item else None

    def events(self, n: int, timeout: float = HTTP_TIMEOUT) -> list[dict]:
        """The next n events; fails if they don't all come within `timeout`."""
        deadline = time.monotonic() + timeout
        got = []
        while len(got) < n:
            ev = self.next_event(max(0.0, deadline - time.monotonic()))
            if ev is None:
                raise AssertionError(f"{self.transport}: expected {n} events within {timeout} s, "
                                     f"got {len(got)}: {[(e['id'], e['data']) for e in got]} "
                                     f"(finished={self.finished})")
            got.append(ev)
        return got

    def events_until(self, last_id: str, timeout: float) -> list[dict]:
        """Events up to and including the one with id `last_id` (ids compared as numbers)."""
        deadline = time.monotonic() + timeout
        got = []
        while True:
            ev = self.next_event(max(0.0, deadline - time.monotonic()))
            if ev is None:
                last = got[-1]["id"] if got else None
                raise AssertionError(f"{self.transport}: event {last_id} not seen within "
                                     f"{timeout} s; got {len(got)} events, last {last}")
            got.append(ev)
            if int(ev["id"]) >= int(last_id):
                return got

    def assert_no_event(self, wait: float) -> None:
        ev = self.next_event(wait)
        assert ev is None, f"{self.transport}: unexpected event {ev!r}"

    def wait_for(self, kind: str, timeout: float):
        item = self.next_item(timeout, kinds=(kind,))
        return item[1] if item else None

    @property
    def truncations(self) -> list[dict]:
        return [v for k, v in self.seq if k == "truncated"]

    def kinds(self) -> list[str]:
        return [k for k, _ in self.seq if k in ("event", "truncated")]

    def close(self) -> None:
        self.finished = True


def _event(obj: dict) -> dict:
    return {"id": obj.get("id"), "topic": obj.get("topic"), "type": obj.get("type"),
            "data": obj.get("data"), "raw": obj}


class SSESubscriber(Subscriber):
    """Server-Sent Events, parsed as the WHATWG EventSource parser does."""

    transport = "sse"

    def __init__(self, stream: HTTPStream):
        super().__init__()
        self.stream = stream
        self._dec = codecs.getincrementaldecoder("utf-8")()
        self._text = ""
        self._skip_lf = False
        self.last_event_id = ""
        self._reset_block()

    def _reset_block(self):
        self._data: list[str] | None = None
        self._type = ""
        self._block_id: str | None = None

    def _pump(self, deadline: float) -> bool:
        data = self.stream.read_some(deadline)
        if not data:
            if self.stream.terminated or self.stream.eof:
                self.finished = True
            return False
        new = self._dec.decode(data)
        if self._skip_lf and new.startswith("\n"):
            new = new[1:]  # the LF of a CR LF split across reads
        text = self._text + new
        if text:
            self._skip_lf = text.endswith("\r")
        lines = re.split(r"\r\n|\r|\n", text)
        self._text = lines.pop()  # the incomplete last line
        for line in lines:
            self._line(line)
        return True

    def _line(self, line: str) -> None:
        if line == "":
            if self._data is not None:
                data = "\n".join(self._data)
                if self._type == "herald.truncated":
                    sig = json.loads(data)
                    sig["_had_id"] = self._block_id is not None
                    self.seq.append(("truncated", sig))
                else:
                    self.seq.append(("event", {"id": self._block_id, "topic": None,
                                               "type": self._type or None, "data": data,
                                               "raw": None, "last_event_id": self.last_event_id}))
            self._reset_block()
            return
        if line.startswith(":"):
            text = line[1:]
            if text.strip() == "heartbeat":
                self.seq.append(("heartbeat", text))
            else:
                self.seq.append(("comment", text))
            return
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            if self._data is None:
                self._data = []
            self._data.append(value)
        elif field == "event":
            self._type = value
        elif field == "id":
            if "\0" not in value:
                self._block_id = value
                self.last_event_id = value
        elif field == "retry":
            self.seq.append(("retry", value))
        else:
            self.seq.append(("unknown", line))

    def close(self, reset: bool = False) -> None:
        super().close()
        self.stream.close(reset)


class NDJSONSubscriber(Subscriber):
    """Chunked NDJSON, framed by newlines (never by chunks)."""

    transport = "stream"

    def __init__(self, stream: HTTPStream):
        super().__init__()
        self.stream = stream
        self._buf = b""

    def _pump(self, deadline: float) -> bool:
        data = self.stream.read_some(deadline)
        if not data:
            if self.stream.terminated or self.stream.eof:
                self.finished = True
            return False
        lines = (self._buf + data).split(b"\n")
        self._buf = lines.pop()  # the incomplete last line
        for line in lines:
            text = line.decode("utf-8").rstrip("\r")
            if not text.strip():
                self.seq.append(("heartbeat", text))
                continue
            try:
                obj = json.loads(text)
            except ValueError as e:
                raise AssertionError(f"stream: line is not JSON: {text[:300]!r}") from e
            if "control" in obj:
                if obj["control"] == "truncated":
                    self.seq.append(("truncated", obj))
                else:
                    self.seq.append(("control", obj))
            else:
                self.seq.append(("event", _event(obj)))
        return True

    def close(self, reset: bool = False) -> None:
        super().close()
        self.stream.close(reset)


class PollSubscriber(Subscriber):
    """Consecutive long-polls in a thread, each from the previous answer's last_id. The first
    poll carries the initial cursor (?since= and/or Last-Event-ID); later ones only ?since=.
    `client` is any `Requests` whose begin() may be called from another thread."""

    transport = "poll"

    def __init__(self, client: Requests, topics, since=None, last_event_id=None, query=None,
                 hold: int = 1, limit=None):
        super().__init__()
        self.client = client
        self.topics = topics
        self.query = dict(query or {})
        self.hold = hold
        self.limit = limit
        self.responses: list[dict] = []
        self.error: str | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._sent_first = threading.Event()
        self._first = (since, last_event_id)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._sent_first.wait(HTTP_TIMEOUT):
            raise AssertionError("poll: first request not sent")

    def _run(self):
        since, last_event_id = self._first
        first = True
        while not self._stop:
            headers = {}
            if first and last_event_id is not None:
                headers["Last-Event-ID"] = str(last_event_id)
            path = sub_path(self.topics, transport="poll", since=since, timeout=self.hold,
                            limit=self.limit, **self.query)
            try:
                pending = self.client.begin("GET", path, headers=headers,
                                            timeout=self.hold + HTTP_TIMEOUT)
                self._sent_first.set()
                r = pending.response()
                if r.status != 200:
                    raise AssertionError(f"poll {path}: {r.status} {r.body[:300]!r}")
                obj = json.loads(r.body)
            except Exception as e:  # noqa: BLE001 -- reported to the test thread
                with self._cond:
                    self.error = f"{type(e).__name__}: {e}"
                    self.finished = True
                    self._cond.notify_all()
                self._sent_first.set()
                return
            first = False
            with self._cond:
                self.responses.append(obj)
                for t in obj.get("truncated") or []:
                    self.seq.append(("truncated", t))
                for e in obj.get("events", []):
                    self.seq.append(("event", _event(e)))
                since = obj.get("last_id")
                self._cond.notify_all()

    def _pump(self, deadline: float) -> bool:
        with self._cond:
            n = len(self.seq)
            while len(self.seq) == n and not self.finished:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            if self.error and self._cursor >= len(self.seq):
                raise AssertionError(f"poll subscriber failed: {self.error}")
            return True

    def close(self) -> None:
        """Stops polling; a poll in flight ends on its own within `hold` s (not waited for)."""
        self._stop = True
        super().close()


def open_subscriber(client: Requests, transport: str, topics, *, since=None,
                    last_event_id=None, query: dict | None = None, by_accept: bool = False,
                    hold: int = 1, limit=None, use_subscribe: bool = False,
                    rcvbuf: int | None = None, headers: dict | None = None) -> Subscriber:
    """Subscribes on `transport` ("sse", "stream" or "poll") over `client`'s protocol (a
    `Broker` is the HTTP/1.1 client). Streams return once the response head arrived; a poll
    subscriber once its first request went out (plus a short pause when it has no cursor, so
    that the broker holds it before the test publishes)."""
    query = dict(query or {})
    if use_subscribe:
        query["use_subscribe"] = True
    if transport == "poll":
        sub = PollSubscriber(client, topics, since=since, last_event_id=last_event_id,
                             query=query, hold=hold, limit=limit)
        if since is None and last_event_id is None:
            time.sleep(0.3)
        return sub
    accept = {"sse": "text/event-stream", "stream": "application/x-ndjson"}[transport]
    headers = {"Accept": accept, **(headers or {})}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    if not by_accept:
        query["transport"] = transport
    path = sub_path(topics, since=since, **query)
    stream = client.open_stream(path, headers, rcvbuf=rcvbuf)
    if stream.status != 200:
        body = stream.error_body()
        stream.close()
        raise AssertionError(f"{transport} subscribe {path} over {client.protocol}: "
                             f"{stream.status} {body[:300]!r}")
    return SSESubscriber(stream) if transport == "sse" else NDJSONSubscriber(stream)


# ---------------------------------------------------------------------------------------------
# Misc


def ids_as_ints(events) -> list[int]:
    return [int(e["id"]) for e in events]


class Publisher(threading.Thread):
    """Publishes `count` events in a thread (with count=None: until stop() is called); `ids` in
    acknowledgement order; `started_publishing` is set after `signal_after` acknowledgements.
    `broker` is any `Requests` whose calls may come from another thread."""

    def __init__(self, broker: Requests, topics, count: int, signal_after: int = 0,
                 pause: float = 0.0, prefix: str = "m"):
        super().__init__(daemon=True)
        self.broker = broker
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.count = count
        self.pause = pause
        self.prefix = prefix
        self.signal_after = signal_after
        self.ids: list[str] = []
        self.sent: list[tuple[str, str, str]] = []  # (id, topic, data)
        self.error: str | None = None
        self.started_publishing = threading.Event()
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self):
        try:
            i = -1
            while True:
                i += 1
                if self.count is not None and i >= self.count:
                    break
                if self.count is None and self._stop_event.is_set():
                    break
                topic = self.topics[i % len(self.topics)]
                data = f"{self.prefix}{i}"
                ev_id = self.broker.publish(topic, data)
                self.ids.append(ev_id)
                self.sent.append((ev_id, topic, data))
                if len(self.ids) >= self.signal_after:
                    self.started_publishing.set()
                if self.pause:
                    time.sleep(self.pause)
        except Exception as e:  # noqa: BLE001 -- reported by finish()
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.started_publishing.set()

    def finish(self, timeout: float = 30.0) -> list[str]:
        self.join(timeout)
        assert not self.is_alive(), "publisher thread did not finish"
        assert self.error is None, f"publisher failed: {self.error}"
        return self.ids


def metric_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text -> [(name, labels, value)]."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)", line)
        if not m:
            continue
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        try:
            out.append((m.group(1), labels, float(m.group(3))))
        except ValueError:
            continue
    return out


def metric_values(text: str) -> dict[str, float]:
    """Prometheus text -> {metric name: sum of its samples over all label sets}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m:
            continue
        try:
            v = float(m.group(3))
        except ValueError:
            continue
        out[m.group(1)] = out.get(m.group(1), 0.0) + v
    return out
