'use strict';
// Device families of the simulator (src/sim/models.ts, behaviour.ts): each profile's model string,
// initial params (keys, order, value types) and behaviour (inching, interlock, POW uiActive
// metering and kWh history, TH sensor reports and thermostat, RF Bridge cmd protocol), against a
// small fake CoolKit server (plain HTTP dispatch + `ws` on /api/ws, 127.0.0.1:0).

const assert = require('node:assert/strict');
const http = require('node:http');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { WebSocketServer } = require('ws');
const sim = require('../../dist/src/sim');

const { SimulatedDevice } = sim;
const CLI = path.join(__dirname, '../../dist/src/sim/cli.js');
const DEVICE_INDEX = path.join(__dirname, '../../dist/src/sim/index.js');
const DEVICEID = '100008db11';
const STA_MAC = '5C:CF:7F:08:DB:11';
const ISSUED = '7c1e9a44-8d2b-4f6a-b0c3-5e9d2a1f8b67';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(fn, what, timeoutMs = 10000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function assertExact(actual, expected, what = 'value') {
  assert.deepEqual(actual, expected, what);
  assert.deepEqual(Object.keys(actual), Object.keys(expected), `${what}: key order`);
}

/** The report envelope the device has always used (seed 001). */
function assertReportEnvelope(msg) {
  assert.deepEqual(Object.keys(msg), ['userAgent', 'apikey', 'deviceid', 'action', 'params']);
  assert.equal(msg.userAgent, 'device');
  assert.equal(msg.apikey, ISSUED);
  assert.equal(msg.action, 'update');
}

async function startServer() {
  const srv = { dispatches: [], conns: [] };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      srv.dispatches.push(JSON.parse(body));
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: 0, reason: 'ok', IP: '127.0.0.1', port: srv.port }));
    });
  });
  const wss = new WebSocketServer({ server, path: '/api/ws' });
  wss.on('connection', (ws) => {
    const conn = { ws, messages: [], closed: false };
    srv.conns.push(conn);
    ws.on('close', () => (conn.closed = true));
    ws.on('message', (data) => {
      const msg = JSON.parse(data.toString());
      conn.messages.push(msg);
      const head = { error: 0, deviceid: msg.deviceid, apikey: ISSUED };
      const reply =
        msg.action === 'register'
          ? { ...head, config: { hb: 1, hbInterval: 145 } }
          : msg.action === 'date'
            ? { ...head, date: new Date().toISOString() }
            : msg.action === 'update'
              ? head
              : msg.action === 'query'
                ? { ...head, params: 0 }
                : undefined;
      if (reply) ws.send(JSON.stringify(reply));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  srv.port = server.address().port;
  srv.url = `http://127.0.0.1:${srv.port}`;
  srv.all = () => srv.conns.flatMap((c) => c.messages);
  srv.close = async () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  };
  return srv;
}

let seq = 0;
/** Push a server update in the seed's shape; returns its sequence. */
function command(conn, params) {
  const sequence = String(1700000000000 + ++seq);
  conn.ws.send(JSON.stringify({ action: 'update', deviceid: DEVICEID, apikey: ISSUED, userAgent: 'app', sequence, ts: 0, params, from: 'app' }));
  return sequence;
}

const ackOf = (conn, sequence) => conn.messages.find((m) => m.sequence === sequence && 'error' in m);
const reportsOf = (conn, from = 4) => conn.messages.slice(from).filter((m) => m.action === 'update');
const isMeteringOnly = (p) => Object.keys(p).sort().join() === 'current,power,voltage';

describe('sim: device families (--model profiles)', function () {
  this.timeout(20000);
  const servers = [];
  const devices = [];
  const children = [];

  afterEach(async () => {
    await Promise.all(devices.splice(0).map((d) => d.stop()));
    await Promise.all(servers.splice(0).map((s) => s.close()));
    for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  });

  async function server() {
    const s = await startServer();
    servers.push(s);
    return s;
  }
  function device(opts) {
    const d = new SimulatedDevice({ deviceid: DEVICEID, reconnect: false, ...opts });
    devices.push(d);
    return d;
  }
  /** Registered device past its register/date/update/query handshake. */
  async function online(opts) {
    const srv = await server();
    const dev = device({ server: srv.url, ...opts });
    await dev.start();
    const conn = await until(() => srv.conns.find((c) => c.messages.length >= 4), 'handshake');
    return { srv, dev, conn };
  }
  /** Send a command and wait for its ack; returns the ack. */
  async function send(conn, params) {
    const s = command(conn, params);
    return until(() => ackOf(conn, s), `ack of ${JSON.stringify(params)}`);
  }

  describe('profiles: model strings and initial params', () => {
    const tail = { fwVersion: undefined, rssi: -31, staMac: STA_MAC };
    const expectations = {
      basic: {
        model: 'ITA-GZ1-GL',
        rom: '1.5.5',
        params: { switch: 'off', ...tail, startup: 'off', pulse: 'off', pulseWidth: 500, sledOnline: 'on' },
      },
      '2ch': {
        model: 'SIM-DUAL',
        rom: '2.0.2',
        params: {
          switches: [0, 1].map((outlet) => ({ switch: 'off', outlet })),
          configure: [0, 1].map((outlet) => ({ startup: 'off', outlet })),
          pulses: [0, 1].map((outlet) => ({ pulse: 'off', width: 500, outlet })),
          lock: 0,
          sledOnline: 'on',
          ...tail,
        },
      },
      '3ch': { model: 'SIM-3CH', rom: '2.0.2', outlets: 3 },
      '4ch': {
        model: 'PSF-B04-GL',
        rom: '2.0.2',
        params: {
          switches: [0, 1, 2, 3].map((outlet) => ({ switch: 'off', outlet })),
          configure: [0, 1, 2, 3].map((outlet) => ({ startup: 'off', outlet })),
          pulses: [0, 1, 2, 3].map((outlet) => ({ pulse: 'off', width: 500, outlet })),
          lock: 0,
          sledOnline: 'on',
          ...tail,
        },
      },
      pow: { model: 'SIM-POW-R2', rom: '3.5.0', metering: 'string' },
      s31: { model: 'SIM-S31', rom: '3.5.0', metering: 'number' },
      th16: {
        model: 'PSA-BHA-GL',
        rom: '2.0.4',
        params: {
          switch: 'off',
          startup: 'off',
          pulse: 'off',
          pulseWidth: 500,
          mainSwitch: 'off',
          deviceType: 'normal',
          sensorType: 'AM2301',
          currentTemperature: '22.5',
          currentHumidity: '45',
          ...tail,
        },
      },
      'th16-ds18b20': {
        model: 'PSA-BHA-GL',
        rom: '2.0.4',
        params: {
          switch: 'off',
          startup: 'off',
          pulse: 'off',
          pulseWidth: 500,
          mainSwitch: 'off',
          deviceType: 'normal',
          sensorType: 'DS18B20',
          currentTemperature: '22.5',
          currentHumidity: 'unavailable',
          ...tail,
        },
      },
      rfbridge: { model: 'SIM-RF-BRIDGE', rom: '2.7.0', rf: true },
    };

    it('covers exactly the documented profile names', () => {
      assert.deepEqual(sim.profileNames(), Object.keys(expectations));
    });

    for (const [name, exp] of Object.entries(expectations)) {
      it(`${name}: dispatch/register model ${exp.model}, rom ${exp.rom}, initial params and value types`, async () => {
        const { srv, dev, conn } = await online({ profile: name });
        assert.equal(dev.profile.name, name);
        assert.equal(srv.dispatches[0].model, exp.model);
        assert.equal(srv.dispatches[0].romVersion, exp.rom);
        const [register, , update] = conn.messages;
        assert.equal(register.action, 'register');
        assert.equal(register.model, exp.model);
        assert.equal(register.romVersion, exp.rom);
        assertReportEnvelope(update);
        const p = update.params;
        if (exp.params) {
          assertExact(p, { ...exp.params, ...('fwVersion' in exp.params ? { fwVersion: exp.rom } : {}) }, 'initial params');
        } else if (exp.outlets) {
          const outlets = [...Array(exp.outlets).keys()];
          assert.deepEqual(p.switches, outlets.map((outlet) => ({ switch: 'off', outlet })));
          assert.deepEqual(p.pulses, outlets.map((outlet) => ({ pulse: 'off', width: 500, outlet })));
          assert.deepEqual(p.configure, outlets.map((outlet) => ({ startup: 'off', outlet })));
        } else if (exp.metering) {
          assert.deepEqual(Object.keys(p), ['switch', 'startup', 'sledOnline', 'power', 'voltage', 'current', 'fwVersion', 'rssi', 'staMac']);
          assert.equal(p.switch, 'off');
          for (const k of ['power', 'voltage', 'current']) assert.equal(typeof p[k], exp.metering, `${k} type`);
          if (exp.metering === 'string') {
            assert.equal(p.power, '0.00');
            assert.equal(p.current, '0.00');
            assert.match(p.voltage, /^2[23]\d\.\d\d$/);
          } else {
            assert.equal(p.power, 0);
            assert.equal(p.current, 0);
            assert.ok(p.voltage >= 225 && p.voltage <= 235, `voltage ${p.voltage}`);
            assert.equal(Math.round(p.voltage * 100) / 100, p.voltage, 'at most 2 decimals');
          }
        } else if (exp.rf) {
          assert.deepEqual(Object.keys(p), ['rfList', 'fwVersion', 'rssi', 'staMac']);
          assert.deepEqual(
            p.rfList.map((e) => e.rfChl),
            [0, 1],
          );
          for (const e of p.rfList) assert.match(e.rfVal, /^[0-9A-F]{18}$/);
          // Deterministic from the deviceid.
          assert.deepEqual(p.rfList, sim.initialParams(sim.PROFILES.rfbridge, { deviceid: DEVICEID, romVersion: '2.7.0' }).rfList);
        }
      });
    }

    it('an unknown --model string is a raw model string with the basic behaviour; a known model string selects its profile', async () => {
      const raw = await online({ profile: 'XYZ-CUSTOM-1' });
      assert.equal(raw.conn.messages[0].model, 'XYZ-CUSTOM-1');
      assert.equal(raw.conn.messages[0].romVersion, '1.5.5');
      assert.deepEqual(Object.keys(raw.conn.messages[2].params), Object.keys(expectations.basic.params));
      assert.equal(raw.dev.profile.kind, 'switch');
      assert.equal(sim.resolveProfile('PSF-B04-GL').name, '4ch');
      assert.equal(sim.resolveProfile('TH16').name, 'th16');
      assert.equal(sim.resolveProfile(undefined).name, 'basic');
      // model/romVersion options override the profile's strings, not its behaviour
      const d = device({ server: 'http://127.0.0.1:1', profile: '4ch', model: 'PSF-A04-GL', romVersion: '3.0.0' });
      assert.equal(d.model, 'PSF-A04-GL');
      assert.equal(d.state.switches.length, 4);
      assert.equal(d.state.fwVersion, '3.0.0');
    });
  });

  describe('multi-channel (4ch / 2ch)', () => {
    it('a partial switches command changes only those outlets and the device reports the full array', async () => {
      const { dev, conn } = await online({ profile: '4ch' });
      const ack = await send(conn, { switches: [{ outlet: 2, switch: 'on' }] });
      assert.equal(ack.error, 0);
      const rep = await until(() => reportsOf(conn)[0], 'report');
      assertReportEnvelope(rep);
      const expected = [
        { switch: 'off', outlet: 0 },
        { switch: 'off', outlet: 1 },
        { switch: 'on', outlet: 2 },
        { switch: 'off', outlet: 3 },
      ];
      assert.deepEqual(rep.params.switches, expected);
      assert.deepEqual(dev.state.switches, expected);

      await send(conn, { switches: [{ outlet: 0, switch: 'on' }, { outlet: 2, switch: 'off' }] });
      assert.deepEqual(
        dev.state.switches.map((s) => s.switch),
        ['on', 'off', 'off', 'off'],
      );
      // partial pulses/configure are merged by outlet too
      await send(conn, { configure: [{ outlet: 3, startup: 'stay' }] });
      assert.deepEqual(
        dev.state.configure.map((c) => c.startup),
        ['off', 'off', 'off', 'stay'],
      );
    });

    it('rejects malformed multi-channel params with error 400 and changes nothing', async () => {
      const { dev, conn } = await online({ profile: '4ch' });
      for (const bad of [
        { switches: [{ outlet: 1, switch: 'maybe' }] },
        { switches: [{ switch: 'on' }] },
        { switches: { outlet: 1, switch: 'on' } },
        { pulses: [{ outlet: 0, pulse: 'on', width: 700 }] },
        { lock: 'yes' },
      ]) {
        assert.equal((await send(conn, bad)).error, 400, JSON.stringify(bad));
      }
      assert.deepEqual(reportsOf(conn), [], 'no report after a refused command');
      assert.ok(dev.state.switches.every((s) => s.switch === 'off'));
    });

    it('2ch ignores outlets beyond its 2 channels (the CK examples send 4 entries)', async () => {
      const { dev, conn } = await online({ profile: '2ch' });
      await send(conn, {
        switches: [0, 1, 2, 3].map((outlet) => ({ switch: outlet === 0 ? 'on' : 'off', outlet })),
      });
      assert.deepEqual(dev.state.switches, [
        { switch: 'on', outlet: 0 },
        { switch: 'off', outlet: 1 },
      ]);
    });

    it('per-outlet inching turns only that outlet off after its width and reports the full switches array', async () => {
      const { dev, conn } = await online({ profile: '4ch' });
      await send(conn, { pulses: [{ pulse: 'on', width: 500, outlet: 1 }] });
      const t0 = Date.now();
      await send(conn, { switches: [{ outlet: 1, switch: 'on' }, { outlet: 0, switch: 'on' }] });
      const n = conn.messages.length;
      const off = await until(
        () => conn.messages.slice(n).find((m) => m.action === 'update' && Object.keys(m.params).join() === 'switches'),
        'inching report',
      );
      const elapsed = Date.now() - t0;
      // not before its width; the upper bound only tells the inching timer from something else
      assert.ok(elapsed >= 450 && elapsed < 5000, `auto-off after ${elapsed} ms`);
      assertReportEnvelope(off);
      assert.deepEqual(off.params.switches, [
        { switch: 'on', outlet: 0 },
        { switch: 'off', outlet: 1 },
        { switch: 'off', outlet: 2 },
        { switch: 'off', outlet: 3 },
      ]);
      await sleep(600);
      assert.equal(dev.state.switches[0].switch, 'on', 'outlet 0 has no inching');
    });

    it('interlock (lock:1) keeps only the last outlet switched on', async () => {
      const { dev, conn } = await online({ profile: '4ch' });
      await send(conn, { lock: 1 });
      await send(conn, { switches: [{ outlet: 0, switch: 'on' }] });
      await send(conn, { switches: [{ outlet: 3, switch: 'on' }] });
      assert.deepEqual(
        dev.state.switches.map((s) => s.switch),
        ['off', 'off', 'off', 'on'],
      );
    });
  });

  describe('basic: inching', () => {
    it('pulse:"on" turns the switch off again after pulseWidth and reports {"switch":"off"}', async () => {
      const { dev, conn } = await online({ profile: 'basic' });
      await send(conn, { pulse: 'on', pulseWidth: 500 });
      const t0 = Date.now();
      await send(conn, { switch: 'on' });
      assert.equal(dev.state.switch, 'on');
      const n = conn.messages.length;
      const off = await until(() => conn.messages.slice(n).find((m) => m.action === 'update'), 'auto-off report');
      const elapsed = Date.now() - t0;
      // not before its width; the upper bound only tells the inching timer from something else
      assert.ok(elapsed >= 450 && elapsed < 5000, `auto-off after ${elapsed} ms`);
      assertReportEnvelope(off);
      assertExact(off.params, { switch: 'off' });
      assert.equal(dev.state.switch, 'off');
    });

    it('no auto-off without pulse, and a local button press also starts the inching', async () => {
      const { dev, conn } = await online({ profile: 'basic' });
      await send(conn, { switch: 'on' });
      await sleep(700);
      assert.equal(dev.state.switch, 'on', 'pulse is off: stays on');
      await send(conn, { switch: 'off', pulse: 'on', pulseWidth: 500 });
      dev.setLocal({ switch: 'on' });
      await until(() => dev.state.switch === 'off', 'inching after a local press');
    });

    it('rejects a pulseWidth that is not a multiple of 500 in [500, 3600000]', async () => {
      const { conn } = await online({ profile: 'basic' });
      for (const w of [499, 700, 3600500, '1000']) assert.equal((await send(conn, { pulse: 'on', pulseWidth: w })).error, 400, String(w));
      assert.equal((await send(conn, { switch: 'ON' })).error, 400);
      assert.equal((await send(conn, { pulse: 'on', pulseWidth: 3600000 })).error, 0);
    });
  });

  describe('pow / s31: metering', () => {
    it('reports metering only inside a uiActive window, and only on a change beyond the thresholds', async () => {
      const { dev, conn } = await online({ profile: 'pow', meteringTickMs: 20, drift: false });
      assert.equal(dev.meteringActiveUntil, 0);

      // Outside a window: switching on changes the live power but nothing is reported about it.
      await send(conn, { switch: 'on' });
      await sleep(150);
      assert.equal(reportsOf(conn).filter((m) => isMeteringOnly(m.params)).length, 0, 'no metering outside the window');
      assert.equal(dev.state.power, '0.00', 'state keeps the last reported value');

      // Open a 2 s window (time for the steps below on a busy machine): the current readings
      // are reported at once.
      const t0 = Date.now();
      let n = conn.messages.length;
      const ack = await send(conn, { uiActive: 2 });
      assert.equal(ack.error, 0);
      assert.ok(dev.meteringActiveUntil >= t0 + 1950 && dev.meteringActiveUntil <= Date.now() + 2000, `until ${dev.meteringActiveUntil - t0}`);
      const first = await until(() => conn.messages.slice(n).find((m) => m.action === 'update'), 'first metering report');
      assertReportEnvelope(first);
      assert.ok(isMeteringOnly(first.params), JSON.stringify(first.params));
      assert.deepEqual(Object.keys(first.params), ['power', 'voltage', 'current']);
      for (const k of ['power', 'voltage', 'current']) assert.match(first.params[k], /^\d+\.\d\d$/, k);
      const p = Number(first.params.power);
      const v = Number(first.params.voltage);
      assert.ok(p >= 60 && p <= 1500, `power ${p}`);
      assert.ok(v >= 225 && v <= 235, `voltage ${v}`);
      assert.ok(Math.abs(Number(first.params.current) - p / v) <= 0.011, 'current = power / voltage');
      assert.equal(dev.state.power, first.params.power);

      // No change (drift off): ticks report nothing more.
      await sleep(100);
      assert.equal(reportsOf(conn).filter((m) => isMeteringOnly(m.params)).length, 1, 'no report without a change');

      // Switch off inside the window: the next tick reports power 0.
      n = conn.messages.length;
      await send(conn, { switch: 'off' });
      const zero = await until(() => conn.messages.slice(n).find((m) => m.action === 'update' && isMeteringOnly(m.params)), 'power 0 report');
      assert.deepEqual(zero.params, { power: '0.00', voltage: first.params.voltage, current: '0.00' });

      // After the window: switch on again, nothing about metering is reported.
      await until(() => Date.now() > dev.meteringActiveUntil + 30, 'window end', 10000);
      n = conn.messages.length;
      await send(conn, { switch: 'on' });
      await sleep(150);
      assert.equal(conn.messages.slice(n).filter((m) => m.action === 'update' && isMeteringOnly(m.params)).length, 0, 'window closed');
      assert.equal(dev.state.power, '0.00');
    });

    it('a re-sent uiActive extends the open window without an extra report', async () => {
      const { dev, conn } = await online({ profile: 'pow', meteringTickMs: 20, drift: false });
      await send(conn, { uiActive: 60 });
      const until1 = dev.meteringActiveUntil;
      await until(() => reportsOf(conn).length === 1, 'window report');
      await sleep(20);
      await send(conn, { uiActive: 120 });
      assert.ok(dev.meteringActiveUntil > until1 + 50_000);
      await sleep(80);
      assert.equal(reportsOf(conn).length, 1);
      await send(conn, { uiActive: 0 });
      assert.ok(dev.meteringActiveUntil <= Date.now(), 'uiActive 0 closes the window');
      assert.equal((await send(conn, { uiActive: 'soon' })).error, 400);
    });

    it('with drift the readings random-walk inside the bounds; the window dies with the connection', async () => {
      let x = 0;
      const random = () => ((x = (x * 9301 + 49297) % 233280) / 233280);
      const { dev, conn } = await online({ profile: 'pow', meteringTickMs: 5, random });
      await send(conn, { switch: 'on' });
      await send(conn, { uiActive: 60 });
      const seen = new Set();
      for (let i = 0; i < 40; i++) {
        const m = dev.metering;
        assert.ok(m.voltage >= 225 && m.voltage <= 235 && m.power >= 60 && m.power <= 1500, JSON.stringify(m));
        seen.add(m.voltage.toFixed(3));
        await sleep(5);
      }
      assert.ok(seen.size > 5, 'voltage moves');
      await dev.stop();
      assert.equal(dev.meteringActiveUntil, 0, 'window closed on stop');
      const n = conn.messages.length;
      await sleep(50);
      assert.equal(conn.messages.length, n);
    });

    it('s31 reports metering values as numbers', async () => {
      const { conn } = await online({ profile: 's31', meteringTickMs: 20, drift: false });
      await send(conn, { switch: 'on' });
      const n = conn.messages.length;
      await send(conn, { uiActive: 60 });
      const rep = await until(() => conn.messages.slice(n).find((m) => m.action === 'update'), 'metering');
      for (const k of ['power', 'voltage', 'current']) {
        assert.equal(typeof rep.params[k], 'number', k);
        assert.equal(Math.round(rep.params[k] * 100) / 100, rep.params[k]);
      }
      assert.ok(rep.params.power >= 60);
    });

    it('hundredDaysKwh:"get" reports 600 lower-case hex chars, 3 bytes a day, deterministic from the deviceid', async () => {
      const { conn } = await online({ profile: 'pow' });
      const ack = await send(conn, { hundredDaysKwh: 'get' });
      assert.equal(ack.error, 0);
      const rep = await until(() => reportsOf(conn).find((m) => 'hundredDaysKwhData' in m.params), 'history');
      assertReportEnvelope(rep);
      assertExact(rep.params, { hundredDaysKwhData: rep.params.hundredDaysKwhData });
      const hex = rep.params.hundredDaysKwhData;
      assert.match(hex, /^[0-9a-f]{600}$/);
      // Decode independently: byte0 integer kWh, byte1 tenths, byte2 hundredths, today first.
      const days = [];
      for (let i = 0; i < 600; i += 6) {
        const [a, b, c] = [0, 2, 4].map((o) => parseInt(hex.slice(i + o, i + o + 2), 16));
        assert.ok(b <= 9 && c <= 9, `day ${i / 6}: tenths/hundredths digits`);
        days.push(Math.round(a * 100 + b * 10 + c) / 100);
      }
      assert.equal(days.length, 100);
      assert.deepEqual(days, sim.hundredDaysKwhFor(DEVICEID));
      assert.ok(days.some((d) => d > 0));
      assert.notDeepEqual(sim.hundredDaysKwhFor('100008db12'), days, 'another device has another history');
      assert.equal(sim.encodeHundredDaysKwh([25.11, 25.31]).slice(0, 18), '190101190301000000');
      assert.deepEqual(sim.decodeHundredDaysKwh(sim.encodeHundredDaysKwh([25.11, 25.31])).slice(0, 3), [25.11, 25.31, 0]);
      assert.deepEqual(Object.keys(reportsOf(conn)[0].params), ['hundredDaysKwhData'], 'no full-state report for a get');
    });

    it('oneKwh:"get" reports oneKwhData as a 2-decimal string; bad values are refused', async () => {
      const { dev, conn } = await online({ profile: 'pow' });
      await send(conn, { oneKwh: 'get' });
      const rep = await until(() => reportsOf(conn).find((m) => 'oneKwhData' in m.params), 'oneKwhData');
      assert.match(rep.params.oneKwhData, /^\d+\.\d\d$/);
      assert.equal((await send(conn, { hundredDaysKwh: 'set' })).error, 400);
      assert.equal((await send(conn, { oneKwh: 'reset' })).error, 400);
      assert.equal(dev.state.oneKwh, undefined, 'get is a request, not state');
      assert.equal(dev.state.uiActive, undefined);
    });
  });

  describe('th16: sensor reports and thermostat', () => {
    it('reports temperature and humidity together, only on a change >= 0.5 °C or >= 5 %RH', async () => {
      const { dev, conn } = await online({ profile: 'th16', sensorTickMs: 20, drift: false });
      assert.equal(conn.messages[2].params.currentTemperature, '22.5', 'sent on connect');
      dev.setReading({ temperature: 22.9 });
      await sleep(120);
      assert.deepEqual(reportsOf(conn), [], '0.4 °C is below the threshold');
      dev.setReading({ temperature: 23.0 });
      const rep = await until(() => reportsOf(conn)[0], 'temperature report');
      assertReportEnvelope(rep);
      assertExact(rep.params, { currentTemperature: '23', currentHumidity: '45', sensorType: 'AM2301' });

      dev.setReading({ humidity: 49 });
      await sleep(120);
      assert.equal(reportsOf(conn).length, 1, '4 %RH is below the threshold');
      dev.setReading({ humidity: 50.2, temperature: 23.3 });
      const rep2 = await until(() => reportsOf(conn)[1], 'humidity report');
      assertExact(rep2.params, { currentTemperature: '23.3', currentHumidity: '50', sensorType: 'AM2301' });
      assert.equal(dev.state.currentHumidity, '50');
      assert.throws(() => dev.setReading({ temperature: NaN }), TypeError);
    });

    it('DS18B20 reports currentHumidity "unavailable" and never reports humidity changes', async () => {
      const { dev, conn } = await online({ profile: 'th16-ds18b20', sensorTickMs: 20, drift: false });
      assert.equal(conn.messages[2].params.currentHumidity, 'unavailable');
      dev.setReading({ humidity: 90 });
      await sleep(100);
      assert.deepEqual(reportsOf(conn), []);
      dev.setReading({ temperature: 30 });
      const rep = await until(() => reportsOf(conn)[0], 'report');
      assertExact(rep.params, { currentTemperature: '30', currentHumidity: 'unavailable', sensorType: 'DS18B20' });
      // the sensorType option works on the plain profile too
      const d = device({ server: 'http://127.0.0.1:1', profile: 'th16', sensorType: 'DS18B20' });
      assert.equal(d.state.currentHumidity, 'unavailable');
    });

    it('the thermostat switches the relay when the reading crosses targetHigh / targetLow (auto mode only)', async () => {
      const { dev, conn } = await online({ profile: 'th16', sensorTickMs: 20, drift: false });
      await send(conn, { switch: 'on' });
      dev.setReading({ temperature: 30 });
      await sleep(80);
      assert.equal(dev.state.switch, 'on', 'normal mode: no thermostat');

      // Cooling: off above 28, on below 24.
      const n = conn.messages.length;
      await send(conn, {
        deviceType: 'temperature',
        mainSwitch: 'on',
        targets: [
          { targetHigh: '28', reaction: { switch: 'off' } },
          { targetLow: '24', reaction: { switch: 'on' } },
        ],
      });
      const off = await until(() => conn.messages.slice(n).find((m) => m.action === 'update' && m.params.switch === 'off'), 'switch off');
      assertExact(off.params, { switch: 'off' });
      assert.equal(dev.state.switch, 'off');

      dev.setReading({ temperature: 26 });
      await sleep(80);
      assert.equal(dev.state.switch, 'off', 'between the targets: no change');
      dev.setReading({ temperature: 24 });
      const on = await until(
        () => reportsOf(conn).find((m) => Object.keys(m.params).join() === 'switch' && m.params.switch === 'on'),
        'switch on reported at <= targetLow',
      );
      assertExact(on.params, { switch: 'on' });
      assert.equal(dev.state.switch, 'on');

      // Numbers are tolerated as target values; humidity mode reads the humidity.
      await send(conn, {
        deviceType: 'humidity',
        targets: [
          { targetHigh: 60, reaction: { switch: 'off' } },
          { targetLow: 40, reaction: { switch: 'on' } },
        ],
      });
      dev.setReading({ humidity: 70 });
      await until(() => dev.state.switch === 'off', 'humidity high');

      // mainSwitch off = temporary manual: no thermostat.
      await send(conn, { mainSwitch: 'off', switch: 'off' });
      dev.setReading({ humidity: 20 });
      await sleep(80);
      assert.equal(dev.state.switch, 'off');
      assert.equal((await send(conn, { deviceType: 'cooling' })).error, 400);
    });
  });

  describe('rfbridge', () => {
    it('capture learns a code after captureDelayMs and reports the whole rfList', async () => {
      // a delay well above an ack's round trip on a busy machine
      const { dev, conn } = await online({ profile: 'rfbridge', captureDelayMs: 400 });
      const initial = conn.messages[2].params.rfList;
      const t0 = Date.now();
      const ack = await send(conn, { cmd: 'capture', rfChl: 3 });
      assert.equal(ack.error, 0);
      assert.deepEqual(reportsOf(conn), [], 'nothing but the ack at once');
      const rep = await until(() => reportsOf(conn)[0], 'rfList report');
      assert.ok(Date.now() - t0 >= 390, 'after the capture delay');
      assertReportEnvelope(rep);
      assertExact(rep.params, { rfList: rep.params.rfList });
      assert.deepEqual(
        rep.params.rfList.map((e) => e.rfChl),
        [0, 1, 3],
      );
      assert.deepEqual(rep.params.rfList.slice(0, 2), initial);
      assert.match(rep.params.rfList[2].rfVal, /^[0-9A-F]{18}$/);
      assert.deepEqual(dev.state.rfList, rep.params.rfList);
      assert.equal(dev.state.cmd, undefined, 'cmd is not state');
    });

    it('captureCancel cancels a pending capture', async () => {
      // the cancel must arrive within the delay, also on a busy machine
      const { conn } = await online({ profile: 'rfbridge', captureDelayMs: 400 });
      await send(conn, { cmd: 'capture', rfChl: 5 });
      assert.equal((await send(conn, { cmd: 'captureCancel' })).error, 0);
      await sleep(600); // past the capture delay
      assert.deepEqual(reportsOf(conn), []);
    });

    it('transmit acks 0 for a learned channel (and records it), 400 otherwise; edit replaces the list', async () => {
      const { dev, conn } = await online({ profile: 'rfbridge' });
      assert.equal((await send(conn, { cmd: 'transmit', rfChl: 1 })).error, 0);
      assert.equal((await send(conn, { cmd: 'transmit', rfChl: 7 })).error, 400);
      assert.equal((await send(conn, { cmd: 'transmit' })).error, 400);
      const tx = dev.transmitted;
      assert.equal(tx.length, 1);
      assert.equal(tx[0].rfChl, 1);
      assert.equal(tx[0].rfVal, dev.state.rfList[1].rfVal);

      const rfList = [{ rfChl: 7, rfVal: '29EA015E04245575C0' }];
      assert.equal((await send(conn, { cmd: 'edit', rfList })).error, 0);
      assert.deepEqual(dev.state.rfList, rfList);
      assert.equal((await send(conn, { cmd: 'transmit', rfChl: 7 })).error, 0);
      assert.equal((await send(conn, { cmd: 'transmit', rfChl: 1 })).error, 400, 'no longer learned');
      assert.equal((await send(conn, { cmd: 'edit', rfList: [{ rfChl: 'x' }] })).error, 400);
      assert.equal((await send(conn, { cmd: 'fly' })).error, 400);
      assert.deepEqual(
        dev.transmitted.map((t) => t.rfChl),
        [1, 7],
      );
    });

    it('triggerRf(n) reports {"cmd":"trigger","rfTrig<n>":"<ISO, .000Z>"} exactly as the UIID28 doc', async () => {
      const { dev, conn } = await online({ profile: 'rfbridge' });
      const before = Math.floor(Date.now() / 1000) * 1000;
      assert.equal(dev.triggerRf(1), true);
      const rep = await until(() => reportsOf(conn)[0], 'trigger');
      assertReportEnvelope(rep);
      assert.deepEqual(Object.keys(rep.params), ['cmd', 'rfTrig1']);
      assert.equal(rep.params.cmd, 'trigger');
      assert.match(rep.params.rfTrig1, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
      const t = Date.parse(rep.params.rfTrig1);
      assert.ok(t >= before && t <= Date.now(), 'now, to the second');
      assert.throws(() => dev.triggerRf(-1), TypeError);
      const basic = device({ server: 'http://127.0.0.1:1' });
      assert.throws(() => basic.triggerRf(0), TypeError);
      assert.throws(() => basic.setReading({ temperature: 1 }), TypeError);
    });

    it('rfTriggerIntervalMs triggers random learned channels while online', async () => {
      const { conn } = await online({ profile: 'rfbridge', rfTriggerIntervalMs: 30 });
      await until(() => reportsOf(conn).length >= 3, '3 random triggers');
      for (const m of reportsOf(conn)) {
        assert.equal(m.params.cmd, 'trigger');
        assert.match(Object.keys(m.params)[1], /^rfTrig[01]$/);
      }
    });
  });

  describe('timers', () => {
    it('a shared FleetTicker drives the behaviour of many devices and goes idle when they stop', async () => {
      const srv = await server();
      const ticker = new sim.FleetTicker(20);
      const devs = [1, 2, 3].map((n) =>
        device({ server: srv.url, deviceid: `10000000a${n}`, profile: 'th16', sensorTickMs: 40, drift: false, ticker }),
      );
      await Promise.all(devs.map((d) => d.start()));
      assert.equal(ticker.size, 3);
      assert.equal(ticker.running, true);
      devs[1].setReading({ temperature: 40 });
      await until(() => srv.all().some((m) => m.action === 'update' && m.deviceid === '10000000a2' && m.params.currentTemperature === '40'), 'tick via ticker');
      await Promise.all(devs.map((d) => d.stop()));
      assert.equal(ticker.size, 0);
      assert.equal(ticker.running, false, 'no interval left');
    });

    it('BehaviourScheduler runs tasks in due order with a single timer and replaces tasks by key', async () => {
      const s = new sim.BehaviourScheduler();
      const order = [];
      s.set('b', 30, () => order.push('b'));
      s.set('a', 10, () => order.push('a'));
      s.set('c', 20, () => order.push('c-old'));
      s.set('c', 20, () => order.push('c'));
      s.set('gone', 5, () => order.push('gone'));
      s.clear('gone');
      // 'b' is due last: once it ran, anything wrongly kept (due earlier) has run too
      await until(() => order.includes('b'), 'the last task');
      assert.deepEqual(order, ['a', 'c', 'b']);
      assert.equal(s.size, 0);
    });

    it('stop() and a lost connection clear every behaviour timer: the process exits by itself', async function () {
      this.timeout(10000);
      const script = `
        const http = require('node:http');
        const { WebSocketServer } = require('ws');
        const { SimulatedDevice } = require(${JSON.stringify(DEVICE_INDEX)});
        const server = http.createServer((req, res) => {
          req.resume();
          req.on('end', () => res.end(JSON.stringify({ error: 0, reason: 'ok', IP: '127.0.0.1', port: server.address().port })));
        });
        const wss = new WebSocketServer({ server, path: '/api/ws' });
        wss.on('connection', (ws) => ws.on('message', (d) => {
          const m = JSON.parse(d);
          if (m.action !== 'register') return;
          ws.send(JSON.stringify({ error: 0, deviceid: m.deviceid, apikey: 'k', config: { hbInterval: 145 } }));
          const cmd = (params) => ws.send(JSON.stringify({ action: 'update', sequence: String(Math.random()), params }));
          if (m.model === 'SIM-POW-R2') cmd({ uiActive: 3600 });
          if (m.model === 'ITA-GZ1-GL') { cmd({ pulse: 'on', pulseWidth: 3600000 }); cmd({ switch: 'on' }); }
          if (m.model === 'SIM-RF-BRIDGE') cmd({ cmd: 'capture', rfChl: 4 });
          if (m.model === 'PSF-B04-GL') { cmd({ pulses: [{ pulse: 'on', width: 3600000, outlet: 0 }] }); cmd({ switches: [{ switch: 'on', outlet: 0 }] }); }
        }));
        server.listen(0, '127.0.0.1', async () => {
          const url = 'http://127.0.0.1:' + server.address().port;
          const mk = (id, profile, extra) => new SimulatedDevice({ server: url, deviceid: id, profile, reconnect: false, pingIntervalMs: 0, ...extra });
          const stopped = [mk('1000000001', 'pow'), mk('1000000002', 'basic'), mk('1000000003', 'rfbridge', { captureDelayMs: 3600000, rfTriggerIntervalMs: 3600000 })];
          const dropped = [mk('1000000004', 'th16', { sensorTickMs: 3600000 }), mk('1000000005', '4ch')];
          const all = [...stopped, ...dropped];
          await Promise.all(all.map((d) => d.start()));
          await new Promise((r) => setTimeout(r, 200));
          if (all[1].state.switch !== 'on' || !(all[0].meteringActiveUntil > Date.now())) throw new Error('setup failed');
          await Promise.all(stopped.map((d) => d.stop()));
          for (const d of dropped) d.dropConnection();
          await new Promise((r) => setTimeout(r, 100));
          for (const c of wss.clients) c.terminate();
          wss.close();
          server.close();
          console.log('stopped');
        });
      `;
      const child = spawn(process.execPath, ['-e', script], { cwd: path.join(__dirname, '../..'), stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      const code = await new Promise((resolve) => {
        const t = setTimeout(() => resolve('hung'), 6000);
        child.on('exit', (c) => {
          clearTimeout(t);
          resolve(c);
        });
      });
      assert.equal(code, 0, `child output: ${out}`);
      assert.match(out, /stopped/);
    });
  });

  describe('coolkit-sim CLI --model', () => {
    function run(args) {
      const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      const res = { child, stdout: '', stderr: '' };
      child.stdout.on('data', (d) => (res.stdout += d));
      child.stderr.on('data', (d) => (res.stderr += d));
      res.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
      return res;
    }

    it('--help lists every profile with its model string', async () => {
      const cli = run(['--help']);
      assert.equal(await cli.exited, 0);
      for (const p of Object.values(sim.PROFILES)) assert.match(cli.stdout, new RegExp(`\\n\\s+${p.name}\\s+${p.model}\\s`), p.name);
      assert.match(cli.stdout, /--rf-trigger-interval/);
    });

    it('--model 4ch registers PSF-B04-GL devices with 4 outlets', async () => {
      const srv = await server();
      const cli = run(['--server', srv.url, '--count', '2', '--model', '4ch', '--quiet']);
      await until(() => srv.conns.filter((c) => c.messages.length >= 4).length === 2, 'registrations', 6000);
      for (const c of srv.conns) {
        assert.equal(c.messages[0].model, 'PSF-B04-GL');
        assert.equal(c.messages[0].romVersion, '2.0.2');
        assert.equal(c.messages[2].params.switches.length, 4);
      }
      cli.child.kill('SIGTERM');
      assert.equal(await cli.exited, 0);
    });

    it('a raw --model string is reported as is with the basic params; --rom-version still overrides', async () => {
      const srv = await server();
      const cli = run(['--server', srv.url, '--model', 'PSC-B01-GL', '--rom-version', '2.0.2', '--quiet']);
      const conn = await until(() => srv.conns.find((c) => c.messages.length >= 4), 'registration', 6000);
      assert.equal(conn.messages[0].model, 'PSC-B01-GL');
      assert.equal(conn.messages[0].romVersion, '2.0.2');
      assert.equal(conn.messages[2].params.switch, 'off');
      assert.equal(conn.messages[2].params.pulseWidth, 500);
      cli.child.kill('SIGINT');
      assert.equal(await cli.exited, 0);
    });

    it('--model rfbridge --rf-trigger-interval sends trigger reports', async () => {
      const srv = await server();
      const cli = run(['--server', srv.url, '--model', 'rfbridge', '--rf-trigger-interval', '0.05', '--quiet']);
      await until(() => srv.all().filter((m) => m.action === 'update' && m.params.cmd === 'trigger').length >= 2, 'triggers', 6000);
      cli.child.kill('SIGTERM');
      assert.equal(await cli.exited, 0);
    });

    for (const args of [
      ['--rf-trigger-interval', 'often'],
      ['--rf-trigger-interval', '0'],
      ['--model', ''],
    ]) {
      it(`exits 2 for ${JSON.stringify(args)}`, async () => {
        const cli = run(['--server', 'http://127.0.0.1:1', ...args]);
        assert.equal(await cli.exited, 2);
        assert.match(cli.stderr, /--(rf-trigger-interval|model)/);
      });
    }
  });
});
