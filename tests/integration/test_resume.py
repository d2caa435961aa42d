"""Cursors: Last-Event-ID and ?since=, replay then live with no gap or duplicate at the seam,
multi-topic resume with one id, and the retention truncation signal."""

import time

import pytest

from harness import TRANSPORTS, Publisher, assert_json_error, open_subscriber, sub_path


def _publish_n(broker, topic, n, prefix="m"):
    return [broker.publish(topic, f"{prefix}{i}") for i in range(n)]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_last_event_id_header_resumes_after_that_event(broker, transport):
    ids = _publish_n(broker, "res", 5)
    sub = open_subscriber(broker, transport, "res", last_event_id=ids[1])
    try:
        evs = sub.events(3)
        assert [e["id"] for e in evs] == ids[2:]
        assert [e["data"] for e in evs] == ["m2", "m3", "m4"]
        live = broker.publish("res", "live")
        assert [e["id"] for e in sub.events(1)] == [live]
        sub.assert_no_event(0.3)
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_since_query_resumes_after_that_event(broker, transport):
    ids = _publish_n(broker, "res", 5)
    sub = open_subscriber(broker, transport, "res", since=ids[2])
    try:
        assert [e["id"] for e in sub.events(2)] == ids[3:]
        live = broker.publish("res", "live")
        assert [e["id"] for e in sub.events(1)] == [live]
        sub.assert_no_event(0.3)
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_last_event_id_header_wins_over_since_query(broker, transport):
    ids = _publish_n(broker, "res", 5)
    sub = open_subscriber(broker, transport, "res", since=0, last_event_id=ids[2])
    try:
        assert [e["id"] for e in sub.events(2)] == ids[3:]
        sub.assert_no_event(0.3)
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_since_zero_replays_all_retained_history(broker, transport):
    ids = _publish_n(broker, "res", 7)
    sub = open_subscriber(broker, transport, "res", since=0)
    try:
        evs = sub.events(7)
        assert [e["id"] for e in evs] == ids
        assert [e["data"] for e in evs] == [f"m{i}" for i in range(7)]
        assert sub.truncations == []
        sub.assert_no_event(0.3)
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_no_cursor_gets_only_new_events(broker, transport):
    _publish_n(broker, "res", 3, prefix="old")
    sub = open_subscriber(broker, transport, "res")
    try:
        new = broker.publish("res", "new")
        evs = sub.events(1)
        assert [(e["id"], e["data"]) for e in evs] == [(new, "new")]
        sub.assert_no_event(0.3)
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cursor_newer_than_newest_event_is_treated_as_newest(broker, transport):
    def wait_for_held_polls(n):
        line = f'herald_subscribers{{transport="poll"}} {n}'
        deadline = time.monotonic() + 10
        while line not in broker.get("/metrics").body.decode().splitlines():
            assert time.monotonic() < deadline, f"not {n} polls held within 10 s"
            time.sleep(0.01)

    ids = _publish_n(broker, "res", 3)
    if transport == "poll":
        wait_for_held_polls(0)  # so that the only poll counted below is this test's
    sub = open_subscriber(broker, transport, "res", since=int(ids[-1]) + 1000)
    try:
        if transport == "poll":
            # The broker clamps the cursor to the newest id when it takes the poll, so an event
            # committed before then is not newer than it: publish once the poll is counted.
            wait_for_held_polls(1)
        new = broker.publish("res", "new")
        assert [e["id"] for e in sub.events(1)] == [new]
        sub.assert_no_event(0.3)
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cursor_with_no_events_after_it_waits_for_live(broker, transport):
    ids = _publish_n(broker, "res", 3)
    sub = open_subscriber(broker, transport, "res", since=ids[-1])
    try:
        sub.assert_no_event(0.5)
        new = broker.publish("res", "new")
        assert [e["id"] for e in sub.events(1)] == [new]
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("cursor", ["since", "last-event-id"])
def test_multi_topic_resume_with_one_id(broker, transport, cursor):
    a1 = broker.publish("mr/a", "a1")
    b1 = broker.publish("mr/b", "b1")
    a2 = broker.publish("mr/a", "a2")
    broker.publish("mr/c", "c-not-subscribed")
    b2 = broker.publish("mr/b", "b2")
    a3 = broker.publish("mr/a", "a3")
    kw = {"since": b1} if cursor == "since" else {"last_event_id": b1}
    sub = open_subscriber(broker, transport, ["mr/a", "mr/b"], **kw)
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
def test_replay_to_live_seam_has_no_gap_or_duplicate(broker, transport, cursor, topics):
    """Two publisher threads keep publishing while the subscription starts, so the switch from
    replay to live happens under load."""
    before = [broker.publish(topics[i % len(topics)], f"pre{i}") for i in range(20)]
    pubs = [Publisher(broker, topics[k % len(topics)], None, signal_after=5, prefix=f"p{k}-")
            for k in range(2)]
    for p in pubs:
        p.start()
    for p in pubs:
        p.started_publishing.wait(10)
    if cursor == "since-0":
        sub = open_subscriber(broker, transport, topics, since=0)
        expect_from = 0
    else:
        sub = open_subscriber(broker, transport, topics, last_event_id=before[9])
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
def test_bad_cursor_is_400(broker, transport, how):
    headers = {"Accept": {"sse": "text/event-stream", "stream": "application/x-ndjson",
                          "poll": "application/json"}[transport]}
    query = {"transport": transport, "timeout": 1}
    if how == "last-event-id-abc":
        headers["Last-Event-ID"] = "abc"
    else:
        query["since"] = {"since-abc": "abc", "since-negative": "-1", "since-hex": "0x10"}[how]
    r = broker.get(sub_path("bad", **query), headers=headers)
    assert_json_error(r, 400)


