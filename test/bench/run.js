#!/usr/bin/env node
'use strict';
// The benchmark of issue 9 (method: shared/reference/performance.md §3-§4).
//
// One run = R rounds. Each round runs, in this order, one fresh server child per session, all
// driven by the same load generator child (same Node, same message shapes):
//
//   B-ack      raw ws parse-and-ack            knee search, half load, fixed rate
//   ours       CoolkitCloud inside Node-RED    idle memory (2 sizes), heartbeats, knee, half load, fixed rate, herd
//   B-idle     raw ws idle holder              idle memory (2 sizes), heartbeats, herd
//   B-tls      raw ws idle holder over TLS     herd (RSA-2048)
//   ours-tls   CoolkitCloud/Node-RED, TLS      herd (same certificate)
//   B-echo     raw ws echo                     fixed rate (reference only)
//   B-fanout   raw ws ack + fan-out to 50      fixed rate with 50 subscribers
//   ours-hub   ours + telemetry-alert node     same rate, 50 telemetry API subscribers (G3); then one more
//                                              subscriber that stops reading (G11)
//   ours-zhiting ours + zhiting-bridge node    same rate, 50 Zhiting API subscribers (G3z)
//
// Servers are pinned to core 1 and the generator to core 0 (taskset). Every ratio is taken
// within a round; the table shows the median over rounds and the min..max spread.
//
//   node test/bench/run.js [--size smoke|medium|full] [--rounds N] [--out DIR] [--no-pin]
//                          [--runtime node-red|node-red-5] [--profile] [--only a,b] [--quiet]
//                          [--devices N] [--fanout-rate R] [--slow-ms MS] [--slow-control]
//                          [--profile-heap] [--ours-node-args "..."] [--server-node-args "..."] [--ours-events status]
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const { createHmac, randomBytes } = require('node:crypto');
const { connect } = require('./lib/ipc');
const setup = require('./lib/setup');
const report = require('./lib/report');
const cpustat = require('./lib/cpustat');
const { summarise: summariseProfile } = require('./profile-summary');

const HERE = __dirname;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const epochNow = () => performance.timeOrigin + performance.now();

/** Sizes. Rates are updates/s over all devices; each device stays under ~15 updates/s (the cloud allows 20/s). */
const SIZES = {
  smoke: {
    devices: 50, memLow: 25, memHigh: 50, tlsDevices: 50, rounds: 1,
    warmupMs: 300, measureMs: 1000, settleMs: 300,
    kneeStart: 200, kneeFactor: 1.6, kneeMax: 700, kneeWarmupMs: 200, kneeMeasureMs: 800, kneeRefine: false,
    fixedRate: 300, fanoutRate: 100, subscribers: 50, slowMs: 1000, pingRate: 25, pingMs: 1000, concurrency: 500, quietMaxMs: 0, kneeRetries: 1,
    mqtt: { devices: 5, updates: 300, window: 20 },
  },
  medium: {
    devices: 3000, memLow: 1000, memHigh: 3000, tlsDevices: 1000, rounds: 3,
    warmupMs: 1000, measureMs: 3000, settleMs: 1500,
    kneeStart: 3000, kneeFactor: 1.4, kneeMax: 45000, kneeWarmupMs: 500, kneeMeasureMs: 2000, kneeRefine: true,
    fixedRate: 5000, fanoutRate: 1000, subscribers: 50, slowMs: 10000, pingRate: 103, pingMs: 4000, concurrency: 500, quietMaxMs: 5000, kneeRetries: 1,
    mqtt: { devices: 20, updates: 3000, window: 50 },
  },
  full: {
    devices: 15000, memLow: 5000, memHigh: 15000, tlsDevices: 15000, rounds: 5,
    warmupMs: 2000, measureMs: 5000, settleMs: 5000,
    kneeStart: 4000, kneeFactor: 1.25, kneeMax: 60000, kneeWarmupMs: 1000, kneeMeasureMs: 3000, kneeRefine: true,
    fixedRate: 10000, fanoutRate: 1000, subscribers: 50, slowMs: 10000, pingRate: 103, pingMs: 10000, concurrency: 500, quietMaxMs: 20_000, kneeRetries: 2,
    mqtt: { devices: 50, updates: 10000, window: 50 },
  },
};

/** When a generator measurement does not count (it, not the server, was the bottleneck). */
const GEN_LIMITS = { cpuPct: 0.9, eldP99Ms: 20, slipP99Ms: 20 };
/** Knee criterion (G2). */
const KNEE_P99_MS = 50;
/** Load from other processes on our cores above this share of a core marks a measurement as disturbed. */
const FOREIGN_LIMIT = 0.25;

/** An HS256 JWT for the telemetry API's subscribers. */
function hs256(secret, payload) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(payload)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

/**
 * Node options ours runs with by default: what the README recommends for a busy installation.
 * A 32 MiB semi-space (Node's default is 16 MiB) keeps the per-socket objects of ws and net
 * (they live until that device's next frame) from being promoted at every scavenge; see the
 * README's "Performance". The `ours-default` session measures ours without them.
 */
const OURS_NODE_ARGS = ['--max-semi-space-size=32'];

