'use strict';
// "Ours": CoolkitCloud measured THROUGH Node-RED. This child embeds the Node-RED runtime
// (RED.init + RED.start, no editor, no HTTP admin) in its own process, so the probe
// (process.cpuUsage, monitorEventLoopDelay, memory after GC) measures the whole server: the
// cloud, the `coolkit-server` config node, a `sonoff-device-in` node for all devices and a
// counting sink node, wired as a user would:
//
//   coolkit-server (127.0.0.1:PORT, tls off|auto)  <-  sonoff-device-in (all devices, all events)  ->  coolkit-bench-sink
//
// With --hub, the flow also has a hub API node on 127.0.0.1:HUBPORT/ws (it subscribes to the
// cloud's device events itself, next to the flow): `telemetry-alert` (JWT secret, no alert rules)
// or `zhiting-bridge` (token). Its gateway and fan-out counters are in the snapshots, and
// `hubSample` reads memory and every hub client's send buffer without a GC (G3/G11).
//
// Arguments: --package DIR (a snapshot of the built package: package.json + dist/ + node_modules link)
//            --port N  [--tls CERT,KEY]  [--runtime node-red|node-red-5]  [--sinks K]
//            [--hub telemetry|zhiting --hub-port N --hub-secret S]  [--events all|update|status]
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { performance, createHistogram } = require('node:perf_hooks');
const { serve } = require('./lib/ipc');
const { Probe, sleep } = require('./lib/probe');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}

const pkgDir = path.resolve(arg('package', path.resolve(__dirname, '../..')));
const port = Number(arg('port', '0'));
const tls = arg('tls', '');
const runtimeName = arg('runtime', 'node-red');
const sinks = Math.max(1, Number(arg('sinks', '1')));
const hub = arg('hub', '');
const hubPort = Number(arg('hub-port', '0'));
const hubSecret = arg('hub-secret', '');
// Diagnostic: what the sonoff-device-in node emits ('status' = no flow message per update).
const events = arg('events', 'all');
if (!['all', 'update', 'status'].includes(events)) throw new Error(`unknown events ${events}`);
if (hub && !['telemetry', 'zhiting'].includes(hub)) throw new Error(`unknown hub ${hub}`);

// The sink node: counts what reaches it and how long after the device's intended send time.
const SINK_JS = `'use strict';
const { performance, createHistogram } = require('node:perf_hooks');
module.exports = function (RED) {
  function CoolkitBenchSink(config) {
    RED.nodes.createNode(this, config);
    const bench = globalThis.__coolkitBench;
    const server = RED.nodes.getNode(config.server);
    if (server && server.cloud) bench.cloud = server.cloud;
    this.on('input', function (msg, send, done) {
      bench.msgs++;
      if (msg.event === 'update') {
        bench.updates++;
        const t = msg.payload && msg.payload.benchTs;
        if (typeof t === 'number') {
          const us = Math.round((performance.timeOrigin + performance.now() - t) * 1000);
          bench.delivery.record(us > 0 ? us : 1);
        }
      } else bench.status++;
      done();
    });
  }
  RED.nodes.registerType('coolkit-bench-sink', CoolkitBenchSink);
};
`;

globalThis.__coolkitBench = { msgs: 0, updates: 0, status: 0, delivery: createHistogram(), cloud: undefined };
const bench = globalThis.__coolkitBench;

