'use strict';
// thermostat-targets on the real Node-RED runtime (4.1 or 5, see helpers/nodered.js) with
// simulated devices over TLS: the on-device thermostat of a TH16 configured with the app's exact
// params (seed 000), its state on the output, validation, and local control of a plain relay
// from another device's readings (hysteresis, minimum on/off time, restart).
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { helper, allNodes, runtime, runtimeVersion, waitStatus, useUserDirWithCert } = require('../helpers/nodered');
const { waitFor, sleep } = require('../helpers/raw');
const { SimulatedDevice } = require('../../dist/src/sim');

const thermostatNode = require(path.resolve(__dirname, '../../dist/nodes/thermostat-targets.js'));
const nodes = [...allNodes, thermostatNode];

/** The inject and comment nodes of the runtime under test (the test helper loads only catch/status/complete). */
function coreNodes() {
  const base = path.dirname(require.resolve(`${runtime}/package.json`));
  const file = (name) => require.resolve(`@node-red/nodes/core/common/${name}`, { paths: [base] });
  return [require(file('20-inject.js')), require(file('90-comment.js'))];
}

// The params of the four app commands in shared/seeds/000_*.txt, as the capture writes them.
const SEED = {
  below28: '{"deviceType":"temperature","mainSwitch":"on","targets":[{"targetHigh":"28","reaction":{"switch":"off"}},{"targetLow":"28","reaction":{"switch":"on"}}]}',
  above28: '{"deviceType":"temperature","mainSwitch":"on","targets":[{"targetHigh":"28","reaction":{"switch":"on"}},{"targetLow":"28","reaction":{"switch":"off"}}]}',
  manualOff: '{"deviceType":"normal","mainSwitch":"off"}',
  manualOn: '{"switch":"on","mainSwitch":"on","deviceType":"normal"}',
};

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function flow(th, port = 0) {
  const at = { x: 1, y: 1 };
  return [
    { id: 'f1', type: 'tab' },
    { id: 'srv', type: 'coolkit-server', bind: '127.0.0.1', port, advertiseHost: '127.0.0.1', tls: 'auto', legacyTls: true, hbInterval: 145, commandTimeout: 2, admission: 'open' },
    { id: 'th', type: 'thermostat-targets', z: 'f1', server: 'srv', control: 'device', deviceid: '', ...th, ...at, wires: [['out']] },
    { id: 'catch', type: 'catch', z: 'f1', scope: ['th'], ...at, wires: [['caught']] },
    { id: 'complete', type: 'complete', z: 'f1', scope: ['th'], ...at, wires: [['completed']] },
    { id: 'out', type: 'helper', z: 'f1', ...at },
    { id: 'caught', type: 'helper', z: 'f1', ...at },
    { id: 'completed', type: 'helper', z: 'f1', ...at },
  ];
}

