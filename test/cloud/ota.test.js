'use strict';
// Over-the-air updates end to end: the real cloud (TLS), the firmware store and HTTP server,
// the update tracker, and simulated devices that download, verify and reboot (src/sim/ota.ts).
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const http = require('node:http');
const { startCloud, tmpDir } = require('../helpers/cloud');
const { RawClient, waitFor, sleep } = require('../helpers/raw');
const firmware = require('../helpers/firmware');
const { FirmwareStore } = require('../../dist/src/cloud/firmware/store');
const { FirmwareServer } = require('../../dist/src/cloud/firmware/server');
const { OtaManager } = require('../../dist/src/cloud/firmware/ota');
const { SimulatedDevice } = require('../../dist/src/sim');

const MODEL = 'ITA-GZ1-GL';
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');

// this suite's images xor in (i * 7) & 0xff rather than i & 0xff: stride 7 keeps them byte for byte
const image = (size, seed) => firmware.image(size, seed, { stride: 7 });

function get(port, urlPath, headers = {}) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: urlPath, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    }).on('error', reject);
  });
}

describe('OTA end to end (cloud + firmware server + simulated devices)', function () {
  this.timeout(30000);
  let env;
  let store;
  let files;
  let ota;
  let devices;
  const u1 = image(20000, 'user1-1.6.0');
  const u2 = image(20000, 'user2-1.6.0');

  async function setup(options = {}) {
    env = await startCloud();
    store = new FirmwareStore(tmpDir());
    store.load();
    await store.add(MODEL, '1.6.0', u1, u2);
    files = new FirmwareServer('127.0.0.1', 0);
    await files.start();
    ota = new OtaManager(env.cloud, store, files, { advertiseHost: '127.0.0.1', maxConcurrent: 2, timeoutMs: 10000, ackTimeoutMs: 2000, slowThrottle: 400000, ...options });
  }

  async function device(deviceid, otaOptions, extra = {}) {
    const dev = new SimulatedDevice({ server: env.base, deviceid, pingIntervalMs: 0, reconnect: { minMs: 50, maxMs: 200 }, ota: otaOptions, ...extra });
    dev.upgrades = [];
    dev.on('message', (m) => { if (m && m.action === 'upgrade') dev.upgrades.push(m); });
    devices.push(dev);
    await dev.start();
    await waitFor(() => env.cloud.device(deviceid)?.params.fwVersion);
    return dev;
  }

  /** Run an update and collect every progress message. */
  async function run(deviceid, options = {}) {
    const seen = [];
    const final = await ota.update(deviceid, { ...options, onProgress: (p) => seen.push(p) });
    return { final, seen, states: seen.map((p) => p.state) };
  }

  beforeEach(() => { devices = []; });
  afterEach(async () => {
    for (const d of devices) await d.stop();
    ota?.close();
    await files?.close();
    await env?.cloud.close();
    ota = files = env = undefined;
  });

  it('happy path: check, upgrade in the seed shape, download, reboot, success with the new fwVersion', async () => {
    await setup();
    const dev = await device('1000ee0001', { rebootDelayMs: 50 });
    assert.deepEqual(ota.check('1000ee0001'), { deviceid: '1000ee0001', model: MODEL, current: '1.5.5', latest: '1.6.0', updateAvailable: true });

    const { final, seen, states } = await run('1000ee0001');
    assert.deepEqual(states, ['sent', 'acked', 'downloading', 'downloaded', 'success']);
    assert.equal(final.state, 'success');
    for (const p of seen) {
      assert.deepEqual(Object.keys(p).filter((k) => k !== 'reason'), ['deviceid', 'model', 'fromVersion', 'version', 'state', 'at']);
      assert.equal(p.deviceid, '1000ee0001');
      assert.equal(p.model, MODEL);
      assert.equal(p.fromVersion, '1.5.5');
      assert.equal(p.version, '1.6.0');
      assert.ok(!Number.isNaN(Date.parse(p.at)));
    }
    assert.match(seen[2].reason, /user2\.bin from 127\.0\.0\.1/);

    // The upgrade message, key for key in the order of the 2017 capture.
    const up = dev.upgrades[0];
    assert.deepEqual(Object.keys(up), ['action', 'deviceid', 'apikey', 'userAgent', 'sequence', 'ts', 'params']);
    assert.equal(up.apikey, env.cloud.device('1000ee0001').apikey);
    assert.equal(up.userAgent, 'app');
    assert.equal(up.ts, 0);
    assert.match(up.sequence, /^\d+$/);
    assert.deepEqual(Object.keys(up.params), ['binList', 'model', 'version']);
    assert.equal(up.params.model, MODEL);
    assert.equal(up.params.version, '1.6.0');
    assert.deepEqual(up.params.binList.map((b) => Object.keys(b)), [['downloadUrl', 'digest', 'name'], ['downloadUrl', 'digest', 'name']]);
    assert.deepEqual(up.params.binList.map((b) => b.name), ['user1.bin', 'user2.bin']);
    assert.deepEqual(up.params.binList.map((b) => b.digest), [sha(u1), sha(u2)]);
    const url = new URL(up.params.binList[1].downloadUrl);
    assert.equal(url.protocol, 'http:', 'devices download without TLS');
    assert.equal(Number(url.port), files.listeningPort);
    assert.match(url.pathname, /^\/ota\/rom\/[A-Za-z0-9_-]{32}\/user2\.bin$/);

    // The device is back with the new version, on a new connection.
    assert.equal(dev.romVersion, '1.6.0');
    const record = env.cloud.device('1000ee0001');
    assert.equal(record.romVersion, '1.6.0');
    await waitFor(() => record.params.fwVersion === '1.6.0', 10000); // the report after the reboot
    assert.equal(ota.check('1000ee0001').updateAvailable, false);
    assert.equal(ota.running, 0);
    // The URL died with the update.
    const after = await get(files.listeningPort, url.pathname);
    assert.equal(after.status, 404);
    assert.equal(after.body.length, 0);
  });

  it('digest mismatch: the device keeps its old firmware and the update fails with the reason', async () => {
    await setup();
    const dev = await device('1000ee0002', { fail: 'digest', rebootDelayMs: 20 });
    const { final, states } = await run('1000ee0002');
    assert.deepEqual(states, ['sent', 'acked', 'downloading', 'downloaded', 'failed']);
    assert.match(final.reason, /rebooted with firmware 1\.5\.5, not 1\.6\.0: it rejected the image/);
    assert.equal(dev.romVersion, '1.5.5');
    assert.equal(ota.check('1000ee0002').updateAvailable, true);
  });

  it('ack error 404: one retry with a throttled download, then failure with the reason', async () => {
    await setup();
    const dev = await device('1000ee0003', { fail: 'ack404' });
    const { final, seen, states } = await run('1000ee0003');
    assert.deepEqual(states, ['sent', 'retrying', 'failed']);
    assert.match(seen[1].reason, /error 404.*retrying with a slow download/);
    assert.match(final.reason, /answered error 404/);
    assert.equal(dev.upgrades.length, 2);
    assert.notEqual(dev.upgrades[0].params.binList[0].downloadUrl, dev.upgrades[1].params.binList[0].downloadUrl, 'a new URL for the retry');
    assert.notEqual(dev.upgrades[0].sequence, dev.upgrades[1].sequence);
  });

  it('ack error 404 once: the throttled retry succeeds', async () => {
    await setup({ slowThrottle: 40000 });
    await device('1000ee0004', { fail: 'ack404', failCount: 1, rebootDelayMs: 20 });
    const t0 = Date.now();
    const { final, states } = await run('1000ee0004');
    assert.equal(final.state, 'success');
    assert.deepEqual(states, ['sent', 'retrying', 'acked', 'downloading', 'downloaded', 'success']);
    assert.ok(Date.now() - t0 >= 350, '20 kB at 40 kB/s takes about half a second');
  });

  it('download failure: broken off twice (fast, then slow), the update fails with the reason', async () => {
    await setup();
    const big = image(1024 * 1024, 'big');
    await store.add(MODEL, '1.7.0', big, big);
    await device('1000ee0005', { fail: 'download' });
    const { final, states } = await run('1000ee0005', { version: '1.7.0' });
    assert.deepEqual(states, ['sent', 'acked', 'downloading', 'retrying', 'acked', 'downloading', 'failed']);
    assert.match(final.reason, /the download of user2\.bin broke off after \d+ of 1048576 bytes/);
  });

  it('device disconnects without an ack, downloads, and comes back updated', async () => {
    await setup();
    await device('1000ee0006', { fail: 'no-ack', rebootDelayMs: 20 });
    const { final, seen, states } = await run('1000ee0006');
    assert.deepEqual(states, ['sent', 'disconnected', 'downloading', 'downloaded', 'success']);
    assert.match(seen[1].reason, /without an ack/);
    assert.equal(final.state, 'success');
  });

  it('model mismatch is refused before anything is sent', async () => {
    await setup();
    await store.add('PSF-B04-GL', '2.0.2', image(100, 'x'), image(100, 'y'));
    const dev = await device('1000ee0007', {});
    await assert.rejects(ota.update('1000ee0007', { version: '2.0.2' }), (err) => err.code === 400 && /is for model PSF-B04-GL, not ITA-GZ1-GL/.test(err.message));
    await assert.rejects(ota.update('1000ee0007', { model: 'PSF-B04-GL' }), (err) => err.code === 400 && /would drop the connection/.test(err.message));
    await sleep(100);
    assert.deepEqual(dev.upgrades, []);
    assert.equal(dev.registered, true, 'still connected');
    assert.equal(ota.running, 0);
    // Unknown versions, unknown and offline devices are refused too.
    await assert.rejects(ota.update('1000ee0007', { version: '9.9.9' }), (err) => err.code === 404);
    await assert.rejects(ota.update('1000ee00ff'), (err) => err.code === 404);
    await dev.stop();
    await waitFor(() => !env.cloud.session('1000ee0007'));
    await assert.rejects(ota.update('1000ee0007'), (err) => err.code === 503);
  });

  it('at most N updates at once; a device already updating is refused', async () => {
    await setup({ maxConcurrent: 1 });
    await device('1000ee0008', { rebootDelayMs: 400 });
    await device('1000ee0009', { rebootDelayMs: 20 });
    const first = run('1000ee0008');
    await assert.rejects(ota.update('1000ee0008'), (err) => err.code === 409 && /already updating/.test(err.message));
    await assert.rejects(ota.update('1000ee0009'), (err) => err.code === 429 && /limit 1/.test(err.message));
    assert.equal(ota.running, 1);
    assert.equal((await first).final.state, 'success');
    // A per-update limit overrides the default.
    assert.equal((await run('1000ee0009', { maxConcurrent: 3 })).final.state, 'success');
  });

  it('times out when the device never comes back with the new version', async () => {
    await setup();
    await device('1000ee000a', false); // acks, does nothing
    // long enough for the ack to come first on a busy machine
    const { final, states } = await run('1000ee000a', { timeoutMs: 2000 });
    assert.deepEqual(states, ['sent', 'acked', 'failed']);
    assert.match(final.reason, /^timeout: the device did not come back with 1\.6\.0 within 2 s/);
  });

  it('byte ranges: a device fetching the image in ranges is tracked to the last byte; unknown URLs serve nothing', async () => {
    await setup();
    // A device speaking the protocol by hand: acks the upgrade, then fetches user1 in 4 KiB ranges.
    const dev = new RawClient(`${env.wsUrl}`);
    await dev.open();
    const reg = await dev.ask({ userAgent: 'device', apikey: 'f0000000-0000-4000-8000-0000000000aa', deviceid: '1000ee000b', action: 'register', model: MODEL, romVersion: '1.5.5' });
    await dev.ask({ userAgent: 'device', apikey: reg.apikey, deviceid: '1000ee000b', action: 'update', params: { fwVersion: '1.5.5' } });
    const seen = [];
    const done = ota.update('1000ee000b', { onProgress: (p) => seen.push(p.state) });
    const up = await dev.next();
    dev.send({ error: 0, userAgent: 'device', apikey: reg.apikey, deviceid: '1000ee000b', sequence: up.sequence });
    const url = new URL(up.params.binList[0].downloadUrl);

    const wrong = await get(url.port, url.pathname.replace(/rom\/[^/]+\//, `rom/${'A'.repeat(32)}/`));
    assert.equal(wrong.status, 404);
    assert.equal(wrong.body.length, 0);
    assert.equal((await get(url.port, url.pathname.replace('user1.bin', 'index.json'))).status, 404);
    assert.deepEqual(seen, ['sent', 'acked'], 'a wrong URL is not a download');

    const parts = [];
    for (let start = 0; start < u1.length; start += 4096) {
      const end = Math.min(start + 4095, u1.length - 1);
      const res = await get(url.port, url.pathname, { Range: `bytes=${start}-${end}` });
      assert.equal(res.status, 206);
      assert.equal(res.headers['accept-ranges'], 'bytes');
      assert.equal(res.headers['content-range'], `bytes ${start}-${end}/${u1.length}`);
      assert.equal(Number(res.headers['content-length']), end - start + 1);
      parts.push(res.body);
      if (start === 0) assert.deepEqual(seen, ['sent', 'acked', 'downloading']);
      else if (end < u1.length - 1) assert.equal(seen.length, 3, 'no "downloaded" before the last range');
    }
    assert.equal(sha(Buffer.concat(parts)), sha(u1));
    await waitFor(() => seen.includes('downloaded'));
    // Reboot into the new image.
    dev.close();
    const back = new RawClient(env.wsUrl);
    await back.open();
    const reg2 = await back.ask({ userAgent: 'device', apikey: 'f0000000-0000-4000-8000-0000000000aa', deviceid: '1000ee000b', action: 'register', model: MODEL, romVersion: '1.6.0' });
    assert.equal(reg2.error, 0);
    const final = await done;
    assert.equal(final.state, 'success');
    assert.deepEqual(seen, ['sent', 'acked', 'downloading', 'downloaded', 'success']);
    back.close();
  });
});
