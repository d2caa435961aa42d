// Many EventSources in one real browser page over HTTPS, for Herald's HTTP/2 test.
//
//   node h2_eventsources.mjs BASE_URL COUNT      (BASE_URL: https://127.0.0.1:PORT)
//
// Launches headless Chromium (Debian's /usr/bin/chromium, or $CHROMIUM_PATH) with playwright-core,
// trusting any certificate (the test makes a self-signed one), opens BASE_URL/healthz -- so the
// page and its EventSources share one origin -- and creates COUNT EventSources on
// BASE_URL/topics/h2/0 .. h2/COUNT-1. Over HTTP/1.1 Chromium would open at most 6 of them (6
// connections per origin); over HTTP/2 they all share one connection.
//
// Protocol with the driving test, one line each way:
//   stdout "READY"        once every EventSource fired 'open'
//   stdin  "dump"      -> stdout one JSON line {"events":[[i,lastEventId,data],...],"open":N,
//                         "errors":N}
//   stdin  "quit"      -> closes the browser, stdout "BYE", exit 0 (stdin EOF does the same)
// Every wait is bounded; a fatal error prints "ERROR ..." and exits 1, and the whole script gives
// up after $HERALD_BROWSER_MAX_SECONDS (default 120).

import readline from 'node:readline';
import { chromium } from 'playwright-core';

const BASE = (process.argv[2] || '').replace(/\/+$/, '');
const COUNT = Number(process.argv[3] || 50);
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const OPEN_TIMEOUT_MS = 20000;
const STEP_TIMEOUT_MS = 10000;
const MAX_SECONDS = Number(process.env.HERALD_BROWSER_MAX_SECONDS || 120);

let browser = null;

const log = (...args) => process.stderr.write(`[h2_eventsources.mjs] ${args.join(' ')}\n`);
const out = (line) => process.stdout.write(line + '\n');

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
  if (b) {
    await withTimeout(b.close(), STEP_TIMEOUT_MS, 'browser.close').catch((e) => log(e.message));
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
  if (!BASE.startsWith('https://') || !(COUNT > 0)) {
    await fail('usage: node h2_eventsources.mjs https://HOST:PORT COUNT');
    return;
  }
  browser = await withTimeout(chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: STEP_TIMEOUT_MS,
  }), STEP_TIMEOUT_MS + 1000, 'launching Chromium');
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  page.on('pageerror', (e) => log(`page error: ${e.message}`));
  await withTimeout(page.goto(`${BASE}/healthz`), STEP_TIMEOUT_MS, 'opening the page');

  await page.evaluate(([base, count]) => {
    window.__events = [];
    window.__open = 0;
    window.__errors = 0;
    window.__sources = [];
    for (let i = 0; i < count; i++) {
      const es = new EventSource(`${base}/topics/h2/${i}`);
      es.addEventListener('open', () => { window.__open += 1; });
      es.addEventListener('error', () => { window.__errors += 1; });
      es.addEventListener('message', (e) => window.__events.push([i, e.lastEventId, e.data]));
      window.__sources.push(es);
    }
  }, [BASE, COUNT]);

  try {
    await page.waitForFunction((n) => window.__open >= n, COUNT,
      { timeout: OPEN_TIMEOUT_MS, polling: 50 });
  } catch (e) {
    const open = await page.evaluate(() => window.__open).catch(() => '?');
    await fail(`only ${open} of ${COUNT} EventSources opened within ${OPEN_TIMEOUT_MS} ms`);
    return;
  }
  out('READY');

  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  rl.on('close', () => shutdown(0));
  for await (const raw of rl) {
    const cmd = raw.trim();
    if (cmd === 'dump') {
      const state = await withTimeout(page.evaluate(() => ({
        events: window.__events, open: window.__open, errors: window.__errors,
      })), STEP_TIMEOUT_MS, 'dump');
      out(JSON.stringify(state));
    } else if (cmd === 'quit') {
      rl.removeAllListeners('close');
      const b = browser;
      browser = null;
      await withTimeout(b.close(), STEP_TIMEOUT_MS, 'browser.close').catch((e) => log(e.message));
      out('BYE');
      process.exit(0);
    } else if (cmd !== '') {
      out(`ERROR unknown command ${JSON.stringify(cmd)}`);
    }
  }
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));
