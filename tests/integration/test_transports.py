"""The three subscriber transports: same events everywhere, framing, headers, heartbeats. Event
encoding and response heads are checked on HTTP/1.1, h2c and TLS h2 alike."""

import json
import time

import pytest

from harness import (STREAMING_TRANSPORTS, TRANSPORTS, HTTPStream, Publisher,
                     assert_json_error, ids_as_ints, open_subscriber, sub_path)

PAYLOADS = {
    "plain": ("hello", None),
    "typed": ("hello", "message"),
    "multi-line": ("first line\nsecond line\nthird", "message"),
    "trailing-newline": ("ends with newline\n", None),
    "blank-lines-inside": ("a\n\n\nb", None),
    "unicode-emoji": ("héllo wörld ✓ — 日本語 🎉🚀 \U0001F9EA", "greeting"),
    "empty": ("", None),
    "json-like": ('{"id":"99","data":"not me"}\n: not a comment\ndata: not a field', "x:y"),
    "quotes-backslashes-controls": ('q"uo\\te\ttab\x01\x1f', None),
    "nul-character": ("before\x00after", None),
    "only-newlines": ("\n\n", None),
}


@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
def test_one_publish_is_seen_identically_on_sse_stream_and_poll(client, new_topic, payload):
    data, type_ = payload
    topic = new_topic("same")
    subs = {t: client.subscribe(t, topic) for t in TRANSPORTS}
    try:
        ev_id = client.publish(topic, data, type=type_)
        for t, sub in subs.items():
            [ev] = sub.events(1, timeout=5)
            assert (ev["id"], ev["type"], ev["data"]) == (ev_id, type_, data), t
            if t != "sse":
                assert ev["topic"] == topic, t
                assert ("type" in ev["raw"]) == (type_ is not None), (t, ev["raw"])
    finally:
        for sub in subs.values():
            sub.close()


STREAM_TYPES = {"sse": "text/event-stream", "stream": "application/x-ndjson"}


@pytest.mark.parametrize("transport", STREAMING_TRANSPORTS)
def test_stream_response_head(client, new_topic, transport):
    s = client.open_stream(sub_path(new_topic("h"), transport=transport),
                           {"Accept": STREAM_TYPES[transport]})
    try:
        assert s.status == 200
        assert (s.header("Content-Type") or "").split(";")[0].strip() == STREAM_TYPES[transport]
        assert "no-cache" in (s.header("Cache-Control") or ""), s.headers
        assert (s.header("X-Accel-Buffering") or "").lower() == "no", s.headers
        if client.protocol != "h1":
            assert s.header("Transfer-Encoding") is None, s.headers  # HTTP/2 has DATA frames
    finally:
        s.close()


def test_sse_stream_starts_with_retry_line(broker):
    sub = open_subscriber(broker, "sse", "r")
    try:
        ev_id = broker.publish("r", "x")
        sub.events(1)
        kinds = [k for k, _ in sub.seq]
        assert kinds[0] == "retry", sub.seq
        assert sub.seq[0][1] == "2000"
        assert sub.stream.body.startswith(b"retry: 2000\n"), bytes(sub.stream.body[:100])
        assert int(sub.seq[kinds.index("event")][1]["id"]) == int(ev_id)
    finally:
        sub.close()


def test_sse_retry_follows_sse_retry_ms_flag(broker_factory):
    b = broker_factory("--sse-retry-ms", "1234")
    sub = open_subscriber(b, "sse", "r")
    try:
        assert sub.wait_for("retry", 3) == "1234"
    finally:
        sub.close()


def _prefix_before_retry(sub, timeout=3.0):
    assert sub.wait_for("retry", timeout) is not None, sub.seq
    body = bytes(sub.stream.body)
    i = body.find(b"retry:")
    assert i >= 0
    return body[:i]


