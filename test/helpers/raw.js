'use strict';
// Raw protocol helpers for tests: a dispatch POST and a WebSocket client that queues every frame,
// so a test can replay a trace message by message and read exactly what the server answered.
const https = require('node:https');
const http = require('node:http');
const WebSocket = require('ws');

function request(base, path, { method = 'POST', body, headers = {} } = {}) {
  const url = new URL(path, base);
  const lib = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(url, { method, rejectUnauthorized: false, headers: { 'Content-Type': 'application/json', ...headers } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    if (body !== undefined) req.end(typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body));
    else req.end();
  });
}

class RawClient {
  constructor(url, options = {}) {
    this.frames = [];
    this.waiters = [];
    this.closed = null;
    this.ws = new WebSocket(url, { rejectUnauthorized: false, perMessageDeflate: false, ...options });
    this.ws.on('message', (data, isBinary) => {
      const text = isBinary ? data : data.toString('utf8');
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve(text); else this.frames.push(text);
    });
    this.ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      for (const w of this.waiters.splice(0)) w.reject(new Error(`closed ${code} ${reason}`));
    });
    this.ws.on('error', () => {});
  }

  open() {
    return new Promise((resolve, reject) => {
      if (this.ws.readyState === WebSocket.OPEN) return resolve();
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
      this.ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
  }

  send(obj) {
    this.ws.send(typeof obj === 'string' || Buffer.isBuffer(obj) ? obj : JSON.stringify(obj));
  }

  /** The next frame as text (or Buffer), waiting up to `ms`. */
  nextText(ms = 3000) {
    if (this.frames.length) return Promise.resolve(this.frames.shift());
    if (this.closed) return Promise.reject(new Error(`closed ${this.closed.code}`));
    return new Promise((resolve, reject) => {
      const waiter = { resolve: (v) => { clearTimeout(t); resolve(v); }, reject: (e) => { clearTimeout(t); reject(e); } };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`no frame within ${ms} ms`));
      }, ms);
      this.waiters.push(waiter);
    });
  }

  async next(ms) {
    return JSON.parse(await this.nextText(ms));
  }

  /** Send and return the reply. */
  async ask(obj, ms) {
    this.send(obj);
    return this.next(ms);
  }

  waitClose(ms = 3000) {
    if (this.closed) return Promise.resolve(this.closed);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('socket did not close')), ms);
      this.ws.once('close', (code, reason) => { clearTimeout(t); resolve({ code, reason: reason.toString() }); });
    });
  }

  close() {
    try { this.ws.terminate(); } catch { /* already gone */ }
  }
}

/** Resolve when `emitter` emits `event` (optionally matching `filter`), or reject after `ms`. */
function once(emitter, event, filter = () => true, ms = 3000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { emitter.off(event, on); reject(new Error(`no ${event} within ${ms} ms`)); }, ms);
    function on(...args) {
      if (!filter(...args)) return;
      clearTimeout(t);
      emitter.off(event, on);
      resolve(args[0]);
    }
    emitter.on(event, on);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(check, ms = 10000, step = 20) {
  const until = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > until) throw new Error('condition not met in time');
    await sleep(step);
  }
}

module.exports = { request, RawClient, once, sleep, waitFor };
