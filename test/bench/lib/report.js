'use strict';
// Turns the rounds of a bench run into the targets table: per-round ratios (ours ÷ baseline
// measured in the same round), their median and min..max, a verdict against the target of
// shared/reference/performance.md §3, and validity (was the generator the bottleneck?).

function median(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

function spread(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x));
  if (v.length === 0) return null;
  return { min: Math.min(...v), max: Math.max(...v), n: v.length };
}

const get = (obj, p) => p.split('.').reduce((o, k) => (o === undefined || o === null ? undefined : o[k]), obj);

/**
 * The update-path goals (G1, G2, G8, G9a) read from one session: `ours`, or `ours-default` (the
 * same server with Node's default GC sizing; ids end in "n" and the rows are informative).
 */
function updatePath(size, ours) {
  const nodeDefaults = ours !== 'ours';
  const id = (g) => (nodeDefaults ? `${g}n` : g);
  const label = (metric) => (nodeDefaults ? `${metric}, with Node's default GC sizing (no --max-semi-space-size)` : metric);
  const at = (p) => (r) => get(r.sessions, `${ours}.${p}`);
  const rows = [
    {
      id: id('G1'), metric: label(`server CPU per device update at ${size.fixedRate}/s (µs)`), base: 'B-ack', unit: 'µs',
      b: (r) => get(r.sessions, 'B-ack.fixed.cpuPerUpdUs'), o: at('fixed.cpuPerUpdUs'),
      kind: 'ratio', op: '<=', target: 1.4, minimum: 2.0,
      m: ['B-ack.fixed', `${ours}.fixed`],
      extra: (r) => {
        const o = at('fixed')(r);
        return o && o.gen.acked < o.gen.sent ? [`ours acked ${o.gen.acked}/${o.gen.sent} at the fixed rate (saturated: CPU/update is measured at saturation)`] : [];
      },
    },
    {
      id: id('G2'), metric: label('highest update rate with ack p99 ≤ 50 ms (upd/s)'), base: 'B-ack', unit: '/s',
      b: (r) => get(r.sessions, 'B-ack.knee.knee'), o: at('knee.knee'),
      kind: 'ratio', op: '>=', target: 0.7, minimum: 0.5, knee: ours === 'ours', // the bounds notes read ours' knee
      extra: (r) => {
        // When the generator, not the server, ended the baseline's search, its knee is only a
        // lower bound. Rate ÷ server CPU at each side's highest passing step estimates the rate
        // at a full core (linear: optimistic for both, since CPU per update falls with load).
        const full = (name) => {
          const steps = (get(r.sessions, `${name}.knee.steps`) || []).filter((x) => x.pass && x.serverCpuPct > 0);
          if (steps.length === 0) return null;
          const best = steps.reduce((a, b) => (b.rate > a.rate ? b : a));
          return best.rate / best.serverCpuPct;
        };
        const b = full('B-ack');
        const o = full(ours);
        return b && o ? [`round ${r.round}: extrapolated to a full server core from the highest passing step, ours ${Math.round(o)}/s vs B-ack ${Math.round(b)}/s = ${(o / b).toFixed(2)}×`] : [];
      },
    },
    {
      id: id('G8'), metric: label('ack p99 at half of the B-ack knee (ms)'), base: 'B-ack', unit: 'ms',
      b: (r) => get(r.sessions, 'B-ack.half.gen.ack.p99'), o: at('half.gen.ack.p99'),
      kind: 'ratio', op: '<=', target: 2, minimum: 3,
      m: ['B-ack.half', `${ours}.half`],
      extra: (r) => {
        const o = at('half')(r);
        const b = get(r.sessions, 'B-ack.half');
        const out = o && o.gen.unacked > 0 ? [`ours left ${o.gen.unacked} updates unacked at half load`] : [];
        // Latency counts from the intended send time, so a stall of the generator shows in both
        // sides' ack p99: its own lateness is printed next to the server's event-loop delay.
        if (o && b && o.gen.slip && b.gen.slip) out.push(`round ${r.round}: generator lateness p99 ${o.gen.slip.p99} ms in ours' window (B-ack's ${b.gen.slip.p99} ms); server event-loop delay max ${o.server.eld?.max ?? '—'} ms`);
        return out;
      },
    },
    {
      id: id('G9a'), metric: label('server event-loop delay p99 at half load (ms)'), base: 'B-ack', unit: 'ms',
      b: (r) => get(r.sessions, 'B-ack.half.server.eld.p99'), o: at('half.server.eld.p99'),
      kind: 'abs', op: '<=', target: 20, minimum: 50, m: [`${ours}.half`], quiet: true,
    },
  ];
  return nodeDefaults ? rows.map((g) => ({ ...g, informative: true })) : rows;
}

