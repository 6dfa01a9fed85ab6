'use strict';
// node-red-node-test-helper bound to the Node-RED runtime under test: `node-red` (4.1.x) by
// default, or the package named in COOLKIT_NODE_RED (`node-red-5` runs the 5.x line on Node 22).
const path = require('node:path');
const helper = require('node-red-node-test-helper');
const { tmpDir } = require('./cloud');

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

module.exports = { helper, nodes, allNodes, runtime, runtimeVersion, statuses, waitStatus, nextInput };
