"""Retention (--history, --history-age) and the truncation signal a cursor older than the
history gets before the replay; on every transport over HTTP/1.1, h2c and TLS h2, against one
broker per module and retention flag (each test on topics of its own)."""

import time

import pytest

from harness import TRANSPORTS


def _publish_n(client, topic, n, prefix="m"):
    return [client.publish(topic, f"{prefix}{i}") for i in range(n)]


@pytest.fixture(scope="module")
def short_history(module_broker_factory):
    """A broker that keeps the 5 newest events of each topic."""
    return module_broker_factory("--history", "5", tls=True)


# ---- retention by count (--history 5) -----------------------------------------------------


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
def test_cursor_older_than_history_gets_truncation_signal_before_replay(short_history, connect,
                                                                        new_topic, transport):
    b = connect(short_history)
    tr = new_topic("tr")
    ids = _publish_n(b, tr, 10)
    sub = b.subscribe(transport, tr, since=ids[1])
    try:
        first = sub.next_item(5)
        assert first is not None and first[0] == "truncated", \
            f"expected the signal first: {sub.seq}"
        assert _signal_body(sub, dict(first[1])) == _expected_signal(tr, ids[1], ids[5])
        evs = sub.events(5)
        assert [e["id"] for e in evs] == ids[5:]
        live = b.publish(tr, "live")
        assert [e["id"] for e in sub.events(1)] == [live]
        assert len(sub.truncations) == 1, "the signal comes once per topic"
        if transport == "sse":
            assert evs[0]["last_event_id"] == ids[5]
        if transport == "poll":
            assert sub.responses[0]["truncated"] == [_expected_signal(tr, ids[1], ids[5])]
            assert all(not r.get("truncated") for r in sub.responses[1:])
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_truncation_signal_on_resume_by_last_event_id(short_history, connect, new_topic, transport):
    b = connect(short_history)
    tr = new_topic("tr")
    ids = _publish_n(b, tr, 10)
    sub = b.subscribe(transport, tr, last_event_id=ids[3])
    try:
        first = sub.next_item(5)
        assert first is not None and first[0] == "truncated", sub.seq
        assert _signal_body(sub, dict(first[1])) == _expected_signal(tr, ids[3], ids[5])
        assert [e["id"] for e in sub.events(5)] == ids[5:]
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("index", [4, 6], ids=["just-before-oldest", "inside-history"])
def test_no_truncation_signal_when_cursor_is_within_history(short_history, connect, new_topic,
                                                            transport, index):
    b = connect(short_history)
    tr = new_topic("tr")
    ids = _publish_n(b, tr, 10)
    sub = b.subscribe(transport, tr, since=ids[index])
    try:
        assert [e["id"] for e in sub.events(9 - index)] == ids[index + 1:]
        live = b.publish(tr, "live")
        assert [e["id"] for e in sub.events(1)] == [live]
        assert sub.truncations == [], sub.truncations
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_since_zero_replays_only_retained_history(short_history, connect, new_topic, transport):
    b = connect(short_history)
    tr = new_topic("tr")
    ids = _publish_n(b, tr, 12)
    sub = b.subscribe(transport, tr, since=0)
    try:
        assert [e["id"] for e in sub.events(5)] == ids[7:]
        sub.assert_no_event(0.3)
    finally:
        sub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_multi_topic_truncation_signal_once_per_topic_before_replay(short_history, connect,
                                                                   new_topic, transport):
    b = connect(short_history)
    mt = new_topic("mt")
    ta, tb, tc = f"{mt}/ta", f"{mt}/tb", f"{mt}/tc"
    ids = {ta: [], tb: []}
    for i in range(10):
        for t in (ta, tb):
            ids[t].append(b.publish(t, f"{t}{i}"))
    ids_c = _publish_n(b, tc, 3)
    cursor = ids[ta][0]
    sub = b.subscribe(transport, [ta, tb, tc], since=cursor)
    try:
        expected_events = sorted(ids[ta][5:] + ids[tb][5:] + ids_c, key=int)
        evs = sub.events(len(expected_events))
        assert [e["id"] for e in evs] == expected_events
        kinds = sub.kinds()
        assert kinds[:2] == ["truncated", "truncated"], f"signals must precede the replay: {kinds}"
        sigs = sorted((_signal_body(sub, dict(s)) for s in sub.truncations),
                      key=lambda s: s["topic"])
        assert sigs == [_expected_signal(ta, cursor, ids[ta][5]),
                        _expected_signal(tb, cursor, ids[tb][5])]
    finally:
        sub.close()


# ---- age retention (--history-age 1) --------------------------------------------------------


def _wait_expired(client, topic, timeout=8.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.poll_json(topic, since=0, timeout=1)["events"] == []:
            return
        time.sleep(0.3)
    raise AssertionError(f"events of {topic!r} not dropped by --history-age within {timeout} s")


@pytest.fixture(scope="module")
def short_age(module_broker_factory):
    """A broker that drops events older than 1 s."""
    return module_broker_factory("--history-age", "1", tls=True)


@pytest.fixture(scope="module")
def expired(short_age):
    """{topic: ids} of two topics of `short_age` whose three events each all expired, waited
    for once for the whole module: "aged" for a test that publishes again, "gone" for those
    that must find it empty."""
    ids = {t: _publish_n(short_age, t, 3) for t in ("aged", "gone")}
    for t in ids:
        _wait_expired(short_age, t)
    return ids


def test_history_age_drops_old_events_and_ids_go_on(short_age, expired):
    topic, ids = "aged", expired["aged"]
    new = short_age.publish(topic, "fresh")
    assert int(new) > int(ids[-1])
    assert [e["id"] for e in short_age.poll_json(topic, since=0)["events"]] == [new]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_truncation_signal_has_null_oldest_when_topic_fully_expired(short_age, expired, connect,
                                                                    transport):
    topic, ids = "gone", expired["gone"]
    b = connect(short_age)
    sub = b.subscribe(transport, topic, since=ids[0])
    try:
        first = sub.next_item(5)
        assert first is not None and first[0] == "truncated", sub.seq
        assert _signal_body(sub, dict(first[1])) == _expected_signal(topic, ids[0], None)
        sub.assert_no_event(0.2)
    finally:
        sub.close()
