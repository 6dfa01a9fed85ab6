'use strict';
// Typed inputs (issue 10): the Device of sonoff-device-out, sonoff-ota, thermostat-targets and
// sonoff-timer, and the Version of sonoff-ota, may be a plain string (the default: flows saved
// before typed inputs have no `<field>Type`), or come from msg, flow, global or env. On the real
// Node-RED runtime (4.1 or 5, see helpers/nodered.js) with simulated devices over TLS.
// Every wait is for a condition (a message, a status, a device state), never a fixed time.
const assert = require('node:assert/strict');
const path = require('node:path');
const { helper, allNodes, runtimeVersion, statuses, waitStatus, useUserDirWithCert } = require('../helpers/nodered');
const { waitFor } = require('../helpers/raw');
const { image } = require('../helpers/firmware');
const { SimulatedDevice } = require('../../dist/src/sim');

const dist = path.resolve(__dirname, '../../dist/nodes');
const nodes = [
  ...allNodes,
  require(path.join(dist, 'sonoff-ota.js')),
  require(path.join(dist, 'sonoff-timer.js')),
  require(path.join(dist, 'thermostat-targets.js')),
];

const AT = { x: 1, y: 1 };
const DEV = '1000aa0001';
/** Tab environment variables: one valid device, one that is not a device ID. */
const TAB_ENV = [
  { name: 'COOLKIT_DEVICE', value: DEV, type: 'str' },
  { name: 'COOLKIT_TH', value: '1000ee0015', type: 'str' },
  { name: 'COOLKIT_NOT_A_DEVICE', value: 'kitchen lamp', type: 'str' },
  { name: 'COOLKIT_FW', value: '1.6.0', type: 'str' },
];

function flow(node) {
  return [
    { id: 'f1', type: 'tab', env: TAB_ENV },
    { id: 'srv', type: 'coolkit-server', bind: '127.0.0.1', port: 0, advertiseHost: '127.0.0.1', tls: 'auto', legacyTls: true, hbInterval: 145, commandTimeout: 2, admission: 'open' },
    { id: 'n', z: 'f1', server: 'srv', ...AT, wires: [['out']], ...node },
    { id: 'catch', type: 'catch', z: 'f1', scope: ['n'], ...AT, wires: [['caught']] },
    { id: 'complete', type: 'complete', z: 'f1', scope: ['n'], ...AT, wires: [['completed']] },
    { id: 'out', type: 'helper', z: 'f1', ...AT },
    { id: 'caught', type: 'helper', z: 'f1', ...AT },
    { id: 'completed', type: 'helper', z: 'f1', ...AT },
  ];
}

