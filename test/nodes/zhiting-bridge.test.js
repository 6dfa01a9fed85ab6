'use strict';
// zhiting-bridge on the real Node-RED runtime (4.1 on Node 20, or 5 on Node 22: see
// helpers/nodered.js): serving on its own port and on Node-RED's HTTP server beside other
// WebSocket listeners, token and origin checks, Sonoff devices from the simulator, and a
// virtual device whose set requests go through a flow (a change node) and back.
const assert = require('node:assert/strict');
const path = require('node:path');
const WebSocket = require('ws');
const { helper, nodes, runtime, runtimeVersion, waitStatus, nextInput } = require('../helpers/nodered');
const { waitFor } = require('../helpers/raw');
const { stateDirWithCert } = require('../helpers/cloud');
const { HubClient } = require('../hub/zhiting-env');
const { SimulatedDevice } = require('../../dist/src/sim');

const bridgeNode = require(path.resolve(__dirname, '../../dist/nodes/zhiting-bridge.js'));
const nodesDir = path.dirname(require.resolve('@node-red/nodes/package.json', { paths: [path.dirname(require.resolve(runtime))] }));
const changeNode = require(path.join(nodesDir, 'core/function/15-change.js'));
const TOKEN = 'bridge-token-42';
const all = [nodes.server, bridgeNode, changeNode];

const at = { x: 100, y: 100 };
function flow(bridge = {}, extra = []) {
  return [
    { id: 'f1', type: 'tab' },
    { id: 'srv', type: 'coolkit-server', bind: '127.0.0.1', port: 0, advertiseHost: '127.0.0.1', tls: 'off', hbInterval: 145, commandTimeout: 2, admission: 'open' },
    { id: 'bridge', type: 'zhiting-bridge', z: 'f1', server: 'srv', listen: 'port', bind: '127.0.0.1', port: 0, path: '/ws', allowQueryToken: false, origins: '', maxPayload: 65536, rateLimit: 100, answerTimeout: 2, ...at, wires: [['setreq', 'sink']], ...bridge },
    // The "flow" for the virtual lamp: it applies every set request by reporting the value back.
    { id: 'setreq', type: 'change', z: 'f1', rules: [{ t: 'set', p: 'payload.action', pt: 'msg', to: 'update', tot: 'str' }], ...at, wires: [['bridge']] },
    { id: 'sink', type: 'helper', z: 'f1', ...at },
    { id: 'catch', type: 'catch', z: 'f1', scope: ['bridge'], ...at, wires: [['caught']] },
    { id: 'complete', type: 'complete', z: 'f1', scope: ['bridge'], ...at, wires: [['completed']] },
    { id: 'caught', type: 'helper', z: 'f1', ...at },
    { id: 'completed', type: 'helper', z: 'f1', ...at },
    ...extra,
  ].map((n) => (n.type === 'tab' || n.type === 'coolkit-server' ? n : { ...n }));
}

const lamp = {
  identity: 'zigbee-lamp-1',
  model: 'TS0505B',
  manufacturer: 'Tuya',
  name: 'Desk lamp',
  instances: [{ instance_id: 1, type: 'light_bulb', attributes: [
    { attribute: 'power', val_type: 'string', permission: 0, val: 'off' },
    { attribute: 'brightness', val_type: 'int', permission: 0, val: 55, min: 1, max: 100 },
  ] }],
};

