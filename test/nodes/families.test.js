'use strict';
// Every common Sonoff family end to end: the simulator plays the device over TLS, Node-RED runs
// coolkit-server + sonoff-device-in/out, and flows see normalized reports and can command each
// family with its friendly forms.
const assert = require('node:assert/strict');
const { helper, allNodes, runtimeVersion, nextInput, useUserDirWithCert } = require('../helpers/nodered');
const { waitFor, sleep } = require('../helpers/raw');
const { SimulatedDevice } = require('../../dist/src/sim');

function flow() {
  const at = { x: 1, y: 1 };
  return [
    { id: 'f1', type: 'tab' },
    { id: 'srv', type: 'coolkit-server', bind: '127.0.0.1', port: 0, advertiseHost: '127.0.0.1', tls: 'auto', legacyTls: true, hbInterval: 145, commandTimeout: 3, admission: 'open', uiActiveInterval: 1 },
    { id: 'in', type: 'sonoff-device-in', z: 'f1', server: 'srv', deviceid: '', events: 'all', liveMetering: true, ...at, wires: [['sink']] },
    { id: 'out', type: 'sonoff-device-out', z: 'f1', server: 'srv', deviceid: '', ...at, wires: [] },
    { id: 'complete', type: 'complete', z: 'f1', scope: ['out'], ...at, wires: [['completed']] },
    { id: 'catch', type: 'catch', z: 'f1', scope: ['out'], ...at, wires: [['caught']] },
    { id: 'sink', type: 'helper', z: 'f1', ...at },
    { id: 'completed', type: 'helper', z: 'f1', ...at },
    { id: 'caught', type: 'helper', z: 'f1', ...at },
  ];
}