/** Every goal: how to read baseline and ours from a round, and the target. */
function goals(size) {
  return [
    ...updatePath(size, 'ours'),
    {
      id: 'G4', metric: `RSS per idle connected device, slope ${size.memLow}→${size.memHigh} (KB)`, base: 'B-idle', unit: 'KB',
      b: (r) => kb(get(r.sessions, 'B-idle.memory.rssPerDevice')), o: (r) => kb(get(r.sessions, 'ours.memory.rssPerDevice')),
      kind: 'ratio', op: '<=', target: 1.5, minimum: 2.0,
    },
    {
      id: 'G4h', metric: 'V8 heap per idle device: ours − baseline (KB)', base: 'B-idle', unit: 'KB',
      b: (r) => kb(get(r.sessions, 'B-idle.memory.heapPerDevice')), o: (r) => kb(get(r.sessions, 'ours.memory.heapPerDevice')),
      kind: 'diff', op: '<=', target: 1.5, minimum: 3.0,
    },
    {
      id: 'G6', metric: `herd reconnect of ${size.devices} devices, plain: completion rate (devices/s)`, base: 'B-idle', unit: '/s',
      b: (r) => get(r.sessions, 'B-idle.herd.rate'), o: (r) => get(r.sessions, 'ours.herd.rate'),
      kind: 'ratio', op: '>=', target: 0.8, minimum: 0.6,
      m: ['B-idle.herd', 'ours.herd'],
    },
    {
      id: 'G6f', metric: 'herd plain: failed registrations / retries (ours)', base: 'B-idle', unit: '',
      b: (r) => failText(get(r.sessions, 'B-idle.herd')), o: (r) => failText(get(r.sessions, 'ours.herd')),
      kind: 'count', valueOf: (r) => get(r.sessions, 'ours.herd.failed'), op: '<=', target: 0, minimum: 0,
    },
    {
      id: 'G6p', metric: 'herd plain: per-device register time p99, dispatch → ready (ms, ours)', base: 'B-idle', unit: 'ms',
      b: (r) => get(r.sessions, 'B-idle.herd.attempt.p99'), o: (r) => get(r.sessions, 'ours.herd.attempt.p99'),
      kind: 'abs', op: '<=', target: 2000, minimum: 2000,
    },
    {
      id: 'G6c', metric: 'herd plain: server CPU per reconnect (µs; not limited by the generator)', base: 'B-idle', unit: 'µs',
      b: (r) => get(r.sessions, 'B-idle.herd.cpuPerConnectUs'), o: (r) => get(r.sessions, 'ours.herd.cpuPerConnectUs'),
      kind: 'ratio', op: '<=', target: 1.25, minimum: 1.67, informative: true, m: ['B-idle.herd', 'ours.herd'], quiet: true,
    },
    {
      id: 'G7', metric: `herd reconnect of ${size.tlsDevices} devices, TLS RSA-2048: completion rate (devices/s)`, base: 'B-tls', unit: '/s',
      b: (r) => get(r.sessions, 'B-tls.herd.rate'), o: (r) => get(r.sessions, 'ours-tls.herd.rate'),
      kind: 'ratio', op: '>=', target: 0.9, minimum: 0.7,
      m: ['B-tls.herd', 'ours-tls.herd'],
    },
    {
      id: 'G7f', metric: 'herd TLS: failed registrations / retries (ours)', base: 'B-tls', unit: '',
      b: (r) => failText(get(r.sessions, 'B-tls.herd')), o: (r) => failText(get(r.sessions, 'ours-tls.herd')),
      kind: 'count', valueOf: (r) => get(r.sessions, 'ours-tls.herd.failed'), op: '<=', target: 0, minimum: 0,
    },
    {
      id: 'G7c', metric: 'herd TLS: server CPU per reconnect (µs; not limited by the generator)', base: 'B-tls', unit: 'µs',
      b: (r) => get(r.sessions, 'B-tls.herd.cpuPerConnectUs'), o: (r) => get(r.sessions, 'ours-tls.herd.cpuPerConnectUs'),
      kind: 'ratio', op: '<=', target: 1.11, minimum: 1.43, informative: true, m: ['B-tls.herd', 'ours-tls.herd'], quiet: true,
    },
    {
      id: 'G8d', metric: 'update → Node-RED sink delivery p99 at half load (ms, ours; informative)', base: '—', unit: 'ms',
      b: () => null, o: (r) => get(r.sessions, 'ours.half.server.delivery.p99'),
      kind: 'abs', op: '<=', target: 10, minimum: 25, informative: true, m: ['ours.half'], quiet: true,
    },
    // The update path again, ours with Node's default young generation (session ours-default):
    // what a user who does not follow the README's Node option gets. Informative.
    ...updatePath(size, 'ours-default'),
    {
      id: 'G9b', metric: 'server event-loop delay p99 during the plain herd (ms)', base: 'B-idle', unit: 'ms',
      b: (r) => get(r.sessions, 'B-idle.herd.server.eld.p99'), o: (r) => get(r.sessions, 'ours.herd.server.eld.p99'),
      kind: 'abs', op: '<=', target: 100, minimum: 250, m: ['ours.herd'], quiet: true,
    },
    {
      id: 'G9c', metric: 'server event-loop delay p99 during the TLS herd (ms)', base: 'B-tls', unit: 'ms',
      b: (r) => get(r.sessions, 'B-tls.herd.server.eld.p99'), o: (r) => get(r.sessions, 'ours-tls.herd.server.eld.p99'),
      kind: 'abs', op: '<=', target: 100, minimum: 250, m: ['ours-tls.herd'], quiet: true,
    },
    {
      id: 'G10', metric: `idle heartbeat CPU, ${size.pingRate} pings/s over ${size.devices} devices (% of a core)`, base: 'B-idle', unit: '%',
      b: (r) => pct(get(r.sessions, 'B-idle.heartbeat.cpuPct')), o: (r) => pct(get(r.sessions, 'ours.heartbeat.cpuPct')),
      kind: 'ratio', op: '<=', target: 1.5, minimum: 2.0, absTarget: 3, m: ['B-idle.heartbeat', 'ours.heartbeat'],
      extra: (r) => {
        const o = get(r.sessions, 'ours.heartbeat');
        const b = get(r.sessions, 'B-idle.heartbeat');
        if (!o || !b || o.idleCpuPct === undefined) return [];
        const f = (x) => (typeof x === 'number' ? x.toFixed(1) : '—');
        return [`round ${r.round}: without pings ours ${(o.idleCpuPct * 100).toFixed(2)}% vs B-idle ${(b.idleCpuPct * 100).toFixed(2)}% of a core; per ping ours ${f(o.cpuPerPingUs)} µs vs ${f(b.cpuPerPingUs)} µs`];
      },
    },
    {
      id: 'G3', metric: `fan-out of each update to ${size.subscribers} hub subscribers, telemetry API (delivered frames/s at ${size.fanoutRate} upd/s)`, base: 'B-fanout', unit: '/s',
      b: (r) => get(r.sessions, 'B-fanout.fixed.gen.deliveryRate'), o: (r) => get(r.sessions, 'ours-hub.fixed.gen.deliveryRate'),
      kind: 'ratio', op: '>=', target: 0.85, minimum: 0.7, m: ['B-fanout.fixed', 'ours-hub.fixed'],
      extra: (r) => fanoutNotes(r, 'ours-hub'),
    },
    {
      id: 'G3c', metric: 'fan-out, telemetry API: server CPU per delivered frame (µs; not limited by the rate)', base: 'B-fanout', unit: 'µs',
      b: (r) => get(r.sessions, 'B-fanout.fixed.cpuPerFrameUs'), o: (r) => get(r.sessions, 'ours-hub.fixed.cpuPerFrameUs'),
      kind: 'ratio', op: '<=', target: 1.18, minimum: 1.43, informative: true, m: ['B-fanout.fixed', 'ours-hub.fixed'], quiet: true,
    },
    {
      id: 'G3z', metric: `fan-out to ${size.subscribers} hub subscribers, Zhiting API (updates delivered per subscriber, frames/s at ${size.fanoutRate} upd/s)`, base: 'B-fanout', unit: '/s',
      b: (r) => get(r.sessions, 'B-fanout.fixed.gen.deliveryRate'), o: (r) => get(r.sessions, 'ours-zhiting.fixed.gen.deliveryRate'),
      kind: 'ratio', op: '>=', target: 0.85, minimum: 0.7, m: ['B-fanout.fixed', 'ours-zhiting.fixed'],
      extra: (r) => fanoutNotes(r, 'ours-zhiting'),
    },
    {
      id: 'G11', metric: `one hub client stops reading: the other ${size.subscribers} subscribers' delivered frames/s, with ÷ without it (telemetry API)`, base: 'ours, no slow client', unit: '/s',
      b: (r) => get(r.sessions, 'ours-hub.fixed.gen.deliveryRate'), o: (r) => get(r.sessions, 'ours-hub.slow.gen.deliveryRate'),
      kind: 'ratio', op: '>=', target: 0.85, minimum: 0.7, m: ['ours-hub.fixed', 'ours-hub.slow'],
      extra: (r) => {
        const a = get(r.sessions, 'ours-hub.fixed.gen.delivery.p99');
        const b = get(r.sessions, 'ours-hub.slow.gen.delivery.p99');
        return typeof a === 'number' && typeof b === 'number' ? [`round ${r.round}: other subscribers' delivery p99 ${b} ms with the slow client vs ${a} ms without (${a > 0 ? (b / a).toFixed(2) : '—'}×)`] : [];
      },
    },
    {
      id: 'G11m', metric: "one hub client stops reading: the server's send buffer for it, peak (KiB; cap 1 MiB)", base: '—', unit: 'KiB',
      b: () => null, o: (r) => kb(get(r.sessions, 'ours-hub.slow.slow.peakSlowBuffered')),
      kind: 'abs', op: '<=', target: 1126, minimum: 1126, m: ['ours-hub.slow'], quiet: true,
      extra: (r) => {
        const x = get(r.sessions, 'ours-hub.slow.slow');
        if (!x) return [];
        const c = get(r.sessions, 'ours-hub.fixed.hub.memory');
        const mb = (v) => (typeof v === 'number' ? `${(v / 1048576).toFixed(1)} MiB` : '—');
        const ctl = c && typeof c.rssMax === 'number' && typeof c.rssFirst === 'number' ? c.rssMax - c.rssFirst : null;
        return [`round ${r.round}: slow client ${x.cut ? `disconnected by the server${typeof x.cutAfterPauseMs === 'number' ? ` ${(x.cutAfterPauseMs / 1000).toFixed(1)} s after it stopped reading (pre-fill and quiet wait included)` : ''}` : 'not disconnected within the phase'}; kernel buffers pre-filled with ${((x.prefillBytes ?? 0) / 1048576).toFixed(1)} MiB; ${x.droppedEvents ?? 0} events dropped for it; server RSS peak +${mb(x.rssGrowth)} during the phase (+${mb(ctl)} in the same phase without it), heap +${mb(x.heapGrowth)}; other clients' buffers peaked at ${(x.peakOtherBuffered / 1024).toFixed(0)} KiB`];
      },
    },
    {
      id: 'ref', metric: `B-echo server CPU per frame at ${size.fixedRate}/s (µs; reference)`, base: 'B-echo', unit: 'µs',
      b: (r) => get(r.sessions, 'B-echo.fixed.cpuPerUpdUs'), o: () => null, kind: 'na', note: 'reference only', m: ['B-echo.fixed'],
    },
  ];
}

