#!/usr/bin/env node
'use strict';
// Summarise a V8 .cpuprofile (from `node --cpu-prof`, e.g. `run.js --profile`): self and
// inclusive time per function and self time per file, optionally for a time window only.
//
//   node test/bench/profile-summary.js FILE.cpuprofile [--top 30] [--from-ms A] [--to-ms B] [--last-ms L]
//
// --from-ms/--to-ms are offsets from the start of the profile; --last-ms keeps only the last L ms
// (the bench stops a server right after its last phase). Paths are shortened to node_modules/...,
// dist/... or node:...; "(idle)" is the main thread waiting for I/O.
const fs = require('node:fs');

function parse(argv) {
  const o = { file: null, top: 30, from: 0, to: Infinity, last: 0 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === '--top') o.top = Number(argv[++i]);
    else if (k === '--from-ms') o.from = Number(argv[++i]);
    else if (k === '--to-ms') o.to = Number(argv[++i]);
    else if (k === '--last-ms') o.last = Number(argv[++i]);
    else o.file = k;
  }
  if (!o.file) throw new Error('usage: profile-summary.js FILE.cpuprofile [--top N] [--from-ms A] [--to-ms B] [--last-ms L]');
  return o;
}

function shortUrl(url) {
  if (!url) return '';
  return url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, 'node_modules/').replace(/^.*\/(dist\/(src|nodes)\/)/, '$1').replace(/^.*\/test\/bench\//, 'test/bench/');
}

function summarise(profile, { from = 0, to = Infinity, last = 0, top = 30 } = {}) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children || []) parent.set(c, n.id);
  const times = [];
  let t = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] || 0;
    times.push(t);
  }
  const endUs = t;
  const fromUs = last > 0 ? endUs - last * 1000 : from * 1000;
  const toUs = last > 0 ? endUs : to * 1000;
  const selfFn = new Map();
  const inclFn = new Map();
  const selfFile = new Map();
  let total = 0;
  const label = (n) => {
    const cf = n.callFrame;
    return `${cf.functionName || '(anonymous)'} ${shortUrl(cf.url)}${cf.url ? `:${cf.lineNumber + 1}` : ''}`.trim();
  };
  for (let i = 0; i < profile.samples.length; i++) {
    if (times[i] < fromUs || times[i] > toUs) continue;
    const d = profile.timeDeltas[i + 1] || profile.timeDeltas[i] || 0;
    total += d;
    const node = byId.get(profile.samples[i]);
    const l = label(node);
    selfFn.set(l, (selfFn.get(l) || 0) + d);
    const file = shortUrl(node.callFrame.url) || node.callFrame.functionName;
    selfFile.set(file, (selfFile.get(file) || 0) + d);
    const seen = new Set();
    for (let id = node.id; id !== undefined; id = parent.get(id)) {
      const k = label(byId.get(id));
      if (seen.has(k)) continue;
      seen.add(k);
      inclFn.set(k, (inclFn.get(k) || 0) + d);
    }
  }
  const rank = (m) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, v]) => ({ name: k, ms: Math.round(v / 1000), pct: Math.round((v / total) * 1000) / 10 }));
  const idle = (selfFn.get('(idle)') || 0);
  return { windowMs: Math.round(total / 1000), busyMs: Math.round((total - idle) / 1000), self: rank(selfFn), inclusive: rank(inclFn), files: rank(selfFile) };
}

if (require.main === module) {
  const o = parse(process.argv.slice(2));
  const s = summarise(JSON.parse(fs.readFileSync(o.file, 'utf8')), o);
  console.log(`window ${s.windowMs} ms, main thread busy ${s.busyMs} ms`);
  for (const [title, rows] of [['self time by function', s.self], ['inclusive time by function', s.inclusive], ['self time by file', s.files]]) {
    console.log(`\n--- ${title}`);
    for (const r of rows) console.log(`${String(r.pct).padStart(5)}%  ${String(r.ms).padStart(6)} ms  ${r.name}`);
  }
}

module.exports = { summarise };
