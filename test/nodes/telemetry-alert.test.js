'use strict';
// telemetry-alert on the real Node-RED runtime (4.1 on Node 20, or 5 on Node 22: see
// helpers/nodered.js): the API on its own port and on Node-RED's HTTP server, alert rules out
// of the node's output, alerts raised and cleared by the flow, active alerts across a restart,
// the editor's admin endpoints.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { helper, nodes, runtime, runtimeVersion, waitStatus, nextInput } = require('../helpers/nodered');
const { RawClient, waitFor, sleep } = require('../helpers/raw');
const { tmpDir } = require('../helpers/cloud');

const telemetryNode = require(path.resolve(__dirname, '../../dist/nodes/telemetry-alert.js'));
const all = [nodes.server, telemetryNode];
const SECRET = 'node-test-secret-0123456789-abcdefgh';
const FACTORY = 'f0000000-0000-4000-8000-000000000001';
const D1 = '1000aa0001';
const at = { x: 100, y: 100 };

const RULES = [
  { id: 'hot', kind: 'above', metric: 'temperature', threshold: '30', hysteresis: '2', duration: '', severity: 'critical', deviceid: '', title: '' },
  { id: 'gone', kind: 'offline', duration: '1', severity: 'warning', deviceid: D1, title: 'Lamp offline' },
];

function flow(tel = {}) {
  return [
    { id: 'f1', type: 'tab' },
    { id: 'srv', type: 'coolkit-server', bind: '127.0.0.1', port: 0, advertiseHost: '127.0.0.1', tls: 'off', hbInterval: 145, commandTimeout: 2, admission: 'open' },
    { id: 'tel', type: 'telemetry-alert', z: 'f1', server: 'srv', listen: 'port', bind: '127.0.0.1', port: 0, path: '/ws', origins: '', rules: RULES, ...at, wires: [['sink']], ...tel },
    { id: 'sink', type: 'helper', z: 'f1', ...at },
    { id: 'catch', type: 'catch', z: 'f1', scope: ['tel'], ...at, wires: [['caught']] },
    { id: 'complete', type: 'complete', z: 'f1', scope: ['tel'], ...at, wires: [['completed']] },
    { id: 'caught', type: 'helper', z: 'f1', ...at },
    { id: 'completed', type: 'helper', z: 'f1', ...at },
  ];
}

