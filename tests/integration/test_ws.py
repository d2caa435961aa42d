"""The WebSocket pubsub subprotocol with a real client (python3-websockets): handshake, sub /
pub / ack flows, many topics per socket, resume, truncation, the same ids as the HTTP
transports, errors that leave the socket usable, keep-alive, shutdown, metrics."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets

from harness import TRANSPORTS, assert_json_error, open_subscriber, raw_exchange
from ws_helpers import (RawWS, OP_PING, handshake_request, recv_op, recv_until, run, sub,
                        ws_url)


def connect(broker, **kw):
    return websockets.connect(ws_url(broker), subprotocols=["pubsub"], **kw)


# ---- handshake -------------------------------------------------------------------------------

def test_handshake_selects_pubsub_and_answers_the_key(broker):
    ws = RawWS(broker.port)  # checks 101, Sec-WebSocket-Accept and Sec-WebSocket-Protocol
    ws.close()

    async def go():
        async with connect(broker) as c:
            assert c.subprotocol == "pubsub"
    run(go())


@pytest.mark.parametrize("protocol", [None, "chat", "PubSub"], ids=["none", "other", "wrong-case"])
def test_handshake_without_pubsub_is_refused_with_400(broker, protocol):
    req, _ = handshake_request(broker.port, protocol=protocol)
    [resp] = raw_exchange(broker.port, req, until_responses=1).responses()
    body = assert_json_error(resp, 400)
    assert "pubsub" in body["error"]
    broker.assert_healthy()


def test_handshake_with_wrong_version_is_426_with_supported_version(broker):
    req, _ = handshake_request(broker.port, version="8")
    [resp] = raw_exchange(broker.port, req, until_responses=1).responses()
    assert_json_error(resp, 426)
    assert resp.header("Sec-WebSocket-Version") == "13"


def test_handshake_with_bad_key_is_400_and_plain_get_is_426(broker):
    req, _ = handshake_request(broker.port, key="not-a-key")
    [resp] = raw_exchange(broker.port, req, until_responses=1).responses()
    assert_json_error(resp, 400)
    r = broker.get("/ws")
    assert_json_error(r, 426)
    assert (r.header("Upgrade") or "").lower() == "websocket"


def test_origin_check(broker_factory):
    b = broker_factory()
    other = {"Origin": "http://elsewhere.example"}
    req, _ = handshake_request(b.port, extra=other)
    [resp] = raw_exchange(b.port, req, until_responses=1).responses()
    assert_json_error(resp, 403)
    RawWS(b.port, extra={"Origin": f"http://127.0.0.1:{b.port}"}).close()  # same origin
    b2 = broker_factory("--ws-allowed-origins", "http://elsewhere.example")
    RawWS(b2.port, extra=other).close()


def test_first_frame_in_the_same_packet_as_the_handshake(broker):
    from ws_helpers import text
    ws = RawWS(broker.port, first_bytes=text({"op": "sub", "topic": "early"}))
    assert ws.recv_op()["op"] == "subscribed"
    ws.close()


# ---- sub / pub / ack -------------------------------------------------------------------------

def test_sub_pub_ack(broker):
    async def go():
        async with connect(broker) as c:
            s = await sub(c, "chat/room-1", ref="s1")
            assert s["ref"] == "s1" and s["last_id"].isdigit()
            await c.send(json.dumps({"op": "pub", "topic": "chat/room-1", "data": "héllo ✓\n🎉",
                                     "type": "message", "ref": 7}))
            got = await recv_until(c, lambda o: o["op"] == "ack")
            ack = got[-1]
            assert ack == {"op": "ack", "ref": 7, "topic": "chat/room-1", "id": ack["id"]}
            events = [o for o in got if o["op"] == "event"]
            if not events:
                events = [await recv_op(c)]
            assert events == [{"op": "event", "topic": "chat/room-1", "id": ack["id"],
                               "type": "message", "data": "héllo ✓\n🎉"}]
            # A pub without ref is acknowledged too (acks come in pub order).
            await c.send(json.dumps({"op": "pub", "topic": "other", "data": ""}))
            ack2 = await recv_op(c)
            assert ack2["op"] == "ack" and "ref" not in ack2 and int(ack2["id"]) > int(ack["id"])
    run(go())


def test_many_topics_on_one_socket_and_unsub(broker):
    topics = [f"multi/{i}" for i in range(5)]

    async def go():
        async with connect(broker) as c:
            for t in topics:
                await sub(c, t)
            ids = {t: broker.publish(t, f"to {t}") for t in topics}
            got = {}
            for _ in topics:
                ev = await recv_op(c)
                assert ev["op"] == "event"
                got[ev["topic"]] = ev["id"]
            assert got == ids
            await c.send(json.dumps({"op": "unsub", "topic": "multi/2", "ref": "u"}))
            assert await recv_op(c) == {"op": "unsubscribed", "ref": "u", "topic": "multi/2"}
            broker.publish("multi/2", "not for me")
            last = broker.publish("multi/3", "for me")
            ev = await recv_op(c)
            assert (ev["topic"], ev["id"]) == ("multi/3", last)
    run(go())


def test_since_resumes_with_replay_then_live(broker):
    ids = [broker.publish("res", f"m{i}") for i in range(4)]

    async def go():
        async with connect(broker) as c:
            s = await sub(c, "res", since=ids[1])
            assert s["last_id"] == ids[1]
            replay = [await recv_op(c) for _ in range(2)]
            assert [e["id"] for e in replay] == ids[2:]
            assert [e["data"] for e in replay] == ["m2", "m3"]
            live = broker.publish("res", "m4")
            assert (await recv_op(c))["id"] == live
            # since=0 on another topic: all retained history; a numeric since works too.
            await sub(c, "res2", since=0)
    run(go())


def test_sub_without_since_reports_the_newest_id_as_last_id(broker):
    newest = broker.publish("x", "before")

    async def go():
        async with connect(broker) as c:
            s = await sub(c, "fresh")
            assert int(s["last_id"]) >= int(newest)
            with pytest.raises(asyncio.TimeoutError):
                await recv_op(c, timeout=0.3)  # no replay without since
    run(go())


def test_truncation_signal_before_replay(broker_factory):
    b = broker_factory("--history", "3")
    ids = [b.publish("tr", f"m{i}") for i in range(6)]

    async def go():
        async with connect(b) as c:
            await sub(c, "tr", since=ids[0])
            first = await recv_op(c)
            assert first == {"op": "truncated", "topic": "tr", "since": ids[0], "oldest": ids[3]}
            replay = [await recv_op(c) for _ in range(3)]
            assert [e["id"] for e in replay] == ids[3:]
    run(go())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ws_publish_is_seen_over_http_transports_with_the_same_id(broker, transport):
    s = open_subscriber(broker, transport, "cross")
    try:
        async def go():
            async with connect(broker) as c:
                await c.send(json.dumps({"op": "pub", "topic": "cross", "data": "from ws",
                                         "type": "t", "ref": "p"}))
                return (await recv_op(c))["id"]
        ws_id = run(go())
        [ev] = s.events(1)
        assert (ev["id"], ev["data"], ev["type"]) == (ws_id, "from ws", "t")
    finally:
        s.close()


def test_http_publish_is_seen_over_ws_with_the_same_id(broker):
    async def go():
        async with connect(broker) as c:
            await sub(c, "cross2")
            sse = open_subscriber(broker, "sse", "cross2")
            try:
                ev_id = broker.publish("cross2", "from http", type="greeting")
                ev = await recv_op(c)
                assert ev == {"op": "event", "topic": "cross2", "id": ev_id, "type": "greeting",
                              "data": "from http"}
                assert sse.events(1)[0]["id"] == ev_id
            finally:
                sse.close()
    run(go())


# ---- errors ----------------------------------------------------------------------------------

def test_bad_ops_get_error_ops_and_the_socket_stays_usable(broker_factory):
    b = broker_factory("--max-topics", "2", "--max-body", "100")

    async def go():
        async with connect(b) as c:
            async def error_for(msg):
                await c.send(msg if isinstance(msg, str) else json.dumps(msg))
                op = await recv_op(c)
                assert op["op"] == "error" and op["message"], (msg, op)
                return op
            assert "JSON" in (await error_for("{not json"))["message"]
            await error_for("[1]")
            assert "unknown op" in (await error_for({"op": "fly", "ref": 1}))["message"]
            e = await error_for({"op": "sub", "topic": "a//b", "ref": "r"})
            assert e["ref"] == "r" and "topic" in e["message"]
            await error_for({"op": "sub", "topic": "x", "since": "abc"})
            await error_for({"op": "pub", "topic": "x"})
            await error_for({"op": "pub", "topic": "x", "data": "d", "type": "herald.no"})
            e = await error_for({"op": "pub", "topic": "x", "data": "y" * 101, "ref": 5})
            assert e["ref"] == 5
            await error_for({"op": "unsub", "topic": "never"})
            await sub(c, "one")
            await error_for({"op": "sub", "topic": "one"})
            await sub(c, "two")
            assert "too many topics" in (await error_for({"op": "sub", "topic": "three"}))["message"]
            await c.send(json.dumps({"op": "pub", "topic": "one", "data": "still fine", "ref": 9}))
            got = await recv_until(c, lambda o: o["op"] == "ack")
            assert got[-1]["ref"] == 9
    run(go())
    b.assert_healthy()


# ---- keep-alive, flow control, shutdown, metrics ---------------------------------------------

def test_server_pings_and_closes_a_peer_that_does_not_answer(broker_factory):
    b = broker_factory("--ws-ping-interval", "0.5")
    ws = RawWS(b.port)  # never answers pings
    t0 = time.monotonic()
    code, frames = ws.wait_close(timeout=5)
    assert any(op == OP_PING for _, op, _ in frames), frames
    assert code == 1011, (code, frames)
    assert time.monotonic() - t0 < 4
    assert ws.wait_eof(4)
    ws.close()

    async def go():  # a client that answers pings stays connected
        async with connect(b, ping_interval=None) as c:
            await asyncio.sleep(2)
            await sub(c, "alive")
    run(go())


def test_many_pubs_in_flight_are_all_acked_in_order(broker):
    n = 2500

    async def go():
        async with connect(broker) as c:
            for i in range(n):
                await c.send(json.dumps({"op": "pub", "topic": "flood", "data": str(i), "ref": i}))
            acks = [await recv_op(c, timeout=30) for _ in range(n)]
            assert [a["ref"] for a in acks] == list(range(n))
            ids = [int(a["id"]) for a in acks]
            assert ids == sorted(ids) and len(set(ids)) == n
    run(go(), timeout=60)
    body = broker.poll_json("flood", since=0, limit=1000)
    assert len(body["events"]) == 1000


def test_shutdown_closes_with_1001(broker):
    async def go():
        async with connect(broker) as c:
            await sub(c, "bye")
            broker.send_signal(15)
            await asyncio.wait_for(c.wait_closed(), 5)
            return c.close_code
    assert run(go()) == 1001
    assert broker.wait_exit(5) == 0


def test_metrics_count_ws_subscribers_and_deliveries(broker):
    def metric(name):
        for line in broker.get("/metrics").body.decode().splitlines():
            if line.startswith(name + " "):
                return int(line.split()[1])
        raise AssertionError(name)

    async def go():
        async with connect(broker) as c:
            await sub(c, "m1")
            await sub(c, "m2")
            assert metric('herald_subscribers{transport="ws"}') == 2
            broker.publish("m1", "x")
            await recv_op(c)
            assert metric('herald_events_delivered_total{transport="ws"}') >= 1
    run(go())
    deadline = time.monotonic() + 3
    while metric('herald_subscribers{transport="ws"}') != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric('herald_subscribers{transport="ws"}') == 0
