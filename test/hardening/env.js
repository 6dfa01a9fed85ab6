'use strict';
// The hardening suite's environment: one real Node-RED process running the packed module with a
// flow that opens every listener of the package (dispatch HTTPS + device/app WebSocket, the
// Zhiting bridge, the telemetry API, the firmware server), plus raw clients for hostile input.
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');
const tls = require('node:tls');
const WebSocket = require('ws');
const { freePort } = require('../helpers/nrprocess');
const { request, sleep, waitFor } = require('../helpers/raw');
const { image: espImage } = require('../helpers/firmware');

const MODEL = 'ITA-GZ1-GL';
const APP_APIKEY = 'a0000000-0000-4000-8000-0000000000aa';
const APP_TOKEN = 'hardening-app-token-0123456789';
const ZHITING_TOKEN = 'hardening-zhiting-token-0123456789';
const JWT_SECRET = 'hardening-jwt-secret-0123456789-abcdefghij';
const FACTORY = (n) => `f0000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

/** Ports and files of one environment. */
async function allocate(userDir) {
  return {
    userDir,
    cloudPort: await freePort(),
    zhitingPort: await freePort(),
    telemetryPort: await freePort(),
    otaPort: await freePort(),
    eventsFile: path.join(userDir, 'events.jsonl'),
    otaFile: path.join(userDir, 'ota.jsonl'),
  };
}

/** The flow: every listener of the package, a report sink, and HTTP endpoints that drive commands and OTA. */
function flow(env, serverOverrides = {}) {
  return [
    { id: 'tab1', type: 'tab', label: 'hardening' },
    {
      id: 'srv', type: 'coolkit-server', name: 'hardening cloud', bind: '127.0.0.1', port: String(env.cloudPort), advertiseHost: '127.0.0.1',
      tls: 'auto', legacyTls: true, hbInterval: '145', commandTimeout: '3', uiActiveInterval: '0', admission: 'open', appApikey: APP_APIKEY,
      credentials: { appToken: APP_TOKEN },
      ...serverOverrides,
    },
    // Reports -> a file, so the test sees what a flow sees.
    { id: 'in', type: 'sonoff-device-in', z: 'tab1', server: 'srv', deviceid: '', events: 'all', liveMetering: false, x: 100, y: 100, wires: [['fmt']] },
    { id: 'fmt', type: 'change', z: 'tab1', x: 300, y: 100, rules: [{ t: 'set', p: 'payload', pt: 'msg', to: '{"topic":topic,"event":event,"payload":payload,"state":state}', tot: 'jsonata' }], wires: [['file']] },
    { id: 'file', type: 'file', z: 'tab1', filename: env.eventsFile, filenameType: 'str', appendNewline: true, createDir: true, overwriteFile: 'false', encoding: 'none', x: 500, y: 100, wires: [] },
    // Commands: POST /cmd {deviceid, payload} -> sonoff-device-out -> 200 "acked" or 502 {code,...}.
    { id: 'httpin', type: 'http in', z: 'tab1', url: '/cmd', method: 'post', upload: false, x: 100, y: 200, wires: [['unwrap']] },
    { id: 'unwrap', type: 'change', z: 'tab1', x: 200, y: 200, rules: [{ t: 'set', p: 'deviceid', pt: 'msg', to: 'payload.deviceid', tot: 'msg' }, { t: 'set', p: 'payload', pt: 'msg', to: 'payload.payload', tot: 'msg' }], wires: [['out']] },
    { id: 'out', type: 'sonoff-device-out', z: 'tab1', server: 'srv', deviceid: '', offline: 'fail', x: 300, y: 200, wires: [] },
    { id: 'complete', type: 'complete', z: 'tab1', scope: ['out'], uncaught: false, x: 100, y: 300, wires: [['okres']] },
    { id: 'okres', type: 'change', z: 'tab1', x: 300, y: 300, rules: [{ t: 'set', p: 'payload', pt: 'msg', to: 'acked', tot: 'str' }], wires: [['res']] },
    { id: 'catch', type: 'catch', z: 'tab1', scope: ['out'], uncaught: false, x: 100, y: 400, wires: [['errres']] },
    { id: 'errres', type: 'change', z: 'tab1', x: 300, y: 400, rules: [{ t: 'set', p: 'payload', pt: 'msg', to: 'error', tot: 'msg' }, { t: 'set', p: 'statusCode', pt: 'msg', to: '502', tot: 'num' }], wires: [['res']] },
    { id: 'res', type: 'http response', z: 'tab1', statusCode: '', headers: {}, x: 500, y: 300, wires: [] },
    // The hub APIs on ports of their own.
    { id: 'zb', type: 'zhiting-bridge', z: 'tab1', server: 'srv', listen: 'port', bind: '127.0.0.1', port: String(env.zhitingPort), path: '/ws', origins: 'https://dash.example', x: 100, y: 500, wires: [[]], credentials: { token: ZHITING_TOKEN } },
    { id: 'ta', type: 'telemetry-alert', z: 'tab1', server: 'srv', listen: 'port', bind: '127.0.0.1', port: String(env.telemetryPort), path: '/ws', origins: '', rules: [], x: 100, y: 600, wires: [[]], credentials: { jwtSecret: JWT_SECRET } },
    // Firmware: POST /ota {action,...} -> sonoff-ota (its own HTTP port) -> 200 "done" or 502 error; progress -> a file.
    { id: 'otain', type: 'http in', z: 'tab1', url: '/ota', method: 'post', upload: false, x: 100, y: 700, wires: [['ota']] },
    { id: 'ota', type: 'sonoff-ota', z: 'tab1', server: 'srv', deviceid: '', version: '', port: String(env.otaPort), maxConcurrent: '2', timeout: '30', x: 300, y: 700, wires: [['otafmt']] },
    { id: 'otafmt', type: 'change', z: 'tab1', x: 500, y: 700, rules: [{ t: 'delete', p: 'req', pt: 'msg' }, { t: 'delete', p: 'res', pt: 'msg' }], wires: [['otafile']] },
    { id: 'otafile', type: 'file', z: 'tab1', filename: env.otaFile, filenameType: 'str', appendNewline: true, createDir: true, overwriteFile: 'false', encoding: 'none', x: 700, y: 700, wires: [] },
    { id: 'otadone', type: 'complete', z: 'tab1', scope: ['ota'], uncaught: false, x: 100, y: 800, wires: [['otaok']] },
    { id: 'otaok', type: 'change', z: 'tab1', x: 300, y: 800, rules: [{ t: 'set', p: 'payload', pt: 'msg', to: 'done', tot: 'str' }], wires: [['otares']] },
    { id: 'otacatch', type: 'catch', z: 'tab1', scope: ['ota'], uncaught: false, x: 100, y: 900, wires: [['otaerr']] },
    { id: 'otaerr', type: 'change', z: 'tab1', x: 300, y: 900, rules: [{ t: 'set', p: 'payload', pt: 'msg', to: 'error', tot: 'msg' }, { t: 'set', p: 'statusCode', pt: 'msg', to: '502', tot: 'num' }], wires: [['otares']] },
    { id: 'otares', type: 'http response', z: 'tab1', statusCode: '', headers: {}, x: 500, y: 850, wires: [] },
  ];
}

/** The complete lines of a JSON-lines file a flow appends to (a last line still being written is left out). */
function readJsonLines(file) {
  if (!fs.existsSync(file)) return [];
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  lines.pop(); // '' after the last newline, or a line not finished yet
  return lines.filter(Boolean).map((l) => JSON.parse(l));
}

/** Resident set size of a process, bytes (Linux). */
function rssOf(pid) {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Source addresses on the loopback, one per hostile client, so per-address limits of one case do not touch the next. */
let addrCounter = 0;
function nextAddress() {
  addrCounter++;
  return `127.0.${10 + Math.floor(addrCounter / 250)}.${(addrCounter % 250) + 1}`;
}

/**
 * A WebSocket client that records every frame and the close, for hostile input: never throws
 * from its callbacks, and `opened` resolves with the upgrade outcome (open, or the HTTP refusal).
 */
class Probe {
  constructor(url, options = {}) {
    this.frames = [];
    this.closed = null;
    this.waiters = [];
    this.ws = new WebSocket(url, { rejectUnauthorized: false, perMessageDeflate: false, handshakeTimeout: 5000, localAddress: options.localAddress ?? nextAddress(), ...options });
    this.opened = new Promise((resolve) => {
      this.ws.once('open', () => resolve({ open: true }));
      this.ws.once('unexpected-response', (_req, res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json;
          try { json = JSON.parse(text); } catch { json = undefined; }
          resolve({ open: false, status: res.statusCode, headers: res.headers, text, json });
        });
        res.on('error', () => resolve({ open: false, status: res.statusCode, headers: res.headers }));
      });
      this.ws.once('error', (err) => resolve({ open: false, error: err.message }));
    });
    this.ws.on('message', (data, isBinary) => {
      this.frames.push(isBinary ? data : data.toString('utf8'));
      this.notify();
    });
    this.ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.notify();
    });
    this.ws.on('error', () => {});
  }

  notify() {
    for (const w of [...this.waiters]) w();
  }

  async open() {
    const r = await this.opened;
    if (!r.open) throw new Error(`upgrade refused: ${r.status ?? ''} ${r.error ?? r.text ?? ''}`);
    return this;
  }

  send(data, options) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(typeof data === 'string' || Buffer.isBuffer(data) ? data : JSON.stringify(data), options);
  }

  /** Parsed frames (text that is not JSON stays text). */
  get messages() {
    return this.frames.map((f) => {
      if (typeof f !== 'string') return f;
      try { return JSON.parse(f); } catch { return f; }
    });
  }

  /** Wait until `pick(messages)` returns something (not undefined), or the socket closed. */
  until(pick, ms = 5000) {
    return new Promise((resolve, reject) => {
      let t;
      const check = () => {
        const v = pick(this.messages, this);
        if (v !== undefined && v !== false) {
          clearTimeout(t);
          this.waiters.splice(this.waiters.indexOf(check), 1);
          resolve(v);
        }
      };
      t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(check), 1);
        reject(new Error(`condition not met within ${ms} ms; frames: ${this.frames.slice(-4).map((f) => String(f).slice(0, 200)).join(' | ')}; closed: ${JSON.stringify(this.closed)}`));
      }, ms);
      this.waiters.push(check);
      check();
    });
  }

  /** The n-th frame (from 0) counting from `from`. */
  async frameAfter(from, ms = 5000) {
    return this.until((msgs) => (msgs.length > from ? msgs[from] : undefined), ms);
  }

  /** Send and wait for the next frame. */
  async ask(data, ms = 5000) {
    const n = this.frames.length;
    this.send(data);
    return this.frameAfter(n, ms);
  }

  waitClose(ms = 5000) {
    return this.until((_m, self) => self.closed ?? undefined, ms);
  }

  terminate() {
    try { this.ws.terminate(); } catch { /* gone */ }
  }
}

/**
 * A raw TCP (or TLS) connection that records what the server says and when it closes; for
 * malformed HTTP, half-open connections and slowloris.
 */
class RawConn {
  constructor({ port, tls: useTls = false, localAddress = nextAddress() }) {
    this.data = Buffer.alloc(0);
    this.closedAt = 0;
    this.openedAt = Date.now();
    this.error = undefined;
    this.socket = useTls
      ? tls.connect({ host: '127.0.0.1', port, localAddress, rejectUnauthorized: false })
      : net.connect({ host: '127.0.0.1', port, localAddress });
    this.ready = new Promise((resolve) => this.socket.once(useTls ? 'secureConnect' : 'connect', resolve));
    this.socket.on('data', (d) => { this.data = Buffer.concat([this.data, d]); });
    this.socket.on('error', (err) => { this.error = err.code ?? err.message; });
    this.closed = new Promise((resolve) => this.socket.on('close', () => { this.closedAt = Date.now(); resolve(); }));
  }

  get text() {
    return this.data.toString('utf8');
  }

  /** The HTTP status of the answer, if any. */
  get status() {
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(this.text);
    return m ? Number(m[1]) : undefined;
  }

  /** The body of the answer parsed as JSON, if it is. */
  get json() {
    const i = this.text.indexOf('\r\n\r\n');
    if (i < 0) return undefined;
    try { return JSON.parse(this.text.slice(i + 4)); } catch { return undefined; }
  }

  write(data) {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(data);
  }

  /** Write `text` one byte every `everyMs` until the socket closes or `stop()` is called. */
  drip(text, everyMs = 1000) {
    let i = 0;
    this.dripTimer = setInterval(() => {
      if (this.closedAt || i >= text.length) {
        clearInterval(this.dripTimer);
        return;
      }
      this.write(text[i++]);
    }, everyMs);
  }

  /** Resolve true when closed within `ms`, false otherwise. */
  async closedWithin(ms) {
    let t;
    const timeout = new Promise((resolve) => { t = setTimeout(() => resolve(false), ms); });
    const r = await Promise.race([this.closed.then(() => true), timeout]);
    clearTimeout(t);
    return r;
  }

  destroy() {
    clearInterval(this.dripTimer);
    this.socket.destroy();
  }
}

/** A directory with a user1/user2 image pair, for `{"action":"add","path":...}`. */
function firmwareDir(root, version) {
  const dir = path.join(root, `fw-${version}`);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, `user1.${version}.bin`), espImage(6000, `${version}-1`));
  fs.writeFileSync(path.join(dir, `user2.${version}.bin`), espImage(6000, `${version}-2`));
  return dir;
}

/** The device list as the admin API gives it, without what changes with connections. */
function storedView(list) {
  return list
    .map((d) => ({ deviceid: d.deviceid, name: d.name, model: d.model, romVersion: d.romVersion, capabilities: d.capabilities }))
    .sort((a, b) => a.deviceid.localeCompare(b.deviceid));
}

/** Mount a small tmpfs at `dir` (root only). Returns an error text when that is not possible. */
function mountTmpfs(dir, size = '256k') {
  if (process.platform !== 'linux') return 'not Linux';
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'not running as root';
  try {
    fs.mkdirSync(dir, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
    return undefined;
  } catch (err) {
    return `mount -t tmpfs failed: ${String(err.stderr ?? err.message).trim()}`;
  }
}

function unmount(dir) {
  try {
    execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
  } catch {
    // not mounted
  }
}

/** Fill the file system holding `dir` with a file until it is full; returns the file. */
function fillDisk(dir) {
  const file = path.join(dir, 'filler.bin');
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(4096, 0x55);
  try {
    for (;;) fs.writeSync(fd, chunk);
  } catch (err) {
    if (err.code !== 'ENOSPC') throw err;
  }
  // The last partial block too.
  try {
    for (;;) fs.writeSync(fd, Buffer.alloc(1));
  } catch (err) {
    if (err.code !== 'ENOSPC') throw err;
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

/** POST through the flow's /cmd endpoint. */
function command(nr, deviceid, payload) {
  return request(nr.base, '/cmd', { body: { deviceid, payload } });
}

/** Plain HTTP request with a body given as Buffer/string and optional raw options. */
function plainRequest(port, pathname, { method = 'GET', body, headers = {}, localAddress = nextAddress() } = {}) {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: pathname, method, headers, localAddress, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (err) => resolve({ status: res.statusCode, error: err.code }));
    });
    req.on('error', (err) => resolve({ error: err.code ?? err.message }));
    req.end(body);
  });
}

module.exports = {
  MODEL, APP_APIKEY, APP_TOKEN, ZHITING_TOKEN, JWT_SECRET, FACTORY,
  allocate, flow, readJsonLines, rssOf, nextAddress, Probe, RawConn, espImage, firmwareDir, storedView,
  mountTmpfs, unmount, fillDisk, command, plainRequest, request, sleep, waitFor, assert,
};