function parseArgs(argv) {
  const a = { size: 'medium', out: path.join(HERE, 'results'), pin: true, runtime: 'node-red', profile: false, only: null, quiet: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => argv[++i];
    if (k === '--size') a.size = v();
    else if (k === '--rounds') a.rounds = Number(v());
    else if (k === '--out') a.out = path.resolve(v());
    else if (k === '--no-pin') a.pin = false;
    else if (k === '--runtime') a.runtime = v();
    else if (k === '--profile') a.profile = true;
    else if (k === '--profile-heap') a.profile = a.profileHeap = true; // --profile plus a sampling allocation profile per window
    else if (k === '--only') a.only = v().split(',');
    else if (k === '--quiet') a.quiet = true;
    else if (k === '--devices') a.devices = Number(v());
    else if (k === '--fanout-rate') a.fanoutRate = Number(v());
    else if (k === '--slow-ms') a.slowMs = Number(v());
    else if (k === '--ours-node-args') a.oursNodeArgs = v().split(/\s+/).filter(Boolean); // instead of OURS_NODE_ARGS ('' = none)
    else if (k === '--ours-events') a.oursEvents = v(); // diagnostic: 'status' = ours without one flow message per update
    else if (k === '--server-node-args') a.serverNodeArgs = v().split(/\s+/).filter(Boolean); // every server, baselines too (e.g. "--trace-gc")
    else if (k === '--slow-control') a.slowControl = true; // diagnostic: the G11 phase with the extra client reading normally
    else if (k === '--help' || k === '-h') {
      const lines = fs.readFileSync(__filename, 'utf8').split('\n').slice(2);
      console.log(lines.slice(0, lines.findIndex((l) => !l.startsWith('//'))).join('\n'));
      process.exit(0);
    } else throw new Error(`unknown argument ${k}`);
  }
  if (!SIZES[a.size]) throw new Error(`unknown size ${a.size} (smoke, medium, full)`);
  return a;
}

class Bench {
  constructor(args) {
    this.args = args;
    this.size = { ...SIZES[args.size] };
    if (args.rounds) this.size.rounds = args.rounds;
    if (args.fanoutRate) this.size.fanoutRate = args.fanoutRate;
    if (args.slowMs) this.size.slowMs = args.slowMs;
    if (args.devices) {
      const f = args.devices / this.size.devices;
      for (const k of ['devices', 'memLow', 'memHigh', 'tlsDevices']) this.size[k] = Math.max(2, Math.round(this.size[k] * f));
    }
    this.flags = [];
    this.children = new Set();
    this.logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coolkit-bench-logs-'));
  }

  log(msg) {
    if (!this.args.quiet) process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
  }

  flag(msg) {
    this.flags.push(msg);
    this.log(`FLAG: ${msg}`);
  }

  async prepare() {
    this.pin = setup.pinning(!this.args.pin);
    if (!this.pin.enabled) this.flag(`no CPU pinning: ${this.pin.reason}; server and generator share cores, ratios are noisier`);
    this.limits = setup.fileLimits();
    const maxDevices = Math.max(this.size.devices, this.size.memHigh, this.size.tlsDevices);
    this.nofile = maxDevices + 1000;
    if (this.limits.hard < this.nofile) {
      const cap = Math.max(2, this.limits.hard - 1000);
      this.flag(`open-file hard limit ${this.limits.hard} < ${this.nofile} needed: device counts capped at ${cap}`);
      for (const k of ['devices', 'memLow', 'memHigh', 'tlsDevices']) this.size[k] = Math.min(this.size[k], cap);
      if (this.size.memLow >= this.size.memHigh) this.size.memLow = Math.floor(this.size.memHigh / 3);
    }
    this.pkg = setup.snapshotPackage();
    this.cert = await setup.benchCertificate();
    this.runtimeVersion = require(`${this.args.runtime}/package.json`).version;
    this.oursNodeArgs = this.args.oursNodeArgs ?? OURS_NODE_ARGS;
    if (this.args.oursEvents) this.flag(`ours: sonoff-device-in emits '${this.args.oursEvents}' events only (diagnostic)`);
    if (this.args.serverNodeArgs) this.flag(`every server runs with extra Node options: ${this.args.serverNodeArgs.join(' ')}`);
    if (this.args.profile) {
      this.flag('profiling on (--profile): ours runs unpinned with the V8 profiler attached, so its CPU and latency numbers include profiler overhead; use this run for profiles, not for the targets');
      this.profileDir = path.join(this.args.out, 'profiles');
      fs.mkdirSync(this.profileDir, { recursive: true });
    }
  }

  async startGenerator() {
    const child = setup.spawnNode(path.join(HERE, 'loadgen.js'), [], { core: this.pin.generator, pin: this.pin, nofile: this.nofile, logFile: path.join(this.logDir, 'loadgen.log') });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    this.genChild = child;
    this.gen = connect(child, 'loadgen');
  }

