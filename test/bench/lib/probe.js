'use strict';
// Measurements taken inside a server child (baseline or Node-RED): CPU from process.cpuUsage
// (all threads of the process), event-loop delay from monitorEventLoopDelay, memory after
// forced GC (children run with --expose-gc), plus the server's own counters.
const fs = require('node:fs');
const { monitorEventLoopDelay, performance, PerformanceObserver, constants } = require('node:perf_hooks');

const GC_KINDS = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** monitorEventLoopDelay samples every RESOLUTION ms and its histogram includes that interval. */
const RESOLUTION_MS = 10;

/** Event-loop delay in ms beyond the sampling interval (0 = the loop was never late). */
function eldSummary(h) {
  const ms = (ns) => Math.max(0, Math.round((ns / 1e6 - RESOLUTION_MS) * 100) / 100);
  if (h.count === 0) return { p50: 0, p99: 0, max: 0, mean: 0, count: 0 };
  return { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max), mean: ms(h.mean), count: h.count };
}

function procStatus() {
  const out = {};
  try {
    const text = fs.readFileSync('/proc/self/status', 'utf8');
    for (const key of ['VmRSS', 'VmHWM', 'Threads']) {
      const m = text.match(new RegExp(`^${key}:\\s+(\\d+)`, 'm'));
      if (m) out[key] = Number(m[1]) * (key === 'Threads' ? 1 : 1024);
    }
  } catch { /* not Linux */ }
  return out;
}

class Probe {
  constructor(counters = () => ({})) {
    this.counters = counters;
    this.eld = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
    this.eld.enable();
    this.gc = {};
    // GC pauses of the main thread, by kind: count, total and longest (ms).
    this.gcObserver = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        const kind = GC_KINDS[e.detail ? e.detail.kind : e.kind] || 'other';
        const g = (this.gc[kind] ||= { count: 0, totalMs: 0, maxMs: 0 });
        g.count++;
        g.totalMs += e.duration;
        if (e.duration > g.maxMs) g.maxMs = e.duration;
      }
    });
    this.gcObserver.observe({ entryTypes: ['gc'] });
    this.reset();
  }

  reset() {
    this.eld.reset();
    this.gc = {};
    this.cpu0 = process.cpuUsage();
    this.t0 = performance.now();
    return { at: performance.timeOrigin + this.t0 };
  }

  snapshot() {
    const cpu = process.cpuUsage(this.cpu0);
    const wallMs = performance.now() - this.t0;
    const cpuUs = cpu.user + cpu.system;
    return {
      wallMs,
      cpuUs,
      cpuUserUs: cpu.user,
      cpuSysUs: cpu.system,
      cpuPct: wallMs > 0 ? cpuUs / 1000 / wallMs : 0,
      eld: eldSummary(this.eld),
      gc: Object.fromEntries(Object.entries(this.gc).map(([k, g]) => [k, { count: g.count, totalMs: Math.round(g.totalMs * 10) / 10, maxMs: Math.round(g.maxMs * 10) / 10 }])),
      counters: this.counters(),
      rss: process.memoryUsage.rss(),
    };
  }

  /** Start the V8 CPU profiler of this process (node:inspector), e.g. for one measured window. */
  async profileStart({ intervalUs = 500, heap = false } = {}) {
    const inspector = require('node:inspector');
    if (!this.session) {
      this.session = new inspector.Session();
      this.session.connect();
    }
    const post = (method, params) => new Promise((resolve, reject) => this.session.post(method, params, (err, res) => (err ? reject(err) : resolve(res))));
    await post('Profiler.enable');
    await post('Profiler.setSamplingInterval', { interval: intervalUs });
    await post('Profiler.start');
    if (heap) {
      // every allocation sampled (about one per 32 KiB), including objects already collected:
      // what the window allocates, not what it keeps
      await post('HeapProfiler.enable');
      await post('HeapProfiler.startSampling', { samplingInterval: 32768, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    }
    this.heap = heap;
    this.post = post;
    return {};
  }

  /** Stop the profiler and write the .cpuprofile to `file`. */
  async profileStop({ file }) {
    if (!this.post) return { file: null };
    const { profile } = await this.post('Profiler.stop');
    fs.writeFileSync(file, JSON.stringify(profile));
    if (this.heap) {
      const { profile: heapProfile } = await this.post('HeapProfiler.stopSampling');
      fs.writeFileSync(file.replace(/\.cpuprofile$/, '') + '.heapprofile', JSON.stringify(heapProfile));
    }
    return { file };
  }

  /** Memory after GC (three full collections, 100 ms apart, so finalizers and weak refs settle). */
  async memory() {
    const gc = globalThis.gc;
    if (gc) {
      for (let i = 0; i < 3; i++) {
        gc();
        await sleep(100);
      }
    }
    return { ...process.memoryUsage(), ...procStatus(), gc: Boolean(gc), counters: this.counters() };
  }
}

module.exports = { Probe, eldSummary, sleep, RESOLUTION_MS };
