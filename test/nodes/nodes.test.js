'use strict';
// The three foundation nodes on the real Node-RED runtime (4.1 or 5, see helpers/nodered.js),
// with devices speaking the protocol over real TLS on 127.0.0.1.
const assert = require('node:assert/strict');
const { helper, allNodes, runtime, runtimeVersion, statuses, waitStatus, nextInput, useUserDirWithCert } = require('../helpers/nodered');
const { RawClient, once, sleep, waitFor } = require('../helpers/raw');

const FACTORY = 'f0000000-0000-4000-8000-000000000001';

function serverNode(extra = {}) {
  return { id: 'srv', type: 'coolkit-server', name: 'cloud', bind: '127.0.0.1', port: 0, advertiseHost: '127.0.0.1', tls: 'auto', legacyTls: true, hbInterval: 145, commandTimeout: 1, ...extra };
}

/** Flow nodes need x/y, or the runtime treats them as config nodes. */
function placed(flow) {
  return flow.map((n) => (n.type === 'tab' || n.type === 'coolkit-server' ? n : { x: 100, y: 100, ...n }));
}

function baseFlow(extra = []) {
  return placed([
    { id: 'f1', type: 'tab' },
    { ...serverNode(), z: 'f1' },
    { id: 'in', type: 'sonoff-device-in', z: 'f1', server: 'srv', deviceid: '', events: 'all', wires: [['sink']] },
    { id: 'in1', type: 'sonoff-device-in', z: 'f1', server: 'srv', deviceid: '1000aa0001', events: 'status', wires: [['sink1']] },
    { id: 'out', type: 'sonoff-device-out', z: 'f1', server: 'srv', deviceid: '', wires: [] },
    { id: 'catch', type: 'catch', z: 'f1', scope: ['out'], wires: [['caught']] },
    { id: 'complete', type: 'complete', z: 'f1', scope: ['out'], wires: [['completed']] },
    { id: 'sink', type: 'helper', z: 'f1' },
    { id: 'sink1', type: 'helper', z: 'f1' },
    { id: 'caught', type: 'helper', z: 'f1' },
    { id: 'completed', type: 'helper', z: 'f1' },
    ...extra,
  ]);
}

async function device(port, deviceid = '1000aa0001', params = { switch: 'off', fwVersion: '1.5.5', rssi: -31, startup: 'off' }) {
  const dev = new RawClient(`wss://127.0.0.1:${port}/api/ws`);
  await dev.open();
  const reg = await dev.ask({ userAgent: 'device', apikey: FACTORY, deviceid, action: 'register', version: 2, romVersion: '1.5.5', model: 'ITA-GZ1-GL', ts: 970 });
  dev.key = reg.apikey;
  dev.deviceid = deviceid;
  await dev.ask({ userAgent: 'device', apikey: dev.key, deviceid, action: 'update', params });
  // Acks every command and reports the new state, as the firmware does.
  dev.autoAck = (error = 0) => {
    dev.ws.on('message', (data) => {
      const msg = JSON.parse(data.toString());
      if (msg.action !== 'update' || !msg.sequence) return;
      dev.commands = (dev.commands || []).concat([msg.params]);
      dev.ws.send(JSON.stringify({ error, userAgent: 'device', apikey: dev.key, deviceid, sequence: msg.sequence }));
      if (error === 0) dev.ws.send(JSON.stringify({ userAgent: 'device', apikey: dev.key, deviceid, action: 'update', params: msg.params }));
    });
  };
  return dev;
}

