"""HTTP/2 in cleartext (h2c): prior knowledge and Upgrade, many streams on one connection, stream
lifecycle (RST_STREAM, GOAWAY), and abusive clients. What a request answers is the same over
every protocol and is checked over h2c and TLS h2 by the tests that take the `client` fixture."""

import json
import signal
import subprocess
import time

from h2_client import (CANCEL, NO_ERROR, PREFACE, PROTOCOL_ERROR, REFUSED_STREAM,
                       RST_STREAM, SETTINGS, H2Client, RawH2, goaway_code, rst_frame,
                       settings_frame)
from harness import metric_samples, metric_values, open_subscriber


def sse_subscribers(broker) -> float:
    for name, labels, v in metric_samples(broker.get("/metrics").body.decode()):
        if name == "herald_subscribers" and labels.get("transport") == "sse":
            return v
    raise AssertionError("no herald_subscribers{transport=\"sse\"} sample")


def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# Multiplexing


def test_1000_sse_streams_on_one_connection_each_get_their_events(broker_factory):
    n_shared, n_own = 500, 500
    # Room for the publishes that share the connection with the 1,000 open streams.
    b = broker_factory("--h2-max-streams", "1200")
    c = H2Client(b.port)
    try:
        c.pump_until(lambda: c.remote_settings, 5, "server SETTINGS")
        shared = [c.subscribe("shared", flush=False) for _ in range(n_shared)]
        own = [c.subscribe(f"own/{i}", flush=False) for i in range(n_own)]
        c.flush()
        everyone = shared + own
        c.pump_until(lambda: all(s.status is not None for s in everyone), 20,
                     "1,000 response heads")
        assert {s.status for s in everyone} == {200}
        assert all(s.header("content-type").startswith("text/event-stream") for s in everyone)
        assert sse_subscribers(b) == n_shared + n_own
        assert metric_values(b.get("/metrics").body.decode())["herald_h2_streams"] >= 1000

        # Publishes on the same connection while the streams are open, 100 at a time.
        shared_pub = c.request("POST", "/topics/shared", body="to everyone")
        own_pubs = []
        for start in range(0, n_own, 100):
            batch = [c.request("POST", f"/topics/own/{i}", body=f"to {i}", flush=False)
                     for i in range(start, start + 100)]
            c.flush()
            c.pump_until(lambda: all(p.done for p in batch), 20, "publish answers")
            own_pubs += batch
        c.pump_until(lambda: shared_pub.done, 5, "shared publish answer")
        assert {p.status for p in own_pubs + [shared_pub]} == {201}
        shared_id = shared_pub.json()["id"]

        def complete():
            return (all(len(s.events()) >= 1 for s in everyone))

        c.pump_until(complete, 20, "every stream's event")
        for s in shared:
            assert [(e["id"], e["data"]) for e in s.events()] == [(shared_id, "to everyone")]
        for i, s in enumerate(own):
            assert [(e["id"], e["data"]) for e in s.events()] == \
                [(own_pubs[i].json()["id"], f"to {i}")]
        assert not any(s.done for s in everyone), "a stream ended"
    finally:
        c.close()


def test_slow_stream_keeps_its_bytes_while_the_others_go_on(broker_factory):
    # A stream whose flow-control window stays closed must not hold up the connection's other
    # streams, and must get everything, in order, once it reads again (via history).
    b = broker_factory("--subscriber-queue-bytes", "32768")
    c = H2Client(b.port, ack_data=False)
    try:
        c.pump_until(lambda: c.remote_settings, 5, "server SETTINGS")
        slow = c.subscribe("s")
        fast = c.subscribe("s")
        c.pump_until(lambda: slow.status and fast.status, 5, "response heads")
        payload = "x" * 8000
        ids = [b.publish("s", f"{i}:{payload}") for i in range(30)]
        while len(fast.events()) < 30:
            c.pump_until(lambda: fast.id in c.unacked, 5, "fast stream data")
            c.acknowledge(fast.id)
        assert [e["id"] for e in fast.events()] == ids
        got_slow = len(slow.events())
        assert got_slow < 30, "the slow stream's window should have stopped it"
        # Open its window, bit by bit as a slow reader would.
        deadline = time.monotonic() + 20
        while len(slow.events()) < 30 and time.monotonic() < deadline:
            c.acknowledge(slow.id)
            c.pump(0.2)
        assert [e["id"] for e in slow.events()] == ids
        # It went back to history while its window was closed: bounded memory.
        assert metric_values(b.get("/metrics").body.decode())[
            "herald_subscriber_catchups_total"] >= 1
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------
# Speaking h2: prior knowledge, Upgrade, other clients