function makeUserDir() {
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coolkit-bench-nr-'));
  const mods = path.join(userDir, 'node_modules');
  fs.mkdirSync(mods);
  fs.symlinkSync(pkgDir, path.join(mods, 'node-red-contrib-coolkit'), 'dir');
  const sinkDir = path.join(mods, 'coolkit-bench-sink');
  fs.mkdirSync(sinkDir);
  fs.writeFileSync(path.join(sinkDir, 'package.json'), JSON.stringify({ name: 'coolkit-bench-sink', version: '1.0.0', 'node-red': { nodes: { 'coolkit-bench-sink': 'sink.js' } } }));
  fs.writeFileSync(path.join(sinkDir, 'sink.js'), SINK_JS);
  fs.writeFileSync(path.join(sinkDir, 'sink.html'), '<script type="text/javascript">RED.nodes.registerType("coolkit-bench-sink",{category:"function",defaults:{server:{value:""}},inputs:1,outputs:0});</script>\n');
  fs.writeFileSync(path.join(userDir, 'package.json'), JSON.stringify({ name: 'coolkit-bench', private: true }));
  if (tls) {
    // Pre-seed the "auto" certificate so the cloud serves the same RSA-2048 cert as the TLS baseline.
    const [certFile, keyFile] = tls.split(',');
    const tlsDir = path.join(userDir, 'coolkit', 'tls');
    fs.mkdirSync(tlsDir, { recursive: true });
    fs.copyFileSync(certFile, path.join(tlsDir, 'cert.pem'));
    fs.copyFileSync(keyFile, path.join(tlsDir, 'key.pem'));
  }
  const sinkIds = Array.from({ length: sinks }, (_, i) => `sink${i}`);
  const flows = [
    { id: 'benchtab', type: 'tab', label: 'bench' },
    { id: 'benchsrv', type: 'coolkit-server', name: 'bench', bind: '127.0.0.1', port, advertiseHost: '127.0.0.1', tls: tls ? 'auto' : 'off', certFile: '', keyFile: '', legacyTls: true, hbInterval: 145, commandTimeout: 10, admission: 'open' },
    { id: 'benchin', type: 'sonoff-device-in', z: 'benchtab', name: '', server: 'benchsrv', deviceid: '', events, x: 100, y: 100, wires: [sinkIds] },
    ...sinkIds.map((id, i) => ({ id, type: 'coolkit-bench-sink', z: 'benchtab', server: 'benchsrv', x: 300, y: 100 + 40 * i, wires: [] })),
  ];
  if (hub === 'telemetry') {
    flows.push({ id: 'benchhub', type: 'telemetry-alert', z: 'benchtab', name: '', server: 'benchsrv', listen: 'port', bind: '127.0.0.1', port: hubPort, path: '/ws', origins: '', rules: [], x: 100, y: 300, wires: [[]] });
  } else if (hub === 'zhiting') {
    flows.push({ id: 'benchhub', type: 'zhiting-bridge', z: 'benchtab', name: '', server: 'benchsrv', listen: 'port', bind: '127.0.0.1', port: hubPort, path: '/ws', allowQueryToken: false, origins: '', maxPayload: 65536, rateLimit: 100, answerTimeout: 2, x: 100, y: 300, wires: [[]] });
  }
  fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(flows));
  // Credentials in clear text (credentialSecret: false below when a hub is configured).
  if (hub) fs.writeFileSync(path.join(userDir, 'flows_cred.json'), JSON.stringify({ benchhub: hub === 'telemetry' ? { jwtSecret: hubSecret } : { token: hubSecret } }));
  return userDir;
}

const userDir = makeUserDir();
const RED = require(runtimeName);
const settings = {
  userDir,
  flowFile: 'flows.json',
  credentialSecret: hub ? false : 'coolkit-bench',
  httpAdminRoot: false,
  httpNodeRoot: false,
  uiHost: '127.0.0.1',
  logging: { console: { level: 'warn', metrics: false, audit: false } },
  diagnostics: { enabled: false },
  telemetry: { enabled: false },
  externalModules: { palette: { allowInstall: false } },
  editorTheme: { projects: { enabled: false } },
};

/** The hub node's gateway and fan-out (undefined without --hub or before the flow started). */
function hubParts() {
  if (!hub) return undefined;
  const node = RED.nodes.getNode('benchhub');
  if (!node) return undefined;
  if (hub === 'telemetry') return node.telemetry ? { gateway: node.telemetry.gateway, fanout: node.telemetry.service.fanout, port: node.telemetry.port } : undefined;
  return node.zhiting ? { gateway: node.zhiting.gateway, fanout: undefined, port: node.zhiting.port } : undefined;
}

/** Cumulative hub counters: gateway broadcasts/drops/cuts, telemetry serialisations and deliveries. */
function hubCounters() {
  const h = hubParts();
  if (!h || !h.gateway) return undefined;
  const g = h.gateway.stats;
  let dropped = g.droppedEvents;
  for (const c of h.gateway.connections) dropped += c.droppedEvents;
  return {
    open: h.gateway.size,
    updates: bench.updates, // device updates that reached the Node-RED sink (the hub gets the same events)
    broadcasts: g.broadcasts,
    slowReaders: g.slowReaders,
    deadPeers: g.deadPeers,
    droppedEvents: dropped,
    serialised: h.fanout ? h.fanout.stats.serialised : g.broadcasts, // zhiting: one JSON.stringify per broadcast
    delivered: h.fanout ? h.fanout.stats.delivered : undefined,
  };
}
let hubAtReset;

