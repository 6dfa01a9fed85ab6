'use strict';
// Tests of the device simulator (src/sim) against a small fake CoolKit server written here:
// HTTPS (self-signed) or HTTP dispatch + a `ws` WebSocketServer on /api/ws, on 127.0.0.1:0.
// Message shapes are checked against the 2017 capture (shared/seeds/001_*.txt), key order included.

const assert = require('node:assert/strict');
const http = require('node:http');
const https = require('node:https');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { WebSocketServer } = require('ws');
const selfsigned = require('selfsigned');
const sim = require('../../dist/src/sim');

const { SimulatedDevice, SimDeviceError } = sim;
const CLI = path.join(__dirname, '../../dist/src/sim/cli.js');
const DEVICE_INDEX = path.join(__dirname, '../../dist/src/sim/index.js');
const DEVICEID = '100008db11';
const FACTORY = '0d2f5e7a-3c1b-4a8e-9f10-2b3c4d5e6f70';
const ISSUED = '7c1e9a44-8d2b-4f6a-b0c3-5e9d2a1f8b67';
// The seed's params in the seed's key order, then what newer UIID1 firmware adds (the default 'basic'
// profile plays both: the seed's five keys are a prefix of its state).
const SEED_PARAMS = {
  switch: 'off',
  fwVersion: '1.5.5',
  rssi: -31,
  staMac: '5C:CF:7F:08:DB:11',
  startup: 'off',
  pulse: 'off',
  pulseWidth: 500,
  sledOnline: 'on',
};

let pems;

