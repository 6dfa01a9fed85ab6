'use strict';
// The local cloud over real sockets on 127.0.0.1: sessions, liveness, commands, bad input,
// persistence and lifecycle.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const tls = require('node:tls');
const { request, RawClient, once, sleep, waitFor } = require('../helpers/raw');
const { startCloud, stateDirWithCert, tmpDir } = require('../helpers/cloud');
const { CoolkitCloud } = require('../../dist/src/cloud/server');

const FACTORY = 'f0000000-0000-4000-8000-000000000001';

async function registered(env, deviceid = '1000aa0001', extra = {}) {
  const dev = new RawClient(env.wsUrl);
  await dev.open();
  const reg = await dev.ask({ userAgent: 'device', apikey: FACTORY, deviceid, action: 'register', model: 'ITA-GZ1-GL', romVersion: '1.5.5', ...extra });
  assert.equal(reg.error, 0);
  dev.key = reg.apikey;
  dev.deviceid = deviceid;
  return dev;
}

describe('cloud: device sessions', function () {
  this.timeout(20000);
  let env;
  // Generous deadlines by default, so a busy machine does not trip them; the tests of a deadline
  // lower theirs (the options are read when they apply).
  beforeEach(async () => { env = await startCloud({ sweepIntervalMs: 50 }); });
  afterEach(async () => { await env.cloud.close(); });

  it('marks a device online on register and offline when its socket closes', async () => {
    const online = once(env.cloud, 'online');
    const dev = await registered(env);
    assert.equal((await online).deviceid, '1000aa0001');
    assert.equal(env.cloud.onlineCount, 1);
    const offline = once(env.cloud, 'offline');
    dev.close();
    const ev = await offline;
    assert.equal(ev.reason, 'disconnected');
    assert.equal(ev.device.online, false);
    assert.equal(env.cloud.onlineCount, 0);
  });

  it('replaces the stale socket when the same device registers again, and commands go to the new one', async () => {
    const old = await registered(env);
    let offline = false;
    env.cloud.on('offline', () => { offline = true; });
    const fresh = await registered(env);
    const closed = await old.waitClose();
    assert.equal(closed.code, 4000);
    assert.equal(offline, false, 'a replaced socket does not make the device offline');
    assert.equal(env.cloud.onlineCount, 1);
    const cmd = env.cloud.sendCommand('1000aa0001', { switch: 'on' });
    const pushed = await fresh.next();
    fresh.send({ error: 0, deviceid: '1000aa0001', apikey: fresh.key, sequence: pushed.sequence });
    await cmd;
    fresh.close();
  });

  it('marks a silent device offline with one sweep and drops its socket', async () => {
    env.cloud.options.offlineAfterMs = 400;
    const dev = await registered(env);
    const ev = await once(env.cloud, 'offline', () => true, 10000);
    assert.equal(ev.reason, 'heartbeat timeout');
    await dev.waitClose();
    assert.ok(env.lines.warn.some((l) => /silent for/.test(l)));
  });

  it('keeps a device online while it sends ping frames', async () => {
    env.cloud.options.offlineAfterMs = 1000;
    const dev = await registered(env);
    let offline = false;
    env.cloud.on('offline', () => { offline = true; });
    // pings only, for well over the silence limit
    const start = Date.now();
    while (Date.now() - start < 3000) { dev.ws.ping(); await sleep(50); }
    assert.equal(offline, false);
    assert.equal(env.cloud.device('1000aa0001').online, true);
    dev.close();
  });

  it('closes sockets that never register', async () => {
    env.cloud.options.registerDeadlineMs = 300;
    const dev = new RawClient(env.wsUrl);
    await dev.open();
    await dev.waitClose(10000);
  });

  it('answers a text ping with pong', async () => {
    const dev = await registered(env);
    dev.send('ping');
    assert.equal(await dev.nextText(), 'pong');
    dev.close();
  });

  it('times out a command the device does not ack (504) and keeps working after', async () => {
    const dev = await registered(env);
    await assert.rejects(env.cloud.sendCommand('1000aa0001', { switch: 'on' }, { timeoutMs: 300 }), (err) => err.code === 504 && /did not acknowledge within 0\.3 s/.test(err.message));
    // A late ack for the timed-out command is ignored without harm.
    const pushed = await dev.next();
    dev.send({ error: 0, deviceid: '1000aa0001', apikey: dev.key, sequence: pushed.sequence });
    const again = env.cloud.sendCommand('1000aa0001', { switch: 'off' });
    const second = await dev.next();
    assert.notEqual(second.sequence, pushed.sequence);
    dev.send({ error: 0, deviceid: '1000aa0001', apikey: dev.key, sequence: second.sequence });
    await again;
    dev.close();
  });

  it('reports a device error code, offline devices (503) and unknown devices', async () => {
    const dev = await registered(env);
    const cmd = env.cloud.sendCommand('1000aa0001', { bogus: 1 });
    const pushed = await dev.next();
    dev.send({ error: 400, deviceid: '1000aa0001', apikey: dev.key, sequence: pushed.sequence });
    await assert.rejects(cmd, (err) => err.code === 400 && /error 400/.test(err.message));
    await assert.rejects(env.cloud.sendCommand('1000aa0099', { switch: 'on' }), (err) => err.code === 503 && /unknown/.test(err.message));
    const offline = once(env.cloud, 'offline');
    dev.close();
    await offline;
    await assert.rejects(env.cloud.sendCommand('1000aa0001', { switch: 'on' }), (err) => err.code === 503 && /is offline/.test(err.message));
  });

  it('fails a command at once when the device disconnects before acking', async () => {
    const dev = await registered(env);
    env.cloud.options.commandTimeoutMs = 5000;
    const cmd = env.cloud.sendCommand('1000aa0001', { switch: 'on' });
    await dev.next();
    dev.close();
    await assert.rejects(cmd, (err) => err.code === 503 && /disconnected before acknowledging/.test(err.message));
  });
});

