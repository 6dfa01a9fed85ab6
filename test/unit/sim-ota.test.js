'use strict';
// The simulator's over-the-air update (src/sim/ota.ts + SimulatedDevice): against a small fake
// cloud written here (plain HTTP dispatch, `ws` on /api/ws, images on /ota/...), so the device's
// side is checked on its own: ack, download, sha256, reboot, new version, and each failure mode.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const http = require('node:http');
const { WebSocketServer } = require('ws');
const { image } = require('../helpers/firmware');
const sim = require('../../dist/src/sim');

const { SimulatedDevice } = sim;
const DEVICEID = '100008db0d';
const ISSUED = '7c1e9a44-8d2b-4f6a-b0c3-5e9d2a1f8b67';
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(fn, what, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** Fake cloud: dispatch, device WebSocket, and an image server that records each GET. */
async function fakeCloud(images) {
  const dispatches = [];
  const conns = [];
  const downloads = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/dispatch/device') {
        dispatches.push(JSON.parse(Buffer.concat(chunks).toString()));
        const body = JSON.stringify({ error: 0, reason: 'ok', IP: '127.0.0.1', port: server.address().port });
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
        return;
      }
      const m = /^\/ota\/(user[12]\.bin)$/.exec(req.url);
      const data = m && images[m[1]];
      const record = { name: m ? m[1] : req.url, finished: false, closedEarly: false };
      downloads.push(record);
      if (!data) {
        res.writeHead(404, { 'Content-Length': 0 });
        res.end();
        return;
      }
      res.on('finish', () => { record.finished = true; });
      res.on('close', () => { if (!record.finished) record.closedEarly = true; });
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': data.length, 'Accept-Ranges': 'bytes' });
      // In 16 KiB pieces, one per turn of the event loop, like a file stream.
      let at = 0;
      const next = () => {
        if (res.destroyed) return;
        const piece = data.subarray(at, at + 16384);
        at += piece.length;
        if (at >= data.length) res.end(piece);
        else res.write(piece, () => setImmediate(next));
      };
      next();
    });
  });
  const wss = new WebSocketServer({ server, path: '/api/ws' });
  wss.on('connection', (ws) => {
    const conn = { ws, messages: [], closed: false };
    conns.push(conn);
    ws.on('message', (d) => {
      const msg = JSON.parse(d.toString());
      conn.messages.push(msg);
      if (msg.action === 'register') ws.send(JSON.stringify({ error: 0, deviceid: msg.deviceid, apikey: ISSUED, config: { hb: 1, hbInterval: 145 } }));
      else if (msg.action === 'query') ws.send(JSON.stringify({ error: 0, deviceid: msg.deviceid, apikey: ISSUED, params: 0 }));
      else if (msg.action) ws.send(JSON.stringify({ error: 0, deviceid: msg.deviceid, apikey: ISSUED }));
    });
    ws.on('close', () => { conn.closed = true; });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${server.address().port}`;
  return {
    base,
    dispatches,
    conns,
    downloads,
    /** The upgrade message in the seed's shape, with digests of the given images (or overrides). */
    upgrade(sequence, { model = 'ITA-GZ1-GL', version = '1.6.0', digests = {} } = {}) {
      return {
        action: 'upgrade',
        deviceid: DEVICEID,
        apikey: ISSUED,
        userAgent: 'app',
        sequence,
        ts: 0,
        params: {
          binList: ['user1.bin', 'user2.bin'].map((name) => ({ downloadUrl: `${base}/ota/${name}`, digest: digests[name] ?? (images[name] ? sha(images[name]) : '00'), name })),
          model,
          version,
        },
      };
    },
    push(conn, msg) { conn.ws.send(JSON.stringify(msg)); },
    acks(conn, sequence) { return conn.messages.filter((m) => m.sequence === sequence); },
    close() {
      for (const c of conns) c.ws.terminate();
      wss.close();
      server.closeAllConnections();
      return new Promise((r) => server.close(r));
    },
  };
}

describe('simulator: OTA upgrade', function () {
  this.timeout(10000);
  const cleanup = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  async function setup(ota, imgs) {
    const images = imgs ?? { 'user1.bin': image(3000, 'u1'), 'user2.bin': image(3000, 'u2') };
    const cloud = await fakeCloud(images);
    cleanup.push(() => cloud.close());
    const dev = new SimulatedDevice({ server: cloud.base, deviceid: DEVICEID, pingIntervalMs: 0, reconnect: { minMs: 50, maxMs: 100 }, ota });
    const events = [];
    dev.on('ota', (ev) => events.push(ev));
    cleanup.push(() => dev.stop());
    await dev.start();
    await until(() => cloud.conns[0] && cloud.conns[0].messages.length >= 4, 'handshake');
    return { cloud, dev, events, conn: cloud.conns[0], images };
  }

  it('acks, downloads the inactive image, checks sha256, reboots and reports the new version', async () => {
    const { cloud, dev, events, conn } = await setup({ rebootDelayMs: 50 });
    assert.equal(dev.runningImage, 'user1');
    cloud.push(conn, cloud.upgrade('1507499250325'));
    await until(() => cloud.conns.length === 2 && cloud.conns[1].messages.some((m) => m.action === 'update'), 'reconnect with a report');
    // The ack came first, in the seed's ack shape.
    assert.deepEqual(cloud.acks(conn, '1507499250325'), [{ error: 0, userAgent: 'device', apikey: ISSUED, deviceid: DEVICEID, sequence: '1507499250325' }]);
    assert.deepEqual(cloud.downloads.map((d) => d.name), ['user2.bin'], 'running user1, so it fetched user2');
    assert.ok(conn.closed, 'the old connection is gone (reboot)');
    // Dispatch and register again, now with the new version.
    assert.equal(cloud.dispatches.length, 2);
    assert.equal(cloud.dispatches[1].romVersion, '1.6.0');
    const reg = cloud.conns[1].messages.find((m) => m.action === 'register');
    assert.equal(reg.romVersion, '1.6.0');
    const report = cloud.conns[1].messages.find((m) => m.action === 'update');
    assert.equal(report.params.fwVersion, '1.6.0');
    assert.equal(dev.romVersion, '1.6.0');
    assert.equal(dev.state.fwVersion, '1.6.0');
    assert.equal(dev.runningImage, 'user2');
    await until(() => events.some((e) => e.phase === 'updated'), 'updated event');
    assert.deepEqual(events.map((e) => e.phase), ['received', 'downloading', 'downloaded', 'rebooting', 'updated']);
    assert.equal(events[2].bytes, 3000);
    assert.equal(dev.updating, false);

    // The next update flashes the other partition.
    cloud.push(cloud.conns[1], cloud.upgrade('2', { version: '1.7.0' }));
    await until(() => dev.romVersion === '1.7.0' && dev.registered, 'second update');
    assert.deepEqual(cloud.downloads.map((d) => d.name), ['user2.bin', 'user1.bin']);
    assert.equal(dev.runningImage, 'user1');
  });

  it('fetches the image it is told to', async () => {
    const { cloud, dev, conn } = await setup({ image: 'user1', rebootDelayMs: 10 });
    cloud.push(conn, cloud.upgrade('3'));
    await until(() => dev.romVersion === '1.6.0' && dev.registered, 'updated');
    assert.deepEqual(cloud.downloads.map((d) => d.name), ['user1.bin']);
  });

  it('refuses to boot an image whose sha256 does not match and comes back with its old version', async () => {
    const { cloud, dev, events, conn } = await setup({ rebootDelayMs: 20 });
    cloud.push(conn, cloud.upgrade('4', { digests: { 'user2.bin': 'ab'.repeat(32) } }));
    await until(() => events.some((e) => e.phase === 'failed'), 'failed event');
    assert.match(events.find((e) => e.phase === 'failed').reason, /does not match the digest/);
    assert.equal(cloud.conns.length, 2, 'rebooted');
    const reg = cloud.conns[1].messages.find((m) => m.action === 'register');
    assert.equal(reg.romVersion, '1.5.5');
    assert.equal(cloud.conns[1].messages.find((m) => m.action === 'update').params.fwVersion, '1.5.5');
    assert.equal(dev.runningImage, 'user1');
  });

  it("fail: 'digest' corrupts the transfer even with the right digest", async () => {
    const { cloud, dev, events, conn } = await setup({ fail: 'digest', rebootDelayMs: 20 });
    cloud.push(conn, cloud.upgrade('5'));
    await until(() => events.some((e) => e.phase === 'failed') && dev.registered, 'failed and back');
    assert.equal(dev.romVersion, '1.5.5');
    assert.equal(cloud.acks(conn, '5')[0].error, 0);
  });

  it('refuses an image that is not an Espressif v2 image (0xEA)', async () => {
    const images = { 'user1.bin': image(500, 'a', { magic: 0xe9 }), 'user2.bin': image(500, 'b', { magic: 0xe9 }) };
    const { cloud, dev, events, conn } = await setup({ rebootDelayMs: 10 }, images);
    cloud.push(conn, cloud.upgrade('6'));
    await until(() => events.some((e) => e.phase === 'failed') && dev.registered, 'failed and back');
    assert.match(events.find((e) => e.phase === 'failed').reason, /0xEA/);
    assert.equal(dev.romVersion, '1.5.5');
  });

  it("fail: 'ack404' acks error 404 and downloads nothing", async () => {
    const { cloud, dev, events, conn } = await setup({ fail: 'ack404' });
    cloud.push(conn, cloud.upgrade('7'));
    await until(() => cloud.acks(conn, '7').length === 1, 'ack');
    assert.equal(cloud.acks(conn, '7')[0].error, 404);
    await sleep(100);
    assert.deepEqual(cloud.downloads, []);
    assert.equal(cloud.conns.length, 1);
    assert.equal(dev.romVersion, '1.5.5');
    assert.deepEqual(events.map((e) => e.phase), ['failed']);
  });

  it("fail: 'download' breaks the download off and stays online; failCount limits the failures", async () => {
    const images = { 'user1.bin': image(300000, 'a'), 'user2.bin': image(300000, 'b') };
    const { cloud, dev, events, conn } = await setup({ fail: 'download', failCount: 1, rebootDelayMs: 10 }, images);
    cloud.push(conn, cloud.upgrade('8'));
    await until(() => events.some((e) => e.phase === 'failed'), 'failed event');
    assert.equal(cloud.acks(conn, '8')[0].error, 0, 'acked before downloading');
    assert.match(events.find((e) => e.phase === 'failed').reason, /broken off/);
    await until(() => cloud.downloads.length === 1 && cloud.downloads[0].closedEarly, 'server saw the abort');
    assert.equal(cloud.conns.length, 1, 'still on the same connection');
    assert.equal(dev.registered, true);
    assert.equal(dev.updating, false);
    // The second upgrade succeeds.
    cloud.push(conn, cloud.upgrade('9'));
    await until(() => dev.romVersion === '1.6.0' && dev.registered, 'updated');
  });

  it("fail: 'no-ack' drops the connection without an ack, downloads, and comes back updated", async () => {
    const { cloud, dev, events, conn } = await setup({ fail: 'no-ack', rebootDelayMs: 10 });
    cloud.push(conn, cloud.upgrade('10'));
    await until(() => dev.romVersion === '1.6.0' && dev.registered, 'updated');
    assert.deepEqual(cloud.acks(conn, '10'), [], 'never acked');
    assert.ok(conn.closed);
    assert.equal(cloud.downloads.length, 1);
    assert.equal(cloud.conns.length, 2);
    assert.equal(events[events.length - 1].phase, 'updated');
  });

  it('drops the connection on an upgrade for another model, without ack or download', async () => {
    const { cloud, dev, events, conn } = await setup({});
    cloud.push(conn, cloud.upgrade('11', { model: 'PSF-B04-GL' }));
    await until(() => conn.closed, 'connection dropped');
    assert.deepEqual(cloud.acks(conn, '11'), []);
    await until(() => dev.registered, 'reconnected');
    assert.deepEqual(cloud.downloads, []);
    assert.equal(dev.romVersion, '1.5.5');
    assert.match(events[0].reason, /model PSF-B04-GL/);
  });

  it('with ota: false only acks', async () => {
    const { cloud, dev, conn } = await setup(false);
    cloud.push(conn, cloud.upgrade('12'));
    await until(() => cloud.acks(conn, '12').length === 1, 'ack');
    await sleep(100);
    assert.deepEqual(cloud.downloads, []);
    assert.equal(dev.romVersion, '1.5.5');
  });

  it('stop() during the reboot leaves the device offline', async () => {
    // a reboot long enough for stop() to come during it on a busy machine
    const { cloud, dev, conn } = await setup({ rebootDelayMs: 1000 });
    cloud.push(conn, cloud.upgrade('13'));
    await until(() => conn.closed, 'rebooting');
    await dev.stop();
    await sleep(1300); // past the reboot and the reconnect delay
    assert.equal(cloud.conns.length, 1, 'no reconnect after stop()');
    assert.equal(dev.registered, false);
  });
});

describe('simulator: OTA helpers', function () {
  this.timeout(20000); // sockets and files: the default 2 s is short for a busy machine
  it('parseUpgrade and pickImage read the seed shape', () => {
    const up = sim.parseUpgrade({ binList: [{ downloadUrl: 'http://h/ota/rom/t/user1.1024.new.2.bin', digest: 'aa', name: 'user1.bin' }, { downloadUrl: 'http://h/u2', digest: 'bb', name: 'user2.bin' }], model: 'ITA-GZ1-GL', version: '1.5.5' });
    assert.equal(up.model, 'ITA-GZ1-GL');
    assert.equal(sim.pickImage(up.binList, 'user2').digest, 'bb');
    assert.equal(typeof sim.parseUpgrade({}), 'string');
    assert.equal(typeof sim.parseUpgrade({ binList: [{ name: 'user1.bin' }] }), 'string');
  });

  it('downloadImage refuses https and reports HTTP errors', async () => {
    await assert.rejects(sim.downloadImage('https://127.0.0.1:1/x', { timeoutMs: 1000 }), /plain HTTP only/);
    const srv = http.createServer((_q, r) => { r.writeHead(404); r.end(); });
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    try {
      await assert.rejects(sim.downloadImage(`http://127.0.0.1:${srv.address().port}/x`, { timeoutMs: 1000 }), /HTTP 404/);
    } finally {
      srv.close();
    }
  });
});
