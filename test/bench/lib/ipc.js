'use strict';
// Request/response over the Node IPC channel between the bench driver and its children
// (load generator, baseline servers, Node-RED). Child side: `serve(handlers)`; driver side:
// `connect(child)` returns `rpc(cmd, args, timeoutMs)`.

/** Child side: answer {id, cmd, args} with {id, ok, result|error}. */
function serve(handlers) {
  process.on('message', async (msg) => {
    if (!msg || typeof msg !== 'object' || msg.id === undefined) return;
    const fn = handlers[msg.cmd];
    let reply;
    try {
      if (!fn) throw new Error(`unknown command ${msg.cmd}`);
      reply = { id: msg.id, ok: true, result: await fn(msg.args || {}) };
    } catch (err) {
      reply = { id: msg.id, ok: false, error: String((err && err.stack) || err) };
    }
    if (process.connected) process.send(reply);
  });
  // The driver going away ends the child: a bench never leaves servers behind.
  process.on('disconnect', () => process.exit(0));
}

/** Driver side: an rpc function bound to one child. */
function connect(child, name = 'child') {
  let next = 1;
  const waiting = new Map();
  child.on('message', (msg) => {
    const w = msg && waiting.get(msg.id);
    if (!w) return;
    waiting.delete(msg.id);
    clearTimeout(w.timer);
    if (msg.ok) w.resolve(msg.result);
    else w.reject(new Error(`${name}: ${msg.error}`));
  });
  child.on('exit', (code, signal) => {
    for (const w of waiting.values()) {
      clearTimeout(w.timer);
      w.reject(new Error(`${name} exited (${code ?? signal}) during ${w.cmd}`));
    }
    waiting.clear();
  });
  return function rpc(cmd, args = {}, timeoutMs = 120_000) {
    return new Promise((resolve, reject) => {
      if (!child.connected) {
        reject(new Error(`${name} is not running (${cmd})`));
        return;
      }
      const id = next++;
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error(`${name}: ${cmd} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      waiting.set(id, { resolve, reject, timer, cmd });
      child.send({ id, cmd, args });
    });
  };
}

module.exports = { serve, connect };