  /** Start one server child; returns {rpc, info, stop}. */
  async startServer(kind, { tls = false, round = 0, hub, nodeDefaults = false } = {}) {
    let script;
    let args;
    const execArgv = ['--expose-gc', ...(this.args.serverNodeArgs ?? [])];
    let hubSecret;
    if (kind === 'ours') {
      script = path.join(HERE, 'nr-server.js');
      if (!nodeDefaults) execArgv.push(...this.oursNodeArgs);
      args = ['--package', this.pkg, '--port', String(await setup.freePort()), '--runtime', this.args.runtime];
      if (tls) args.push('--tls', this.cert.arg);
      if (this.args.oursEvents) args.push('--events', this.args.oursEvents);
      if (hub) {
        hubSecret = randomBytes(32).toString('hex');
        args.push('--hub', hub, '--hub-port', String(await setup.freePort()), '--hub-secret', hubSecret);
      }
    } else {
      script = path.join(HERE, 'baseline-server.js');
      args = ['--mode', kind];
      if (tls) args.push('--tls', this.cert.arg);
    }
    const name = `${kind}${tls ? '-tls' : ''}${hub ? `-${hub}` : ''}${nodeDefaults ? '-default' : ''}`;
    // A profiled server is not pinned: V8's sampler thread would share the one core with the
    // main thread and mostly sample while the main thread is idle (busy time goes unseen).
    const profiled = Boolean(this.args.profile && kind === 'ours');
    const child = setup.spawnNode(script, args, { core: profiled ? undefined : this.pin.server, pin: this.pin, nofile: this.nofile, execArgv, logFile: path.join(this.logDir, `${name}-r${round}.log`) });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    const rpc = connect(child, name);
    let info;
    try {
      info = await rpc('info', {}, 90_000);
    } catch (err) {
      throw new Error(`${err.message}\n${child.tail()}`);
    }
    const exited = new Promise((r) => child.once('exit', r));
    const stop = async () => {
      await rpc('stop', {}, 20_000).catch(() => undefined);
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    };
    // Hub clients authenticate with the secret: the token itself (zhiting) or a JWT signed with it (telemetry).
    const hubToken = hub === 'telemetry' ? hs256(hubSecret, { sub: 'bench', iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 6 * 3600 }) : hubSecret;
    return { rpc, info, stop, child, name, round, hubToken, profile: Boolean(this.args.profile && kind === 'ours') };
  }

  /** Machine load on our cores that is not ours, between two /proc/stat readings. */
  interference(a, b, serverCpuUs, genCpuUs) {
    if (!a || !b) return null;
    if (this.pin.enabled) {
      return cpustat.foreign(a, b, { [this.pin.server]: serverCpuUs / 1000, [this.pin.generator]: genCpuUs / 1000 });
    }
    const f = cpustat.foreign(a, b, {});
    if (!f) return null;
    const busy = f.cores.reduce((x, c) => x + c.foreignPct, 0);
    const total = Math.max(0, busy - (serverCpuUs + genCpuUs) / 1000 / f.wallMs);
    return { ...f, maxForeignPct: total / f.cores.length };
  }

  /** Before a measured phase: wait (bounded) until other processes leave our cores alone. */
  async quiet(srv) {
    if (!this.size.quietMaxMs) return { waitedMs: 0, foreignPct: null };
    const pids = [srv.info.pid, this.genChild.pid].filter(Boolean);
    const q = await cpustat.waitQuiet(pids, { limit: 0.2, maxWaitMs: this.size.quietMaxMs });
    if (q.waitedMs > 600) this.log(`  waited ${(q.waitedMs / 1000).toFixed(1)} s for other processes to leave our cores (${q.foreignPct === null ? '?' : `${(q.foreignPct * 100).toFixed(0)}%`} busy at the end)`);
    this.quietWaitMs = (this.quietWaitMs || 0) + q.waitedMs;
    return q;
  }

  async profileStart(srv) {
    if (srv.profile) await srv.rpc('profileStart', { intervalUs: 500, heap: Boolean(this.args.profileHeap) });
  }

  /** Stop the window profile of `srv`, keep the file and a summary of its hottest functions. */
  async profileStop(srv, phase) {
    if (!srv.profile) return undefined;
    const file = path.join(this.profileDir, `r${srv.round}-${srv.name}-${phase}.cpuprofile`);
    await srv.rpc('profileStop', { file }, 60_000);
    const sum = summariseProfile(JSON.parse(fs.readFileSync(file, 'utf8')), { top: 25 });
    return { file, ...sum };
  }

  async initGen(base, count, echo = false) {
    return this.gen('init', { base, count, echo, prefix: 'b0', seed: 1 });
  }

  async connectDevices(from, to, extra = {}) {
    const r = await this.gen('connect', { from, to, concurrency: this.size.concurrency, retry: 'backoff', start: 'herd', ...extra }, 600_000);
    if (r.failed > 0) this.flag(`${r.failed} of ${to - from} devices could not connect (${JSON.stringify(r.reasons)})`);
    return r;
  }

  /** A timed phase with the server sampled exactly over the measured window. */
  async timed(srv, opts, phaseName) {
    const quiet = await this.quiet(srv);
    const startAt = epochNow() + 300;
    const resetAt = startAt + opts.warmupMs;
    const snapAt = resetAt + opts.measureMs;
    const at = (t, fn) => sleep(Math.max(0, t - epochNow())).then(fn);
    let statA;
    let statB;
    const profiling = Boolean(phaseName && srv.profile);
    const [gen, , server] = await Promise.all([
      this.gen('phase', { ...opts, startAt }, opts.warmupMs + opts.measureMs + 60_000),
      at(resetAt - (profiling ? 50 : 0), async () => {
        if (profiling) await this.profileStart(srv);
        statA = cpustat.read();
        return srv.rpc('reset');
      }),
      at(snapAt, async () => {
        const snap = await srv.rpc('snapshot');
        statB = cpustat.read();
        return snap;
      }),
    ]);
    const profile = profiling ? await this.profileStop(srv, phaseName) : undefined;
    const interference = this.interference(statA, statB, server.cpuUs, (gen.gen.cpuPct * gen.measureS) * 1e6);
    const genInvalid = [];
    if (gen.gen.cpuPct > GEN_LIMITS.cpuPct) genInvalid.push(`generator CPU ${(gen.gen.cpuPct * 100).toFixed(0)}%`);
    if (gen.gen.eldP99 > GEN_LIMITS.eldP99Ms) genInvalid.push(`generator event-loop p99 ${gen.gen.eldP99.toFixed(1)} ms`);
    if (gen.slip.p99 !== null && gen.slip.p99 > GEN_LIMITS.slipP99Ms) genInvalid.push(`generator behind schedule (p99 ${gen.slip.p99} ms)`);
    const processed = gen.acked;
    const disturbed = interference && interference.maxForeignPct > FOREIGN_LIMIT ? [`other processes used ${(interference.maxForeignPct * 100).toFixed(0)}% of one of our cores`] : [];
    return {
      rate: opts.rate || 0,
      gen,
      server,
      cpuPerUpdUs: processed > 0 ? server.cpuUs / processed : null,
      genInvalid,
      interference,
      disturbed,
      quiet,
      profile,
    };
  }

