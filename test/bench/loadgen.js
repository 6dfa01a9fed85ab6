'use strict';
// sonoff-loadgen: simulates N stock-firmware Sonoff devices against one server, on loopback.
//
// One small object per device and NO per-device timers: a single scheduler loop (one
// setTimeout at a time) sends everything that is due from precomputed timetables (updates,
// heartbeats, retries) and sweeps handshake deadlines. Latency is always measured from the
// INTENDED send time in the timetable, never from the actual send time, so a stalled server
// (or a stalled generator) shows up as latency instead of being hidden (coordinated omission).
//
// Device life: [POST /dispatch/device] -> WS(S) upgrade /api/ws -> register (the reply's apikey is
// used from then on) -> date -> [query ["timers"]] -> ready; then an initial full-state update,
// open-loop updates on the timetable, heartbeats (ws ping frames or text "ping"), and an ack for
// every server command ({"action":"update","sequence":S,...} -> {"error":0,...,"sequence":S}).
// A socket that closes while ready reconnects with exponential back-off and jitter (1 s -> 60 s),
// like the firmware, unless the bench dropped it on purpose; a reconnect phase can instead start
// every device at once ("herd"), with a cap on handshakes in flight.
//
// Use it as a module (`new LoadGen(options)`) or as a child process driven over IPC (run.js).
const http = require('node:http');
const https = require('node:https');
const tls = require('node:tls');
const { randomUUID } = require('node:crypto');
const { performance, monitorEventLoopDelay, createHistogram } = require('node:perf_hooks');
const WebSocket = require('ws');

const now = () => performance.now();
const epochOf = (local) => performance.timeOrigin + local;
const localOf = (epoch) => epoch - performance.timeOrigin;

// Device connection states.
const S = { IDLE: 0, DISPATCH: 1, UPGRADE: 2, REGISTER: 3, DATE: 4, QUERY: 5, READY: 6, FAILED: 7, QUEUED: 8, WAIT: 9 };
/** Outstanding update timestamps kept per device (acks carry no sequence: they are matched in order). */
const RING = 32;
/** Event-loop delay sampling; the histogram includes this interval, which eldMs() subtracts. */
const ELD_RESOLUTION_MS = 10;
const eldMs = (h, q) => (h.count ? Math.max(0, Math.round(((q === 'max' ? h.max : h.percentile(q)) / 1e6 - ELD_RESOLUTION_MS) * 100) / 100) : 0);
const MODELS = ['ITA-GZ1-GL', 'PSF-B01-GL', 'PSA-BHA-GL'];
const PROFILES = ['switch', 'pow', 'th'];

function isLoopback(host) {
  return /^127\.\d+\.\d+\.\d+$/.test(host) || host === 'localhost' || host === '::1';
}

function summary(h, unit = 1e3) {
  // Histograms hold µs; report ms.
  if (!h || h.count === 0) return { count: 0, p50: null, p90: null, p99: null, p999: null, max: null };
  const r = (v) => Math.round((v / unit) * 100) / 100;
  return { count: h.count, p50: r(h.percentile(50)), p90: r(h.percentile(90)), p99: r(h.percentile(99)), p999: r(h.percentile(99.9)), max: r(h.max) };
}

function rec(h, ms) {
  const us = Math.round(ms * 1000);
  h.record(us > 0 ? us : 1);
}

