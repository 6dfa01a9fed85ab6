#!/usr/bin/env node
'use strict';
// Runs every test suite CI checks, each in its own process with the right Node and Node-RED:
//   - unit, protocol and cloud tests on the machine's Node (20)
//   - node tests on Node-RED 4.1.x (Node 20) and Node-RED 5.x (Node 22 from the `node22` devDependency)
//   - end-to-end tests: the `npm pack` tarball installed into a fresh Node-RED user directory
// and prints one closing line: "tests: N passed, N failed, N skipped".
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const mocha = require.resolve('mocha/bin/mocha.js');
// npm puts node_modules/.bin first on PATH, where the node22 package links `node`; the Node that
// runs npm itself is the machine's.
const node20 = process.env.npm_node_execpath || process.execPath;
const node22 = path.join(root, 'node_modules', 'node22', 'bin', 'node');

const only = process.argv.slice(2);
const suites = [
  { name: 'unit + cloud + hub', node: node20, files: ['test/unit/**/*.test.js', 'test/cloud/**/*.test.js', 'test/hub/**/*.test.js', 'test/hardening/**/*.test.js', 'test/bench/**/*.test.js'] },
  { name: 'nodes, Node-RED 4.1', node: node20, files: ['test/nodes/**/*.test.js'], env: { COOLKIT_NODE_RED: 'node-red' } },
  { name: 'nodes, Node-RED 5', node: node22, files: ['test/nodes/**/*.test.js'], env: { COOLKIT_NODE_RED: 'node-red-5' } },
  { name: 'e2e, Node-RED 4.1', node: node20, files: ['test/e2e/**/*.test.js'], env: { COOLKIT_NODE_RED: 'node-red' } },
  { name: 'e2e, Node-RED 5', node: node22, files: ['test/e2e/**/*.test.js'], env: { COOLKIT_NODE_RED: 'node-red-5' } },
  // several Node-RED processes sharing a real Mosquitto (Debian's, started by the tests themselves)
  { name: 'cluster (mqtt), Node-RED 4.1', node: node20, files: ['test/cluster/**/*.test.js'], env: { COOLKIT_NODE_RED: 'node-red' } },
  { name: 'editor in chromium', node: node20, files: ['test/browser/**/*.test.js'], env: { COOLKIT_NODE_RED: 'node-red' } },
].filter((s) => only.length === 0 || only.some((o) => s.name.includes(o)));

function run(suite) {
  return new Promise((resolve) => {
    if (!fs.existsSync(suite.node)) {
      console.error(`\n[${suite.name}] missing Node binary ${suite.node}: run npm install (the node22 devDependency provides Node 22)`);
      resolve({ passed: 0, failed: 1, skipped: 0, code: 1 });
      return;
    }
    console.log(`\n=== ${suite.name} (${suite.node}) ===`);
    const files = suite.files.filter((glob) => fs.existsSync(path.join(root, glob.split('/**')[0])));
    if (files.length === 0) {
      console.log(`\n=== ${suite.name}: no test files yet ===`);
      resolve({ passed: 0, failed: 0, skipped: 0, code: 0 });
      return;
    }
    const child = spawn(suite.node, [mocha, '--reporter', 'spec', '--exit', ...files], {
      cwd: root,
      env: { ...process.env, ...suite.env, FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      process.stdout.write(chunk);
    });
    child.on('close', (code) => {
      const count = (word) => Number((out.match(new RegExp(`(\\d+) ${word}`)) || [0, 0])[1]);
      const result = { passed: count('passing'), failed: count('failing'), skipped: count('pending'), code };
      // mocha's failure report (everything from "N failing" on), repeated at the very end of the run
      // so a CI log that keeps only its tail still says what failed and why
      const at = out.search(/\n\s*\d+ failing/);
      if (at >= 0) result.failures = out.slice(at).trim().slice(0, 6000);
      if (code !== 0 && result.failed === 0) result.failed = 1; // a crash counts as a failure
      resolve(result);
    });
  });
}

(async () => {
  const totals = { passed: 0, failed: 0, skipped: 0 };
  const rows = [];
  const reports = [];
  for (const suite of suites) {
    const r = await run(suite);
    reports.push({ name: suite.name, failures: r.failures });
    rows.push(`${suite.name.padEnd(24)} ${String(r.passed).padStart(4)} passed ${String(r.failed).padStart(3)} failed ${String(r.skipped).padStart(3)} skipped`);
    totals.passed += r.passed;
    totals.failed += r.failed;
    totals.skipped += r.skipped;
  }
  for (const { name, failures } of reports) {
    if (failures) console.log(`\n--- failures in ${name} ---\n${failures}`);
  }
  console.log(`\n${rows.join('\n')}`);
  console.log(`tests: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
  process.exit(totals.failed > 0 ? 1 : 0);
})();
