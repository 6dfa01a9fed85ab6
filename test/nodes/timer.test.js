'use strict';
// sonoff-timer on the real Node-RED runtime (4.1 or 5, see helpers/nodered.js), with simulated
// devices over TLS that RUN the timers they are given on a fake clock (src/sim/timers.ts): a timer
// set through the node switches the device at the right moment, in local time, in UTC on the wire.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { helper, allNodes, runtime, runtimeVersion, waitStatus, useUserDirWithCert } = require('../helpers/nodered');
const { waitFor } = require('../helpers/raw');
const { SimulatedDevice } = require('../../dist/src/sim');
const { attachTimerRunner, FakeClock } = require('../../dist/src/sim/timers');
const lt = require('../../dist/src/protocol/localtime');

const timerNode = require(path.resolve(__dirname, '../../dist/nodes/sonoff-timer.js'));
const nodes = [...allNodes, timerNode];

/** The inject and comment nodes of the runtime under test (the test helper loads only catch/status/complete). */
function coreNodes() {
  const base = path.dirname(require.resolve(`${runtime}/package.json`));
  const file = (name) => require.resolve(`@node-red/nodes/core/common/${name}`, { paths: [base] });
  return [require(file('20-inject.js')), require(file('90-comment.js'))];
}
const MIN = 60_000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function flow({ deviceid = '', timezone = 'Europe/Berlin', port = 0 } = {}) {
  const at = { x: 1, y: 1 };
  return [
    { id: 'f1', type: 'tab' },
    { id: 'srv', type: 'coolkit-server', bind: '127.0.0.1', port, advertiseHost: '127.0.0.1', tls: 'auto', legacyTls: true, hbInterval: 145, commandTimeout: 2, admission: 'open' },
    { id: 'tmr', type: 'sonoff-timer', z: 'f1', server: 'srv', deviceid, timezone, ...at, wires: [['out']] },
    { id: 'catch', type: 'catch', z: 'f1', scope: ['tmr'], ...at, wires: [['caught']] },
    { id: 'out', type: 'helper', z: 'f1', ...at },
    { id: 'caught', type: 'helper', z: 'f1', ...at },
  ];
}

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

/** ISO local time (no offset) `minutes` from now in `zone`, to the minute. */
function localIn(zone, minutes) {
  return lt.formatLocalIso(zone, Math.ceil((Date.now() + minutes * MIN) / MIN) * MIN).slice(0, 16);
}