/** Mulberry32: a small seeded PRNG so timetables are reproducible. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Device {
  constructor(i, id, fkey) {
    this.i = i;
    this.id = id;
    this.fkey = fkey;
    this.key = fkey;
    this.ws = null;
    this.st = S.IDLE;
    this.t0 = 0; // start of the current handshake attempt
    this.deadline = 0;
    this.attempt = 0;
    this.sent = 0; // updates sent on this socket
    this.acked = 0; // acks matched on this socket
    this.seq = 0; // values for the next update
    this.pingAt = 0; // intended time of the outstanding heartbeat
    this.drop = false; // closed on purpose: do not reconnect
    this.lastAt = 0; // intended time of the latest update sent (hub subscribers match frames to it)
    this.lastWin = false; // ...and whether it was in the measured window
  }
}

class LoadGen {
  /**
   * @param {object} o
   * @param {string} o.base        e.g. http://127.0.0.1:8080 or https://127.0.0.1:8443 (dispatch target)
   * @param {number} o.count       number of devices
   * @param {boolean} [o.echo]     the server echoes frames (B-echo): every frame counts as the reply
   * @param {string} [o.prefix]    deviceid prefix (hex); ids are prefix + counter, 10 hex chars
   * @param {number} [o.sources]   spread client sockets over 127.0.0.2..(2+sources-1) (ephemeral ports)
   * @param {number} [o.seed]
   */
  constructor(o) {
    this.o = { echo: false, prefix: 'b0', sources: 64, seed: 1, ...o };
    const url = new URL(this.o.base);
    if (!isLoopback(url.hostname)) throw new Error(`loadgen only targets loopback addresses, not ${url.hostname}`);
    this.tls = url.protocol === 'https:';
    this.host = url.hostname;
    this.port = Number(url.port || (this.tls ? 443 : 80));
    this.http = this.tls ? https : http;
    // One client TLS context for every connection: building a SecureContext per connection (the
    // default) costs the generator more CPU than the handshake itself.
    // tlsProfile 'esp8266' (default) offers what stock ESP8266 firmware offers: TLS 1.2 with RSA key
    // exchange (TLS_RSA_WITH_AES_128_*), so the server pays one RSA-2048 decryption per handshake;
    // 'modern' lets Node negotiate its default (TLS 1.3, ECDHE + RSA-PSS signature).
    this.tlsProfile = this.o.tlsProfile || 'esp8266';
    this.secureContext = this.tls
      ? tls.createSecureContext(this.tlsProfile === 'modern' ? {} : { maxVersion: 'TLSv1.2', ciphers: 'AES128-GCM-SHA256:AES128-SHA256:AES128-SHA:@SECLEVEL=0' })
      : undefined;
    this.negotiated = null;
    this.random = prng(this.o.seed);
    this.devices = [];
    this.ring = new Float64Array(this.o.count * RING);
    for (let i = 0; i < this.o.count; i++) {
      const id = (this.o.prefix + i.toString(16).padStart(10 - this.o.prefix.length, '0')).slice(0, 10);
      this.devices.push(new Device(i, id, randomUUID()));
    }
    this.srcCounter = 0;
    this.eld = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
    this.eld.enable();
    this.timer = null;
    this.timerAt = Infinity;
    this.lastSweep = 0;
    this.online = 0;
    this.inflight = new Set();
    this.queue = []; // devices waiting for a handshake slot
    this.qhead = 0;
    this.retries = []; // binary heap of [dueTime, device]
    this.conn = null; // the running connect batch
    this.phase = null; // the running timed phase
    this.subs = [];
    this.slowSubs = [];
    this.byId = new Map(this.devices.map((d) => [d.id, d]));
    this.totals = { commands: 0, errorsInSteady: 0, unexpectedCloses: 0, reconnects: 0, overflow: 0, protocolErrors: 0 };
  }

  // ---- scheduling: one timer for everything ---------------------------------------------

  wake(at) {
    if (at >= this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.tick(), Math.max(0, at - now()));
  }

  tick() {
    this.timer = null;
    this.timerAt = Infinity;
    const t = now();
    let next = Infinity;
    if (this.phase) next = Math.min(next, this.runPhase(t));
    if (this.retries.length > 0) {
      while (this.retries.length > 0 && this.retries[0][0] <= t) this.enqueue(heapPop(this.retries)[1]);
      if (this.retries.length > 0) next = Math.min(next, this.retries[0][0]);
    }
    this.pump();
    if (this.inflight.size > 0) {
      if (t - this.lastSweep >= 100) {
        this.lastSweep = t;
        for (const d of this.inflight) if (d.deadline <= t) this.fail(d, 'timeout');
      }
      next = Math.min(next, t + 100);
    }
    if (next < Infinity) this.wake(next);
  }

  nextSource() {
    this.srcCounter = (this.srcCounter + 1) % this.o.sources;
    return `127.0.0.${2 + this.srcCounter}`;
  }

  // ---- connecting -------------------------------------------------------------------------

  /**
   * Connect devices [from, to) and wait until each is ready or has failed for good.
   * retry: 'herd' retries a failed attempt at once; 'backoff' after min·2^n (1 s -> 60 s) ±50%.
   * start: 'herd' starts every device now; 'backoff' spreads first attempts over the back-off window.
   */
  connect({ from = 0, to = this.devices.length, concurrency = 500, dispatch = true, query = true, timeoutMs = 10_000, retry = 'herd', start = 'herd', maxAttempts = 5, backoffMinMs = 1000, backoffMaxMs = 60_000 } = {}) {
    if (this.conn) return Promise.reject(new Error('a connect is already running'));
    return new Promise((resolve) => {
      const list = this.devices.slice(from, to).filter((d) => d.st !== S.READY);
      const c = {
        opts: { concurrency, dispatch, query, timeoutMs, retry, maxAttempts, backoffMinMs, backoffMaxMs },
        pending: list.length,
        ok: 0, failed: 0, failures: 0, retries: 0,
        reasons: {},
        attemptHist: createHistogram(), // per attempt: dispatch start -> ready
        totalHist: createHistogram(), // per device: connect() call -> ready (includes queueing and retries)
        t0: now(), cpu0: process.cpuUsage(), resolve,
      };
      this.eld.reset();
      this.conn = c;
      if (list.length === 0) return this.finishConnect();
      for (const d of list) {
        d.attempt = 0;
        d.drop = false;
        if (start === 'backoff') {
          d.st = S.WAIT;
          heapPush(this.retries, [c.t0 + backoffMinMs * (0.5 + this.random()), d]);
        } else this.enqueue(d);
      }
      this.tick();
    });
  }

  enqueue(d) {
    d.st = S.QUEUED;
    this.queue.push(d);
  }

  pump() {
    const c = this.conn;
    const limit = c ? c.opts.concurrency : 500;
    while (this.inflight.size < limit && this.qhead < this.queue.length) {
      const d = this.queue[this.qhead++];
      if (d.st === S.QUEUED) this.startAttempt(d);
    }
    if (this.qhead > 1024 && this.qhead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.qhead);
      this.qhead = 0;
    }
  }

  startAttempt(d) {
    const c = this.conn;
    const opts = c ? c.opts : { dispatch: true, query: true, timeoutMs: 10_000 };
    d.attempt++;
    d.t0 = now();
    d.deadline = d.t0 + opts.timeoutMs;
    d.sent = 0;
    d.acked = 0;
    d.key = d.fkey;
    this.inflight.add(d);
    if (opts.dispatch) this.dispatch(d);
    else this.upgrade(d, this.host, this.port);
  }

  dispatch(d) {
    d.st = S.DISPATCH;
    const body = `{"accept":"ws;2","version":2,"ts":${(d.i * 7) % 1000},"deviceid":"${d.id}","apikey":"${d.fkey}","model":"${MODELS[d.i % MODELS.length]}","romVersion":"1.5.5"}`;
    const req = this.http.request({
      host: this.host, port: this.port, path: '/dispatch/device', method: 'POST', agent: false,
      localAddress: this.nextSource(), rejectUnauthorized: false, secureContext: this.secureContext,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
    }, (res) => {
      const chunks = [];
      res.on('data', (ch) => chunks.push(ch));
      res.on('end', () => {
        if (d.st !== S.DISPATCH) return;
        let reply;
        try {
          reply = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          return this.fail(d, 'dispatch-json');
        }
        if (res.statusCode !== 200 || reply.error !== 0) return this.fail(d, `dispatch-${res.statusCode}`);
        // Never leave loopback, whatever the server advertises.
        const ip = typeof reply.IP === 'string' && isLoopback(reply.IP) ? reply.IP : this.host;
        const port = Number.isInteger(reply.port) ? reply.port : this.port;
        this.upgrade(d, ip, port);
      });
      res.on('error', () => this.fail(d, 'dispatch-error'));
    });
    req.on('error', () => {
      if (d.st === S.DISPATCH) this.fail(d, 'dispatch-error');
    });
    req.end(body);
  }

  upgrade(d, host, port) {
    d.st = S.UPGRADE;
    const ws = new WebSocket(`${this.tls ? 'wss' : 'ws'}://${host}:${port}/api/ws`, {
      perMessageDeflate: false, rejectUnauthorized: false, localAddress: this.nextSource(), secureContext: this.secureContext,
    });
    ws.__dev = d;
    ws.__gen = this;
    d.ws = ws;
    ws.on('open', onOpen);
    ws.on('message', onMessage);
    ws.on('pong', onPong);
    ws.on('close', onClose);
    ws.on('error', onError);
    ws.on('unexpected-response', onUnexpected);
  }

  fail(d, reason) {
    const c = this.conn;
    this.inflight.delete(d);
    const ws = d.ws;
    d.ws = null;
    if (ws) {
      ws.__dev = null;
      try { ws.terminate(); } catch { /* gone */ }
    }
    d.st = S.FAILED;
    if (!c) return;
    c.failures++;
    c.reasons[reason] = (c.reasons[reason] || 0) + 1;
    if (d.attempt < c.opts.maxAttempts) {
      c.retries++;
      if (c.opts.retry === 'backoff') {
        d.st = S.WAIT;
        const base = Math.min(c.opts.backoffMaxMs, c.opts.backoffMinMs * 2 ** (d.attempt - 1));
        const delay = Math.min(c.opts.backoffMaxMs, Math.max(c.opts.backoffMinMs, base * (0.5 + this.random())));
        heapPush(this.retries, [now() + delay, d]);
        this.wake(now() + delay);
      } else {
        this.enqueue(d);
        setImmediate(() => this.pump());
      }
    } else {
      c.failed++;
      c.pending--;
      if (c.pending === 0) this.finishConnect();
    }
    this.wake(now());
  }

  ready(d) {
    const t = now();
    this.inflight.delete(d);
    d.st = S.READY;
    this.online++;
    const c = this.conn;
    if (c) {
      rec(c.attemptHist, t - d.t0);
      rec(c.totalHist, t - c.t0);
      c.ok++;
      c.pending--;
    }
    // The firmware reports its full state right after the handshake (not in any measured window).
    this.sendUpdate(d, t, -1);
    if (c && c.pending === 0) this.finishConnect();
    else this.pump(); // keep the handshake pipeline full without waiting for the next timer tick
  }

  finishConnect() {
    const c = this.conn;
    this.conn = null;
    const wallMs = now() - c.t0;
    const cpu = process.cpuUsage(c.cpu0);
    c.resolve({
      ok: c.ok, failed: c.failed, failures: c.failures, retries: c.retries, reasons: c.reasons,
      wallMs: Math.round(wallMs), rate: c.ok > 0 ? Math.round((c.ok / wallMs) * 1000) : 0,
      attempt: summary(c.attemptHist), total: summary(c.totalHist),
      gen: { cpuPct: (cpu.user + cpu.system) / 1000 / wallMs, eldP99: eldMs(this.eld, 99) },
      online: this.online,
      tls: this.tls ? { profile: this.tlsProfile, negotiated: this.negotiated } : undefined,
    });
  }

  /** Close every device socket on purpose (no reconnect); resolves when they are all closed here. */
  dropAll({ graceful = false } = {}) {
    return new Promise((resolve) => {
      let open = 0;
      for (const d of this.devices) {
        d.drop = true;
        if (d.ws) {
          open++;
          const ws = d.ws;
          ws.once('close', () => {
            if (--open === 0) resolve({ closed: this.devices.length });
          });
          if (graceful) ws.close(1001, 'bench'); else ws.terminate();
        }
        if (d.st === S.QUEUED || d.st === S.WAIT) d.st = S.IDLE;
      }
      this.queue = [];
      this.qhead = 0;
      this.retries = [];
      if (open === 0) resolve({ closed: 0 });
    });
  }

  // ---- steady state: updates, heartbeats, acks -----------------------------------------------

  /** Send one update; `intended` is the timetable time (local ms). Returns false if not sent. */
  sendUpdate(d, intended, windowed) {
    const ws = d.ws;
    if (!ws || d.st !== S.READY || ws.readyState !== 1) return false;
    if (d.sent - d.acked >= RING) {
      this.totals.overflow++;
      return false;
    }
    const v = ++d.seq;
    const ts = epochOf(intended);
    let params;
    switch (d.i % 3) {
      case 0: params = `{"switch":"${v & 1 ? 'on' : 'off'}","startup":"off","rssi":${-40 - (v % 30)},"benchTs":${ts.toFixed(3)}}`; break;
      case 1: params = `{"switch":"on","power":"${(v % 2000) / 10}","voltage":"${230 + (v % 7)}.10","current":"${(v % 90) / 100}","benchTs":${ts.toFixed(3)}}`; break;
      default: params = `{"switch":"off","currentTemperature":"${20 + (v % 50) / 10}","currentHumidity":"${40 + (v % 20)}","benchTs":${ts.toFixed(3)}}`;
    }
    ws.send(`{"userAgent":"device","apikey":"${d.key}","deviceid":"${d.id}","action":"update","sequence":"${Math.floor(ts)}","params":${params}}`);
    // Slot of this update; the sign bit marks "outside the measured window".
    this.ring[d.i * RING + (d.sent % RING)] = windowed === 1 ? intended : -intended - 1;
    d.lastAt = intended;
    d.lastWin = windowed === 1;
    d.sent++;
    return true;
  }

  onAck(d, ok) {
    if (d.acked >= d.sent) {
      this.totals.protocolErrors++;
      return;
    }
    const slot = this.ring[d.i * RING + (d.acked % RING)];
    d.acked++;
    const p = this.phase;
    if (!ok) this.totals.errorsInSteady++;
    if (slot >= 0 && p) {
      if (ok) {
        p.acked++;
        rec(p.ackHist, now() - slot);
      } else p.errors++;
    }
  }

  ackCommand(d, text) {
    let m;
    try {
      m = JSON.parse(text);
    } catch {
      this.totals.protocolErrors++;
      return;
    }
    if (m.action && typeof m.sequence === 'string') {
      this.totals.commands++;
      d.ws.send(`{"error":0,"userAgent":"device","apikey":"${d.key}","deviceid":"${d.id}","sequence":"${m.sequence}"}`);
    } else if (m.error !== undefined) {
      this.onAck(d, m.error === 0);
    } else this.totals.protocolErrors++;
  }

  /**
   * A timed phase. Everything is on one timetable that starts at `startAt` (epoch ms, so the
   * driver can sample the server exactly at the window edges): `warmupMs` unmeasured, then
   * `measureMs` measured, then up to `graceMs` for late acks.
   *   rate: updates/s, spread over all ready devices round-robin in a shuffled order (uniform
   *         gaps) or with exponential gaps (arrivals: 'poisson').
   *   pingRate: heartbeats/s over all ready devices: each device pings every count/pingRate s
   *         ±10% jitter, starting at a random phase; pingMode 'frame' (ws ping) or 'text'.
   */
  runTimed({ startAt, warmupMs = 1000, measureMs = 3000, graceMs = 2000, rate = 0, arrivals = 'uniform', pingRate = 0, pingMode = 'frame', seed = 7 } = {}) {
    if (this.phase) return Promise.reject(new Error('a phase is already running'));
    const ready = this.devices.filter((d) => d.st === S.READY);
    const random = prng(seed);
    const t0 = startAt ? localOf(startAt) : now() + 200;
    const wStart = t0 + warmupMs;
    const wEnd = wStart + measureMs;
    const n = ready.length;
    // Update timetable.
    let upd = { times: new Float64Array(0), dev: new Uint32Array(0) };
    if (rate > 0 && n > 0) {
      const total = Math.floor((rate * (warmupMs + measureMs)) / 1000);
      const times = new Float64Array(total);
      const dev = new Uint32Array(total);
      const perm = Uint32Array.from({ length: n }, (_, i) => i);
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        const x = perm[i]; perm[i] = perm[j]; perm[j] = x;
      }
      let t = t0;
      for (let k = 0; k < total; k++) {
        t = arrivals === 'poisson' ? t + (-Math.log(1 - random()) * 1000) / rate : t0 + (k * 1000) / rate;
        times[k] = t;
        dev[k] = ready[perm[k % n]].i;
      }
      upd = { times, dev };
    }
    // Heartbeat timetable.
    let hb = { times: new Float64Array(0), dev: new Uint32Array(0) };
    if (pingRate > 0 && n > 0) {
      const interval = (n / pingRate) * 1000;
      const list = [];
      for (const d of ready) {
        for (let t = t0 + random() * interval; t < wEnd; t += interval * (0.9 + 0.2 * random())) list.push([t, d.i]);
      }
      list.sort((a, b) => a[0] - b[0]);
      hb = { times: Float64Array.from(list, (x) => x[0]), dev: Uint32Array.from(list, (x) => x[1]) };
    }
    return new Promise((resolve) => {
      this.phase = {
        t0, wStart, wEnd, graceEnd: wEnd + graceMs, rate, pingRate, pingMode, n,
        upd, ui: 0, hb, hi: 0,
        sent: 0, skipped: 0, acked: 0, errors: 0, pings: 0, pongs: 0,
        ackHist: createHistogram(), slipHist: createHistogram(), pongHist: createHistogram(),
        cpu0: null, windowOpen: false, done: false, resolve, deliveries: 0, delivHist: createHistogram(), subFrames: 0,
      };
      this.wake(t0);
    });
  }

  /** Called by tick(): sends what is due, returns when it wants to run next. */
  runPhase(t) {
    const p = this.phase;
    if (!p.windowOpen && t >= p.wStart) {
      p.windowOpen = true;
      p.cpu0 = process.cpuUsage();
      p.cpuT = t;
      this.eld.reset();
    }
    const { times, dev } = p.upd;
    while (p.ui < times.length && times[p.ui] <= t) {
      const it = times[p.ui];
      const d = this.devices[dev[p.ui]];
      const inWin = it >= p.wStart && it < p.wEnd;
      if (this.sendUpdate(d, it, inWin ? 1 : 0)) {
        if (inWin) {
          p.sent++;
          rec(p.slipHist, t - it);
        }
      } else if (inWin) p.skipped++;
      p.ui++;
    }
    const hb = p.hb;
    while (p.hi < hb.times.length && hb.times[p.hi] <= t) {
      const it = hb.times[p.hi];
      const d = this.devices[hb.dev[p.hi]];
      if (d.ws && d.st === S.READY && d.ws.readyState === 1) {
        d.pingAt = it;
        if (p.pingMode === 'text') d.ws.send('ping');
        else d.ws.ping();
        if (it >= p.wStart) p.pings++;
      }
      p.hi++;
    }
    if (p.windowOpen && p.cpuEnd === undefined && t >= p.wEnd) {
      const cpu = process.cpuUsage(p.cpu0);
      p.cpuEnd = { us: cpu.user + cpu.system, wall: t - p.cpuT, eldP99: eldMs(this.eld, 99), eldMax: eldMs(this.eld, 'max') };
    }
    const allAcked = p.acked + p.errors >= p.sent;
    if (t >= p.graceEnd || (t >= p.wEnd && allAcked && p.ui >= times.length)) {
      this.finishPhase(t);
      return Infinity;
    }
    let next = p.graceEnd;
    if (p.ui < times.length) next = Math.min(next, times[p.ui]);
    if (p.hi < hb.times.length) next = Math.min(next, hb.times[p.hi]);
    if (!p.windowOpen) next = Math.min(next, p.wStart);
    if (p.cpuEnd === undefined) next = Math.min(next, p.wEnd);
    else next = Math.min(next, t + 20); // waiting for the last acks
    return Math.max(next, t + 0.5);
  }

  finishPhase(t) {
    const p = this.phase;
    this.phase = null;
    const measureS = (p.wEnd - p.wStart) / 1000;
    const gen = p.cpuEnd || { us: 0, wall: 1, eldP99: 0, eldMax: 0 };
    const slip = summary(p.slipHist);
    p.resolve({
      devices: p.n,
      rate: p.rate,
      pingRate: p.pingRate,
      measureS,
      sent: p.sent,
      skipped: p.skipped,
      acked: p.acked,
      errors: p.errors,
      unacked: p.sent - p.acked - p.errors,
      achievedRate: Math.round(p.acked / measureS),
      ack: summary(p.ackHist),
      slip,
      pings: p.pings,
      pongs: p.pongs,
      pong: summary(p.pongHist),
      deliveries: p.deliveries,
      deliveryRate: Math.round(p.deliveries / measureS),
      delivery: summary(p.delivHist),
      subFrames: p.subFrames,
      subFrameRate: Math.round(p.subFrames / measureS),
      subscribers: this.subs.length,
      slowSubscribers: this.slowSubs.map(slowState),
      gen: { cpuPct: gen.us / 1000 / gen.wall, eldP99: gen.eldP99, eldMax: gen.eldMax },
      finishedLateMs: Math.round(t - p.wEnd),
    });
  }

  // ---- subscribers (app/dashboard clients of a fan-out server) -------------------------------

  /**
   * Connect `count` subscribers (app/dashboard clients). kind 'raw': the baseline fan-out
   * (`/sub` of this server; frames carry `benchTs`). Hub kinds connect to `url` (the hub API's
   * own port): 'telemetry' sends `Authorization: Bearer <token>` and subscribes to the real-time
   * telemetry channel, 'zhiting' sends the `smart-assistant-token` header. A hub frame names its
   * device (`deviceid` / `identity`): it is matched to that device's latest update (intended send
   * time -> delivery latency), and counted once per update and subscriber (a Zhiting update is one
   * `attribute_change` frame per changed attribute). `slow`: kept apart (never counted), for
   * `pauseSlow` (G11).
   */
  subscribe({ count = 50, path = '/sub', kind = 'raw', url, token, slow = false } = {}) {
    const target = url || `${this.tls ? 'wss' : 'ws'}://${this.host}:${this.port}${path}`;
    const headers = kind === 'telemetry' ? { Authorization: `Bearer ${token}` } : kind === 'zhiting' ? { 'smart-assistant-token': token } : {};
    const opened = [];
    for (let i = 0; i < count; i++) {
      const ws = new WebSocket(target, { perMessageDeflate: false, rejectUnauthorized: false, localAddress: this.nextSource(), secureContext: this.secureContext, headers });
      ws.__gen = this;
      ws.__kind = kind;
      ws.__seen = kind === 'raw' ? null : new Int32Array(this.devices.length).fill(-1);
      ws.__slow = slow;
      ws.__frames = 0;
      ws.on('error', () => {});
      if (slow) {
        ws.__t0 = now();
        ws.once('close', (code) => {
          ws.__closedAt = now();
          ws.__closeCode = code;
        });
        this.slowSubs.push(ws);
      } else this.subs.push(ws);
      opened.push(new Promise((resolve, reject) => {
        ws.once('error', reject);
        ws.once('open', () => {
          if (kind !== 'telemetry') {
            ws.on('message', slow ? onSlowMessage : onSubMessage);
            resolve();
            return;
          }
          ws.send('{"type":"subscribe","channel":"telemetry","id":1}');
          const onFirst = (data) => {
            const text = data.toString('utf8');
            if (!text.includes('"subscription_confirmed"')) {
              if (text.includes('"error"')) reject(new Error(`telemetry subscribe refused: ${text.slice(0, 200)}`));
              return;
            }
            ws.off('message', onFirst);
            ws.on('message', slow ? onSlowMessage : onSubMessage);
            resolve();
          };
          ws.on('message', onFirst);
        });
        ws.once('close', (code) => reject(new Error(`subscriber closed (${code}) before it was ready`)));
      }));
    }
    return Promise.all(opened).then(() => ({ subscribers: this.subs.length, slow: this.slowSubs.length }));
  }

  /** The slow subscribers stop reading: their sockets are paused, so the server's send buffers fill (G11). */
  pauseSlow() {
    const t = now();
    for (const ws of this.slowSubs) {
      ws.__pausedAt = t;
      if (ws._socket) ws._socket.pause();
    }
    return { paused: this.slowSubs.length, slow: this.slowSubs.map(slowState) };
  }

  unsubscribe() {
    for (const ws of this.subs) ws.terminate();
    for (const ws of this.slowSubs) ws.terminate();
    this.subs = [];
    this.slowSubs = [];
  }

  status() {
    const states = {};
    for (const d of this.devices) states[d.st] = (states[d.st] || 0) + 1;
    return { online: this.online, inflight: this.inflight.size, states, totals: this.totals, subs: this.subs.length, slowSubs: this.slowSubs.map(slowState), tls: this.tls ? { profile: this.tlsProfile, negotiated: this.negotiated } : null };
  }

  async close() {
    this.unsubscribe();
    await this.dropAll();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.eld.disable();
  }
}

