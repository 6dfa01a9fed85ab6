'use strict';
// The hub session layer (src/hub/session) with a trivial echo dialect, over real sockets on
// 127.0.0.1: auth before the upgrade, Origin allow-list, maxPayload, text-only, rate limit,
// backpressure against a slow reader, the single heartbeat sweep, attempt limits and caps, and
// serving on a port of its own or beside other listeners of a shared HTTP server.
const assert = require('node:assert/strict');
const http = require('node:http');
const WebSocket = require('ws');
const { RawClient, sleep, waitFor } = require('../helpers/raw');
const { recordingLogger } = require('../helpers/cloud');
const session = require('../../dist/src/hub/session');

const { HubGateway, OwnServer, UpgradeRouter, tokenAuthenticator, parseOrigins, originAllowed, redactUrl, joinPath, RateGate, AttemptLimiter } = session;
const TOKEN = 'secret-token-0123456789';

/** An echo dialect: replies `echo:<text>`, answers limited frames with `limited`. */
function echoHandler(extra = {}) {
  const h = {
    opened: [],
    closed: [],
    limited: 0,
    handler: {
      opened: (c) => h.opened.push(c),
      message: (c, text) => c.send(`echo:${text}`),
      limited: (c) => { h.limited++; c.send('limited'); },
      closed: (c, code) => h.closed.push(code),
    },
  };
  Object.assign(h.handler, extra);
  return h;
}