describe(`nodes on Node-RED ${runtimeVersion()} (${runtime}), Node ${process.version}`, function () {
  this.timeout(20000);

  before((done) => { helper.startServer(done); });
  after((done) => { helper.stopServer(done); });
  beforeEach(async () => {
    await useUserDirWithCert();
  });
  afterEach(async () => { await helper.unload(); });

  it('starts the server and shows it listening on every user node', async () => {
    await helper.load(allNodes, baseFlow());
    const srv = helper.getNode('srv');
    await waitFor(() => srv.cloud.state === 'listening');
    const st = await waitStatus(helper.getNode('in'), (s) => s.fill === 'green');
    assert.equal(st.text, 'coolkit-server.status.listening');
    await waitStatus(helper.getNode('out'), (s) => s.fill === 'green');
    // A node watching one device that never connected says it is waiting for it.
    assert.equal((await waitStatus(helper.getNode('in1'), (s) => s.fill === 'yellow')).text, 'sonoff-device-in.status.waiting');
  });

  it('emits reports and online/offline events with topic, payload, state, event and device', async () => {
    await helper.load(allNodes, baseFlow());
    const srv = helper.getNode('srv');
    await waitFor(() => srv.cloud.state === 'listening');
    const sink = helper.getNode('sink');
    const sink1 = helper.getNode('sink1');
    const seen = [];
    sink.on('input', (msg) => seen.push(msg));
    const statusSeen = [];
    sink1.on('input', (msg) => statusSeen.push(msg));

    const dev = await device(srv.cloud.port);
    await waitFor(() => seen.length >= 2);
    assert.equal(seen[0].event, 'online');
    assert.deepEqual(seen[0].payload, { online: true });
    const report = seen[1];
    assert.equal(report.topic, '1000aa0001');
    assert.equal(report.event, 'update');
    assert.deepEqual(report.payload, { switch: 'off', fwVersion: '1.5.5', rssi: -31, startup: 'off' });
    assert.deepEqual(report.device, { deviceid: '1000aa0001', model: 'ITA-GZ1-GL', romVersion: '1.5.5', online: true });

    // A partial report: payload has just what it carried, state has everything merged.
    await dev.ask({ userAgent: 'device', apikey: dev.key, deviceid: '1000aa0001', action: 'update', params: { switch: 'on' } });
    await waitFor(() => seen.length >= 3);
    assert.deepEqual(seen[2].payload, { switch: 'on' });
    // every message has its own id, of the form Node-RED uses
    for (const m of seen) assert.match(m._msgid, /^[0-9a-f]{16}$/);
    assert.equal(new Set(seen.map((m) => m._msgid)).size, seen.length);
    assert.equal(seen[2].state.switch, 'on');
    assert.equal(seen[2].state.rssi, -31);
    // Changing a message downstream does not change the stored state.
    seen[2].state.switch = 'broken';
    assert.equal(srv.cloud.device('1000aa0001').params.switch, 'on');

    await waitStatus(helper.getNode('in1'), (s) => s.fill === 'green' && s.text === 'sonoff-device-in.status.online');
    dev.close();
    await waitFor(() => seen.some((m) => m.event === 'offline'));
    await waitStatus(helper.getNode('in1'), (s) => s.fill === 'red' && s.text === 'sonoff-device-in.status.offline');
    // The 'status' node got online and offline but no reports.
    assert.deepEqual(statusSeen.map((m) => m.event), ['online', 'offline']);
    // Two nodes got the same 'online' event: changing one message leaves the other as it was.
    seen[0].device.online = 'changed';
    seen[0].normalized.switch = 'changed';
    assert.equal(statusSeen[0].device.online, true);
    assert.notEqual(statusSeen[0].normalized.switch, 'changed');
  });

  it('sends commands, and completes only when the device acks', async () => {
    await helper.load(allNodes, baseFlow());
    const srv = helper.getNode('srv');
    await waitFor(() => srv.cloud.state === 'listening');
    const dev = await device(srv.cloud.port);
    dev.autoAck();
    const out = helper.getNode('out');
    const completed = nextInput(helper.getNode('completed'));
    out.receive({ payload: 'on', deviceid: '1000aa0001', _keep: 'me' });
    const done = await completed;
    assert.equal(done._keep, 'me');
    assert.deepEqual(dev.commands, [{ switch: 'on' }]);
    await waitFor(() => srv.cloud.device('1000aa0001').params.switch === 'on');
    const st = await waitStatus(out, (s) => s.fill === 'green' && s.text === 'sonoff-device-out.status.acked');
    assert.ok(st);

    // toggle resolves from the known state; the other forms are translated too.
    for (const [payload, expected] of [
      ['toggle', { switch: 'off' }],
      [true, { switch: 'on' }],
      [{ switch: 'off' }, { switch: 'off' }],
      [{ outlet: 0, switch: 'on' }, { switch: 'on' }],
      [{ startup: 'stay' }, { startup: 'stay' }],
    ]) {
      const c = nextInput(helper.getNode('completed'));
      out.receive({ payload, deviceid: '1000aa0001' });
      await c;
      assert.deepEqual(dev.commands[dev.commands.length - 1], expected);
    }
    dev.close();
  });

  it('sends errors to Catch nodes with a code: timeout, offline, device error, bad payload, no device', async () => {
    await helper.load(allNodes, baseFlow());
    const srv = helper.getNode('srv');
    await waitFor(() => srv.cloud.state === 'listening');
    const out = helper.getNode('out');
    const caught = helper.getNode('caught');
    let completions = 0;
    helper.getNode('completed').on('input', () => completions++);

    // Unknown device: 503 at once.
    let c = nextInput(caught);
    out.receive({ payload: 'on', deviceid: '1000aa0042' });
    let msg = await c;
    assert.equal(msg.error.source.id, 'out');
    assert.match(msg.error.message, /unknown to this server/);
    assert.equal(msg.error.code, 503);

    // No device at all.
    c = nextInput(caught);
    out.receive({ payload: 'on' });
    msg = await c;
    assert.match(msg.error.message, /sonoff-device-out.errors.no-deviceid/);

    const dev = await device(srv.cloud.port);
    // Bad payload: nothing is sent.
    let sent = 0;
    dev.ws.on('message', () => sent++);
    c = nextInput(caught);
    out.receive({ payload: 'dance', deviceid: '1000aa0001' });
    msg = await c;
    assert.match(msg.error.message, /not a command/);
    assert.equal(msg.error.code, 400);
    await sleep(100);
    assert.equal(sent, 0);

    // Timeout (commandTimeout is 1 s in this flow): the device never acks.
    c = nextInput(caught);
    out.receive({ payload: 'on', deviceid: '1000aa0001' });
    msg = await c;
    assert.match(msg.error.message, /did not acknowledge/);
    assert.equal(msg.error.code, 504);
    await waitStatus(out, (s) => s.fill === 'red');

    // Device error code.
    dev.autoAck(400);
    c = nextInput(caught);
    out.receive({ payload: 'off', deviceid: '1000aa0001' });
    msg = await c;
    assert.match(msg.error.message, /error 400/);
    assert.equal(msg.error.code, 400);
    assert.equal(completions, 0, 'nothing completed');
    dev.close();
  });

  it('reports a busy port on the node status without stopping Node-RED, and the other server keeps working', async () => {
    const net = require('node:net');
    const blocker = net.createServer();
    await new Promise((r) => blocker.listen(0, '127.0.0.1', r));
    const busyPort = blocker.address().port;
    const flow = [
      { id: 'f1', type: 'tab' },
      { ...serverNode({ id: 'busy', port: busyPort }), z: 'f1' },
      { id: 'inBusy', type: 'sonoff-device-in', z: 'f1', server: 'busy', deviceid: '', events: 'all', wires: [] },
      { ...serverNode(), z: 'f1' },
      { id: 'in', type: 'sonoff-device-in', z: 'f1', server: 'srv', deviceid: '', events: 'all', wires: [['sink']] },
      { id: 'sink', type: 'helper', z: 'f1' },
    ];
    await helper.load(allNodes, placed(flow));
    const st = await waitStatus(helper.getNode('inBusy'), (s) => s.fill === 'red');
    assert.equal(st.text, 'coolkit-server.errors.eaddrinuse');
    const srv = helper.getNode('srv');
    await waitFor(() => srv.cloud.state === 'listening');
    const got = nextInput(helper.getNode('sink'));
    const dev = await device(srv.cloud.port);
    assert.equal((await got).event, 'online');
    dev.close();
    blocker.close();
  });

  it('releases the port on redeploy so the new server binds it again', async () => {
    await helper.load(allNodes, baseFlow());
    const srv = helper.getNode('srv');
    await waitFor(() => srv.cloud.state === 'listening');
    const port = srv.cloud.port;
    const dev = await device(port);
    const flow = baseFlow().map((n) => (n.id === 'srv' ? { ...n, port, hbInterval: 100 } : n));
    await helper.setFlows(flow, 'nodes');
    assert.equal((await dev.waitClose()).code, 1001, 'devices are told the server is going away');
    const srv2 = helper.getNode('srv');
    assert.notEqual(srv2, srv);
    await waitFor(() => srv2.cloud.state === 'listening' || srv2.cloud.state === 'error');
    assert.equal(srv2.cloud.state, 'listening');
    assert.equal(srv2.cloud.port, port);
    // The device comes back and is known (same issued key).
    const again = new RawClient(`wss://127.0.0.1:${port}/api/ws`);
    await again.open();
    const reg = await again.ask({ userAgent: 'device', apikey: FACTORY, deviceid: '1000aa0001', action: 'register' });
    assert.equal(reg.apikey, dev.key);
    assert.equal(reg.config.hbInterval, 100);
    again.close();
  });

  it('lists known devices on the admin endpoint', async () => {
    await helper.load(allNodes, baseFlow());
    const srv = helper.getNode('srv');
    await waitFor(() => srv.cloud.state === 'listening');
    const dev = await device(srv.cloud.port);
    const res = await helper.request().get('/coolkit/srv/devices').expect(200);
    assert.equal(res.body.length, 1);
    assert.equal(res.body[0].deviceid, '1000aa0001');
    assert.equal(res.body[0].online, true);
    assert.equal(res.body[0].model, 'ITA-GZ1-GL');
    await helper.request().get('/coolkit/nope/devices').expect(404);
    dev.close();
  });

  it('shows a missing server as an error instead of crashing', async () => {
    const flow = [
      { id: 'f1', type: 'tab' },
      { id: 'out', type: 'sonoff-device-out', z: 'f1', server: 'missing', deviceid: '1000aa0001', wires: [] },
      { id: 'in', type: 'sonoff-device-in', z: 'f1', server: 'missing', deviceid: '', wires: [] },
      { id: 'catch', type: 'catch', z: 'f1', scope: ['out'], wires: [['caught']] },
      { id: 'caught', type: 'helper', z: 'f1' },
    ];
    await helper.load(allNodes, placed(flow));
    assert.equal(statuses(helper.getNode('in')).pop().fill, 'red');
    const c = nextInput(helper.getNode('caught'));
    helper.getNode('out').receive({ payload: 'on' });
    assert.match((await c).error.message, /sonoff-device-out.errors.missing-server/);
  });
});