// ---- shared socket handlers (no closures per device) -------------------------------------------

function onOpen() {
  const d = this.__dev;
  if (!d || d.st !== S.UPGRADE) return;
  const gen = this.__gen;
  if (gen.tls && !gen.negotiated && this._socket && this._socket.getCipher) {
    const c = this._socket.getCipher();
    gen.negotiated = c ? `${this._socket.getProtocol()} ${c.standardName || c.name}` : null;
  }
  d.st = S.REGISTER;
  this.send(`{"userAgent":"device","apikey":"${d.fkey}","deviceid":"${d.id}","action":"register","version":2,"romVersion":"1.5.5","model":"${MODELS[d.i % MODELS.length]}","ts":${(d.i * 13) % 1000}}`);
}

function onMessage(data) {
  const ws = this;
  const d = ws.__dev;
  if (!d) return;
  const gen = ws.__gen;
  if (d.st === S.READY) {
    // Hot path: classify without JSON.parse where the shape is known.
    if (data.length === 4 && data[0] === 0x70 && data[1] === 0x6f) {
      onTextPong(gen, d);
      return;
    }
    if (gen.o.echo) {
      gen.onAck(d, true);
      return;
    }
    // {"error":0,  -> ack of an update;  {"error":N -> refused update; anything else: parse
    if (data[2] === 0x65 && data[3] === 0x72 && data[8] === 0x3a) {
      if (data[9] === 0x30 && data[10] === 0x2c) gen.onAck(d, true);
      else gen.onAck(d, false);
      return;
    }
    gen.ackCommand(d, data.toString('utf8'));
    return;
  }
  let m;
  const text = data.toString('utf8');
  if (gen.o.echo) m = {};
  else {
    try {
      m = JSON.parse(text);
    } catch {
      gen.fail(d, 'handshake-json');
      return;
    }
    // A server command can arrive before the handshake ends (e.g. a queued command or the
    // live-metering keep-alive right after register): ack it, it is not a reply.
    if (typeof m.action === 'string') {
      if (typeof m.sequence === 'string') {
        gen.totals.commands++;
        ws.send(`{"error":0,"userAgent":"device","apikey":"${d.key}","deviceid":"${d.id}","sequence":"${m.sequence}"}`);
      }
      return;
    }
    if (m.error !== undefined && m.error !== 0) {
      gen.fail(d, `${['', '', '', 'register', 'date', 'query'][d.st] || 'handshake'}-error-${m.error}`);
      return;
    }
  }
  switch (d.st) {
    case S.REGISTER:
      if (typeof m.apikey === 'string' && !gen.o.echo) d.key = m.apikey;
      d.st = S.DATE;
      ws.send(`{"userAgent":"device","apikey":"${d.key}","deviceid":"${d.id}","action":"date"}`);
      return;
    case S.DATE: {
      const opts = gen.conn ? gen.conn.opts : { query: true };
      if (opts.query) {
        d.st = S.QUERY;
        ws.send(`{"userAgent":"device","apikey":"${d.key}","deviceid":"${d.id}","action":"query","params":["timers"]}`);
      } else gen.ready(d);
      return;
    }
    case S.QUERY:
      gen.ready(d);
      return;
    default:
  }
}