describe(`typed inputs on Node-RED ${runtimeVersion()}`, function () {
  this.timeout(30000);
  let srv;
  let got;
  const sims = [];

  before((done) => { helper.startServer(done); });
  after((done) => { helper.stopServer(done); });
  beforeEach(async () => {
    await useUserDirWithCert();
  });
  afterEach(async () => {
    for (const s of sims.splice(0)) await s.stop();
    await helper.unload();
  });

  async function load(node) {
    await helper.load(nodes, flow(node));
    srv = helper.getNode('srv');
    // Listeners stay for the whole test (a stale once-listener makes the runtime skip the next one).
    got = { out: [], caught: [], completed: [] };
    for (const k of Object.keys(got)) helper.getNode(k).on('input', (msg) => got[k].push(msg));
    await waitFor(() => srv.cloud.state === 'listening');
    return helper.getNode('n');
  }

  async function sim(deviceid, profile = 'basic', extra = {}) {
    const s = new SimulatedDevice({ server: `https://127.0.0.1:${srv.cloud.port}`, deviceid, profile, reconnect: false, drift: false, pingIntervalMs: 0, ...extra });
    sims.push(s);
    await s.start();
    await waitFor(() => srv.cloud.device(deviceid)?.online && srv.cloud.device(deviceid).params.switch !== undefined);
    return s;
  }

  /** Send a message; resolve with the completed (or output) message, reject with the caught error. */
  async function send(msg, which = 'completed') {
    const n = { out: got.out.length, caught: got.caught.length, completed: got.completed.length };
    helper.getNode('n').receive(msg);
    await waitFor(() => got[which].length > n[which] || got.caught.length > n.caught, 10000, 10);
    if (got.caught.length > n.caught) {
      const c = got.caught[n.caught];
      throw Object.assign(new Error(c.error.message), { code: c.error.code, msg: c });
    }
    return got[which][n[which]];
  }

  async function refused(msg, pattern, which = 'completed') {
    await assert.rejects(send(msg, which), (err) => {
      assert.match(err.message, pattern);
      assert.equal(err.code, 400);
      return true;
    });
  }

  function setContext(scope, key, value) {
    helper.getNode('n').context()[scope].set(key, value);
  }

  // ---- sonoff-device-out ---------------------------------------------------------------------

  describe('sonoff-device-out Device', () => {
    const out = (extra) => ({ type: 'sonoff-device-out', ...extra });

    it('flows without deviceidType behave as before: the configured ID wins, empty takes msg.deviceid', async () => {
      await load(out({ deviceid: DEV }));
      const dev = await sim(DEV);
      await sim('1000aa0002');
      await send({ payload: 'on', deviceid: '1000aa0002' });
      await waitFor(() => dev.state.switch === 'on');
      assert.equal(srv.cloud.device('1000aa0002').params.switch, 'off', 'msg.deviceid does not override a configured Device');
      await helper.unload();
      await load(out({ deviceid: '' }));
      const other = await sim('1000aa0003');
      await send({ payload: 'on', deviceid: '1000aa0003' });
      await waitFor(() => other.state.switch === 'on');
      await refused({ payload: 'on' }, /sonoff-device-out.errors.no-deviceid/);
    });

    it('msg: reads the device from a message property, which wins over msg.deviceid', async () => {
      await load(out({ deviceid: 'target.id', deviceidType: 'msg' }));
      const dev = await sim(DEV);
      const other = await sim('1000aa0002');
      await send({ payload: 'on', target: { id: ' 1000AA0001 ' }, deviceid: '1000aa0002' });
      await waitFor(() => dev.state.switch === 'on');
      assert.equal(other.state.switch, 'off');
      await send({ payload: 'on', target: { id: '1000aa0002' } });
      await waitFor(() => other.state.switch === 'on');
    });

    it('flow and global: read per message, so a context change redirects the next command', async () => {
      for (const scope of ['flow', 'global']) {
        await load(out({ deviceid: 'lamp', deviceidType: scope }));
        const a = await sim(DEV);
        const b = await sim('1000aa0002');
        setContext(scope, 'lamp', DEV);
        await send({ payload: 'on' });
        await waitFor(() => a.state.switch === 'on');
        setContext(scope, 'lamp', '1000aa0002');
        await send({ payload: 'on' });
        await waitFor(() => b.state.switch === 'on');
        for (const s of sims.splice(0)) await s.stop();
        await helper.unload();
      }
    });

    it('env: an environment variable of the flow', async () => {
      await load(out({ deviceid: 'COOLKIT_DEVICE', deviceidType: 'env' }));
      const dev = await sim(DEV);
      await send({ payload: 'on', deviceid: '1000aa0002' });
      await waitFor(() => dev.state.switch === 'on');
    });

    it('an empty, missing or invalid evaluated value fails to Catch with code 400 and a red status', async () => {
      await load(out({ deviceid: 'target', deviceidType: 'msg' }));
      const dev = await sim(DEV);
      let sent = 0;
      dev.on('command', () => sent++);
      await refused({ payload: 'on', deviceid: DEV }, /sonoff-device-out.errors.deviceid-empty/);
      await refused({ payload: 'on', target: '' }, /sonoff-device-out.errors.deviceid-empty/);
      await refused({ payload: 'on', target: 'kitchen lamp' }, /sonoff-device-out.errors.deviceid-invalid/);
      await refused({ payload: 'on', target: { id: DEV } }, /sonoff-device-out.errors.deviceid-invalid/);
      await waitStatus(helper.getNode('n'), (s) => s.fill === 'red');
      assert.equal(sent, 0, 'nothing reached the device');
      assert.equal(got.completed.length, 0);
      await helper.unload();

      // flow context without the key
      await load(out({ deviceid: 'nothing.here', deviceidType: 'flow' }));
      await refused({ payload: 'on' }, /sonoff-device-out.errors.deviceid-empty/);
      await helper.unload();

      // a message property expression that cannot be evaluated
      await load(out({ deviceid: 'a[', deviceidType: 'msg' }));
      await refused({ payload: 'on' }, /sonoff-device-out.errors.deviceid-eval/);
      await helper.unload();

      // env: unset or not a device ID, shown at start too
      for (const name of ['COOLKIT_UNSET_VARIABLE', 'COOLKIT_NOT_A_DEVICE']) {
        const n = await load(out({ deviceid: name, deviceidType: 'env' }));
        await waitStatus(n, (s) => s.fill === 'red' && /deviceid-(empty|invalid)/.test(s.text));
        await refused({ payload: 'on', deviceid: DEV }, /sonoff-device-out.errors.deviceid-(empty|invalid)/);
        await helper.unload();
      }

      // an unknown type
      await load(out({ deviceid: 'x', deviceidType: 'jsonata' }));
      await refused({ payload: 'on' }, /unsupported value type "jsonata"/);
    });
  });

  // ---- sonoff-timer ----------------------------------------------------------------------------

  describe('sonoff-timer Device', () => {
    const tmr = (extra) => ({ type: 'sonoff-timer', timezone: 'Europe/Berlin', ...extra });

    it('msg, flow, global and env name the device whose timers are listed; msg.deviceid does not override them', async () => {
      const cases = [
        [{ deviceid: 'target', deviceidType: 'msg' }, () => {}, { target: DEV }],
        [{ deviceid: 'dev', deviceidType: 'flow' }, () => setContext('flow', 'dev', DEV), {}],
        [{ deviceid: 'dev', deviceidType: 'global' }, () => setContext('global', 'dev', DEV), {}],
        [{ deviceid: 'COOLKIT_DEVICE', deviceidType: 'env' }, () => {}, {}],
      ];
      for (const [config, prepare, extra] of cases) {
        await load(tmr(config));
        prepare();
        const reply = await send({ payload: 'list', deviceid: '1000aa0009', ...extra }, 'out');
        assert.equal(reply.topic, DEV, `${config.deviceidType}`);
        assert.equal(reply.deviceid, DEV);
        assert.deepEqual(reply.payload, []);
        await helper.unload();
      }
    });

    it('flows without deviceidType behave as before, and a typed value that is empty or invalid fails with 400', async () => {
      await load(tmr({ deviceid: '' }));
      assert.equal((await send({ payload: 'list', deviceid: DEV }, 'out')).topic, DEV);
      await refused({ payload: 'list' }, /sonoff-timer.errors.no-deviceid/, 'out');
      await helper.unload();

      await load(tmr({ deviceid: 'target', deviceidType: 'msg' }));
      await refused({ payload: 'list', deviceid: DEV }, /sonoff-timer.errors.deviceid-empty/, 'out');
      await refused({ payload: 'list', target: 42 }, /sonoff-timer.errors.deviceid-invalid/, 'out');
      await waitStatus(helper.getNode('n'), (s) => s.fill === 'red');
      await helper.unload();

      const n = await load(tmr({ deviceid: 'COOLKIT_NOT_A_DEVICE', deviceidType: 'env' }));
      await waitStatus(n, (s) => s.fill === 'red' && /deviceid-invalid/.test(s.text));
      await refused({ payload: 'list' }, /sonoff-timer.errors.deviceid-invalid/, 'out');
    });

    it('a device from env is managed from the start, like a plain one: a timer change reaches it', async () => {
      await load(tmr({ deviceid: 'COOLKIT_DEVICE', deviceidType: 'env' }));
      const dev = await sim(DEV);
      const reply = await send({ payload: { action: 'add', timer: { type: 'delay', minutes: 30, do: 'off' } } }, 'out');
      assert.equal(reply.topic, DEV);
      await waitFor(() => Array.isArray(dev.state.timers) && dev.state.timers.length === 1);
    });
  });

  // ---- thermostat-targets ----------------------------------------------------------------------

  describe('thermostat-targets Device', () => {
    const th = (extra) => ({ type: 'thermostat-targets', control: 'device', ...extra });

    it('device control: msg, flow, global and env name the TH16 that gets the setting', async () => {
      const cases = [
        [{ deviceid: 'th', deviceidType: 'msg' }, () => {}, { th: '1000ee0015' }],
        [{ deviceid: 'th', deviceidType: 'flow' }, () => setContext('flow', 'th', '1000ee0015'), {}],
        [{ deviceid: 'th', deviceidType: 'global' }, () => setContext('global', 'th', '1000ee0015'), {}],
        [{ deviceid: 'COOLKIT_TH', deviceidType: 'env' }, () => {}, {}],
      ];
      let setpoint = 20;
      for (const [config, prepare, extra] of cases) {
        await load(th(config));
        const dev = await sim('1000ee0015', 'th16', { sensorTickMs: 50 });
        prepare();
        setpoint += 1;
        await send({ payload: { mode: 'heat', setpoint }, deviceid: '1000aa0009', ...extra });
        await waitFor(() => dev.state.deviceType === 'temperature' && dev.state.targets?.[0]?.targetHigh === String(setpoint));
        for (const s of sims.splice(0)) await s.stop();
        await helper.unload();
      }
    });

    it('flows without deviceidType behave as before; an empty typed value fails with 400', async () => {
      await load(th({ deviceid: '' }));
      const dev = await sim('1000ee0015', 'th16', { sensorTickMs: 50 });
      await send({ payload: { mode: 'off' }, deviceid: '1000ee0015' });
      await waitFor(() => dev.state.deviceType === 'normal');
      await helper.unload();

      await load(th({ deviceid: 'th', deviceidType: 'global' }));
      await refused({ payload: { mode: 'off' }, deviceid: '1000ee0015' }, /thermostat-targets.errors.deviceid-empty/);
      await waitStatus(helper.getNode('n'), (s) => s.fill === 'red');
    });

    it('local control: a Device from msg/flow/global is refused at start; from env it switches the relay', async () => {
      for (const type of ['msg', 'flow', 'global']) {
        const n = await load(th({ control: 'local', deviceid: 'relay', deviceidType: type }));
        await waitStatus(n, (s) => s.fill === 'red' && /local-needs-fixed/.test(s.text));
        await refused({ payload: { mode: 'off' }, relay: DEV }, /thermostat-targets.errors.local-needs-fixed/);
        await helper.unload();
      }
      await load(th({ control: 'local', deviceid: 'COOLKIT_DEVICE', deviceidType: 'env', minOn: 0, minOff: 0 }));
      const relay = await sim(DEV);
      await send({ payload: { mode: 'manual', switch: 'on' } });
      await waitFor(() => relay.state.switch === 'on');
    });
  });

  // ---- sonoff-ota ------------------------------------------------------------------------------

  describe('sonoff-ota Device and Version', () => {
    const ota = (extra) => ({ type: 'sonoff-ota', deviceid: '', version: '', port: 0, maxConcurrent: 2, timeout: 20, ...extra });

    async function loadOta(extra) {
      const n = await load(ota(extra));
      await waitStatus(n, (s) => s.text === 'sonoff-ota.status.ready');
      return n;
    }
    async function addFirmware(version) {
      await send({ payload: { action: 'add', model: 'ITA-GZ1-GL', version, user1: image(3000, `${version}a`), user2: image(3000, `${version}b`) } }, 'out');
    }

    it('check: the Device from msg, flow, global or env; payload.deviceid and msg.deviceid still come first', async () => {
      const cases = [
        [{ deviceid: 'target', deviceidType: 'msg' }, () => {}, { target: '1000ff0001' }],
        [{ deviceid: 'dev', deviceidType: 'flow' }, () => setContext('flow', 'dev', '1000ff0001'), {}],
        [{ deviceid: 'dev', deviceidType: 'global' }, () => setContext('global', 'dev', '1000ff0001'), {}],
        [{ deviceid: 'COOLKIT_OTA', deviceidType: 'env' }, () => {}, {}],
      ];
      for (const [config, prepare, extra] of cases) {
        TAB_ENV.push({ name: 'COOLKIT_OTA', value: '1000ff0001', type: 'str' });
        try {
          await loadOta(config);
        } finally {
          TAB_ENV.pop();
        }
        await sim('1000ff0001');
        await sim('1000ff0002');
        prepare();
        const reply = await send({ payload: 'check', ...extra }, 'out');
        assert.equal(reply.payload.deviceid, '1000ff0001', config.deviceidType);
        assert.equal((await send({ payload: 'check', deviceid: '1000ff0002', ...extra }, 'out')).payload.deviceid, '1000ff0002', 'msg.deviceid first');
        assert.equal((await send({ payload: { action: 'check', deviceid: '1000ff0002' }, ...extra }, 'out')).payload.deviceid, '1000ff0002', 'payload.deviceid first');
        for (const s of sims.splice(0)) await s.stop();
        await helper.unload();
      }
    });

    it('update: the Version from a message property; empty or invalid fails with 400 before anything is sent', async () => {
      await loadOta({ deviceid: 'target', deviceidType: 'msg', version: 'fw', versionType: 'msg' });
      await addFirmware('1.6.0');
      await addFirmware('1.8.0');
      const dev = await sim('1000ff0003', 'basic', { ota: { rebootDelayMs: 20 } });
      let upgrades = 0;
      dev.on('message', (m) => { if (m && m.action === 'upgrade') upgrades++; });
      await refused({ payload: 'update', target: '1000ff0003' }, /sonoff-ota.errors.version-empty/, 'out');
      await refused({ payload: 'update', target: '1000ff0003', fw: 'not valid!' }, /sonoff-ota.errors.version-invalid/, 'out');
      await refused({ payload: 'update', fw: '1.6.0' }, /sonoff-ota.errors.deviceid-empty/, 'out');
      assert.equal(upgrades, 0);
      helper.getNode('n').receive({ payload: 'update', target: '1000ff0003', fw: '1.6.0' });
      await waitFor(() => got.out.some((m) => m.payload.state === 'success'), 20000);
      assert.equal(dev.romVersion, '1.6.0', 'the version from msg.fw, not the newest');
    });

    it('update: the Version from env; a flow without versionType keeps an empty Version meaning the newest', async () => {
      await loadOta({ deviceid: '1000ff0004', version: 'COOLKIT_FW', versionType: 'env' });
      await addFirmware('1.6.0');
      await addFirmware('1.8.0');
      const dev = await sim('1000ff0004', 'basic', { ota: { rebootDelayMs: 20 } });
      helper.getNode('n').receive({ payload: Date.now() });
      await waitFor(() => got.out.some((m) => m.payload.state === 'success'), 20000);
      assert.equal(dev.romVersion, '1.6.0');
      for (const s of sims.splice(0)) await s.stop();
      await helper.unload();

      await loadOta({ deviceid: '1000ff0005', version: '' });
      await addFirmware('1.6.0');
      await addFirmware('1.8.0');
      const newest = await sim('1000ff0005', 'basic', { ota: { rebootDelayMs: 20 } });
      helper.getNode('n').receive({ payload: Date.now() });
      await waitFor(() => got.out.some((m) => m.payload.state === 'success'), 20000);
      assert.equal(newest.romVersion, '1.8.0');
      assert.ok(!statuses(helper.getNode('n')).some((s) => s.fill === 'red'));
    });
  });
});
