"""History survives SIGTERM and kill -9; ids are never reused; SIGTERM ends streams cleanly.
Resuming after a restart is checked on every transport over HTTP/1.1, h2c and TLS h2."""

import signal
import socket
import threading
import time

import pytest

from harness import TRANSPORTS, Publisher, open_subscriber

TOPICS = ["d/a", "d/b", "d/c"]


def _history(broker, topics=TOPICS):
    """Every retained event of `topics`, by consecutive polls from since=0."""
    out, since = [], "0"
    for _ in range(100):
        body = broker.poll_json(topics, since=since, limit=1000, timeout=1)
        out += body["events"]
        if len(body["events"]) < 1000:
            return out
        since = body["last_id"]
    raise AssertionError("history did not end")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_resume_after_restart(broker_factory, connect, transport):
    b = broker_factory(tls=True)
    c = connect(b)  # follows the broker to its new run (the https port is a new one)
    ids = [c.publish(TOPICS[i % 2], f"m{i}") for i in range(10)]
    sub = c.subscribe(transport, TOPICS[:2], since=0)
    seen = [e["id"] for e in sub.events(5)]
    sub.close()
    assert seen == ids[:5]
    b.terminate()
    b.restart()
    sub = c.subscribe(transport, TOPICS[:2], last_event_id=seen[-1])
    try:
        assert [e["id"] for e in sub.events(5)] == ids[5:]
        new = c.publish("d/b", "after restart")
        assert int(new) > int(ids[-1])
        assert [e["id"] for e in sub.events(1)] == [new]
    finally:
        sub.close()


@pytest.mark.parametrize("durability", ["sync", "write", "none"])
def test_acknowledged_events_survive_sigterm(broker_factory, durability):
    b = broker_factory("--durability", durability)
    pubs = [Publisher(b, TOPICS, 40, prefix=f"p{k}-") for k in range(3)]
    for p in pubs:
        p.start()
    for p in pubs:
        p.finish()
    sent = {s for p in pubs for s in p.sent}
    b.terminate()
    b.restart()
    hist = _history(b)
    assert {(e["id"], e["topic"], e["data"]) for e in hist} == sent
    assert [int(e["id"]) for e in hist] == sorted(int(i) for i, _, _ in sent)
    new = b.publish("d/a", "after")
    assert int(new) > max(int(i) for i, _, _ in sent), "ids must never be reused"


class _Stopper(Publisher):
    """A publisher that may be cut off by the broker's death: errors end it quietly."""

    def run(self):
        try:
            super().run()
        finally:
            self.error = None


@pytest.mark.parametrize("durability", ["sync", "write"])
def test_acknowledged_and_delivered_events_survive_kill_9(broker_factory, durability):
    """kill -9 while three threads publish: every event acknowledged with 201, and every event
    a subscriber received, is in the history after a restart; new ids are above all of them."""
    b = broker_factory("--durability", durability)
    sub = open_subscriber(b, "stream", TOPICS, since=0)
    pubs = [_Stopper(b, TOPICS, 5000, signal_after=60, prefix=f"p{k}-") for k in range(3)]
    for p in pubs:
        p.start()
    for p in pubs:
        p.started_publishing.wait(20)
    b.kill9()
    for p in pubs:
        p.join(10)
        assert not p.is_alive()
    acked = {s for p in pubs for s in list(p.sent)}
    assert len(acked) >= 180
    delivered = []
    while True:
        ev = sub.next_event(3)
        if ev is None:
            break
        delivered.append(ev)
    sub.close()

    b.restart()
    hist = _history(b)
    stored = {(e["id"], e["topic"], e["data"]) for e in hist}
    lost = acked - stored
    assert not lost, f"{len(lost)} acknowledged events lost, e.g. {sorted(lost)[:5]}"
    lost_delivered = {(e["id"], e["topic"], e["data"]) for e in delivered} - stored
    assert not lost_delivered, f"delivered but not stored: {sorted(lost_delivered)[:5]}"
    ids = [int(e["id"]) for e in hist]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    new = b.publish("d/a", "after crash")
    seen_max = max(ids + [int(e["id"]) for e in delivered])
    assert int(new) > seen_max, f"id {new} reused (had {seen_max})"


