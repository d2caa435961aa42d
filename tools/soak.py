#!/usr/bin/python3
"""Soak test: thousands of subscribers churning on every transport while events are published.

Starts build/herald (or --herald PATH) on a free 127.0.0.1 port with a temp data dir, then for
--minutes: a publisher at --rate events/s over --topics topics, and --subs subscribers spread
over the transports (SSE, NDJSON stream, long-poll, WebSocket `pubsub`, SSE over h2c), each of
which connects, receives for a few seconds, disconnects (cleanly or abruptly) and resumes with
its last id (Last-Event-ID, ?since=, the `sub` op's `since`). The broker's RSS, open
descriptors and CPU are sampled every --sample seconds.

At the end every subscriber must have received every acknowledged event of its topic after its
starting point, exactly once and in order; after warm-up the RSS must be flat; once every client
has gone, the descriptors must be back where they started. Exits 0 when all three hold, 1 when
not (2 on a usage or start-up error). Every loop is bounded in count and time; the broker is
stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import websockets

REPO = Path(__file__).resolve().parent.parent
TRANSPORTS = ("sse", "stream", "poll", "ws", "h2-sse")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """The broker under test, started and stopped by PID."""

    def __init__(self, binary: str, extra: list[str]):
        self.port = free_port()
        self.data = tempfile.mkdtemp(prefix="herald-soak-")
        self.log = open(os.path.join(self.data, "herald.log"), "wb")
        cmd = [binary, "--listen", f"127.0.0.1:{self.port}", "--data",
               os.path.join(self.data, "db"), *extra]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"soak: herald exited with {self.proc.returncode} at start-up")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("soak: herald did not listen within 20 s")

    def sample(self) -> dict:
        pid = self.proc.pid
        rss = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime + stime
        fds = sockets = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            fds += 1
            try:
                sockets += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
            except OSError:
                pass  # closed meanwhile
        return {"rss": rss, "fds": fds, "sockets": sockets,
                "cpu_s": ticks / os.sysconf("SC_CLK_TCK"), "t": time.monotonic()}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        return self.proc.returncode


async def read_http_head(reader: asyncio.StreamReader) -> tuple[int, dict]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


async def read_chunked_lines(reader: asyncio.StreamReader):
    """Yields the lines of a chunked HTTP/1.1 body as they arrive (chunk boundaries ignored)."""
    buf = b""
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return
        buf += await reader.readexactly(size)
        await reader.readexactly(2)
        *lines, buf = buf.split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r").decode()


class Run:
    """Shared state of one soak run."""

    def __init__(self, args, broker: Broker):
        self.args = args
        self.broker = broker
        self.topics = [f"soak-{os.getpid()}-{k}" for k in range(args.topics)]
        self.acked: dict[str, list[int]] = {t: [] for t in self.topics}
        self.last_acked: dict[str, int] = {}
        self.base: dict[str, int] = {}
        self.publishing = True
        self.stopping = False
        self.errors: list[str] = []
        self.sessions = {t: 0 for t in TRANSPORTS}
        self.published = 0
        self.publish_errors = 0

    def error(self, what: str) -> None:
        if len(self.errors) < 50:
            self.errors.append(what)


async def publisher(run: Run, conn_index: int, conns: int) -> None:
    """Publishes round-robin over the topics at its share of --rate on one keep-alive
    connection; records every acknowledged id."""
    interval = conns / run.args.rate
    reader, writer = await asyncio.open_connection("127.0.0.1", run.broker.port)
    n = conn_index
    next_at = time.monotonic()
    try:
        while run.publishing:
            topic = run.topics[n % len(run.topics)]
            body = f"soak {n} {time.time():.3f}".encode()
            writer.write(f"POST /topics/{topic} HTTP/1.1\r\nHost: soak\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            status, headers = await read_http_head(reader)
            payload = await reader.readexactly(int(headers.get("content-length", "0")))
            if status == 201:
                event_id = int(json.loads(payload)["id"])
                run.acked[topic].append(event_id)
                run.last_acked[topic] = max(run.last_acked.get(topic, 0), event_id)
                run.published += 1
            else:
                run.publish_errors += 1
                run.error(f"publish answered {status}: {payload[:200]!r}")
            n += conns
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        writer.close()


class Subscriber:
    def __init__(self, run: Run, index: int):
        self.run = run
        self.index = index
        self.transport = TRANSPORTS[index % len(TRANSPORTS)]
        self.topic = run.topics[index % len(run.topics)]
        self.cursor = run.base[self.topic]
        self.received: list[int] = []
        self.rng = random.Random(index)

    def got(self, event_id: int) -> bool:
        """Records one event; True once the run has stopped publishing and this subscriber has
        the last acknowledged event of its topic (its session may end)."""
        if event_id <= self.cursor:
            self.run.error(f"{self.transport} sub {self.index}: id {event_id} after {self.cursor}"
                           " (duplicate or out of order)")
        self.received.append(event_id)
        self.cursor = max(self.cursor, event_id)
        return self.caught_up()

    def caught_up(self) -> bool:
        last = self.run.last_acked.get(self.topic, 0)
        return not self.run.publishing and self.cursor >= last

    async def run_forever(self) -> None:
        args = self.run.args
        await asyncio.sleep(self.rng.uniform(0, args.ramp))
        while not self.caught_up():
            final = not self.run.publishing
            length = args.final_wait if final else self.rng.uniform(args.min_session,
                                                                    args.max_session)
            self.run.sessions[self.transport] += 1
            try:
                await asyncio.wait_for(self.session(), timeout=length)
            except asyncio.TimeoutError:
                pass  # the session's time is up: disconnect
            except (OSError, asyncio.IncompleteReadError, websockets.WebSocketException,
                    ValueError) as e:
                if not self.run.stopping:
                    self.run.error(f"{self.transport} sub {self.index}: {type(e).__name__}: {e}")
            if final:
                break
            if not self.run.publishing:
                continue
            await asyncio.sleep(self.rng.uniform(0, args.max_pause))

    async def session(self) -> None:
        return await getattr(self, "session_" + self.transport.replace("-", "_"))()

    async def open_http(self, path: str, headers: str = ""):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.run.broker.port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: soak\r\n{headers}\r\n".encode())
        status, hdrs = await read_http_head(reader)
        if status != 200:
            writer.close()
            raise ValueError(f"GET {path} answered {status}")
        return reader, writer

    async def session_sse(self) -> None:
        reader, writer = await self.open_http(
            f"/topics/{self.topic}?transport=sse", f"Last-Event-ID: {self.cursor}\r\n")
        try:
            async for line in read_chunked_lines(reader):
                if line.startswith("id:"):
                    if self.got(int(line[3:].strip())):
                        return
                elif line.startswith("event: herald.truncated"):
                    raise ValueError("truncated: size --history for the soak's churn")
        finally:
            self.close(writer)

    async def session_stream(self) -> None:
        reader, writer = await self.open_http(
            f"/topics/{self.topic}?transport=stream&since={self.cursor}")
        try:
            async for line in read_chunked_lines(reader):
                if not line:
                    continue
                msg = json.loads(line)
                if "control" in msg:
                    raise ValueError(f"control line {line}")
                if self.got(int(msg["id"])):
                    return
        finally:
            self.close(writer)

    async def session_poll(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.run.broker.port)
        try:
            for _ in range(1000):
                writer.write(f"GET /topics/{self.topic}?since={self.cursor}&timeout=5&limit=100 "
                             "HTTP/1.1\r\nHost: soak\r\n\r\n".encode())
                status, hdrs = await read_http_head(reader)
                body = json.loads(await reader.readexactly(int(hdrs["content-length"])))
                if status != 200:
                    raise ValueError(f"poll answered {status}: {body}")
                if body.get("truncated"):
                    raise ValueError("truncated: size --history for the soak's churn")
                for e in body["events"]:
                    self.got(int(e["id"]))
                if self.caught_up():
                    return
        finally:
            self.close(writer)

    async def session_ws(self) -> None:
        uri = f"ws://127.0.0.1:{self.run.broker.port}/ws"
        async with websockets.connect(uri, subprotocols=["pubsub"], max_size=None,
                                      ping_interval=None, close_timeout=1) as ws:
            await ws.send(json.dumps({"op": "sub", "topic": self.topic,
                                      "since": str(self.cursor)}))
            async for raw in ws:
                msg = json.loads(raw)
                if msg["op"] == "event":
                    if self.got(int(msg["id"])):
                        return
                elif msg["op"] in ("truncated", "error"):
                    raise ValueError(f"ws {raw}")

    async def session_h2_sse(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.run.broker.port)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "soak"),
                                (":path", f"/topics/{self.topic}?transport=sse"),
                                ("last-event-id", str(self.cursor))], end_stream=True)
        writer.write(conn.data_to_send())
        buf = b""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.ResponseReceived):
                        status = dict(ev.headers).get(b":status")
                        if status != b"200":
                            raise ValueError(f"h2 answered {status!r}")
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                        buf += ev.data
                        *lines, buf = buf.split(b"\n")
                        for line in lines:
                            if line.startswith(b"id:") and self.got(int(line[3:].strip())):
                                return
                            elif line.startswith(b"event: herald.truncated"):
                                raise ValueError("truncated")
                    elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset,
                                         h2.events.ConnectionTerminated)):
                        return
                writer.write(conn.data_to_send())
        finally:
            self.close(writer)

    def close(self, writer: asyncio.StreamWriter) -> None:
        # Half the disconnects are abrupt (RST), as clients that vanish are.
        if self.rng.random() < 0.5:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.close()

    def verify(self) -> tuple[int, int]:
        """(lost, duplicated) against the acknowledged events after the starting point."""
        expected = {i for i in self.run.acked[self.topic] if i > self.run.base[self.topic]}
        got = self.received
        dup = len(got) - len(set(got))
        lost = len(expected - set(got))
        return lost, dup


async def sampler(run: Run, samples: list[dict], stop: asyncio.Event) -> None:
    while not stop.is_set():
        s = run.broker.sample()
        s["published"] = run.published
        samples.append(s)
        if run.args.verbose:
            print(f"  t={s['t'] - samples[0]['t']:6.0f}s rss={s['rss'] / 2**20:7.1f} MiB "
                  f"fds={s['fds']:6d} published={run.published}", file=sys.stderr, flush=True)
        try:
            await asyncio.wait_for(stop.wait(), timeout=run.args.sample)
        except asyncio.TimeoutError:
            pass


async def main_async(args, broker: Broker) -> int:
    run = Run(args, broker)
    base_sample = broker.sample()
    # A first event per topic: each subscriber starts after it and must see all that follow.
    reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
    for t in run.topics:
        writer.write(f"POST /topics/{t} HTTP/1.1\r\nHost: soak\r\nContent-Length: 4\r\n\r\n"
                     "base".encode())
        status, hdrs = await read_http_head(reader)
        body = json.loads(await reader.readexactly(int(hdrs["content-length"])))
        if status != 201:
            raise SystemExit(f"soak: base publish answered {status}")
        run.base[t] = int(body["id"])
    writer.close()

    samples: list[dict] = []
    stop_sampling = asyncio.Event()
    sampling = asyncio.create_task(sampler(run, samples, stop_sampling))
    subs = [Subscriber(run, i) for i in range(args.subs)]
    sub_tasks = [asyncio.create_task(s.run_forever()) for s in subs]
    pubs = [asyncio.create_task(publisher(run, k, args.pub_conns))
            for k in range(args.pub_conns)]
    t0 = time.monotonic()
    await asyncio.sleep(args.minutes * 60)
    run.publishing = False
    await asyncio.gather(*pubs, return_exceptions=True)
    publish_s = time.monotonic() - t0
    # Every subscriber's last session waits for the last acknowledged event of its topic.
    await asyncio.wait(sub_tasks,
                       timeout=args.max_session + args.max_pause + args.final_wait + 30)
    run.stopping = True
    for t in sub_tasks:
        t.cancel()
    await asyncio.gather(*sub_tasks, return_exceptions=True)
    stop_sampling.set()
    await sampling
    # All clients are gone. A poll held on a half-closed connection is still answered at its
    # timeout (RFC 9112, 9.6) before the broker closes: wait for that, boundedly.
    end_sample = broker.sample()
    for _ in range(40):
        if end_sample["sockets"] <= base_sample["sockets"]:
            break
        await asyncio.sleep(0.5)
        end_sample = broker.sample()

    lost = dup = 0
    behind = 0
    for s in subs:
        lo, du = s.verify()
        lost += lo
        dup += du
        if lo:
            behind += 1
    warm = [s for s in samples if s["t"] - samples[0]["t"] >= args.warmup * 60]
    verdict = 0
    print(f"soak: {args.minutes} min, {args.subs} subscribers over {', '.join(TRANSPORTS)}, "
          f"{args.topics} topics, {run.published} events published "
          f"({run.published / publish_s:.0f}/s), {run.publish_errors} publish errors")
    print("sessions per transport: " + ", ".join(f"{k} {v}" for k, v in run.sessions.items()))
    print(f"deliveries: {sum(len(s.received) for s in subs)}, lost {lost} "
          f"(subscribers missing events: {behind}), duplicated {dup}")
    if lost or dup or run.publish_errors:
        verdict = 1
    if len(warm) >= 4:
        q = max(1, len(warm) // 4)
        first = statistics.median(s["rss"] for s in warm[:q])
        last = statistics.median(s["rss"] for s in warm[-q:])
        growth = (last - first) / first
        flat = last - first <= max(args.rss_slack * first, 8 << 20)
        cpu = (warm[-1]["cpu_s"] - warm[0]["cpu_s"]) / (warm[-1]["t"] - warm[0]["t"]) * 100
        print(f"RSS after warm-up: first quarter {first / 2**20:.1f} MiB, last quarter "
              f"{last / 2**20:.1f} MiB ({growth * 100:+.1f} %), peak "
              f"{max(s['rss'] for s in samples) / 2**20:.1f} MiB: "
              f"{'flat' if flat else 'GROWING'}")
        print(f"broker CPU after warm-up: {cpu:.1f} % of one core; sockets at start "
              f"{base_sample['sockets']}, peak {max(s['sockets'] for s in samples)}, after all "
              f"clients left {end_sample['sockets']}; all descriptors {base_sample['fds']} / "
              f"{max(s['fds'] for s in samples)} / {end_sample['fds']} (RocksDB keeps its "
              "table files open)")
        if not flat:
            verdict = 1
    else:
        print("RSS: too few samples after warm-up to judge (run longer or sample more often)")
    if end_sample["sockets"] > base_sample["sockets"]:
        print(f"sockets NOT back: {end_sample['sockets']} after, {base_sample['sockets']} before")
        verdict = 1
    if args.samples_out:
        with open(args.samples_out, "w") as f:
            for s in samples:
                f.write(json.dumps(s) + "\n")
    for e in run.errors[:20]:
        print(f"  error: {e}")
    if run.errors and not (lost or dup):
        print(f"  ({len(run.errors)} client errors above; no event was lost)")
    print("soak: " + ("stable, nothing lost" if verdict == 0 else "FAILED"))
    return verdict


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--herald", default=str(REPO / "build" / "herald"), help="broker binary")
    p.add_argument("--minutes", type=float, default=30, help="publishing time (default 30)")
    p.add_argument("--subs", type=int, default=2000, help="subscribers (default 2000)")
    p.add_argument("--topics", type=int, default=20, help="topics (default 20)")
    p.add_argument("--rate", type=float, default=50, help="events/s in all (default 50)")
    p.add_argument("--pub-conns", type=int, default=2, help="publisher connections (default 2)")
    p.add_argument("--min-session", type=float, default=2, help="shortest session, s")
    p.add_argument("--max-session", type=float, default=20, help="longest session, s")
    p.add_argument("--max-pause", type=float, default=2, help="longest pause between sessions")
    p.add_argument("--ramp", type=float, default=10, help="subscribers start within this, s")
    p.add_argument("--final-wait", type=float, default=60,
                   help="time a subscriber's last session may take to catch up, s")
    p.add_argument("--sample", type=float, default=10, help="sampling interval, s")
    p.add_argument("--warmup", type=float, default=None,
                   help="minutes not judged for RSS (default: a fifth of --minutes)")
    p.add_argument("--rss-slack", type=float, default=0.10,
                   help="allowed RSS growth after warm-up, fraction (default 0.10; at least 8 MiB)")
    p.add_argument("--samples-out", help="write the samples as JSON lines here")
    p.add_argument("--verbose", action="store_true", help="print each sample")
    p.add_argument("herald_args", nargs="*", help="extra broker flags (after --)")
    args = p.parse_args()
    if args.warmup is None:
        args.warmup = args.minutes / 5
    if args.subs < len(TRANSPORTS) or args.subs > 15000:
        p.error("--subs must be 5 to 15000 (one process, 20,000 descriptors)")
    if not os.access(args.herald, os.X_OK):
        p.error(f"no broker binary at {args.herald} (build first)")
    broker = Broker(args.herald, ["--history", "100000", *args.herald_args])
    verdict = 1
    try:
        verdict = asyncio.run(main_async(args, broker))
        return verdict
    finally:
        rc = broker.stop()
        if rc not in (0, None):
            print(f"soak: FAILED, herald exited with {rc}; the end of its output:")
            with open(os.path.join(broker.data, "herald.log"), "rb") as f:
                print(f.read()[-4000:].decode(errors="replace"))
        shutil.rmtree(broker.data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