const probe = new Probe(() => {
  const cloud = bench.cloud;
  const out = {
    online: cloud ? cloud.onlineCount : 0,
    state: cloud ? cloud.state : 'none',
    sinkMsgs: bench.msgs,
    sinkUpdates: bench.updates,
    sinkStatus: bench.status,
  };
  const h = hubCounters();
  if (h) {
    out.hub = h;
    // In the window since the last reset.
    if (hubAtReset) out.hubWindow = Object.fromEntries(Object.entries(h).map(([k, v]) => [k, typeof v === 'number' && k !== 'open' ? v - (hubAtReset[k] ?? 0) : v]));
  }
  return out;
});

let started;
async function start() {
  RED.init(settings);
  await RED.start();
  const until = Date.now() + 60_000;
  while (!bench.cloud || bench.cloud.state !== 'listening') {
    if (bench.cloud && bench.cloud.state === 'error') throw new Error(`coolkit-server failed: ${bench.cloud.lastError && bench.cloud.lastError.message}`);
    if (Date.now() > until) throw new Error('coolkit-server did not start listening within 60 s');
    await sleep(50);
  }
  while (hub && !(hubParts()?.port > 0)) {
    if (Date.now() > until) throw new Error(`the ${hub} hub node did not start listening within 60 s`);
    await sleep(50);
  }
}

function deliverySummary() {
  const h = bench.delivery;
  const ms = (ns) => Math.round(ns / 10) / 100; // histogram holds µs
  if (h.count === 0) return { count: 0 };
  return { count: h.count, p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max) };
}

serve({
  async info() {
    started ??= start();
    await started;
    return {
      port: bench.cloud.port,
      mode: 'nodered',
      tls: Boolean(tls),
      pid: process.pid,
      node: process.version,
      execArgv: process.execArgv,
      nodeRed: RED.version,
      userDir,
      base: `${tls ? 'https' : 'http'}://127.0.0.1:${bench.cloud.port}`,
      hub: hub ? { api: hub, port: hubParts().port, url: `ws://127.0.0.1:${hubParts().port}/ws` } : undefined,
    };
  },
  reset() {
    bench.delivery.reset();
    hubAtReset = hubCounters();
    return probe.reset();
  },
  /**
   * G11 set-up: fill the kernel socket buffers of hub client `id` (a client that stopped reading)
   * with filler text frames, written straight to its socket, until the kernel takes no more and
   * bytes start to wait in the process. On loopback the kernel holds ~4-6 MB per socket, which
   * would otherwise take ~25 s of updates to fill before the session layer's limits come into play.
   */
  async hubPrefill({ id, maxBytes = 64 * 1024 * 1024 }) {
    const h = hubParts();
    const conn = h && h.gateway ? [...h.gateway.connections].find((c) => c.id === id) : undefined;
    if (!conn) throw new Error(`no hub connection ${id}`);
    const chunk = Buffer.alloc(16 * 1024, 0x20);
    let sent = 0;
    for (let i = 0; i < 10; i++) {
      while (conn.isOpen && conn.ws.bufferedAmount === 0 && sent < maxBytes) {
        conn.ws.send(chunk, { binary: false });
        sent += chunk.length;
      }
      await sleep(100);
    }
    return { sent, buffered: conn.ws.bufferedAmount, open: conn.isOpen };
  },
  /** Memory (no GC: what the process holds right now) and every hub client's server-side send buffer. */
  hubSample() {
    const h = hubParts();
    const conns = h && h.gateway ? [...h.gateway.connections].map((c) => ({ id: c.id, buffered: c.bufferedAmount, dropped: c.droppedEvents })) : [];
    return { t: Date.now(), mem: process.memoryUsage(), conns, hub: hubCounters() };
  },
  snapshot() {
    return { ...probe.snapshot(), delivery: deliverySummary() };
  },
  memory: () => probe.memory(),
  profileStart: (args) => probe.profileStart(args),
  profileStop: (args) => probe.profileStop(args),
  async stop() {
    try {
      await Promise.race([RED.stop(), sleep(5000)]);
    } catch { /* exiting anyway */ }
    fs.rmSync(userDir, { recursive: true, force: true });
    setTimeout(() => process.exit(0), 20);
    return {};
  },
});
process.on('exit', () => {
  try { fs.rmSync(userDir, { recursive: true, force: true }); } catch { /* best effort */ }
});