describe('cloud: bad input from devices and HTTP clients', function () {
  this.timeout(20000);
  let env;
  before(async () => { env = await startCloud({ maxPayload: 4096, rateBurst: 20, ratePerSecond: 5 }); });
  after(async () => { await env.cloud.close(); });

  it('answers malformed, binary, unknown and unauthorised frames with an error and stays up', async () => {
    const dev = new RawClient(env.wsUrl);
    await dev.open();
    assert.deepEqual(await dev.ask('{"action":"reg'), { error: 400, reason: 'malformed JSON' });
    assert.equal((await dev.ask({ action: 'date', deviceid: '1000aa0002', apikey: FACTORY })).error, 401);
    dev.send(Buffer.from([1, 2, 3]));
    assert.equal((await dev.next()).error, 400);
    assert.match((await dev.ask({ action: 'nope', deviceid: '1000aa0002', apikey: FACTORY })).reason, /unknown action/);
    assert.match((await dev.ask({ action: 'register', deviceid: 'xyz', apikey: FACTORY })).reason, /deviceid/);
    const reg = await dev.ask({ action: 'register', deviceid: '1000aa0002', apikey: FACTORY });
    assert.equal(reg.error, 0);
    assert.equal((await dev.ask({ action: 'date', deviceid: '1000aa0003', apikey: reg.apikey })).error, 403);
    assert.equal((await dev.ask({ action: 'date', deviceid: '1000aa0002', apikey: '00000000-0000-4000-8000-000000000000' })).error, 401);
    assert.equal((await dev.ask({ action: 'update', deviceid: '1000aa0002', apikey: reg.apikey, params: [] })).error, 400);
    // Still a working session.
    assert.equal((await dev.ask({ action: 'date', deviceid: '1000aa0002', apikey: reg.apikey })).error, 0);
    assert.ok(env.lines.warn.length > 0 && env.lines.warn.every((l) => l.length < 400), 'bounded log lines');
    dev.close();
  });

  it('closes a socket that sends an oversized frame (1009) or floods (1008)', async () => {
    const big = new RawClient(env.wsUrl);
    await big.open();
    big.send(JSON.stringify({ action: 'update', pad: 'x'.repeat(10000) }));
    assert.equal((await big.waitClose()).code, 1009);

    const flood = new RawClient(env.wsUrl);
    await flood.open();
    for (let i = 0; i < 200; i++) flood.send('ping');
    assert.equal((await flood.waitClose()).code, 1008);
  });

  it('refuses upgrades on other paths', async () => {
    const other = new RawClient(env.wsUrl.replace('/api/ws', '/other'));
    await assert.rejects(other.open(), /404|Unexpected server response|socket hang up/);
  });

  it('answers bad dispatch requests with a JSON error', async () => {
    const malformed = await request(env.base, '/dispatch/device', { body: '{"deviceid":' });
    assert.equal(malformed.status, 400);
    assert.deepEqual(malformed.json, { error: 400, reason: 'malformed JSON' });
    const missing = await request(env.base, '/dispatch/device', { body: { deviceid: '1000aa0002' } });
    assert.equal(missing.status, 400);
    assert.match(missing.json.reason, /apikey/);
    assert.equal((await request(env.base, '/dispatch/device', { method: 'GET' })).status, 405);
    assert.equal((await request(env.base, '/nothing', { body: {} })).status, 404);
    const huge = await request(env.base, '/dispatch/device', { body: JSON.stringify({ pad: 'x'.repeat(100000) }) }).catch((e) => ({ status: 'reset', e }));
    assert.ok(huge.status === 413 || huge.status === 'reset');
    const ok = await request(env.base, '/dispatch/device', { body: { deviceid: '1000aa0002', apikey: FACTORY } });
    assert.equal(ok.status, 200);
  });
});