describe(`thermostat-targets on Node-RED ${runtimeVersion()}`, function () {
  this.timeout(30000);
  let userDir;
  let srv;
  let outputs;
  let waiter;
  const sims = [];

  before((done) => { helper.startServer(done); });
  after((done) => { helper.stopServer(done); });
  beforeEach(async () => {
    userDir = await useUserDirWithCert();
  });
  afterEach(async () => {
    for (const s of sims.splice(0)) await s.stop();
    await helper.unload();
  });

  async function load(th, port) {
    await helper.load(nodes, flow(th, port));
    srv = helper.getNode('srv');
    outputs = [];
    // Listeners stay for the whole test (a stale once-listener makes the runtime skip the next one).
    helper.getNode('out').on('input', (msg) => outputs.push(msg));
    helper.getNode('completed').on('input', (msg) => { const w = waiter; waiter = undefined; w?.resolve(msg); });
    helper.getNode('caught').on('input', (msg) => {
      const w = waiter;
      waiter = undefined;
      w?.reject(Object.assign(new Error(msg.error.message), { code: msg.error.code }));
    });
    await waitFor(() => srv.cloud.state === 'listening');
  }

  /** Send a payload; resolve when the node completes the message, reject with the caught error. */
  function send(payload, extra = {}) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { waiter = undefined; reject(new Error('no completion within 5000 ms')); }, 5000);
      waiter = { resolve: (m) => { clearTimeout(timer); resolve(m); }, reject: (e) => { clearTimeout(timer); reject(e); } };
      helper.getNode('th').receive({ payload, ...extra });
    });
  }

  async function refused(payload, pattern, code = 400, extra = {}) {
    await assert.rejects(send(payload, extra), (err) => {
      assert.match(err.message, pattern);
      assert.equal(err.code, code);
      return true;
    });
  }

  async function sim(deviceid, profile, extra = {}) {
    const s = new SimulatedDevice({ server: `https://127.0.0.1:${srv.cloud.port}`, deviceid, profile, reconnect: false, drift: false, sensorTickMs: 50, ...extra });
    sims.push(s);
    await s.start();
    await waitFor(() => srv.cloud.device(deviceid)?.online && srv.cloud.device(deviceid).params.switch !== undefined);
    return s;
  }

  it('sends the seed 000 thermostat messages byte for byte and completes on the device\'s ack', async () => {
    await load({ deviceid: '1000ee0015' });
    const commands = [];
    const dev = await sim('1000ee0015', 'th16', { onCommand: (_params, msg) => { commands.push(JSON.stringify(msg.params)); } });
    await send({ mode: 'heat', setpoint: 28 });
    await send({ mode: 'cool', setpoint: 28 });
    await send({ mode: 'off' });
    await send({ mode: 'manual', switch: 'on' });
    assert.deepEqual(commands, [SEED.below28, SEED.above28, SEED.manualOff, SEED.manualOn]);
    assert.equal(dev.state.deviceType, 'normal');
    assert.equal(dev.state.switch, 'on');
  });

  it('outputs the thermostat state and readings whenever they change; status shows target and reading', async () => {
    await load({ deviceid: '1000ee0015' });
    const dev = await sim('1000ee0015', 'th16');
    await send({ mode: 'heat', setpoint: 28 });
    // The TH's own thermostat switches the relay on (22.5 °C < 28 °C) and reports it.
    await waitFor(() => outputs.some((m) => m.payload.mode === 'heat' && m.payload.relay === true));
    const on = outputs.find((m) => m.payload.relay === true).payload;
    assert.equal(outputs.at(-1).topic, '1000ee0015');
    assert.deepEqual(
      { mode: on.mode, setpoint: on.setpoint, low: on.low, high: on.high, temperature: on.temperature, humidity: on.humidity, relay: on.relay, sensorType: on.sensorType, control: on.control },
      { mode: 'heat', setpoint: 28, low: 28, high: 28, temperature: 22.5, humidity: 45, relay: true, sensorType: 'AM2301', control: 'device' },
    );
    await waitStatus(helper.getNode('th'), (s) => s.text === 'heat < 28 °C · 22.5 °C now' && s.shape === 'dot');

    // Warmer: a new reading, and the device switches off at 28 °C.
    const before = outputs.length;
    dev.setReading({ temperature: 29.5 });
    await waitFor(() => outputs.some((m) => m.payload.temperature === 29.5 && m.payload.relay === false));
    await waitStatus(helper.getNode('th'), (s) => s.text === 'heat < 28 °C · 29.5 °C now' && s.shape === 'ring');
    // Only changes are sent: no duplicate views.
    const views = outputs.slice(before).map((m) => JSON.stringify(m.payload));
    assert.equal(new Set(views).size, views.length);

    // A band for cooling, then humidity.
    await send({ mode: 'cool', high: 26, low: 24 });
    await waitStatus(helper.getNode('th'), (s) => s.text === 'cool 24–26 °C · 29.5 °C now');
    await send({ mode: 'humidity', setpoint: 60 });
    assert.deepEqual(dev.state.targets, [{ targetHigh: '60', reaction: { switch: 'on' } }, { targetLow: '60', reaction: { switch: 'off' } }]);
    await waitStatus(helper.getNode('th'), (s) => s.text === 'dehumidify > 60 % · 45 % now');
  });

  it('refuses out-of-range targets, high < low, missing sensors and devices without a thermostat, sending nothing', async () => {
    await load({ deviceid: '' });
    let sent = 0;
    await sim('1000ee0011', 'th16', { sensorType: 'DHT11', onCommand: () => { sent++; } });
    await sim('1000ee0018', 'th16-ds18b20', { onCommand: () => { sent++; } });
    await sim('1000ee0001', 'basic', { onCommand: () => { sent++; } });
    await refused({ mode: 'heat', setpoint: 60 }, /setpoint 60 °C is outside the DHT11 sensor's range 0..50 °C/, 400, { deviceid: '1000ee0011' });
    await refused({ mode: 'humidity', setpoint: 95 }, /outside the DHT11 sensor's range 20..90 %/, 400, { deviceid: '1000ee0011' });
    await refused({ mode: 'cool', high: 24, low: 26 }, /high \(24\) must be greater than or equal to low \(26\)/, 400, { deviceid: '1000ee0011' });
    await refused({ mode: 'humidity', setpoint: 50 }, /DS18B20 sensor measures no humidity/, 400, { deviceid: '1000ee0018' });
    await refused({ mode: 'heat', setpoint: 20 }, /no on-board thermostat/, 400, { deviceid: '1000ee0001' });
    await refused({ mode: 'warm', setpoint: 20 }, /mode must be/, 400, { deviceid: '1000ee0011' });
    await refused({ mode: 'heat', setpoint: 20 }, /thermostat-targets.errors.no-deviceid/);
    assert.equal(sent, 0);
    await refused({ mode: 'heat', setpoint: 20 }, /unknown to this server/, 503, { deviceid: '1000ee00ff' });
    // Within range it goes through, for the device named in the message.
    await send({ mode: 'heat', setpoint: 21.25 }, { deviceid: '1000ee0011' });
    assert.equal(sent, 1);
    assert.equal(srv.cloud.device('1000ee0011').params.targets[0].targetHigh, '21.3');
  });

  it('local control switches a plain relay from another device\'s readings with hysteresis and minimum on/off times', async () => {
    await load({ control: 'local', deviceid: '1000ee0001', sensor: '1000ee0016', hysteresis: 1, minOn: 1, minOff: 1 });
    const switched = [];
    const relay = await sim('1000ee0001', 'basic', { onCommand: (params) => { if (params.switch) switched.push([params.switch, Date.now()]); } });
    const sensor = await sim('1000ee0016', 'th16');
    await send({ mode: 'heat', setpoint: 21 });
    // 22.5 °C is above 21.5: the relay stays off.
    await sleep(200);
    assert.deepEqual(switched, []);
    await waitStatus(helper.getNode('th'), (s) => s.text === 'heat < 21 °C · 22.5 °C now');

    sensor.setReading({ temperature: 20 });
    await waitFor(() => relay.state.switch === 'on', 3000);
    const onAt = switched[0][1];
    await waitFor(() => outputs.some((m) => m.payload.relay === true && m.payload.temperature === 20 && m.payload.control === 'local'));

    // Warm again at once: the relay must stay on for the minimum on time (1 s), then switch off.
    sensor.setReading({ temperature: 23 });
    await sleep(400);
    // (on a machine slow enough that the minimum time is already over, the check below is the one that counts)
    if (Date.now() - onAt < 900) assert.equal(relay.state.switch, 'on');
    await waitStatus(helper.getNode('th'), (s) => /waiting-min/.test(s.text));
    await waitFor(() => relay.state.switch === 'off', 3000);
    assert.ok(switched[1][1] - onAt >= 1000, `on for ${switched[1][1] - onAt} ms`);

    // Readings jumping across the band in quick succession do not make the relay chatter.
    const jumpFrom = Date.now();
    const before = switched.length;
    for (let i = 0; i < 6; i++) {
      sensor.setReading({ temperature: i % 2 ? 23 : 19 });
      await sleep(120);
    }
    await sleep(1200);
    const times = switched.map((s) => s[1]);
    for (let i = 1; i < times.length; i++) assert.ok(times[i] - times[i - 1] >= 990, `switches ${times[i] - times[i - 1]} ms apart`);
    // at most one switch per minimum time (1 s) over however long this took on this machine
    const allowed = Math.floor((Date.now() - jumpFrom) / 1000) + 1;
    assert.ok(switched.length - before <= allowed, `${switched.length - before} switches in ${Date.now() - jumpFrom} ms`);

    // off switches the relay off and stops the control.
    sensor.setReading({ temperature: 19 });
    await waitFor(() => relay.state.switch === 'on', 3000);
    await sleep(1000);
    await send({ mode: 'off' });
    assert.equal(relay.state.switch, 'off');
    const count = switched.length;
    await sleep(300);
    assert.equal(switched.length, count);
  });

  it('local control keeps its setting and the minimum time across a Node-RED restart', async function () {
    this.timeout(40000);
    const port = await freePort();
    const config = { control: 'local', deviceid: '1000ee0002', sensor: '1000ee0017', hysteresis: 0, minOn: 12, minOff: 1 };
    await load(config, port);
    const relay = await sim('1000ee0002', 'basic', { reconnect: { minMs: 50, maxMs: 100 } });
    const sensor = await sim('1000ee0017', 'th16', { reconnect: { minMs: 50, maxMs: 100 } });
    await send({ mode: 'cool', setpoint: 22 });
    await waitFor(() => relay.state.switch === 'on', 10000); // 22.5 > 22
    const onAt = Date.now();
    const file = path.join(userDir, 'coolkit', 'thermostat-th.json');
    await waitFor(() => fs.existsSync(file) && JSON.parse(fs.readFileSync(file, 'utf8')).lastSwitchAt);
    assert.equal(JSON.parse(fs.readFileSync(file, 'utf8')).setting.mode, 'cool');

    // Restart; meanwhile it got cold. The relay must still wait out its 12 s minimum on time.
    await helper.unload();
    sensor.setReading({ temperature: 18 });
    await load(config, port);
    await waitFor(() => srv.cloud.device('1000ee0002')?.online && srv.cloud.device('1000ee0017')?.online, 5000);
    // The setting came back from disk: the node reports it and waits for the minimum on time.
    await waitFor(() => outputs.some((m) => m.payload.mode === 'cool' && m.payload.setpoint === 22 && m.payload.control === 'local'), 5000);
    await waitStatus(helper.getNode('th'), (s) => s.text === 'thermostat-targets.status.waiting-min', 5000);
    await waitFor(() => srv.cloud.device('1000ee0017').params.currentTemperature === '18', 3000);
    assert.equal(relay.state.switch, 'on');
    assert.ok(Date.now() - onAt < 11000, 'the restart took too long for this test');
    await waitFor(() => relay.state.switch === 'off', 13000);
    assert.ok(Date.now() - onAt >= 11900, `off after ${Date.now() - onAt} ms`);
  });

  it('the example flow loads; its inject buttons reach both nodes', async () => {
    const example = JSON.parse(fs.readFileSync(path.resolve(__dirname, '../../examples/04 - Thermostat.json'), 'utf8'));
    const flowNodes = [{ id: 'f1', type: 'tab' }, ...example.map((n) => {
      if (n.type === 'coolkit-server') return { ...n, bind: '127.0.0.1', port: 0, advertiseHost: '127.0.0.1' };
      const placed = typeof n.x === 'number' ? { ...n, z: 'f1' } : n;
      return placed.type === 'debug' ? { id: placed.id, type: 'helper', z: 'f1', x: placed.x, y: placed.y } : placed;
    })];
    await helper.load([...nodes, ...coreNodes()], flowNodes);
    const server = helper.getNode('c0011e0b00000002');
    await waitFor(() => server.cloud.state === 'listening');
    const errors = [];
    helper.getNode('c0011e0b0000040d').on('input', (m) => errors.push(m.error));
    const completed = [];
    helper.getNode('c0011e0b0000040b').on('input', (m) => completed.push(m));
    helper.getNode('c0011e0b00000402').receive({});
    await waitFor(() => errors.length === 1);
    assert.equal(errors[0].code, 503, 'the TH of the example is not connected');
    // Local control stores the setting and completes, although its devices are not connected.
    helper.getNode('c0011e0b0000040e').receive({});
    await waitFor(() => completed.length === 1);
  });
});

