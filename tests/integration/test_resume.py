"""Cursors: Last-Event-ID and ?since=, replay then live with no gap or duplicate at the seam,
multi-topic resume with one id; each on every transport over HTTP/1.1, h2c and TLS h2, against
one broker per module (each test on topics of its own). The retention truncation signal is in
test_truncation.py."""

import time

import pytest

from harness import TRANSPORTS, Publisher, assert_json_error, sub_path


def _publish_n(client, topic, n, prefix="m"):
    return [client.publish(topic, f"{prefix}{i}") for i in range(n)]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_last_event_id_header_resumes_after_that_event(client, new_topic, transport):
    res = new_topic("res")
    ids = _publish_n(client, res, 5)
    sub = client.subscribe(transport, res, last_event_id=ids[1])
    try:
        evs = sub.events(3)
        assert [e["id"] for e in evs] == ids[2:]
        assert [e["data"] for e in evs] == ["m2", "m3", "m4"]
        live = client.publish(res, "live")
        assert [e["id"] for e in sub.events(1)] == [live]
        sub.assert_no_event(0.3)
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_since_query_resumes_after_that_event(client, new_topic, transport):
    res = new_topic("res")
    ids = _publish_n(client, res, 5)
    sub = client.subscribe(transport, res, since=ids[2])
    try:
        assert [e["id"] for e in sub.events(2)] == ids[3:]
        live = client.publish(res, "live")
        assert [e["id"] for e in sub.events(1)] == [live]
        sub.assert_no_event(0.3)
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_last_event_id_header_wins_over_since_query(client, new_topic, transport):
    res = new_topic("res")
    ids = _publish_n(client, res, 5)
    sub = client.subscribe(transport, res, since=0, last_event_id=ids[2])
    try:
        assert [e["id"] for e in sub.events(2)] == ids[3:]
        sub.assert_no_event(0.3)
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_since_zero_replays_all_retained_history(client, new_topic, transport):
    res = new_topic("res")
    ids = _publish_n(client, res, 7)
    sub = client.subscribe(transport, res, since=0)
    try:
        evs = sub.events(7)
        assert [e["id"] for e in evs] == ids
        assert [e["data"] for e in evs] == [f"m{i}" for i in range(7)]
        assert sub.truncations == []
        sub.assert_no_event(0.3)
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_no_cursor_gets_only_new_events(client, new_topic, transport):
    res = new_topic("res")
    _publish_n(client, res, 3, prefix="old")
    sub = client.subscribe(transport, res)
    try:
        new = client.publish(res, "new")
        evs = sub.events(1)
        assert [(e["id"], e["data"]) for e in evs] == [(new, "new")]
        sub.assert_no_event(0.3)
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cursor_newer_than_newest_event_is_treated_as_newest(client, new_topic, transport):
    def wait_for_held_polls(n):
        line = f'herald_subscribers{{transport="poll"}} {n}'
        deadline = time.monotonic() + 10
        while line not in client.get("/metrics").body.decode().splitlines():
            assert time.monotonic() < deadline, f"not {n} polls held within 10 s"
            time.sleep(0.01)

    res = new_topic("res")
    ids = _publish_n(client, res, 3)
    if transport == "poll":
        # The broker is shared by the module: earlier tests' polls may still be held.
        wait_for_held_polls(0)  # so that the only poll counted below is this test's
    sub = client.subscribe(transport, res, since=int(ids[-1]) + 1000)
    try:
        if transport == "poll":
            # The broker clamps the cursor to the newest id when it takes the poll, so an event
            # committed before then is not newer than it: publish once the poll is counted.
            wait_for_held_polls(1)
        new = client.publish(res, "new")
        assert [e["id"] for e in sub.events(1)] == [new]
        sub.assert_no_event(0.3)
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cursor_with_no_events_after_it_waits_for_live(client, new_topic, transport):
    res = new_topic("res")
    ids = _publish_n(client, res, 3)
    sub = client.subscribe(transport, res, since=ids[-1])
    try:
        sub.assert_no_event(0.5)
        new = client.publish(res, "new")
        assert [e["id"] for e in sub.events(1)] == [new]
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("cursor", ["since", "last-event-id"])
def test_multi_topic_resume_with_one_id(client, new_topic, transport, cursor):
    mr = new_topic("mr")
    a1 = client.publish(f"{mr}/a", "a1")
    b1 = client.publish(f"{mr}/b", "b1")
    a2 = client.publish(f"{mr}/a", "a2")
    client.publish(f"{mr}/c", "c-not-subscribed")
    b2 = client.publish(f"{mr}/b", "b2")
    a3 = client.publish(f"{mr}/a", "a3")
    kw = {"since": b1} if cursor == "since" else {"last_event_id": b1}
    sub = client.subscribe(transport, [f"{mr}/a", f"{mr}/b"], **kw)
    try:
        evs = sub.events(3)
        assert [e["id"] for e in evs] == [a2, b2, a3]
        assert [e["data"] for e in evs] == ["a2", "b2", "a3"]
        sub.assert_no_event(0.3)
        assert int(a1) < int(b1)
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("cursor", ["since-0", "mid-history"])
@pytest.mark.parametrize("topics", [["seam"], ["seam/a", "seam/b"]],
                         ids=["one-topic", "two-topics"])
