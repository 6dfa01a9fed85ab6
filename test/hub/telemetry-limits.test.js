'use strict';
// The seed's limits, enforced with their real numbers: 100 messages/s per connection, 1 KB per
// message (and per batch item), 50 items per batch, 1000 connections in total, 100 per user,
// 10 new connections per minute per address. Loopback has a whole /8, so "many addresses" are
// 127.0.0.x source addresses.
const assert = require('node:assert/strict');
const http = require('node:http');
const { startStack, drain, sleep, waitFor } = require('./telemetry-fixture.test');

/** The gateway defaults (10 attempts per minute per address), not the fixture's relaxed ones. */
const realLimits = { gateway: { attempts: { attemptsPerMinute: 10 } } };

/**
 * Frames from `client` until `done(frames)` holds (up to `ms`), then whatever follows within a
 * short quiet period: waits on what the server has done, not on a fixed time, so a slow machine
 * does not cut the answers short.
 */
async function collectUntil(client, done, ms = 20000) {
  const frames = [];
  const until = Date.now() + ms;
  while (!done(frames) && Date.now() < until) {
    try {
      frames.push(await client.next(Math.max(1, until - Date.now())));
    } catch {
      break;
    }
  }
  frames.push(...(await drain(client, 100)));
  return frames;
}

function upgrade(url, localAddress, headers = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url.replace(/^ws/, 'http'));
    const req = http.request(u, { localAddress, headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers } });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('upgrade', (res, socket) => resolve({ status: res.statusCode, socket }));
    req.on('error', reject);
    req.end();
  });
}