describe(`zhiting-bridge on Node-RED ${runtimeVersion()} (${runtime}), Node ${process.version}`, function () {
  this.timeout(20000);
  const clients = [];
  const sims = [];

  before((done) => { helper.startServer(done); });
  after((done) => { helper.stopServer(done); });
  beforeEach(async () => {
    helper.settings({ userDir: await stateDirWithCert() });
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const s of sims.splice(0)) await s.stop().catch(() => {});
    await helper.unload();
  });

  async function load(bridge, extra, credentials = { bridge: { token: TOKEN } }) {
    await helper.load(all, flow(bridge, extra), credentials);
    const srv = helper.getNode('srv');
    await waitFor(() => srv.cloud.state === 'listening');
    const node = helper.getNode('bridge');
    await waitFor(() => node.zhiting.where !== '');
    return { srv, node };
  }

  async function client(url, headers = { 'smart-assistant-token': TOKEN }) {
    const c = new HubClient(url, headers);
    clients.push(c);
    await c.open();
    return c;
  }

  function refusedStatus(url, headers) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers });
      ws.on('open', () => { ws.terminate(); reject(new Error('connected')); });
      ws.on('error', () => {});
      ws.on('unexpected-response', (_q, res) => { res.resume(); resolve(res.statusCode); });
    });
  }

  it('serves on its own port: token required, devices of the server discovered and switched, status shows clients', async () => {
    const { srv, node } = await load();
    const url = `ws://127.0.0.1:${node.zhiting.port}/ws`;
    await waitStatus(node, (s) => s.fill === 'green' && s.text === 'zhiting-bridge.status.listening');
    assert.equal(await refusedStatus(url, {}), 401);
    assert.equal(await refusedStatus(url, { 'smart-assistant-token': TOKEN, Origin: 'https://evil.example' }), 403);
    const sim = new SimulatedDevice({ server: `http://127.0.0.1:${srv.cloud.port}`, deviceid: '1000bb0004', profile: '4ch', reconnect: false, drift: false, pingIntervalMs: 0 });
    sims.push(sim);
    await sim.start();
    const c = await client(url);
    await waitFor(() => node.zhiting.gateway.size === 1);
    await waitStatus(node, (s) => s.fill === 'green' && s.shape === 'dot');
    await waitFor(() => Object.keys(srv.cloud.device('1000bb0004')?.params ?? {}).length > 0);
    const d = await c.ask({ id: 1, service: 'discover' });
    assert.deepEqual(d, { id: 1, type: '', result: { device: { name: '1000bb0004', identity: '1000bb0004', model: 'PSF-B04-GL', manufacturer: 'SONOFF', plugin_id: 'coolkit' } }, success: true });
    const r = await c.ask({ id: 2, domain: 'zhiting', service: 'set_attributes', identity: '1000bb0004', service_data: { attributes: [{ instance_id: 2, attribute: 'power', val: 'on' }] } });
    assert.deepEqual(r, { id: 2, type: 'response', success: true });
    assert.equal(sim.state.switches.find((s) => s.outlet === 1).switch, 'on');
    assert.deepEqual(await c.event((e) => e.instance_id === 2), { type: 'attribute_change', identity: '1000bb0004', instance_id: 2, attr: { attribute: 'power', val: 'on', val_type: 'string' } });
    await sim.stop();
    await c.event((e) => e.attr.attribute === 'online' && e.attr.val === false);
  });

  it('serves on Node-RED\'s HTTP server under httpNodeRoot, beside other WebSocket listeners, and detaches on close', async () => {
    const server = helper._server;
    const foreign = new WebSocket.Server({ noServer: true });
    const onForeign = (req, socket, head) => { if (req.url === '/other') foreign.handleUpgrade(req, socket, head, (ws) => ws.send('other')); };
    server.on('upgrade', onForeign);
    const listenersBefore = server.listenerCount('upgrade');
    helper.settings({ userDir: helper.settings().userDir, httpNodeRoot: '/red/' });
    try {
      const { node } = await load({ listen: 'node-red', path: '/zhiting/ws', origins: 'http://localhost:1880' });
      assert.equal(node.zhiting.where, '/red/zhiting/ws');
      assert.equal(server.listenerCount('upgrade'), listenersBefore + 1);
      const base = helper.url().replace('http', 'ws');
      // Outside httpNodeRoot the upgrade is not ours: the socket is left to other listeners (none here).
      const stray = new WebSocket(`${base}/zhiting/ws`, { headers: { 'smart-assistant-token': TOKEN } });
      stray.on('error', () => {});
      const strayResult = await Promise.race([
        new Promise((resolve) => stray.once('open', () => resolve('opened'))),
        new Promise((resolve) => stray.once('unexpected-response', (_q, res) => resolve(res.statusCode))),
        new Promise((resolve) => setTimeout(() => resolve('left alone'), 300)),
      ]);
      stray.terminate();
      assert.equal(strayResult, 'left alone');
      const c = await client(`${base}/red/zhiting/ws`, { 'smart-assistant-token': TOKEN, Origin: 'http://localhost:1880' });
      assert.deepEqual(await c.ask({ id: 5, service: 'discover' }), { id: 5, type: '', result: null, success: true });
      const o = new WebSocket(`${base}/other`);
      assert.equal(await new Promise((resolve) => o.once('message', (m) => resolve(m.toString()))), 'other');
      o.terminate();
      const closed = c.closed;
      await helper.unload();
      assert.equal((await closed).code, 1001, 'clients are told the server is going away');
      assert.equal(server.listenerCount('upgrade'), listenersBefore, 'our upgrade listener is gone');
    } finally {
      server.off('upgrade', onForeign);
      foreign.close();
    }
  });

  it('a virtual device round trip: defined by a message, set by a client, applied by the flow, answered and broadcast', async () => {
    const { node } = await load();
    const url = `ws://127.0.0.1:${node.zhiting.port}/ws`;
    const c = await client(url);
    const watcher = await client(url);
    const completed = nextInput(helper.getNode('completed'));
    node.receive({ payload: { action: 'define', device: lamp } });
    await completed;
    const g = await c.ask({ id: 1, service: 'get_attributes', identity: 'zigbee-lamp-1' });
    assert.deepEqual(g.result.device.instances[0].attrs.map((a) => [a.attribute, a.val]), [['power', 'off'], ['brightness', 55]]);

    const setMsg = nextInput(helper.getNode('sink'));
    const r = await c.ask({ id: '123456789012345678', service: 'set_attributes', identity: 'zigbee-lamp-1', service_data: { attributes: [{ instance_id: 1, attribute: 'brightness', val: 80 }] } });
    assert.equal(r.error_code, 3, 'a string id is refused');
    const n = c.texts.length;
    c.send('{"id":1655797023123456789,"service":"set_attributes","identity":"zigbee-lamp-1","service_data":{"attributes":[{"instance_id":1,"attribute":"brightness","val":80}]}}');
    const msg = await setMsg;
    assert.equal(msg.topic, 'zigbee-lamp-1');
    assert.equal(typeof msg.set_id, 'string');
    assert.deepEqual(msg.payload, { action: 'set', set_id: msg.set_id, identity: 'zigbee-lamp-1', attributes: [{ instance_id: 1, attribute: 'brightness', val: 80 }], instance_id: 1, attribute: 'brightness', val: 80 });
    // The change node turned it into {action:"update", ...}: that confirms the request (a timeout would answer success:false).
    assert.equal(await c.rawAfter(n), '{"id":1655797023123456789,"type":"response","success":true}');
    assert.deepEqual(await watcher.event((e) => e.identity === 'zigbee-lamp-1' && e.attr.attribute === 'brightness' && e.attr.val === 80), { type: 'attribute_change', identity: 'zigbee-lamp-1', instance_id: 1, attr: { attribute: 'brightness', val: 80, val_type: 'int' } });

    // Updates from the flow are events; an explicit refusal from the flow reaches the client.
    node.receive({ payload: { action: 'update', identity: 'zigbee-lamp-1', attributes: [{ instance_id: 1, attribute: 'power', val: 'on' }] } });
    await watcher.event((e) => e.attr.attribute === 'power' && e.attr.val === 'on');
    const answer = nextInput(helper.getNode('sink'));
    c.send({ id: 9, service: 'set_attributes', identity: 'zigbee-lamp-1', service_data: { attributes: [{ instance_id: 1, attribute: 'power', val: 'off' }, { instance_id: 1, attribute: 'brightness', val: 5 }] } });
    const two = await answer;
    node.receive({ set_id: two.set_id, payload: { action: 'answer', success: false, error: 'lamp unreachable' } });
    const refused = await c.waitFrame(() => c.responses(9).find((x) => x.success === false));
    assert.deepEqual(refused, { id: 9, type: 'response', success: false, error: 'lamp unreachable', error_code: 2 });

    // Bad input goes to a Catch node with a code.
    const caught = nextInput(helper.getNode('caught'));
    node.receive({ payload: { action: 'dance' } });
    const err = (await caught).error;
    assert.match(err.message, /zhiting-bridge.errors.bad-action/);
    const caught2 = nextInput(helper.getNode('caught'));
    node.receive({ payload: { action: 'define', device: { identity: 'x', instances: [] } } });
    assert.match((await caught2).error.message, /instances must be a non-empty array/);

    const removed = nextInput(helper.getNode('completed'));
    node.receive({ payload: { action: 'remove', identity: 'zigbee-lamp-1' } });
    await removed;
    assert.equal((await c.ask({ id: 10, service: 'get_attributes', identity: 'zigbee-lamp-1' })).error_code, 5);
  });

  it('without a token every client is refused and the status says so', async () => {
    const { node } = await load({}, [], { bridge: {} });
    await waitStatus(node, (s) => s.fill === 'red' && s.text === 'zhiting-bridge.status.no-token');
    assert.equal(await refusedStatus(`ws://127.0.0.1:${node.zhiting.port}/ws`, { 'smart-assistant-token': '' }), 401);
  });

  it('with ?token= allowed a browser on a listed origin can connect; oversize frames close with 1009', async () => {
    const { node } = await load({ allowQueryToken: true, origins: 'https://home.example.com, http://192.168.1.20:8080', maxPayload: 2048 });
    const url = `ws://127.0.0.1:${node.zhiting.port}/ws?token=${TOKEN}`;
    const c = await client(url, { Origin: 'https://home.example.com' });
    assert.equal((await c.ask({ id: 1, service: 'discover' })).success, true);
    assert.equal(await refusedStatus(url, { Origin: 'https://other.example.com' }), 403);
    c.send(`{"id":2,"service":"discover","pad":"${'x'.repeat(3000)}"}`);
    assert.equal((await c.closed).code, 1009);
  });
});

