#!/usr/bin/env node
'use strict';
// MQTT backbone benchmark: device updates/s and the latency the broker adds.
//
//   single: devices on cloud A, observed by A's own `update` events (the local path)
//   broker: devices on cloud B, observed on cloud A as mirrored `update` events (B -> Mosquitto -> A),
//           and by a plain MQTT subscriber on `coolkit/+/state`
//
// Both clouds, the devices and the observers run in this process against a private Mosquitto
// (Debian's, /usr/sbin/mosquitto) on 127.0.0.1, so the numbers are relative (same machine, same
// load generator). Needs `node scripts/build.js`. Standalone: `node test/bench/mqtt.js [--updates N]`.
const path = require('node:path');
const mqtt = require('mqtt');
const dist = path.resolve(__dirname, '../../dist/src');
const { CoolkitCloud } = require(path.join(dist, 'cloud/server'));
const { MqttBackbone } = require(path.join(dist, 'mqtt/backbone'));
const { SimulatedDevice } = require(path.join(dist, 'sim'));
const { silentLogger } = require(path.join(dist, 'cloud/log'));
const { Mosquitto, mosquittoBinary } = require('../helpers/mosquitto');
const { tmpDir } = require('../helpers/cloud');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function startCloud(name) {
  const cloud = new CoolkitCloud({ bind: '127.0.0.1', port: 0, advertiseHost: '127.0.0.1', tls: 'off', admission: 'open', stateDir: tmpDir(`coolkit-bench-mqtt-${name}-`), logger: silentLogger, ratePerSecond: 100000, rateBurst: 100000 });
  await cloud.start();
  return cloud;
}

async function connectDevices(cloud, count, tag) {
  const sims = [];
  for (let i = 0; i < count; i++) {
    const d = new SimulatedDevice({ server: `http://127.0.0.1:${cloud.port}`, deviceid: `1000${tag}${String(i).padStart(4, '0')}`, connectPort: cloud.port, connectHost: '127.0.0.1', reconnect: false, queryTimers: false, drift: false, pingIntervalMs: 0 });
    d.on('error', () => {});
    sims.push(d);
  }
  await Promise.all(sims.map((d) => d.start()));
  return sims;
}

/**
 * Send `updates` reports spread over the devices, at most `window` unobserved at once (closed
 * loop: the rate is what the path sustains), and time each from send to `observe(seq)`.
 */
async function drive(sims, updates, window, register) {
  const sentAt = new Map();
  const latencies = [];
  let next = 0;
  let resolveDone;
  const done = new Promise((r) => { resolveDone = r; });
  const sendMore = () => {
    while (next < updates && sentAt.size < window) {
      const seq = next++;
      sentAt.set(seq, process.hrtime.bigint());
      sims[seq % sims.length].report({ switch: seq % 2 ? 'on' : 'off', bseq: seq });
    }
  };
  register((seq) => {
    const t = sentAt.get(seq);
    if (t === undefined) return;
    sentAt.delete(seq);
    latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
    if (latencies.length === updates) resolveDone();
    else setImmediate(sendMore);
  });
  const started = process.hrtime.bigint();
  sendMore();
  const timeout = sleep(120_000).then(() => 'timeout');
  const outcome = await Promise.race([done, timeout]);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort((a, b) => a - b);
  return { updates: latencies.length, lost: updates - latencies.length, timedOut: outcome === 'timeout', updatesPerSec: Math.round(latencies.length / seconds), p50Ms: +percentile(latencies, 50).toFixed(2), p99Ms: +percentile(latencies, 99).toFixed(2) };
}

