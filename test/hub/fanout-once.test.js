'use strict';
// Issue 9 (G3, G11): the hub broadcast paths serialise each update ONCE and hand the very same
// Buffer to every subscriber's socket (no per-subscriber JSON.stringify, no clone per
// subscriber); and a subscriber that stops reading is bounded by the session layer (events
// dropped above the high-water mark, then cut) while the others keep receiving. No timing.
const assert = require('node:assert/strict');
const { HubGateway, HubConnection } = require('../../dist/src/hub/session');
const T = require('../../dist/src/hub/telemetry');
const { startStack, sleep, waitFor } = require('./telemetry-fixture.test');

const SUBSCRIBERS = 50;

/** Count calls of JSON.stringify and structuredClone while `fn` runs. */
function counting(fn) {
  const stringify = JSON.stringify;
  const clone = globalThis.structuredClone;
  const counts = { stringify: 0, clone: 0 };
  JSON.stringify = function (...args) {
    counts.stringify++;
    return stringify.apply(this, args);
  };
  globalThis.structuredClone = function (...args) {
    counts.clone++;
    return clone.apply(this, args);
  };
  try {
    fn();
  } finally {
    JSON.stringify = stringify;
    globalThis.structuredClone = clone;
  }
  return counts;
}

/** A stand-in for a ws socket that records what it was asked to send. */
function fakeSocket() {
  const sent = [];
  return { sent, readyState: 1, bufferedAmount: 0, send(data) { sent.push(data); }, close() {}, terminate() {}, once() {}, on() {}, ping() {} };
}

describe('hub fan-out: one serialisation per update, the same bytes to every subscriber', () => {
  it(`telemetry: one update to ${SUBSCRIBERS} real-time subscribers is serialised once and every socket gets the identical Buffer`, () => {
    const f = new T.FanOut(() => 0);
    const got = [];
    for (let i = 0; i < SUBSCRIBERS; i++) {
      const spec = T.subscriptionSpec({ channel: 'telemetry' });
      assert.ok(spec.ok);
      f.add({ send: (data, droppable) => { got.push({ data, droppable }); return true; } }, spec.spec);
    }
    const dev = { deviceid: '1000aa0001', number: 1 };
    const counts = counting(() => {
      f.telemetry(dev, { mask: T.TELEMETRY_BIT.power | T.TELEMETRY_BIT.voltage, values: { power: 12.5, voltage: 230.1 } }, '2024-01-01T12:00:00.000Z');
    });
    assert.equal(f.stats.serialised, 1);
    assert.equal(counts.stringify, 1, 'one JSON.stringify for 50 subscribers');
    assert.equal(counts.clone, 0, 'no structuredClone');
    assert.equal(got.length, SUBSCRIBERS);
    assert.ok(Buffer.isBuffer(got[0].data));
    for (const g of got) {
      assert.equal(g.data, got[0].data, 'the same Buffer object for every subscriber');
      assert.equal(g.droppable, true, 'broadcast events are droppable for a slow reader');
    }
    const msg = JSON.parse(got[0].data.toString());
    assert.equal(msg.type, 'telemetry_update');
    assert.deepEqual(Object.keys(msg.telemetry), ['power', 'voltage']);
  });

  it(`session layer: broadcast to ${SUBSCRIBERS} connections encodes once and passes the identical Buffer to every socket`, async () => {
    const gateway = new HubGateway({ name: 'test', authenticate: () => ({ ok: false, status: 401, reason: 'no' }), handler: { message() {} } });
    const sockets = [];
    for (let i = 0; i < SUBSCRIBERS; i++) {
      const ws = fakeSocket();
      sockets.push(ws);
      gateway.connections.add(new HubConnection(ws, { id: `u${i}` }, '127.0.0.1', undefined, gateway.options.backpressure, gateway.options.rate, 8, { kill() {} }));
    }
    const text = JSON.stringify({ type: 'attribute_change', identity: '1000aa0001', instance_id: 1, attr: { attribute: 'power', val: 'on', val_type: 'string' } });
    let n;
    const orig = Buffer.from;
    let encodes = 0;
    Buffer.from = function (...args) {
      if (args[0] === text) encodes++;
      return orig.apply(this, args);
    };
    let counts;
    try {
      counts = counting(() => { n = gateway.broadcast(text); });
    } finally {
      Buffer.from = orig;
    }
    assert.equal(n, SUBSCRIBERS);
    assert.equal(encodes, 1, 'the text is encoded once');
    assert.equal(counts.stringify, 0, 'no serialisation per connection');
    assert.equal(counts.clone, 0);
    const first = sockets[0].sent[0];
    assert.ok(Buffer.isBuffer(first));
    for (const ws of sockets) {
      assert.equal(ws.sent.length, 1);
      assert.equal(ws.sent[0], first, 'the same Buffer object on every socket');
    }
    gateway.connections.clear();
    await gateway.close();
  });
});