def test_sse_pad_query_sends_padding_comment_first(broker):
    sub = open_subscriber(broker, "sse", "p", query={"pad": 2048})
    try:
        prefix = _prefix_before_retry(sub)
        assert prefix.startswith(b":"), prefix[:40]
        assert 2048 - 4 <= len(prefix) <= 2048 + 64, len(prefix)
        assert all(line == b"" or line.startswith(b":") for line in prefix.split(b"\n")), \
            "padding must be SSE comment lines only"
        kinds = [k for k, _ in sub.seq]
        assert set(kinds[:kinds.index("retry")]) == {"comment"}, sub.seq[:3]
        ev_id = broker.publish("p", "after padding")
        assert sub.events(1)[0]["id"] == ev_id
    finally:
        sub.close()


def test_sse_padding_flag_pads_every_sse_response(broker_factory):
    b = broker_factory("--sse-padding", "1000")
    sub = open_subscriber(b, "sse", "p")
    try:
        prefix = _prefix_before_retry(sub)
        assert prefix.startswith(b":") and 1000 - 4 <= len(prefix) <= 1000 + 64, len(prefix)
    finally:
        sub.close()


def test_sse_pad_over_65536_is_not_honoured_beyond_the_limit(broker):
    r_path = sub_path("p", transport="sse", pad=100000)
    s = HTTPStream(broker.port, r_path, {"Accept": "text/event-stream"})
    try:
        if s.status == 400:
            return  # rejecting it is fine
        assert s.status == 200
        deadline = time.monotonic() + 3
        while b"retry:" not in s.body and s.read_some(deadline):
            pass
        i = bytes(s.body).find(b"retry:")
        assert 0 <= i <= 65536 + 64, f"padding of {i} bytes"
    finally:
        s.close()


def test_ndjson_response_is_chunked_with_ndjson_content_type(broker):
    sub = open_subscriber(broker, "stream", "nd")
    try:
        s = sub.stream
        assert s.status == 200
        assert (s.header("Content-Type") or "").split(";")[0].strip() == "application/x-ndjson"
        assert "chunked" in (s.header("Transfer-Encoding") or "").lower(), s.headers
        assert s.header("Content-Length") is None
        ev_id = broker.publish("nd", "x", type="t")
        [ev] = sub.events(1)
        assert ev["raw"] == {"id": ev_id, "topic": "nd", "type": "t", "data": "x"}
    finally:
        sub.close()


def test_ndjson_frames_are_one_json_object_per_line(client, new_topic):
    nd = new_topic("nd")
    sub = client.subscribe("stream", nd)
    try:
        ids = [client.publish(nd, f"line\n{i}") for i in range(3)]
        evs = sub.events(3)
        assert [e["id"] for e in evs] == ids
        # The body is exactly the lines: no chunk framing left in it on any protocol.
        lines = [l for l in bytes(sub.stream.body).split(b"\n") if l.strip()]
        assert [json.loads(l)["id"] for l in lines] == ids
    finally:
        sub.close()


def test_poll_response_is_json_with_no_cache(broker):
    broker.publish("pj", "x")
    r = broker.poll("pj", since=0)
    assert r.status == 200
    assert (r.header("Content-Type") or "").startswith("application/json")
    assert "no-cache" in (r.header("Cache-Control") or "")


@pytest.mark.parametrize("transport", STREAMING_TRANSPORTS)
def test_heartbeat_is_sent_when_idle(broker_factory, transport):
    b = broker_factory("--heartbeat", "1")
    sub = open_subscriber(b, transport, "hb")
    try:
        t0 = time.monotonic()
        assert sub.wait_for("heartbeat", 4) is not None, f"no heartbeat in 4 s: {sub.seq}"
        assert sub.wait_for("heartbeat", 3) is not None, "heartbeats should repeat"
        assert time.monotonic() - t0 >= 0.9
        ev_id = b.publish("hb", "after heartbeats")
        assert sub.events(1)[0]["id"] == ev_id
    finally:
        sub.close()


