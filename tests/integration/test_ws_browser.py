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


def test_browser_websocket_over_h2_rfc8441_and_eventsource_see_the_same_ids(broker_factory,
                                                                           workdir):
    """The same page on the broker's HTTPS origin: Chromium has an h2 session there whose
    SETTINGS announced SETTINGS_ENABLE_CONNECT_PROTOCOL, so `new WebSocket('wss://...')` is an
    extended CONNECT on that session (RFC 8441), counted by herald_ws_h2_streams_total."""
    reason = _missing_prerequisite()
    if reason:
        pytest.skip(reason)
    from h2_client import https_port, make_cert
    from harness import metric_values

    cert, key = make_cert(workdir)
    b = broker_factory("--tls-listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key)
    base = f"https://127.0.0.1:{https_port(b)}"
    r = subprocess.run(["node", str(BROWSER_DIR / "h2_websocket.mjs"), base, "browser/ws-h2"],
                       cwd=BROWSER_DIR, capture_output=True, timeout=90)
    out = r.stdout.decode("utf-8", "replace").strip().splitlines()
    assert r.returncode == 0 and out, f"{out}\n{r.stderr.decode(errors='replace')[-3000:]}"
    res = json.loads(out[-1])
    assert res["protocol"] == "pubsub" and res["navProtocol"] == "h2", res
    expected = sorted([[res["ack"], "greeting", "from a browser WebSocket over h2"],
                       [res["posted"], "message", "from fetch"]], key=lambda e: int(e[0]))
    assert sorted(res["ws"], key=lambda e: int(e[0])) == expected, res
    assert res["es"] == expected, res
    m = metric_values(b.get("/metrics").body.decode())
    assert m["herald_ws_h2_streams_total"] == 1, "the browser's WebSocket did not use RFC 8441"
