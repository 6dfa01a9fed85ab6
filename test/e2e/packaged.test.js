'use strict';
// End to end, as a user gets it: the npm tarball installed into a fresh Node-RED user directory,
// Node-RED started as a process, a flow deployed through the admin API, and simulated devices
// connecting over real TLS on 127.0.0.1.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { installPackage, NodeRedProcess, freePort, runtime } = require('../helpers/nrprocess');
const { request, waitFor, sleep } = require('../helpers/raw');
const { SimulatedDevice, SimulatedAccessPoint } = require('../../dist/src/sim');
const { pair } = require('../../dist/src/provision');

function flow(cloudPort, eventsFile) {
  return [
    { id: 'tab1', type: 'tab', label: 'e2e' },
    { id: 'srv', type: 'coolkit-server', name: 'e2e cloud', bind: '127.0.0.1', port: String(cloudPort), advertiseHost: '127.0.0.1', tls: 'auto', legacyTls: true, hbInterval: '145', commandTimeout: '3' },
    { id: 'in', type: 'sonoff-device-in', z: 'tab1', server: 'srv', deviceid: '', events: 'all', x: 100, y: 100, wires: [['fmt']] },
    { id: 'fmt', type: 'change', z: 'tab1', x: 300, y: 100, rules: [{ t: 'set', p: 'payload', pt: 'msg', to: '{"topic":topic,"event":event,"payload":payload,"state":state,"device":device}', tot: 'jsonata' }], wires: [['file']] },
    { id: 'file', type: 'file', z: 'tab1', filename: eventsFile, filenameType: 'str', appendNewline: true, createDir: true, overwriteFile: 'false', encoding: 'none', x: 500, y: 100, wires: [] },
    { id: 'httpin', type: 'http in', z: 'tab1', url: '/cmd', method: 'post', upload: false, x: 100, y: 200, wires: [['unwrap']] },
    { id: 'unwrap', type: 'change', z: 'tab1', x: 200, y: 200, rules: [{ t: 'set', p: 'deviceid', pt: 'msg', to: 'payload.deviceid', tot: 'msg' }, { t: 'set', p: 'payload', pt: 'msg', to: 'payload.payload', tot: 'msg' }], wires: [['out']] },
    { id: 'out', type: 'sonoff-device-out', z: 'tab1', server: 'srv', deviceid: '', x: 300, y: 200, wires: [] },
    { id: 'complete', type: 'complete', z: 'tab1', scope: ['out'], uncaught: false, x: 100, y: 300, wires: [['okres']] },
    { id: 'okres', type: 'change', z: 'tab1', x: 300, y: 300, rules: [{ t: 'set', p: 'payload', pt: 'msg', to: 'acked', tot: 'str' }], wires: [['res']] },
    { id: 'catch', type: 'catch', z: 'tab1', scope: ['out'], uncaught: false, x: 100, y: 400, wires: [['errres']] },
    { id: 'errres', type: 'change', z: 'tab1', x: 300, y: 400, rules: [{ t: 'set', p: 'payload', pt: 'msg', to: 'error', tot: 'msg' }, { t: 'set', p: 'statusCode', pt: 'msg', to: '502', tot: 'num' }], wires: [['res']] },
    { id: 'res', type: 'http response', z: 'tab1', statusCode: '', headers: {}, x: 500, y: 300, wires: [] },
  ];
}

/** The complete lines the flow appended (a last line still being written is left out). */
function readEvents(file) {
  if (!fs.existsSync(file)) return [];
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  lines.pop();
  return lines.filter(Boolean).map((l) => JSON.parse(l));
}