describe(`telemetry-alert on Node-RED ${runtimeVersion()} (${runtime}), Node ${process.version}`, function () {
  this.timeout(20000);
  const sockets = [];
  let userDir;

  before((done) => { helper.startServer(done); });
  after((done) => { helper.stopServer(done); });
  beforeEach(() => {
    userDir = tmpDir('coolkit-tel-');
    helper.settings({ userDir });
  });
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.close();
    await helper.unload();
  });

  async function load(tel, credentials = { tel: { jwtSecret: SECRET } }) {
    await helper.load(all, flow(tel), credentials);
    const srv = helper.getNode('srv');
    await waitFor(() => srv.cloud.state === 'listening');
    const node = helper.getNode('tel');
    if (credentials.tel?.jwtSecret) await waitFor(() => node.telemetry.isListening);
    return { srv, node };
  }

  async function device(srv, params, deviceid = D1) {
    const dev = new RawClient(`ws://127.0.0.1:${srv.cloud.port}/api/ws`);
    sockets.push(dev);
    await dev.open();
    const reg = await dev.ask({ userAgent: 'device', apikey: FACTORY, deviceid, action: 'register', version: 2, romVersion: '2.0.4', model: 'PSA-BHA-GL' });
    dev.report = (p) => dev.ask({ userAgent: 'device', apikey: reg.apikey, deviceid, action: 'update', params: p });
    await dev.report(params);
    return dev;
  }

  async function apiClient(url, sub = 'alice') {
    const { signToken } = require('../../dist/src/hub/telemetry');
    const c = new RawClient(url);
    sockets.push(c);
    await c.open();
    const r = await c.ask({ type: 'auth', token: (await signToken(SECRET, { sub })).token });
    assert.equal(r.success, true, JSON.stringify(r));
    return c;
  }

  /** Every message the sink gets from now on. */
  function collect(node) {
    const got = [];
    node.on('input', (msg) => got.push(msg));
    return got;
  }

  it('serves the API on its own port: telemetry to clients, rule alerts to clients and out of the node', async () => {
    const { srv, node } = await load();
    const url = `ws://127.0.0.1:${node.telemetry.port}/ws`;
    await waitStatus(node, (s) => s.fill === 'green' && s.text === 'telemetry-alert.status.listening');
    const out = collect(helper.getNode('sink'));
    const dev = await device(srv, { currentTemperature: '22', currentHumidity: '40' });
    const c = await apiClient(url);
    await c.ask({ type: 'subscribe', channel: 'telemetry', device_id: 1 });
    await c.ask({ type: 'subscribe', channel: 'alerts', filters: { severity: ['critical'] } });
    await dev.report({ currentTemperature: '31.5' });
    const t = await c.next();
    assert.deepEqual([t.type, t.device_id, t.telemetry.temperature.value], ['telemetry_update', 1, 31.5]);
    const a = await c.next();
    assert.deepEqual([a.type, a.alert_id, a.status, a.alert_type], ['alert', 1, 'active', 'temperature_high']);
    await waitFor(() => out.length === 1);
    assert.equal(out[0].topic, 'temperature_high');
    assert.deepEqual(out[0].payload, a);
    await waitStatus(node, (s) => s.fill === 'yellow' && s.shape === 'dot');
    await dev.report({ currentTemperature: '29' }); // inside the hysteresis
    await dev.report({ currentTemperature: '27.5' });
    await c.next(); // telemetry 29
    await c.next(); // telemetry 27.5
    const cleared = await c.next();
    assert.deepEqual([cleared.alert_id, cleared.status], [1, 'cleared']);
    await waitFor(() => out.length === 2);
    assert.deepEqual([out[1].payload.alert_id, out[1].payload.status], [1, 'cleared']);
  });

  it('raises and clears alerts from the flow; bad input goes to Catch, good input to Complete', async () => {
    const { srv, node } = await load();
    await device(srv, { switch: 'off' });
    const c = await apiClient(`ws://127.0.0.1:${node.telemetry.port}/ws/alerts`);
    const sink = helper.getNode('sink');
    const out = collect(sink);
    const completed = nextInput(helper.getNode('completed'));
    node.receive({ topic: 'door', payload: { title: 'Garage door open', message: 'Open for 10 minutes', severity: 'warning', device: D1, alert_type: 'door', metadata: { minutes: 10 } } });
    await completed;
    const a = await c.next();
    assert.deepEqual([a.alert_id, a.device_id, a.deviceid, a.title, a.message, a.alert_type, a.metadata.minutes], [1, 1, D1, 'Garage door open', 'Open for 10 minutes', 'door', 10]);
    // The same key again: already active, nothing new.
    node.receive({ topic: 'door', payload: { title: 'Garage door open' } });
    node.receive({ payload: 'Water leak' }); // a string payload is a title
    const leak = await c.next();
    assert.deepEqual([leak.alert_id, leak.title, leak.severity, leak.device_id], [2, 'Water leak', 'warning', null]);
    node.receive({ topic: 'door', payload: { action: 'clear' } });
    const cleared = await c.next();
    assert.deepEqual([cleared.alert_id, cleared.status], [1, 'cleared']);
    node.receive({ payload: { action: 'clear', alert_id: 2, message: 'mopped up' } });
    assert.equal((await c.next()).message, 'mopped up');
    await waitFor(() => out.length === 4);
    assert.deepEqual(out.map((m) => [m.payload.alert_id, m.payload.status]), [[1, 'active'], [2, 'active'], [1, 'cleared'], [2, 'cleared']]);
    for (const [payload, re] of [
      // (the test helper's RED._ returns message keys)
      [{ severity: 'fatal' }, /bad-severity/],
      [42, /bad-input/],
      [{ action: 'explode' }, /bad-action/],
      [{ action: 'clear' }, /clear-what/],
      [{ metadata: 'x' }, /bad-metadata/],
      [{ device: 'nope' }, /device must be/],
      [{ device: 99 }, /no device number 99/],
    ]) {
      const caught = nextInput(helper.getNode('caught'));
      node.receive({ payload });
      const msg = await caught;
      assert.match(msg.error.message, re);
    }
  });

  it('keeps active alerts across a restart: same ids, raised once, cleared once, ids continue', async () => {
    let { srv, node } = await load();
    let dev = await device(srv, { currentTemperature: '35' });
    await waitFor(() => node.telemetry.service.alerts.activeCount === 1);
    node.receive({ topic: 'door', payload: { title: 'Door open' } });
    await waitFor(() => node.telemetry.service.alerts.activeCount === 2);
    dev.close();
    await sleep(100);
    await helper.unload();
    const file = path.join(userDir, 'coolkit', 'telemetry-tel.json');
    const saved = JSON.parse(fs.readFileSync(file, 'utf8'));
    assert.deepEqual(saved.alerts.active.map((a) => a.alert_id).sort(), [1, 2]);

    ({ srv, node } = await load());
    const out = collect(helper.getNode('sink'));
    await waitFor(() => node.telemetry.service.alerts.activeCount === 2);
    const c = await apiClient(`ws://127.0.0.1:${node.telemetry.port}/ws`);
    const list = await c.ask({ type: 'get_alerts' });
    assert.deepEqual(list.alerts.map((a) => [a.alert_id, a.alert_type]).sort(), [[1, 'temperature_high'], [2, 'custom']]);
    // Still hot after the restart: no second alert. The flow's key is still active: nothing new.
    dev = await device(srv, { currentTemperature: '36' });
    node.receive({ topic: 'door', payload: { title: 'Door open' } });
    await sleep(200);
    assert.deepEqual(out, []);
    await dev.report({ currentTemperature: '20' });
    node.receive({ topic: 'door', payload: { action: 'clear' } });
    await waitFor(() => out.length === 2);
    assert.deepEqual(out.map((m) => [m.payload.alert_id, m.payload.status]).sort(), [[1, 'cleared'], [2, 'cleared']]);
    node.receive({ payload: { title: 'After restart' } });
    await waitFor(() => out.length === 3);
    assert.equal(out[2].payload.alert_id, 3);
    assert.equal(node.telemetry.service.numbers.peek(D1), 1, 'device numbers survive too');
  });

  it('offline rule: raised after N seconds offline, cleared when the device is back', async () => {
    const { srv } = await load();
    const out = collect(helper.getNode('sink'));
    const dev = await device(srv, { switch: 'on' });
    dev.close();
    await waitFor(() => out.length === 1, 4000);
    assert.deepEqual([out[0].topic, out[0].payload.title, out[0].payload.severity, out[0].payload.status], ['device_offline', 'Lamp offline', 'warning', 'active']);
    await device(srv, { switch: 'on' });
    await waitFor(() => out.length === 2);
    assert.deepEqual([out[1].payload.alert_id, out[1].payload.status], [out[0].payload.alert_id, 'cleared']);
  });

  it('without a JWT secret the API is off (status says so) but rules and flow alerts still work', async () => {
    const { node } = await load({}, {});
    await waitStatus(node, (s) => s.fill === 'yellow' && s.text === 'telemetry-alert.status.no-secret');
    assert.equal(node.telemetry.isListening, false);
    const out = collect(helper.getNode('sink'));
    node.receive({ payload: { title: 'Still works', severity: 'info' } });
    await waitFor(() => out.length === 1);
    assert.equal(out[0].payload.title, 'Still works');
    const res = await helper.request().post('/coolkit-telemetry/tel/token').send({ sub: 'x' });
    assert.equal(res.status, 400);
    assert.match(res.body.error, /no JWT secret/);
  });

  it('serves on Node-RED\'s HTTP server under httpNodeRoot', async () => {
    helper.settings({ userDir, httpNodeRoot: '/red/' });
    try {
      const { node } = await load({ listen: 'node-red', path: '/telemetry' });
      assert.deepEqual(node.telemetry.paths, ['/red/telemetry', '/red/telemetry/telemetry', '/red/telemetry/alerts', '/red/telemetry/devices', '/red/telemetry/system']);
      await waitStatus(node, (s) => s.fill === 'green' && s.text === 'telemetry-alert.status.listening');
      const base = helper.url().replace('http', 'ws');
      const c = await apiClient(`${base}/red/telemetry/system`);
      assert.equal((await c.next()).type, 'system_status_update');
    } finally {
      helper.settings({ userDir, httpNodeRoot: '/' });
    }
  });

  it('admin endpoints: a token that works, the device numbers, the active alerts', async () => {
    const { srv, node } = await load();
    await device(srv, { currentTemperature: '40' });
    await waitFor(() => node.telemetry.service.alerts.activeCount === 1);
    const res = await helper.request().post('/coolkit-telemetry/tel/token').send({ sub: 'dashboard', ttl: 600 });
    assert.equal(res.status, 200);
    assert.equal(res.body.sub, 'dashboard');
    const c = new RawClient(`ws://127.0.0.1:${node.telemetry.port}/ws`);
    sockets.push(c);
    await c.open();
    const auth = await c.ask({ type: 'auth', token: res.body.token });
    assert.deepEqual([auth.success, auth.user], [true, 'dashboard']);
    const devs = await helper.request().get('/coolkit-telemetry/tel/devices');
    assert.deepEqual(devs.body.map((d) => [d.device_id, d.deviceid, d.status]), [[1, D1, 'warning']]);
    const alerts = await helper.request().get('/coolkit-telemetry/tel/alerts');
    assert.deepEqual(alerts.body.map((a) => a.alert_id), [1]);
    assert.equal((await helper.request().get('/coolkit-telemetry/nope/devices')).status, 404);
    assert.equal((await helper.request().post('/coolkit-telemetry/tel/token').send({ ttl: 5 })).status, 400);
  });

  it('reports a busy port and an invalid path on its status', async () => {
    const net = require('node:net');
    const blocker = net.createServer();
    await new Promise((r) => blocker.listen(0, '127.0.0.1', r));
    try {
      const port = blocker.address().port;
      await helper.load(all, flow({ port }), { tel: { jwtSecret: SECRET } });
      const node = helper.getNode('tel');
      const st = await waitStatus(node, (s) => s.fill === 'red');
      assert.equal(st.text, 'telemetry-alert.errors.eaddrinuse');
      await helper.unload();
      await helper.load(all, flow({ path: 'no slash' }), { tel: { jwtSecret: SECRET } });
      assert.equal((await waitStatus(helper.getNode('tel'), (s) => s.fill === 'red')).text, 'telemetry-alert.errors.bad-path');
    } finally {
      blocker.close();
    }
  });
});