  async kneeSearch(srv, label) {
    const s = this.size;
    const maxRate = Math.min(s.kneeMax, s.devices * 15);
    const steps = [];
    let lo = 0;
    let hi = 0;
    let bound = 'max-rate';
    const step = async (rate, retry = this.size.kneeRetries ?? 1) => {
      const r = await this.timed(srv, { rate, warmupMs: s.kneeWarmupMs, measureMs: s.kneeMeasureMs, graceMs: 1000 });
      const lost = r.gen.unacked + r.gen.skipped + r.gen.errors;
      const p99 = r.gen.ack.p99;
      const pass = lost <= Math.max(0, r.gen.sent * 0.001) && p99 !== null && p99 <= KNEE_P99_MS;
      const entry = { rate, pass, p99, lost, achieved: r.gen.achievedRate, serverCpuPct: r.server.cpuPct, genCpuPct: r.gen.gen.cpuPct, genInvalid: r.genInvalid, eldP99: r.server.eld.p99, disturbed: r.disturbed, foreignPct: r.interference?.maxForeignPct ?? null };
      steps.push(entry);
      this.log(`  ${label} knee step ${rate}/s: ${pass ? 'pass' : 'FAIL'} ack p99 ${p99} ms, lost ${lost}, server CPU ${(r.server.cpuPct * 100).toFixed(0)}%, ELD p99 ${r.server.eld.p99} ms, gen CPU ${(r.gen.gen.cpuPct * 100).toFixed(0)}%, gen ELD p99 ${r.gen.gen.eldP99} ms${r.genInvalid.length ? ` [${r.genInvalid.join('; ')}]` : ''}${r.disturbed.length ? ` [${r.disturbed.join('; ')}]` : ''}`);
      await sleep(pass ? 300 : 2000);
      // The generator is saturated only when it is busy; a generator stall while it is far from
      // busy comes from outside (the machine is shared).
      entry.genSaturated = r.genInvalid.length > 0 && r.gen.gen.cpuPct > GEN_LIMITS.cpuPct * 0.9;
      entry.outsideStall = r.genInvalid.length > 0 && !entry.genSaturated;
      // A failed or disturbed step is tried again (kneeRetries times) before it counts.
      if (retry > 0 && (!pass || entry.outsideStall)) {
        const again = await step(rate, retry - 1);
        again.retried = true;
        entry.retry = again;
        if (again.pass && !again.outsideStall && !again.genSaturated) return again;
        if (!pass) return again.pass ? again : entry;
      }
      return entry;
    };
    for (let rate = s.kneeStart; rate <= maxRate; rate = Math.round(rate * s.kneeFactor)) {
      const e = await step(rate);
      if (e.genSaturated) {
        bound = 'generator';
        if (e.pass) lo = rate;
        break;
      }
      if (e.outsideStall) {
        // Still stalled from outside after the retries: judge the server by its latency anyway.
        if (e.pass) {
          lo = rate;
          continue;
        }
        hi = rate;
        bound = 'disturbed';
        break;
      }
      if (!e.pass) {
        hi = rate;
        bound = e.serverCpuPct >= 0.85 ? 'server-cpu' : 'latency';
        break;
      }
      lo = rate;
    }
    if (s.kneeRefine && lo > 0 && hi > 0) {
      const mid = Math.round(Math.sqrt(lo * hi) / 100) * 100;
      if (mid > lo && mid < hi) {
        const e = await step(mid);
        if (e.pass && !e.genSaturated) lo = mid;
      }
    }
    return { knee: lo, bound, steps, maxRate };
  }

  async herd(srv, devices) {
    await this.gen('dropAll', {});
    const until = Date.now() + 60_000;
    for (;;) {
      const snap = await srv.rpc('snapshot');
      if (snap.counters.online === 0) break;
      if (Date.now() > until) {
        this.flag(`server still reports ${snap.counters.online} online 60 s after all devices dropped`);
        break;
      }
      await sleep(100);
    }
    await sleep(500);
    const quiet = await this.quiet(srv);
    await this.profileStart(srv);
    const statA = cpustat.read();
    await srv.rpc('reset');
    const conn = await this.gen('connect', { from: 0, to: devices, concurrency: this.size.concurrency, retry: 'backoff', start: 'herd', maxAttempts: 8 }, 900_000);
    const server = await srv.rpc('snapshot');
    const statB = cpustat.read();
    const profile = await this.profileStop(srv, 'herd');
    const interference = this.interference(statA, statB, server.cpuUs, conn.gen.cpuPct * conn.wallMs * 1000);
    const disturbed = interference && interference.maxForeignPct > FOREIGN_LIMIT ? [`other processes used ${(interference.maxForeignPct * 100).toFixed(0)}% of one of our cores`] : [];
    const genInvalid = conn.gen.cpuPct > GEN_LIMITS.cpuPct ? [`generator CPU ${(conn.gen.cpuPct * 100).toFixed(0)}% in the herd`] : [];
    const cpuPerConnectUs = conn.ok > 0 ? server.cpuUs / conn.ok : null;
    this.log(`  herd ${devices}${conn.tls ? ` (${conn.tls.negotiated})` : ''}: ${conn.ok} ok in ${conn.wallMs} ms (${conn.rate}/s), failed ${conn.failed}, retries ${conn.retries}, attempt p99 ${conn.attempt.p99} ms, server CPU ${(server.cpuPct * 100).toFixed(0)}% (${cpuPerConnectUs?.toFixed(0)} µs/reconnect), ELD p99 ${server.eld.p99} ms, gen CPU ${(conn.gen.cpuPct * 100).toFixed(0)}%${disturbed.length ? ` [${disturbed.join('; ')}]` : ''}`);
    return { devices, ...conn, server, cpuPerConnectUs, genInvalid, interference, disturbed, quiet, profile };
  }