function fanoutNotes(r, session) {
  const f = get(r.sessions, `${session}.fixed`);
  const b = get(r.sessions, 'B-fanout.fixed');
  if (!f) return [];
  const spu = f.hub?.serialisedPerUpdate;
  const out = [`round ${r.round}: ${f.gen.subFrameRate} frames/s to ${f.gen.subscribers} subscribers, ${typeof spu === 'number' ? spu.toFixed(2) : '—'} serialisations per update, ${f.hub?.droppedEvents ?? '—'} events dropped; delivery p99 ${f.gen.delivery.p99} ms (B-fanout ${b?.gen.delivery.p99 ?? '—'} ms)`];
  return out;
}

function kb(bytes) {
  return typeof bytes === 'number' ? bytes / 1024 : undefined;
}
function pct(x) {
  return typeof x === 'number' ? x * 100 : undefined;
}
function failText(h) {
  return h ? `${h.failed} failed / ${h.retries} retries` : undefined;
}

function meets(value, op, limit) {
  if (value === null || value === undefined || !Number.isFinite(value)) return null;
  return op === '<=' ? value <= limit : value >= limit;
}

function summarise(rounds, size) {
  const rows = [];
  const flags = [];
  let valid = true;
  for (const g of goals(size)) {
    const bs = rounds.map((r) => g.b(r));
    const os = rounds.map((r) => g.o(r));
    const row = { id: g.id, metric: g.metric, baseline: g.base, unit: g.unit, kind: g.kind, perRound: [], notes: [] };
    const paths = g.m || [];
    const invalid = g.quiet ? [] : rounds.flatMap((r) => paths.flatMap((p) => get(r.sessions, `${p}.genInvalid`) || []));
    const disturbed = rounds.flatMap((r) => paths.flatMap((p) => (get(r.sessions, `${p}.disturbed`) || []).map((d) => `round ${r.round} ${p}: ${d}`)));
    if (disturbed.length > 0) row.disturbed = disturbed;
    for (const r of rounds) if (g.extra) row.notes.push(...g.extra(r));
    let values = [];
    if (g.kind === 'ratio') values = rounds.map((_, i) => (typeof bs[i] === 'number' && typeof os[i] === 'number' && bs[i] !== 0 ? os[i] / bs[i] : null));
    else if (g.kind === 'diff') values = rounds.map((_, i) => (typeof bs[i] === 'number' && typeof os[i] === 'number' ? os[i] - bs[i] : null));
    else if (g.kind === 'abs') values = os.map((x) => (typeof x === 'number' ? x : null));
    else if (g.kind === 'count') values = rounds.map((r) => g.valueOf(r) ?? null);
    row.perRound = rounds.map((_, i) => ({ baseline: bs[i] ?? null, ours: os[i] ?? null, value: values[i] ?? null }));
    row.baselineMedian = typeof bs[0] === 'string' ? bs.join('; ') : median(bs);
    row.oursMedian = typeof os[0] === 'string' ? os.join('; ') : median(os);
    row.median = median(values);
    row.spread = spread(values);
    row.target = g.target;
    row.minimum = g.minimum;
    row.op = g.op;
    if (g.kind === 'na') {
      row.result = g.note;
      row.note = g.note;
    } else if (row.median === null) {
      row.result = 'no data';
      valid = false;
      flags.push(`${g.id}: no data`);
    } else {
      const t = meets(row.median, g.op, g.target);
      const m = meets(row.median, g.op, g.minimum);
      row.result = t ? 'met' : m ? 'minimum only' : 'MISSED';
      if (g.absTarget !== undefined) {
        const abs = median(os);
        row.notes.push(`absolute: ${abs?.toFixed(2)}% of a core (target ≤ ${g.absTarget}%) ${abs <= g.absTarget ? 'met' : 'MISSED'}`);
      }
      if (row.spread && row.spread.n > 1) {
        const straddles = meets(row.spread.min, g.op, g.target) !== meets(row.spread.max, g.op, g.target);
        if (straddles) row.notes.push('rounds disagree (spread crosses the target)');
      }
      if (g.informative) row.result += ' (informative)';
    }
    if (g.knee) {
      const bb = rounds.map((r) => get(r.sessions, 'B-ack.knee.bound'));
      const ob = rounds.map((r) => get(r.sessions, 'ours.knee.bound'));
      row.bounds = { baseline: bb, ours: ob };
      if (bb.includes('generator') || bb.includes('max-rate')) {
        row.notes.push(`B-ack knee limited by ${bb.includes('generator') ? 'the generator' : 'the highest rate tried'} in some rounds: the baseline knee is a lower bound, so the ratio is an upper bound`);
        if (row.result === 'MISSED') row.result = 'MISSED (even as an upper bound)';
        else if (row.result !== 'no data') row.result = `inconclusive (${row.result} as an upper bound)`;
      }
      if (ob.includes('generator') || ob.includes('max-rate')) row.notes.push('ours knee limited by the generator / highest rate tried');
      if (ob.includes('disturbed') || bb.includes('disturbed')) row.notes.push('a knee step stayed disturbed by other processes after retries');
      if (ob.includes('latency')) row.notes.push('ours missed 50 ms p99 before its CPU saturated (latency-bound: stalls, not throughput)');
    }
    if (disturbed.length > 0) row.notes.push(`disturbed by other processes on our cores (latencies less trustworthy; CPU-time values are not affected): ${disturbed.join('; ')}`);
    if (invalid.length > 0) {
      row.invalid = [...new Set(invalid)];
      row.result = `INVALID (${row.result})`;
      valid = false;
      flags.push(`${g.id}: generator saturated: ${row.invalid.join('; ')}`);
    }
    rows.push(row);
  }
  return { rows, valid, flags };
}

