"""POST /topics/{topic}: acknowledgement, ids, validation of topic, type and data, errors; on
HTTP/1.1, h2c and TLS h2 alike, then what only HTTP/1.1 framing has."""

import json
import os
import shutil
import subprocess
import time

import pytest

from harness import assert_json_error, parse_responses, raw_exchange


# ---- on every protocol: one broker per module, each test on topics of its own -------------


def assert_nothing_stored(client, topic):
    """No event of `topic` was stored: the next one published is its first (ids are assigned in
    commit order, so a refused event stored late would still come before it)."""
    ev_id = client.publish(topic, "after")
    assert [e["id"] for e in client.poll_json(topic, since=0)["events"]] == [ev_id]


def test_publish_answers_201_with_json_id_and_topic(client, new_topic):
    topic = new_topic("chat/room-1")
    r = client.publish_raw(topic, "hello", type="message")
    assert r.status == 201, r
    assert (r.header("Content-Type") or "").startswith("application/json"), r
    body = r.json()
    assert set(body) == {"id", "topic"}, body
    assert body["topic"] == topic
    assert isinstance(body["id"], str) and body["id"].isdigit() and int(body["id"]) > 0, body


def test_published_event_is_readable_with_its_data_and_type(client, new_topic):
    topic = new_topic("news")
    ev_id = client.publish(topic, "hello", type="message")
    body = client.poll_json(topic, since=0)
    assert body["events"] == [{"id": ev_id, "topic": topic, "type": "message", "data": "hello"}]


def test_event_without_type_has_no_type_member(client, new_topic):
    topic = new_topic("news")
    ev_id = client.publish(topic, "plain")
    body = client.poll_json(topic, since=0)
    assert body["events"] == [{"id": ev_id, "topic": topic, "data": "plain"}]


