"""Long-poll: immediate answers, holding, timeout, limit, and consecutive polls by last_id; on
HTTP/1.1, h2c and TLS h2 alike, against one broker per module (each test on topics of its
own)."""

import socket
import threading
import time

import pytest

from harness import Publisher, assert_json_error


def test_answers_at_once_when_events_exist(client, new_topic):
    lp = new_topic("lp")
    ids = [client.publish(lp, f"m{i}") for i in range(3)]
    t0 = time.monotonic()
    body = client.poll_json(lp, since=0, timeout=10)
    assert time.monotonic() - t0 < 1.5, "must not hold when events exist"
    assert [e["id"] for e in body["events"]] == ids
    assert body["events"][0] == {"id": ids[0], "topic": lp, "data": "m0"}
    assert body["last_id"] == ids[-1]


def test_holds_then_answers_empty_after_timeout_with_cursor_as_last_id(client, new_topic):
    lp = new_topic("lp")
    ids = [client.publish(lp, f"m{i}") for i in range(2)]
    t0 = time.monotonic()
    body = client.poll_json(lp, since=ids[-1], timeout=1)
    elapsed = time.monotonic() - t0
    assert 0.8 <= elapsed <= 3.0, f"held {elapsed:.2f} s for ?timeout=1"
    assert body["events"] == []
    assert body["last_id"] == ids[-1]


def test_poll_without_cursor_times_out_with_newest_id_usable_next(client, new_topic):
    lp = new_topic("lp")
    ids = [client.publish(lp, f"m{i}") for i in range(3)]
    t0 = time.monotonic()
    body = client.poll_json(lp, timeout=1)
    assert 0.8 <= time.monotonic() - t0 <= 3.0
    assert body["events"] == []
    assert body["last_id"] == ids[-1], "no cursor: last_id is the newest id when received"
    new = client.publish(lp, "next")
    body2 = client.poll_json(lp, since=body["last_id"], timeout=5)
    assert [e["id"] for e in body2["events"]] == [new]


def test_poll_without_cursor_does_not_return_old_events(client, new_topic):
    lp = new_topic("lp")
    for i in range(3):
        client.publish(lp, f"old{i}")
    result = {}

    def poll():
        result["body"] = client.poll_json(lp, timeout=5)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    time.sleep(0.4)
    new = client.publish(lp, "new")
    t.join(6)
    assert [e["id"] for e in result["body"]["events"]] == [new]
    assert result["body"]["last_id"] == new


def test_event_published_while_held_completes_the_poll_promptly(client, new_topic):
    lp = new_topic("lp")
    ids = [client.publish(lp, "m0")]
    result = {}

    def poll():
        t0 = time.monotonic()
        result["body"] = client.poll_json(lp, since=ids[-1], timeout=20)
        result["done_at"] = time.monotonic()
        result["t0"] = t0

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    time.sleep(0.5)
    published_at = time.monotonic()
    new = client.publish(lp, "wake up", type="alarm")
    t.join(5)
    assert not t.is_alive(), "poll not completed by the publish"
    assert result["done_at"] - published_at < 1.0
    assert result["body"]["events"] == [
        {"id": new, "topic": lp, "type": "alarm", "data": "wake up"}]
    assert result["body"]["last_id"] == new


def test_multi_topic_poll_is_completed_by_either_topic(client, new_topic):
    lp = new_topic("lp")
    cur = client.publish(f"{lp}/x", "start")
    result = {}

    def poll():
        result["body"] = client.poll_json([f"{lp}/a", f"{lp}/b"], since=cur, timeout=10)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    time.sleep(0.4)
    client.publish(f"{lp}/x", "not subscribed")
    new = client.publish(f"{lp}/b", "b")
    t.join(5)
    assert [e["id"] for e in result["body"]["events"]] == [new]


def test_limit_returns_oldest_first_and_last_id_continues(client, new_topic):
    lp = new_topic("lp")
    ids = [client.publish(lp, f"m{i}") for i in range(5)]
    b1 = client.poll_json(lp, since=0, limit=2, timeout=1)
    assert [e["id"] for e in b1["events"]] == ids[:2] and b1["last_id"] == ids[1]
    b2 = client.poll_json(lp, since=b1["last_id"], limit=2, timeout=1)
    assert [e["id"] for e in b2["events"]] == ids[2:4] and b2["last_id"] == ids[3]
    b3 = client.poll_json(lp, since=b2["last_id"], limit=2, timeout=1)
    assert [e["id"] for e in b3["events"]] == ids[4:]