/** Poll until fn() is truthy; fail with `what` after timeoutMs. */
async function until(fn, what, timeoutMs = 10000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** deepEqual plus identical key order (top level and params), since the brief asks for seed-exact messages. */
function assertExact(actual, expected) {
  assert.deepEqual(actual, expected);
  assert.deepEqual(Object.keys(actual), Object.keys(expected), 'key order');
  if (expected.params && typeof expected.params === 'object' && !Array.isArray(expected.params)) {
    assert.deepEqual(Object.keys(actual.params), Object.keys(expected.params), 'params key order');
  }
}

/**
 * Fake server. Knobs: dispatchFailures (answer N dispatches with HTTP 500), registerError
 * (non-zero error in the register reply), advertisedIP, autoPong.
 */
async function startServer({ tls = true, autoPong = true } = {}) {
  const srv = { dispatches: [], conns: [], dispatchFailures: 0, registerError: 0, advertisedIP: '127.0.0.1', pings: 0 };
  const onRequest = (req, res) => {
    if (req.method !== 'POST' || req.url !== '/dispatch/device') {
      res.writeHead(404).end();
      return;
    }
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      srv.dispatches.push({ headers: req.headers, json: JSON.parse(body) });
      if (srv.dispatchFailures > 0) {
        srv.dispatchFailures--;
        res.writeHead(500).end('{"error":500}');
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: 0, reason: 'ok', IP: srv.advertisedIP, port: srv.port }));
    });
  };
  const server = tls ? https.createServer({ key: pems.private, cert: pems.cert }, onRequest) : http.createServer(onRequest);
  const wss = new WebSocketServer({ server, path: '/api/ws', autoPong });
  wss.on('connection', (ws) => {
    const conn = { ws, messages: [], closed: false };
    srv.conns.push(conn);
    ws.on('close', () => (conn.closed = true));
    ws.on('ping', () => srv.pings++);
    ws.on('message', (data) => {
      const msg = JSON.parse(data.toString());
      conn.messages.push(msg);
      const reply = replyTo(srv, msg);
      if (reply) ws.send(JSON.stringify(reply));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  srv.port = server.address().port;
  srv.url = `${tls ? 'https' : 'http'}://127.0.0.1:${srv.port}`;
  srv.all = () => srv.conns.flatMap((c) => c.messages);
  srv.push = (conn, msg) => conn.ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
  srv.close = async () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  };
  return srv;
}

function replyTo(srv, msg) {
  const head = { error: 0, deviceid: msg.deviceid, apikey: ISSUED };
  switch (msg.action) {
    case 'register':
      if (srv.registerError) return { error: srv.registerError, reason: 'refused' };
      return { ...head, config: { hb: 1, hbInterval: 145 } };
    case 'date':
      return { ...head, date: new Date().toISOString() };
    case 'update':
      return head;
    case 'query':
      return { ...head, params: 0 };
    default:
      return undefined; // acks from the device get no reply
  }
}

/** A server `update` in the seed's shape. */
function serverUpdate(sequence, params, deviceid = DEVICEID) {
  return { action: 'update', deviceid, apikey: ISSUED, userAgent: 'app', sequence, ts: 0, params, from: 'app' };
}

const expectedAck = (sequence, error = 0, deviceid = DEVICEID) => ({
  error,
  userAgent: 'device',
  apikey: ISSUED,
  deviceid,
  sequence,
});
const expectedReport = (params, deviceid = DEVICEID) => ({
  userAgent: 'device',
  apikey: ISSUED,
  deviceid,
  action: 'update',
  params,
});

describe('sim: device simulator', function () {
  this.timeout(20000);
  const cleanup = [];
  const servers = [];
  const devices = [];

  before(async function () {
    this.timeout(30000);
    pems = await selfsigned.generate(null, { keySize: 2048, algorithm: 'sha256' });
  });

  async function server(opts) {
    const s = await startServer(opts);
    servers.push(s);
    return s;
  }
  function device(opts) {
    const d = new SimulatedDevice({ deviceid: DEVICEID, apikey: FACTORY, reconnect: false, ...opts });
    devices.push(d);
    return d;
  }
  /** Device registered and through its 4-message handshake; returns the connection record. */
  async function online(srv, opts) {
    const dev = device({ server: srv.url, ...opts });
    await dev.start();
    const conn = await until(() => srv.conns.find((c) => c.messages.length >= 4), 'handshake');
    return { dev, conn };
  }

  afterEach(async () => {
    await Promise.all(devices.splice(0).map((d) => d.stop()));
    await Promise.all(servers.splice(0).map((s) => s.close()));
    for (const fn of cleanup.splice(0)) fn();
  });

  describe('handshake', () => {
    it('dispatches, registers and sends date, full update and query exactly as the seed', async () => {
      const srv = await server();
      const dev = device({ server: srv.url });
      const events = [];
      dev.on('registered', (reply) => events.push(['registered', reply]));
      dev.on('report', (p) => events.push(['report', p]));
      await dev.start();

      assert.equal(srv.dispatches.length, 1);
      const d = srv.dispatches[0];
      assert.equal(d.headers['content-type'], 'application/json');
      assert.equal(typeof d.json.ts, 'number');
      assertExact(
        { ...d.json, ts: 0 },
        { accept: 'ws;2', version: 2, ts: 0, deviceid: DEVICEID, apikey: FACTORY, model: 'ITA-GZ1-GL', romVersion: '1.5.5' },
      );

      const conn = await until(() => srv.conns[0] && srv.conns[0].messages.length >= 4 && srv.conns[0], 'handshake');
      const [register, date, update, query] = conn.messages;
      assert.equal(typeof register.ts, 'number');
      assertExact(
        { ...register, ts: 0 },
        {
          userAgent: 'device',
          apikey: FACTORY,
          deviceid: DEVICEID,
          action: 'register',
          version: 2,
          romVersion: '1.5.5',
          model: 'ITA-GZ1-GL',
          ts: 0,
        },
      );
      assertExact(date, { userAgent: 'device', apikey: ISSUED, deviceid: DEVICEID, action: 'date' });
      assertExact(update, expectedReport(SEED_PARAMS));
      assertExact(query, { userAgent: 'device', apikey: ISSUED, deviceid: DEVICEID, action: 'query', params: ['timers'] });

      await sleep(100);
      assert.equal(conn.messages.length, 4, 'nothing else is sent unprompted');
      assert.equal(dev.registered, true);
      assert.equal(dev.issuedApikey, ISSUED);
      assert.deepEqual(dev.state, SEED_PARAMS);
      assert.deepEqual(
        events.map((e) => e[0]),
        ['report', 'registered'],
      );
      assert.equal(events[1][1].config.hbInterval, 145);
    });

    it('skips the timers query with queryTimers:false and uses custom model/rom/params', async () => {
      const srv = await server();
      const dev = device({ server: srv.url, queryTimers: false, model: 'PSF-B04-GL', romVersion: '2.0.2', params: { switch: 'on' } });
      await dev.start();
      const conn = await until(() => srv.conns[0] && srv.conns[0].messages.length >= 3 && srv.conns[0], 'handshake');
      await sleep(80);
      assert.deepEqual(
        conn.messages.map((m) => m.action),
        ['register', 'date', 'update'],
      );
      assert.equal(conn.messages[0].model, 'PSF-B04-GL');
      assert.equal(conn.messages[0].romVersion, '2.0.2');
      assert.equal(srv.dispatches[0].json.model, 'PSF-B04-GL');
      assertExact(conn.messages[2], expectedReport({ switch: 'on' }));
    });

    it('uses ws:// for an http:// server and connectHost overrides the dispatch IP', async () => {
      const srv = await server({ tls: false });
      srv.advertisedIP = '192.0.2.1'; // TEST-NET-1: unreachable, so only the override can work
      const dev = device({ server: srv.url, connectHost: '127.0.0.1' });
      await dev.start();
      assert.equal(dev.registered, true);
      assert.equal(srv.conns.length, 1);
    });

    it('sends WebSocket ping frames at pingIntervalMs and stays connected when ponged', async () => {
      const srv = await server();
      const { dev } = await online(srv, { pingIntervalMs: 25 });
      await until(() => srv.pings >= 3, '3 pings');
      assert.equal(dev.registered, true);
      assert.equal(srv.conns.length, 1);
    });

    it('drops the connection and reconnects when a ping gets no pong', async () => {
      const srv = await server({ autoPong: false });
      const errors = [];
      const { dev } = await online(srv, { pingIntervalMs: 20, pongTimeoutMs: 40, reconnect: { minMs: 10, maxMs: 20 } });
      dev.on('error', (e) => errors.push(e.message));
      await until(() => srv.dispatches.length >= 2 && srv.conns.length >= 2, 'reconnect after missing pong');
      assert.ok(errors.some((m) => /no pong/.test(m)), `errors: ${errors}`);
    });
  });

  describe('server commands', () => {
    it('applies a server update, acks it exactly like the seed, then reports the full state', async () => {
      const srv = await server();
      const { dev, conn } = await online(srv);
      const commands = [];
      dev.on('command', (params, msg) => commands.push({ params, msg, state: dev.state }));

      srv.push(conn, serverUpdate('1505608036953', { switch: 'on' }));
      await until(() => conn.messages.length >= 6, 'ack + report');
      assertExact(conn.messages[4], expectedAck('1505608036953'));
      assertExact(conn.messages[5], expectedReport({ ...SEED_PARAMS, switch: 'on' }));
      assert.equal(dev.state.switch, 'on');
      assert.equal(commands.length, 1);
      assert.deepEqual(commands[0].params, { switch: 'on' });
      assert.equal(commands[0].msg.sequence, '1505608036953');
      assert.equal(commands[0].state.switch, 'on', "'command' fires after the params were applied");

      const timers = [{ coolkit_timer_type: 'once', at: '2017-09-17T00:30:00.000Z', enabled: 1, do: { switch: 'off' }, type: 'once' }];
      srv.push(conn, serverUpdate('1505608072619', { timers }));
      await until(() => conn.messages.length >= 8, 'second ack + report');
      assertExact(conn.messages[6], expectedAck('1505608072619'));
      assert.deepEqual(conn.messages[7].params.timers, timers);
      assert.equal(conn.messages[7].params.switch, 'on', 'merge, not replace');
    });

    it('merges a partial switches array by outlet', async () => {
      const srv = await server();
      const switches = [0, 1, 2, 3].map((outlet) => ({ switch: 'off', outlet }));
      const { dev, conn } = await online(srv, { params: { switches, fwVersion: '2.0.2' } });

      srv.push(conn, serverUpdate('1', { switches: [{ outlet: 2, switch: 'on' }] }));
      await until(() => conn.messages.length >= 6, 'ack + report');
      const expected = [
        { switch: 'off', outlet: 0 },
        { switch: 'off', outlet: 1 },
        { switch: 'on', outlet: 2 },
        { switch: 'off', outlet: 3 },
      ];
      assert.deepEqual(dev.state.switches, expected);
      assertExact(conn.messages[5], expectedReport({ switches: expected, fwVersion: '2.0.2' }));
    });

    it('onCommand can answer with an error code or swallow a command without ack', async () => {
      const srv = await server();
      const seen = [];
      const { dev, conn } = await online(srv, {
        onCommand: (params, msg) => {
          seen.push(msg.sequence);
          if (msg.sequence === '1') return { error: 400 };
          if (msg.sequence === '2') return { noAck: true };
          return undefined;
        },
      });
      const commands = [];
      dev.on('command', (p) => commands.push(p));

      srv.push(conn, serverUpdate('1', { switch: 'on' }));
      srv.push(conn, serverUpdate('2', { startup: 'on' }));
      srv.push(conn, serverUpdate('3', { rssi: -50 }));
      await until(() => conn.messages.length >= 7, 'acks');
      await sleep(50);
      // Refused (no report), swallowed (nothing at all), accepted (ack + report), in that order.
      assertExact(conn.messages[4], expectedAck('1', 400));
      assertExact(conn.messages[5], expectedAck('3'));
      assertExact(conn.messages[6], expectedReport({ ...SEED_PARAMS, rssi: -50 }));
      assert.equal(conn.messages.length, 7);
      assert.deepEqual(seen, ['1', '2', '3']);
      assert.equal(dev.state.switch, 'off', 'refused command not applied');
      assert.equal(dev.state.startup, 'off', 'swallowed command not applied');
      assert.deepEqual(commands, [{ rssi: -50 }]);
    });

    it('a throwing onCommand falls back to normal handling and reports an error event', async () => {
      const srv = await server();
      const errors = [];
      const { dev, conn } = await online(srv, {
        onCommand: () => {
          throw new Error('hook broke');
        },
      });
      dev.on('error', (e) => errors.push(e.message));
      srv.push(conn, serverUpdate('9', { switch: 'on' }));
      await until(() => conn.messages.length >= 6, 'ack + report');
      assertExact(conn.messages[4], expectedAck('9'));
      assert.deepEqual(errors, ['hook broke']);
    });

    it('ackDelayMs delays the ack', async () => {
      const srv = await server();
      // a delay well above what a busy machine adds to the check below
      const { conn } = await online(srv, { ackDelayMs: 600 });
      const t0 = Date.now();
      srv.push(conn, serverUpdate('5', { switch: 'on' }));
      await sleep(60);
      assert.equal(conn.messages.length, 4, 'not acked yet');
      await until(() => conn.messages.length >= 5, 'delayed ack');
      assert.ok(Date.now() - t0 >= 590, `acked after ${Date.now() - t0} ms`);
      assertExact(conn.messages[4], expectedAck('5'));
    });

    it('acks other actions (upgrade) without applying or reporting, and emits them as messages', async () => {
      const srv = await server();
      const { dev, conn } = await online(srv);
      const messages = [];
      const commands = [];
      // Only server-pushed actions and text frames: under load the replies to the handshake's
      // date/update/query can still be arriving when this listener is attached.
      dev.on('message', (m) => (typeof m === 'string' || 'action' in m) && messages.push(m));
      dev.on('command', (p) => commands.push(p));
      const upgrade = {
        action: 'upgrade',
        deviceid: DEVICEID,
        apikey: ISSUED,
        userAgent: 'app',
        sequence: '1507499250325',
        ts: 0,
        params: { binList: [{ downloadUrl: 'http://127.0.0.1/user1.bin', digest: 'ab', name: 'user1.bin' }], model: 'ITA-GZ1-GL', version: '1.5.6' },
      };
      srv.push(conn, upgrade);
      srv.push(conn, 'pong');
      await until(() => conn.messages.length >= 5 && messages.length >= 2, 'ack');
      await sleep(50);
      assertExact(conn.messages[4], expectedAck('1507499250325'));
      assert.equal(conn.messages.length, 5, 'no report after a non-update action');
      assert.deepEqual(messages, [upgrade, 'pong']);
      assert.deepEqual(commands, []);
      assert.deepEqual(dev.state, SEED_PARAMS);
    });
  });

  describe('local changes', () => {
    it('setLocal merges and reports only the changed params; report() sends the full state', async () => {
      const srv = await server();
      const { dev, conn } = await online(srv);
      const reports = [];
      dev.on('report', (p) => reports.push(p));
      assert.equal(dev.setLocal({ switch: 'on' }), true);
      assert.equal(dev.report(), true);
      await until(() => conn.messages.length >= 6, 'reports');
      assertExact(conn.messages[4], expectedReport({ switch: 'on' }));
      assertExact(conn.messages[5], expectedReport({ ...SEED_PARAMS, switch: 'on' }));
      assert.deepEqual(reports, [{ switch: 'on' }, { ...SEED_PARAMS, switch: 'on' }]);
    });

    it('reportIntervalMs sends periodic full reports', async () => {
      const srv = await server();
      const { conn } = await online(srv, { reportIntervalMs: 30 });
      await until(() => conn.messages.length >= 7, '3 periodic reports');
      for (const m of conn.messages.slice(4)) assertExact(m, expectedReport(SEED_PARAMS));
    });

    it('state is a copy and reports are refused while offline', async () => {
      const dev = device({ server: 'http://127.0.0.1:1' });
      const s = dev.state;
      s.switch = 'on';
      assert.equal(dev.state.switch, 'off');
      assert.equal(dev.setLocal({ switch: 'on' }), false);
      assert.equal(dev.state.switch, 'on', 'state still changes offline');
      assert.equal(dev.send({ a: 1 }), false);
    });
  });

  describe('failures and reconnect', () => {
    it('re-dispatches and re-registers after the server drops the socket', async () => {
      const srv = await server();
      const { dev } = await online(srv, { reconnect: { minMs: 10, maxMs: 40 } });
      const disconnects = [];
      const registrations = [];
      dev.on('disconnected', (code) => disconnects.push(code));
      dev.on('registered', () => registrations.push(Date.now()));

      srv.conns[0].ws.terminate();
      const conn2 = await until(() => srv.conns[1] && srv.conns[1].messages.length >= 4 && srv.conns[1], 'second handshake');
      assert.equal(srv.dispatches.length, 2, 'dispatch re-run');
      assertExact(srv.dispatches[1].json, { ...srv.dispatches[1].json, apikey: FACTORY });
      assert.deepEqual(
        conn2.messages.map((m) => [m.action, m.apikey]),
        [
          ['register', FACTORY],
          ['date', ISSUED],
          ['update', ISSUED],
          ['query', ISSUED],
        ],
      );
      assert.deepEqual(disconnects, [1006]);
      assert.equal(registrations.length, 1);
      assert.equal(dev.registered, true);
    });

    it('dropConnection() kills the socket like a power loss and the device comes back', async () => {
      const srv = await server();
      const { dev } = await online(srv, { reconnect: { minMs: 10, maxMs: 40 } });
      dev.dropConnection();
      assert.equal(dev.registered, false);
      await until(() => srv.conns[0].closed, 'server sees close');
      await until(() => srv.conns.length === 2 && dev.registered, 're-registration');
      assert.equal(srv.dispatches.length, 2);
    });

    it('with reconnect, start() keeps retrying failed dispatches and resolves on registration', async () => {
      const srv = await server();
      srv.dispatchFailures = 2;
      const errors = [];
      const dev = device({ server: srv.url, reconnect: { minMs: 10, maxMs: 20 } });
      dev.on('error', (e) => errors.push(e));
      await dev.start();
      assert.equal(srv.dispatches.length, 3);
      assert.equal(errors.length, 2);
      assert.equal(errors[0].status, 500);
      assert.equal(dev.registered, true);
    });

    it('without reconnect, start() rejects when the server is unreachable', async () => {
      const srv = await server();
      const url = srv.url;
      await srv.close();
      servers.splice(servers.indexOf(srv), 1);
      const dev = device({ server: url });
      await assert.rejects(dev.start(), /ECONNREFUSED/);
      assert.equal(dev.registered, false);
    });

    it('a register error is reported with its code, closes the socket, and rejects start()', async () => {
      const srv = await server();
      srv.registerError = 406;
      const dev = device({ server: srv.url });
      const errors = [];
      dev.on('error', (e) => errors.push(e));
      await assert.rejects(dev.start(), (err) => err instanceof SimDeviceError && err.code === 406);
      assert.equal(errors.length, 1);
      assert.equal(errors[0].code, 406);
      await until(() => srv.conns[0].closed, 'socket closed');
      assert.equal(srv.conns[0].messages.length, 1, 'nothing sent after a refused register');
    });

    it("an 'error' with no listener does not crash (register refused, no listener)", async () => {
      const srv = await server();
      srv.registerError = 415;
      const dev = device({ server: srv.url });
      assert.equal(dev.listenerCount('error'), 0);
      await assert.rejects(dev.start(), /415/);
    });

    it('a register refusal with reconnect retries until the server accepts', async () => {
      const srv = await server();
      srv.registerError = 503;
      const dev = device({ server: srv.url, reconnect: { minMs: 10, maxMs: 20 } });
      const started = dev.start();
      await until(() => srv.conns.length >= 2 && srv.conns[1].closed, 'second attempt refused');
      assert.equal(dev.registered, false);
      srv.registerError = 0;
      await started;
      assert.ok(srv.dispatches.length >= 3, `dispatches: ${srv.dispatches.length}`);
      assert.ok(srv.conns.at(-1).messages.length >= 1);
      assert.equal(dev.issuedApikey, ISSUED);
    });
  });

  describe('stop()', () => {
    it('closes the socket and never reconnects afterwards', async () => {
      const srv = await server();
      const { dev, conn } = await online(srv, { reconnect: { minMs: 10, maxMs: 20 }, pingIntervalMs: 15, reportIntervalMs: 15 });
      const disconnects = [];
      dev.on('disconnected', (code) => disconnects.push(code));
      await dev.stop();
      assert.equal(dev.registered, false);
      assert.deepEqual(disconnects, [1000]);
      await until(() => conn.closed, 'server sees close');
      const counts = [srv.dispatches.length, srv.all().length, srv.pings];
      await sleep(150);
      assert.deepEqual([srv.dispatches.length, srv.all().length, srv.pings], counts, 'silent after stop');
      assert.equal(srv.conns.length, 1);
    });

    it('stops a device that is waiting to reconnect and rejects a pending start()', async () => {
      const srv = await server();
      srv.dispatchFailures = 1000;
      const dev = device({ server: srv.url, reconnect: { minMs: 20, maxMs: 20 } });
      const started = dev.start();
      await until(() => srv.dispatches.length >= 2, 'retries');
      await dev.stop();
      await assert.rejects(started, /stopped/);
      const n = srv.dispatches.length;
      await sleep(100);
      assert.equal(srv.dispatches.length, n);
    });

    it('leaves no timers or sockets behind: the process exits by itself', async function () {
      this.timeout(10000);
      // A child process with a device that has every timer armed (ping, report, a pending
      // delayed ack, a pong wait). After stop() and closing its server it must exit on its own.
      const script = `
        const http = require('node:http');
        const { WebSocketServer } = require('ws');
        const { SimulatedDevice } = require(${JSON.stringify(DEVICE_INDEX)});
        const server = http.createServer((req, res) => {
          req.resume();
          req.on('end', () => res.end(JSON.stringify({ error: 0, reason: 'ok', IP: '127.0.0.1', port: server.address().port })));
        });
        const wss = new WebSocketServer({ server, path: '/api/ws', autoPong: false });
        wss.on('connection', (ws) => ws.on('message', (d) => {
          const m = JSON.parse(d);
          if (m.action === 'register') {
            ws.send(JSON.stringify({ error: 0, deviceid: m.deviceid, apikey: 'k', config: { hbInterval: 145 } }));
            ws.send(JSON.stringify({ action: 'update', sequence: '1', params: { switch: 'on' } }));
          }
        }));
        server.listen(0, '127.0.0.1', async () => {
          const dev = new SimulatedDevice({ server: 'http://127.0.0.1:' + server.address().port, deviceid: '1000000001',
            pingIntervalMs: 10, pongTimeoutMs: 60000, reportIntervalMs: 10, ackDelayMs: 60000 });
          await dev.start();
          await new Promise((r) => setTimeout(r, 50));
          await dev.stop();
          wss.close();
          server.close();
          console.log('stopped');
        });
      `;
      const child = spawn(process.execPath, ['-e', script], { cwd: path.join(__dirname, '../..'), stdio: ['ignore', 'pipe', 'pipe'] });
      cleanup.push(() => child.kill('SIGKILL'));
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      const code = await new Promise((resolve) => {
        const t = setTimeout(() => resolve('hung'), 5000);
        child.on('exit', (c) => {
          clearTimeout(t);
          resolve(c);
        });
      });
      assert.equal(code, 0, `child output: ${out}`);
      assert.match(out, /stopped/);
    });
  });

  describe('helpers', () => {
    it('derives ids, apikeys and MACs deterministically', () => {
      assert.equal(sim.deviceIdFor('1000aa', 1), '1000aa0001');
      assert.equal(sim.deviceIdFor('1000AA', 0xbeef), '1000aabeef');
      assert.throws(() => sim.deviceIdFor('1000aa', 0x10000), RangeError);
      assert.throws(() => sim.deviceIdFor('xyz', 1), RangeError);
      const k = sim.factoryApikeyFor('1000aa0001');
      assert.match(k, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.equal(sim.factoryApikeyFor('1000aa0001'), k);
      assert.notEqual(sim.factoryApikeyFor('1000aa0002'), k);
      assert.equal(sim.staMacFor('100008db11'), '5C:CF:7F:08:DB:11');
    });

    it('backoffDelay grows exponentially within [min, max] with jitter', () => {
      const p = { minMs: 1000, maxMs: 30000 };
      const mid = () => 0.5; // jitter factor 1.0
      assert.deepEqual(
        [0, 1, 2, 3, 4, 5, 50].map((a) => sim.backoffDelay(a, p, mid)),
        [1000, 2000, 4000, 8000, 16000, 30000, 30000],
      );
      assert.equal(sim.backoffDelay(2, p, () => 0), 2000);
      assert.equal(sim.backoffDelay(2, p, () => 0.999), 5996);
      assert.equal(sim.backoffDelay(0, p, () => 0), 1000, 'never below min');
    });

    it('pingIntervalFromReply follows (hbInterval + 7) s', () => {
      assert.equal(sim.pingIntervalFromReply({ config: { hb: 1, hbInterval: 145 } }), 152000);
      assert.equal(sim.pingIntervalFromReply({}), 90000);
    });

    it('mergeParams replaces plain keys and merges switches by outlet', () => {
      const state = { switch: 'off', switches: [{ switch: 'off', outlet: 0 }, { switch: 'off', outlet: 1 }] };
      sim.mergeParams(state, { switch: 'on', switches: [{ outlet: 1, switch: 'on' }, { outlet: 5, switch: 'on' }] });
      assert.deepEqual(state, {
        switch: 'on',
        switches: [
          { switch: 'off', outlet: 0 },
          { switch: 'on', outlet: 1 },
          { outlet: 5, switch: 'on' },
        ],
      });
    });

    it('parseDispatchReply rejects malformed replies', () => {
      assert.deepEqual(sim.parseDispatchReply(200, '{"error":0,"reason":"ok","IP":"1.2.3.4","port":443}'), { IP: '1.2.3.4', port: 443 });
      assert.throws(() => sim.parseDispatchReply(200, '{"error":0,"IP":"1.2.3.4","port":"443"}'), /bad port/);
      assert.throws(() => sim.parseDispatchReply(200, '{"error":402,"reason":"x"}'), (e) => e.code === 402);
      assert.throws(() => sim.parseDispatchReply(502, 'bad gateway'), (e) => e.status === 502);
    });
  });
});

describe('sim: coolkit-sim CLI', function () {
  this.timeout(8000);
  let srv;
  const children = [];

  before(async function () {
    this.timeout(30000);
    if (!pems) pems = await selfsigned.generate(null, { keySize: 2048, algorithm: 'sha256' });
  });
  afterEach(async () => {
    for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
    if (srv) await srv.close();
    srv = undefined;
  });

  function run(args) {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    const res = { child, stdout: '', stderr: '' };
    child.stdout.on('data', (d) => (res.stdout += d));
    child.stderr.on('data', (d) => (res.stderr += d));
    res.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    return res;
  }

  it('runs a fleet with deterministic ids and apikeys and exits 0 on SIGTERM', async () => {
    srv = await startServer();
    const cli = run(['--server', srv.url, '--count', '3', '--prefix', '1000bb']);
    await until(() => srv.conns.filter((c) => c.messages.length >= 4).length === 3, '3 registrations', 6000);
    const registers = srv.all().filter((m) => m.action === 'register');
    assert.deepEqual(registers.map((m) => m.deviceid).sort(), ['1000bb0001', '1000bb0002', '1000bb0003']);
    for (const m of registers) assert.equal(m.apikey, sim.factoryApikeyFor(m.deviceid));
    await until(() => /all 3 device\(s\) registered/.test(cli.stdout), 'summary line');
    assert.equal((cli.stdout.match(/ registered apikey=/g) || []).length, 3);

    cli.child.kill('SIGTERM');
    assert.equal(await cli.exited, 0, cli.stderr);
    await until(() => srv.conns.every((c) => c.closed), 'sockets closed');
  });

  it('--quiet prints nothing per device', async () => {
    srv = await startServer();
    const cli = run(['--server', srv.url, '--count', '2', '--quiet']);
    await until(() => srv.conns.filter((c) => c.messages.length >= 4).length === 2, 'registrations', 6000);
    cli.child.kill('SIGINT');
    assert.equal(await cli.exited, 0);
    assert.equal(cli.stdout, '');
  });

  it('--help prints usage and exits 0', async () => {
    const cli = run(['--help']);
    assert.equal(await cli.exited, 0);
    assert.match(cli.stdout, /^Usage: coolkit-sim --server <url>/);
  });

  for (const [args, pattern] of [
    [[], /--server is required/],
    [['--server', 'ftp://x'], /--server must be http/],
    [['--server', 'https://127.0.0.1:1', '--count', '0'], /--count must be a positive integer/],
    [['--server', 'https://127.0.0.1:1', '--count', '3x'], /--count must be a positive integer/],
    [['--server', 'https://127.0.0.1:1', '--prefix', 'zz'], /--prefix/],
    [['--server', 'https://127.0.0.1:1', '--prefix', '123456789', '--count', '16'], /does not fit/],
    [['--server', 'https://127.0.0.1:1', '--report-interval', '-1'], /--report-interval/],
    [['--server', 'https://127.0.0.1:1', '--bogus'], /bogus/],
  ]) {
    it(`exits 2 with a clear error for ${JSON.stringify(args)}`, async () => {
      const cli = run(args);
      assert.equal(await cli.exited, 2);
      assert.match(cli.stderr, pattern);
      assert.match(cli.stderr, /--help/);
    });
  }
});
