"""End to end in a real browser: the project's acceptance scenario.

A browser's EventSource on GET /topics/x receives events published with curl, and reconnects with
Last-Event-ID after a broker restart without losing or repeating an event.

Headless Chromium (Debian's /usr/bin/chromium) is driven by tests/browser/eventsource.mjs
(node + playwright-core, installed by `npm ci --prefix tests/browser` in tools/test.sh); this file
talks to that script over its stdin/stdout and publishes with the real curl.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BROWSER_DIR = HERE.parent / "browser"
SCRIPT = BROWSER_DIR / "eventsource.mjs"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")

READY_TIMEOUT = 30.0  # node start + Chromium launch + the EventSource's first 'open'
DUMP_TIMEOUT = 10.0  # one "dump" answer
DELIVERY_TIMEOUT = 10.0  # until the page has the events it should have
RECONNECT_TIMEOUT = 10.0  # broker back -> the page's EventSource open again
SETTLE = 0.5  # after the last expected event: time for a duplicate to show up


def _missing_prerequisite() -> str | None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"{CHROMIUM} not found (install it: bash tools/install-deps.sh --test)"
    if shutil.which("node") is None:
        return "node not found (install it: bash tools/install-deps.sh --test)"
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        return ("tests/browser/node_modules/playwright-core not installed "
                "(run: npm ci --prefix tests/browser --no-audit --no-fund)")
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def curl_publish(base: str, topic: str, data: str, type: str | None = None) -> str:
    """POSTs `data` (sent byte-exact from stdin) with curl; asserts 201; returns the event id."""
    url = f"{base}/topics/{topic}" + (f"?type={type}" if type else "")
    r = subprocess.run(["curl", "-sS", "--max-time", "5", "-X", "POST",
                        "-H", "Content-Type: text/plain; charset=utf-8",
                        "--data-binary", "@-", "-w", "\n%{http_code}", url],
                       input=data.encode("utf-8"), capture_output=True, timeout=10)
    assert r.returncode == 0, f"curl {url}: exit {r.returncode}: {r.stderr.decode(errors='replace')}"
    body, _, status = r.stdout.decode("utf-8").rpartition("\n")
    assert status == "201", f"curl {url}: expected 201, got {status}: {body}"
    ack = json.loads(body)
    assert ack.get("topic") == topic and str(ack.get("id", "")).isdigit(), ack
    return ack["id"]


class BrowserSubscriber:
    """tests/browser/eventsource.mjs: Chromium with an EventSource on BASE/topics/TOPIC."""

    def __init__(self, base: str, topic: str):
        self.proc = subprocess.Popen(["node", str(SCRIPT), base, topic], cwd=BROWSER_DIR,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self):
        for raw in iter(self.proc.stdout.readline, b""):
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
        self.lines.put(None)

    def _read_stderr(self):
        for raw in iter(self.proc.stderr.readline, b""):
            self.stderr.append(raw.decode("utf-8", "replace").rstrip("\r\n"))

    def log(self) -> str:
        return "\n".join(self.stderr[-60:]) or "(nothing on stderr)"

    def next_line(self, timeout: float) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"browser script: no answer within {timeout} s\n{self.log()}")
        if line is None:
            self.proc.wait(5)
            raise AssertionError(f"browser script exited ({self.proc.returncode})\n{self.log()}")
        if line.startswith("ERROR"):
            raise AssertionError(f"browser script: {line}\n{self.log()}")
        return line

    def wait_ready(self) -> None:
        line = self.next_line(READY_TIMEOUT)
        assert line == "READY", f"browser script: expected READY, got {line!r}\n{self.log()}"

    def dump(self) -> dict:
        self.proc.stdin.write(b"dump\n")
        self.proc.stdin.flush()
        return json.loads(self.next_line(DUMP_TIMEOUT))

    def command(self, cmd: str, answer: str) -> None:
        self.proc.stdin.write(cmd.encode() + b"\n")
        self.proc.stdin.flush()
        line = self.next_line(DUMP_TIMEOUT)
        assert line == answer, f"browser script: {cmd!r} answered {line!r}\n{self.log()}"

    def wait_until(self, what: str, pred, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            state = self.dump()
            if pred(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"the page: {what} not within {timeout} s; it has "
                                     f"{json.dumps(state, ensure_ascii=False)}\n{self.log()}")
            time.sleep(0.05)

    def close(self) -> None:
        """"quit"; else SIGTERM (playwright-core then closes the Chromium it started); else
        SIGKILL."""
        try:
            self.proc.stdin.write(b"quit\n")
            self.proc.stdin.close()
        except OSError:
            pass
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and self.proc.poll() is None:
                os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(10)
                return
            except subprocess.TimeoutExpired:
                pass


def test_eventsource_receives_curl_events_and_resumes_after_restart(broker_factory):
    reason = _missing_prerequisite()
    if reason:
        pytest.skip(reason)

    topic = "browser/e2e"
    port = free_port()
    broker = broker_factory("--cors-origins", "*", "--sse-retry-ms", "300", start=False)
    broker.start(port)
    assert broker.port == port
    base = broker.url

    page = BrowserSubscriber(base, topic)
    try:
        page.wait_ready()

        # [id, type as the page sees it, data] of every event, in publish order.
        expected: list[list[str]] = []

        def publish(data: str, type: str | None = None) -> None:
            expected.append([curl_publish(base, topic, data, type), type or "message", data])

        def has(n: int):
            return lambda state: len(state["events"]) >= n

        publish("first line\n  indented second line\n\nfourth line after an empty one")
        publish("unicode: héllo wörld — 日本語 ✓ 🎉")
        publish("hello, browser", type="greeting")
        page.wait_until("the first 3 events", has(3), DELIVERY_TIMEOUT)

        broker.terminate()  # asserts exit status 0
        # While the broker is down the page keeps retrying every 300 ms (the `retry:` hint).
        # Hold its network until the 2 events below are acknowledged, so that they can only reach
        # it by the replay after the Last-Event-ID it sends on reconnecting: without this, a retry
        # landing between the restart and the publishes would get them live and leave
        # Last-Event-ID untested.
        page.command("offline", "OFFLINE")
        broker.start(port)  # same port, same data dir
        assert broker.port == port
        publish("published right after the restart")
        publish("and a greeting right after the restart", type="greeting")
        held = page.dump()
        assert len(held["opens"]) == 1 and len(held["events"]) == 3, f"reconnected offline: {held}"
        page.command("online", "ONLINE")

        state = page.wait_until("the 2 events published while it reconnected", has(5),
                                RECONNECT_TIMEOUT + DELIVERY_TIMEOUT)
        assert len(state["opens"]) == 2, f"expected exactly one reconnect: {state}"
        publish("after the reconnect")
        page.wait_until("the event published after the reconnect", has(6), DELIVERY_TIMEOUT)
        time.sleep(SETTLE)
        state = page.dump()
    finally:
        page.close()

    got = state["events"]
    ids = [int(e[0]) for e in got]
    assert len(got) == 6, f"expected exactly 6 events, got {len(got)}: {got}"
    assert len(set(ids)) == len(ids), f"an event was repeated: {got}"
    assert ids == sorted(ids), f"ids not strictly increasing: {ids}"
    assert got == expected, f"events differ:\n got      {got}\n expected {expected}"
    assert state["readyState"] == 1, f"EventSource not OPEN at the end: {state}"
    print(f"page: {len(state['opens'])} opens, {state['errors']} errors; events {got}")