def test_prior_knowledge_connection_is_counted_in_metrics(broker):
    # What every route answers over h2c is checked by the tests that take the `client` fixture
    # (test_publish, test_resume, test_longpoll, ...): here, that it was h2 they spoke.
    c = H2Client(broker.port)
    try:
        assert c.get("/healthz").status == 200
        m = c.get("/metrics")
        assert m.status == 200 and "herald_h2_connections 1" in m.data.decode()
    finally:
        c.close()


def test_same_event_has_the_same_id_over_h2_and_http1(broker):
    h1 = open_subscriber(broker, "sse", "same")
    c = H2Client(broker.port)
    try:
        s2 = c.subscribe("same")
        c.pump_until(lambda: s2.status is not None, 5, "response head")
        ev_id = c.publish("same", "once")
        c.pump_until(lambda: s2.events(), 5, "the event over h2")
        [ev1] = h1.events(1)
        assert s2.events() == [{"id": ev_id, "type": None, "data": "once"}]
        assert (ev1["id"], ev1["data"]) == (ev_id, "once")
    finally:
        c.close()
        h1.close()


def test_curl_http2_prior_knowledge_publish_and_subscribe(broker):
    # The subscriber runs for 2 s (-m), then prints what it got.
    sub = subprocess.Popen(["curl", "-sN", "--http2-prior-knowledge", "-m", "2",
                            "-H", "Accept: text/event-stream", f"{broker.url}/topics/curl"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: sse_subscribers(broker) == 1, 5, "curl's subscription")
        pub = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-w", "\\n%{http_version}",
                              "--data-binary", "via curl", f"{broker.url}/topics/curl"],
                             capture_output=True, timeout=10, text=True)
        body, version = pub.stdout.rsplit("\n", 1)
        assert version == "2", pub.stdout
        ev_id = json.loads(body)["id"]
        out, _ = sub.communicate(timeout=10)
        assert f"id: {ev_id}\ndata: via curl\n".encode() in out, out
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait(5)


def test_curl_http2_upgrade_h2c_publish_and_poll(broker):
    pub = subprocess.run(["curl", "-sv", "--http2", "--data-binary", "upgraded",
                          f"{broker.url}/topics/up"], capture_output=True, timeout=10, text=True)
    assert "101 Switching Protocols" in pub.stderr, pub.stderr
    assert "< HTTP/2 201" in pub.stderr, pub.stderr
    ev_id = json.loads(pub.stdout)["id"]
    poll = subprocess.run(["curl", "-sv", "--http2", f"{broker.url}/topics/up?since=0&timeout=1"],
                          capture_output=True, timeout=10, text=True)
    assert "< HTTP/2 200" in poll.stderr, poll.stderr
    assert json.loads(poll.stdout)["events"] == [{"id": ev_id, "topic": "up", "data": "upgraded"}]


def test_preface_split_across_reads_is_still_h2(broker):
    r = RawH2(broker.port)
    try:
        for part in (PREFACE[:3], PREFACE[3:11], PREFACE[11:]):
            r.send(part)
            time.sleep(0.05)
        r.send(settings_frame() + r.headers(1, "/healthz"))
        frames = r.read_frames(5, until=lambda fs: any(f[0] == 0 and f[1] & 1 for f in fs))
        assert any(f[0] == SETTINGS for f in frames), frames
        assert b'{"status":"ok"}' in b"".join(f[3] for f in frames if f[0] == 0), frames
    finally:
        r.close()


def test_http1_starting_like_the_preface_is_still_http1(broker):
    # "P" could start PRI, POST, PUT or PATCH: the bytes held back must reach HTTP/1.1 intact.
    r = RawH2(broker.port)
    try:
        req = b"POST /topics/pp HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
        r.send(req[:1])
        time.sleep(0.05)
        r.send(req[1:])
        r.sock.settimeout(5)
        assert r.sock.recv(4096).startswith(b"HTTP/1.1 201 ")
    finally:
        r.close()


# ---------------------------------------------------------------------------------------------
# Stream lifecycle


def test_rst_stream_ends_one_subscription_only(broker):
    c = H2Client(broker.port)
    try:
        subs = [c.subscribe("rst") for _ in range(10)]
        c.pump_until(lambda: all(s.status for s in subs), 5, "response heads")
        assert sse_subscribers(broker) == 10
        c.reset(subs[3].id, CANCEL)
        wait_for(lambda: sse_subscribers(broker) == 9, 5, "9 subscribers")
        ev_id = broker.publish("rst", "after reset")
        alive = subs[:3] + subs[4:]
        c.pump_until(lambda: all(s.events() for s in alive), 5, "the event on the others")
        assert all(s.events()[0]["id"] == ev_id for s in alive)
        assert subs[3].events() == []
    finally:
        c.close()


