// A real browser subscriber for Herald's end-to-end tests.
//
//   node eventsource.mjs BASE_URL TOPIC      (or env HERALD_URL and HERALD_TOPIC)
//
// Launches headless Chromium (Debian's /usr/bin/chromium, or $CHROMIUM_PATH) with playwright-core,
// opens a blank page served by this script on another 127.0.0.1 port -- a different origin than
// the broker's, so the subscription is cross-origin and goes through CORS, as for a web app served
// apart from its broker (an about:blank page would not do: its opaque, non-secure origin is not
// allowed to reach a loopback address by Chromium's private network access rules) -- and in it
// runs `new EventSource(BASE_URL + '/topics/' + TOPIC)`. Every event the page receives, untyped
// ('message') or named 'greeting', is recorded as [lastEventId, type, data] in window.__events.
//
// Protocol with the driving test, one line each way:
//   stdout "READY"        once the EventSource fired its first 'open'
//   stdin  "dump"      -> stdout one JSON line {"events":[[id,type,data],...],"opens":[ms,...],
//                         "errors":N,"readyState":N}  (opens: Date.now() of each 'open')
//   stdin  "offline"   -> the page's network is cut (Playwright's offline emulation): the
//                         EventSource's reconnection attempts fail until "online"; stdout "OFFLINE"
//   stdin  "online"    -> the network is back; stdout "ONLINE"
//   stdin  "quit"      -> closes the browser, stdout "BYE", exit 0 (stdin EOF does the same)
// Anything else goes to stderr. Every wait is bounded; a fatal error prints "ERROR ..." and
// exits 1, and the whole script gives up after $HERALD_BROWSER_MAX_SECONDS (default 120).

import http from 'node:http';
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const BASE = (process.argv[2] || process.env.HERALD_URL || '').replace(/\/+$/, '');
const TOPIC = process.argv[3] || process.env.HERALD_TOPIC || '';
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const OPEN_TIMEOUT_MS = 15000;
const STEP_TIMEOUT_MS = 10000;
const MAX_SECONDS = Number(process.env.HERALD_BROWSER_MAX_SECONDS || 120);
// Named event types the page listens to besides untyped 'message' events.
const NAMED_TYPES = ['greeting'];

let browser = null;
let pageServer = null;

function log(...args) {
  process.stderr.write(`[eventsource.mjs] ${args.join(' ')}\n`);
}

function out(line) {
  process.stdout.write(line + '\n');
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function shutdown(code) {
  const b = browser;
  browser = null;
  if (pageServer) pageServer.close();
  if (b) {
    try {
      await withTimeout(b.close(), STEP_TIMEOUT_MS, 'browser.close');
    } catch (e) {
      log('closing the browser:', e.message);
    }
  }
  process.exit(code);
}

async function fail(message) {
  out(`ERROR ${message.replace(/\s+/g, ' ')}`);
  log(message);
  await shutdown(1);
}

setTimeout(() => fail(`gave up after ${MAX_SECONDS} s`), MAX_SECONDS * 1000).unref();

async function main() {
  if (!BASE || !TOPIC) {
    await fail('usage: node eventsource.mjs BASE_URL TOPIC');
    return;
  }
  browser = await withTimeout(chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: STEP_TIMEOUT_MS,
  }), STEP_TIMEOUT_MS + 1000, 'launching Chromium');
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('console', (m) => log(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log(`page error: ${e.message}`));
  pageServer = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><meta charset="utf-8"><title>herald e2e</title>');
  });
  await withTimeout(new Promise((resolve, reject) => {
    pageServer.once('error', reject);
    pageServer.listen(0, '127.0.0.1', resolve);
  }), STEP_TIMEOUT_MS, 'starting the page server');
  const pageUrl = `http://127.0.0.1:${pageServer.address().port}/`;
  await withTimeout(page.goto(pageUrl), STEP_TIMEOUT_MS, `opening ${pageUrl}`);

  const url = `${BASE}/topics/${TOPIC}`;
  log(`subscribing to ${url}`);
  await withTimeout(page.evaluate(([url, namedTypes]) => {
    window.__events = [];
    window.__opens = [];
    window.__errors = 0;
    const es = new EventSource(url);
    window.__es = es;
    const record = (e) => window.__events.push([e.lastEventId, e.type, e.data]);
    es.addEventListener('message', record);
    for (const t of namedTypes) es.addEventListener(t, record);
    es.addEventListener('open', () => {
      window.__opens.push(Date.now());
      console.log(`open #${window.__opens.length}`);
    });
    es.addEventListener('error', () => {
      window.__errors += 1;
      console.log(`error #${window.__errors}, readyState ${es.readyState}`);
    });
  }, [url, NAMED_TYPES]), STEP_TIMEOUT_MS, 'creating the EventSource');

  try {
    await page.waitForFunction(() => window.__opens.length > 0, null,
      { timeout: OPEN_TIMEOUT_MS, polling: 50 });
  } catch (e) {
    const state = await withTimeout(page.evaluate(() => ({
      readyState: window.__es.readyState, errors: window.__errors,
    })), STEP_TIMEOUT_MS, 'reading the state').catch(() => ({}));
    await fail(`EventSource on ${url} did not open within ${OPEN_TIMEOUT_MS} ms ` +
      `(${JSON.stringify(state)})`);
    return;
  }
  out('READY');

  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  rl.on('close', () => shutdown(0));
  for await (const raw of rl) {
    const cmd = raw.trim();
    if (cmd === 'dump') {
      const state = await withTimeout(page.evaluate(() => ({
        events: window.__events,
        opens: window.__opens,
        errors: window.__errors,
        readyState: window.__es.readyState,
      })), STEP_TIMEOUT_MS, 'dump');
      out(JSON.stringify(state));
    } else if (cmd === 'offline' || cmd === 'online') {
      await withTimeout(context.setOffline(cmd === 'offline'), STEP_TIMEOUT_MS, cmd);
      out(cmd.toUpperCase());
    } else if (cmd === 'quit') {
      rl.removeAllListeners('close');
      const b = browser;
      browser = null;
      pageServer.close();
      await withTimeout(b.close(), STEP_TIMEOUT_MS, 'browser.close').catch((e) => log(e.message));
      out('BYE');
      process.exit(0);
    } else if (cmd !== '') {
      log(`unknown command ${JSON.stringify(cmd)}`);
      out(`ERROR unknown command ${JSON.stringify(cmd)}`);
    }
  }
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));