def test_sse_heartbeat_is_a_comment_line(broker_factory):
    b = broker_factory("--heartbeat", "1")
    sub = open_subscriber(b, "sse", "hb")
    try:
        assert sub.wait_for("heartbeat", 4) is not None
        assert b": heartbeat\n\n" in bytes(sub.stream.body) or \
            b": heartbeat\r\n\r\n" in bytes(sub.stream.body), bytes(sub.stream.body)
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_multi_topic_subscription_gets_both_topics_in_id_order(broker, transport):
    sub = open_subscriber(broker, transport, ["mt/a", "mt/b"])
    try:
        sent = []
        for i in range(6):
            topic = "mt/a" if i % 2 == 0 else "mt/b"
            sent.append((broker.publish(topic, f"{topic}:{i}"), topic))
        broker.publish("mt/other", "not subscribed")
        evs = sub.events(6)
        assert [e["id"] for e in evs] == [i for i, _ in sent]
        assert [e["data"] for e in evs] == [f"{t}:{n}" for n, (_, t) in enumerate(sent)]
        if transport != "sse":
            assert [e["topic"] for e in evs] == [t for _, t in sent]
        sub.assert_no_event(0.5)
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_subscribe_endpoint_with_one_topic(broker, transport):
    sub = open_subscriber(broker, transport, ["one"], use_subscribe=True)
    try:
        ev_id = broker.publish("one", "x")
        assert sub.events(1)[0]["id"] == ev_id
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_subscriber_of_a_topic_does_not_see_other_topics(broker, transport):
    sub = open_subscriber(broker, transport, "iso/a")
    try:
        broker.publish("iso/b", "other")
        broker.publish("iso/a/child", "child is another topic")
        mine = broker.publish("iso/a", "mine")
        evs = sub.events(1)
        assert evs[0]["id"] == mine
        sub.assert_no_event(0.3)
    finally:
        sub.close()


@pytest.mark.parametrize("transport", ["sse", "stream"])
def test_transport_is_chosen_by_accept_header(broker, transport):
    sub = open_subscriber(broker, transport, "acc", by_accept=True)
    try:
        ctype = sub.stream.header("Content-Type") or ""
        want = {"sse": "text/event-stream", "stream": "application/x-ndjson"}[transport]
        assert ctype.startswith(want), ctype
        ev_id = broker.publish("acc", "x")
        assert sub.events(1)[0]["id"] == ev_id
    finally:
        sub.close()


def test_no_accept_and_no_transport_is_long_poll(broker):
    ev_id = broker.publish("acc", "x")
    r = broker.get("/topics/acc?since=0")
    assert r.status == 200 and (r.header("Content-Type") or "").startswith("application/json")
    assert [e["id"] for e in r.json()["events"]] == [ev_id]


def test_transport_query_wins_over_accept(broker):
    ev_id = broker.publish("acc", "x")
    r = broker.get("/topics/acc?since=0&transport=poll", headers={"Accept": "text/event-stream"})
    assert r.status == 200 and (r.header("Content-Type") or "").startswith("application/json")
    assert [e["id"] for e in r.json()["events"]] == [ev_id]


def test_unknown_transport_is_400(broker):
    assert_json_error(broker.get("/topics/a?transport=carrier-pigeon"), 400)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_many_events_arrive_complete_and_in_order(broker, transport):
    sub = open_subscriber(broker, transport, "bulk")
    try:
        ids = [broker.publish("bulk", f"{i}:" + "x" * (i * 37 % 3000)) for i in range(60)]
        evs = sub.events(60, timeout=15)
        assert [e["id"] for e in evs] == ids
        assert [e["data"] for e in evs] == [f"{i}:" + "x" * (i * 37 % 3000) for i in range(60)]
        assert ids_as_ints(evs) == sorted(ids_as_ints(evs))
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_several_subscribers_of_one_topic_each_get_every_event(broker, transport):
    subs = [open_subscriber(broker, transport, "fan") for _ in range(5)]
    try:
        ids = [broker.publish("fan", f"m{i}") for i in range(10)]
        for s in subs:
            assert [e["id"] for e in s.events(10)] == ids
    finally:
        for s in subs:
            s.close()


def test_too_many_topics_in_one_subscription_is_400(broker_factory):
    b = broker_factory("--max-topics", "3")
    ok = b.get("/subscribe?topic=a&topic=b&topic=c&since=0&timeout=1")
    assert ok.status == 200, ok
    assert_json_error(b.get("/subscribe?topic=a&topic=b&topic=c&topic=d&since=0&timeout=1"), 400)