def test_ids_strictly_increase_across_topics(client, new_topic):
    names = {t: new_topic(t) for t in ("a", "b", "c/d", "e.f~g_h-i")}
    topics = [names[t] for t in ["a", "b", "a", "c/d", "b", "a", "e.f~g_h-i"]]
    ids = [int(client.publish(t, f"m{i}")) for i, t in enumerate(topics)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids


def test_empty_data_is_accepted(client, new_topic):
    topic = new_topic("empty")
    ev_id = client.publish(topic, b"")
    body = client.poll_json(topic, since=0)
    assert [(e["id"], e["data"]) for e in body["events"]] == [(ev_id, "")]


@pytest.mark.parametrize("type_", ["message", "a", "A.b:c-d_9", "x" * 64])
def test_valid_type_is_accepted(client, new_topic, type_):
    topic = new_topic("typed")
    ev_id = client.publish(topic, "d", type=type_)
    body = client.poll_json(topic, since=0)
    assert [(e["id"], e.get("type")) for e in body["events"]] == [(ev_id, type_)]


@pytest.mark.parametrize("type_", ["", "x" * 65, "has space", "semi;colon", "slash/y", "ünï",
                                   "herald.truncated", "herald.anything"],
                         ids=["empty", "65-bytes", "space", "semicolon", "slash", "non-ascii",
                              "reserved-herald.truncated", "reserved-herald.prefix"])
def test_bad_type_is_rejected_with_400(client, new_topic, type_):
    topic = new_topic("typed")
    r = client.publish_raw(topic, "d", type=type_)
    assert_json_error(r, 400)
    assert_nothing_stored(client, topic)


@pytest.mark.parametrize("topic", ["a", "chat/room-1", "sensors/7/temp", "A-Z_a.z~0", "..a/b..",
                                   "t" * 255, "/".join(["s"] * 128)],
                         ids=["one-char", "two-segments", "three-segments", "all-char-classes",
                              "dots-inside-segment", "255-bytes", "128-segments"])
def test_valid_topic_is_accepted(client, topic):
    # These exact names are shared by the protocols' runs: read from just before the event.
    ev_id = client.publish(topic, "x")
    body = client.poll_json(topic, since=int(ev_id) - 1)
    assert [(e["id"], e["topic"]) for e in body["events"]] == [(ev_id, topic)]


BAD_TOPICS = {
    "double-slash": "a//b",
    "leading-slash-dotdot": "/..",
    "dotdot": "..",
    "dot": ".",
    "dot-segment": "a/./b",
    "dotdot-segment": "a/../b",
    "trailing-slash": "a/",
    "leading-slash": "/a",
    "256-bytes": "t" * 256,
    "bad-char-star": "a*b",
    "bad-char-dollar": "a$b",
    "bad-char-comma": "a,b",
    "bad-char-colon": "a:b",
    "percent-encoded-space": "a%20b",
}


@pytest.mark.parametrize("topic", list(BAD_TOPICS.values()), ids=list(BAD_TOPICS))
def test_bad_topic_is_rejected_with_400_on_publish(client, topic):
    assert_json_error(client.publish_raw(topic, "x"), 400)
    client.assert_healthy()


@pytest.mark.parametrize("topic", ["a//b", "/..", "a/../b", "t" * 256, "a*b"],
                         ids=["double-slash", "leading-slash-dotdot", "dotdot-segment",
                              "256-bytes", "bad-char"])
def test_bad_topic_is_rejected_with_400_on_subscribe(client, topic):
    assert_json_error(client.get(f"/topics/{topic}?since=0&timeout=1"), 400)
    assert_json_error(client.get(f"/subscribe?topic={topic}&since=0&timeout=1"), 400)


def test_empty_topic_path_is_not_a_topic(client):
    r = client.request("POST", "/topics/", body=b"x")
    assert r.status in (400, 404), r
    assert_json_error(r, r.status)


@pytest.mark.parametrize("data", [b"\xff\xfe", b"ok then \xc3", b"\xc0\xaf", b"\xed\xa0\x80",
                                  b"\xf4\x90\x80\x80"],
                         ids=["invalid-bytes", "truncated-sequence", "overlong", "surrogate",
                              "above-U+10FFFF"])
def test_non_utf8_data_is_rejected_with_400(client, new_topic, data):
    topic = new_topic("bin")
    assert_json_error(client.publish_raw(topic, data), 400)
    assert_nothing_stored(client, topic)


@pytest.fixture(scope="module")
def small_body_broker(module_broker_factory):
    return module_broker_factory("--max-body", "1024", tls=True)


def test_data_at_max_body_is_accepted_and_over_it_is_413(small_body_broker, connect, new_topic):
    c = connect(small_body_broker)
    topic = new_topic("big")
    ev_id = c.publish(topic, "x" * 1024)
    body = c.poll_json(topic, since=0)
    assert [(e["id"], len(e["data"])) for e in body["events"]] == [(ev_id, 1024)]
    assert_json_error(c.publish_raw(topic, "y" * 1025), 413)
    assert_json_error(c.publish_raw(topic, "z" * 100_000), 413)
    assert len(c.poll_json(topic, since=0)["events"]) == 1
    c.assert_healthy()
    if c.protocol != "h1":
        # A 413 ends the stream, never the connection (HTTP/1.1 closes: see below).
        assert c.connections_opened == 1, "the HTTP/2 connection did not outlive the 413s"


def test_413_closes_an_http1_connection(small_body_broker):
    req = (b"POST /topics/big-h1 HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
           b"Content-Length: 1025\r\n\r\n" + b"y" * 1025)
    res = raw_exchange(small_body_broker.port, req, timeout=5)
    resps = res.responses()
    assert resps, res
    assert_json_error(resps[0], 413)
    assert res.closed, "connection should be closed after a 413"
    assert_nothing_stored(small_body_broker, "big-h1")
    small_body_broker.assert_healthy()


@pytest.mark.parametrize("method", ["DELETE", "PUT", "PATCH"])
def test_wrong_method_on_topic_is_405_with_allow(client, method):
    r = client.request(method, "/topics/x", body=b"" if method != "DELETE" else None)
    assert_json_error(r, 405)
    allow = {m.strip().upper() for m in (r.header("Allow") or "").split(",")}
    assert {"GET", "POST"} <= allow, f"Allow: {r.header('Allow')!r}"
    assert method not in allow


def test_post_on_subscribe_is_405_with_allow(client):
    r = client.request("POST", "/subscribe?topic=a", body=b"x")
    assert_json_error(r, 405)
    assert "GET" in (r.header("Allow") or ""), r


@pytest.mark.parametrize("path", ["/", "/nope", "/topic/x", "/topicsx/y", "/healthz/extra"])
def test_unknown_path_is_404(client, path):
    assert_json_error(client.get(path), 404)


def test_publish_is_delivered_once_only_to_its_topic(client, new_topic):
    scoped = new_topic("scoped")
    a = client.publish(f"{scoped}/a", "for a")
    client.publish(f"{scoped}/b", "for b")
    body = client.poll_json(f"{scoped}/a", since=0)
    assert [(e["id"], e["data"]) for e in body["events"]] == [(a, "for a")]


# ---- HTTP/1.1 framing --------------------------------------------------------------------


def test_chunked_request_body_is_accepted(broker):
    req = (b"POST /topics/chunky?type=t HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    res = raw_exchange(broker.port, req, until_responses=1)
    resps = res.responses()
    assert resps and resps[0].status == 201, res
    body = broker.poll_json("chunky", since=0)
    assert [e["data"] for e in body["events"]] == ["hello world"]


def test_keep_alive_publishes_on_one_connection(broker):
    reqs = b"".join(
        b"POST /topics/ka HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nm" + str(i).encode()
        for i in range(5))
    res = raw_exchange(broker.port, reqs, until_responses=5)
    resps = parse_responses(res.data)
    assert [r.status for r in resps] == [201] * 5, res
    ids = [int(r.json()["id"]) for r in resps]
    assert ids == sorted(ids) and len(set(ids)) == 5
    stored = broker.poll_json("ka", since=0)["events"]
    assert [e["data"] for e in stored] == [f"m{i}" for i in range(5)]


def test_curl_publish_of_a_larger_body_is_not_delayed_by_expect_100_continue(broker, workdir):
    """curl sends `Expect: 100-continue` for larger bodies and waits up to 1 s for the interim
    100 answer before sending the body anyway."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl not installed")
    path = os.path.join(workdir, "body.txt")
    with open(path, "w") as f:
        f.write("y" * 5000)
    t0 = time.monotonic()
    p = subprocess.run([curl, "-sS", "-H", "Expect: 100-continue", "-X", "POST", "--data-binary",
                        "@" + path, f"{broker.url}/topics/curl?type=file"],
                       capture_output=True, timeout=10)
    elapsed = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    ack = json.loads(p.stdout)
    assert ack["topic"] == "curl"
    assert elapsed < 0.9, f"publish took {elapsed:.2f} s: no 100 Continue sent"
    assert [len(e["data"]) for e in broker.poll_json("curl", since=0)["events"]] == [5000]