def test_ids_are_not_reused_after_kill_9_even_without_a_log(broker_factory):
    """--durability none may lose acknowledged events on a crash, but ids are never reused,
    "also after a restart or a crash": a client holding an acknowledged id must never see it
    again on a different event."""
    b = broker_factory("--durability", "none")
    acked = [int(b.publish("nolog", f"m{i}")) for i in range(50)]
    b.kill9()
    b.restart()
    new = int(b.publish("nolog", "after crash"))
    assert new > max(acked), f"id {new} reused: ids up to {max(acked)} were acknowledged before"


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_ids_keep_increasing_across_restarts_even_after_retention(broker_factory, stop):
    b = broker_factory("--history", "2")
    last = 0
    for round_ in range(3):
        ids = [int(b.publish("ret", f"r{round_}-{i}")) for i in range(5)]
        assert ids[0] > last and ids == sorted(ids), (last, ids)
        last = ids[-1]
        if stop == "sigterm":
            b.terminate()
        else:
            b.kill9()
        b.restart()
        hist = _history(b, ["ret"])
        assert [int(e["id"]) for e in hist] == ids[-2:]
    other = int(b.publish("fresh/topic", "x"))
    assert other > last


def test_restart_on_the_same_port_serves_the_same_history(broker_factory):
    b = broker_factory()
    ev = b.publish("same", "x")
    port = b.port
    b.terminate()
    b.restart(same_port=True)
    if b.port != port:
        pytest.skip("the old port could not be had again")
    assert [e["id"] for e in b.poll_json("same", since=0)["events"]] == [ev]


def test_sigterm_ends_open_streams_cleanly_and_exits_0(broker_factory):
    b = broker_factory()
    subs = [open_subscriber(b, t, "sd") for t in ("sse", "stream", "sse", "stream")]
    ev = b.publish("sd", "x")
    for s in subs:
        assert [e["id"] for e in s.events(1)] == [ev]
    idle = socket.create_connection(("127.0.0.1", b.port), timeout=5)  # idle keep-alive
    poll_done = threading.Event()
    poll_result = {}

    def hold_poll():
        try:
            poll_result["resp"] = b.poll("sd", timeout=30)
        except Exception as e:  # noqa: BLE001 -- a closed connection is acceptable
            poll_result["error"] = e
        poll_done.set()

    threading.Thread(target=hold_poll, daemon=True).start()
    time.sleep(0.3)

    t0 = time.monotonic()
    b.send_signal(signal.SIGTERM)
    try:
        for s in subs:
            assert s.stream.read_to_end(5), f"{s.transport} stream not ended within 5 s of SIGTERM"
            assert s.stream.terminated, \
                f"{s.transport}: stream ended without its terminator (chunked={s.stream.chunked})"
            assert not s.stream.reset, f"{s.transport}: connection reset instead of a clean end"
        assert subs[1].stream.chunked, "NDJSON on HTTP/1.1 must be chunked"
        left = max(0.1, 5 - (time.monotonic() - t0))
        rc = b.wait_exit(left)
        assert rc == 0, f"exit status {rc} after SIGTERM:\n{b.output_tail()}"
        assert time.monotonic() - t0 <= 5.5
        assert poll_done.wait(1), "held long-poll neither answered nor closed by shutdown"
    finally:
        idle.close()
        for s in subs:
            s.close()


def test_sigint_exits_0(broker_factory):
    b = broker_factory()
    b.publish("x", "y")
    rc, elapsed = b.stop(signal.SIGINT)
    assert rc == 0 and elapsed <= 5, (rc, elapsed, b.output_tail())


def test_sigterm_while_publishing_loses_no_acknowledged_event(broker_factory):
    b = broker_factory()
    pubs = [_Stopper(b, TOPICS, 5000, signal_after=30, prefix=f"p{k}-") for k in range(2)]
    for p in pubs:
        p.start()
    for p in pubs:
        p.started_publishing.wait(20)
    b.terminate()
    for p in pubs:
        p.join(10)
    acked = {s for p in pubs for s in list(p.sent)}
    b.restart()
    stored = {(e["id"], e["topic"], e["data"]) for e in _history(b)}
    lost = acked - stored
    assert not lost, f"{len(lost)} acknowledged events lost, e.g. {sorted(lost)[:5]}"


def test_sse_subscriber_with_since_param_in_url_resumes_after_restart_like_eventsource(
        broker_factory):
    """An EventSource created with ?since=0 reconnects to the same URL with Last-Event-ID."""
    b = broker_factory()
    ids = [b.publish("es", f"m{i}") for i in range(4)]
    sub = open_subscriber(b, "sse", "es", since=0)
    got = sub.events(2)
    last = got[-1]["last_event_id"]
    sub.close()
    b.terminate()
    b.restart()
    sub = open_subscriber(b, "sse", "es", since=0, last_event_id=last)
    try:
        assert [e["id"] for e in sub.events(2)] == ids[2:]
        sub.assert_no_event(0.3)
    finally:
        sub.close()
