'use strict';
// The sonoff-ota node on the real Node-RED runtime (4.1 or 5, see helpers/nodered.js): firmware
// store actions, check, and updates of simulated devices over the real cloud, one output
// message per state change, errors to a Catch node.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { helper, allNodes, runtimeVersion, statuses, waitStatus, useUserDirWithCert } = require('../helpers/nodered');
const { waitFor, sleep } = require('../helpers/raw');
const { image } = require('../helpers/firmware');
const { SimulatedDevice } = require('../../dist/src/sim');

const otaNode = require(path.resolve(__dirname, '../../dist/nodes/sonoff-ota.js'));
const nodes = [...allNodes, otaNode];
const MODEL = 'ITA-GZ1-GL';

function flow(ota = {}, extra = []) {
  return [
    { id: 'f1', type: 'tab' },
    { id: 'srv', type: 'coolkit-server', bind: '127.0.0.1', port: 0, advertiseHost: '127.0.0.1', tls: 'auto', legacyTls: true, hbInterval: 145, commandTimeout: 2 },
    { id: 'ota', type: 'sonoff-ota', z: 'f1', server: 'srv', deviceid: '', version: '', port: 0, maxConcurrent: 2, timeout: 20, x: 1, y: 1, wires: [['out']], ...ota },
    { id: 'catch', type: 'catch', z: 'f1', scope: ['ota'], x: 1, y: 1, wires: [['caught']] },
    { id: 'out', type: 'helper', z: 'f1', x: 1, y: 1 },
    { id: 'caught', type: 'helper', z: 'f1', x: 1, y: 1 },
    ...extra,
  ];
}

/** Every message a helper node receives, in order. */
function collect(id) {
  const list = [];
  helper.getNode(id).on('input', (msg) => list.push(msg));
  return list;
}