describe('hub: a telemetry subscriber that stops reading', function () {
  this.timeout(60000);
  let s;
  afterEach(async () => {
    if (s) await s.stop();
    s = undefined;
  });

  it('has its server-side buffer bounded (events dropped, then disconnected) while the others keep receiving', async () => {
    const backpressure = { highWaterBytes: 32 * 1024, maxBufferedBytes: 128 * 1024, maxCongestedMs: 300 };
    s = await startStack({ server: { gateway: { backpressure } } });
    const clients = [];
    for (let i = 0; i < 3; i++) {
      const c = await s.authed(`user${i}`);
      const r = await c.ask({ type: 'subscribe', channel: 'telemetry' });
      assert.equal(r.type, 'subscription_confirmed');
      clients.push(c);
    }
    const [slow, ...fast] = clients;
    const received = fast.map(() => 0);
    fast.forEach((c, i) => c.ws.on('message', () => { received[i]++; }));
    const gateway = s.server.gateway;
    await waitFor(() => gateway.size === 3);
    // The slow client's connection is the first one opened.
    const slowConn = [...gateway.connections].sort((a, b) => a.id - b.id)[0];
    slow.ws._socket.pause(); // stops reading: the kernel buffers fill, then the server's
    const padding = 'x'.repeat(900);
    let maxBuffered = 0;
    let sent = 0;
    // Loopback absorbs a few MB in kernel buffers first; the bound is on what the server keeps.
    // Send until the server cuts it (it does so on a send once it has been congested for
    // maxCongestedMs), however fast or slow this machine is.
    const deadline = Date.now() + 30000;
    for (let i = 0; gateway.size === 3 && Date.now() < deadline; i++) {
      s.service.deviceEvent('update', { deviceid: '1000aa0001', params: { power: '1', voltage: '230', current: '0.1', note: padding }, normalized: { power: 1 + (i % 100), voltage: 230, current: 0.1 } });
      sent++;
      maxBuffered = Math.max(maxBuffered, slowConn.bufferedAmount);
      if (i % 200 === 0) await sleep(2);
    }
    await waitFor(() => gateway.size === 2, 10000);
    assert.ok(slowConn.droppedEvents > 0, 'events were dropped for the slow client before it was cut');
    assert.ok(maxBuffered <= backpressure.maxBufferedBytes, `its server-side buffer stayed bounded (${maxBuffered} bytes)`);
    assert.ok(gateway.stats.slowReaders >= 1, 'counted as a slow reader');
    slow.ws._socket.resume(); // it reads what the kernel held, then sees the server's cut
    await slow.waitClose(15000);
    // The others got every update (nothing was dropped for them).
    await waitFor(() => received.every((n) => n >= sent), 20000);
    assert.deepEqual(received, fast.map(() => sent));
    for (const conn of gateway.connections) assert.equal(conn.droppedEvents, 0);
  });
});