def test_sigterm_sends_goaway_and_ends_streams_cleanly(broker_factory):
    # Raw frames: python-h2 refuses frames that follow a GOAWAY, the stream's end among them.
    b = broker_factory()
    r = RawH2(b.port)
    try:
        r.send(PREFACE + settings_frame() + r.headers(1, "/topics/bye?transport=sse"))
        r.read_frames(5, until=lambda fs: any(f[0] == 1 and f[2] == 1 for f in fs))
        b.send_signal(signal.SIGTERM)
        frames = r.read_frames(5, until=lambda fs: r.eof)
        assert goaway_code(frames) == NO_ERROR, frames
        ends = [f for f in frames if f[2] == 1 and f[0] in (0, 1) and f[1] & 1]
        assert ends, f"stream 1 did not end with END_STREAM: {frames}"
        assert not [f for f in frames if f[0] == RST_STREAM], frames
        assert r.eof, "the connection was not closed"
        assert b.wait_exit(5) == 0
    finally:
        r.close()


def test_idle_h2_connection_is_closed_with_goaway(broker_factory):
    b = broker_factory("--idle-timeout", "0.5")
    c = H2Client(b.port)
    try:
        assert c.get("/healthz").status == 200
        c.pump_until(lambda: c.goaway is not None, 5, "GOAWAY for an idle connection")
        assert c.goaway.error_code == NO_ERROR
        # A live stream is never idle.
        c2 = H2Client(b.port)
        s = c2.subscribe("idle")
        c2.pump_until(lambda: s.status is not None, 5, "response head")
        time.sleep(1.5)
        c2.pump(0.1)
        assert c2.goaway is None and not s.done
        c2.close()
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------
# Abusive clients


def test_rapid_reset_gets_goaway_and_other_connections_are_unaffected(broker):
    good = H2Client(broker.port)
    bad = RawH2(broker.port)
    try:
        sub = good.subscribe("calm")
        good.pump_until(lambda: sub.status is not None, 5, "response head")
        bad.send(PREFACE + settings_frame())
        burst = bytearray()
        for i in range(3000):
            sid = 1 + 2 * i
            burst += bad.headers(sid, "/topics/storm?transport=sse") + rst_frame(sid, CANCEL)
        try:
            bad.send(bytes(burst))
        except (BrokenPipeError, ConnectionResetError):
            pass
        frames = bad.read_frames(10, until=lambda fs: goaway_code(fs) is not None)
        assert goaway_code(frames) not in (None, NO_ERROR), "no GOAWAY for rapid reset"
        ev_id = broker.publish("calm", "still here")
        good.pump_until(lambda: sub.events(), 5, "the event on the calm connection")
        assert sub.events()[0]["id"] == ev_id
        wait_for(lambda: sse_subscribers(broker) == 1, 5, "storm subscriptions gone")
    finally:
        good.close()
        bad.close()


def test_streams_over_the_limit_are_refused(broker_factory):
    b = broker_factory("--h2-max-streams", "10")
    r = RawH2(b.port)
    try:
        # Before our SETTINGS ACK: REFUSED_STREAM for the streams beyond 10, a stream error.
        data = PREFACE + settings_frame()
        for i in range(15):
            data += r.headers(1 + 2 * i, "/topics/lim?transport=sse")
        r.send(data)
        refused = lambda fs: [f for f in fs if f[0] == RST_STREAM]  # noqa: E731
        frames = r.read_frames(5, until=lambda fs: len(refused(fs)) >= 5)
        codes = {f[2]: int.from_bytes(f[3], "big") for f in refused(frames)}
        assert codes == {1 + 2 * i: REFUSED_STREAM for i in range(10, 15)}, codes
        assert goaway_code(frames) is None
        wait_for(lambda: sse_subscribers(b) == 10, 5, "10 subscribers")
        # Once the client acknowledged the limit, going past it is a connection error.
        r.send(settings_frame(ack=True))
        time.sleep(0.1)
        r.send(r.headers(41, "/topics/lim?transport=sse"))
        frames = r.read_frames(5, until=lambda fs: goaway_code(fs) is not None)
        assert goaway_code(frames) == PROTOCOL_ERROR
        assert b.healthy()
    finally:
        r.close()


def test_garbage_after_the_preface_gets_goaway(broker):
    r = RawH2(broker.port)
    try:
        # A DATA frame on stream 0 is a connection error (RFC 9113, 6.1).
        r.send(PREFACE + settings_frame() + bytes([0, 0, 4, 0, 0, 0, 0, 0, 0]) + b"abcd")
        frames = r.read_frames(5, until=lambda fs: goaway_code(fs) is not None)
        assert goaway_code(frames) == PROTOCOL_ERROR
        assert broker.healthy()
    finally:
        r.close()


def test_settings_flood_gets_goaway(broker):
    r = RawH2(broker.port)
    try:
        r.send(PREFACE + settings_frame() + settings_frame() * 5000)
        frames = r.read_frames(5, until=lambda fs: goaway_code(fs) is not None or r.eof)
        code = goaway_code(frames)
        assert code is not None or r.eof, "a SETTINGS flood was served"
        assert broker.healthy()
    finally:
        r.close()