async function start(options = {}) {
  const h = echoHandler();
  const { logger, lines } = recordingLogger();
  const gateway = new HubGateway({
    name: 'test',
    authenticate: tokenAuthenticator({ token: TOKEN, allowQuery: options.allowQuery, refusalBody: { status: 5012, reason: 'invalid user credentials' } }),
    handler: h.handler,
    logger,
    ...options.gateway,
  });
  const own = new OwnServer({ bind: '127.0.0.1', port: 0 });
  own.router.add('/ws', gateway);
  await own.listen();
  const url = `ws://127.0.0.1:${own.port}/ws`;
  const clients = [];
  const connect = async (opts = {}, path = '/ws') => {
    const c = new RawClient(`ws://127.0.0.1:${own.port}${path}`, { headers: { 'smart-assistant-token': TOKEN }, ...opts });
    clients.push(c);
    await c.open();
    return c;
  };
  /** Try to connect; resolve with the HTTP refusal {status, headers, body}. */
  const refused = (opts = {}, path = '/ws') => new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${own.port}${path}`, opts);
    ws.on('open', () => { ws.terminate(); reject(new Error('connected, expected a refusal')); });
    ws.on('error', () => {});
    ws.on('unexpected-response', (_req, res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
  });
  const stop = async () => {
    for (const c of clients) c.close();
    await gateway.close();
    await own.close();
  };
  return { gateway, own, url, h, lines, connect, refused, stop };
}

describe('hub session layer', function () {
  this.timeout(15000);
  let env;
  afterEach(async () => { if (env) await env.stop(); env = undefined; });

  describe('helpers', () => {
    it('parses and matches origins exactly (scheme, host, port), never by wildcard or prefix', () => {
      const { origins, invalid } = parseOrigins(' https://Home.example.com:443/ , http://192.168.1.20:8080,*, ftp://x, ');
      assert.deepEqual(origins, ['https://home.example.com', 'http://192.168.1.20:8080']);
      assert.deepEqual(invalid, ['*', 'ftp://x']);
      assert.equal(originAllowed(undefined, []), true, 'no Origin: not a browser');
      assert.equal(originAllowed('https://home.example.com', origins), true);
      assert.equal(originAllowed('https://home.example.com.evil.net', origins), false);
      assert.equal(originAllowed('http://home.example.com', origins), false);
      assert.equal(originAllowed('null', origins), false);
      assert.equal(originAllowed('https://home.example.com', []), false, 'empty list: no browser origin');
    });

    it('redacts tokens from URLs and joins Node-RED roots', () => {
      assert.equal(redactUrl('/ws?token=abc&x=1'), '/ws?token=***&x=1');
      assert.equal(redactUrl('/ws?a=1&access_token=zz'), '/ws?a=1&access_token=***');
      assert.equal(joinPath('/', '/ws'), '/ws');
      assert.equal(joinPath('/red/', 'ws'), '/red/ws');
      assert.equal(joinPath(undefined, '/ws'), '/ws');
    });

    it('rate gate: burst, refill, then close after being over the limit for long enough', () => {
      const g = new RateGate({ burst: 3, perSecond: 10, closeAfterMs: 500 }, 0);
      assert.deepEqual([0, 0, 0, 0].map(() => g.take(0)), ['ok', 'ok', 'ok', 'limited']);
      assert.equal(g.take(100), 'ok', 'refilled one token in 100 ms');
      assert.equal(g.take(100), 'limited');
      assert.equal(g.take(400), 'ok');
      assert.deepEqual([0, 0, 0].map(() => g.take(400)), ['ok', 'ok', 'limited'], 'refill is capped at the burst');
      assert.equal(g.take(1700), 'ok', 'a quiet second ends the episode');
      // A flood at 100/s against 10/s: limited from 1710 on; a close verdict once 500 ms of it passed.
      let firstClose;
      for (let t = 1700; t <= 2400; t += 10) if (g.take(t) === 'close' && firstClose === undefined) firstClose = t;
      assert.ok(firstClose >= 2210 && firstClose <= 2230, `closed at ${firstClose}`);
    });

    it('attempt limiter: per IP per minute, failures block the IP', () => {
      const a = new AttemptLimiter({ attemptsPerMinute: 2, failuresPerMinute: 2, blockMs: 60000 });
      assert.equal(a.check('1.1.1.1', 0), 0);
      assert.equal(a.check('1.1.1.1', 0), 0);
      assert.ok(a.check('1.1.1.1', 0) > 0);
      assert.equal(a.check('2.2.2.2', 0), 0, 'other IPs unaffected');
      assert.equal(a.check('1.1.1.1', 61000), 0, 'new window');
      a.fail('3.3.3.3', 0);
      a.fail('3.3.3.3', 0);
      assert.equal(a.check('3.3.3.3', 1000), 59);
      a.prune(200000);
      assert.equal(a.size, 0);
    });
  });

  describe('before the upgrade', () => {
    it('accepts the token in the smart-assistant-token header; refuses a missing or wrong one with 401 and the SA body', async () => {
      env = await start();
      const c = await env.connect();
      c.send('hi');
      assert.equal(await c.nextText(), 'echo:hi');
      const none = await env.refused();
      assert.equal(none.status, 401);
      assert.deepEqual(JSON.parse(none.body), { status: 5012, reason: 'invalid user credentials' });
      const wrong = await env.refused({ headers: { 'smart-assistant-token': 'nope' } });
      assert.equal(wrong.status, 401);
      assert.equal(env.gateway.size, 1);
      assert.ok(env.lines.warn.some((l) => /refused a connection from 127\.0\.0\.1: no token presented \(HTTP 401\)/.test(l)));
    });

    it('takes ?token= only when allowed, and never logs it', async () => {
      env = await start();
      const q = await env.refused({}, `/ws?token=${TOKEN}`);
      assert.equal(q.status, 401, 'query token off by default');
      await env.stop();
      env = await start({ allowQuery: true, gateway: { logger: undefined } });
      const { logger, lines } = recordingLogger();
      env.gateway.options.logger = logger;
      const c = await env.connect({ headers: {} }, `/ws?token=${TOKEN}`);
      c.send('x');
      assert.equal(await c.nextText(), 'echo:x');
      assert.ok(lines.debug.some((l) => l.includes('/ws?token=***')));
      assert.ok(!Object.values(lines).flat().some((l) => l.includes(TOKEN)), 'the token is never logged');
    });

    it('refuses a browser Origin not on the allow-list with 403, accepts listed ones and clients without Origin', async () => {
      env = await start({ gateway: { origins: ['https://home.example.com'] } });
      const bad = await env.refused({ headers: { 'smart-assistant-token': TOKEN, Origin: 'https://evil.example.com' } });
      assert.equal(bad.status, 403);
      const good = await env.connect({ headers: { 'smart-assistant-token': TOKEN, Origin: 'https://home.example.com' } });
      good.send('o');
      assert.equal(await good.nextText(), 'echo:o');
      await env.connect();
      assert.equal(env.gateway.size, 2);
      await env.stop();
      env = await start();
      assert.equal((await env.refused({ headers: { 'smart-assistant-token': TOKEN, Origin: 'https://home.example.com' } })).status, 403, 'empty allow-list: no browser origin');
    });

    it('limits attempts per IP (429 + Retry-After) and blocks an IP after repeated failures', async () => {
      env = await start({ gateway: { attempts: { attemptsPerMinute: 3, failuresPerMinute: 100 } } });
      await env.connect();
      await env.connect();
      await env.connect();
      const r = await env.refused({ headers: { 'smart-assistant-token': TOKEN } });
      assert.equal(r.status, 429);
      assert.ok(Number(r.headers['retry-after']) > 0);
      await env.stop();
      env = await start({ gateway: { attempts: { attemptsPerMinute: 100, failuresPerMinute: 2, blockMs: 60000 } } });
      await env.refused({ headers: { 'smart-assistant-token': 'bad' } });
      await env.refused({ headers: { 'smart-assistant-token': 'bad' } });
      const blocked = await env.refused({ headers: { 'smart-assistant-token': TOKEN } });
      assert.equal(blocked.status, 429, 'even the right token waits out the block');
    });

    it('caps connections in total and per identity with 503', async () => {
      env = await start({ gateway: { maxConnections: 2 } });
      await env.connect();
      await env.connect();
      assert.equal((await env.refused({ headers: { 'smart-assistant-token': TOKEN } })).status, 503);
      await env.stop();
      env = await start({ gateway: { maxPerIdentity: 1 } });
      const first = await env.connect();
      assert.equal((await env.refused({ headers: { 'smart-assistant-token': TOKEN } })).status, 503);
      first.close();
      await waitFor(() => env.gateway.size === 0);
      await env.connect();
    });

    it('runs an async, pluggable authenticator (e.g. JWT) and writes its refusal', async () => {
      env = await start({
        gateway: {
          authenticate: async (req) => {
            await sleep(10);
            const auth = req.headers.authorization;
            return auth === 'Bearer good' ? { ok: true, identity: { id: 'alice', scopes: ['read'] } } : { ok: false, status: 401, reason: 'bad jwt', body: { error: 'invalid_token' } };
          },
        },
      });
      const c = await env.connect({ headers: { authorization: 'Bearer good' } });
      await waitFor(() => env.h.opened.length === 1);
      assert.equal(env.h.opened[0].identity.id, 'alice');
      c.send('a');
      assert.equal(await c.nextText(), 'echo:a');
      const r = await env.refused({ headers: { authorization: 'Bearer bad' } });
      assert.deepEqual([r.status, JSON.parse(r.body)], [401, { error: 'invalid_token' }]);
    });

    it('answers unknown paths on its own port with 404 and plain HTTP requests with 426', async () => {
      env = await start();
      assert.equal((await env.refused({ headers: { 'smart-assistant-token': TOKEN } }, '/other')).status, 404);
      const res = await new Promise((resolve) => http.get(`http://127.0.0.1:${env.own.port}/ws`, resolve));
      res.resume();
      assert.equal(res.statusCode, 426);
    });
  });

  describe('after the upgrade', () => {
    it('closes a frame over maxPayload with 1009', async () => {
      env = await start({ gateway: { maxPayload: 1024 } });
      const c = await env.connect();
      c.send('x'.repeat(1024));
      assert.equal((await c.nextText()).length, 1029);
      c.send('x'.repeat(1025));
      assert.equal((await c.waitClose()).code, 1009);
    });

    it('closes binary frames with 1003', async () => {
      env = await start();
      const c = await env.connect();
      c.ws.send(Buffer.from([1, 2, 3]), { binary: true });
      assert.equal((await c.waitClose()).code, 1003);
    });

    it('answers a flood in the dialect (drop + answer), then closes 1008 when it goes on', async () => {
      // 1 token a second: the 8 frames below all meet an empty bucket after the 5th, even when
      // this machine takes a while to handle them
      env = await start({ gateway: { rate: { burst: 5, perSecond: 1, closeAfterMs: 600 } } });
      const c = await env.connect();
      for (let i = 0; i < 8; i++) c.send(`m${i}`);
      const got = [];
      for (let i = 0; i < 8; i++) got.push(await c.nextText());
      assert.deepEqual(got.slice(0, 5), ['echo:m0', 'echo:m1', 'echo:m2', 'echo:m3', 'echo:m4']);
      assert.deepEqual(got.slice(5), ['limited', 'limited', 'limited']);
      const flood = setInterval(() => { if (c.ws.readyState === 1) for (let i = 0; i < 20; i++) c.send('f'); }, 20);
      const closed = await c.waitClose(5000);
      clearInterval(flood);
      assert.equal(closed.code, 1008);
      assert.equal(closed.reason, 'rate limit exceeded');
      assert.ok(env.gateway.stats.rateClosed >= 1);
    });

    it('a slow reader cannot grow server memory: events are dropped above the high-water mark, then it is cut', async () => {
      const backpressure = { highWaterBytes: 64 * 1024, maxBufferedBytes: 256 * 1024, maxCongestedMs: 200 };
      env = await start({ gateway: { backpressure } });
      const slow = await env.connect();
      const fast = await env.connect();
      let fastGot = 0;
      fast.ws.on('message', () => fastGot++);
      await waitFor(() => env.gateway.size === 2);
      slow.ws._socket.pause(); // stops reading: the kernel buffers fill, then the server's
      const event = 'e'.repeat(16 * 1024);
      let maxBuffered = 0;
      const slowConn = [...env.gateway.connections][0];
      // until the server cuts it (on a send once congested for maxCongestedMs), however fast this machine is
      const deadline = Date.now() + 30000;
      for (let i = 0; env.gateway.size === 2 && Date.now() < deadline; i++) {
        env.gateway.broadcast(event);
        maxBuffered = Math.max(maxBuffered, slowConn.bufferedAmount);
        if (i % 20 === 0) await sleep(5);
      }
      await waitFor(() => env.gateway.size === 1, 5000);
      assert.ok(maxBuffered <= backpressure.maxBufferedBytes, `buffer stayed bounded (${maxBuffered})`);
      assert.ok(env.gateway.stats.slowReaders >= 1);
      assert.ok(slowConn.droppedEvents > 0, 'events were dropped before the cut');
      assert.ok(fastGot > 100, 'the fast reader kept receiving');
      assert.ok(env.lines.warn.some((l) => /reads too slowly/.test(l)));
    });

    it('one heartbeat timer: pings everyone, drops a peer that does not answer, keeps live ones', async () => {
      env = await start({ gateway: { heartbeatMs: 300 } });
      const dead = await env.connect({ headers: { 'smart-assistant-token': TOKEN }, autoPong: false });
      const live = await env.connect();
      let livePings = 0;
      live.ws.on('ping', () => livePings++);
      await waitFor(() => env.gateway.size === 2);
      await waitFor(() => env.gateway.size === 1, 10000);
      assert.equal(env.gateway.stats.deadPeers, 1);
      assert.ok(dead.closed || (await dead.waitClose(5000)));
      // several more sweeps, each of which would cut a peer that did not answer the last ping
      const seen = livePings;
      await waitFor(() => livePings >= seen + 3, 10000);
      assert.equal(live.ws.readyState, 1, 'a peer that answers pings stays');
      assert.equal(env.gateway.size, 1);
      assert.equal(env.gateway.stats.deadPeers, 1);
    });

    it('broadcast encodes once and reaches every client identically', async () => {
      env = await start();
      const a = await env.connect();
      const b = await env.connect();
      await waitFor(() => env.gateway.size === 2);
      const orig = Buffer.from;
      let encodes = 0;
      Buffer.from = function (...args) { if (args[0] === '{"e":1}') encodes++; return orig.apply(this, args); };
      try {
        assert.equal(env.gateway.broadcast('{"e":1}'), 2);
      } finally {
        Buffer.from = orig;
      }
      assert.equal(encodes, 1);
      assert.equal(await a.nextText(), '{"e":1}');
      assert.equal(await b.nextText(), '{"e":1}');
    });

    it('close() sends 1001 to every client and refuses new upgrades', async () => {
      env = await start();
      const a = await env.connect();
      const closing = a.waitClose();
      await env.gateway.close();
      assert.equal((await closing).code, 1001);
      assert.equal((await env.refused({ headers: { 'smart-assistant-token': TOKEN } })).status, 503);
    });
  });

  describe('on a shared HTTP server (Node-RED style)', () => {
    it('handles only its own path and leaves other upgrade listeners alone; detaches when the last route goes', async () => {
      const server = http.createServer();
      const other = new WebSocket.Server({ noServer: true });
      server.on('upgrade', (req, socket, head) => {
        if (req.url === '/comms') other.handleUpgrade(req, socket, head, (ws) => ws.send('comms'));
      });
      await new Promise((r) => server.listen(0, '127.0.0.1', r));
      const port = server.address().port;
      const h = echoHandler();
      const gateway = new HubGateway({ name: 'shared', authenticate: tokenAuthenticator({ token: TOKEN }), handler: h.handler });
      const router = UpgradeRouter.for(server);
      const remove = router.add('/red/ws', gateway);
      assert.throws(() => UpgradeRouter.for(server).add('/red/ws', gateway), /already used/);
      assert.equal(server.listenerCount('upgrade'), 2);
      try {
        const ours = new RawClient(`ws://127.0.0.1:${port}/red/ws`, { headers: { 'smart-assistant-token': TOKEN } });
        await ours.open();
        ours.send('z');
        assert.equal(await ours.nextText(), 'echo:z');
        const theirs = new RawClient(`ws://127.0.0.1:${port}/comms`);
        await theirs.open();
        assert.equal(await theirs.nextText(), 'comms');
        ours.close();
        theirs.close();
        remove();
        assert.equal(server.listenerCount('upgrade'), 1, 'our listener is gone');
        const again = new RawClient(`ws://127.0.0.1:${port}/comms`);
        await again.open();
        assert.equal(await again.nextText(), 'comms');
        again.close();
      } finally {
        await gateway.close();
        other.close();
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      }
    });
  });
});
