"""/healthz, /metrics, CORS, --config, --help and herald-cli against a live broker."""

import json
import os
import re
import subprocess
import time

import pytest

from harness import (TRANSPORTS, BrokerError, HTTPStream, assert_json_error,
                     assert_no_sanitizer_report, herald_bin, herald_cli, metric_samples,
                     metric_values, open_subscriber)


def test_healthz_is_200_ok_json(broker):
    r = broker.get("/healthz")
    assert r.status == 200
    assert (r.header("Content-Type") or "").startswith("application/json")
    assert r.json() == {"status": "ok"}


def test_healthz_rejects_post_with_405(broker):
    r = broker.request("POST", "/healthz", body=b"")
    assert_json_error(r, 405)
    assert "GET" in (r.header("Allow") or "")


def _metrics(broker):
    r = broker.get("/metrics")
    assert r.status == 200, r
    ctype = (r.header("Content-Type") or "").replace(" ", "")
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, ctype
    return r.body.decode("utf-8")


def _find(values, *words):
    """Names of herald_ metrics containing every one of `words`."""
    return sorted(n for n in values if n.startswith("herald_") and all(w in n for w in words))


def test_metrics_lists_herald_metrics(broker):
    values = metric_values(_metrics(broker))
    for word in ("connection", "subscriber", "publish", "deliver", "bytes", "append"):
        assert _find(values, word), f"no herald_*{word}* metric in {sorted(values)}"


def test_subscriber_metrics_are_per_transport(broker):
    subs = [open_subscriber(broker, "sse", "per"), open_subscriber(broker, "stream", "per"),
            open_subscriber(broker, "stream", "per")]
    try:
        time.sleep(0.2)
        samples = [(n, l, v) for n, l, v in metric_samples(_metrics(broker))
                   if n.startswith("herald_") and "subscriber" in n and "transport" in l]
        by_transport = {}
        for _, labels, v in samples:
            by_transport[labels["transport"]] = by_transport.get(labels["transport"], 0) + v
        assert set(by_transport) >= {"sse", "stream", "poll"}, samples
        assert by_transport["sse"] >= 1 and by_transport["stream"] >= 2, by_transport
    finally:
        for s in subs:
            s.close()


def test_metrics_is_valid_prometheus_text(broker):
    text = _metrics(broker)
    sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*'
                        r'(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})?'
                        r' [-+0-9.eEInfa]+( -?[0-9]+)?$')
    for line in text.splitlines():
        if not line or line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        assert sample.match(line), f"not a Prometheus sample line: {line!r}"


def test_published_and_delivered_counters_increase(broker):
    sub = open_subscriber(broker, "stream", "met")
    try:
        before = metric_values(_metrics(broker))
        for i in range(3):
            broker.publish("met", f"m{i}")
        sub.events(3)
        time.sleep(0.2)
        after = metric_values(_metrics(broker))
    finally:
        sub.close()
    pub = _find(after, "publish")
    assert any(after[n] - before.get(n, 0) >= 3 for n in pub), \
        {n: (before.get(n), after[n]) for n in pub}
    dlv = _find(after, "deliver")
    assert any(after[n] - before.get(n, 0) >= 3 for n in dlv), \
        {n: (before.get(n), after[n]) for n in dlv}


def test_subscriber_gauge_counts_open_subscribers(broker):
    names = _find(metric_values(_metrics(broker)), "subscriber")
    before = metric_values(_metrics(broker))
    subs = [open_subscriber(broker, t, "gauge") for t in ("sse", "stream")]
    try:
        time.sleep(0.2)
        during = metric_values(_metrics(broker))
        assert sum(during[n] for n in names) >= sum(before[n] for n in names) + 2, \
            {n: (before[n], during[n]) for n in names}
    finally:
        for s in subs:
            s.close()