def test_default_limit_is_100(client, new_topic):
    lp = new_topic("lp")
    ids = [client.publish(lp, f"m{i}") for i in range(105)]
    body = client.poll_json(lp, since=0, timeout=1)
    assert [e["id"] for e in body["events"]] == ids[:100]
    assert body["last_id"] == ids[99]


@pytest.mark.parametrize("limit", ["abc", "-1"])
def test_bad_limit_is_400(client, new_topic, limit):
    lp = new_topic("lp")
    assert_json_error(client.poll(lp, since=0, limit=limit, timeout=1), 400)


@pytest.mark.parametrize("timeout", ["abc", "-1"])
def test_bad_timeout_is_400(client, new_topic, timeout):
    lp = new_topic("lp")
    assert_json_error(client.get(f"/topics/{lp}?since=0&transport=poll&timeout={timeout}"), 400)


def test_consecutive_polls_by_last_id_never_lose_or_repeat_events(client, new_topic):
    """A publisher thread publishes 200 events to two topics while a client polls from
    last_id to last_id with small limits."""
    lp = new_topic("lp")
    start = client.publish(f"{lp}/a", "before")
    pub = Publisher(client, [f"{lp}/a", f"{lp}/b"], 200)
    pub.start()
    got, since, polls = [], start, 0
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        body = client.poll_json([f"{lp}/a", f"{lp}/b"], since=since, limit=7, timeout=1)
        polls += 1
        got += [e["id"] for e in body["events"]]
        if body["events"]:
            assert body["last_id"] == body["events"][-1]["id"]
        else:
            assert body["last_id"] == since
        since = body["last_id"]
        if not pub.is_alive() and len(got) >= 200:
            break
    ids = pub.finish()
    expected = sorted(ids, key=int)
    dups = sorted({i for i in got if got.count(i) > 1}, key=int)
    missing = sorted(set(expected) - set(got), key=int)
    assert not dups and not missing, f"dups {dups[:10]} missing {missing[:10]} in {polls} polls"
    assert got == expected


def test_response_headers(client, new_topic):
    lp = new_topic("lp")
    r = client.poll(lp, since=0, timeout=1)
    assert r.status == 200
    assert (r.header("Content-Type") or "").startswith("application/json")
    assert "no-cache" in (r.header("Cache-Control") or ""), r.headers