function fmt(x, unit) {
  if (x === null || x === undefined) return '—';
  if (typeof x === 'string') return x;
  const digits = Math.abs(x) >= 1000 ? 0 : Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : 2;
  return `${x.toFixed(digits)}${unit && unit !== '/s' && unit !== '' ? ` ${unit}` : unit === '/s' ? '/s' : ''}`;
}

function fmtValue(row) {
  if (row.median === null || row.median === undefined) return '—';
  const f = (v) => (row.kind === 'ratio' ? `${v.toFixed(2)}×` : row.kind === 'count' ? String(v) : fmt(v, row.unit));
  const sp = row.spread && row.spread.n > 1 ? ` [${f(row.spread.min)}..${f(row.spread.max)}]` : '';
  return `${f(row.median)}${sp}`;
}

function fmtTarget(row) {
  if (row.target === undefined) return '—';
  const u = row.kind === 'ratio' ? '×' : row.kind === 'diff' ? ' KB' : row.kind === 'count' ? '' : ` ${row.unit}`;
  const op = row.op === '<=' ? '≤' : '≥';
  return row.target === row.minimum ? `${op} ${row.target}${u}` : `${op} ${row.target}${u} (min. ${row.minimum}${u})`;
}

function slowCell(x) {
  if (!x || !x.slow) return '—';
  return `${x.gen.deliveryRate}/s, ${(x.slow.peakSlowBuffered / 1024).toFixed(0)} KiB, ${x.slow.cut ? 'cut' : 'open'}`;
}

