'use strict';
// A Zhiting hub over a real local cloud (plain WS for speed) and simulated devices, all on
// 127.0.0.1, plus a client that tells responses (matched by id) from pushed events.
const WebSocket = require('ws');
const { startCloud } = require('../helpers/cloud');
const { waitFor } = require('../helpers/raw');
const { SimulatedDevice } = require('../../dist/src/sim');
const { HubGateway, OwnServer, tokenAuthenticator } = require('../../dist/src/hub/session');
const { ZhitingHub } = require('../../dist/src/hub/zhiting');

const TOKEN = 'zhiting-test-token';

class HubClient {
  constructor(url, headers = { 'smart-assistant-token': TOKEN }) {
    this.texts = [];
    this.events = [];
    this.waiters = [];
    this.ws = new WebSocket(url, { headers, perMessageDeflate: false });
    this.ws.on('message', (data) => {
      const text = data.toString('utf8');
      this.texts.push(text);
      let msg;
      try { msg = JSON.parse(text); } catch { msg = text; }
      if (msg && msg.type === 'attribute_change') this.events.push(msg);
      for (const w of [...this.waiters]) w.check();
    });
    this.ws.on('error', () => {});
    this.closed = new Promise((resolve) => this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  open() {
    return new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('unexpected-response', (_q, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
  }

  /** Wait until `pick(texts)` returns something. */
  waitFrame(pick, ms = 4000) {
    return new Promise((resolve, reject) => {
      const w = {
        check: () => {
          const v = pick();
          if (v !== undefined) {
            clearTimeout(w.t);
            this.waiters.splice(this.waiters.indexOf(w), 1);
            resolve(v);
          }
        },
      };
      w.t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`no matching frame within ${ms} ms; got ${this.texts.slice(-5).join(' | ')}`));
      }, ms);
      this.waiters.push(w);
      w.check();
    });
  }

  /** Send a request object (or raw text) and resolve with the response(s) with that id. */
  send(req) {
    this.ws.send(typeof req === 'string' ? req : JSON.stringify(req));
  }

  responses(id) {
    return this.texts.map((t) => { try { return JSON.parse(t); } catch { return undefined; } }).filter((m) => m && m.type !== 'attribute_change' && m.id === id);
  }

  async ask(req, ms) {
    const seen = this.responses(req.id).length;
    this.send(req);
    return this.waitFrame(() => this.responses(req.id)[seen], ms);
  }

  /** The next raw response text (not an event) after `count` texts. */
  async rawAfter(count, ms) {
    return this.waitFrame(() => this.texts.slice(count).find((t) => !t.includes('"attribute_change"')), ms);
  }

  event(pred, ms) {
    return this.waitFrame(() => this.events.find(pred), ms);
  }

  close() {
    this.ws.terminate();
  }
}

async function startHub({ cloud: cloudOptions = {}, hub: hubOptions = {}, gateway: gatewayOptions = {} } = {}) {
  const env = await startCloud({ tls: 'off', sweepIntervalMs: 50, commandTimeoutMs: 1000, coalesceWindowMs: 30, ...cloudOptions });
  const { cloud } = env;
  const hub = new ZhitingHub({ source: cloud, ...hubOptions });
  const gateway = new HubGateway({ name: 'zhiting', authenticate: tokenAuthenticator({ token: TOKEN }), handler: hub, ...gatewayOptions });
  let broadcasts = 0;
  hub.setBroadcaster((text) => { broadcasts++; return gateway.broadcast(text); });
  for (const kind of ['update', 'online', 'offline', 'trigger']) cloud.on(kind, (ev) => hub.onDeviceEvent(kind, ev));
  const own = new OwnServer({ bind: '127.0.0.1', port: 0 });
  own.router.add('/ws', gateway);
  await own.listen();
  const url = `ws://127.0.0.1:${own.port}/ws`;
  const clients = [];
  const sims = [];
  return {
    cloud,
    hub,
    gateway,
    url,
    get broadcasts() { return broadcasts; },
    async client(headers) {
      const c = new HubClient(url, headers);
      clients.push(c);
      await c.open();
      await waitFor(() => gateway.size >= clients.length);
      return c;
    },
    async sim(deviceid, profile, extra = {}) {
      const s = new SimulatedDevice({ server: env.base, deviceid, profile, reconnect: false, drift: false, pingIntervalMs: 0, sensorTickMs: 3600000, ...extra });
      sims.push(s);
      await s.start();
      await waitFor(() => cloud.device(deviceid) && cloud.device(deviceid).online && Object.keys(cloud.device(deviceid).params).length > 0);
      return s;
    },
    async stop() {
      for (const c of clients) c.close();
      for (const s of sims) await s.stop().catch(() => {});
      hub.stop();
      await gateway.close();
      await own.close();
      await cloud.close();
    },
  };
}

module.exports = { startHub, HubClient, TOKEN };