  async memoryTwoSizes(srv) {
    const s = this.size;
    const c1 = await this.connectDevices(0, s.memLow);
    await sleep(s.settleMs);
    const m1 = await srv.rpc('memory', {}, 60_000);
    const k1 = setup.sockstat();
    const c2 = await this.connectDevices(s.memLow, s.memHigh);
    await sleep(s.settleMs);
    const m2 = await srv.rpc('memory', {}, 60_000);
    const k2 = setup.sockstat();
    const n = s.memHigh - s.memLow;
    const mem = {
      low: s.memLow, high: s.memHigh, m1, m2,
      rssPerDevice: (m2.rss - m1.rss) / n,
      heapPerDevice: (m2.heapUsed - m1.heapUsed) / n,
      externalPerDevice: (m2.external - m1.external) / n,
      kernelTcpPerDevice: k1 && k2 ? (k2.memBytes - k1.memBytes) / n : null, // both ends of loopback
      connect: [c1, c2],
    };
    this.log(`  memory: ${(mem.rssPerDevice / 1024).toFixed(2)} KB RSS, ${(mem.heapPerDevice / 1024).toFixed(2)} KB heap per device (slope ${s.memLow} -> ${s.memHigh})`);
    return mem;
  }

  async heartbeat(srv) {
    const s = this.size;
    const idle = await this.timed(srv, { rate: 0, pingRate: 0, warmupMs: 300, measureMs: Math.max(1000, s.pingMs / 2), graceMs: 0 });
    const r = await this.timed(srv, { rate: 0, pingRate: s.pingRate, warmupMs: 500, measureMs: s.pingMs, graceMs: 500 }, 'heartbeat');
    this.log(`  heartbeats: ${s.pingRate}/s over ${r.gen.devices} idle devices: server CPU ${(r.server.cpuPct * 100).toFixed(2)}% of a core (${(idle.server.cpuPct * 100).toFixed(2)}% without pings), pong p99 ${r.gen.pong.p99} ms`);
    return { pingRate: s.pingRate, devices: r.gen.devices, cpuPct: r.server.cpuPct, idleCpuPct: idle.server.cpuPct, cpuPerPingUs: r.gen.pongs > 0 ? ((r.server.cpuPct - idle.server.cpuPct) * r.server.wallMs * 1000) / r.gen.pongs : null, pongs: r.gen.pongs, pings: r.gen.pings, pong: r.gen.pong, eld: r.server.eld, genInvalid: r.genInvalid, interference: r.interference, disturbed: r.disturbed, profile: r.profile };
  }

  async fixed(srv, rate, label, phaseName) {
    const s = this.size;
    const r = await this.timed(srv, { rate, warmupMs: s.warmupMs, measureMs: s.measureMs, graceMs: 2000 }, phaseName);
    this.log(`  ${label} ${rate}/s: cpu/upd ${r.cpuPerUpdUs?.toFixed(1)} µs, ack p50/p99 ${r.gen.ack.p50}/${r.gen.ack.p99} ms, server ELD p99 ${r.server.eld.p99} ms, CPU ${(r.server.cpuPct * 100).toFixed(0)}%${r.server.delivery ? `, Node-RED delivery p99 ${r.server.delivery.p99} ms (${r.server.delivery.count})` : ''}${r.genInvalid.length ? ` [${r.genInvalid.join('; ')}]` : ''}${r.disturbed.length ? ` [${r.disturbed.join('; ')}]` : ''}`);
    return r;
  }

  /**
   * Sample the server every `everyMs` while `fn` runs (hub clients' send buffers, memory without
   * GC); returns fn's result with the samples' summary.
   */
  async sampled(srv, fn, everyMs = 250) {
    const samples = [];
    let running = true;
    const loop = (async () => {
      while (running) {
        try {
          samples.push(await srv.rpc('hubSample', {}, 10_000));
        } catch { /* a missed sample */ }
        await sleep(everyMs);
      }
    })();
    try {
      const r = await fn();
      return { r, samples: summariseSamples(samples) };
    } finally {
      running = false;
      await loop;
    }
  }

