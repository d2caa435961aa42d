"""Node's `ws` client (tests/ws-node, installed by `npm ci --prefix tests/ws-node` in
tools/test.sh) subscribes, publishes and gets its ack over the pubsub subprotocol; the event it
published is seen over SSE with the same id."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import open_subscriber

NODE_DIR = Path(__file__).resolve().parent.parent / "ws-node"


def test_node_ws_client_sub_pub_ack(broker):
    if shutil.which("node") is None:
        pytest.skip("node not found (install it: bash tools/install-deps.sh --test)")
    if not (NODE_DIR / "node_modules" / "ws").is_dir():
        pytest.skip("tests/ws-node/node_modules/ws not installed "
                    "(run: npm ci --prefix tests/ws-node --no-audit --no-fund)")
    sse = open_subscriber(broker, "sse", "node/t")
    try:
        r = subprocess.run(["node", str(NODE_DIR / "pubsub.mjs"),
                            f"ws://127.0.0.1:{broker.port}/ws", "node/t"],
                           cwd=NODE_DIR, capture_output=True, timeout=30)
        out = r.stdout.decode("utf-8", "replace").strip()
        assert r.returncode == 0, f"{out}\n{r.stderr.decode(errors='replace')}"
        res = json.loads(out.splitlines()[-1])
        assert res["subprotocol"] == "pubsub"
        assert res["subscribed"]["ref"] == "node-sub"
        ack, ev = res["ack"], res["event"]
        assert ack == {"op": "ack", "ref": 42, "topic": "node/t", "id": ack["id"]}
        assert ev == {"op": "event", "topic": "node/t", "id": ack["id"], "type": "greeting",
                      "data": "from node ✓"}
        assert res["close"] == 1000
        [seen] = sse.events(1)
        assert (seen["id"], seen["data"]) == (ack["id"], "from node ✓")
    finally:
        sse.close()
