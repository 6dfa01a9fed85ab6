'use strict';
// Baseline servers for the benchmark: the smallest raw `ws` servers that speak the same
// device handshake and message shapes as CoolkitCloud, so the load generator drives them
// exactly like the real thing. One child process per server, controlled over IPC.
//
//   --mode echo     every text frame is sent back unchanged (B-echo)
//   --mode ack      JSON.parse each frame, reply like the cloud: update -> {"error":0,"deviceid","apikey"} (B-ack)
//   --mode idle     the same code as ack; used to hold idle connections (B-idle: it only answers
//                   the handshake and ping frames, which ws answers by itself)
//   --mode fanout   ack, plus every update serialised ONCE and sent to every client on /sub (B-fanout)
//   --tls CERT,KEY  the same over https with the given certificate (B-tls)
//
// Dispatch (POST /dispatch/device) and the register/date/query replies have the cloud's shapes.
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const { randomUUID } = require('node:crypto');
const { WebSocketServer } = require('ws');
const { serve } = require('./lib/ipc');
const { Probe } = require('./lib/probe');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}

const mode = arg('mode', 'ack');
const tls = arg('tls', '');
const bind = '127.0.0.1';
if (!['echo', 'ack', 'idle', 'fanout'].includes(mode)) throw new Error(`unknown mode ${mode}`);

const counters = { online: 0, opened: 0, frames: 0, updates: 0, registers: 0, dispatches: 0, subscribers: 0, fanoutFrames: 0 };
const probe = new Probe(() => ({ ...counters }));

// Same storage settings block the cloud sends, so register replies have the same size.
function devConfig() {
  return {
    storeAppsecret: '', bucketName: '', lengthOfVideo: 0, deleteAfterDays: 0, persistentPipeline: '', storeAppid: '',
    uploadLimit: 0, statusReportUrl: '', storetype: 0, callbackHost: '', persistentNotifyUrl: '', callbackUrl: '',
    persistentOps: '', captureNumber: 0, callbackBody: '',
  };
}

let port = 0;
function onRequest(req, res) {
  if (req.url !== '/dispatch/device' || req.method !== 'POST') {
    res.writeHead(404, { 'Content-Length': 0 });
    res.end();
    req.resume();
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let ok = true;
    try {
      JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      ok = false;
    }
    counters.dispatches++;
    const text = JSON.stringify(ok ? { error: 0, reason: 'ok', IP: bind, port } : { error: 400, reason: 'malformed JSON' });
    res.writeHead(ok ? 200 : 400, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), Server: 'openresty', Connection: 'keep-alive' });
    res.end(text);
  });
}

let server;
if (tls) {
  const [certFile, keyFile] = tls.split(',');
  // The cloud's legacy TLS profile (minVersion TLSv1, DEFAULT:@SECLEVEL=0), so both negotiate alike.
  server = https.createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile), minVersion: 'TLSv1', ciphers: 'DEFAULT:@SECLEVEL=0' }, onRequest);
} else {
  server = http.createServer(onRequest);
}
server.keepAliveTimeout = 5000;

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: false, maxPayload: 64 * 1024 });
const subscribers = new Set();

server.on('upgrade', (req, socket, head) => {
  socket.on('error', () => socket.destroy());
  const url = req.url.split('?')[0];
  if (url === '/sub' && mode === 'fanout') {
    wss.handleUpgrade(req, socket, head, (ws) => {
      subscribers.add(ws);
      counters.subscribers = subscribers.size;
      ws.on('close', () => {
        subscribers.delete(ws);
        counters.subscribers = subscribers.size;
      });
      ws.on('error', () => {});
    });
    return;
  }
  if (url !== '/api/ws') {
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, onDevice);
});

function onDevice(ws) {
  counters.online++;
  counters.opened++;
  ws.on('close', () => {
    counters.online--;
  });
  ws.on('error', () => {});
  ws.on('message', mode === 'echo' ? onEcho : onParse);
}

function onEcho(data, isBinary) {
  counters.frames++;
  this.send(data, { binary: isBinary });
}

function onParse(data, isBinary) {
  counters.frames++;
  const text = data.toString('utf8');
  if (text === 'ping') {
    this.send('pong');
    return;
  }
  let m;
  try {
    m = JSON.parse(text);
  } catch {
    this.send('{"error":400,"reason":"malformed JSON"}');
    return;
  }
  switch (m.action) {
    case 'update': {
      counters.updates++;
      this.send(JSON.stringify({ error: 0, deviceid: m.deviceid, apikey: m.apikey }));
      if (mode === 'fanout' && subscribers.size > 0) {
        // Serialise once, send the same bytes to every subscriber.
        const out = Buffer.from(JSON.stringify({ action: 'update', deviceid: m.deviceid, params: m.params }));
        for (const sub of subscribers) sub.send(out, { binary: false });
        counters.fanoutFrames += subscribers.size;
      }
      return;
    }
    case 'register':
      counters.registers++;
      this.send(JSON.stringify({ error: 0, deviceid: m.deviceid, apikey: randomUUID(), config: { devConfig: devConfig(), hb: 1, hbInterval: 145 } }));
      return;
    case 'date':
      this.send(JSON.stringify({ error: 0, deviceid: m.deviceid, apikey: m.apikey, date: new Date().toISOString() }));
      return;
    case 'query':
      this.send(JSON.stringify({ error: 0, deviceid: m.deviceid, apikey: m.apikey, params: 0 }));
      return;
    default:
      // acks of server commands and anything else: nothing to answer
  }
}

const listening = new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen({ host: bind, port: 0 }, () => {
    port = server.address().port;
    resolve();
  });
});

serve({
  async info() {
    await listening;
    return { port, mode, tls: Boolean(tls), pid: process.pid, node: process.version, base: `${tls ? 'https' : 'http'}://${bind}:${port}` };
  },
  reset: () => probe.reset(),
  snapshot: () => probe.snapshot(),
  memory: () => probe.memory(),
  profileStart: (args) => probe.profileStart(args),
  profileStop: (args) => probe.profileStop(args),
  async stop() {
    setTimeout(() => process.exit(0), 20);
    return {};
  },
});