describe(`device families end to end on Node-RED ${runtimeVersion()}`, function () {
  this.timeout(30000);
  let srv;
  let seen;
  const sims = [];

  before((done) => { helper.startServer(done); });
  after((done) => { helper.stopServer(done); });
  beforeEach(async () => {
    await useUserDirWithCert();
    await helper.load(allNodes, flow());
    srv = helper.getNode('srv');
    await waitFor(() => srv.cloud.state === 'listening');
    seen = [];
    helper.getNode('sink').on('input', (msg) => seen.push(msg));
  });
  afterEach(async () => {
    for (const s of sims.splice(0)) await s.stop();
    await helper.unload();
  });

  async function sim(deviceid, profile, extra = {}) {
    const s = new SimulatedDevice({ server: `https://127.0.0.1:${srv.cloud.port}`, deviceid, profile, reconnect: false, drift: false, ...extra });
    sims.push(s);
    await s.start();
    await waitFor(() => seen.some((m) => m.topic === deviceid && m.event === 'update'));
    return s;
  }

  async function command(deviceid, payload) {
    const completed = nextInput(helper.getNode('completed'));
    helper.getNode('out').receive({ deviceid, payload });
    return completed;
  }

  async function refused(deviceid, payload) {
    const caught = nextInput(helper.getNode('caught'));
    helper.getNode('out').receive({ deviceid, payload });
    return (await caught).error;
  }

  it('1 channel: switch, power-on state, inching that turns itself off, LED; bad widths refused', async () => {
    const dev = await sim('1000ee0001', 'basic');
    await command('1000ee0001', { startup: 'stay' });
    assert.equal(dev.state.startup, 'stay');
    await command('1000ee0001', { sledOnline: 'off' });
    assert.equal(dev.state.sledOnline, 'off');
    await command('1000ee0001', { pulse: 'on', pulseWidth: 500 });
    await command('1000ee0001', 'on');
    assert.equal(dev.state.switch, 'on');
    await waitFor(() => dev.state.switch === 'off', 3000);
    await waitFor(() => seen.some((m) => m.topic === '1000ee0001' && m.normalized.switch === false && m.event === 'update'));
    const err = await refused('1000ee0001', { pulse: 'on', pulseWidth: 750 });
    assert.equal(err.code, 400);
    assert.match(err.message, /steps of 500/);
  });

  it('4 channels: a burst of four outlet commands arrives as one message; outlets and toggles work', async () => {
    const dev = await sim('1000ee0004', '4ch');
    const commands = [];
    dev.on('command', (params) => commands.push(params));
    const done = [0, 1, 2, 3].map(() => nextInput(helper.getNode('completed')));
    for (let outlet = 0; outlet < 4; outlet++) helper.getNode('out').receive({ deviceid: '1000ee0004', payload: { outlet, switch: 'on' } });
    await Promise.all(done);
    assert.equal(commands.length, 1, 'one device message');
    assert.deepEqual(dev.state.switches.map((s) => s.switch), ['on', 'on', 'on', 'on']);
    await waitFor(() => seen.some((m) => m.topic === '1000ee0004' && m.normalized.outlets && m.normalized.outlets.every((o) => o === true)));
    await command('1000ee0004', { outlet: 2, switch: 'toggle' });
    assert.deepEqual(dev.state.switches.map((s) => s.switch), ['on', 'on', 'off', 'on']);
    await command('1000ee0004', { outlet: 1, startup: 'on' });
    assert.equal(dev.state.configure.find((c) => c.outlet === 1).startup, 'on');
    const err = await refused('1000ee0004', { outlet: 4, switch: 'on' });
    assert.match(err.message, /outlet 4 does not exist/);
  });

  it('power meter: the server keeps live metering on while a node watches; readings are numbers', async () => {
    const dev = await sim('1000ee0032', 'pow', { meteringTickMs: 100 });
    await waitFor(() => dev.meteringActiveUntil > Date.now(), 5000);
    await command('1000ee0032', 'on');
    const reading = await waitFor(() => seen.find((m) => m.topic === '1000ee0032' && typeof m.normalized.power === 'number' && m.normalized.power > 0), 8000);
    assert.equal(typeof reading.normalized.voltage, 'number');
    assert.equal(typeof reading.payload.power, 'string', 'raw params keep the wire type');
    await command('1000ee0032', { hundredDaysKwh: 'get' });
    const history = await waitFor(() => seen.find((m) => m.topic === '1000ee0032' && Array.isArray(m.normalized.dailyKwh)), 5000);
    assert.equal(history.normalized.dailyKwh.length, 100);
    assert.ok(history.normalized.dailyKwh.every((v) => typeof v === 'number' && v >= 0));
  });

  it('S31: numbers on the wire are normalized the same way', async () => {
    const dev = await sim('1000ee0031', 's31', { meteringTickMs: 100 });
    await waitFor(() => dev.meteringActiveUntil > Date.now(), 5000);
    await command('1000ee0031', 'on');
    const reading = await waitFor(() => seen.find((m) => m.topic === '1000ee0031' && typeof m.payload.power === 'number'), 8000);
    assert.equal(reading.normalized.power, reading.payload.power);
  });

  it('TH16: temperature and humidity as numbers, "unavailable" as null; thermostat params reach the device', async () => {
    const th = await sim('1000ee0015', 'th16');
    const first = await waitFor(() => seen.find((m) => m.topic === '1000ee0015' && m.event === 'update' && typeof m.normalized.temperature === 'number'));
    assert.equal(first.normalized.temperature, Number(first.state.currentTemperature));
    assert.equal(typeof first.normalized.humidity, 'number');
    const targets = [{ targetHigh: '28', reaction: { switch: 'off' } }, { targetLow: '28', reaction: { switch: 'on' } }];
    await command('1000ee0015', { deviceType: 'temperature', mainSwitch: 'on', targets });
    assert.deepEqual(th.state.targets, targets);
    const ds = await sim('1000ee0016', 'th16-ds18b20');
    const msg = await waitFor(() => seen.find((m) => m.topic === '1000ee0016' && m.event === 'update' && typeof m.normalized.temperature === 'number'));
    assert.equal(msg.normalized.humidity, null);
    assert.equal(ds.state.currentHumidity, 'unavailable');
    const err = await refused('1000ee0001', { targets });
    assert.ok(err.code === 400 || err.code === 503);
  });

  it('RF bridge: transmit learned channels, refuse unlearned ones, learn, and report remote presses as trigger events', async () => {
    const rf = await sim('1000ee0028', 'rfbridge', { captureDelayMs: 50 });
    await command('1000ee0028', { transmit: 1 });
    assert.deepEqual(rf.transmitted.map((t) => t.rfChl), [1]);
    const err = await refused('1000ee0028', { transmit: 9 });
    assert.match(err.message, /channel 9 is not learned/);
    assert.deepEqual(rf.transmitted.length, 1, 'nothing was sent');
    await command('1000ee0028', { capture: 9 });
    await waitFor(() => (srv.cloud.device('1000ee0028').params.rfList || []).some((e) => e.rfChl === 9), 3000);
    await command('1000ee0028', { transmit: 9 });
    rf.triggerRf(3);
    const trig = await waitFor(() => seen.find((m) => m.event === 'trigger' && m.topic === '1000ee0028'), 3000);
    assert.equal(trig.channel, 3);
    assert.match(trig.payload.at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
    const relay = await refused('1000ee0028', 'on');
    assert.match(relay.message, /no relay/);
  });
});
