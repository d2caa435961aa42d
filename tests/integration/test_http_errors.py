"""HTTP/1.1 edge cases: malformed requests, limits, timeouts, keep-alive, pipelining, abrupt
clients. After every bad input the broker keeps serving. The header limit and the timeouts that
must spare streams and held polls are checked on HTTP/1.1, h2c and TLS h2 alike."""

import socket
import time

import pytest

from harness import (HTTPStream, assert_json_error, open_subscriber, parse_responses,
                     raw_exchange)

MALFORMED = {
    "garbage-line": b"this is not http\r\n\r\n",
    "binary-junk": b"\x00\x01\x02\x03\xff\xfe\r\n\r\n",
    "method-only": b"GET\r\n\r\n",
    "bad-version": b"GET /healthz HTTP/x.y\r\nHost: t\r\n\r\n",
    "header-without-colon": b"GET /healthz HTTP/1.1\r\nHost: t\r\nNo colon here\r\n\r\n",
    "space-before-colon": b"GET /healthz HTTP/1.1\r\nHost : t\r\n\r\n",
    "bad-content-length": b"POST /topics/a HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
    "two-content-lengths": (b"POST /topics/a HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n"
                            b"Content-Length: 2\r\n\r\nab"),
    "cl-and-te": (b"POST /topics/a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "bad-chunk-size": (b"POST /topics/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"zz\r\nhello\r\n0\r\n\r\n"),
}


@pytest.mark.parametrize("request_bytes", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_request_gets_400_json_then_close(broker, request_bytes):
    res = raw_exchange(broker.port, request_bytes, timeout=5)
    resps = res.responses()
    assert resps, f"no response to malformed request: {res!r}"
    assert_json_error(resps[0], 400)
    assert len(resps) == 1, resps
    assert res.closed, "connection must be closed after a 400 for malformed HTTP"
    broker.assert_healthy()
    if request_bytes.startswith(b"POST"):  # nothing smuggled in
        assert broker.poll_json("a", since=0, timeout=1)["events"] == []


def test_malformed_request_after_a_good_one_on_the_same_connection(broker):
    res = raw_exchange(broker.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nNONSENSE\r\n\r\n")
    resps = res.responses()
    assert [r.status for r in resps] == [200, 400], res
    assert res.closed
    broker.assert_healthy()


def test_oversized_headers_get_431_then_close(broker_factory):
    b = broker_factory("--max-header-bytes", "4096")
    hdrs = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 500) for i in range(10))
    res = raw_exchange(b.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + hdrs + b"\r\n")
    resps = res.responses()
    assert resps, res
    assert_json_error(resps[0], 431)
    assert res.closed
    b.assert_healthy()


@pytest.fixture(scope="module")
def small_headers(module_broker_factory):
    return module_broker_factory("--max-header-bytes", "4096", tls=True)


def test_oversized_headers_get_431(small_headers, connect):
    c = connect(small_headers)
    r = c.get("/healthz", headers={f"X-Pad-{i}": "a" * 500 for i in range(10)})
    assert_json_error(r, 431)
    c.assert_healthy()
    if c.protocol != "h1":
        # The stream is refused, not the connection (HTTP/1.1 closes: see above).
        assert c.connections_opened == 1, "the HTTP/2 connection did not outlive the 431"


def test_headers_just_under_the_limit_are_fine(small_headers, connect):
    c = connect(small_headers)
    r = c.get("/healthz", headers={f"X-Pad-{i}": "a" * 300 for i in range(10)})  # ~3.2 KB
    assert r.status == 200, r


def test_very_long_url_gets_414_then_close(broker_factory):
    b = broker_factory("--max-header-bytes", "4096")
    req = b"GET /topics/a?x=" + b"y" * 6000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    res = raw_exchange(b.port, req)
    resps = res.responses()
    assert resps, res
    assert_json_error(resps[0], 414)
    assert res.closed
    b.assert_healthy()


def test_very_long_url_gets_414_with_default_limit(broker):
    req = b"GET /topics/" + b"t" * 20000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    res = raw_exchange(broker.port, req)
    resps = res.responses()
    assert resps, res
    assert_json_error(resps[0], 414)
    broker.assert_healthy()