def test_replay_to_live_seam_has_no_gap_or_duplicate(client, new_topic, transport, cursor, topics):
    """Two publisher threads keep publishing while the subscription starts, so the switch from
    replay to live happens under load."""
    seam = new_topic("seam")
    topics = [t.replace("seam", seam, 1) for t in topics]
    before = [client.publish(topics[i % len(topics)], f"pre{i}") for i in range(20)]
    pubs = [Publisher(client, topics[k % len(topics)], None, signal_after=5, prefix=f"p{k}-")
            for k in range(2)]
    for p in pubs:
        p.start()
    for p in pubs:
        p.started_publishing.wait(10)
    if cursor == "since-0":
        sub = client.subscribe(transport, topics, since=0)
        expect_from = 0
    else:
        sub = client.subscribe(transport, topics, last_event_id=before[9])
        expect_from = 10
    at_open = sum(len(p.ids) for p in pubs)
    time.sleep(0.5)  # keep publishing after the subscription started
    for p in pubs:
        p.stop()
    try:
        published = before + [i for p in pubs for i in p.finish()]
        assert len(published) - len(before) > at_open, "publishing went on after subscribing"
        expected = sorted(published, key=int)[expect_from:]
        evs = sub.events_until(expected[-1], timeout=20)
        got = [e["id"] for e in evs]
        dups = sorted({i for i in got if got.count(i) > 1}, key=int)
        missing = sorted(set(expected) - set(got), key=int)
        assert not dups and not missing, f"duplicates {dups[:10]}, missing {missing[:10]}"
        assert got == expected
        sub.assert_no_event(0.3)
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("how", ["since-abc", "since-negative", "since-hex", "last-event-id-abc"])
def test_bad_cursor_is_400(client, transport, how):
    headers = {"Accept": {"sse": "text/event-stream", "stream": "application/x-ndjson",
                          "poll": "application/json"}[transport]}
    query = {"transport": transport, "timeout": 1}
    if how == "last-event-id-abc":
        headers["Last-Event-ID"] = "abc"
    else:
        query["since"] = {"since-abc": "abc", "since-negative": "-1", "since-hex": "0x10"}[how]
    r = client.get(sub_path("bad", **query), headers=headers)
    assert_json_error(r, 400)


def test_cursor_beyond_64_bits_is_handled(client):
    """Not a valid id (ids are 64-bit); either rejected or treated as newest, never a crash."""
    r = client.poll("big", since="99999999999999999999999", timeout=1)
    assert r.status in (200, 400), r
    if r.status == 400:
        assert_json_error(r, 400)
    client.assert_healthy()


