// A real browser page on Herald's HTTPS origin using only the standard WebSocket API with the
// pubsub subprotocol, next to an EventSource on the same topic: over HTTP/2 the WebSocket is
// bootstrapped on the page's h2 connection (RFC 8441), no second TCP connection.
//
//   node h2_websocket.mjs BASE_URL TOPIC        (BASE_URL: https://127.0.0.1:PORT)
//
// Launches headless Chromium (Debian's /usr/bin/chromium, or $CHROMIUM_PATH) with playwright-core,
// trusting any certificate (the test makes a self-signed one), opens BASE_URL/healthz -- so the
// page, its EventSource and its WebSocket share one origin and Chromium has an h2 session to it,
// whose SETTINGS announced SETTINGS_ENABLE_CONNECT_PROTOCOL -- and in that page opens
// `new EventSource(BASE/topics/TOPIC)` and `new WebSocket(wss://.../ws, 'pubsub')`, subscribes,
// publishes one event over the WebSocket and one with fetch() POST, and collects what both see.
// Prints one JSON line {"protocol","subscribed","ack","posted","ws":[[id,type,data],...],
// "es":[[id,type,data],...],"navProtocol"} and exits 0, or prints "ERROR ..." and exits 1.
// Gives up after 60 s.

import { chromium } from 'playwright-core';

const BASE = (process.argv[2] || '').replace(/\/+$/, '');
const TOPIC = process.argv[3] || '';
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
let browser = null;

async function finish(code, line) {
  process.stdout.write(line + '\n');
  const b = browser;
  browser = null;
  if (b) await b.close().catch(() => {});
  process.exit(code);
}

setTimeout(() => finish(1, 'ERROR gave up after 60 s'), 60000).unref();

async function main() {
  if (!BASE.startsWith('https://') || !TOPIC) {
    await finish(1, 'ERROR usage: node h2_websocket.mjs https://HOST:PORT TOPIC');
    return;
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--ignore-certificate-errors'],
    timeout: 15000,
  });
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  page.on('console', (m) => process.stderr.write(`console.${m.type()}: ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`page error: ${e.message}\n`));
  await page.goto(`${BASE}/healthz`);
  const result = await page.evaluate(([base, topic]) => new Promise((resolve, reject) => {
    const r = { ws: [], es: [] };
    const nav = performance.getEntriesByType('navigation')[0];
    r.navProtocol = nav ? nav.nextHopProtocol : null;
    setTimeout(() => reject(new Error(`page timeout: ${JSON.stringify(r)}`)), 20000);
    const done = () => {
      if (r.ack && r.posted && r.ws.length >= 2 && r.es.length >= 2) resolve(r);
    };
    const es = new EventSource(`${base}/topics/${topic}`);
    const record = (e) => { r.es.push([e.lastEventId, e.type, e.data]); done(); };
    es.addEventListener('message', record);
    es.addEventListener('greeting', record);
    const ws = new WebSocket(`${base.replace(/^https/, 'wss')}/ws`, 'pubsub');
    let opened = 0;
    const start = async () => {
      if (++opened < 2) return;  // both the EventSource and the WebSocket are open
      ws.send(JSON.stringify({ op: 'pub', topic, data: 'from a browser WebSocket over h2', type: 'greeting', ref: 'b1' }));
      const resp = await fetch(`${base}/topics/${topic}`, { method: 'POST', body: 'from fetch' });
      r.posted = (await resp.json()).id;
      done();
    };
    es.addEventListener('open', start);
    ws.onerror = () => reject(new Error('WebSocket error'));
    ws.onclose = (e) => reject(new Error(`WebSocket closed ${e.code} ${e.reason}`));
    ws.onopen = () => {
      r.protocol = ws.protocol;
      ws.send(JSON.stringify({ op: 'sub', topic }));
    };
    ws.onmessage = (m) => {
      const op = JSON.parse(m.data);
      if (op.op === 'subscribed') { r.subscribed = op; start(); }
      else if (op.op === 'ack') r.ack = op.id;
      else if (op.op === 'event') r.ws.push([op.id, op.type || 'message', op.data]);
      else reject(new Error(`unexpected ${m.data}`));
      done();
    };
  }), [BASE, TOPIC]);
  await finish(0, JSON.stringify(result));
}

main().catch((e) => finish(1, `ERROR ${String(e && e.message || e).replace(/\s+/g, ' ')}`));
