'use strict';
// The server node's admin endpoints (device list, approve, rename, forget, refused list,
// pairing) and the flow-side controls of sonoff-device-out, on the real Node-RED runtime.
const assert = require('node:assert/strict');
const { helper, allNodes, runtimeVersion, waitStatus, nextInput, useUserDirWithCert } = require('../helpers/nodered');
const { RawClient, waitFor, sleep } = require('../helpers/raw');

const KEY = 'f0000000-0000-4000-8000-000000000001';
const OTHER = 'f0000000-0000-4000-8000-000000000002';

function flow(server = {}) {
  return [
    { id: 'f1', type: 'tab' },
    { id: 'srv', type: 'coolkit-server', bind: '127.0.0.1', port: 0, advertiseHost: '127.0.0.1', tls: 'auto', legacyTls: true, hbInterval: 145, commandTimeout: 2, admission: 'allowlist', ...server },
    { id: 'out', type: 'sonoff-device-out', z: 'f1', server: 'srv', deviceid: '', offline: 'queue', queueExpiry: 30, x: 1, y: 1, wires: [] },
    { id: 'complete', type: 'complete', z: 'f1', scope: ['out'], x: 1, y: 1, wires: [['completed']] },
    { id: 'catch', type: 'catch', z: 'f1', scope: ['out'], x: 1, y: 1, wires: [['caught']] },
    { id: 'completed', type: 'helper', z: 'f1', x: 1, y: 1 },
    { id: 'caught', type: 'helper', z: 'f1', x: 1, y: 1 },
  ];
}

async function register(port, deviceid, apikey = KEY, model = 'ITA-GZ1-GL') {
  const dev = new RawClient(`wss://127.0.0.1:${port}/api/ws`);
  await dev.open();
  const reply = await dev.ask({ userAgent: 'device', apikey, deviceid, action: 'register', model });
  dev.key = reply.apikey;
  dev.reply = reply;
  return dev;
}

