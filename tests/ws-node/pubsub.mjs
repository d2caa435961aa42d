// Node's `ws` client speaking Herald's pubsub subprotocol: sub, pub with a ref, then waits for
// the event and the ack. Usage: node pubsub.mjs ws://HOST:PORT/ws TOPIC
// Prints one JSON line {"subprotocol", "subscribed", "event", "ack"} and exits 0, or prints
// "ERROR ..." and exits 1.
import WebSocket from 'ws';

const [url, topic] = process.argv.slice(2);
const result = {};
const fail = (why) => {
  console.log(`ERROR ${why}`);
  process.exit(1);
};
setTimeout(() => fail(`timeout; got ${JSON.stringify(result)}`), 10000).unref();

const ws = new WebSocket(url, ['pubsub']);
ws.on('error', (e) => fail(e.message));
ws.on('open', () => {
  result.subprotocol = ws.protocol;
  ws.send(JSON.stringify({ op: 'sub', topic, ref: 'node-sub' }));
});
ws.on('message', (raw, isBinary) => {
  if (isBinary) fail('binary message');
  const msg = JSON.parse(raw.toString('utf8'));
  if (msg.op === 'subscribed') {
    result.subscribed = msg;
    ws.send(JSON.stringify({ op: 'pub', topic, data: 'from node ✓', type: 'greeting', ref: 42 }));
  } else if (msg.op === 'event') {
    result.event = msg;
  } else if (msg.op === 'ack') {
    result.ack = msg;
  } else {
    fail(`unexpected ${JSON.stringify(msg)}`);
  }
  if (result.event && result.ack) {
    ws.close(1000, 'done');
  }
});
ws.on('close', (code) => {
  result.close = code;
  console.log(JSON.stringify(result));
  process.exit(0);
});
