'use strict';
// Machine-wide CPU time per core from /proc/stat, to see load that is not ours: the machine
// is shared, and another process busy on the server's or the generator's core would distort
// latencies (CPU-time metrics such as CPU per update are not affected).
const fs = require('node:fs');
const os = require('node:os');

const TICK_MS = 1000 / 100; // USER_HZ is 100 on Linux

/** Busy and steal ms per core, or null where /proc/stat is missing. */
function read() {
  let text;
  try {
    text = fs.readFileSync('/proc/stat', 'utf8');
  } catch {
    return null;
  }
  const cores = [];
  for (const line of text.split('\n')) {
    const m = line.match(/^cpu(\d+)\s+(.*)$/);
    if (!m) continue;
    const [user, nice, system, idle, iowait, irq, softirq, steal] = m[2].split(/\s+/).map(Number);
    cores[Number(m[1])] = { busyMs: (user + nice + system + irq + softirq) * TICK_MS, stealMs: (steal || 0) * TICK_MS, idleMs: (idle + iowait) * TICK_MS };
  }
  return { at: Date.now(), cores };
}

/**
 * Load on each core that is not ours between two readings: busy + steal − the CPU our process on
 * that core reported (ms). `ours` maps core index -> ms of CPU our pinned process used.
 */
function foreign(a, b, ours) {
  if (!a || !b) return null;
  const wallMs = b.at - a.at;
  if (wallMs <= 0) return null;
  const out = { wallMs, cores: [] };
  for (let i = 0; i < Math.min(a.cores.length, os.cpus().length); i++) {
    const busy = b.cores[i].busyMs - a.cores[i].busyMs;
    const steal = b.cores[i].stealMs - a.cores[i].stealMs;
    const mine = ours[i] || 0;
    out.cores.push({ core: i, busyPct: busy / wallMs, stealPct: steal / wallMs, foreignPct: Math.max(0, (busy + steal - mine) / wallMs) });
  }
  out.maxForeignPct = Math.max(...out.cores.map((c) => c.foreignPct));
  return out;
}

/** CPU ms (user + system, all threads) a process used so far, or 0 when it is gone. */
function processMs(pid) {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_MS;
  } catch {
    return 0;
  }
}

/**
 * Wait (up to maxWaitMs) until other processes leave our cores alone: over a 500 ms sample,
 * machine-wide busy time minus what `pids` and this process used is below `limit` of one core.
 * Returns {waitedMs, foreignPct} of the last sample.
 */
async function waitQuiet(pids, { limit = 0.2, maxWaitMs = 15_000, sampleMs = 500 } = {}) {
  const t0 = Date.now();
  let foreignPct = null;
  for (;;) {
    const a = read();
    if (!a) return { waitedMs: 0, foreignPct: null };
    const p0 = pids.reduce((x, pid) => x + processMs(pid), 0);
    const c0 = process.cpuUsage();
    await new Promise((r) => setTimeout(r, sampleMs));
    const b = read();
    const p1 = pids.reduce((x, pid) => x + processMs(pid), 0);
    const c = process.cpuUsage(c0);
    const wall = b.at - a.at;
    let busy = 0;
    for (let i = 0; i < b.cores.length; i++) busy += b.cores[i].busyMs - a.cores[i].busyMs + b.cores[i].stealMs - a.cores[i].stealMs;
    foreignPct = Math.max(0, (busy - (p1 - p0) - (c.user + c.system) / 1000) / wall);
    const waitedMs = Date.now() - t0;
    if (foreignPct <= limit || waitedMs >= maxWaitMs) return { waitedMs, foreignPct };
  }
}

module.exports = { read, foreign, processMs, waitQuiet };