@pytest.mark.parametrize("partial", [
    b"GET /healthz HTTP/1.1\r\nHost: t\r\n",
    b"GET /heal",
    b"POST /topics/slow HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly ten b",
], ids=["half-headers", "half-request-line", "half-body"])
def test_stalled_request_gets_408_then_close(broker_factory, partial):
    b = broker_factory("--request-timeout", "1")
    res = raw_exchange(b.port, partial, timeout=6)
    resps = res.responses()
    assert resps, f"no 408 within {res.elapsed:.1f} s: {res!r}"
    assert_json_error(resps[0], 408)
    assert 0.8 <= res.elapsed <= 4.0, res.elapsed
    assert res.closed
    b.assert_healthy()
    assert b.poll_json("slow", since=0, timeout=1)["events"] == []


def test_request_trickled_slower_than_request_timeout_gets_408(broker_factory):
    b = broker_factory("--request-timeout", "1")
    req = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\n\r\n"
    chunks = [req[i:i + 6] for i in range(0, len(req), 6)]  # ~10 pieces, 0.3 s apart: ~3 s
    res = raw_exchange(b.port, chunks, pause=0.3, timeout=6)
    resps = res.responses()
    assert resps and resps[0].status == 408, res
    b.assert_healthy()


@pytest.fixture(scope="module")
def short_request_timeout(module_broker_factory):
    return module_broker_factory("--request-timeout", "1", "--heartbeat", "1", tls=True)


@pytest.fixture(scope="module")
def short_idle_timeout(module_broker_factory):
    return module_broker_factory("--idle-timeout", "1", "--heartbeat", "5", tls=True)


def test_request_timeout_does_not_cut_long_lived_streams(short_request_timeout, connect,
                                                         new_topic):
    b, topic = connect(short_request_timeout), new_topic("long")
    subs = [b.subscribe(t, topic) for t in ("sse", "stream")]
    try:
        time.sleep(2.5)
        ev = b.publish(topic, "still here")
        for s in subs:
            assert [e["id"] for e in s.events(1)] == [ev], s.transport
    finally:
        for s in subs:
            s.close()


def test_idle_timeout_does_not_cut_streams_or_held_polls(short_idle_timeout, connect, new_topic):
    b, topic = connect(short_idle_timeout), new_topic("idle")
    subs = [b.subscribe(t, topic) for t in ("sse", "stream")]
    try:
        t0 = time.monotonic()
        r = b.poll(topic, timeout=3)
        assert r.status == 200 and r.json()["events"] == [], r
        assert time.monotonic() - t0 >= 2.5
        ev = b.publish(topic, "still here")
        for s in subs:
            assert [e["id"] for e in s.events(1)] == [ev], s.transport
    finally:
        for s in subs:
            s.close()