describe('cloud: TLS profiles', function () {
  this.timeout(20000);

  function handshake(port, opts) {
    return new Promise((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts }, () => {
        const v = socket.getProtocol();
        socket.end();
        resolve(v);
      });
      socket.on('error', (err) => resolve(`error: ${err.code || err.message}`));
    });
  }

  it('accepts a TLS 1.0 client with legacy TLS on, and refuses it with legacy TLS off', async () => {
    const legacyOpts = { minVersion: 'TLSv1', maxVersion: 'TLSv1', ciphers: 'AES128-SHA:@SECLEVEL=0' };
    const legacy = await startCloud({ legacyTls: true });
    assert.equal(await handshake(legacy.cloud.port, legacyOpts), 'TLSv1');
    await legacy.cloud.close();
    const modern = await startCloud({ legacyTls: false });
    assert.match(String(await handshake(modern.cloud.port, legacyOpts)), /^error/);
    assert.match(String(await handshake(modern.cloud.port, {})), /TLSv1\.[23]/);
    await modern.cloud.close();
  });

  it('generates an RSA-2048 certificate once and reuses it', async () => {
    const dir = tmpDir();
    const a = await startCloud({ stateDir: dir });
    const cert1 = fs.readFileSync(path.join(dir, 'tls', 'cert.pem'), 'utf8');
    assert.equal(fs.statSync(path.join(dir, 'tls', 'key.pem')).mode & 0o777, 0o600);
    const x509 = new (require('node:crypto').X509Certificate)(cert1);
    assert.equal(x509.publicKey.asymmetricKeyDetails.modulusLength, 2048);
    await a.cloud.close();
    const b = await startCloud({ stateDir: dir });
    assert.equal(fs.readFileSync(path.join(dir, 'tls', 'cert.pem'), 'utf8'), cert1);
    await b.cloud.close();
  });

  it('serves plain HTTP/WS when TLS is off', async () => {
    const env = await startCloud({ tls: 'off' });
    const dispatch = await request(env.base, '/dispatch/device', { body: { deviceid: '1000aa0002', apikey: FACTORY } });
    assert.equal(dispatch.json.port, env.cloud.port);
    const dev = await registered(env, '1000aa0002');
    dev.close();
    await env.cloud.close();
  });

  it('fails clearly with missing certificate files', async () => {
    const cloud = new CoolkitCloud({ bind: '127.0.0.1', port: 0, tls: 'files', certFile: '/nonexistent/cert.pem', keyFile: '/nonexistent/key.pem', stateDir: tmpDir(), logger: require('../helpers/cloud').recordingLogger().logger });
    await assert.rejects(cloud.start(), (err) => err.code === 'ETLS' && /TLS set-up failed/.test(err.message));
    assert.equal(cloud.state, 'error');
  });
});