async function runMqttBench({ devices = 20, updates = 3000, window = 50 } = {}) {
  const bin = mosquittoBinary();
  if (!bin) throw new Error('mosquitto is not installed (apt-get install mosquitto)');
  const broker = new Mosquitto(bin);
  await broker.start();
  const cleanups = [() => broker.stop()];
  try {
    // Single instance: device -> A -> A's update event.
    const single = await startCloud('single');
    cleanups.push(() => single.close());
    const singleSims = await connectDevices(single, devices, 'ab');
    cleanups.push(() => Promise.all(singleSims.map((d) => d.stop())));
    const singleResult = await drive(singleSims, updates, window, (observe) => single.on('update', (ev) => {
      if (typeof ev.params.bseq === 'number') observe(ev.params.bseq);
    }));

    // Two instances on the broker: device -> B -> broker -> A (mirrored update event).
    const a = await startCloud('a');
    const b = await startCloud('b');
    cleanups.push(() => a.close(), () => b.close());
    const backbones = [new MqttBackbone(a, { url: broker.url, instanceId: 'bench-a', advertiseHost: '127.0.0.1', logger: silentLogger, heartbeatMs: 2000 }),
      new MqttBackbone(b, { url: broker.url, instanceId: 'bench-b', advertiseHost: '127.0.0.1', logger: silentLogger, heartbeatMs: 2000 })];
    backbones.forEach((bb) => bb.start());
    cleanups.push(() => Promise.all(backbones.map((bb) => bb.stop())));
    while (backbones.some((bb) => bb.state !== 'connected')) await sleep(50);
    const sims = await connectDevices(b, devices, 'bb');
    cleanups.push(() => Promise.all(sims.map((d) => d.stop())));
    // Wait until A mirrors every device of B.
    const until = Date.now() + 30_000;
    while (!sims.every((d) => a.isRemote(d.deviceid)) && Date.now() < until) await sleep(50);
    const viaNodes = await drive(sims, updates, window, (observe) => a.on('update', (ev) => {
      if (ev.instance && typeof ev.params.bseq === 'number') observe(ev.params.bseq);
    }));

    // A plain MQTT subscriber (what Home Assistant or another consumer sees).
    const sub = mqtt.connect(broker.url);
    cleanups.push(() => sub.endAsync());
    await new Promise((resolve) => sub.on('connect', resolve));
    await sub.subscribeAsync('coolkit/+/state');
    await sleep(500);
    const viaSubscriber = await drive(sims, updates, window, (observe) => sub.on('message', (_t, payload, packet) => {
      if (packet.retain) return;
      const seq = JSON.parse(payload.toString()).report?.bseq;
      if (typeof seq === 'number') observe(seq);
    }));

    return {
      devices,
      updates,
      window,
      single: singleResult,
      broker: viaNodes,
      subscriber: viaSubscriber,
      rateRatio: +(viaNodes.updatesPerSec / singleResult.updatesPerSec).toFixed(2),
      addedP50Ms: +(viaNodes.p50Ms - singleResult.p50Ms).toFixed(2),
      addedP99Ms: +(viaNodes.p99Ms - singleResult.p99Ms).toFixed(2),
    };
  } finally {
    for (const c of cleanups.reverse()) await Promise.resolve().then(c).catch(() => {});
  }
}

module.exports = { runMqttBench };

if (require.main === module) {
  const arg = (name, def) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? Number(process.argv[i + 1]) : def;
  };
  runMqttBench({ devices: arg('devices', 20), updates: arg('updates', 3000), window: arg('window', 50) }).then((r) => {
    const row = (name, x) => `${name.padEnd(34)} ${String(x.updatesPerSec).padStart(8)} ${String(x.p50Ms).padStart(9)} ${String(x.p99Ms).padStart(9)}${x.lost ? `  (${x.lost} lost)` : ''}`;
    console.log(`MQTT backbone: ${r.devices} devices, ${r.updates} updates, ${r.window} in flight`);
    console.log(`${'path'.padEnd(34)} ${'upd/s'.padStart(8)} ${'p50 ms'.padStart(9)} ${'p99 ms'.padStart(9)}`);
    console.log(row('single instance (local event)', r.single));
    console.log(row('B -> broker -> A (mirrored event)', r.broker));
    console.log(row('B -> broker -> MQTT subscriber', r.subscriber));
    console.log(`rate ratio broker/single ${r.rateRatio}, added latency p50 ${r.addedP50Ms} ms, p99 ${r.addedP99Ms} ms`);
    process.exit(0);
  }, (err) => {
    console.error(err);
    process.exit(1);
  });
}