def test_keep_alive_two_requests_on_one_connection(broker):
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        data = _read_responses(s, 1)
        s.sendall(b"POST /topics/ka HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
        data = _read_responses(s, 2, data)
    resps = parse_responses(data)
    assert [r.status for r in resps] == [200, 201]
    assert (resps[0].header("Connection") or "").lower() != "close"
    assert [e["data"] for e in broker.poll_json("ka", since=0)["events"]] == ["abc"]


def _read_responses(sock, n, data=b"", timeout=5.0):
    deadline = time.monotonic() + timeout
    while len(parse_responses(data)) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"expected {n} responses, got {data!r}"
        sock.settimeout(left)
        got = sock.recv(65536)
        assert got, f"connection closed after {data!r}"
        data += got
    return data


def test_pipelined_requests_are_answered_in_order(broker):
    reqs = (b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
            b"POST /topics/pipe?type=t HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nfirst"
            b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
            b"POST /topics/pipe HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nsecond"
            b"GET /topics/pipe?since=0&transport=poll HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    res = raw_exchange(broker.port, reqs, until_responses=6)
    resps = res.responses()
    assert [r.status for r in resps] == [200, 201, 404, 201, 200, 200], res
    first, second = resps[1].json()["id"], resps[3].json()["id"]
    assert int(first) < int(second)
    assert [e["id"] for e in resps[4].json()["events"]] == [first, second]


def test_hundreds_of_pipelined_requests_are_answered_without_waiting_for_the_timer(broker):
    # A loop turn answered about 32 pipelined requests and then slept until the next 250 ms
    # tick: 1,000 requests took about 8 s. Now the loop keeps going while answers are due.
    n = 1000
    res = raw_exchange(broker.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n" * n,
                       until_responses=n, timeout=30)
    resps = res.responses()
    assert len(resps) == n and all(r.status == 200 for r in resps), res
    assert res.elapsed < 4.0, f"{n} pipelined requests took {res.elapsed:.1f} s"


def test_connection_close_request_is_answered_then_closed(broker):
    res = raw_exchange(broker.port,
                       b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert [r.status for r in res.responses()] == [200] and res.closed, res


def test_http_1_0_request_is_answered_then_closed(broker):
    res = raw_exchange(broker.port, b"GET /healthz HTTP/1.0\r\n\r\n")
    resps = res.responses()
    assert [r.status for r in resps] == [200] and res.closed, res


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_client_disconnecting_mid_stream_does_not_disturb_others(broker, reset):
    keep = [open_subscriber(broker, t, "dis") for t in ("sse", "stream")]
    gone = [open_subscriber(broker, t, "dis") for t in ("sse", "stream", "sse", "stream")]
    try:
        first = broker.publish("dis", "one")
        for s in keep + gone:
            assert [e["id"] for e in s.events(1)] == [first]
        for s in gone:
            s.close(reset=reset)
        time.sleep(0.2)
        more = [broker.publish("dis", "x" * 5000 + str(i)) for i in range(20)]
        for s in keep:
            assert [e["id"] for e in s.events(20)] == more, s.transport
        broker.assert_healthy()
    finally:
        for s in keep:
            s.close()


def test_client_disconnecting_mid_request_body_stores_nothing(broker):
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s:
        s.sendall(b"POST /topics/half HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\npartial")
        time.sleep(0.2)
    time.sleep(0.2)
    broker.assert_healthy()
    assert broker.poll_json("half", since=0, timeout=1)["events"] == []


def test_subscriber_that_never_reads_does_not_block_others(broker_factory):
    b = broker_factory("--subscriber-queue-bytes", "65536")
    stuck = HTTPStream(b.port, "/topics/slow?transport=stream", {"Accept": "application/x-ndjson"})
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    live = open_subscriber(b, "stream", "slow")
    try:
        ids = [b.publish("slow", "z" * 8000 + str(i)) for i in range(100)]  # ~800 KB
        assert [e["id"] for e in live.events(100, timeout=15)] == ids
        b.assert_healthy()
    finally:
        stuck.close()
        live.close()


def test_max_connections_answers_503_past_the_limit(broker_factory):
    b = broker_factory("--max-connections", "2")
    held = [HTTPStream(b.port, "/topics/mc?transport=stream", {"Accept": "application/x-ndjson"})
            for _ in range(2)]
    try:
        assert all(h.status == 200 for h in held)
        res = raw_exchange(b.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", timeout=5)
        resps = res.responses()
        assert resps, res
        assert_json_error(resps[0], 503)
        assert res.closed
    finally:
        for h in held:
            h.close()
    deadline = time.monotonic() + 3
    while not b.healthy() and time.monotonic() < deadline:
        time.sleep(0.1)
    b.assert_healthy()


def test_idle_keep_alive_connection_is_closed_after_idle_timeout(broker_factory):
    b = broker_factory("--idle-timeout", "1")
    with socket.create_connection(("127.0.0.1", b.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        _read_responses(s, 1)
        t0 = time.monotonic()
        s.settimeout(5)
        try:
            rest = s.recv(100)
        except ConnectionResetError:
            rest = b""
        assert rest == b"", rest
        assert 0.5 <= time.monotonic() - t0 <= 4.0


def test_new_connection_that_sends_nothing_is_closed_after_request_timeout(broker_factory):
    # It was kept for the whole --idle-timeout (75 s by default): 19,000 silent connections
    # filled the process.
    b = broker_factory("--request-timeout", "1", "--idle-timeout", "60")
    with socket.create_connection(("127.0.0.1", b.port), timeout=10) as s:
        t0 = time.monotonic()
        try:
            rest = s.recv(100)
        except ConnectionResetError:
            rest = b""
        assert rest == b"", rest
        assert time.monotonic() - t0 <= 5.0, "closed by the request timeout, not the idle one"
    b.assert_healthy()


def test_broker_keeps_serving_after_a_barrage_of_bad_inputs(broker_factory):
    b = broker_factory("--request-timeout", "1", "--max-header-bytes", "4096")
    for bad in list(MALFORMED.values()) + [b"GET /" + b"a" * 8000 + b" HTTP/1.1\r\n\r\n",
                                           b"\r\n" * 50, b"G"]:
        raw_exchange(b.port, bad, timeout=2)
    ev = b.publish("after", "ok")
    assert [e["id"] for e in b.poll_json("after", since=0)["events"]] == [ev]
    b.assert_healthy()


def test_pipelined_request_after_a_held_poll_waits_its_turn(broker):
    cur = broker.publish("pp", "m0")
    reqs = (f"GET /topics/pp?since={cur}&transport=poll&timeout=1 HTTP/1.1\r\nHost: t\r\n\r\n"
            "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").encode()
    res = raw_exchange(broker.port, reqs, until_responses=2, timeout=6)
    resps = res.responses()
    assert [r.status for r in resps] == [200, 200], res
    assert resps[0].json() == {"events": [], "last_id": cur}
    assert resps[1].json() == {"status": "ok"}
    assert res.elapsed >= 0.8


def test_second_poll_on_a_keep_alive_connection(broker):
    cur = broker.publish("ka2", "m0")
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s:
        s.sendall(b"GET /topics/ka2?since=0&transport=poll HTTP/1.1\r\nHost: t\r\n\r\n")
        data = _read_responses(s, 1)
        s.sendall(f"GET /topics/ka2?since={cur}&transport=poll&timeout=1 HTTP/1.1\r\n"
                  "Host: t\r\n\r\n".encode())
        data = _read_responses(s, 2, data)
    r1, r2 = parse_responses(data)
    assert [e["id"] for e in r1.json()["events"]] == [cur]
    assert r2.json() == {"events": [], "last_id": cur}


def test_chunked_body_over_max_body_is_413(broker_factory):
    b = broker_factory("--max-body", "1024")
    chunk = b"x" * 600
    req = (b"POST /topics/big HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           + b"258\r\n" + chunk + b"\r\n" + b"258\r\n" + chunk + b"\r\n0\r\n\r\n")
    res = raw_exchange(b.port, req)
    resps = res.responses()
    assert resps, res
    assert_json_error(resps[0], 413)
    assert res.closed
    b.assert_healthy()
    assert b.poll_json("big", since=0)["events"] == []


def test_declared_content_length_over_max_body_is_413_without_waiting_for_the_body(broker_factory):
    b = broker_factory("--max-body", "1024")
    req = b"POST /topics/big HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\nabc"
    res = raw_exchange(b.port, req, timeout=5, until_responses=1)
    resps = res.responses()
    assert resps, f"no answer within {res.elapsed:.1f} s: {res!r}"
    assert_json_error(resps[0], 413)
    assert res.elapsed < 2.0
    b.assert_healthy()


@pytest.mark.parametrize("transport", ["sse", "stream"])
def test_http_1_0_stream_is_not_chunked_and_ends_with_the_close(broker, transport):
    ev = broker.publish("old", "for an HTTP/1.0 client")
    accept = {"sse": "text/event-stream", "stream": "application/x-ndjson"}[transport]
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s:
        s.sendall(f"GET /topics/old?transport={transport}&since=0 HTTP/1.0\r\n"
                  f"Accept: {accept}\r\n\r\n".encode())
        data = b""
        deadline = time.monotonic() + 5
        while b"for an HTTP/1.0 client" not in data and time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            got = s.recv(65536)
            if not got:
                break
            data += got
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0], data[:200]
    assert b"chunked" not in head.lower(), f"chunked sent to an HTTP/1.0 client: {head!r}"
    assert ev.encode() in body and b"for an HTTP/1.0 client" in body, body[:300]
    if transport == "stream":
        first = [l for l in body.split(b"\n") if l.strip()][0]
        assert first.startswith(b"{"), body[:100]


def _half_closed_exchange(port, request: bytes, timeout=5.0) -> bytes:
    """Sends `request`, half-closes (shutdown SHUT_WR: "no more requests", as `nc -N` does),
    and reads until the server closes."""
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                got = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not got:
                break
            data += got
    return data


@pytest.mark.parametrize("request_bytes", [
    b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
    b"POST /topics/hc HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
    b"GET /topics/hc?since=0&transport=poll&timeout=1 HTTP/1.1\r\nHost: t\r\n\r\n",
], ids=["healthz", "publish", "poll"])
def test_complete_request_from_a_half_closed_client_is_still_answered(broker, request_bytes):
    """A client may half-close after its last request (RFC 9293 half-close; RFC 9112 section 9.6
    has the server answer what it received). A publish must not be committed unacknowledged."""
    if b"transport=poll" in request_bytes:
        broker.publish("hc", "already there")
    resps = parse_responses(_half_closed_exchange(broker.port, request_bytes))
    assert len(resps) == 1, f"no answer to a complete request before the client's FIN: {resps}"
    assert resps[0].status in (200, 201), resps[0]
    broker.assert_healthy()
