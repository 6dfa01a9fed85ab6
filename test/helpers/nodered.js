'use strict';
// node-red-node-test-helper bound to the Node-RED runtime under test: `node-red` (4.1.x) by
// default, or the package named in COOLKIT_NODE_RED (`node-red-5` runs the 5.x line on Node 22).
const fs = require('node:fs');
const path = require('node:path');
const helper = require('node-red-node-test-helper');
const { tmpDir, stateDirWithCert } = require('./cloud');

const runtime = process.env.COOLKIT_NODE_RED || 'node-red';
helper.init(require.resolve(runtime), { userDir: tmpDir('coolkit-nr-') });

const dist = path.resolve(__dirname, '../../dist/nodes');
const nodes = {
  server: require(path.join(dist, 'coolkit-server.js')),
  deviceIn: require(path.join(dist, 'sonoff-device-in.js')),
  deviceOut: require(path.join(dist, 'sonoff-device-out.js')),
};
const allNodes = [nodes.server, nodes.deviceIn, nodes.deviceOut];

function runtimeVersion() {
  return require(`${runtime}/package.json`).version;
}

/**
 * A fresh user directory for the next helper.load(), with the run's certificate where
 * coolkit-server keeps it (<userDir>/coolkit/tls), so a `tls: 'auto'` server starts without
 * generating one. Sets it as the helper's userDir and resolves with its path.
 */
async function useUserDirWithCert() {
  const userDir = await stateDirWithCert();
  fs.cpSync(path.join(userDir, 'tls'), path.join(userDir, 'coolkit', 'tls'), { recursive: true });
  helper.settings({ userDir });
  return userDir;
}

/** Every status a node has shown, oldest first. */
function statuses(node) {
  return helper._NodePrototype.status.getCalls().filter((c) => c.thisValue === node).map((c) => c.args[0]);
}

async function waitStatus(node, predicate, ms = 10000) {
  const until = Date.now() + ms;
  for (;;) {
    const all = statuses(node);
    const last = all[all.length - 1];
    if (last && predicate(last)) return last;
    if (Date.now() > until) throw new Error(`status not reached; last: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Resolve with the next message a helper node receives. */
function nextInput(node, ms = 10000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no message at ${node.id} within ${ms} ms`)), ms);
    node.once('input', (msg) => { clearTimeout(t); resolve(msg); });
  });
}

module.exports = { helper, nodes, allNodes, runtime, runtimeVersion, statuses, waitStatus, nextInput, useUserDirWithCert };
