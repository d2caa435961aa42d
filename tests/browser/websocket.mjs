// A real browser page using only the standard WebSocket API with Herald's pubsub subprotocol,
// next to an EventSource on the same topic.
//
//   node websocket.mjs BASE_URL TOPIC
//
// Launches headless Chromium (Debian's /usr/bin/chromium, or $CHROMIUM_PATH) with playwright-core
// and opens a blank page served by this script on another 127.0.0.1 port (a cross-origin page,
// as in eventsource.mjs). The page opens `new EventSource(BASE/topics/TOPIC)` and
// `new WebSocket(ws://.../ws, 'pubsub')`, subscribes, publishes one event over the WebSocket
// and one with fetch() POST, and collects what both see. Prints one JSON line
// {"protocol","subscribed","ack","posted","ws":[[id,type,data],...],"es":[[id,type,data],...]}
// and exits 0, or prints "ERROR ..." and exits 1. Gives up after 60 s.

import http from 'node:http';
import { chromium } from 'playwright-core';

const BASE = (process.argv[2] || '').replace(/\/+$/, '');
const TOPIC = process.argv[3] || '';
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
let browser = null;
let pageServer = null;

async function finish(code, line) {
  process.stdout.write(line + '\n');
  if (pageServer) pageServer.close();
  if (browser) await browser.close().catch(() => {});
  process.exit(code);
}

setTimeout(() => finish(1, 'ERROR gave up after 60 s'), 60000).unref();

async function main() {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 15000,
  });
  const page = await browser.newPage();
  page.on('console', (m) => process.stderr.write(`console.${m.type()}: ${m.text()}\n`));
  pageServer = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><meta charset="utf-8"><title>herald ws e2e</title>');
  });
  await new Promise((resolve, reject) => {
    pageServer.once('error', reject);
    pageServer.listen(0, '127.0.0.1', resolve);
  });
  await page.goto(`http://127.0.0.1:${pageServer.address().port}/`);
  const result = await page.evaluate(([base, topic]) => new Promise((resolve, reject) => {
    const r = { ws: [], es: [] };
    setTimeout(() => reject(new Error(`page timeout: ${JSON.stringify(r)}`)), 20000);
    const done = () => {
      if (r.ack && r.posted && r.ws.length >= 2 && r.es.length >= 2) resolve(r);
    };
    const es = new EventSource(`${base}/topics/${topic}`);
    const record = (e) => { r.es.push([e.lastEventId, e.type, e.data]); done(); };
    es.addEventListener('message', record);
    es.addEventListener('greeting', record);
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/ws`, 'pubsub');
    let opened = 0;
    const start = async () => {
      if (++opened < 2) return;  // both the EventSource and the WebSocket are open
      ws.send(JSON.stringify({ op: 'pub', topic, data: 'from a browser WebSocket', type: 'greeting', ref: 'b1' }));
      const resp = await fetch(`${base}/topics/${topic}`, { method: 'POST', body: 'from fetch' });
      r.posted = (await resp.json()).id;
      done();
    };
    es.addEventListener('open', start);
    ws.onerror = () => reject(new Error('WebSocket error'));
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