function onTextPong(gen, d) {
  const p = gen.phase;
  if (p && d.pingAt >= p.wStart) {
    p.pongs++;
    rec(p.pongHist, now() - d.pingAt);
  }
}

function onPong() {
  const d = this.__dev;
  if (d) onTextPong(this.__gen, d);
}

function onClose() {
  const d = this.__dev;
  const gen = this.__gen;
  this.__dev = null;
  if (!d || d.ws !== this) return;
  d.ws = null;
  if (d.st === S.READY) {
    gen.online--;
    d.st = S.IDLE;
    if (!d.drop) {
      // Lost while ready: reconnect with back-off, like the firmware.
      gen.totals.unexpectedCloses++;
      gen.totals.reconnects++;
      d.attempt = 0;
      d.st = S.WAIT;
      const delay = 1000 * (0.5 + gen.random());
      heapPush(gen.retries, [now() + delay, d]);
      gen.wake(now() + delay);
    }
    return;
  }
  if (d.st >= S.DISPATCH && d.st <= S.QUERY) gen.fail(d, 'closed');
}

function onError() {
  const d = this.__dev;
  if (d && d.st >= S.DISPATCH && d.st <= S.QUERY) this.__gen.fail(d, 'ws-error');
}

function onUnexpected(_req, res) {
  const d = this.__dev;
  if (d) this.__gen.fail(d, `upgrade-${res.statusCode}`);
}

