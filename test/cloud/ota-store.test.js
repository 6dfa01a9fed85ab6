'use strict';
// Firmware store and download server details found while wiring up OTA: names that would leave
// the store directory, a moved user directory, concurrent adds, damaged index entries, grant
// expiry, and the download events the update tracker relies on.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { tmpDir } = require('../helpers/cloud');
const { image } = require('../helpers/firmware');
const { FirmwareStore } = require('../../dist/src/cloud/firmware/store');
const { FirmwareServer } = require('../../dist/src/cloud/firmware/server');

function get(port, urlPath, headers = {}) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: urlPath, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    }).on('error', reject);
  });
}

describe('firmware store: hardening', function () {
  this.timeout(20000); // sockets and files: the default 2 s is short for a busy machine
  it('refuses model or version names that are dot paths', async () => {
    const root = tmpDir();
    const store = new FirmwareStore(path.join(root, 'fw'));
    for (const [model, version] of [['..', '..'], ['.', '1.0'], ['M', '..'], ['.hidden', '1.0'], ['M', '1/2'], ['', '1.0'], ['M', '']]) {
      await assert.rejects(store.add(model, version, image(10, 1), image(10, 2)), /not (a )?valid/, `${model} ${version}`);
    }
    assert.deepEqual(fs.readdirSync(root), [], 'nothing written anywhere');
  });

  it('keeps every entry when adds run at the same time', async () => {
    const dir = tmpDir();
    const store = new FirmwareStore(dir);
    await Promise.all(['1.0', '1.1', '1.2', '1.3', '1.4'].map((v) => store.add('M', v, image(50, v), image(50, `${v}b`))));
    const again = new FirmwareStore(dir);
    again.load();
    assert.deepEqual(again.list().map((e) => e.version).sort(), ['1.0', '1.1', '1.2', '1.3', '1.4']);
  });

  it('still finds its images after the directory moved, and drops damaged entries', async () => {
    const parent = tmpDir();
    const dir = path.join(parent, 'a');
    const store = new FirmwareStore(dir);
    const e = await store.add('M', '1.0', image(64, 'x'), image(64, 'y'));
    await store.add('M', '1.1', image(64, 'z'), image(64, 'w'));
    const moved = path.join(parent, 'b');
    fs.renameSync(dir, moved);
    const index = JSON.parse(fs.readFileSync(path.join(moved, 'index.json'), 'utf8'));
    index.firmware.push({ model: '..', version: '..', user1: { sha256: 'x' }, user2: {} }, null, { model: 'M' });
    index.firmware[1].user1.sha256 = 'not a digest';
    fs.writeFileSync(path.join(moved, 'index.json'), JSON.stringify(index));
    const again = new FirmwareStore(moved);
    assert.equal(again.load(), undefined);
    assert.deepEqual(again.list().map((x) => x.version), ['1.0']);
    const found = again.get('M', '1.0');
    assert.equal(found.user1.file, path.join(moved, 'M', '1.0', 'user1.bin'));
    assert.equal(found.user1.sha256, e.user1.sha256);
  });
});

describe('firmware server: download events and grants', function () {
  this.timeout(20000);
  let server;
  let entry;
  before(async () => {
    entry = await new FirmwareStore(tmpDir()).add('M', '1.0', image(9000, 'a'), image(9000, 'b'));
    server = new FirmwareServer('127.0.0.1', 0);
    await server.start();
  });
  after(() => server.close());

  it('reports start and completion with the range and whether it reached the end', async () => {
    const grant = server.grant('1000aa0001', [entry.user1, entry.user2]);
    const events = [];
    const on = (kind) => (ev) => events.push([kind, ev.name, ev.start, ev.size, ev.total, ev.toEnd]);
    const listeners = ['download-start', 'download-complete'].map((k) => [k, on(k)]);
    for (const [k, fn] of listeners) server.on(k, fn);
    await get(server.listeningPort, `/ota/rom/${grant.token}/user1.bin`, { Range: 'bytes=0-999' });
    await get(server.listeningPort, `/ota/rom/${grant.token}/user1.bin`, { Range: 'bytes=1000-' });
    await get(server.listeningPort, `/ota/rom/${grant.token}/user2.bin`);
    const head = await new Promise((resolve) => {
      http.request({ host: '127.0.0.1', port: server.listeningPort, path: `/ota/rom/${grant.token}/user2.bin`, method: 'HEAD', agent: false }, resolve).end();
    });
    assert.equal(head.headers['content-length'], '9000');
    for (const [k, fn] of listeners) server.off(k, fn);
    assert.deepEqual(events, [
      ['download-start', 'user1.bin', 0, 1000, 9000, false],
      ['download-complete', 'user1.bin', 0, 1000, 9000, false],
      ['download-start', 'user1.bin', 1000, 8000, 9000, true],
      ['download-complete', 'user1.bin', 1000, 8000, 9000, true],
      ['download-start', 'user2.bin', 0, 9000, 9000, true],
      ['download-complete', 'user2.bin', 0, 9000, 9000, true],
    ], 'HEAD is not a download');
  });

  it('refuses other methods and expired grants with an empty 404', async () => {
    const grant = server.grant('1000aa0001', [entry.user1, entry.user2], { ttlMs: 2000 });
    const post = await new Promise((resolve) => {
      const req = http.request({ host: '127.0.0.1', port: server.listeningPort, path: `/ota/rom/${grant.token}/user1.bin`, method: 'POST', agent: false }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
      });
      req.end('x');
    });
    assert.equal(post.status, 404);
    assert.equal(post.body.length, 0);
    assert.equal((await get(server.listeningPort, `/ota/rom/${grant.token}/user1.bin`)).status, 200);
    // until the grant has expired
    while (Date.now() <= grant.expiresAt + 5) await new Promise((r) => setTimeout(r, 20));
    const late = await get(server.listeningPort, `/ota/rom/${grant.token}/user1.bin`);
    assert.equal(late.status, 404);
    assert.equal(late.body.length, 0);
  });

  it('paces a throttled download even when the client reads fast', async () => {
    const grant = server.grant('1000aa0001', [entry.user1, entry.user2], { throttle: 9000 });
    const t0 = Date.now();
    const res = await get(server.listeningPort, `/ota/rom/${grant.token}/user2.bin`);
    const ms = Date.now() - t0;
    assert.equal(crypto.createHash('sha256').update(res.body).digest('hex'), entry.user2.sha256);
    // throttled (not faster than the rate); the upper bound only says it did not stall
    assert.ok(ms >= 800 && ms < 10000, `9000 bytes at 9000 B/s took ${ms} ms`);
  });
});