def test_subscribe_without_topic_is_400(broker):
    assert_json_error(broker.get("/subscribe?since=0&timeout=1"), 400)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cr_lf_and_lone_cr_in_data(broker, transport):
    """SSE can't carry a CR: each CR LF, lone CR and LF ends a data: line, so an EventSource
    sees LF; stream and poll carry the data exactly."""
    sub = open_subscriber(broker, transport, "crlf")
    try:
        ev_id = broker.publish("crlf", "a\r\nb\rc\nd")
        [ev] = sub.events(1)
        assert ev["id"] == ev_id
        assert ev["data"] == ("a\nb\nc\nd" if transport == "sse" else "a\r\nb\rc\nd")
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_event_of_max_body_size_is_delivered_whole(broker, transport):
    data = ("0123456789abcdé\n" * (1048576 // 17 + 1)).encode()[:1048576]
    data = data.decode("utf-8", "ignore").encode()  # cut on a character boundary
    sub = open_subscriber(broker, transport, "huge")
    try:
        ev_id = broker.publish("huge", data)
        [ev] = sub.events(1, timeout=10)
        assert ev["id"] == ev_id and ev["data"].encode() == data
    finally:
        sub.close()


def test_fan_out_across_event_loops(broker_factory):
    """With 4 loops, subscribers spread over them all get every event in order."""
    b = broker_factory("--threads", "4")
    subs = [open_subscriber(b, t, "loops") for t in ("sse", "stream") * 6]
    try:
        ids = [b.publish("loops", f"m{i}") for i in range(30)]
        for s in subs:
            assert [e["id"] for e in s.events(30, timeout=10)] == ids, s.transport
    finally:
        for s in subs:
            s.close()


BIG = 200_000  # bytes per event in the slow-subscriber tests


def _publish_big(broker, topic, n):
    return [broker.publish(topic, f"{i:05d}" + "x" * (BIG - 5)) for i in range(n)]


@pytest.mark.parametrize("transport", STREAMING_TRANSPORTS)
def test_slow_subscriber_catches_up_from_history_without_loss(broker_factory, transport):
    """A subscriber that stops reading while ~12 MB are published (far past its queue limit and
    the socket buffers) later receives every event, in order, once."""
    b = broker_factory("--subscriber-queue-bytes", "16384")
    slow = open_subscriber(b, transport, "slow", rcvbuf=8192)
    try:
        t0 = time.monotonic()
        ids = _publish_big(b, "slow", 60)
        assert time.monotonic() - t0 < 20, "publishing must not wait for a slow subscriber"
        evs = slow.events(60, timeout=30)
        assert [e["id"] for e in evs] == ids
        assert [e["data"][:5] for e in evs] == [f"{i:05d}" for i in range(60)]
        assert all(len(e["data"]) == BIG for e in evs)
        assert slow.truncations == []
        live = b.publish("slow", "live again")
        assert [e["id"] for e in slow.events(1)] == [live]
    finally:
        slow.close()


@pytest.mark.parametrize("transport", STREAMING_TRANSPORTS)
def test_slow_subscriber_past_retention_gets_truncation_signal_not_a_silent_gap(
        broker_factory, transport):
    b = broker_factory("--subscriber-queue-bytes", "16384", "--history", "5")
    slow = open_subscriber(b, transport, "slow", rcvbuf=8192)
    try:
        ids = _publish_big(b, "slow", 60)
        got = []
        deadline = time.monotonic() + 30
        while not (got and got[-1][0] == "event" and got[-1][1]["id"] == ids[-1]):
            item = slow.next_item(max(0.0, deadline - time.monotonic()))
            assert item is not None, \
                f"stream stalled after {[(k, v.get('id')) for k, v in got][-5:]}"
            got.append(item)
        events = [v for k, v in got if k == "event"]
        ev_ids = [e["id"] for e in events]
        assert ev_ids == sorted(ev_ids, key=int) and len(set(ev_ids)) == len(ev_ids), ev_ids
        assert set(ev_ids) <= set(ids)
        # Every jump over published ids is announced by a signal just before it.
        prev = pending_signal = None
        for k, v in got:
            if k == "truncated":
                sig = {m: v[m] for m in ("topic", "since", "oldest")}
                assert sig["topic"] == "slow", sig
                assert prev is None or sig["since"] == prev, (sig, prev)
                pending_signal = sig
                continue
            expected_next = ids[ids.index(prev) + 1] if prev else ids[0]
            if v["id"] != expected_next:
                assert pending_signal is not None, f"silent gap: {prev} -> {v['id']}"
                assert pending_signal["oldest"] == v["id"], (pending_signal, v["id"])
            pending_signal = None
            prev = v["id"]
        assert len(ev_ids) < len(ids), "the subscriber was never slow enough to fall behind"
        assert slow.truncations, "a subscriber past retention must get the truncation signal"
    finally:
        slow.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_live_events_of_concurrent_publishers_arrive_in_id_order(broker_factory, transport):
    """Four threads publish to four topics through four event loops; a subscriber of all four
    gets every event once, in strictly increasing id order."""
    b = broker_factory("--threads", "4")
    topics = [f"conc/{k}" for k in range(4)]
    sub = open_subscriber(b, transport, topics)
    pubs = [Publisher(b, [t], 50, prefix=f"{t}:") for t in topics]
    for p in pubs:
        p.start()
    try:
        ids = sorted((i for p in pubs for i in p.finish()), key=int)
        evs = sub.events(len(ids), timeout=20)
        assert [e["id"] for e in evs] == ids
        sub.assert_no_event(0.3)
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_replay_merges_many_topics_in_id_order(broker, transport):
    topics = [f"merge/{k}" for k in range(10)]
    ids = [broker.publish(topics[(i * 7) % 10], f"m{i}") for i in range(60)]
    sub = open_subscriber(broker, transport, topics, since=0,
                          limit=9 if transport == "poll" else None)
    try:
        assert [e["id"] for e in sub.events(60, timeout=10)] == ids
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_topic_named_twice_in_a_subscription_delivers_each_event_once(broker, transport):
    ids = [broker.publish("twice", "old")]
    sub = open_subscriber(broker, transport, ["twice", "twice"], since=0)
    try:
        ids.append(broker.publish("twice", "new"))
        assert [e["id"] for e in sub.events(2)] == ids
        sub.assert_no_event(0.5)
    finally:
        sub.close()


def test_topics_are_case_sensitive(broker):
    lower = broker.publish("case", "lower")
    upper = broker.publish("CASE", "upper")
    assert [e["id"] for e in broker.poll_json("case", since=0)["events"]] == [lower]
    assert [e["id"] for e in broker.poll_json("CASE", since=0)["events"]] == [upper]


@pytest.mark.parametrize("pad", ["abc", "-5"])
def test_bad_pad_is_400(broker, pad):
    assert_json_error(broker.get(f"/topics/p?transport=sse&pad={pad}",
                                 headers={"Accept": "text/event-stream"}), 400)


@pytest.mark.parametrize("transport", STREAMING_TRANSPORTS)
def test_one_event_reaches_a_hundred_subscribers(broker, transport):
    subs = [open_subscriber(broker, transport, "many") for _ in range(100)]
    try:
        ev_id = broker.publish("many", "to all")
        for s in subs:
            assert [e["id"] for e in s.events(1)] == [ev_id]
    finally:
        for s in subs:
            s.close()


def test_default_max_topics_is_64(broker):
    q = "&".join(f"topic=t{k}" for k in range(64))
    assert broker.get(f"/subscribe?{q}&since=0&transport=poll&timeout=1").status == 200
    assert_json_error(broker.get(f"/subscribe?{q}&topic=t64&since=0&transport=poll&timeout=1"), 400)


def test_pad_of_65536_is_honoured(broker):
    sub = open_subscriber(broker, "sse", "p", query={"pad": 65536})
    try:
        prefix = _prefix_before_retry(sub)
        assert 65536 - 4 <= len(prefix) <= 65536 + 64, len(prefix)
    finally:
        sub.close()