  /** Fixed rate with S hub subscribers already connected (G3); server memory sampled alongside. */
  async hubFanout(srv, label) {
    const s = this.size;
    const { r: fixed, samples } = await this.sampled(srv, () => this.fixed(srv, s.fanoutRate, `${label} (${s.subscribers} subscribers)`, 'fanout'));
    const w = fixed.server.counters.hubWindow || {};
    const updates = w.updates ?? 0;
    fixed.hub = { ...w, serialisedPerUpdate: updates > 0 && typeof w.serialised === 'number' ? w.serialised / updates : null, memory: samples };
    fixed.cpuPerFrameUs = fixed.gen.subFrames > 0 ? fixed.server.cpuUs / fixed.gen.subFrames : null;
    this.log(`  ${label} delivered ${fixed.gen.deliveryRate} updates/s to subscribers (${fixed.gen.subFrameRate} frames/s), delivery p99 ${fixed.gen.delivery.p99} ms, ${fixed.cpuPerFrameUs?.toFixed(2)} µs server CPU per frame, ${fixed.hub.serialisedPerUpdate?.toFixed(2)} serialisations per update, dropped ${w.droppedEvents ?? '?'}`);
    return fixed;
  }

  /**
   * G11: one more subscriber connects and stops reading (its socket paused); its kernel socket
   * buffers are pre-filled (see nr-server hubPrefill) so the session layer's limits come into play
   * within the window; then the same fixed rate runs for slowMs while the server's memory and
   * every hub client's send buffer are sampled. The session layer should drop events for it above
   * 256 KiB buffered and cut it after 5 s there.
   */
  async slowConsumer(srv, kind) {
    const s = this.size;
    await this.gen('subscribe', { count: 1, kind, url: srv.info.hub.url, token: srv.hubToken, slow: true });
    const before = await srv.rpc('hubSample');
    const slowId = Math.max(...before.conns.map((c) => c.id));
    const pausedAt = Date.now();
    const control = Boolean(this.args.slowControl);
    const paused = control ? { paused: 0, slow: [] } : await this.gen('pauseSlow');
    const prefill = control ? { sent: 0, buffered: 0 } : await srv.rpc('hubPrefill', { id: slowId }, 30_000);
    this.log(`  slow consumer: paused; ${(prefill.sent / 1048576).toFixed(1)} MiB of filler took its kernel socket buffers (${(prefill.buffered / 1024).toFixed(0)} KiB waiting in the server)`);
    const { r, samples } = await this.sampled(srv, () => this.timed(srv, { rate: s.fanoutRate, warmupMs: 500, measureMs: s.slowMs, graceMs: 2000 }, 'slow'));
    const after = await srv.rpc('hubSample');
    const status = await this.gen('status');
    const slow = status.slowSubs[0] || {};
    const w = r.server.counters.hubWindow || {};
    const peakSlowBuffered = Math.max(0, ...samples.perConn.filter((c) => c.id === slowId).map((c) => c.maxBuffered));
    const peakOtherBuffered = Math.max(0, ...samples.perConn.filter((c) => c.id !== slowId).map((c) => c.maxBuffered));
    // The paused client cannot see its own close: the server's side tells (its connection is gone).
    const cut = !after.conns.some((c) => c.id === slowId);
    const firstGone = samples.slowGoneAt(slowId);
    const cutAfterPauseMs = cut && firstGone !== null ? firstGone - pausedAt : null;
    const out = {
      ...r,
      slow: {
        paused: paused.paused, prefillBytes: prefill.sent, prefillBuffered: prefill.buffered, framesBeforePause: paused.slow[0]?.frames, cut, cutAfterPauseMs, clientSawClose: slow.closeCode,
        peakSlowBuffered, peakOtherBuffered, slowReaders: w.slowReaders, droppedEvents: w.droppedEvents,
        rssStart: before.mem.rss, rssPeak: samples.rssMax, rssGrowth: samples.rssMax !== null ? samples.rssMax - before.mem.rss : null,
        heapGrowth: samples.heapMax !== null ? samples.heapMax - before.mem.heapUsed : null,
        externalGrowth: samples.externalMax !== null ? samples.externalMax - (before.mem.external + before.mem.arrayBuffers) : null,
        rssEnd: after.mem.rss, openAfter: after.conns.length,
      },
      memory: samples,
    };
    this.log(`  slow consumer: others got ${r.gen.deliveryRate} updates/s, delivery p99 ${r.gen.delivery.p99} ms; slow client ${cut ? `disconnected by the server ${cutAfterPauseMs ?? '?'} ms after it stopped reading (incl. the pre-fill and the wait before the phase)` : 'still open'}, its server buffer peaked at ${(peakSlowBuffered / 1024).toFixed(0)} KiB (others ${(peakOtherBuffered / 1024).toFixed(0)} KiB), ${w.droppedEvents ?? '?'} events dropped, RSS +${((out.slow.rssGrowth ?? 0) / 1048576).toFixed(1)} MiB (peak), heap +${((out.slow.heapGrowth ?? 0) / 1048576).toFixed(1)} MiB`);
    return out;
  }

  wanted(name) {
    return !this.args.only || this.args.only.includes(name);
  }