describe('telemetry limits', function () {
  this.timeout(60000);
  let s;
  afterEach(async () => {
    if (s) await s.stop();
    s = undefined;
  });

  it('100 messages per second per connection: the rest are dropped with one rate_limited error', async () => {
    s = await startStack();
    const t0 = Date.now(); // before the bucket is filled (at the connection)
    const c = await s.authed();
    const text = JSON.stringify({ type: 'ping' });
    for (let i = 0; i < 150; i++) c.ws.send(text);
    // every ping is either answered or counted as dropped
    const frames = await collectUntil(c, (f) => f.filter((x) => x.type === 'pong').length + s.server.gateway.stats.rateLimited >= 150);
    const elapsed = Date.now() - t0;
    const pongs = frames.filter((f) => f.type === 'pong').length;
    const errors = frames.filter((f) => f.type === 'error');
    // The bucket holds 100 (the auth message took one) and refills at 100/s: a burst of 150
    // gets about 100 through, plus what refilled while the server read them (bounded by the
    // time this took, however slow the machine).
    assert.ok(pongs >= 99 && pongs <= 100 + Math.ceil(elapsed / 10), `pongs: ${pongs} in ${elapsed} ms`);
    assert.ok(errors.length >= 1 && errors.length <= 1 + Math.ceil(elapsed / 1000), `one rate_limited error per second, not one per dropped message: ${errors.length} in ${elapsed} ms`);
    assert.equal(errors[0].error, 'rate_limited');
    assert.ok(errors[0].dropped >= 1);
    assert.equal(s.server.gateway.stats.rateLimited, 150 - pongs);
    assert.equal((await c.ask({ type: 'ping' }, 2000)).type, 'pong', 'a pause lets messages through again');
  });

  it('batch items count toward the rate: 3 full batches at once get about 100 items through', async () => {
    s = await startStack();
    const t0 = Date.now(); // before the bucket is filled (at the connection)
    const c = await s.authed();
    const batch = JSON.stringify({ type: 'batch', messages: Array.from({ length: 50 }, () => ({ type: 'ping' })) });
    for (let i = 0; i < 3; i++) c.ws.send(batch);
    // every item is either answered or reported dropped (per batch, or its whole frame at the door)
    const accounted = (f) => {
      const pongs = f.filter((x) => x.type === 'pong').length;
      const items = f.filter((x) => x.type === 'error' && x.ref === 'batch').reduce((n, e) => n + e.indexes.length, 0);
      return pongs + items + 50 * s.server.gateway.stats.rateLimited >= 150; // a frame dropped at the door is counted once
    };
    const frames = await collectUntil(c, accounted);
    const elapsed = Date.now() - t0;
    const pongs = frames.filter((f) => f.type === 'pong').length;
    const limited = frames.filter((f) => f.type === 'error' && f.error === 'rate_limited');
    // 100 in the bucket plus what refilled (100/s) while the server read them
    assert.ok(pongs >= 99 && pongs <= 100 + Math.ceil(elapsed / 10), `pongs: ${pongs} in ${elapsed} ms`);
    // Dropped items are reported once per batch (with their indexes); a batch frame that finds
    // the bucket empty is dropped whole, reported at most once a second.
    assert.ok(limited.length >= 1 && limited.length <= 3, JSON.stringify(limited));
    const itemDrops = limited.filter((e) => e.ref === 'batch').reduce((n, e) => n + e.indexes.length, 0);
    const frameDrops = 150 - pongs - itemDrops;
    assert.equal(frameDrops % 50, 0, 'the rest are whole batch frames dropped at the door');
    assert.equal(frameDrops > 0, limited.some((e) => e.ref === undefined));
  });

  it('flooding for 3 s closes the connection (1008 rate limit exceeded)', async () => {
    s = await startStack();
    const c = await s.authed();
    const text = JSON.stringify({ type: 'ping' });
    const flood = setInterval(() => {
      if (c.closed) return;
      for (let i = 0; i < 30; i++) c.ws.send(text);
    }, 100);
    try {
      const closed = await c.waitClose(6000);
      assert.deepEqual([closed.code, closed.reason], [1008, 'rate limit exceeded']);
    } finally {
      clearInterval(flood);
    }
    assert.ok(s.server.gateway.stats.rateClosed >= 1);
  });

  it('1 KB per message: 1024 bytes pass, 1025 get message_too_large; a frame over 64 KiB closes with 1009', async () => {
    s = await startStack();
    const c = await s.authed();
    const base = '{"type":"ping"}';
    const ok = base + ' '.repeat(1024 - base.length);
    assert.equal(Buffer.byteLength(ok), 1024);
    assert.equal((await c.ask(ok)).type, 'pong');
    const big = await c.ask(base + ' '.repeat(1025 - base.length));
    assert.deepEqual([big.type, big.error], ['error', 'message_too_large']);
    const item = await c.ask({ type: 'batch', messages: [{ type: 'subscribe', channel: 'alerts', alert_type: Array.from({ length: 20 }, (_, i) => `${i}`.padEnd(60, 'x')) }] });
    assert.deepEqual([item.error, item.index], ['message_too_large', 0]);
    c.send('x'.repeat(64 * 1024 + 1));
    assert.equal((await c.waitClose()).code, 1009);
  });

  it('10 new connections per minute per address: the 11th gets HTTP 429 with Retry-After; other addresses are not affected', async () => {
    s = await startStack({ server: realLimits });
    for (let i = 0; i < 10; i++) {
      const r = await upgrade(s.url(), '127.0.0.2');
      assert.equal(r.status, 101);
      r.socket.destroy();
    }
    const refused = await upgrade(s.url(), '127.0.0.2');
    assert.equal(refused.status, 429);
    assert.ok(Number(refused.headers['retry-after']) >= 1);
    const other = await upgrade(s.url(), '127.0.0.3');
    assert.equal(other.status, 101);
    other.socket.destroy();
  });

  it('100 connections per user: the 101st authentication is refused (too_many_connections, 1013); a header token gets 503', async () => {
    s = await startStack({ server: realLimits });
    const clients = [];
    for (let i = 0; i < 100; i++) {
      const c = s.client('/ws', { localAddress: `127.0.1.${Math.floor(i / 10) + 1}` });
      clients.push(c);
    }
    await Promise.all(clients.map((c) => c.open()));
    const token = await s.token('alice');
    const answers = await Promise.all(clients.map((c) => c.ask({ type: 'auth', token }, 5000)));
    assert.ok(answers.every((a) => a.success === true));
    assert.equal(s.service.usersConnected('alice'), 100);
    const extra = s.client('/ws', { localAddress: '127.0.1.20' });
    await extra.open();
    const r = await extra.ask({ type: 'auth', token });
    assert.deepEqual([r.type, r.success, r.error], ['auth_response', false, 'too_many_connections']);
    assert.equal((await extra.waitClose()).code, 1013);
    const header = await upgrade(s.url(), '127.0.1.21', { Authorization: `Bearer ${token}` });
    assert.equal(header.status, 503);
    // Another user is not affected, and a closed connection frees a slot.
    assert.equal((await s.authed('bob', '/ws', { localAddress: '127.0.1.22' })).auth.success, true);
    clients[0].close();
    await waitFor(() => s.service.usersConnected('alice') === 99);
    assert.equal((await s.authed('alice', '/ws', { localAddress: '127.0.1.23' })).auth.success, true);
  });

  it('1000 connections in total: the 1001st gets HTTP 503', async () => {
    s = await startStack({ server: { ...realLimits, limits: { authTimeoutMs: 60000 } } });
    const sockets = [];
    try {
      for (let block = 0; block < 10; block++) {
        const batch = [];
        for (let i = 0; i < 100; i++) {
          const n = block * 100 + i;
          batch.push(upgrade(s.url(), `127.0.2.${Math.floor(n / 10) + 1}`));
        }
        for (const r of await Promise.all(batch)) {
          assert.equal(r.status, 101);
          sockets.push(r.socket);
        }
      }
      await waitFor(() => s.server.connections === 1000);
      const refused = await upgrade(s.url(), '127.0.3.1');
      assert.equal(refused.status, 503);
      assert.match(refused.body, /connection limit \(1000\)/);
      sockets.pop().destroy();
      await waitFor(() => s.server.connections === 999);
      const again = await upgrade(s.url(), '127.0.3.1');
      assert.equal(again.status, 101);
      sockets.push(again.socket);
    } finally {
      for (const sock of sockets) sock.destroy();
    }
    await sleep(50);
  });
});
