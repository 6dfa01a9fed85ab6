'use strict';
// Pairing (protocol §3.1) end to end on 127.0.0.1: the coolkit-pair library and CLI against
// SimulatedAccessPoint (a Sonoff in AP mode) and a small fake Node-RED admin API written here.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { SimulatedAccessPoint } = require('../../dist/src/sim');
const provision = require('../../dist/src/provision');

const { pair, PairError, addPendingDevice, readPendingDevices, defaultImportFile, onPairingNetwork, serverNameProblem } = provision;
const CLI = path.join(__dirname, '../../dist/src/provision/cli.js');
const DEVICEID = '100008db17';
const APIKEY = '4b21ebbe-0d8a-4b6a-9c3e-1f2a3b4c5d6e';
const TOKEN = 'tok-3f9a';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let tmpRoot;
function tmpDir() {
  return fs.mkdtempSync(path.join(tmpRoot, 'case-'));
}

/** Raw request, to poke the simulator the way other clients (curl, Postman) would. */
function rawRequest(port, method, urlPath, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, headers, agent: false }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode, text, json: safeJson(text) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function listen(server, port = 0) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server.address().port));
  });
}

function close(server) {
  if (server.closeAllConnections) server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A port nothing listens on (bound once, then released). */
async function freePort() {
  const s = http.createServer();
  const port = await listen(s);
  await close(s);
  return port;
}

/**
 * Fake Node-RED admin API: adminAuth with one bearer token (when `token` is set), the
 * `/auth/token` password grant for `users`, `GET /flows`, and the coolkit endpoint
 * `POST /coolkit/:id/devices` for the deployed `servers`. `root` plays httpAdminRoot.
 */
async function startAdmin({ token, users, servers = ['srv1'], root = '', port = 0 } = {}) {
  const admin = { requests: [], devices: [], token, users, servers, server: undefined, port: 0 };
  admin.url = () => `http://127.0.0.1:${admin.port}${root}`;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      admin.requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      const send = (status, payload) => {
        const isJson = typeof payload !== 'string';
        res.writeHead(status, { 'Content-Type': isJson ? 'application/json' : 'text/html' });
        res.end(isJson ? JSON.stringify(payload) : payload);
      };
      const url = req.url.startsWith(root) ? req.url.slice(root.length) : '/<outside admin root>';
      if (req.method === 'POST' && url === '/auth/token') {
        if (!admin.users) return send(404, 'Cannot POST /auth/token');
        const f = new URLSearchParams(body);
        const ok = f.get('client_id') === 'node-red-admin' && f.get('grant_type') === 'password' && f.get('scope') === '*';
        if (ok && admin.users[f.get('username')] === f.get('password')) {
          return send(200, { access_token: admin.token, expires_in: 604800, token_type: 'Bearer' });
        }
        return send(401, 'Unauthorized');
      }
      if (admin.token && req.headers.authorization !== `Bearer ${admin.token}`) return send(401, 'Unauthorized');
      if (req.method === 'GET' && url === '/flows') {
        return send(200, [
          { id: 'tab1', type: 'tab', label: 'Flow 1' },
          ...admin.servers.map((id) => ({ id, type: 'coolkit-server', name: `server ${id}` })),
          { id: 'n1', type: 'sonoff-device-in', z: 'tab1' },
        ]);
      }
      const m = /^\/coolkit\/([^/]+)\/devices$/.exec(url);
      if (req.method === 'POST' && m) {
        const id = decodeURIComponent(m[1]);
        if (!admin.servers.includes(id)) return send(404, { error: 'not deployed' });
        admin.devices.push({ serverNodeId: id, ...JSON.parse(body) });
        return send(200, { ok: true });
      }
      return send(404, `Cannot ${req.method} ${req.url}`);
    });
  });
  admin.server = server;
  admin.port = await listen(server, port);
  admin.stop = () => close(server);
  return admin;
}