function markdown(result) {
  const { meta, summary, flags } = result;
  const p = meta.params;
  const lines = [];
  lines.push(`## coolkit bench: ${meta.size} (${p.devices} devices, ${p.rounds} round${p.rounds > 1 ? 's' : ''})`);
  lines.push('');
  lines.push(`${meta.node}, ${meta.nodeRed}, ${meta.cpus} cores (${meta.cpuModel}); ${meta.pinning.enabled ? `server pinned to core ${meta.pinning.server}, generator to core ${meta.pinning.generator} (taskset)` : `NOT pinned: ${meta.pinning.reason}`}; open files ${meta.openFiles.soft}/${meta.openFiles.hard}; ${meta.durationS} s.`);
  lines.push(`Ours runs with the Node options the README recommends: \`${(meta.oursNodeArgs || []).join(' ') || '(none)'}\`; rows G1n, G2n, G8n and G9an measure it without them (session ours-default).`);
  lines.push(`Ratios are ours ÷ baseline within a round; median [min..max] over rounds. Run: **${result.valid ? 'VALID' : 'INVALID'}**.`);
  lines.push('');
  lines.push('| Goal | Metric | Baseline | Baseline (median) | Ours (median) | Ratio / value: median [min..max] | Target | Result |');
  lines.push('|---|---|---|---|---|---|---|---|');
  for (const r of summary.rows) {
    lines.push(`| ${r.id} | ${r.metric} | ${r.baseline} | ${fmt(r.baselineMedian, r.unit)} | ${r.kind === 'na' && r.oursMedian === null ? r.note : fmt(r.oursMedian, r.unit)} | ${r.kind === 'na' ? '—' : fmtValue(r)} | ${fmtTarget(r)} | ${r.result} |`);
  }
  const notes = summary.rows.filter((r) => r.notes.length > 0);
  if (notes.length > 0) {
    lines.push('');
    lines.push('Notes:');
    for (const r of notes) for (const n of [...new Set(r.notes)]) lines.push(`- ${r.id}: ${n}`);
  }
  lines.push('');
  lines.push('Per round (absolute values):');
  lines.push('');
  lines.push('| Round | B-ack knee | ours knee | ours knee, Node defaults | half load | B-ack cpu/upd | ours cpu/upd | B-echo cpu/upd | ours ack p99 (half) | B-ack ack p99 (half) | herd plain B/ours | herd TLS B/ours | fan-out frames/s B / telemetry / zhiting | slow client: others frames/s, buffer peak, cut |');
  lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of result.rounds) {
    const s = r.sessions;
    const knee = (k) => (k ? `${k.knee}/s (${k.bound})` : '—');
    const us = (x) => (typeof x === 'number' ? `${x.toFixed(1)} µs` : '—');
    const ms = (x) => (typeof x === 'number' ? `${x} ms` : '—');
    const herd = (a, b) => `${a ? `${a.rate}/s` : '—'} / ${b ? `${b.rate}/s` : '—'}`;
    lines.push(`| ${r.round} | ${knee(s['B-ack']?.knee)} | ${knee(s.ours?.knee)} | ${knee(s['ours-default']?.knee)} | ${r.halfRate}/s | ${us(s['B-ack']?.fixed?.cpuPerUpdUs)} | ${us(s.ours?.fixed?.cpuPerUpdUs)} | ${us(s['B-echo']?.fixed?.cpuPerUpdUs)} | ${ms(s.ours?.half?.gen.ack.p99)} | ${ms(s['B-ack']?.half?.gen.ack.p99)} | ${herd(s['B-idle']?.herd, s.ours?.herd)} | ${herd(s['B-tls']?.herd, s['ours-tls']?.herd)} | ${s['B-fanout']?.fixed?.gen.deliveryRate ?? '—'} / ${s['ours-hub']?.fixed?.gen.deliveryRate ?? '—'} / ${s['ours-zhiting']?.fixed?.gen.deliveryRate ?? '—'} | ${slowCell(s['ours-hub']?.slow)} |`);
  }
  if (flags.length > 0) {
    lines.push('');
    lines.push('Flags:');
    for (const f of [...new Set(flags)]) lines.push(`- ${f}`);
  }
  lines.push('');
  return lines.join('\n');
}

