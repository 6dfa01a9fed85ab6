'use strict';
// Shared fixture of the telemetry tests (and its own smoke test): a real CoolkitCloud (plain
// WS, 127.0.0.1) feeding a TelemetryServer on its own port, devices speaking the device
// protocol, and API clients.
const assert = require('node:assert/strict');
const { SignJWT } = require('jose');
const { startCloud } = require('../helpers/cloud');
const { RawClient, sleep, waitFor } = require('../helpers/raw');
const { TelemetryServer, signToken, normaliseRules } = require('../../dist/src/hub/telemetry');

const SECRET = 'telemetry-test-secret-0123456789abcdef';
const FACTORY = 'f0000000-0000-4000-8000-000000000001';

async function startStack(options = {}) {
  const { cloud } = options.cloud ? { cloud: options.cloud } : await startCloud({ tls: 'off' });
  const server = new TelemetryServer({
    secret: SECRET,
    listen: { mode: 'port', bind: '127.0.0.1', port: 0 },
    rules: [],
    device: (id) => cloud.device(id),
    devices: () => cloud.devices(),
    tickMs: 50,
    ...options.server,
    rules: normaliseRules(options.server?.rules ?? []).rules,
    gateway: { attempts: { attemptsPerMinute: 0 }, ...(options.server?.gateway ?? {}) },
  });
  const feed = (kind) => (ev) => server.service.deviceEvent(kind, ev);
  const listeners = { update: feed('update'), online: feed('online'), offline: feed('offline') };
  for (const [k, fn] of Object.entries(listeners)) cloud.on(k, fn);
  server.init();
  await server.listen();
  const port = server.port;
  const clients = [];
  const devices = [];
  const stack = {
    cloud,
    server,
    service: server.service,
    port,
    url: (path = '/ws') => `ws://127.0.0.1:${port}${path}`,
    token: (sub = 'alice', ttlSeconds = 600) => signToken(SECRET, { sub, ttlSeconds }).then((r) => r.token),
    client(path = '/ws', opts = {}) {
      const c = new RawClient(stack.url(path), opts);
      clients.push(c);
      return c;
    },
    /** A client that is connected and authenticated; resolves with it (auth_response read). */
    async authed(sub = 'alice', path = '/ws', opts = {}) {
      const c = stack.client(path, opts);
      await c.open();
      const r = await c.ask({ type: 'auth', token: await stack.token(sub) });
      assert.equal(r.success, true, JSON.stringify(r));
      c.auth = r;
      return c;
    },
    async device(deviceid = '1000aa0001', params = { switch: 'off' }, model = 'PSA-BHA-GL') {
      const dev = new RawClient(`ws://127.0.0.1:${cloud.port}/api/ws`);
      devices.push(dev);
      await dev.open();
      const reg = await dev.ask({ userAgent: 'device', apikey: FACTORY, deviceid, action: 'register', version: 2, romVersion: '2.0.4', model });
      dev.key = reg.apikey;
      dev.report = (p) => dev.ask({ userAgent: 'device', apikey: dev.key, deviceid, action: 'update', params: p });
      await dev.report(params);
      return dev;
    },
    async stop() {
      for (const [k, fn] of Object.entries(listeners)) cloud.off(k, fn);
      await server.close();
      for (const c of clients) c.close();
      for (const d of devices) d.close();
      if (!options.cloud) await cloud.close();
    },
  };
  return stack;
}

/** Read frames until one matches (others are returned in `skipped`). */
async function nextMatching(client, predicate, ms = 3000) {
  const until = Date.now() + ms;
  const skipped = [];
  for (;;) {
    const left = until - Date.now();
    if (left <= 0) throw new Error(`no matching frame within ${ms} ms; got ${JSON.stringify(skipped).slice(0, 400)}`);
    const m = await client.next(left);
    if (predicate(m)) return Object.assign(m, { skipped });
    skipped.push(m);
  }
}

/** Collect every frame that arrives within `ms`. */
async function drain(client, ms = 200) {
  const out = [];
  const until = Date.now() + ms;
  for (;;) {
    const left = until - Date.now();
    if (left <= 0) return out;
    try {
      out.push(await client.next(left));
    } catch {
      return out;
    }
  }
}

function signed(claims, { secret = SECRET, alg = 'HS256', exp } = {}) {
  let jwt = new SignJWT(claims).setProtectedHeader({ alg });
  if (exp !== undefined) jwt = jwt.setExpirationTime(exp);
  return jwt.sign(new TextEncoder().encode(secret));
}

module.exports = { startStack, nextMatching, drain, signed, SECRET, sleep, waitFor };

describe('telemetry fixture', function () {
  this.timeout(10000);

  it('starts a cloud and a telemetry server, and stops both', async () => {
    const s = await startStack();
    assert.ok(s.port > 0);
    assert.deepEqual(s.server.paths, ['/ws', '/ws/telemetry', '/ws/alerts', '/ws/devices', '/ws/system']);
    const c = await s.authed();
    assert.equal(c.auth.user, 'alice');
    await s.stop();
    assert.equal((await c.waitClose()).code, 1001);
  });
});