describe('cloud: lifecycle and persistence', function () {
  this.timeout(30000);

  it('reports EADDRINUSE without throwing and rebinds the port right after close', async () => {
    const first = await startCloud();
    const port = first.cloud.port;
    const second = new CoolkitCloud({ bind: '127.0.0.1', port, stateDir: first.stateDir, logger: require('../helpers/cloud').recordingLogger().logger });
    await assert.rejects(second.start(), (err) => err.code === 'EADDRINUSE' && /already in use/.test(err.message));
    assert.equal(second.state, 'error');
    const dev = await registered(first);
    await first.cloud.close();
    assert.equal((await dev.waitClose()).code, 1001);
    const again = await startCloud({ port, stateDir: first.stateDir });
    assert.equal(again.cloud.port, port);
    await again.cloud.close();
  });

  it('keeps devices, issued keys and state across a restart', async () => {
    const env = await startCloud();
    const dev = await registered(env);
    await dev.ask({ action: 'update', deviceid: '1000aa0001', apikey: dev.key, params: { switch: 'on', rssi: -50 } });
    await env.cloud.close();
    const restarted = await startCloud({ stateDir: env.stateDir });
    const rec = restarted.cloud.device('1000aa0001');
    assert.equal(rec.apikey, dev.key);
    assert.equal(rec.params.switch, 'on');
    assert.equal(rec.online, false);
    const again = await registered(restarted);
    assert.equal(again.key, dev.key);
    again.close();
    await restarted.cloud.close();
  });

  it('moves a corrupt state file aside with a clear warning and starts empty', async () => {
    const stateDir = await stateDirWithCert();
    fs.writeFileSync(path.join(stateDir, 'devices.json'), '{"version":1,"devices":[{"deviceid":');
    const env = await startCloud({ stateDir });
    assert.equal(env.cloud.devices().length, 0);
    assert.ok(env.lines.warn.some((l) => /unusable .*moved aside/.test(l)), env.lines.warn.join('\n'));
    const aside = fs.readdirSync(stateDir).filter((f) => f.startsWith('devices.json.corrupt-'));
    assert.equal(aside.length, 1);
    assert.equal(fs.readFileSync(path.join(stateDir, aside[0]), 'utf8'), '{"version":1,"devices":[{"deviceid":');
    const dev = await registered(env);
    dev.close();
    await env.cloud.close();
  });

  it('saving many devices does not hold the event loop: the file is built in slices between other work', async () => {
    const { DeviceRegistry } = require('../../dist/src/cloud/registry');
    const dir = tmpDir();
    const file = path.join(dir, 'devices.json');
    const r = new DeviceRegistry({ file, saveDelayMs: 60_000 });
    for (let i = 0; i < 40000; i++) {
      const { record } = r.register((0x1000000000 + i).toString(16), FACTORY, 'M', '1');
      r.applyReport(record, { switch: i % 2 ? 'on' : 'off', rssi: -40, fwVersion: '3.5.0', pad: 'x'.repeat(100) });
    }
    // CPU time, not wall time, so a busy machine that deschedules us does not count
    const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
    const t0 = cpu();
    JSON.stringify({ version: 1, devices: [...r.all()] });
    const wholeMs = cpu() - t0;
    let longest = 0;
    let last = cpu();
    let stop = false;
    const spin = () => {
      const now = cpu();
      longest = Math.max(longest, now - last);
      last = now;
      if (!stop) setImmediate(spin);
    };
    setImmediate(spin);
    await r.flush();
    stop = true;
    assert.ok(longest < wholeMs / 2, `the longest stretch without a turn of the event loop was ${longest.toFixed(1)} ms of CPU; serialising everything at once takes ${wholeMs.toFixed(1)} ms`);
    const data = JSON.parse(fs.readFileSync(file, 'utf8'));
    assert.equal(data.version, 1);
    assert.equal(data.devices.length, 40000);
    assert.equal(data.devices[39999].params.switch, 'on');
    assert.equal('online' in data.devices[0], false);
    await r.close();
  });

  it('capabilities recognised from params follow the reports: a plain switch that reports power becomes a power meter', async () => {
    const env = await startCloud();
    const dev = await registered(env, '1000cc0001', { model: 'NOT-IN-TABLE' });
    const report = (params) => dev.ask({ action: 'update', deviceid: '1000cc0001', apikey: dev.key, userAgent: 'device', params });
    assert.equal((await report({ switch: 'on' })).error, 0);
    assert.equal(env.cloud.capabilities('1000cc0001').family, 'switch');
    assert.equal(env.cloud.capabilities('1000cc0001').metering, false);
    assert.equal((await report({ switch: 'off' })).error, 0);
    assert.equal(env.cloud.capabilities('1000cc0001').metering, false);
    assert.equal((await report({ power: '12.5', voltage: '230', current: '0.05' })).error, 0);
    assert.equal(env.cloud.capabilities('1000cc0001').metering, true);
    dev.close();
    await env.cloud.close();
  });

  it('writes the state file atomically: a kill at any moment leaves a readable file', async () => {
    const { spawn } = require('node:child_process');
    const dir = tmpDir();
    const file = path.join(dir, 'devices.json');
    const script = `
      const { DeviceRegistry } = require(${JSON.stringify(path.resolve(__dirname, '../../dist/src/cloud/registry'))});
      const r = new DeviceRegistry({ file: ${JSON.stringify(file)}, saveDelayMs: 0 });
      r.load();
      let n = 0;
      (async () => { for (;;) {
        for (let i = 0; i < 200; i++) { const { record } = r.register((0x1000000000 + (n++ % 5000)).toString(16), '${FACTORY}', 'M', '1'); r.applyReport(record, { switch: n % 2 ? 'on' : 'off', pad: 'x'.repeat(200) }); }
        await r.flush();
        process.stdout.write('.');
      } })();`;
    for (let round = 0; round < 6; round++) {
      const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise((resolve) => child.stdout.once('data', resolve));
      await sleep(20 + Math.floor(Math.random() * 150));
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
      const data = JSON.parse(fs.readFileSync(file, 'utf8'));
      assert.equal(data.version, 1);
      assert.ok(data.devices.length > 0);
    }
    const { DeviceRegistry } = require('../../dist/src/cloud/registry');
    const errors = [];
    const r = new DeviceRegistry({ file, onError: (e) => errors.push(e) });
    r.load();
    assert.deepEqual(errors, []);
    assert.ok(r.size > 0);
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'interrupted temp files are cleaned up');
  });

  it('reports a failed save and keeps the previous file', async () => {
    const { DeviceRegistry } = require('../../dist/src/cloud/registry');
    const dir = tmpDir();
    const file = path.join(dir, 'state', 'devices.json');
    const errors = [];
    const r = new DeviceRegistry({ file, onError: (e) => errors.push(e), saveDelayMs: 10 });
    r.register('1000aa0001', FACTORY, 'M', '1');
    await r.flush();
    const before = fs.readFileSync(file, 'utf8');
    // Make the directory unwritable for a rename target: replace it by a file of the same name.
    fs.renameSync(path.join(dir, 'state'), path.join(dir, 'state-ok'));
    fs.writeFileSync(path.join(dir, 'state'), 'not a directory');
    r.register('1000aa0002', FACTORY, 'M', '1');
    await r.flush();
    assert.equal(errors.length, 1);
    assert.match(errors[0].message, /cannot save device state .*previous file is kept/);
    assert.equal(fs.readFileSync(path.join(dir, 'state-ok', 'devices.json'), 'utf8'), before);
    fs.rmSync(path.join(dir, 'state'));
    fs.renameSync(path.join(dir, 'state-ok'), path.join(dir, 'state'));
    await r.flush();
    await waitFor(() => JSON.parse(fs.readFileSync(file, 'utf8')).devices.length === 2);
    await r.close();
  });
});