def test_held_poll_of_client_that_went_away_does_not_disturb_others(proto_broker, new_topic):
    broker, lp = proto_broker, new_topic("lp")
    cur = broker.publish(lp, "m0")
    s = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
    s.sendall(f"GET /topics/{lp}?since={cur}&timeout=20 HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    time.sleep(0.3)
    s.close()
    time.sleep(0.2)
    new = broker.publish(lp, "m1")
    body = broker.poll_json(lp, since=cur, timeout=2)
    assert [e["id"] for e in body["events"]] == [new]
    broker.assert_healthy()


@pytest.fixture(scope="module")
def short_poll(module_broker_factory):
    return module_broker_factory("--poll-timeout", "1", tls=True)


def test_poll_timeout_default_is_poll_timeout_flag(short_poll, connect, new_topic):
    b = connect(short_poll)
    lp = new_topic("lp")
    cur = b.publish(lp, "m0")
    t0 = time.monotonic()
    body = b.poll_json(lp, since=cur, timeout=None)
    assert 0.8 <= time.monotonic() - t0 <= 3.0
    assert body["events"] == [] and body["last_id"] == cur


def test_limit_above_1000_is_capped_or_rejected(client, new_topic):
    cap = new_topic("cap")
    pubs = [Publisher(client, cap, 260, prefix=f"p{k}-") for k in range(4)]
    for p in pubs:
        p.start()
    for p in pubs:
        p.finish()
    r = client.poll(cap, since=0, limit=5000)
    if r.status == 400:
        assert_json_error(r, 400)
        return
    assert r.status == 200
    assert len(r.json()["events"]) == 1000, "max 1000 events per poll"


def test_last_id_of_a_cursor_past_the_newest_event_loses_nothing_next(client, new_topic):
    ahead = new_topic("ahead")
    ids = [client.publish(ahead, f"m{i}") for i in range(2)]
    body = client.poll_json(ahead, since=int(ids[-1]) + 1000, timeout=1)
    assert body["events"] == []
    new = client.publish(ahead, "next")
    body2 = client.poll_json(ahead, since=body["last_id"], timeout=2)
    assert [e["id"] for e in body2["events"]] == [new], \
        f"last_id {body['last_id']} of a poll past the newest event skips the next event"


@pytest.fixture(scope="module")
def big_poll(module_broker_factory):
    """A broker whose poll answers are bounded far above the test's data (64 MiB), so a
    `?timeout=0` poll must wait for a long history read to answer anything."""
    return module_broker_factory("--poll-max-bytes", str(64 << 20), tls=True)


def test_timeout_zero_answers_with_what_exists_after_the_cursor(big_poll, connect, new_topic):
    # A timeout=0 poll used to be answered by the next 250 ms tick, before its history read
    # finished: "events":[] while 48 MB of events existed after the cursor.
    b = connect(big_poll)
    big = new_topic("big")
    data = "x" * (500 << 10)
    ids = [b.publish(big, f"{i}:{data}") for i in range(96)]
    for attempt in range(3):
        body = b.poll_json(big, since=0, timeout=0, limit=1000)
        assert [e["id"] for e in body["events"]] == ids, \
            f"attempt {attempt}: {len(body['events'])} of {len(ids)} events"
        assert body["last_id"] == ids[-1]


def test_timeout_zero_without_events_answers_empty_with_the_cursor(client, new_topic):
    lp = new_topic("lp")
    cur = client.publish(lp, "m0")
    body = client.poll_json(lp, since=cur, timeout=0)
    assert body == {"events": [], "last_id": cur}
    body = client.poll_json(lp, timeout=0)
    assert body["events"] == [] and body["last_id"] == cur


def test_answer_is_bounded_in_bytes_and_last_id_continues(client, new_topic):
    # An answer was bounded only by ?limit= x --max-body (one poll held ~1 GB); now at most
    # --poll-max-bytes (1 MiB by default) past its first event.
    big = new_topic("big")
    data = "y" * (300 << 10)
    ids = [client.publish(big, f"{i}:{data}") for i in range(10)]
    got = []
    cursor = "0"
    for _ in range(len(ids)):
        r = client.poll(big, since=cursor, timeout=0, limit=1000)
        assert r.status == 200
        assert len(r.body) <= (1 << 20) + (300 << 10) + 4096, f"answer of {len(r.body)} bytes"
        body = r.json()
        assert body["events"], "an answer after a cursor with events has at least one"
        got += [e["id"] for e in body["events"]]
        cursor = body["last_id"]
        if cursor == ids[-1]:
            break
    assert got == ids
    assert len(got) > 3, "the bound must not starve the answer"


@pytest.fixture(scope="module")
def tiny_poll(module_broker_factory):
    return module_broker_factory("--poll-max-bytes", "1024", tls=True)


def test_events_larger_than_the_bound_come_one_per_answer(tiny_poll, connect, new_topic):
    c = connect(tiny_poll)
    t = new_topic("one")
    ids = [c.publish(t, "z" * 5000) for _ in range(3)]
    body = c.poll_json(t, since=0, timeout=0, limit=1000)
    assert [e["id"] for e in body["events"]] == ids[:1]
    body = c.poll_json(t, since=ids[0], timeout=5, limit=1000)
    assert [e["id"] for e in body["events"]] == ids[1:2]
    # A held poll: the first live event answers it; the next poll continues after it.
    held = c.begin("GET", f"/topics/{t}?since={ids[-1]}&timeout=10&limit=1000")
    time.sleep(0.3)
    p = connect(tiny_poll)
    more = [p.publish(t, "w" * 5000) for _ in range(2)]
    first = held.response().json()
    assert [e["id"] for e in first["events"]] == more[:1]
    body = c.poll_json(t, since=first["last_id"], timeout=5, limit=1000)
    assert [e["id"] for e in body["events"]] == more[1:]