def _cors_preflight(broker, origin, path="/topics/x"):
    return broker.request("OPTIONS", path, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, last-event-id"})


def test_no_cors_headers_by_default(broker):
    r = broker.get("/healthz", headers={"Origin": "http://a.example"})
    assert r.status == 200
    assert r.header("Access-Control-Allow-Origin") is None, r.headers
    pre = _cors_preflight(broker, "http://a.example")
    assert pre.header("Access-Control-Allow-Origin") is None, pre.headers
    assert pre.header("Access-Control-Allow-Methods") is None, pre.headers


def _assert_preflight_allows(pre, origin_value):
    assert pre.status == 204, pre
    assert pre.header("Access-Control-Allow-Origin") == origin_value, pre.headers
    methods = {m.strip() for m in (pre.header("Access-Control-Allow-Methods") or "").split(",")}
    assert {"GET", "POST", "OPTIONS"} <= methods, pre.headers
    allowed = {h.strip().lower()
               for h in (pre.header("Access-Control-Allow-Headers") or "").split(",")}
    assert {"content-type", "last-event-id", "accept", "cache-control"} <= allowed, pre.headers
    max_age = pre.header("Access-Control-Max-Age")
    assert max_age is not None and max_age.isdigit(), pre.headers


def test_cors_listed_origin_preflight_and_request(broker_factory):
    b = broker_factory("--cors-origins", "http://a.example,http://c.example")
    pre = _cors_preflight(b, "http://a.example")
    _assert_preflight_allows(pre, "http://a.example")
    assert pre.body == b""
    r = b.publish_raw("x", "hi", headers={"Origin": "http://c.example"})
    assert r.status == 201
    assert r.header("Access-Control-Allow-Origin") == "http://c.example"
    assert "origin" in (r.header("Vary") or "").lower(), r.headers
    g = b.get("/topics/x?since=0", headers={"Origin": "http://a.example"})
    assert g.header("Access-Control-Allow-Origin") == "http://a.example"


def test_cors_headers_on_error_responses_too(broker_factory):
    b = broker_factory("--cors-origins", "http://a.example")
    for r in (b.get("/nope", headers={"Origin": "http://a.example"}),
              b.publish_raw("a//b", "x", headers={"Origin": "http://a.example"})):
        assert r.status in (400, 404)
        assert r.header("Access-Control-Allow-Origin") == "http://a.example", r


def test_cors_unlisted_origin_gets_no_allow_origin(broker_factory):
    b = broker_factory("--cors-origins", "http://a.example")
    pre = _cors_preflight(b, "http://b.example")
    assert pre.header("Access-Control-Allow-Origin") is None, pre.headers
    r = b.get("/healthz", headers={"Origin": "http://b.example"})
    assert r.header("Access-Control-Allow-Origin") is None, r.headers
    r = b.get("/healthz", headers={"Origin": "http://a.example.evil"})
    assert r.header("Access-Control-Allow-Origin") is None, r.headers


def test_cors_star_allows_any_origin(broker_factory):
    b = broker_factory("--cors-origins", "*")
    for origin in ("http://a.example", "https://anything.test:8443"):
        pre = _cors_preflight(b, origin)
        assert pre.status == 204
        _assert_preflight_allows(pre, pre.header("Access-Control-Allow-Origin"))
        assert pre.header("Access-Control-Allow-Origin") in ("*", origin)
        r = b.get("/healthz", headers={"Origin": origin})
        assert r.header("Access-Control-Allow-Origin") in ("*", origin), r.headers


def test_cors_headers_on_sse_stream(broker_factory):
    b = broker_factory("--cors-origins", "http://a.example")
    s = HTTPStream(b.port, "/topics/cs",
                   {"Accept": "text/event-stream", "Origin": "http://a.example"})
    try:
        assert s.status == 200
        assert s.header("Access-Control-Allow-Origin") == "http://a.example", s.headers
    finally:
        s.close()


def _write_config(workdir, obj, name="herald.json"):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


def test_config_file_sets_flags(broker_factory, workdir):
    cfg = _write_config(workdir, {"history": 3, "cors-origins": "http://cfg.example"})
    b = broker_factory("--config", cfg)
    ids = [b.publish("cfg", f"m{i}") for i in range(6)]
    assert [e["id"] for e in b.poll_json("cfg", since=0)["events"]] == ids[3:]
    r = b.get("/healthz", headers={"Origin": "http://cfg.example"})
    assert r.header("Access-Control-Allow-Origin") == "http://cfg.example"


def test_command_line_flag_wins_over_config_file(broker_factory, workdir):
    cfg = _write_config(workdir, {"history": 3, "listen": "127.0.0.1:1"})
    b = broker_factory("--config", cfg, "--history", "4")
    assert b.port != 1
    ids = [b.publish("cfg", f"m{i}") for i in range(6)]
    assert [e["id"] for e in b.poll_json("cfg", since=0)["events"]] == ids[2:]


def test_bad_config_file_fails_to_start(workdir):
    cfg = _write_config(workdir, ["not", "an", "object"], name="bad.json")
    p = subprocess.run([herald_bin(), "--listen", "127.0.0.1:0", "--data",
                        os.path.join(workdir, "d"), "--config", cfg],
                       capture_output=True, timeout=10, cwd=workdir)
    assert p.returncode != 0
    assert_no_sanitizer_report(p.stderr)


def test_help_prints_flags_and_exits_0(workdir):
    p = subprocess.run([herald_bin(), "--help"], capture_output=True, timeout=10, cwd=workdir)
    assert p.returncode == 0, p
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    for flag in ("--listen", "--data", "--history", "--durability", "--heartbeat", "--config"):
        assert flag in out, f"{flag} missing from --help:\n{out}"
    assert not os.path.exists(os.path.join(workdir, "herald-data")), "--help must not open storage"


def test_unknown_flag_fails_to_start(workdir):
    p = subprocess.run([herald_bin(), "--no-such-flag", "--listen", "127.0.0.1:0", "--data",
                        os.path.join(workdir, "d")], capture_output=True, timeout=10, cwd=workdir)
    assert p.returncode != 0
    assert_no_sanitizer_report(p.stderr)


# ---- herald-cli --------------------------------------------------------------------------


@pytest.fixture
def cli():
    path = herald_cli()
    if path is None:
        pytest.skip("herald-cli not built (HERALD_CLI unset or not executable)")
    return path


def _run_cli(cli, *args, timeout=15):
    p = subprocess.run([cli, *args], capture_output=True, timeout=timeout)
    assert p.returncode == 0, \
        f"herald-cli {' '.join(args)}: exit {p.returncode}\n{p.stderr.decode()}"
    return p.stdout.decode("utf-8")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cli_pub_then_sub_since_0_prints_the_event(broker, cli, transport):
    out = _run_cli(cli, "pub", "cli/t", "hello from cli ✓", "--type", "greeting",
                   "--url", broker.url)
    acked = json.loads(out.strip())
    assert acked["topic"] == "cli/t" and acked["id"].isdigit()
    out = _run_cli(cli, "sub", "cli/t", "--since", "0", "--transport", transport, "--url",
                   broker.url, "--count", "1", "--timeout", "5")
    lines = [l for l in out.splitlines() if l.strip()]
    assert len(lines) == 1, out
    ev = json.loads(lines[0])
    assert ev["id"] == acked["id"] and ev["data"] == "hello from cli ✓", ev
    assert ev.get("type") == "greeting", ev


def test_cli_sub_two_topics_counts_events(broker, cli):
    ids = [json.loads(_run_cli(cli, "pub", t, f"d{i}", "--url", broker.url))["id"]
           for i, t in enumerate(["cli/a", "cli/b", "cli/a"])]
    out = _run_cli(cli, "sub", "cli/a", "cli/b", "--since", "0", "--url", broker.url,
                   "--count", "3", "--timeout", "5")
    got = [json.loads(l)["id"] for l in out.splitlines() if l.strip()]
    assert got == ids


def test_second_broker_on_the_same_data_dir_fails_to_start(broker, workdir):
    p = subprocess.run([herald_bin(), "--listen", "127.0.0.1:0", "--data", broker.data_dir],
                       capture_output=True, timeout=10, cwd=workdir)
    assert p.returncode != 0, p.stdout
    assert_no_sanitizer_report(p.stderr)
    broker.assert_healthy()


def test_listen_on_a_port_in_use_fails_to_start(broker_factory, broker):
    """A second broker (other data dir) asked for a port that is taken must not start: with
    SO_REUSEPORT it would silently take half of the first one's connections."""
    second = broker_factory(start=False)
    try:
        second.start(broker.port)
    except BrokerError:
        pass  # exited before listening: what we want
    else:
        second.stop()
        pytest.fail(f"a second herald also listens on port {broker.port}:\n{second.output_tail()}")
    assert second.proc.returncode != 0
    broker.assert_healthy()