def test_cursor_beyond_64_bits_is_handled(broker):
    """Not a valid id (ids are 64-bit); either rejected or treated as newest, never a crash."""
    r = broker.poll("big", since="99999999999999999999999", timeout=1)
    assert r.status in (200, 400), r
    if r.status == 400:
        assert_json_error(r, 400)
    broker.assert_healthy()


# ---- retention and the truncation signal (--history 5) -------------------------------------


def _expected_signal(topic, since, oldest):
    return {"topic": topic, "since": since, "oldest": oldest}


def _signal_body(sub, sig):
    """The signal's members as documented for the transport (checks its exact shape)."""
    if sub.transport == "sse":
        assert sig.pop("_had_id") is False, "SSE truncation signal must have no id: line"
    elif sub.transport == "stream":
        assert sig.pop("control") == "truncated"
    return sig


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cursor_older_than_history_gets_truncation_signal_before_replay(broker_factory, transport):
    b = broker_factory("--history", "5")
    ids = _publish_n(b, "tr", 10)
    sub = open_subscriber(b, transport, "tr", since=ids[1])
    try:
        first = sub.next_item(5)
        assert first is not None and first[0] == "truncated", \
            f"expected the signal first: {sub.seq}"
        assert _signal_body(sub, dict(first[1])) == _expected_signal("tr", ids[1], ids[5])
        evs = sub.events(5)
        assert [e["id"] for e in evs] == ids[5:]
        live = b.publish("tr", "live")
        assert [e["id"] for e in sub.events(1)] == [live]
        assert len(sub.truncations) == 1, "the signal comes once per topic"
        if transport == "sse":
            assert evs[0]["last_event_id"] == ids[5]
        if transport == "poll":
            assert sub.responses[0]["truncated"] == [_expected_signal("tr", ids[1], ids[5])]
            assert all(not r.get("truncated") for r in sub.responses[1:])
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_truncation_signal_on_resume_by_last_event_id(broker_factory, transport):
    b = broker_factory("--history", "5")
    ids = _publish_n(b, "tr", 10)
    sub = open_subscriber(b, transport, "tr", last_event_id=ids[3])
    try:
        first = sub.next_item(5)
        assert first is not None and first[0] == "truncated", sub.seq
        assert _signal_body(sub, dict(first[1])) == _expected_signal("tr", ids[3], ids[5])
        assert [e["id"] for e in sub.events(5)] == ids[5:]
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("index", [4, 6], ids=["just-before-oldest", "inside-history"])
def test_no_truncation_signal_when_cursor_is_within_history(broker_factory, transport, index):
    b = broker_factory("--history", "5")
    ids = _publish_n(b, "tr", 10)
    sub = open_subscriber(b, transport, "tr", since=ids[index])
    try:
        assert [e["id"] for e in sub.events(9 - index)] == ids[index + 1:]
        live = b.publish("tr", "live")
        assert [e["id"] for e in sub.events(1)] == [live]
        assert sub.truncations == [], sub.truncations
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_since_zero_replays_only_retained_history(broker_factory, transport):
    b = broker_factory("--history", "5")
    ids = _publish_n(b, "tr", 12)
    sub = open_subscriber(b, transport, "tr", since=0)
    try:
        assert [e["id"] for e in sub.events(5)] == ids[7:]
        sub.assert_no_event(0.3)
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_multi_topic_truncation_signal_once_per_topic_before_replay(broker_factory, transport):
    b = broker_factory("--history", "5")
    ids = {"ta": [], "tb": []}
    for i in range(10):
        for t in ("ta", "tb"):
            ids[t].append(b.publish(t, f"{t}{i}"))
    ids_c = _publish_n(b, "tc", 3)
    cursor = ids["ta"][0]
    sub = open_subscriber(b, transport, ["ta", "tb", "tc"], since=cursor)
    try:
        expected_events = sorted(ids["ta"][5:] + ids["tb"][5:] + ids_c, key=int)
        evs = sub.events(len(expected_events))
        assert [e["id"] for e in evs] == expected_events
        kinds = sub.kinds()
        assert kinds[:2] == ["truncated", "truncated"], f"signals must precede the replay: {kinds}"
        sigs = sorted((_signal_body(sub, dict(s)) for s in sub.truncations),
                      key=lambda s: s["topic"])
        assert sigs == [_expected_signal("ta", cursor, ids["ta"][5]),
                        _expected_signal("tb", cursor, ids["tb"][5])]
    finally:
        sub.close()