describe(`admin endpoints and flow controls on Node-RED ${runtimeVersion()}`, function () {
  this.timeout(20000);
  before((done) => { helper.startServer(done); });
  after((done) => { helper.stopServer(done); });
  beforeEach(async () => {
    await useUserDirWithCert();
  });
  afterEach(async () => { await helper.unload(); });

  it('lists refused devices, approves, renames and forgets them', async () => {
    await helper.load(allNodes, flow());
    const srv = helper.getNode('srv');
    await waitFor(() => srv.cloud.state === 'listening');
    const refused = await register(srv.cloud.port, '1000dd0001');
    assert.equal(refused.reply.error, 403);
    const list = (await helper.request().get('/coolkit/srv/refused').expect(200)).body;
    assert.deepEqual(list.map((r) => [r.deviceid, r.model]), [['1000dd0001', 'ITA-GZ1-GL']]);
    assert.equal(list[0].factoryApikey, undefined, 'factory keys are not exposed to the editor');

    await helper.request().post('/coolkit/srv/devices').send({ deviceid: '1000dd0001', name: 'Kitchen' }).expect(200);
    const ok = await register(srv.cloud.port, '1000dd0001');
    assert.equal(ok.reply.error, 0);
    const spoof = await register(srv.cloud.port, '1000dd0001', OTHER);
    assert.equal(spoof.reply.error, 403);

    await helper.request().put('/coolkit/srv/devices/1000dd0001').send({ name: 'Pantry' }).expect(200);
    const devices = (await helper.request().get('/coolkit/srv/devices').expect(200)).body;
    assert.equal(devices[0].name, 'Pantry');
    assert.equal(devices[0].capabilities.family, 'switch');

    await helper.request().post('/coolkit/srv/devices').send({ deviceid: 'nope' }).expect(400);
    await helper.request().delete('/coolkit/srv/devices/1000dd0001').expect(200);
    await helper.request().delete('/coolkit/srv/devices/1000dd0001').expect(404);
    assert.equal(srv.cloud.device('1000dd0001'), undefined);
  });

  it('opens a pairing window from the editor endpoint and from a flow message', async () => {
    await helper.load(allNodes, flow());
    const srv = helper.getNode('srv');
    await waitFor(() => srv.cloud.state === 'listening');
    assert.equal((await register(srv.cloud.port, '1000dd0002')).reply.error, 403);
    const res = await helper.request().post('/coolkit/srv/pairing').send({ minutes: 1 }).expect(200);
    assert.ok(Date.parse(res.body.pairingUntil) > Date.now());
    assert.equal((await register(srv.cloud.port, '1000dd0002')).reply.error, 0);
    assert.deepEqual((await helper.request().get('/coolkit/srv/refused').expect(200)).body, [], 'accepted during pairing: no longer listed as refused');
    await helper.request().post('/coolkit/srv/pairing').send({ minutes: 0 }).expect(200);
    assert.equal((await register(srv.cloud.port, '1000dd0003')).reply.error, 403);

    const c = nextInput(helper.getNode('completed'));
    helper.getNode('out').receive({ payload: { pairing: 2 } });
    await c;
    assert.ok(srv.cloud.admission.pairingOpenUntil() > Date.now() + 60000);
    await waitStatus(helper.getNode('out'), (s) => s.text === 'sonoff-device-out.status.pairing');
    assert.equal((await register(srv.cloud.port, '1000dd0003')).reply.error, 0);
  });

  it('coalesces four outlet commands from a flow into one device message', async () => {
    await helper.load(allNodes, flow({ admission: 'open' }));
    const srv = helper.getNode('srv');
    await waitFor(() => srv.cloud.state === 'listening');
    const dev = await register(srv.cloud.port, '1000dd0004', KEY, 'PSF-B04-GL');
    const received = [];
    dev.ws.on('message', (data) => {
      const msg = JSON.parse(data.toString());
      if (msg.action !== 'update') return;
      received.push(msg.params);
      dev.ws.send(JSON.stringify({ error: 0, deviceid: '1000dd0004', apikey: dev.key, sequence: msg.sequence }));
    });
    let completions = 0;
    helper.getNode('completed').on('input', () => completions++);
    for (let outlet = 0; outlet < 4; outlet++) helper.getNode('out').receive({ deviceid: '1000dd0004', payload: { outlet, switch: 'on' } });
    await waitFor(() => completions === 4);
    assert.equal(received.length, 1);
    assert.deepEqual(received[0], { switches: [0, 1, 2, 3].map((outlet) => ({ switch: 'on', outlet })) });
    // A command the device cannot perform fails before anything is sent.
    const c = nextInput(helper.getNode('caught'));
    helper.getNode('out').receive({ deviceid: '1000dd0004', payload: { outlet: 5, switch: 'on' } });
    assert.match((await c).error.message, /outlet 5 does not exist/);
    assert.equal(received.length, 1);
    dev.close();
  });

  it('queues a command for an offline device (queue option) and completes when it is back', async () => {
    await helper.load(allNodes, flow({ admission: 'open' }));
    const srv = helper.getNode('srv');
    await waitFor(() => srv.cloud.state === 'listening');
    const first = await register(srv.cloud.port, '1000dd0005');
    first.close();
    await waitFor(() => srv.cloud.device('1000dd0005').online === false);
    const completed = nextInput(helper.getNode('completed'), 8000);
    helper.getNode('out').receive({ deviceid: '1000dd0005', payload: 'on' });
    await waitStatus(helper.getNode('out'), (s) => s.text === 'sonoff-device-out.status.queued');
    await sleep(200);
    const back = new RawClient(`wss://127.0.0.1:${srv.cloud.port}/api/ws`);
    await back.open();
    const reg = await back.ask({ userAgent: 'device', apikey: KEY, deviceid: '1000dd0005', action: 'register' });
    const pushed = await back.next();
    assert.deepEqual(pushed.params, { switch: 'on' });
    back.send({ error: 0, deviceid: '1000dd0005', apikey: reg.apikey, sequence: pushed.sequence });
    await completed;
    back.close();
  });
});
