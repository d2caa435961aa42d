"""HTTPS: one TLS listener serving HTTP/2 and HTTP/1.1 by ALPN, with a self-signed certificate
made by the test; certificate reload on SIGHUP; bad handshakes. What each request answers over
TLS h2 is checked by the tests that take the `client` fixture, as over HTTP/1.1 and h2c."""

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from h2_client import H2Client, client_tls_context, https_port, make_cert
from harness import HERE, metric_values, parse_responses

BROWSER_DIR = HERE.parent / "browser"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


@pytest.fixture
def cert(workdir):
    return make_cert(workdir)


@pytest.fixture
def tls_broker(broker_factory, cert):
    cert_file, key_file = cert
    b = broker_factory("--tls-listen", "127.0.0.1:0", "--tls-cert", cert_file,
                       "--tls-key", key_file)
    b.tls_port = https_port(b)
    b.cafile = cert_file
    return b


def https_get(b, path: str, alpn, timeout: float = 5.0):
    """One HTTP/1.1 request over TLS offering `alpn`; (negotiated protocol, response)."""
    ctx = client_tls_context(b.cafile, alpn) if alpn else ssl.create_default_context(
        cafile=b.cafile)
    with socket.create_connection(("127.0.0.1", b.tls_port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                      .encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return s.selected_alpn_protocol(), parse_responses(data)[0]


def test_alpn_selects_h2_and_the_connection_is_counted(tls_broker):
    # What every route answers over TLS h2 is checked by the tests that take the `client`
    # fixture (test_publish, test_resume, test_longpoll, ...): here, that it was TLS and h2.
    b = tls_broker
    c = H2Client(b.tls_port, tls=client_tls_context(b.cafile, ["h2", "http/1.1"]))
    try:
        assert c.alpn == "h2"
        h = c.get("/healthz")
        assert (h.status, h.json()) == (200, {"status": "ok"})
        m = metric_values(c.get("/metrics").data.decode())
        assert m["herald_tls_connections"] >= 1 and m["herald_h2_connections"] >= 1
    finally:
        c.close()


def test_many_sse_streams_on_one_tls_connection(tls_broker):
    b = tls_broker
    c = H2Client(b.tls_port, tls=client_tls_context(b.cafile, ["h2"]))
    try:
        subs = [c.subscribe(f"m/{i % 10}", flush=False) for i in range(200)]
        c.flush()
        c.pump_until(lambda: all(s.status == 200 for s in subs), 10, "200 response heads")
        ids = {i: b.publish(f"m/{i}", f"event {i}") for i in range(10)}
        c.pump_until(lambda: all(s.events() for s in subs), 10, "every stream's event")
        for i, s in enumerate(subs):
            assert [(e["id"], e["data"]) for e in s.events()] == [(ids[i % 10], f"event {i % 10}")]
    finally:
        c.close()


def test_alpn_falls_back_to_http11(tls_broker):
    proto, r = https_get(tls_broker, "/healthz", ["http/1.1"])
    assert proto == "http/1.1" and r.status == 200 and r.json() == {"status": "ok"}
    proto, r = https_get(tls_broker, "/healthz", None)  # no ALPN at all: HTTP/1.1
    assert proto is None and r.status == 200


def test_curl_over_tls_http11_and_http2(tls_broker):
    b = tls_broker
    base = f"https://localhost:{b.tls_port}"
    resolve = f"localhost:{b.tls_port}:127.0.0.1"
    common = ["curl", "-s", "--cacert", b.cafile, "--resolve", resolve, "-w", "\\n%{http_version}"]
    pub = subprocess.run(common + ["--http1.1", "--data-binary", "h1 over tls",
                                   f"{base}/topics/c"], capture_output=True, text=True, timeout=10)
    body, version = pub.stdout.rsplit("\n", 1)
    assert version == "1.1", pub
    h1_id = json.loads(body)["id"]
    pub = subprocess.run(common + ["--http2", "--data-binary", "h2 over tls", f"{base}/topics/c"],
                         capture_output=True, text=True, timeout=10)
    body, version = pub.stdout.rsplit("\n", 1)
    assert version == "2", pub
    h2_id = json.loads(body)["id"]
    poll = subprocess.run(common + ["--http2", f"{base}/topics/c?since=0&timeout=1"],
                          capture_output=True, text=True, timeout=10)
    body, _ = poll.stdout.rsplit("\n", 1)
    assert [(e["id"], e["data"]) for e in json.loads(body)["events"]] == \
        [(h1_id, "h1 over tls"), (h2_id, "h2 over tls")]


def test_nghttp_client_over_tls(tls_broker):
    b = tls_broker
    out = subprocess.run(["nghttp", "-nv", f"https://127.0.0.1:{b.tls_port}/healthz"],
                         capture_output=True, text=True, timeout=10)
    assert "The negotiated protocol: h2" in out.stdout, out.stdout
    assert ":status: 200" in out.stdout, out.stdout


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_below_1_2_is_refused(tls_broker):
    b = tls_broker
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(b.cafile)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", b.tls_port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.version() == "TLSv1.2"
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with socket.create_connection(("127.0.0.1", b.tls_port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            with ctx.wrap_socket(raw, server_hostname="localhost"):
                pass


def test_garbage_on_the_tls_port_is_dropped(tls_broker):
    b = tls_broker
    with socket.create_connection(("127.0.0.1", b.tls_port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
    deadline = time.monotonic() + 5
    while metric_values(b.get("/metrics").body.decode())["herald_tls_handshake_errors_total"] < 1:
        assert time.monotonic() < deadline, "handshake error not counted"
        time.sleep(0.05)
    assert b.healthy()


def test_sighup_reloads_the_certificate_and_keeps_connections(tls_broker, workdir):
    b = tls_broker
    old = H2Client(b.tls_port, tls=client_tls_context(b.cafile, ["h2"]))
    try:
        s = old.subscribe("hup")
        old.pump_until(lambda: s.status == 200, 5, "response head")
        # Same paths, new files: a renewed certificate.
        new_cert, _ = make_cert(workdir)
        b.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "certificate reloaded" not in b.output():
            assert time.monotonic() < deadline, b.output_tail()
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", b.tls_port), timeout=5) as raw:
            ctx = client_tls_context(new_cert, ["h2"])
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                served = tls.getpeercert(binary_form=True)
        assert served == ssl.PEM_cert_to_DER_cert(open(new_cert).read())
        ev_id = b.publish("hup", "after reload")
        old.pump_until(lambda: s.events(), 5, "the event on the old connection")
        assert s.events()[0]["id"] == ev_id
    finally:
        old.close()


def _browser_missing() -> str | None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"{CHROMIUM} not found (install it: bash tools/install-deps.sh --test)"
    if shutil.which("node") is None:
        return "node not found (install it: bash tools/install-deps.sh --test)"
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        return "playwright-core not installed (npm ci --prefix tests/browser)"
    return None


def test_chromium_50_eventsources_share_one_h2_connection(tls_broker):
    """The issue's acceptance: a browser on https opens 50 EventSources over one HTTP/2
    connection (over HTTP/1.1 it could open only 6) and all receive their events."""
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    b = tls_broker
    n = 50
    proc = subprocess.Popen(["node", str(BROWSER_DIR / "h2_eventsources.mjs"),
                             f"https://127.0.0.1:{b.tls_port}", str(n)], cwd=BROWSER_DIR,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        ready = proc.stdout.readline().decode().strip()
        assert ready == "READY", (ready, proc.stderr.read1(65536) if ready.startswith("ERROR")
                                  else b"")
        m = metric_values(b.get("/metrics").body.decode())
        # One connection carries them (a speculative preconnect may add an idle second one).
        assert 1 <= m["herald_h2_connections"] <= 2, m
        assert m["herald_h2_streams"] >= n, m
        ids = [b.publish(f"h2/{i}", f"to tab {i}") for i in range(n)]
        deadline = time.monotonic() + 10
        while True:
            proc.stdin.write(b"dump\n")
            proc.stdin.flush()
            state = json.loads(proc.stdout.readline())
            if len(state["events"]) >= n or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        got = sorted((e[0], e[1], e[2]) for e in state["events"])
        assert got == [(i, ids[i], f"to tab {i}") for i in range(n)], state
        assert state["errors"] == 0, state
    finally:
        try:
            proc.stdin.write(b"quit\n")
            proc.stdin.close()
            proc.wait(15)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