describe(`example "03 - Zhiting hub API" on Node-RED ${runtimeVersion()}`, function () {
  this.timeout(20000);
  const injectNode = require(path.join(nodesDir, 'core/common/20-inject.js'));
  const debugNode = require(path.join(nodesDir, 'core/common/21-debug.js'));
  const commentNode = require(path.join(nodesDir, 'core/common/90-comment.js'));
  let c;

  before((done) => { helper.startServer(done); });
  after((done) => { helper.stopServer(done); });
  afterEach(async () => {
    if (c) c.close();
    await helper.unload();
  });

  it('imports and runs: the virtual lamp is defined on deploy, and a set request is applied through the change node', async () => {
    helper.settings({ userDir: await stateDirWithCert() });
    const example = JSON.parse(require('node:fs').readFileSync(path.resolve(__dirname, '../../examples/03 - Zhiting hub API.json'), 'utf8'));
    const basics = JSON.parse(require('node:fs').readFileSync(path.resolve(__dirname, '../../examples/01 - Local cloud basics.json'), 'utf8'));
    const server = example.find((n) => n.type === 'coolkit-server');
    assert.deepEqual(server, basics.find((n) => n.type === 'coolkit-server'), 'the same server node as example 01, so imports share it');
    assert.ok(example.some((n) => n.type === 'comment'));
    const bridge = example.find((n) => n.type === 'zhiting-bridge');
    assert.deepEqual([bridge.port, bridge.path, bridge.listen], [37965, '/ws', 'port']);
    // Run it on free ports of 127.0.0.1.
    const flowNodes = [{ id: 'f', type: 'tab' }, ...example.map((n) => {
      if (n.type === 'coolkit-server') return { ...n, bind: '127.0.0.1', port: 0, tls: 'off' };
      const placed = { ...n, z: 'f' };
      return n.type === 'zhiting-bridge' ? { ...placed, bind: '127.0.0.1', port: 0 } : placed;
    })];
    await helper.load([nodes.server, bridgeNode, changeNode, injectNode, debugNode, commentNode], flowNodes, { [bridge.id]: { token: TOKEN } });
    const node = helper.getNode(bridge.id);
    await waitFor(() => node.zhiting.where !== '');
    c = new HubClient(`ws://127.0.0.1:${node.zhiting.port}/ws`, { 'smart-assistant-token': TOKEN });
    await c.open();
    await waitFor(() => node.zhiting.hub.virtual.get('zigbee-desk-lamp'), 4000);
    const r = await c.ask({ id: 1, service: 'set_attributes', identity: 'zigbee-desk-lamp', service_data: { attributes: [{ instance_id: 1, attribute: 'brightness', val: 75 }] } });
    assert.deepEqual(r, { id: 1, type: 'response', success: true });
    await c.event((e) => e.identity === 'zigbee-desk-lamp' && e.attr.attribute === 'brightness' && e.attr.val === 75);
    const g = await c.ask({ id: 2, service: 'get_attributes', identity: 'zigbee-desk-lamp' });
    assert.equal(g.result.device.instances[0].attrs.find((a) => a.attribute === 'brightness').val, 75);
  });
});