describe(`sonoff-ota node on Node-RED ${runtimeVersion()}`, function () {
  this.timeout(30000);
  let userDir;
  let devices;
  before((done) => { helper.startServer(done); });
  after((done) => { helper.stopServer(done); });
  beforeEach(async () => {
    devices = [];
    userDir = await useUserDirWithCert();
  });
  afterEach(async () => {
    for (const d of devices) await d.stop();
    await helper.unload();
  });

  async function load(ota, extra) {
    await helper.load(nodes, flow(ota, extra));
    const srv = helper.getNode('srv');
    await waitFor(() => srv.cloud.state === 'listening');
    await waitStatus(helper.getNode('ota'), (s) => s.text === 'sonoff-ota.status.ready');
    return srv;
  }

  async function device(srv, deviceid, otaOptions = { rebootDelayMs: 20 }) {
    const dev = new SimulatedDevice({ server: `https://127.0.0.1:${srv.cloud.port}`, deviceid, pingIntervalMs: 0, reconnect: { minMs: 50, maxMs: 200 }, ota: otaOptions });
    devices.push(dev);
    await dev.start();
    await waitFor(() => srv.cloud.device(deviceid)?.params.fwVersion);
    return dev;
  }

  async function add(version = '1.6.0', model = MODEL) {
    const out = collect('out');
    helper.getNode('ota').receive({ payload: { action: 'add', model, version, user1: image(5000, `${version}a`), user2: image(5000, `${version}b`) } });
    await waitFor(() => out.length === 1);
    return out[0];
  }

  it('adds, lists and removes firmware; the store keeps images on disk', async () => {
    await load();
    const added = await add();
    assert.equal(added.topic, `${MODEL}/1.6.0`);
    assert.equal(added.payload.action, 'added');
    assert.equal(added.payload.firmware.user1.size, 5000);
    assert.equal(added.payload.firmware.user2.sha256, crypto.createHash('sha256').update(image(5000, '1.6.0b')).digest('hex'));
    assert.ok(fs.existsSync(path.join(userDir, 'coolkit', 'firmware', MODEL, '1.6.0', 'user2.bin')));
    await waitStatus(helper.getNode('ota'), (s) => s.text === 'sonoff-ota.status.ready');

    const out = collect('out');
    helper.getNode('ota').receive({ payload: 'list' });
    await waitFor(() => out.length === 1);
    assert.deepEqual(out[0].payload.map((e) => [e.model, e.version]), [[MODEL, '1.6.0']]);
    assert.equal(out[0].payload[0].user1.file, undefined, 'no file system paths in messages');

    // From a directory.
    const src = path.join(userDir, 'incoming');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'user1.1024.new.2.bin'), image(100, 'd1'));
    fs.writeFileSync(path.join(src, 'user2.1024.new.2.bin'), image(100, 'd2'));
    helper.getNode('ota').receive({ payload: { action: 'add', model: MODEL, version: '1.7.0', path: src } });
    await waitFor(() => out.length === 2);
    assert.equal(out[1].payload.firmware.version, '1.7.0');

    helper.getNode('ota').receive({ payload: { action: 'remove', model: MODEL, version: '1.7.0' } });
    await waitFor(() => out.length === 3);
    assert.deepEqual(out[2].payload, { action: 'removed', model: MODEL, version: '1.7.0' });
    assert.ok(!fs.existsSync(path.join(userDir, 'coolkit', 'firmware', MODEL, '1.7.0')));

    // Bad input goes to the Catch node with a code.
    const caught = collect('caught');
    helper.getNode('ota').receive({ payload: { action: 'add', model: MODEL, version: '2.0', user1: Buffer.from([0, 1]), user2: Buffer.from([0xea]) } });
    helper.getNode('ota').receive({ payload: { action: 'remove', model: MODEL, version: '9.9' } });
    helper.getNode('ota').receive({ payload: { action: 'flash' } });
    await waitFor(() => caught.length === 3);
    const byText = (re) => caught.find((m) => re.test(m.error.message));
    assert.equal(byText(/magic byte 0xEA/).error.code, 400);
    assert.equal(byText(/no firmware 9\.9/).error.code, 404);
    assert.equal(byText(/unknown action "flash"/).error.code, 400);
    assert.equal(out.length, 3);
  });

  it('updates a device: one message per state change, status shows progress, then check says up to date', async () => {
    const srv = await load();
    await add();
    await device(srv, '1000ff0001');
    const out = collect('out');
    helper.getNode('ota').receive({ payload: { action: 'check', deviceid: '1000ff0001' } });
    await waitFor(() => out.length === 1);
    assert.deepEqual(out[0].payload, { deviceid: '1000ff0001', model: MODEL, current: '1.5.5', latest: '1.6.0', updateAvailable: true });

    helper.getNode('ota').receive({ payload: { action: 'update', deviceid: '1000ff0001', version: '1.6.0' }, _ctx: 'kept' });
    await waitFor(() => out.some((m) => m.payload.state === 'success'), 'success');
    const progress = out.slice(1);
    assert.deepEqual(progress.map((m) => m.payload.state), ['sent', 'acked', 'downloading', 'downloaded', 'success']);
    for (const m of progress) {
      assert.equal(m.topic, '1000ff0001');
      assert.equal(m._ctx, 'kept', 'the input message travels along');
      assert.deepEqual(Object.keys(m.payload).filter((k) => k !== 'reason'), ['deviceid', 'model', 'fromVersion', 'version', 'state', 'at']);
      assert.equal(m.payload.fromVersion, '1.5.5');
      assert.equal(m.payload.version, '1.6.0');
    }
    const texts = statuses(helper.getNode('ota')).map((s) => s.text);
    assert.ok(texts.includes('sonoff-ota.status.progress'), 'progress in the status');
    const last = await waitStatus(helper.getNode('ota'), (s) => s.fill === 'green');
    assert.equal(last.shape, 'dot');

    await waitFor(() => srv.cloud.device('1000ff0001').params.fwVersion === '1.6.0');
    helper.getNode('ota').receive({ payload: 'check', deviceid: '1000ff0001' });
    await waitFor(() => out.length === 7);
    assert.equal(out[6].payload.updateAvailable, false);
    assert.equal(out[6].payload.current, '1.6.0');
  });

  it("uses the node's Device and Version for any other message", async () => {
    const srv = await load({ deviceid: '1000ff0002', version: '1.6.0' });
    await add();
    await add('1.8.0');
    const dev = await device(srv, '1000ff0002');
    const out = collect('out');
    helper.getNode('ota').receive({ payload: Date.now() });
    await waitFor(() => out.some((m) => m.payload.state === 'success'));
    assert.equal(dev.romVersion, '1.6.0', 'the configured version, not the newest');
  });

  it('a failed update outputs the failed state and throws to Catch with the reason', async () => {
    const srv = await load();
    await add();
    await device(srv, '1000ff0003', { fail: 'digest', rebootDelayMs: 20 });
    const out = collect('out');
    const caught = collect('caught');
    helper.getNode('ota').receive({ payload: { deviceid: '1000ff0003' } });
    await waitFor(() => caught.length === 1);
    assert.deepEqual(out.map((m) => m.payload.state), ['sent', 'acked', 'downloading', 'downloaded', 'failed']);
    assert.match(out[4].payload.reason, /rejected the image/);
    assert.equal(caught[0].error.code, 500);
    assert.match(caught[0].error.message, /update of 1000ff0003 to 1\.6\.0 failed: the device rebooted with firmware 1\.5\.5/);
    await waitStatus(helper.getNode('ota'), (s) => s.fill === 'red');
  });

  it('refuses a model mismatch, a device already updating, and more than N at once, before sending', async () => {
    const srv = await load({ maxConcurrent: 1 });
    await add();
    await add('2.0.2', 'PSF-B04-GL');
    const slow = await device(srv, '1000ff0004', { rebootDelayMs: 600 });
    const other = await device(srv, '1000ff0005');
    const upgrades = [];
    other.on('message', (m) => m && m.action === 'upgrade' && upgrades.push(m));
    const out = collect('out');
    const caught = collect('caught');
    helper.getNode('ota').receive({ payload: { deviceid: '1000ff0005', version: '2.0.2' } });
    await waitFor(() => caught.length === 1);
    assert.equal(caught[0].error.code, 400);
    assert.match(caught[0].error.message, /is for model PSF-B04-GL/);

    helper.getNode('ota').receive({ payload: { deviceid: '1000ff0004' } });
    await waitFor(() => out.length >= 1);
    helper.getNode('ota').receive({ payload: { deviceid: '1000ff0004' } });
    helper.getNode('ota').receive({ payload: { deviceid: '1000ff0005' } });
    await waitFor(() => caught.length === 3);
    assert.deepEqual(caught.slice(1).map((m) => m.error.code).sort(), [409, 429]);
    assert.deepEqual(upgrades, [], 'nothing was sent to the refused device');
    await waitFor(() => out.some((m) => m.payload.state === 'success'));
    assert.equal(slow.romVersion, '1.6.0');
  });

  it('two sonoff-ota nodes on one server and port share the firmware server', async () => {
    const second = { id: 'ota2', type: 'sonoff-ota', z: 'f1', server: 'srv', deviceid: '', version: '', port: 0, x: 1, y: 1, wires: [['out']] };
    await load({}, [second]);
    await waitStatus(helper.getNode('ota2'), (s) => s.text === 'sonoff-ota.status.ready');
    await add();
    const out = collect('out');
    helper.getNode('ota2').receive({ payload: { action: 'list' } });
    await waitFor(() => out.length === 1);
    assert.equal(out[0].payload.length, 1, 'one store');
  });

  it('reports a busy firmware port in the status and refuses updates', async () => {
    const net = require('node:net');
    const blocker = net.createServer();
    await new Promise((r) => blocker.listen(0, '127.0.0.1', r));
    try {
      await helper.load(nodes, flow({ port: blocker.address().port }));
      const st = await waitStatus(helper.getNode('ota'), (s) => s.fill === 'red');
      assert.equal(st.text, 'sonoff-ota.errors.port');
      const caught = collect('caught');
      helper.getNode('ota').receive({ payload: { deviceid: '1000ff0009' } });
      await waitFor(() => caught.length === 1);
      assert.equal(caught[0].error.code, 503);
    } finally {
      blocker.close();
    }
    await sleep(10);
  });
});