function onSubMessage(data) {
  const gen = this.__gen;
  this.__frames++;
  const p = gen.phase;
  if (!p) return;
  const s = data.toString('latin1');
  if (this.__kind !== 'raw') {
    onHubFrame(gen, p, this, s);
    return;
  }
  const k = s.indexOf('"benchTs":');
  if (k < 0) return;
  const ts = localOf(parseFloat(s.slice(k + 10, k + 30)));
  if (ts >= p.wStart && ts < p.wEnd) {
    p.deliveries++;
    p.subFrames++;
    rec(p.delivHist, now() - ts);
  }
}

/** A hub frame: find its device, count it once per (subscriber, update) of the window. */
function onHubFrame(gen, p, ws, s) {
  const key = ws.__kind === 'zhiting' ? '"identity":"' : '"deviceid":"';
  const k = s.indexOf(key);
  if (k < 0) return;
  const d = gen.byId.get(s.slice(k + key.length, k + key.length + 10));
  if (!d || !d.lastWin) return;
  p.subFrames++;
  if (ws.__seen[d.i] === d.seq) return;
  ws.__seen[d.i] = d.seq;
  p.deliveries++;
  rec(p.delivHist, now() - d.lastAt);
}

function onSlowMessage() {
  this.__frames++;
}

function slowState(ws) {
  return {
    frames: ws.__frames,
    open: ws.readyState === 1,
    pausedMsAgo: ws.__pausedAt ? Math.round(now() - ws.__pausedAt) : null,
    closeCode: ws.__closeCode ?? null,
    closedAfterPauseMs: ws.__closedAt !== undefined && ws.__pausedAt ? Math.round(ws.__closedAt - ws.__pausedAt) : null,
  };
}