  /** One round: every session once, baselines and ours alternating. */
  async round(n, prev) {
    const s = this.size;
    const out = {};
    const session = async (name, kind, tls, fn, extra = {}) => {
      if (!this.wanted(name)) return;
      this.log(`round ${n}: ${name}`);
      const srv = await this.startServer(kind, { tls, round: n, ...extra });
      try {
        out[name] = { info: srv.info, ...(await fn(srv)) };
      } catch (err) {
        out[name] = { info: srv.info, error: String(err.stack || err) };
        this.flag(`round ${n} ${name} failed: ${err.message}`);
      } finally {
        await this.gen('close', {}).catch(() => undefined);
        await srv.stop();
      }
    };

    await session('B-ack', 'ack', false, async (srv) => {
      await this.initGen(srv.info.base, s.devices);
      const connect = await this.connectDevices(0, s.devices);
      const knee = await this.kneeSearch(srv, 'B-ack');
      const halfRate = knee.knee > 0 ? Math.max(100, Math.round(knee.knee / 2 / 100) * 100) : prev?.halfRate ?? s.fixedRate;
      const half = await this.fixed(srv, halfRate, 'B-ack half load');
      const fixed = await this.fixed(srv, s.fixedRate, 'B-ack fixed');
      return { connect, knee, halfRate, half, fixed };
    });
    const halfRate = out['B-ack']?.halfRate ?? prev?.halfRate ?? Math.round(s.fixedRate / 100) * 100;

    await session('ours', 'ours', false, async (srv) => {
      await this.initGen(srv.info.base, s.devices);
      const memory = await this.memoryTwoSizes(srv);
      const heartbeat = await this.heartbeat(srv);
      const knee = await this.kneeSearch(srv, 'ours');
      const half = await this.fixed(srv, halfRate, 'ours half load', 'half');
      const fixed = await this.fixed(srv, s.fixedRate, 'ours fixed', 'fixed');
      const herd = await this.herd(srv, s.devices);
      const status = await this.gen('status');
      if (status.totals.unexpectedCloses > 0) this.flag(`round ${n} ours: ${status.totals.unexpectedCloses} device sockets closed by the server`);
      return { halfRate, memory, heartbeat, knee, half, fixed, herd, genStatus: status };
    });

    // The same server with Node's default young generation (no OURS_NODE_ARGS): the update path only.
    await session('ours-default', 'ours', false, async (srv) => {
      await this.initGen(srv.info.base, s.devices);
      const connect = await this.connectDevices(0, s.devices);
      const knee = await this.kneeSearch(srv, 'ours-default');
      const half = await this.fixed(srv, halfRate, 'ours-default half load', 'half');
      const fixed = await this.fixed(srv, s.fixedRate, 'ours-default fixed', 'fixed');
      return { connect, halfRate, knee, half, fixed };
    }, { nodeDefaults: true });

    await session('B-idle', 'idle', false, async (srv) => {
      await this.initGen(srv.info.base, s.devices);
      const memory = await this.memoryTwoSizes(srv);
      const heartbeat = await this.heartbeat(srv);
      const herd = await this.herd(srv, s.devices);
      return { memory, heartbeat, herd };
    });

    await session('B-tls', 'idle', true, async (srv) => {
      await this.initGen(srv.info.base, s.tlsDevices);
      const connect = await this.connectDevices(0, s.tlsDevices);
      const herd = await this.herd(srv, s.tlsDevices);
      return { connect, herd };
    });

    await session('ours-tls', 'ours', true, async (srv) => {
      await this.initGen(srv.info.base, s.tlsDevices);
      const connect = await this.connectDevices(0, s.tlsDevices);
      const herd = await this.herd(srv, s.tlsDevices);
      return { connect, herd };
    });

    await session('B-echo', 'echo', false, async (srv) => {
      await this.gen('init', { base: srv.info.base, count: s.devices, echo: true, prefix: 'b0', seed: 1 });
      const connect = await this.connectDevices(0, s.devices);
      const fixed = await this.fixed(srv, s.fixedRate, 'B-echo fixed');
      return { connect, fixed };
    });

    await session('B-fanout', 'fanout', false, async (srv) => {
      await this.initGen(srv.info.base, s.devices);
      const connect = await this.connectDevices(0, s.devices);
      await this.gen('subscribe', { count: s.subscribers });
      const fixed = await this.fixed(srv, s.fanoutRate, `B-fanout (${s.subscribers} subscribers)`);
      fixed.cpuPerFrameUs = fixed.gen.subFrames > 0 ? fixed.server.cpuUs / fixed.gen.subFrames : null;
      this.log(`  B-fanout delivered ${fixed.gen.deliveryRate} frames/s, delivery p99 ${fixed.gen.delivery.p99} ms, ${fixed.cpuPerFrameUs?.toFixed(2)} µs server CPU per frame`);
      return { connect, subscribers: s.subscribers, fixed };
    });

    // Ours with a hub API node: the same rate and subscriber count as B-fanout, then a slow client.
    await session('ours-hub', 'ours', false, async (srv) => {
      await this.initGen(srv.info.base, s.devices);
      const connect = await this.connectDevices(0, s.devices);
      await this.gen('subscribe', { count: s.subscribers, kind: 'telemetry', url: srv.info.hub.url, token: srv.hubToken });
      const fixed = await this.hubFanout(srv, 'ours telemetry fan-out');
      const slow = await this.slowConsumer(srv, 'telemetry');
      return { connect, api: 'telemetry', subscribers: s.subscribers, fixed, slow };
    }, { hub: 'telemetry' });

    await session('ours-zhiting', 'ours', false, async (srv) => {
      await this.initGen(srv.info.base, s.devices);
      const connect = await this.connectDevices(0, s.devices);
      await this.gen('subscribe', { count: s.subscribers, kind: 'zhiting', url: srv.info.hub.url, token: srv.hubToken });
      const fixed = await this.hubFanout(srv, 'ours zhiting fan-out');
      return { connect, api: 'zhiting', subscribers: s.subscribers, fixed };
    }, { hub: 'zhiting' });

    return { round: n, halfRate, sessions: out };
  }

