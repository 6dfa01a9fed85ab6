'use strict';
// Several real Node-RED processes (the packed package) sharing one real Mosquitto broker: devices
// spread by dispatch, commands across instances, an instance killed and its devices moving, a
// broker restart with resync, and Home Assistant discovery payloads. Needs `node scripts/build.js`.
// Timing: everything waits for conditions with generous limits (shared 2-core machines).
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const mqtt = require('mqtt');
const { installPackage, NodeRedProcess, freePort } = require('../helpers/nrprocess');
const { tmpDir } = require('../helpers/cloud');
const { request, sleep } = require('../helpers/raw');
const { Mosquitto, requireMosquitto } = require('../helpers/mosquitto');
const { validateDiscovery } = require('../helpers/ha-schema');
const { SimulatedDevice } = require('../../dist/src/sim');

const LONG = 60_000;

async function waitFor(check, ms = LONG, what = 'condition') {
  const until = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`${what} not met within ${ms} ms (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await sleep(200);
  }
}

function flows({ name, port, url, discovery }) {
  const z = 'tab';
  return [
    { id: z, type: 'tab', label: 'cluster' },
    { id: 'srv', type: 'coolkit-server', bind: '127.0.0.1', port, advertiseHost: '127.0.0.1', tls: 'off', legacyTls: false, hbInterval: 145, commandTimeout: 5, uiActiveInterval: 50, admission: 'open', appApikey: '', mqttUrl: url, mqttPrefix: 'coolkit', mqttInstance: name, mqttDiscovery: discovery, mqttDiscoveryPrefix: 'homeassistant' },
    { id: 'n-in', type: 'sonoff-device-in', z, server: 'srv', deviceid: '', events: 'all', liveMetering: false, wires: [['n-rec']] },
    { id: 'n-rec', type: 'function', z, func: "const e = global.get('events') || []; e.push({ topic: msg.topic, event: msg.event, payload: msg.payload }); global.set('events', e.slice(-500)); return null;", outputs: 1, wires: [[]] },
    { id: 'n-cmd', type: 'http in', z, url: '/cmd', method: 'post', wires: [['n-ack', 'n-prep']] },
    { id: 'n-ack', type: 'http response', z, statusCode: '202', wires: [] },
    { id: 'n-prep', type: 'function', z, func: 'return { deviceid: msg.payload.deviceid, payload: msg.payload.payload, reqid: msg.payload.reqid };', outputs: 1, wires: [['n-out']] },
    { id: 'n-out', type: 'sonoff-device-out', z, server: 'srv', deviceid: '', offline: 'fail', wires: [] },
    { id: 'n-done', type: 'complete', z, scope: ['n-out'], uncaught: false, wires: [['n-okrec']] },
    { id: 'n-okrec', type: 'function', z, func: "const r = global.get('results') || {}; r[msg.reqid] = { ok: true }; global.set('results', r); return null;", outputs: 1, wires: [[]] },
    { id: 'n-catch', type: 'catch', z, scope: ['n-out'], uncaught: false, wires: [['n-errrec']] },
    { id: 'n-errrec', type: 'function', z, func: "const r = global.get('results') || {}; r[msg.reqid] = { ok: false, code: msg.error && msg.error.code, message: msg.error && msg.error.message }; global.set('results', r); return null;", outputs: 1, wires: [[]] },
    { id: 'n-get', type: 'http in', z, url: '/seen', method: 'get', wires: [['n-getfn']] },
    { id: 'n-getfn', type: 'function', z, func: "msg.payload = { events: global.get('events') || [], results: global.get('results') || {} }; return msg;", outputs: 1, wires: [['n-getres']] },
    { id: 'n-getres', type: 'http response', z, wires: [] },
  ];
}

describe('MQTT backbone: several Node-RED instances on one broker', function () {
  this.timeout(10 * 60_000);
  let template;
  let broker;
  let instances = [];
  let devices = [];
  let clients = [];
  let seq = 0;

  before(async function () {
    requireMosquitto(this);
    template = installPackage().userDir;
  });

  beforeEach(async function () {
    broker = new Mosquitto(requireMosquitto(this));
    await broker.start();
  });

  afterEach(async () => {
    await Promise.all(devices.map((d) => d.stop().catch(() => {})));
    for (const c of clients) c.end(true);
    await Promise.all(instances.map((i) => i.stop('SIGKILL').catch(() => {})));
    await broker?.stop();
    if (process.env.COOLKIT_KEEP_LOGS !== '1') instances.forEach((i) => fs.rmSync(i.userDir, { recursive: true, force: true }));
    instances = [];
    devices = [];
    clients = [];
  });

  async function startInstance(name, { discovery = false } = {}) {
    const userDir = tmpDir(`coolkit-cluster-${name}-`);
    fs.cpSync(template, userDir, { recursive: true });
    const nr = new NodeRedProcess(userDir);
    await nr.start();
    nr.name = name;
    nr.coolkitPort = await freePort();
    await nr.deploy(flows({ name, port: nr.coolkitPort, url: broker.url, discovery }));
    instances.push(nr);
    return nr;
  }

  const mqttStatus = async (nr) => (await nr.api('/coolkit/srv/mqtt')).json;
  const deviceList = async (nr) => (await nr.api('/coolkit/srv/devices')).json;

  async function waitCluster(list) {
    for (const nr of list) {
      await waitFor(async () => {
        const s = await mqttStatus(nr);
        const live = s && s.state === 'connected' ? s.instances.filter((i) => i.live).map((i) => i.id).sort() : [];
        return live.join() === list.map((i) => i.name).sort().join();
      }, LONG, `${nr.name} sees ${list.length} live instances`);
    }
  }

  function startDevices(via, count, profiles = ['basic']) {
    const started = [];
    for (let i = 0; i < count; i++) {
      const deviceid = `1000cc${String(devices.length + 1).padStart(4, '0')}`;
      const d = new SimulatedDevice({ server: `http://127.0.0.1:${via.coolkitPort}`, deviceid, profile: profiles[i % profiles.length], reconnect: { minMs: 300, maxMs: 2000 }, queryTimers: false, drift: false });
      d.on('error', () => {});
      devices.push(d);
      started.push(d);
    }
    return Promise.all(started.map((d) => d.start())).then(() => started);
  }

  /** deviceid -> instance, as `nr` sees it. */
  async function holders(nr) {
    const list = await deviceList(nr);
    return Object.fromEntries(list.filter((d) => d.online).map((d) => [d.deviceid, d.instance]));
  }

  async function command(nr, deviceid, payload) {
    const reqid = `r${++seq}`;
    const res = await request(nr.base, '/cmd', { body: { deviceid, payload, reqid } });
    assert.equal(res.status, 202);
    return waitFor(async () => (await request(nr.base, '/seen', { method: 'GET' })).json.results[reqid], LONG, `result of ${reqid}`);
  }

  function subscriber(topics) {
    const client = mqtt.connect(broker.url, { reconnectPeriod: 500 });
    clients.push(client);
    const retained = new Map();
    const messages = [];
    client.on('message', (topic, payload, packet) => {
      const text = payload.toString();
      messages.push({ topic, text, retain: packet.retain });
      if (text) retained.set(topic, text); else retained.delete(topic);
    });
    client.on('connect', () => client.subscribe(topics));
    return { client, retained, messages, json: (t) => (retained.has(t) ? JSON.parse(retained.get(t)) : undefined) };
  }

  it('two instances: devices spread by dispatch, flows and MQTT command devices on the other instance', async () => {
    const a = await startInstance('node-a', { discovery: true });
    const b = await startInstance('node-b', { discovery: true });
    await waitCluster([a, b]);
    const sims = await startDevices(a, 6, ['basic', '4ch', 'th16']);
    const seenByA = await waitFor(async () => {
      const h = await holders(a);
      return sims.every((d) => h[d.deviceid]) && h;
    }, LONG, 'A sees all devices online');
    const counts = Object.values(seenByA).reduce((acc, i) => ({ ...acc, [i]: (acc[i] || 0) + 1 }), {});
    assert.deepEqual(Object.keys(counts).sort(), ['node-a', 'node-b'], JSON.stringify(seenByA));
    assert.ok(counts['node-a'] >= 2 && counts['node-b'] >= 2, `spread: ${JSON.stringify(counts)}`);
    assert.deepEqual(await holders(b), seenByA, 'both instances agree on who holds what');

    // A flow on A switches a device held by B, and the reverse.
    const onB = sims.find((d) => seenByA[d.deviceid] === 'node-b' && d.profile?.kind !== 'multi' && d.state.switch !== undefined) ?? sims.find((d) => seenByA[d.deviceid] === 'node-b');
    const onA = sims.find((d) => seenByA[d.deviceid] === 'node-a');
    const payloadFor = (d) => (Array.isArray(d.state.switches) ? { outlet: 0, switch: 'on' } : 'on');
    assert.deepEqual(await command(a, onB.deviceid, payloadFor(onB)), { ok: true });
    await waitFor(() => (onB.state.switch ?? onB.state.switches[0].switch) === 'on', LONG, 'device on B switched by A');
    assert.deepEqual(await command(b, onA.deviceid, payloadFor(onA)), { ok: true });
    await waitFor(() => (onA.state.switch ?? onA.state.switches[0].switch) === 'on', LONG, 'device on A switched by B');

    // A's sonoff-device-in saw the report of the device held by B, through the same events.
    await waitFor(async () => (await request(a.base, '/seen', { method: 'GET' })).json.events.some((e) => e.topic === onB.deviceid && e.event === 'update'), LONG, 'A saw the update of a device on B');

    // Errors surface exactly like local ones: unknown device -> 503, bad payload -> 400.
    const unknown = await command(a, '1000ccffff', 'on');
    assert.equal(unknown.ok, false);
    assert.equal(unknown.code, 503);

    // Any MQTT client commands any device; results carry the request id.
    const sub = subscriber(['coolkit/#', 'homeassistant/#', 'test/#']);
    await waitFor(() => sub.json(`coolkit/${onB.deviceid}/state`), LONG, 'retained state');
    const target = sims.find((d) => d.state.switch !== undefined && seenByA[d.deviceid] === 'node-b') ?? onB;
    const isMulti = Array.isArray(target.state.switches);
    sub.client.publish(`coolkit/${target.deviceid}/set`, JSON.stringify({ id: 'ext-1', replyTo: 'test/reply', payload: isMulti ? { outlet: 1, switch: 'on' } : 'off' }));
    const reply = await waitFor(() => sub.messages.find((m) => m.topic === 'test/reply' && JSON.parse(m.text).id === 'ext-1'), LONG, 'external command result');
    assert.deepEqual({ ...JSON.parse(reply.text), ts: 0, ms: 0 }, { id: 'ext-1', deviceid: target.deviceid, ok: true, error: 0, ms: 0, instance: 'node-b', ts: 0 });
    sub.client.publish(`coolkit/${target.deviceid}/set`, '{"switch":');
    const bad = await waitFor(() => sub.messages.find((m) => m.topic === `coolkit/${target.deviceid}/result`), LONG, 'error result for malformed JSON');
    assert.equal(JSON.parse(bad.text).error, 400);
    assert.match(JSON.parse(bad.text).reason, /malformed JSON/);

    // Retained tree: state, online and capabilities of every device; presence of both instances.
    for (const d of sims) {
      assert.equal(sub.json(`coolkit/${d.deviceid}/online`).online, true);
      assert.equal(sub.json(`coolkit/${d.deviceid}/online`).instance, seenByA[d.deviceid]);
      assert.ok(sub.json(`coolkit/${d.deviceid}/capabilities`).capabilities.family);
    }
    assert.equal(sub.json('coolkit/_instances/node-a').online, true);

    // Home Assistant discovery: switches, sensors and a climate entity, all valid.
    await waitFor(() => [...sub.retained.keys()].some((t) => t.startsWith('homeassistant/climate/')), LONG, 'climate discovery');
    const discovery = [...sub.retained.entries()].filter(([t]) => t.startsWith('homeassistant/'));
    const components = new Set(discovery.map(([t]) => t.split('/')[1]));
    assert.deepEqual([...components].sort(), ['climate', 'sensor', 'switch']);
    for (const [t, text] of discovery) assert.deepEqual(validateDiscovery(t, JSON.parse(text)), [], t);
  });

  it('three instances: an instance killed, its devices move to the others with their state', async () => {
    const a = await startInstance('node-a');
    const b = await startInstance('node-b');
    const c = await startInstance('node-c');
    await waitCluster([a, b, c]);
    const sims = await startDevices(a, 9);
    const before = await waitFor(async () => {
      const h = await holders(a);
      return sims.every((d) => h[d.deviceid]) && h;
    }, LONG, 'all 9 online');
    assert.deepEqual(new Set(Object.values(before)), new Set(['node-a', 'node-b', 'node-c']), JSON.stringify(before));
    const onC = sims.filter((d) => before[d.deviceid] === 'node-c');
    // Switch one of C's devices on from A, so its state must survive the move.
    assert.deepEqual(await command(a, onC[0].deviceid, 'on'), { ok: true });
    const sub = subscriber(['coolkit/#']);
    await waitFor(() => sub.json(`coolkit/${onC[0].deviceid}/state`)?.params.switch === 'on', LONG, 'retained on');

    await c.stop('SIGKILL');
    instances = instances.filter((i) => i !== c);
    const after = await waitFor(async () => {
      const h = await holders(a);
      return sims.every((d) => h[d.deviceid] && h[d.deviceid] !== 'node-c') && h;
    }, 2 * LONG, 'C\'s devices moved');
    for (const d of sims.filter((x) => before[x.deviceid] !== 'node-c')) assert.equal(after[d.deviceid], before[d.deviceid], 'the others stay where they were');
    await waitCluster([a, b]);
    const moved = onC[0].deviceid;
    await waitFor(() => sub.json(`coolkit/${moved}/online`)?.online === true && sub.json(`coolkit/${moved}/online`).instance !== 'node-c', LONG, 'moved device online elsewhere');
    assert.equal(sub.json(`coolkit/${moved}/state`).params.switch, 'on', 'state kept');
    assert.equal(sub.json('coolkit/_instances/node-c').online, false, 'C marked offline by its will');
    // And it can still be commanded from both survivors.
    assert.deepEqual(await command(a, moved, 'off'), { ok: true });
    assert.deepEqual(await command(b, moved, 'on'), { ok: true });
    await waitFor(() => onC[0].state.switch === 'on', LONG, 'moved device switched');
  });

  it('broker restart: instances keep serving their devices, report it, and resync', async () => {
    const a = await startInstance('node-a');
    const b = await startInstance('node-b');
    await waitCluster([a, b]);
    const sims = await startDevices(a, 4);
    const held = await waitFor(async () => {
      const h = await holders(a);
      return sims.every((d) => h[d.deviceid]) && h;
    }, LONG, 'all online');
    const localToA = sims.find((d) => held[d.deviceid] === 'node-a');
    const remoteToA = sims.find((d) => held[d.deviceid] === 'node-b');

    await broker.stop();
    await waitFor(async () => (await mqttStatus(a)).state === 'disconnected' && (await mqttStatus(b)).state === 'disconnected', LONG, 'both see the broker down');
    // Local devices still work; a device on the other instance fails with 503 at once.
    assert.deepEqual(await command(a, localToA.deviceid, 'on'), { ok: true });
    const unreachable = await command(a, remoteToA.deviceid, 'on');
    assert.equal(unreachable.code, 503);
    localToA.setLocal({ switch: 'off' });

    await broker.start();
    await waitCluster([a, b]);
    const sub = subscriber(['coolkit/#']);
    await waitFor(() => sims.every((d) => sub.json(`coolkit/${d.deviceid}/online`)?.online === true && sub.json(`coolkit/${d.deviceid}/state`)), LONG, 'retained tree rebuilt');
    assert.equal(sub.json(`coolkit/${localToA.deviceid}/state`).params.switch, 'off', 'state changed while the broker was down is published');
    assert.deepEqual(await command(a, remoteToA.deviceid, 'on'), { ok: true });
    await waitFor(() => remoteToA.state.switch === 'on', LONG, 'cross-instance command after the restart');
  });
});
