#!/usr/bin/env node
'use strict';
// `npm start`: a local Node-RED on http://127.0.0.1:1880 with this package, the example flows
// and one simulated Sonoff device per family, connected over TLS, so a newcomer sees it working at once.
// State lives in .demo/ (delete it to start over). Ports: DEMO_PORT (1880), DEMO_CLOUD_PORT (8443).
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const https = require('node:https');
const { SimulatedDevice, attachTimerRunner } = require('../dist/src/sim');

const root = path.resolve(__dirname, '..');
const userDir = path.join(root, '.demo');
const uiPort = Number(process.env.DEMO_PORT || 1880);
const cloudPort = Number(process.env.DEMO_CLOUD_PORT || 8443);
/** One device of each common family; the examples address 1000aa0001 (basic) and 1000aa0015 (TH16). */
const DEVICES = [
  { deviceid: '1000aa0001', profile: 'basic' },
  { deviceid: '1000aa0004', profile: '4ch' },
  { deviceid: '1000aa0015', profile: 'th16' },
  { deviceid: '1000aa0032', profile: 'pow' },
  { deviceid: '1000aa0028', profile: 'rfbridge' },
];

/** Node types this package registers (package.json) and all types it defines (nodes/*.html). */
function packageTypes() {
  const registered = new Set(Object.keys(require('../package.json')['node-red'].nodes));
  const defined = new Set();
  for (const f of fs.readdirSync(path.join(root, 'nodes')).filter((n) => n.endsWith('.html'))) {
    const m = /registerType\(\s*['"]([^'"]+)['"]/.exec(fs.readFileSync(path.join(root, 'nodes', f), 'utf8'));
    if (m) defined.add(m[1]);
  }
  return { registered, defined };
}

function demoFlows() {
  const { registered, defined } = packageTypes();
  const tab = { id: 'c0011e0bdem0tab1', type: 'tab', label: 'CoolKit demo', info: 'The package examples, with one simulated device per family (basic, 4-channel, TH16, POW, RF bridge) connected to the local cloud.' };
  const seen = new Set();
  const nodes = [tab];
  let dy = 0;
  for (const file of fs.readdirSync(path.join(root, 'examples')).filter((f) => f.endsWith('.json')).sort()) {
    const flow = JSON.parse(fs.readFileSync(path.join(root, 'examples', file), 'utf8'));
    // An example for a node that is not registered yet would stop every flow from starting.
    if (flow.some((n) => defined.has(n.type) && !registered.has(n.type))) continue;
    let maxY = 0;
    for (const n of flow) {
      if (seen.has(n.id)) continue; // the examples share their server config node
      seen.add(n.id);
      if (n.type === 'coolkit-server') {
        nodes.push({ ...n, bind: '127.0.0.1', port: cloudPort, advertiseHost: '127.0.0.1' });
      } else if (typeof n.x === 'number') {
        nodes.push({ ...n, z: tab.id, y: n.y + dy });
        maxY = Math.max(maxY, n.y);
      } else nodes.push(n);
    }
    dy += maxY + 80;
  }
  return nodes;
}

function prepare() {
  fs.mkdirSync(path.join(userDir, 'node_modules'), { recursive: true });
  const link = path.join(userDir, 'node_modules', 'node-red-contrib-coolkit');
  if (!fs.existsSync(link)) fs.symlinkSync(root, link, 'dir');
  if (!fs.existsSync(path.join(userDir, 'package.json'))) {
    fs.writeFileSync(path.join(userDir, 'package.json'), JSON.stringify({ name: 'coolkit-demo', private: true, dependencies: { 'node-red-contrib-coolkit': 'file:..' } }, null, 2));
  }
  const flowFile = path.join(userDir, 'flows.json');
  if (!fs.existsSync(flowFile)) fs.writeFileSync(flowFile, JSON.stringify(demoFlows(), null, 2));
  const settings = { uiHost: '127.0.0.1', uiPort, flowFile: 'flows.json', credentialSecret: 'coolkit-demo', diagnostics: { enabled: false }, editorTheme: { tours: false } };
  fs.writeFileSync(path.join(userDir, 'settings.js'), `module.exports = ${JSON.stringify(settings, null, 2)};\n`);
}

function cloudListening() {
  return new Promise((resolve) => {
    const req = https.request({ host: '127.0.0.1', port: cloudPort, path: '/dispatch/device', method: 'GET', rejectUnauthorized: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

async function main() {
  prepare();
  const nodeBin = process.env.npm_node_execpath || process.execPath;
  const red = require.resolve('node-red/red.js');
  console.log(`Starting Node-RED ${require('node-red/package.json').version} with node-red-contrib-coolkit (user directory ${userDir})`);
  // The young-generation size the README recommends for a busy installation ("Performance").
  const child = spawn(nodeBin, ['--max-semi-space-size=32', red, '-u', userDir, '-s', path.join(userDir, 'settings.js')], { stdio: 'inherit', cwd: userDir });
  const sims = [];
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await Promise.all(sims.map((s) => s.stop().catch(() => undefined)));
    child.kill('SIGINT');
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  child.on('exit', (code) => {
    void Promise.all(sims.map((s) => s.stop().catch(() => undefined))).then(() => process.exit(code ?? 0));
  });

  const until = Date.now() + 60_000;
  while (!(await cloudListening())) {
    if (stopping || child.exitCode !== null) return;
    if (Date.now() > until) {
      console.error(`The local cloud did not start on port ${cloudPort}; see the Node-RED log above (is the port taken? set DEMO_CLOUD_PORT).`);
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  for (const { deviceid, profile } of DEVICES) {
    const sim = new SimulatedDevice({ server: `https://127.0.0.1:${cloudPort}`, deviceid, profile, reportIntervalMs: 60_000, connectHost: '127.0.0.1' });
    attachTimerRunner(sim); // the device runs the timers sonoff-timer gives it, on the real clock
    sim.on('command', (params) => console.log(`[sim ${deviceid}] command ${JSON.stringify(params)}`));
    sims.push(sim);
    sim.start().catch(() => undefined);
  }
  console.log(`\n  Open http://127.0.0.1:${uiPort}  (${DEVICES.length} simulated devices connect to the local cloud on port ${cloudPort})\n  Press Ctrl+C to stop.\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