# ---- age retention (--history-age) -----------------------------------------------------------


def _wait_expired(broker, topic, timeout=8.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker.poll_json(topic, since=0, timeout=1)["events"] == []:
            return
        time.sleep(0.3)
    raise AssertionError(f"events of {topic!r} not dropped by --history-age within {timeout} s")


def test_history_age_drops_old_events_and_ids_go_on(broker_factory):
    b = broker_factory("--history-age", "1")
    ids = _publish_n(b, "aged", 3)
    _wait_expired(b, "aged")
    new = b.publish("aged", "fresh")
    assert int(new) > int(ids[-1])
    assert [e["id"] for e in b.poll_json("aged", since=0)["events"]] == [new]


def test_truncation_signal_has_null_oldest_when_topic_fully_expired_on_each_transport(
        broker_factory):
    b = broker_factory("--history-age", "1")
    ids = _publish_n(b, "gone", 3)
    _wait_expired(b, "gone")
    for transport in TRANSPORTS:
        sub = open_subscriber(b, transport, "gone", since=ids[0])
        try:
            first = sub.next_item(5)
            assert first is not None and first[0] == "truncated", (transport, sub.seq)
            assert _signal_body(sub, dict(first[1])) == _expected_signal("gone", ids[0], None), \
                transport
            sub.assert_no_event(0.2)
        finally:
            sub.close()