/** Run the compiled CLI; resolves {code, stdout, stderr}. */
function runCli(args, { env = {}, timeoutMs = 15000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`CLI did not exit within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('provisioning (coolkit-pair) against the simulated AP', function () {
  this.timeout(20000);
  let ap;

  before(() => {
    tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'coolkit-pair-test-'));
  });
  after(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

  beforeEach(async () => {
    ap = new SimulatedAccessPoint({ deviceid: DEVICEID, apikey: APIKEY, chipid: 'sjljb' });
    await ap.start();
  });
  afterEach(async () => {
    await ap.stop();
  });

  function baseOpts(extra = {}) {
    return {
      deviceUrl: ap.url,
      ssid: 'HomeNet',
      password: 'wifi-secret',
      serverName: '192.168.1.10',
      serverPort: 8443,
      importFile: path.join(tmpDir(), 'pending-devices.json'),
      timeoutMs: 1000,
      waitMs: 0,
      retryIntervalMs: 50,
      ...extra,
    };
  }

  describe('SimulatedAccessPoint', () => {
    it('answers GET /device like the firmware, with the factory apikey', async () => {
      const r = await rawRequest(ap.port, 'GET', '/device');
      assert.equal(r.status, 200);
      assert.deepEqual(r.json, { deviceid: DEVICEID, apikey: APIKEY, chipid: 'sjljb', accept: 'post' });
      assert.deepEqual(Object.keys(r.json), ['deviceid', 'apikey', 'chipid', 'accept']);
      assert.equal(ap.ssid, 'ITEAD-100008db17');
    });

    it('accepts the app-capture body (SSID, numeric port) and records it', async () => {
      const provisioned = new Promise((resolve) => ap.once('provisioned', resolve));
      const body = JSON.stringify({ port: 443, serverName: 'eu-disp.coolkit.cc', password: 'pw', SSID: 'Home' });
      const r = await rawRequest(ap.port, 'POST', '/ap', { headers: { 'Content-Type': 'application/json' }, body });
      assert.deepEqual(r.json, { error: 0 });
      const got = await provisioned;
      assert.equal(got.ssid, 'Home');
      assert.equal(got.port, 443);
      assert.equal(ap.received, got);
    });

    it('refuses a string port with {"error":400} and records nothing, like the real firmware', async () => {
      const body = JSON.stringify({ version: 4, ssid: 'Home', password: 'pw', serverName: '192.168.1.10', port: '8443' });
      const r = await rawRequest(ap.port, 'POST', '/ap', { headers: { 'Content-Type': 'application/json' }, body });
      assert.equal(r.status, 200);
      assert.deepEqual(r.json, { error: 400 });
      assert.equal(ap.received, undefined);

      const fixed = JSON.stringify({ version: 4, ssid: 'Home', password: 'pw', serverName: '192.168.1.10', port: 8443 });
      const ok = await rawRequest(ap.port, 'POST', '/ap', { headers: { 'Content-Type': 'application/json' }, body: fixed });
      assert.deepEqual(ok.json, { error: 0 });
    });

    it('rejects bodies without ssid/SSID, serverName or password, and non-JSON', async () => {
      for (const body of ['{"serverName":"x","port":1,"password":"p"}', '{"ssid":"a","port":1,"password":"p"}', '{"ssid":"a","serverName":"x","port":1}', 'ssid=a']) {
        const r = await rawRequest(ap.port, 'POST', '/ap', { body });
        assert.deepEqual(r.json, { error: 400 }, body);
      }
      assert.equal(ap.received, undefined);
    });

    it('with requireAppHeaders (fw 3.5.0) rejects a curl-like request but accepts okhttp + application/json', async () => {
      ap.requireAppHeaders = true;
      const body = JSON.stringify({ ssid: 'Home', password: 'pw', serverName: '192.168.1.10', port: 80 });
      const curl = await rawRequest(ap.port, 'POST', '/ap', { headers: { 'Content-Type': 'application/json', 'User-Agent': 'curl/8.5.0' }, body });
      assert.deepEqual(curl.json, { error: 400 });
      const app = await rawRequest(ap.port, 'POST', '/ap', {
        headers: { 'Content-Type': 'application/json;charset=UTF-8', 'User-Agent': 'okhttp/3.12.12' },
        body,
      });
      assert.deepEqual(app.json, { error: 0 });
    });
  });

  describe('pair() happy paths', () => {
    it('sends port as a NUMBER with both ssid keys, version 4 and app headers; saves to the import file without --node-red', async () => {
      ap.requireAppHeaders = true; // the strictest firmware must still accept us
      const opts = baseOpts({ name: 'Hall lamp', now: () => new Date('2026-02-01T10:00:00.000Z') });
      const result = await pair(opts);

      const sent = ap.received;
      assert.ok(sent, 'the device was provisioned');
      assert.deepEqual(sent.body, { version: 4, ssid: 'HomeNet', SSID: 'HomeNet', password: 'wifi-secret', serverName: '192.168.1.10', port: 8443 });
      assert.equal(typeof sent.body.port, 'number');
      assert.match(sent.headers['user-agent'], /^okhttp\//);
      assert.match(sent.headers['content-type'], /^application\/json/);
      assert.deepEqual(
        ap.requests.map((r) => `${r.method} ${r.path}`),
        ['GET /device', 'POST /ap'],
        'GET /device first, then POST /ap',
      );

      assert.equal(result.deviceid, DEVICEID);
      assert.equal(result.apikey, APIKEY);
      assert.equal(result.chipid, 'sjljb');
      assert.equal(result.recordedVia, 'import-file');
      assert.equal(result.importFile, opts.importFile);
      assert.deepEqual(result.warnings, []);
      assert.deepEqual(JSON.parse(fs.readFileSync(opts.importFile, 'utf8')), [
        { deviceid: DEVICEID, apikey: APIKEY, name: 'Hall lamp', pairedAt: '2026-02-01T10:00:00.000Z' },
      ]);
    });

    it('records the device through the admin API with a bearer token, and writes no import file', async () => {
      const admin = await startAdmin({ token: TOKEN, servers: ['srv1', 'srv2'] });
      try {
        const opts = baseOpts({ name: 'Hall lamp', nodeRed: { nodeRedUrl: admin.url(), serverNodeId: 'srv2', token: TOKEN } });
        const result = await pair(opts);
        assert.equal(result.recordedVia, 'admin-api');
        assert.equal(result.serverNodeId, 'srv2');
        assert.deepEqual(admin.devices, [{ serverNodeId: 'srv2', deviceid: DEVICEID, apikey: APIKEY, name: 'Hall lamp' }]);
        const post = admin.requests.find((r) => r.method === 'POST');
        assert.equal(post.url, '/coolkit/srv2/devices');
        assert.equal(post.headers.authorization, `Bearer ${TOKEN}`);
        assert.match(post.headers['content-type'], /^application\/json/);
        assert.equal(fs.existsSync(opts.importFile), false);
      } finally {
        await admin.stop();
      }
    });

    it('logs in with --user/--password-admin (password grant) and finds the only coolkit-server node itself, under an httpAdminRoot', async () => {
      const admin = await startAdmin({ token: TOKEN, users: { admin: 'nr-pass' }, servers: ['only1'], root: '/admin' });
      try {
        const result = await pair(baseOpts({ nodeRed: { nodeRedUrl: admin.url(), user: 'admin', adminPassword: 'nr-pass' } }));
        assert.equal(result.recordedVia, 'admin-api');
        assert.equal(result.serverNodeId, 'only1');
        const login = admin.requests[0];
        assert.equal(login.url, '/admin/auth/token');
        const form = new URLSearchParams(login.body);
        assert.deepEqual(Object.fromEntries(form), {
          client_id: 'node-red-admin',
          grant_type: 'password',
          scope: '*',
          username: 'admin',
          password: 'nr-pass',
        });
        assert.deepEqual(admin.devices, [{ serverNodeId: 'only1', deviceid: DEVICEID, apikey: APIKEY }]);
      } finally {
        await admin.stop();
      }
    });

    it('waits for Node-RED to become reachable (computer rejoining the home Wi-Fi) instead of giving up at once', async () => {
      const port = await freePort();
      const logs = [];
      let admin;
      // Node-RED comes up once pair() has found it unreachable and is retrying
      const later = (async () => {
        const until = Date.now() + 10000;
        while (!logs.some((m) => /not reachable yet/.test(m)) && Date.now() < until) await sleep(20);
        admin = await startAdmin({ port });
      })();
      try {
        const result = await pair(
          baseOpts({ nodeRed: { nodeRedUrl: `http://127.0.0.1:${port}`, serverNodeId: 'srv1' }, waitMs: 5000, log: (l, m) => logs.push(m) }),
        );
        assert.equal(result.recordedVia, 'admin-api');
        assert.equal(admin.devices.length, 1);
        assert.ok(logs.some((m) => /not reachable yet.*retrying for up to 5 s/.test(m)), logs.join('\n'));
      } finally {
        await later;
        await admin.stop();
      }
    });
  });

  describe('admin API failures fall back to the import file with a warning', () => {
    it('HTTP 401 (wrong token): device saved to the file, warning names the token options', async () => {
      const admin = await startAdmin({ token: TOKEN });
      try {
        const logs = [];
        const opts = baseOpts({ nodeRed: { nodeRedUrl: admin.url(), serverNodeId: 'srv1', token: 'wrong' }, log: (l, m) => logs.push([l, m]) });
        const result = await pair(opts);
        assert.equal(result.recordedVia, 'import-file');
        assert.equal(result.warnings.length, 1);
        assert.match(result.warnings[0], /HTTP 401/);
        assert.match(result.warnings[0], /--token/);
        assert.match(result.warnings[0], /import file/);
        assert.ok(logs.some(([l]) => l === 'warn'));
        assert.equal(admin.devices.length, 0);
        assert.deepEqual((await readPendingDevices(opts.importFile)).map((e) => e.deviceid), [DEVICEID]);
      } finally {
        await admin.stop();
      }
    });

    it('HTTP 401 without any credentials says Node-RED requires a login', async () => {
      const admin = await startAdmin({ token: TOKEN });
      try {
        const result = await pair(baseOpts({ nodeRed: { nodeRedUrl: admin.url(), serverNodeId: 'srv1' } }));
        assert.equal(result.recordedVia, 'import-file');
        assert.match(result.warnings[0], /requires a login/);
      } finally {
        await admin.stop();
      }
    });

    it('HTTP 404 for an undeployed server node points at --server-node', async () => {
      const admin = await startAdmin({ servers: ['srv1'] });
      try {
        const result = await pair(baseOpts({ nodeRed: { nodeRedUrl: admin.url(), serverNodeId: 'typo' } }));
        assert.equal(result.recordedVia, 'import-file');
        assert.match(result.warnings[0], /no deployed coolkit-server node "typo"/);
        assert.match(result.warnings[0], /--server-node/);
      } finally {
        await admin.stop();
      }
    });

    it('several coolkit-server nodes and no --server-node: lists them', async () => {
      const admin = await startAdmin({ servers: ['a1', 'b2'] });
      try {
        const result = await pair(baseOpts({ nodeRed: { nodeRedUrl: admin.url() } }));
        assert.equal(result.recordedVia, 'import-file');
        assert.match(result.warnings[0], /several coolkit-server nodes \(a1 \("server a1"\), b2/);
      } finally {
        await admin.stop();
      }
    });

    it('Node-RED unreachable for the whole --wait window: retried, then saved to the file', async () => {
      const port = await freePort();
      const started = Date.now();
      const result = await pair(baseOpts({ nodeRed: { nodeRedUrl: `http://127.0.0.1:${port}`, serverNodeId: 'srv1' }, waitMs: 400 }));
      assert.ok(Date.now() - started >= 350, 'kept retrying for the wait window');
      assert.equal(result.recordedVia, 'import-file');
      assert.match(result.warnings[0], /^Node-RED at http:\/\/127\.0\.0\.1:\d+ is not reachable \(connection refused\), and still not after waiting 0\.4 s\. Saving the device to the import file instead\.$/);
    });
  });

  describe('device failures', () => {
    it('device not reachable: tells the user to join the ITEAD-xxxx Wi-Fi and hold the button', async () => {
      const port = await freePort();
      await assert.rejects(pair(baseOpts({ deviceUrl: `http://127.0.0.1:${port}` })), (err) => {
        assert.ok(err instanceof PairError);
        assert.equal(err.code, 'device-unreachable');
        assert.equal(err.step, 'device');
        assert.match(err.message, /^Cannot reach the device at 127\.0\.0\.1:\d+ \(connection refused\)/);
        assert.match(err.message, /join its ITEAD-xxxx Wi-Fi \(password 12345678\) and hold the button ~5-7 s until the LED blinks fast/);
        return true;
      });
    });

    it('knows whether this computer is on a 10.10.7.x pairing network', () => {
      const lo = { family: 'IPv4', address: '127.0.0.1', internal: true };
      assert.equal(onPairingNetwork({ lo: [lo], wlan0: [{ family: 'IPv4', address: '192.168.1.23', internal: false }] }), false);
      assert.equal(onPairingNetwork({ lo: [lo], wlan0: [{ family: 'IPv4', address: '10.10.7.2', internal: false }] }), true);
    });

    it('GET /device too slow: a timeout error, not a hang', async () => {
      ap.delayMs = { '/device': 10000 };
      const started = Date.now();
      await assert.rejects(pair(baseOpts({ timeoutMs: 300 })), (err) => {
        assert.equal(err.code, 'device-timeout');
        assert.match(err.message, /did not answer GET \/device \(no answer within 0\.3 s\)/);
        assert.match(err.message, /--timeout/);
        return true;
      });
      assert.ok(Date.now() - started < 8000, 'gave up before the device would have answered');
    });

    it('POST /ap too slow: timeout error that still reports the device id and apikey', async () => {
      ap.delayMs = { '/ap': 3000 };
      const file = path.join(tmpDir(), 'p.json');
      await assert.rejects(pair(baseOpts({ timeoutMs: 300, importFile: file })), (err) => {
        assert.equal(err.code, 'device-timeout');
        assert.equal(err.step, 'ap');
        assert.deepEqual(err.device, { deviceid: DEVICEID, apikey: APIKEY, chipid: 'sjljb' });
        assert.match(err.message, /may or may not have been applied/);
        assert.match(err.message, new RegExp(`deviceid ${DEVICEID}, apikey ${APIKEY}`), 'enough to add it by hand');
        return true;
      });
      assert.equal(fs.existsSync(file), false, 'nothing recorded after a failed /ap');
    });

    it('connection closed without an answer (refused request)', async () => {
      ap.refuse = '/ap';
      await assert.rejects(pair(baseOpts()), (err) => {
        assert.equal(err.code, 'device-closed');
        assert.equal(err.step, 'ap');
        assert.match(err.message, /closed the connection without answering POST \/ap/);
        return true;
      });
      ap.refuse = true;
      await assert.rejects(pair(baseOpts()), (err) => err.code === 'device-closed' && err.step === 'device');
    });

    it('something that is not a Sonoff (HTML page) at the address: non-JSON error', async () => {
      const router = http.createServer((req, res) => res.writeHead(200, { 'Content-Type': 'text/html' }).end('<html><body>Router login</body></html>'));
      const port = await listen(router);
      try {
        await assert.rejects(pair(baseOpts({ deviceUrl: `http://127.0.0.1:${port}` })), (err) => {
          assert.equal(err.code, 'device-bad-reply');
          assert.match(err.message, /no JSON: "<html><body>Router login/);
          assert.match(err.message, /does not look like a Sonoff in pairing mode/);
          return true;
        });
      } finally {
        await close(router);
      }
    });

    it('error != 0 from POST /ap explains the numeric-port pitfall and the app-header check', async () => {
      ap.apError = 400;
      await assert.rejects(pair(baseOpts()), (err) => {
        assert.equal(err.code, 'ap-rejected');
        assert.match(err.message, /\{"error":400\}/);
        assert.match(err.message, /"port" is sent as a string \("8443"\) instead of a number; this tool sends the number 8443/);
        assert.match(err.message, /3\.5\.0/);
        return true;
      });
    });

    it('refuses a --server the device could never reach (loopback, pairing network, URL)', () => {
      assert.match(serverNameProblem('127.0.0.1'), /loopback/);
      assert.match(serverNameProblem('localhost'), /loopback/);
      assert.match(serverNameProblem('10.10.7.2'), /pairing network/);
      assert.match(serverNameProblem('https://192.168.1.10'), /without http/);
      assert.match(serverNameProblem('192.168.1.10:8443'), /--port/);
      assert.equal(serverNameProblem('192.168.1.10'), undefined);
      assert.equal(serverNameProblem('nodered.lan'), undefined);
    });
  });

  describe('import file', () => {
    it('dedupes by deviceid (newest wins, moved to the end) and keeps other devices', async () => {
      const file = path.join(tmpDir(), 'nested', 'pending-devices.json');
      await addPendingDevice(file, { deviceid: 'aaaaaaaaaa', apikey: 'k1', name: 'old' }, new Date('2026-01-01T00:00:00Z'));
      await addPendingDevice(file, { deviceid: 'bbbbbbbbbb', apikey: 'k2' }, new Date('2026-01-02T00:00:00Z'));
      const r = await addPendingDevice(file, { deviceid: 'aaaaaaaaaa', apikey: 'k1-new', name: 'new' }, new Date('2026-01-03T00:00:00Z'));
      assert.equal(r.replaced, true);
      assert.equal(r.count, 2);
      assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), [
        { deviceid: 'bbbbbbbbbb', apikey: 'k2', pairedAt: '2026-01-02T00:00:00.000Z' },
        { deviceid: 'aaaaaaaaaa', apikey: 'k1-new', name: 'new', pairedAt: '2026-01-03T00:00:00.000Z' },
      ]);
    });

    it('replaces the file atomically: a reader of the old file sees it whole, no temp files remain, mode 0600', async () => {
      const dir = tmpDir();
      const file = path.join(dir, 'pending-devices.json');
      await addPendingDevice(file, { deviceid: 'aaaaaaaaaa', apikey: 'k1' });
      const before = fs.readFileSync(file, 'utf8');
      const fd = fs.openSync(file, 'r'); // e.g. the server reading it right now
      try {
        await addPendingDevice(file, { deviceid: 'bbbbbbbbbb', apikey: 'k2' });
        const buf = Buffer.alloc(before.length + 100);
        const n = fs.readSync(fd, buf, 0, buf.length, 0);
        assert.equal(buf.subarray(0, n).toString('utf8'), before, 'the old file was not modified in place');
      } finally {
        fs.closeSync(fd);
      }
      assert.equal((await readPendingDevices(file)).length, 2);
      assert.deepEqual(fs.readdirSync(dir), ['pending-devices.json']);
      if (process.platform !== 'win32') assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    });

    it('an unreadable existing file is moved aside, not silently overwritten', async () => {
      const dir = tmpDir();
      const file = path.join(dir, 'pending-devices.json');
      fs.writeFileSync(file, '{"half-written');
      const result = await pair(baseOpts({ importFile: file }));
      assert.equal(result.recordedVia, 'import-file');
      assert.match(result.warnings[0], /unreadable; moved it aside to .*pending-devices\.json\.corrupt-/);
      const aside = fs.readdirSync(dir).find((f) => f.includes('.corrupt-'));
      assert.equal(fs.readFileSync(path.join(dir, aside), 'utf8'), '{"half-written');
      assert.deepEqual((await readPendingDevices(file)).map((e) => e.deviceid), [DEVICEID]);
    });

    it('a write failure is fatal and shows the deviceid/apikey to add by hand', async () => {
      const dir = tmpDir();
      const blocker = path.join(dir, 'not-a-dir');
      fs.writeFileSync(blocker, 'x');
      await assert.rejects(pair(baseOpts({ importFile: path.join(blocker, 'pending-devices.json') })), (err) => {
        assert.equal(err.code, 'record-failed');
        assert.match(err.message, new RegExp(`deviceid ${DEVICEID}, apikey ${APIKEY}`));
        return true;
      });
    });

    it('defaults to ~/.node-red/coolkit/pending-devices.json', () => {
      assert.equal(defaultImportFile('/home/pi'), path.join('/home/pi', '.node-red', 'coolkit', 'pending-devices.json'));
    });
  });

  describe('coolkit-pair CLI', () => {
    const wifi = ['--ssid', 'HomeNet', '--password', 'wifi-secret', '--server', '192.168.1.10'];

    it('--help prints usage and exits 0', async () => {
      const r = await runCli(['--help']);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /^Usage: coolkit-pair --ssid <wifi> --password <wifi-password> --server <ip\|host>/);
      for (const opt of ['--port', '--device', '--node-red', '--server-node', '--token', '--user', '--password-admin', '--wait', '--import-file', '--dry-run', '--json']) {
        assert.ok(r.stdout.includes(opt), opt);
      }
    });

    it('bad arguments exit 2 with a reason', async () => {
      const cases = [
        [[], /missing --ssid, --password, --server/],
        [[...wifi, '--port', '84a3'], /--port must be 1-65535/],
        [[...wifi, '--port', '70000'], /--port must be 1-65535/],
        [['--ssid', 'x', '--password', 'y', '--server', '127.0.0.1'], /--server is a loopback address/],
        [[...wifi, '--token', 't'], /--token need\(s\) --node-red/],
        [[...wifi, '--node-red', 'http://127.0.0.1:1880', '--user', 'admin'], /--user and --password-admin go together/],
        [[...wifi, '--node-red', '127.0.0.1:1880'], /--node-red must be http|--node-red is not a URL/],
        [[...wifi, '--bogus'], /Unknown option '--bogus'/],
        [[...wifi, '--wait=-1'], /--wait must be a non-negative number/],
      ];
      for (const [args, re] of cases) {
        const r = await runCli(args);
        assert.equal(r.code, 2, `${args.join(' ')}\n${r.stderr}`);
        assert.match(r.stderr, re);
        assert.match(r.stderr, /--help/);
      }
    });

    it('pairs end to end: exit 0, --json result, port sent as a number, default import file under $HOME', async () => {
      const home = tmpDir();
      const r = await runCli([...wifi, '--port', '8443', '--device', ap.url, '--name', 'Hall lamp', '--json'], { env: { HOME: home, USERPROFILE: home } });
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      const file = path.join(home, '.node-red', 'coolkit', 'pending-devices.json');
      assert.equal(out.ok, true);
      assert.equal(out.deviceid, DEVICEID);
      assert.equal(out.apikey, APIKEY);
      assert.equal(out.recordedVia, 'import-file');
      assert.equal(out.importFile, file);
      assert.strictEqual(ap.received.port, 8443);
      assert.equal(ap.received.body.ssid, 'HomeNet');
      assert.equal(ap.received.body.SSID, 'HomeNet');
      const entries = JSON.parse(fs.readFileSync(file, 'utf8'));
      assert.equal(entries.length, 1);
      assert.deepEqual({ ...entries[0], pairedAt: undefined }, { deviceid: DEVICEID, apikey: APIKEY, name: 'Hall lamp', pairedAt: undefined });
      assert.ok(!Number.isNaN(Date.parse(entries[0].pairedAt)));
    });

    it('through the admin API: exit 0 and a human summary', async () => {
      const admin = await startAdmin({ token: TOKEN });
      try {
        const r = await runCli([...wifi, '--device', ap.url, '--node-red', admin.url(), '--server-node', 'srv1', '--token', TOKEN, '--wait', '0']);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /Paired 100008db17\./);
        assert.match(r.stdout, /recorded: +allow-list of coolkit-server srv1/);
        assert.equal(admin.devices.length, 1);
      } finally {
        await admin.stop();
      }
    });

    it('admin API 401: still exit 0, warning on stderr, saved to --import-file', async () => {
      const admin = await startAdmin({ token: TOKEN });
      const file = path.join(tmpDir(), 'pending.json');
      try {
        const r = await runCli([...wifi, '--device', ap.url, '--node-red', admin.url(), '--server-node', 'srv1', '--token', 'nope', '--import-file', file]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, /warning: .*HTTP 401/);
        assert.match(r.stdout, new RegExp(`recorded: +${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
        assert.equal((await readPendingDevices(file))[0].deviceid, DEVICEID);
      } finally {
        await admin.stop();
      }
    });

    it('device unreachable: exit 1 with the join-the-AP message; --json gives a machine-readable error', async () => {
      const port = await freePort();
      const r = await runCli([...wifi, '--device', `http://127.0.0.1:${port}`]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /Cannot reach the device at 127\.0\.0\.1:\d+ .*join its ITEAD-xxxx Wi-Fi \(password 12345678\)/);
      const j = await runCli([...wifi, '--device', `http://127.0.0.1:${port}`, '--json']);
      assert.equal(j.code, 1);
      const out = JSON.parse(j.stdout);
      assert.equal(out.ok, false);
      assert.equal(out.error.code, 'device-unreachable');
    });

    it('/ap rejected: exit 1 and the device id/apikey are still shown', async () => {
      ap.apError = 400;
      const r = await runCli([...wifi, '--device', ap.url]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /rejected the Wi-Fi settings/);
      assert.match(r.stderr, new RegExp(`device ${DEVICEID}, factory apikey ${APIKEY}`));
    });

    it('--dry-run prints every request with secrets masked and sends nothing', async () => {
      const admin = await startAdmin({ token: TOKEN });
      const file = path.join(tmpDir(), 'p.json');
      try {
        const r = await runCli([
          ...wifi, '--device', ap.url, '--node-red', admin.url(), '--user', 'admin', '--password-admin', 'nr-pass', '--import-file', file, '--dry-run',
        ]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, new RegExp(`GET ${ap.url}/device`));
        assert.match(r.stdout, new RegExp(`POST ${ap.url}/ap`));
        assert.ok(r.stdout.includes('{"version":4,"ssid":"HomeNet","SSID":"HomeNet","password":"********","serverName":"192.168.1.10","port":8443}'));
        assert.match(r.stdout, /POST http:\/\/127\.0\.0\.1:\d+\/auth\/token/);
        assert.match(r.stdout, /POST http:\/\/127\.0\.0\.1:\d+\/coolkit\/<coolkit-server id from GET \/flows>\/devices/);
        assert.ok(!r.stdout.includes('wifi-secret') && !r.stdout.includes('nr-pass'), 'secrets are masked');
        assert.equal(ap.requests.length, 0);
        assert.equal(admin.requests.length, 0);
        assert.equal(fs.existsSync(file), false);
      } finally {
        await admin.stop();
      }
    });
  });
});