// ---- a tiny binary heap of [time, device] -------------------------------------------------------

function heapPush(h, item) {
  h.push(item);
  let i = h.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (h[parent][0] <= h[i][0]) break;
    [h[parent], h[i]] = [h[i], h[parent]];
    i = parent;
  }
}

function heapPop(h) {
  const top = h[0];
  const last = h.pop();
  if (h.length > 0) {
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && h[l][0] < h[m][0]) m = l;
      if (r < h.length && h[r][0] < h[m][0]) m = r;
      if (m === i) break;
      [h[m], h[i]] = [h[i], h[m]];
      i = m;
    }
  }
  return top;
}

module.exports = { LoadGen, prng };

// ---- child-process mode: driven by run.js over IPC ----------------------------------------------

if (require.main === module) {
  const { serve } = require('./lib/ipc');
  let gen = null;
  const need = () => {
    if (!gen) throw new Error('init first');
    return gen;
  };
  serve({
    async init(args) {
      if (gen) await gen.close();
      gen = new LoadGen(args);
      return { devices: gen.devices.length, pid: process.pid, node: process.version };
    },
    connect: (args) => need().connect(args),
    dropAll: (args) => need().dropAll(args),
    phase: (args) => need().runTimed(args),
    subscribe: (args) => need().subscribe(args),
    pauseSlow: () => need().pauseSlow(),
    unsubscribe: () => need().unsubscribe(),
    status: () => need().status(),
    async close() {
      if (gen) await gen.close();
      gen = null;
      return {};
    },
  });
}