describe(`e2e: packed module in ${runtime} on Node ${process.version}`, function () {
  this.timeout(120000);
  let nr;
  let cloudPort;
  let eventsFile;
  const sims = [];

  before(async () => {
    const { userDir } = installPackage();
    assert.ok(fs.existsSync(path.join(userDir, 'node_modules', 'node-red-contrib-coolkit', 'dist', 'nodes', 'coolkit-server.js')));
    nr = new NodeRedProcess(userDir);
    await nr.start();
    cloudPort = await freePort();
    eventsFile = path.join(userDir, 'events.jsonl');
  });

  after(async () => {
    for (const s of sims) await s.stop().catch(() => {});
    if (nr) await nr.stop();
  });

  it('loads every node type of the package with no errors', async () => {
    const res = await nr.api('/nodes', { headers: { Accept: 'application/json' } });
    assert.equal(res.status, 200);
    const sets = res.json.filter((s) => s.module === 'node-red-contrib-coolkit');
    const declared = Object.keys(require('../../package.json')['node-red'].nodes).sort();
    assert.ok(declared.length >= 3);
    assert.deepEqual(sets.map((s) => s.types).flat().sort(), declared);
    for (const s of sets) {
      assert.equal(s.enabled, true);
      assert.equal(s.err, undefined, `${s.name} failed to load: ${s.err}`);
    }
    // The editor gets help in both languages.
    const zh = await nr.api('/nodes/messages?lng=zh-CN', { headers: { Accept: 'application/json' } });
    assert.equal(zh.status, 200);
  });

  it('runs the local cloud: devices connect over TLS, reports reach the flow, commands complete', async () => {
    await nr.deploy(flow(cloudPort, eventsFile));
    const server = `https://127.0.0.1:${cloudPort}`;
    await waitFor(async () => (await request(server, '/dispatch/device', { body: {} }).catch(() => null))?.status === 400, 15000);

    for (const deviceid of ['1000aa0001', '1000aa0002']) {
      const sim = new SimulatedDevice({ server, deviceid, reconnect: { minMs: 200, maxMs: 1000 } });
      sims.push(sim);
      await sim.start();
    }
    await waitFor(() => readEvents(eventsFile).filter((e) => e.event === 'update').length >= 2, 10000);
    const events = readEvents(eventsFile);
    const online = events.filter((e) => e.event === 'online').map((e) => e.topic).sort();
    assert.deepEqual(online, ['1000aa0001', '1000aa0002']);
    const report = events.find((e) => e.event === 'update' && e.topic === '1000aa0001');
    assert.equal(report.payload.switch, 'off');
    assert.equal(report.device.model, 'ITA-GZ1-GL');

    // A command through the flow: http in -> sonoff-device-out -> Complete -> http response.
    const ok = await request(nr.base, '/cmd', { body: { payload: 'on', deviceid: '1000aa0002' } });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.text, 'acked');
    assert.equal(sims[1].state.switch, 'on');
    assert.equal(sims[0].state.switch, 'off');
    await waitFor(() => readEvents(eventsFile).some((e) => e.topic === '1000aa0002' && e.event === 'update' && e.state.switch === 'on'), 15000);

    // Errors reach the Catch node with their code.
    const unknown = await request(nr.base, '/cmd', { body: { payload: 'on', deviceid: '1000aa0099' } });
    assert.equal(unknown.status, 502);
    assert.equal(unknown.json.code, 503);
    const bad = await request(nr.base, '/cmd', { body: { payload: 'dance', deviceid: '1000aa0001' } });
    assert.equal(bad.status, 502);
    assert.equal(bad.json.code, 400);
  });

  it('protects the admin device list with Node-RED authentication', async () => {
    const anon = await request(nr.base, '/coolkit/srv/devices', { method: 'GET' });
    assert.equal(anon.status, 401);
    const list = await nr.api('/coolkit/srv/devices');
    assert.equal(list.status, 200);
    assert.deepEqual(list.json.map((d) => d.deviceid).sort(), ['1000aa0001', '1000aa0002']);
    assert.ok(list.json.every((d) => d.online));
  });

  it('survives being killed: devices, keys and state come back after a restart', async () => {
    const keyBefore = sims[1].issuedApikey;
    await nr.stop('SIGKILL');
    await waitFor(() => sims.every((s) => !s.registered), 10000);
    await nr.start();
    // The sims reconnect by themselves (back-off) once the server listens again.
    await waitFor(() => sims.every((s) => s.registered), 30000);
    assert.equal(sims[1].issuedApikey, keyBefore, 'the issued apikey is the same after the restart');
    const list = await nr.api('/coolkit/srv/devices');
    assert.equal(list.json.length, 2);
    const ok = await request(nr.base, '/cmd', { body: { payload: 'toggle', deviceid: '1000aa0002' } });
    assert.equal(ok.status, 200, ok.text);
    await sleep(100);
    assert.equal(sims[1].state.switch, 'off', 'toggle works from the state reported after the restart');
    assert.doesNotMatch(nr.log, /Unhandled|uncaught/i);
  });

  it('pairs a device with coolkit-pair through the admin API, and the allow-list then admits only it', async () => {
    // Lock the server down: allow-list only.
    await nr.deploy(flow(cloudPort, eventsFile).map((n) => (n.id === 'srv' ? { ...n, admission: 'allowlist' } : n)));
    const server = `https://127.0.0.1:${cloudPort}`;
    await waitFor(async () => (await request(server, '/dispatch/device', { body: {} }).catch(() => null))?.status === 400, 15000);
    const ap = new SimulatedAccessPoint({ deviceid: '1000aa00f1' });
    await ap.start();
    try {
      const result = await pair({
        deviceUrl: ap.url, ssid: 'HomeWiFi', password: 'secret123', serverName: '192.168.1.10', serverPort: cloudPort, name: 'Porch light',
        nodeRed: { nodeRedUrl: nr.base, user: 'admin', adminPassword: 'e2e-password', serverNodeId: 'srv' }, waitMs: 5000,
      });
      assert.equal(result.recordedVia, 'admin-api');
      assert.equal(ap.received.port, cloudPort);
      const paired = new SimulatedDevice({ server, deviceid: '1000aa00f1', apikey: result.apikey, reconnect: false });
      sims.push(paired);
      await paired.start();
      const stranger = new SimulatedDevice({ server, deviceid: '1000aa00f2', reconnect: false });
      await assert.rejects(stranger.start());
      const list = await nr.api('/coolkit/srv/devices');
      assert.equal(list.json.find((d) => d.deviceid === '1000aa00f1').name, 'Porch light');
      const refused = await nr.api('/coolkit/srv/refused');
      assert.deepEqual(refused.json.map((r) => r.deviceid), ['1000aa00f2']);
    } finally {
      await ap.stop();
    }
  });
});