describe(`example "06 - Telemetry and alerts" on Node-RED ${runtimeVersion()}`, function () {
  this.timeout(20000);
  const nodesDir = path.dirname(require.resolve('@node-red/nodes/package.json', { paths: [path.dirname(require.resolve(runtime))] }));
  const injectNode = require(path.join(nodesDir, 'core/common/20-inject.js'));
  const switchNode = require(path.join(nodesDir, 'core/function/10-switch.js'));

  before((done) => { helper.startServer(done); });
  after((done) => { helper.stopServer(done); });
  afterEach(async () => { await helper.unload(); });

  it('loads, and its inject buttons raise and clear the door alert once', async () => {
    helper.settings({ userDir: tmpDir('coolkit-tel-ex-') });
    const example = JSON.parse(fs.readFileSync(path.resolve(__dirname, '../../examples/06 - Telemetry and alerts.json'), 'utf8'));
    const types = new Set(example.map((n) => n.type));
    assert.deepEqual([...types].sort(), ['comment', 'coolkit-server', 'debug', 'inject', 'switch', 'telemetry-alert']);
    const server = example.find((n) => n.type === 'coolkit-server');
    assert.equal(server.id, 'c0011e0b00000002');
    const flowNodes = example
      .filter((n) => n.type !== 'comment')
      .map((n) => {
        if (n.type === 'debug') return { id: n.id, type: 'helper', z: 'tab', x: n.x, y: n.y };
        if (n.type === 'coolkit-server') return { ...n, bind: '127.0.0.1', port: 0, tls: 'off' };
        if (n.type === 'telemetry-alert') return { ...n, z: 'tab', bind: '127.0.0.1', port: 0 };
        return { ...n, z: 'tab' };
      });
    const tel = example.find((n) => n.type === 'telemetry-alert');
    await helper.load([nodes.server, telemetryNode, injectNode, switchNode], [{ id: 'tab', type: 'tab' }, ...flowNodes], { [tel.id]: { jwtSecret: SECRET } });
    const node = helper.getNode(tel.id);
    await waitFor(() => node.telemetry.isListening);
    assert.equal(node.telemetry.service.alerts.ruleCount, 3);
    const debugAll = helper.getNode(example.find((n) => n.name === 'alerts').id);
    const seen = [];
    debugAll.on('input', (m) => seen.push(m.payload));
    const open = helper.getNode(example.find((n) => n.name === 'door open').id);
    const closed = helper.getNode(example.find((n) => n.name === 'door closed').id);
    open.receive({});
    open.receive({});
    await waitFor(() => seen.length === 1);
    closed.receive({});
    await waitFor(() => seen.length === 2);
    assert.deepEqual(seen.map((p) => [p.alert_id, p.status, p.title]), [[1, 'active', 'Garage door open'], [1, 'cleared', 'Garage door open']]);
    // A critical alert reaches the notification branch.
    const notify = helper.getNode(example.find((n) => n.name && n.name.startsWith('notify')).id);
    const notified = nextInput(notify);
    node.receive({ payload: { title: 'Boiler', severity: 'critical' } });
    assert.equal((await notified).payload.title, 'Boiler');
  });
});