  async run() {
    const t0 = Date.now();
    await this.prepare();
    await this.startGenerator();
    this.log(`size ${this.args.size}: ${JSON.stringify(this.size)}`);
    this.log(`pinning: ${this.pin.enabled ? `server core ${this.pin.server}, generator core ${this.pin.generator}` : this.pin.reason}; open files soft/hard ${this.limits.soft}/${this.limits.hard}; logs in ${this.logDir}`);
    const rounds = [];
    let prev;
    for (let r = 1; r <= this.size.rounds; r++) {
      prev = await this.round(r, prev);
      rounds.push(prev);
    }
    await this.gen('close', {}).catch(() => undefined);
    this.genChild.disconnect();
    const mqtt = this.wanted('mqtt') ? await this.mqttBackbone() : undefined;
    const meta = {
      date: new Date().toISOString(),
      size: this.args.size,
      params: this.size,
      node: process.version,
      nodeRed: `${this.args.runtime} ${this.runtimeVersion}`,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model,
      pinning: this.pin,
      openFiles: this.limits,
      generatorLimits: GEN_LIMITS,
      kneeP99Ms: KNEE_P99_MS,
      durationS: Math.round((Date.now() - t0) / 1000),
      quietWaitS: Math.round((this.quietWaitMs || 0) / 1000),
      logDir: this.logDir,
      profileDir: this.profileDir,
      oursNodeArgs: this.oursNodeArgs,
    };
    const summary = report.summarise(rounds, this.size);
    const result = { meta, summary, flags: [...this.flags, ...summary.flags], valid: summary.valid && this.flags.length === 0, rounds, mqtt };
    fs.mkdirSync(this.args.out, { recursive: true });
    const json = JSON.stringify(result, null, 2);
    fs.writeFileSync(path.join(this.args.out, 'latest.json'), json);
    fs.writeFileSync(path.join(this.args.out, `${meta.date.replace(/[:.]/g, '-')}-${this.args.size}.json`), json);
    const table = report.markdown(result) + report.mqttMarkdown(mqtt);
    fs.writeFileSync(path.join(this.args.out, 'latest.md'), table);
    process.stdout.write(table);
    this.log(`results: ${path.join(this.args.out, 'latest.json')} (${meta.durationS} s)`);
    fs.rmSync(this.pkg, { recursive: true, force: true });
    return result;
  }

  /**
   * The MQTT backbone (issue 11): updates/s and latency through the broker vs one instance. It
   * runs the clouds in this process against a private Mosquitto (test/bench/mqtt.js), after the
   * rounds, so it never overlaps them.
   */
  async mqttBackbone() {
    this.log(`mqtt backbone: ${JSON.stringify(this.size.mqtt)}`);
    try {
      const { runMqttBench } = require('./mqtt');
      const r = await runMqttBench(this.size.mqtt);
      this.log(`  single ${r.single.updatesPerSec}/s p99 ${r.single.p99Ms} ms; through the broker ${r.broker.updatesPerSec}/s p99 ${r.broker.p99Ms} ms (${r.rateRatio}x)`);
      return r;
    } catch (err) {
      this.flag(`mqtt backbone not measured: ${err.message}`);
      return { error: err.message };
    }
  }

  killAll() {
    for (const c of this.children) {
      try { c.kill('SIGKILL'); } catch { /* gone */ }
    }
  }
}

/** Peaks of the server samples: memory (no GC) and per hub client the largest send buffer seen. */
function summariseSamples(samples) {
  const max = (f) => (samples.length ? Math.max(...samples.map(f)) : null);
  const perConn = new Map();
  for (const x of samples) {
    for (const c of x.conns) {
      const e = perConn.get(c.id) || { id: c.id, maxBuffered: 0, dropped: 0 };
      e.maxBuffered = Math.max(e.maxBuffered, c.buffered);
      e.dropped = Math.max(e.dropped, c.dropped);
      perConn.set(c.id, e);
    }
  }
  return {
    /** Server time of the first sample without connection `id` after it was seen (not serialised). */
    slowGoneAt: (id) => {
      let seen = false;
      for (const x of samples) {
        const has = x.conns.some((c) => c.id === id);
        if (has) seen = true;
        else if (seen) return x.t;
      }
      return null;
    },
    count: samples.length,
    /** [ms since the first sample, rss, largest send buffer, connections]: gaps show server stalls. */
    timeline: samples.map((x) => [x.t - samples[0].t, x.mem.rss, Math.max(0, ...x.conns.map((c) => c.buffered)), x.conns.length]),
    rssFirst: samples.length ? samples[0].mem.rss : null,
    rssMax: max((x) => x.mem.rss),
    heapMax: max((x) => x.mem.heapUsed),
    externalMax: max((x) => x.mem.external + x.mem.arrayBuffers),
    maxBuffered: max((x) => Math.max(0, ...x.conns.map((c) => c.buffered))),
    perConn: [...perConn.values()],
  };
}

if (require.main === module) {
  let bench;
  try {
    bench = new Bench(parseArgs(process.argv.slice(2)));
  } catch (err) {
    console.error(err.message);
    process.exit(2);
  }
  const onSignal = () => {
    bench.killAll();
    if (bench.pkg) fs.rmSync(bench.pkg, { recursive: true, force: true });
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  bench.run().then(
    () => process.exit(0),
    (err) => {
      console.error(err.stack || err);
      bench.killAll();
      if (bench.pkg) fs.rmSync(bench.pkg, { recursive: true, force: true });
      process.exit(1);
    },
  );
}

module.exports = { Bench, SIZES, parseArgs };
