'use strict';
// Firmware store and download server: sha256 once, restart survival, Espressif magic check,
// plain HTTP with Content-Length, Accept-Ranges and byte ranges, unguessable per-update URLs.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { tmpDir } = require('../helpers/cloud');
const { image } = require('../helpers/firmware');
const { FirmwareStore, compareVersions } = require('../../dist/src/cloud/firmware/store');
const { FirmwareServer, parseRange } = require('../../dist/src/cloud/firmware/server');

function get(port, urlPath, headers = {}) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: urlPath, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    }).on('error', reject);
  });
}

describe('firmware store', function () {
  this.timeout(20000); // sockets and files: the default 2 s is short for a busy machine
  it('stores a user1/user2 pair with sha256, finds the newest version, survives a restart', async () => {
    const dir = tmpDir();
    const store = new FirmwareStore(dir);
    store.load();
    const u1 = image(4096, 'a');
    const u2 = image(4096, 'b');
    const e = await store.add('ITA-GZ1-GL', '1.5.5', u1, u2);
    assert.equal(e.user1.sha256, crypto.createHash('sha256').update(u1).digest('hex'));
    assert.equal(e.user2.size, 4096);
    await store.add('ITA-GZ1-GL', '1.10.0', image(100, 'c'), image(100, 'd'));
    await store.add('PSF-B04-GL', '2.0.2', image(100, 'e'), image(100, 'f'));
    assert.equal(store.latest('ITA-GZ1-GL').version, '1.10.0', 'numeric, not text, comparison');
    const again = new FirmwareStore(dir);
    again.load();
    assert.equal(again.list().length, 3);
    assert.equal(again.get('ITA-GZ1-GL', '1.5.5').user1.sha256, e.user1.sha256);
  });

  it('adds from a directory or file paths, and refuses images that would brick a device', async () => {
    const dir = tmpDir();
    const src = tmpDir();
    fs.writeFileSync(path.join(src, 'user1.1024.new.2.bin'), image(64, 1));
    fs.writeFileSync(path.join(src, 'user2.1024.new.2.bin'), image(64, 2));
    const store = new FirmwareStore(dir);
    assert.equal((await store.addFromDirectory('M', '1.0', src)).user1.size, 64);
    assert.equal((await store.addFromFiles('M', '1.1', path.join(src, 'user1.1024.new.2.bin'), path.join(src, 'user2.1024.new.2.bin'))).version, '1.1');
    const notEsp = image(64, 3);
    notEsp[0] = 0x00;
    await assert.rejects(store.add('M', '2.0', notEsp, image(64, 4)), /magic byte 0xEA/);
    await assert.rejects(store.add('M', '2.0', image(64, 1), Buffer.alloc(0)), /user2 image is missing or empty/);
    await assert.rejects(store.add('../x', '2.0', image(64, 1), image(64, 2)), /not a valid firmware model/);
    await assert.rejects(store.addFromDirectory('M', '3.0', '/nonexistent'), /cannot read firmware directory/);
  });

  it('compares versions numerically', () => {
    assert.equal(compareVersions('2.10.0', '2.9.1'), 1);
    assert.equal(compareVersions('1.5.5', '1.5.5'), 0);
    assert.equal(compareVersions('1.5', '1.5.1'), -1);
  });
});

describe('firmware server', function () {
  this.timeout(20000); // sockets and files: the default 2 s is short for a busy machine
  let server;
  let store;
  let entry;
  before(async () => {
    store = new FirmwareStore(tmpDir());
    entry = await store.add('ITA-GZ1-GL', '1.6.0', image(10000, 'x'), image(10000, 'y'));
    server = new FirmwareServer('127.0.0.1', 0);
    await server.start();
  });
  after(() => server.close());

  it('serves a granted image with Content-Length and Accept-Ranges', async () => {
    const grant = server.grant('1000aa0001', [entry.user1, entry.user2]);
    assert.ok(grant.token.length >= 32, 'unguessable token');
    const res = await get(server.listeningPort, `/ota/rom/${grant.token}/user2.bin`);
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-length'], '10000');
    assert.equal(res.headers['accept-ranges'], 'bytes');
    assert.equal(crypto.createHash('sha256').update(res.body).digest('hex'), entry.user2.sha256);
  });

  it('answers a malformed request with 400 Bad Request and closes the connection', async () => {
    const net = require('node:net');
    const answer = await new Promise((resolve, reject) => {
      const sock = net.connect(server.listeningPort, '127.0.0.1', () => sock.write('GARBAGE\x00\x01 / HTTP/9.9\r\n\r\n'));
      let text = '';
      sock.on('data', (d) => { text += d; });
      sock.on('close', () => resolve(text));
      sock.on('error', reject);
      sock.setTimeout(10000, () => { sock.destroy(); reject(new Error(`not closed; got ${JSON.stringify(text)}`)); });
    });
    assert.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/);
  });

  it('answers byte ranges with 206 and unsatisfiable ones with 416', async () => {
    const grant = server.grant('1000aa0001', [entry.user1, entry.user2]);
    const full = fs.readFileSync(entry.user1.file);
    const part = await get(server.listeningPort, `/ota/rom/${grant.token}/user1.bin`, { Range: 'bytes=100-199' });
    assert.equal(part.status, 206);
    assert.equal(part.headers['content-range'], 'bytes 100-199/10000');
    assert.deepEqual(part.body, full.subarray(100, 200));
    const tail = await get(server.listeningPort, `/ota/rom/${grant.token}/user1.bin`, { Range: 'bytes=-10' });
    assert.deepEqual(tail.body, full.subarray(9990));
    const open = await get(server.listeningPort, `/ota/rom/${grant.token}/user1.bin`, { Range: 'bytes=9000-' });
    assert.equal(open.body.length, 1000);
    assert.equal((await get(server.listeningPort, `/ota/rom/${grant.token}/user1.bin`, { Range: 'bytes=20000-' })).status, 416);
    assert.deepEqual(parseRange('bytes=5-1', 10), null);
    assert.deepEqual(parseRange(undefined, 10), undefined);
  });

  it('returns 404 and serves nothing for unknown, revoked or foreign URLs', async () => {
    const grant = server.grant('1000aa0001', [entry.user1, entry.user2]);
    for (const p of ['/ota/rom/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/user1.bin', `/ota/rom/${grant.token}/user3.bin`, '/', `/ota/rom/${grant.token}/../../index.json`, '/etc/passwd']) {
      const res = await get(server.listeningPort, p);
      assert.equal(res.status, 404, p);
      assert.equal(res.body.length, 0);
    }
    server.revoke(grant.token);
    assert.equal((await get(server.listeningPort, `/ota/rom/${grant.token}/user1.bin`)).status, 404);
  });

  it('throttles the fallback download', async () => {
    const grant = server.grant('1000aa0001', [entry.user1, entry.user2], { throttle: 20000 });
    const t0 = Date.now();
    const res = await get(server.listeningPort, `/ota/rom/${grant.token}/user1.bin`);
    assert.equal(res.body.length, 10000);
    assert.ok(Date.now() - t0 >= 300, 'a 10 kB image at 20 kB/s takes about half a second');
  });
});