/** The MQTT backbone section (run.js `mqttBackbone`), or '' when it did not run. */
function mqttMarkdown(m) {
  if (!m) return '';
  if (m.error) return `\n### MQTT backbone\n\nnot measured: ${m.error}\n`;
  const row = (name, x) => `| ${name} | ${x.updatesPerSec} | ${x.p50Ms} | ${x.p99Ms} |${x.lost ? ` ${x.lost} lost` : ''}`;
  return [
    '',
    '### MQTT backbone',
    '',
    `Closed loop, ${m.window} updates in flight over ${m.devices} devices, ${m.updates} updates per path; clouds in one process with a private Mosquitto on 127.0.0.1.`,
    '',
    '| path | updates/s | p50 ms | p99 ms |',
    '|---|---|---|---|',
    row('single instance (device -> A -> A\'s flow event)', m.single),
    row('two instances (device -> B -> broker -> A\'s flow event)', m.broker),
    row('device -> B -> broker -> plain MQTT subscriber', m.subscriber),
    '',
    `Through the broker ÷ single instance: ${m.rateRatio}× the update rate; added latency p50 ${m.addedP50Ms} ms, p99 ${m.addedP99Ms} ms.`,
    '',
  ].join('\n');
}

module.exports = { summarise, markdown, mqttMarkdown, median, spread };