describe(`sonoff-timer on Node-RED ${runtimeVersion()}`, function () {
  this.timeout(30000);
  let userDir;
  let srv;
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

  async function load(options) {
    await helper.load(nodes, flow(options));
    srv = helper.getNode('srv');
    collect();
    await waitFor(() => srv.cloud.state === 'listening');
  }

  async function sim(deviceid, profile = 'basic', extra = {}) {
    const s = new SimulatedDevice({ server: `https://127.0.0.1:${srv.cloud.port}`, deviceid, profile, reconnect: false, drift: false, ...extra });
    sims.push(s);
    await s.start();
    await waitFor(() => srv.cloud.device(deviceid)?.params.switch !== undefined || srv.cloud.device(deviceid)?.params.switches !== undefined);
    return s;
  }

  /**
   * Send a payload, resolve with the output message or reject with the caught error. Listeners
   * stay on the helper nodes for the whole test: a stale once-listener would make the runtime
   * skip the next one.
   */
  let waiter;
  function collect() {
    helper.getNode('out').on('input', (msg) => { const w = waiter; waiter = undefined; w?.resolve(msg); });
    helper.getNode('caught').on('input', (msg) => {
      const w = waiter;
      waiter = undefined;
      w?.reject(Object.assign(new Error(msg.error.message), { code: msg.error.code, msg }));
    });
  }
  function ask(payload, extra = {}) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { waiter = undefined; reject(new Error('no answer within 5000 ms')); }, 5000);
      waiter = { resolve: (m) => { clearTimeout(timer); resolve(m); }, reject: (e) => { clearTimeout(timer); reject(e); } };
      helper.getNode('tmr').receive({ payload, ...extra });
    });
  }

  async function refused(payload, pattern, code = 400, extra = {}) {
    await assert.rejects(ask(payload, extra), (err) => {
      assert.match(err.message, pattern);
      assert.equal(err.code, code);
      return true;
    });
  }

  it('a once timer set in local time reaches the device in UTC, in the capture\'s shape, and switches it at that moment', async () => {
    await load({ deviceid: '1000dd0001', timezone: 'Europe/Berlin' });
    const dev = await sim('1000dd0001');
    const clock = new FakeClock(Date.now());
    const runner = attachTimerRunner(dev, { clock });
    const seen = [];
    dev.on('command', (params) => seen.push(params));

    const at = localIn('Europe/Berlin', 10);
    const reply = await ask({ action: 'add', timer: { type: 'once', at, do: { switch: 'on' }, name: 'lamp' } });
    assert.equal(reply.topic, '1000dd0001');
    assert.equal(reply.action, 'add');
    assert.equal(reply.payload.length, 1);
    const listed = reply.payload[0];
    assert.match(listed.id, UUID);
    assert.equal(listed.type, 'once');
    assert.equal(listed.name, 'lamp');
    assert.equal(listed.at.slice(0, 16), at);
    assert.match(listed.at, /[+-]\d\d:\d\d$/);
    assert.deepEqual(listed.do, { switch: 'on' });
    assert.equal(reply.next, listed.at);

    // The device got the whole array, in UTC, key order as in seed 001.
    assert.equal(seen.length, 1);
    const wire = seen[0].timers;
    assert.equal(wire.length, 1);
    assert.deepEqual(Object.keys(wire[0]), ['coolkit_timer_type', 'at', 'mId', 'enabled', 'do', 'type']);
    assert.equal(wire[0].mId, listed.id);
    assert.equal(wire[0].at, new Date(lt.parseUserTime(at, 'Europe/Berlin')).toISOString());
    // The server keeps what the device acknowledged.
    assert.deepEqual(srv.cloud.device('1000dd0001').params.timers, wire);

    // The device runs it: nothing until the time, then the switch, reported to the server.
    const due = Date.parse(wire[0].at);
    clock.advanceTo(due - 1000);
    assert.equal(dev.state.switch, 'off');
    clock.advanceTo(due);
    assert.equal(dev.state.switch, 'on');
    await waitFor(() => srv.cloud.device('1000dd0001').params.switch === 'on');
    assert.equal(runner.fired.length, 1);
    runner.stop();
  });

  it('a weekly timer fires at the local time in another zone (weekday shift across midnight)', async () => {
    await load({ deviceid: '1000dd0002', timezone: 'Asia/Kolkata' });
    const dev = await sim('1000dd0002');
    const clock = new FakeClock(Date.now());
    attachTimerRunner(dev, { clock });
    // 00:30 in Kolkata on the weekday of tomorrow there: 19:00 UTC the day before.
    const tomorrow = lt.addDays(lt.toWall('Asia/Kolkata', Date.now()), 1);
    const day = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'][lt.weekdayOf(tomorrow)];
    const reply = await ask({ action: 'add', timer: { type: 'repeat', at: '00:30', days: [day], do: 'on' } });
    const utcDay = (lt.weekdayOf(tomorrow) + 6) % 7;
    assert.equal(dev.state.timers[0].at, `0 19 * * ${utcDay}`);
    const due = lt.fromWall('Asia/Kolkata', { ...tomorrow, hour: 0, minute: 30 });
    assert.equal(Date.parse(reply.next), due);
    assert.match(reply.next, /T00:30:00\+05:30$/);
    clock.advanceTo(due - 1);
    assert.equal(dev.state.switch, 'off');
    clock.advanceTo(due);
    assert.equal(dev.state.switch, 'on');
    assert.equal(new Date(due).getUTCHours(), 19);
  });

  it('every action: add, update (mId kept), disable, enable, remove, list, clear; status counts timers', async () => {
    await load({ deviceid: '1000dd0003', timezone: 'America/New_York' });
    const dev = await sim('1000dd0003');
    let reply = await ask({
      action: 'add',
      timers: [
        { type: 'repeat', at: '21:00', days: ['fri', 'sat'], do: 'off', name: 'night' },
        { type: 'delay', minutes: 30, do: { switch: 'off' } },
        { type: 'duration', every: 60, do: { switch: 'on' }, after: 20, then: { switch: 'off' } },
      ],
    });
    assert.deepEqual(reply.payload.map((x) => x.type), ['repeat', 'delay', 'duration']);
    const wire = dev.state.timers;
    assert.equal(wire.length, 3);
    assert.deepEqual(Object.keys(wire[1]), ['coolkit_timer_type', 'at', 'period', 'mId', 'enabled', 'do', 'type']);
    assert.equal(wire[1].period, '30');
    assert.deepEqual(Object.keys(wire[2]), ['coolkit_timer_type', 'at', 'mId', 'enabled', 'startDo', 'endDo', 'type']);
    assert.match(wire[2].at, / 60 20$/);
    const ids = reply.payload.map((x) => x.id);
    await waitStatus(helper.getNode('tmr'), (st) => st.text === 'sonoff-timer.status.next' && st.fill === 'green');

    reply = await ask({ action: 'update', name: 'night', timer: { at: '22:15' } });
    assert.equal(reply.payload[0].at, '22:15');
    assert.deepEqual(reply.payload.map((x) => x.id), ids, 'mIds stay');
    assert.deepEqual(dev.state.timers.map((x) => x.mId), ids);

    reply = await ask({ action: 'disable', id: ids[0] });
    assert.deepEqual(reply.payload.map((x) => x.enabled), [false, true, true]);
    assert.equal(dev.state.timers[0].enabled, 0);
    reply = await ask({ action: 'disable' });
    assert.deepEqual(dev.state.timers.map((x) => x.enabled), [0, 0, 0]);
    reply = await ask({ action: 'enable', index: 2 });
    assert.deepEqual(dev.state.timers.map((x) => x.enabled), [0, 0, 1]);
    assert.equal(reply.payload[0].next, null);

    reply = await ask({ action: 'remove', id: ids[1] });
    assert.deepEqual(reply.payload.map((x) => x.id), [ids[0], ids[2]]);
    assert.deepEqual(dev.state.timers.map((x) => x.mId), [ids[0], ids[2]]);

    // list changes nothing and sends nothing to the device.
    let sent = 0;
    dev.on('command', () => sent++);
    reply = await ask('list');
    assert.equal(reply.action, 'list');
    assert.equal(reply.payload.length, 2);
    assert.equal(sent, 0);

    // set takes list's output as it is.
    reply = await ask({ action: 'set', timers: reply.payload });
    assert.deepEqual(reply.payload.map((x) => x.id), [ids[0], ids[2]]);

    reply = await ask({ action: 'clear' });
    assert.deepEqual(reply.payload, []);
    assert.deepEqual(dev.state.timers, []);
    await waitStatus(helper.getNode('tmr'), (st) => st.text === 'sonoff-timer.status.none');
  });

  it('enforces the device limits (8 timers, 1 loop timer) and refuses bad input before sending', async () => {
    await load({ deviceid: '1000dd0004' });
    const dev = await sim('1000dd0004');
    const eight = Array.from({ length: 8 }, (_, i) => ({ type: 'repeat', at: `0${i}:00`, do: 'on' }));
    await ask({ action: 'add', timers: eight });
    assert.equal(dev.state.timers.length, 8);
    let sent = 0;
    dev.on('command', () => sent++);
    await refused({ action: 'add', timer: { type: 'repeat', at: '09:00', do: 'on' } }, /too many timers: a device holds at most 8/);
    await ask({ action: 'clear' });
    await ask({ action: 'add', timer: { type: 'duration', every: 30, do: 'on' } });
    sent = 0;
    await refused({ action: 'add', timer: { type: 'duration', every: 10, do: 'off' } }, /at most 1 duration timer/);
    await refused({ action: 'dance' }, /unknown action "dance"/);
    await refused('dance', /unknown action "dance"/);
    await refused({ action: 'add', timer: { type: 'once', at: 'soon', do: 'on' } }, /must be an ISO time/);
    await refused({ action: 'add', timer: { type: 'once', at: '2020-01-01T08:00', do: 'on' } }, /is in the past/);
    await refused({ action: 'add', timer: { type: 'repeat', at: '7h', do: 'on' } }, /"HH:MM"/);
    await refused({ action: 'add', timer: { type: 'once', at: localIn('Europe/Berlin', 60), do: { switch: 'on', outlet: 1 } } }, /one-channel device/);
    await refused({ action: 'add' }, /needs "timer"/);
    await refused({ action: 'remove', id: '00000000-0000-4000-8000-000000000000' }, /no timer has the id/, 404);
    await refused({ action: 'remove' }, /say which timer/);
    await refused(42, /payload must be an object/);
    assert.equal(sent, 0, 'nothing was sent for refused input');
    assert.equal(dev.state.timers.length, 1);
    await waitStatus(helper.getNode('tmr'), (st) => st.fill === 'red' && /payload must be an object/.test(st.text));
  });

  it('takes the device from msg.deviceid, handles multi-channel outlets, and fails with 503 for an offline device', async () => {
    await load({ deviceid: '', timezone: 'Pacific/Auckland' });
    const dev = await sim('1000dd0005', '4ch');
    const clock = new FakeClock(Date.now());
    attachTimerRunner(dev, { clock });
    const at = localIn('Pacific/Auckland', 5);
    await ask({ action: 'add', timer: { type: 'once', at, do: { switch: 'on', outlet: 2 } } }, { deviceid: '1000dd0005' });
    assert.deepEqual(dev.state.timers[0].do, { switches: [{ switch: 'on', outlet: 2 }] });
    clock.advanceTo(Date.parse(dev.state.timers[0].at));
    assert.deepEqual(dev.state.switches.find((s) => s.outlet === 2), { switch: 'on', outlet: 2 });
    await refused({ action: 'add', timer: { type: 'once', at, do: 'on' } }, /switches one outlet/, 400, { deviceid: '1000dd0005' });
    await assert.rejects(ask({ action: 'list' }), /sonoff-timer.errors.no-deviceid/);
    await assert.rejects(ask({ action: 'add', timer: { type: 'delay', minutes: 5, do: 'on' } }, { deviceid: '1000dd0fff' }), (err) => err.code === 503);
  });

  it('survives a restart: same timers, same mIds; the device\'s own query is answered from them', async () => {
    await load({ deviceid: '1000dd0006', timezone: 'Europe/Berlin' });
    const dev = await sim('1000dd0006');
    const first = await ask({ action: 'add', timers: [{ type: 'repeat', at: '06:45', days: 'weekdays', do: 'on' }, { type: 'once', at: localIn('Europe/Berlin', 90), do: 'off' }] });
    const file = path.join(userDir, 'coolkit', 'timers-srv-1000dd0006.json');
    assert.ok(fs.existsSync(file), 'the user\'s timers are saved');
    const wire = dev.state.timers;
    await dev.stop();
    sims.length = 0;

    // Node-RED restarts: flows stopped and started again with the same user directory.
    await helper.unload();
    await load({ deviceid: '1000dd0006', timezone: 'Europe/Berlin' });
    const again = await ask('list');
    assert.deepEqual(again.payload.map((x) => [x.id, x.type, x.at]), first.payload.map((x) => [x.id, x.type, x.at]));

    // A factory-fresh device with that id asks for its timers after register (seed 001) and gets them.
    const fresh = new SimulatedDevice({ server: `https://127.0.0.1:${srv.cloud.port}`, deviceid: '1000dd0006', reconnect: false, drift: false });
    sims.push(fresh);
    const runner = attachTimerRunner(fresh, { clock: new FakeClock(Date.now()) });
    const reply = new Promise((resolve) => fresh.on('message', (m) => { if (typeof m === 'object' && !m.action && m.params && m.params.timers) resolve(m); }));
    await fresh.start();
    const answer = await reply;
    assert.deepEqual(answer.params, { timers: wire });
    assert.deepEqual(runner.timers, wire);
  });

  it('pushes the array again when the device holds a stale one (after a restart, or on reconnect)', async () => {
    const port = await freePort();
    await load({ deviceid: '1000dd0007', timezone: 'America/New_York', port });
    const dev = await sim('1000dd0007', 'basic', { reconnect: { minMs: 50, maxMs: 100 } });
    await ask({ action: 'add', timer: { type: 'repeat', at: '21:00', days: ['sun'], do: 'on' } });
    const good = dev.state.timers;

    // Stop Node-RED; meanwhile the server's record holds an array from before a clock change.
    await helper.unload();
    const devicesFile = path.join(userDir, 'coolkit', 'devices-srv.json');
    const saved = JSON.parse(fs.readFileSync(devicesFile, 'utf8'));
    const entry = saved.devices.find((d) => d.deviceid === '1000dd0007');
    entry.params.timers = [{ ...good[0], at: '0 3 * * 1' }];
    fs.writeFileSync(devicesFile, JSON.stringify(saved));

    await load({ deviceid: '1000dd0007', timezone: 'America/New_York', port });
    // The device reconnects to the new server; the node sees the stale array and pushes the right one.
    await waitFor(() => srv.cloud.device('1000dd0007')?.online, 10000);
    await waitFor(() => JSON.stringify(srv.cloud.device('1000dd0007').params.timers) === JSON.stringify(good), 5000);
    assert.deepEqual(dev.state.timers, good);
  });

  it('starts from the timers a device already holds when it was never managed here', async () => {
    await load({ deviceid: '1000dd0008', timezone: 'Europe/Berlin' });
    await sim('1000dd0008');
    // Someone else (the eWeLink app through the app side) put a timer on the device.
    const mId = 'c5601da9-aa5f-4946-a1fd-2a2a35daf59a';
    await srv.cloud.sendCommand('1000dd0008', { timers: [{ mId, type: 'repeat', at: '0 5 * * 1,3', coolkit_timer_type: 'repeat', enabled: 1, do: { switch: 'on' } }] });
    await helper.unload();
    await load({ deviceid: '1000dd0008', timezone: 'Europe/Berlin' });
    const listed = await ask('list');
    assert.equal(listed.payload.length, 1);
    assert.equal(listed.payload[0].id, mId);
    assert.equal(listed.payload[0].type, 'repeat');
    assert.deepEqual(listed.payload[0].days, ['mon', 'wed']);
    // 05:00 UTC is 06:00 or 07:00 in Berlin, depending on the season.
    assert.ok(['06:00', '07:00'].includes(listed.payload[0].at), listed.payload[0].at);
    assert.ok(!fs.existsSync(path.join(userDir, 'coolkit', 'timers-srv-1000dd0008.json')), 'nothing is written until the first change');
  });

  it('refuses to start with a time zone Intl does not know, and says so', async () => {
    await load({ deviceid: '1000dd0009', timezone: 'Mars/Olympus' });
    await waitStatus(helper.getNode('tmr'), (st) => st.fill === 'red' && st.text === 'sonoff-timer.errors.timezone');
    await assert.rejects(ask('list'), (err) => err.code === 400 && /sonoff-timer.errors.timezone/.test(err.message));
  });

  it('the example flow loads; its inject buttons reach the node (list answers, a change for an unknown device fails with 503)', async () => {
    const example = JSON.parse(fs.readFileSync(path.resolve(__dirname, '../../examples/05 - Device timers.json'), 'utf8'));
    const flowNodes = [{ id: 'f1', type: 'tab' }, ...example.map((n) => {
      if (n.type === 'coolkit-server') return { ...n, bind: '127.0.0.1', port: 0, advertiseHost: '127.0.0.1' };
      const placed = typeof n.x === 'number' ? { ...n, z: 'f1' } : n;
      return placed.type === 'debug' ? { id: placed.id, type: 'helper', z: 'f1', x: placed.x, y: placed.y } : placed;
    })];
    await helper.load([...nodes, ...coreNodes()], flowNodes);
    const server = helper.getNode('c0011e0b00000002');
    await waitFor(() => server.cloud.state === 'listening');
    const listed = new Promise((resolve) => helper.getNode('c0011e0b0000050f').on('input', resolve));
    const failed = new Promise((resolve) => helper.getNode('c0011e0b00000511').on('input', resolve));
    helper.getNode('c0011e0b0000050b').receive({});
    assert.deepEqual((await listed).payload, []);
    helper.getNode('c0011e0b00000504').receive({});
    const err = await failed;
    assert.equal(err.error.code, 503);
  });
});

