"""A browser page using only the standard WebSocket API and the pubsub subprotocol publishes and
subscribes, and sees the same ids as an EventSource on the same topic (headless Chromium driven
by tests/browser/websocket.mjs; skipped when Chromium or playwright-core is missing)."""

from __future__ import annotations

import json
import subprocess

import pytest

from test_browser import BROWSER_DIR, _missing_prerequisite


def test_browser_websocket_and_eventsource_see_the_same_ids(broker_factory):
    reason = _missing_prerequisite()
    if reason:
        pytest.skip(reason)
    b = broker_factory("--cors-origins", "*")
    r = subprocess.run(["node", str(BROWSER_DIR / "websocket.mjs"), b.url, "browser/ws"],
                       cwd=BROWSER_DIR, capture_output=True, timeout=90)
    out = r.stdout.decode("utf-8", "replace").strip().splitlines()
    assert r.returncode == 0 and out, f"{out}\n{r.stderr.decode(errors='replace')[-3000:]}"
    res = json.loads(out[-1])
    assert res["protocol"] == "pubsub"
    expected = sorted([[res["ack"], "greeting", "from a browser WebSocket"],
                       [res["posted"], "message", "from fetch"]], key=lambda e: int(e[0]))
    assert sorted(res["ws"], key=lambda e: int(e[0])) == expected, res
    assert res["es"] == expected, res
