'use strict';
// The telemetry API's pure logic, without sockets: filters and frequencies, message schemas and
// size rules, JWT verification, device numbers, the alert engine (hysteresis, minimum duration,
// offline rules, flow alerts, restore), and the fan-out engine (indexing, serialise-once,
// windows aligned to the clock, system samples).
const assert = require('node:assert/strict');
const T = require('../../dist/src/hub/telemetry');

const SECRET = 'k'.repeat(32);

describe('telemetry: filters', () => {
  it('parses frequencies: real-time, seconds, minutes, hours; refuses the rest', () => {
    assert.deepEqual(T.parseFrequency(undefined), { ok: true, periodMs: 0, label: 'real-time' });
    assert.equal(T.parseFrequency('real-time').periodMs, 0);
    assert.equal(T.parseFrequency('realtime').periodMs, 0);
    assert.equal(T.parseFrequency('30s').periodMs, 30000);
    assert.equal(T.parseFrequency('2m').periodMs, 120000);
    assert.equal(T.parseFrequency('1h').label, '1h');
    assert.equal(T.parseFrequency(5).periodMs, 5000);
    assert.equal(T.parseFrequency('2000ms').label, '2s');
    for (const bad of ['0s', '1500ms', 'fast', '25h', -1, {}]) {
      const r = T.parseFrequency(bad);
      assert.equal(r.ok, false, JSON.stringify(bad));
      assert.equal(r.error, 'invalid_filter');
    }
  });

  it('maps device ids: integers are device numbers, 10-hex strings are deviceids', () => {
    assert.equal(T.deviceKey(1), 'i:1');
    assert.equal(T.deviceKey('3'), 'i:3');
    assert.equal(T.deviceKey('1000AA0001'), 'd:1000aa0001');
    assert.equal(T.deviceKey('1000000001'), 'd:1000000001');
    assert.equal(T.deviceKey(0), undefined);
    assert.equal(T.deviceKey(1.5), undefined);
    assert.equal(T.deviceKey('zz'), undefined);
    assert.deepEqual(T.deviceKeys([1, 2, '1000aa0001', 1]), { ok: true, keys: ['i:1', 'i:2', 'd:1000aa0001'] });
    assert.deepEqual(T.deviceKeys(undefined), { ok: true, keys: null });
    assert.equal(T.deviceKeys(Array.from({ length: 51 }, (_, i) => i + 1)).ok, false);
  });

  it('takes filters at the top level (seed JS client) or in filters (seed Python client), filters winning', () => {
    const top = T.subscriptionSpec({ type: 'subscribe', channel: 'telemetry', device_id: 1, metrics: ['temperature'] });
    assert.ok(top.ok);
    assert.deepEqual(top.spec.devices, ['i:1']);
    assert.equal(top.spec.metricMask, T.TELEMETRY_BIT.temperature);
    const nested = T.subscriptionSpec({ type: 'subscribe', channel: 'alerts', device_id: 1, filters: { device_id: [2, 3], severity: ['critical', 'warning'] } });
    assert.deepEqual(nested.spec.devices, ['i:2', 'i:3']);
    assert.deepEqual([...nested.spec.severities], ['critical', 'warning']);
  });

  it('refuses filters a channel does not have, unknown metrics, severities and status types', () => {
    assert.equal(T.subscriptionSpec({ channel: 'system', device_id: 1 }).error, 'invalid_filter');
    assert.equal(T.subscriptionSpec({ channel: 'telemetry', severity: 'critical' }).error, 'invalid_filter');
    assert.match(T.subscriptionSpec({ channel: 'telemetry', metrics: ['pressure'] }).message, /pressure/);
    assert.equal(T.subscriptionSpec({ channel: 'alerts', severity: 'fatal' }).error, 'invalid_filter');
    assert.equal(T.subscriptionSpec({ channel: 'devices', status_types: ['gone'] }).error, 'invalid_filter');
    assert.equal(T.subscriptionSpec({ channel: 'weather' }).error, 'unknown_channel');
    assert.equal(T.subscriptionSpec({}).error, 'invalid_message');
  });

  it('system defaults to every metric each 30 s; real-time there means every second', () => {
    const d = T.subscriptionSpec({ channel: 'system' }).spec;
    assert.equal(d.periodMs, 30000);
    assert.equal(d.metricMask, T.ALL_SYSTEM);
    assert.equal(T.subscriptionSpec({ channel: 'system', frequency: 'real-time' }).spec.periodMs, 1000);
  });

  it('a per-channel endpoint implies its channel and refuses another', () => {
    assert.equal(T.subscriptionSpec({ type: 'subscribe' }, 'alerts').spec.channel, 'alerts');
    assert.equal(T.subscriptionSpec({ type: 'subscribe', channel: 'telemetry' }, 'alerts').error, 'channel_not_available');
  });
});

describe('telemetry: message schemas and sizes', () => {
  const check = (obj, inBatch) => T.checkMessage(obj, Buffer.byteLength(JSON.stringify(obj)), inBatch);

  it('accepts every seed message form', () => {
    for (const m of [
      { type: 'auth', token: 'jwt-token-string' },
      { type: 'subscribe', channel: 'telemetry', device_id: 1, filters: { metrics: ['temperature', 'humidity'] } },
      { type: 'subscribe', channel: 'telemetry', device_id: 1, filters: { metrics: ['temperature', 'humidity'], frequency: 'real-time' } },
      { type: 'subscribe', channel: 'alerts', filters: { severity: ['critical', 'warning'], device_id: 1 } },
      { type: 'subscribe', channel: 'devices', filters: { device_id: [1, 2, 3], status_types: ['online', 'offline', 'warning'] } },
      { type: 'subscribe', channel: 'system', filters: { metrics: ['cpu_usage', 'memory_usage', 'active_connections'], frequency: '30s' } },
      { type: 'subscribe', channel: 'alerts', severity: ['critical', 'warning'] },
      { type: 'unsubscribe', channel: 'telemetry', device_id: 1 },
      { type: 'ping', timestamp: '2024-01-01T12:00:00Z' },
      { type: 'batch', messages: [{ type: 'ping' }] },
    ]) {
      const r = check(m);
      assert.ok(r.ok, `${JSON.stringify(m)}: ${r.message}`);
    }
  });

  it('refuses with a code: unknown type, missing fields, unexpected properties, bad channel', () => {
    assert.equal(check({ type: 'hello' }).error, 'unknown_message_type');
    assert.equal(check({ nothing: 1 }).error, 'invalid_message');
    assert.equal(check([1, 2]).error, 'invalid_message');
    assert.equal(check({ type: 'auth' }).error, 'invalid_message');
    const extra = check({ type: 'subscribe', channel: 'telemetry', colour: 'red' });
    assert.equal(extra.error, 'invalid_message');
    assert.match(extra.message, /colour/);
    assert.equal(check({ type: 'subscribe', channel: 'weather' }).error, 'unknown_channel');
    assert.equal(check({ type: 'batch', messages: [] }).error, 'invalid_message');
    assert.equal(T.parseFrame('{nope').error, 'invalid_json');
  });

  it('1 KiB per message, 1 KiB per batch item, 50 items per batch', () => {
    // The size is the encoded frame: 1024 bytes pass, 1025 do not (whitespace counts too).
    assert.ok(T.checkMessage({ type: 'ping' }, 1024).ok);
    assert.equal(T.checkMessage({ type: 'ping' }, 1025).error, 'message_too_large');
    // The size check comes before the schema, so an oversized message says so.
    const big = { type: 'ping', timestamp: 'x'.repeat(1100) };
    assert.equal(check(big).error, 'message_too_large');
    assert.match(check(big, true).message, /per batch item/);
    // A batch frame may be larger than 1 KiB: its items are checked one by one.
    const batch = { type: 'batch', messages: Array.from({ length: 50 }, () => ({ type: 'auth', token: 't'.repeat(900) })) };
    assert.ok(Buffer.byteLength(JSON.stringify(batch)) > 45000);
    assert.ok(check(batch).ok);
    assert.equal(check({ type: 'batch', messages: Array.from({ length: 51 }, () => ({ type: 'ping' })) }).error, 'batch_too_large');
    assert.equal(check({ type: 'batch', messages: [{ type: 'ping' }] }, true).error, 'invalid_message');
  });
});

describe('telemetry: JWT', () => {
  const { SignJWT } = require('jose');
  const key = new TextEncoder().encode(SECRET);

  it('verifies HS256 tokens with exp; sub is the user', async () => {
    const v = new T.TokenVerifier(SECRET);
    const { token, expiresAt } = await T.signToken(SECRET, { sub: 'alice', ttlSeconds: 60 });
    const r = await v.verify(token);
    assert.equal(r.ok, true);
    assert.equal(r.user, 'alice');
    assert.equal(r.expiresAt, expiresAt);
  });

  it('refuses expired, forged, exp-less, alg none and other-algorithm tokens', async () => {
    const v = new T.TokenVerifier(SECRET);
    const now = Math.floor(Date.now() / 1000);
    const expired = await new SignJWT({ sub: 'a' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(now - 60).sign(key);
    assert.deepEqual(await v.verify(expired).then((r) => r.error), 'token_expired');
    const forged = await new SignJWT({ sub: 'a' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(now + 60).sign(new TextEncoder().encode('x'.repeat(32)));
    assert.equal((await v.verify(forged)).error, 'invalid_token');
    const noExp = await new SignJWT({ sub: 'a' }).setProtectedHeader({ alg: 'HS256' }).sign(key);
    assert.equal((await v.verify(noExp)).error, 'invalid_token');
    const hs512 = await new SignJWT({ sub: 'a' }).setProtectedHeader({ alg: 'HS512' }).setExpirationTime(now + 60).sign(new TextEncoder().encode('k'.repeat(64)));
    assert.equal((await v.verify(hs512)).error, 'invalid_token');
    const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'a', exp: now + 60 })}.`;
    assert.equal((await v.verify(none)).error, 'invalid_token');
    assert.equal((await v.verify('not-a-jwt')).error, 'invalid_token');
    assert.equal((await v.verify('')).error, 'invalid_token');
  });

  it('allows a small clock tolerance (5 s), no more', async () => {
    const v = new T.TokenVerifier(SECRET);
    const now = Math.floor(Date.now() / 1000);
    // verified at `now` itself, not whenever this machine gets to it
    const justExpired = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(now - 2).sign(key);
    assert.equal((await v.verify(justExpired, now * 1000)).ok, true);
    const tooLate = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(now - 10).sign(key);
    assert.equal((await v.verify(tooLate, now * 1000)).error, 'token_expired');
    assert.equal(T.CLOCK_TOLERANCE_S, 5);
  });

  it('needs a secret of at least 32 bytes', () => {
    assert.throws(() => new T.TokenVerifier('short'), /32 bytes/);
    assert.match(T.secretProblem(''), /no JWT secret/);
    assert.equal(T.secretProblem(SECRET), undefined);
  });
});

describe('telemetry: device numbers', () => {
  it('assigns stable numbers on first sight, restores them and never reuses one', () => {
    let changes = 0;
    const n = new T.DeviceNumbers(() => changes++);
    assert.equal(n.numberOf('1000aa0002'), 1);
    assert.equal(n.numberOf('1000aa0001'), 2);
    assert.equal(n.numberOf('1000aa0002'), 1);
    assert.equal(changes, 2);
    const again = new T.DeviceNumbers();
    again.restore({ next: 5, devices: n.snapshot().devices });
    assert.equal(again.numberOf('1000aa0001'), 2);
    assert.equal(again.deviceidOf(1), '1000aa0002');
    assert.equal(again.numberOf('1000aa0009'), 5);
  });
});

describe('telemetry: alert engine', () => {
  function engine(rules, names = {}) {
    const changes = [];
    const { rules: normal, problems } = T.normaliseRules(rules);
    assert.deepEqual(problems, []);
    const e = new T.AlertEngine(normal, { emit: (c) => changes.push(c), describe: (id) => names[id] || id });
    return { e, changes };
  }
  const D = '1000aa0001';

  it('validates rules from the editor (strings for numbers), reporting the bad ones', () => {
    const { rules, problems } = T.normaliseRules([
      { id: 'r1', kind: 'above', metric: 'temperature', threshold: '30', hysteresis: '1', duration: '60', severity: 'critical' },
      { kind: 'offline', deviceid: '1000AA0001' },
      { kind: 'above', metric: 'pressure', threshold: 1 },
      { kind: 'below', metric: 'humidity' },
      { kind: 'sideways' },
      { kind: 'above', metric: 'power', threshold: 1, deviceid: 'nope' },
    ]);
    assert.equal(rules.length, 2);
    assert.deepEqual(rules[0], { id: 'r1', kind: 'above', metric: 'temperature', deviceid: '', threshold: 30, hysteresis: 1, durationS: 60, severity: 'critical' });
    assert.equal(rules[1].durationS, 300, 'offline rules default to 300 s');
    assert.equal(rules[1].deviceid, '1000aa0001');
    assert.equal(problems.length, 4);
  });

  it('raises once and clears once for a value hovering at the threshold (hysteresis)', () => {
    const { e, changes } = engine([{ id: 'hot', kind: 'above', metric: 'temperature', threshold: 30, hysteresis: 2, severity: 'critical' }], { [D]: 'Hall' });
    let t = 0;
    for (const v of [29, 30, 30.1, 29.9, 30.2, 29.5, 30.4, 28.5, 30.3, 27.9, 28, 29.9, 30, 30.1]) e.reading(D, 'temperature', v, (t += 1000));
    assert.deepEqual(changes.map((c) => [c.status, c.alert.alert_id]), [['active', 1], ['cleared', 1], ['active', 2]]);
    const raised = changes[0].alert;
    assert.equal(raised.alert_type, 'temperature_high');
    assert.equal(raised.title, 'High Temperature Alert');
    assert.equal(raised.message, 'Temperature 30.1 °C is above 30 °C on Hall');
    assert.deepEqual({ t: raised.metadata.threshold_value, a: raised.metadata.actual_value }, { t: 30, a: 30.1 });
    assert.equal(changes[1].clearValue, 27.9);
    assert.match(changes[1].clearMessage, /back to 27.9 °C on Hall/);
  });

  it('needs the condition for the whole minimum duration to raise, and to clear', () => {
    const { e, changes } = engine([{ id: 'low', kind: 'below', metric: 'humidity', threshold: 30, hysteresis: 5, duration: 10 }]);
    e.reading(D, 'humidity', 25, 0);
    e.reading(D, 'humidity', 26, 5000);
    e.reading(D, 'humidity', 31, 8000); // back above: the wait starts over
    e.reading(D, 'humidity', 29, 9000);
    e.tick(18000);
    assert.equal(changes.length, 0);
    assert.equal(e.pendingCount, 1);
    // No new report needed: the timer raises it when the duration has passed.
    e.tick(19000);
    assert.equal(changes.length, 1);
    assert.equal(changes[0].alert.alert_type, 'humidity_low');
    assert.equal(changes[0].alert.metadata.since, new Date(9000).toISOString());
    assert.equal(e.pendingCount, 0);
    e.reading(D, 'humidity', 34, 20000); // inside the hysteresis band: stays active
    e.tick(40000);
    assert.equal(changes.length, 1);
    e.reading(D, 'humidity', 36, 41000);
    e.reading(D, 'humidity', 33, 45000); // dipped into the band: the clear wait starts over
    e.reading(D, 'humidity', 40, 46000);
    e.tick(55000);
    assert.equal(changes.length, 1);
    e.tick(56000);
    assert.deepEqual(changes.map((c) => c.status), ['active', 'cleared']);
  });

  it('rules for one device leave the others alone; rules for all devices alert per device', () => {
    const { e, changes } = engine([
      { id: 'one', kind: 'above', metric: 'power', threshold: 100, deviceid: D },
      { id: 'all', kind: 'above', metric: 'power', threshold: 1000 },
    ]);
    e.reading('1000aa0002', 'power', 500, 1);
    assert.equal(changes.length, 0);
    e.reading(D, 'power', 2000, 2);
    e.reading('1000aa0002', 'power', 2000, 3);
    assert.deepEqual(changes.map((c) => c.alert.key), ['one|1000aa0001', 'all|1000aa0001', 'all|1000aa0002']);
    assert.deepEqual(changes.map((c) => c.alert.alert_id), [1, 2, 3]);
    assert.equal(e.hasWarning(D), true);
    assert.equal(e.watches('power'), true);
    assert.equal(e.watches('voltage'), false);
  });

  it('offline for longer than N seconds raises once; back online clears', () => {
    const { e, changes } = engine([{ id: 'gone', kind: 'offline', duration: 60, severity: 'critical' }], { [D]: 'Hall' });
    e.deviceOffline(D, 1000, 500);
    e.tick(60000);
    assert.equal(changes.length, 0);
    e.deviceOnline(D, 30000);
    e.deviceOffline(D, 40000, 39000);
    e.deviceOffline(D, 41000, 39000); // repeated offline notice changes nothing
    e.tick(100000);
    e.tick(200000);
    assert.equal(changes.length, 1);
    const a = changes[0].alert;
    assert.equal(a.alert_type, 'device_offline');
    assert.equal(a.message, 'Hall has been offline for 60 s');
    assert.equal(a.metadata.last_seen, new Date(39000).toISOString());
    assert.equal(e.hasWarning(D), false, 'an offline device is offline, not warning');
    e.deviceOnline(D, 300000);
    assert.deepEqual(changes.map((c) => c.status), ['active', 'cleared']);
    assert.equal(changes[1].clearMessage, 'Hall is back online');
  });

  it('flow alerts: a key raises once, clears by key or by id', () => {
    const { e, changes } = engine([]);
    const first = e.raiseExternal({ key: 'door', title: 'Door open', severity: 'info', deviceid: D }, 1);
    const again = e.raiseExternal({ key: 'door', title: 'Door open' }, 2);
    assert.equal(first.created, true);
    assert.equal(again.created, false);
    assert.equal(again.alert.alert_id, first.alert.alert_id);
    const anon = e.raiseExternal({ title: 'Ping' }, 3);
    assert.equal(anon.alert.alert_type, 'custom');
    assert.equal(e.clearExternal({ key: 'door' }, 4).alert_id, 1);
    assert.equal(e.clearExternal({ key: 'door' }, 5), undefined, 'cleared once');
    assert.equal(e.clearExternal({ alert_id: anon.alert.alert_id }, 6).title, 'Ping');
    assert.deepEqual(changes.map((c) => c.status), ['active', 'active', 'cleared', 'cleared']);
  });

  it('restores active alerts and the id counter; alerts of removed rules are cleared', () => {
    const a = engine([{ id: 'hot', kind: 'above', metric: 'temperature', threshold: 30 }, { id: 'old', kind: 'above', metric: 'power', threshold: 1 }]);
    a.e.reading(D, 'temperature', 35, 1);
    a.e.reading(D, 'power', 35, 2);
    a.e.raiseExternal({ key: 'k' }, 3);
    const saved = JSON.parse(JSON.stringify(a.e.snapshot()));
    const b = engine([{ id: 'hot', kind: 'above', metric: 'temperature', threshold: 30 }]);
    b.e.restore(saved, 10);
    assert.deepEqual(b.changes.map((c) => [c.status, c.alert.rule_id]), [['cleared', 'old']]);
    assert.equal(b.e.activeCount, 2);
    b.e.reading(D, 'temperature', 36, 11); // still hot: no second alert
    assert.equal(b.changes.length, 1);
    b.e.reading(D, 'temperature', 20, 12);
    assert.deepEqual(b.changes.map((c) => [c.status, c.alert.alert_id]), [['cleared', 2], ['cleared', 1]]);
    assert.equal(b.e.raiseExternal({ title: 'new' }, 13).alert.alert_id, 4, 'ids continue after a restart');
  });
});

describe('telemetry: fan-out', () => {
  function client() {
    const frames = [];
    return { frames, send: (data) => { frames.push(JSON.parse(data.toString())); return true; }, raw: [] };
  }
  const spec = (msg) => {
    const r = T.subscriptionSpec(msg);
    assert.ok(r.ok, r.message);
    return r.spec;
  };
  const dev1 = { deviceid: '1000aa0001', number: 1 };
  const dev2 = { deviceid: '1000aa0002', number: 2 };
  const report = (values) => {
    let mask = 0;
    for (const k of Object.keys(values)) mask |= T.TELEMETRY_BIT[k];
    return { mask, values };
  };

  it('serialises once per distinct metric set and sends each client one message', () => {
    const f = new T.FanOut(() => 0);
    const all = [client(), client(), client()];
    for (const c of all) f.add(c, spec({ channel: 'telemetry' }));
    const tOnly = client();
    f.add(tOnly, spec({ channel: 'telemetry', metrics: ['temperature'] }));
    // Two subscriptions of one client matching one report: one message with the union.
    const both = client();
    f.add(both, spec({ channel: 'telemetry', device_id: 1, metrics: ['temperature'] }));
    f.add(both, spec({ channel: 'telemetry', device_id: '1000aa0001', metrics: ['humidity'] }));
    const other = client();
    f.add(other, spec({ channel: 'telemetry', device_id: 2 }));
    f.telemetry(dev1, report({ temperature: 23.5, humidity: 45.2 }), '2024-01-01T12:00:00.000Z');
    assert.equal(f.stats.serialised, 2, 'one text for {temperature,humidity}, one for {temperature}');
    for (const c of [...all, both]) {
      assert.deepEqual(c.frames, [{
        type: 'telemetry_update',
        channel: 'telemetry',
        device_id: 1,
        deviceid: '1000aa0001',
        telemetry: {
          temperature: { value: 23.5, unit: '°C', timestamp: '2024-01-01T12:00:00.000Z' },
          humidity: { value: 45.2, unit: '%', timestamp: '2024-01-01T12:00:00.000Z' },
        },
      }]);
    }
    assert.deepEqual(Object.keys(tOnly.frames[0].telemetry), ['temperature']);
    assert.equal(other.frames.length, 0);
    // A report without a wanted metric sends nothing to that client.
    f.telemetry(dev1, report({ power: 5 }), 'x');
    assert.equal(tOnly.frames.length, 1);
  });

  it('frequency windows: latest value per metric per window, aligned to the clock, one flush for all', () => {
    let now = 10_500;
    const f = new T.FanOut(() => now);
    const a = client();
    const b = client();
    f.add(a, spec({ channel: 'telemetry', frequency: '5s' }));
    f.add(b, spec({ channel: 'telemetry', frequency: '5s', device_id: 2 }));
    f.telemetry(dev1, report({ temperature: 20 }), 't1');
    f.telemetry(dev1, report({ temperature: 21, humidity: 40 }), 't2');
    f.telemetry(dev1, report({ temperature: 22 }), 't3');
    f.telemetry(dev2, report({ power: 7 }), 't4');
    f.tick(14_999, () => ({}));
    assert.equal(a.frames.length, 0);
    f.tick((now = 15_000), () => ({}));
    assert.deepEqual(a.frames.map((m) => [m.device_id, m.frequency, Object.fromEntries(Object.entries(m.telemetry).map(([k, v]) => [k, v.value]))]), [
      [1, '5s', { temperature: 22, humidity: 40 }],
      [2, '5s', { power: 7 }],
    ]);
    assert.equal(b.frames.length, 1);
    f.tick(20_000, () => ({}));
    assert.equal(a.frames.length, 2, 'an empty window sends nothing');
  });

  it('a late timer does not mix windows: a report after the window end flushes the old window first', () => {
    let now = 1000;
    const f = new T.FanOut(() => now);
    const a = client();
    f.add(a, spec({ channel: 'telemetry', frequency: '5s' }));
    f.telemetry(dev1, report({ temperature: 20 }), 't1');
    now = 5100; // the 5 s window ended, the timer has not run yet
    f.telemetry(dev1, report({ temperature: 21 }), 't2');
    assert.deepEqual(a.frames.map((m) => m.telemetry.temperature.value), [20]);
    f.tick(5200, () => ({}));
    assert.equal(a.frames.length, 1);
    f.tick(10_000, () => ({}));
    assert.deepEqual(a.frames.map((m) => m.telemetry.temperature.value), [20, 21]);
  });

  it('system samples at each subscribed period, one sample for every group due', () => {
    let samples = 0;
    const f = new T.FanOut(() => 0);
    const a = client();
    const b = client();
    f.add(a, spec({ channel: 'system', frequency: '1s', metrics: ['cpu_usage'] }));
    f.add(b, spec({ channel: 'system', frequency: '2s' }));
    const sample = () => { samples++; return { cpu_usage: 1, memory_usage: 2, disk_usage: 3, active_connections: 4 }; };
    f.tick(1000, sample);
    f.tick(2000, sample);
    assert.equal(samples, 2);
    assert.deepEqual(a.frames.map((m) => m.metrics), [{ cpu_usage: 1 }, { cpu_usage: 1 }]);
    assert.deepEqual(b.frames.map((m) => m.metrics), [{ cpu_usage: 1, memory_usage: 2, disk_usage: 3, active_connections: 4 }]);
    assert.equal(b.frames[0].type, 'system_status_update');
  });

  it('alerts and device status: filters, one serialisation, one message per client', () => {
    const f = new T.FanOut(() => 0);
    const crit = client();
    const any = client();
    const dev2Only = client();
    f.add(crit, spec({ channel: 'alerts', severity: ['critical'] }));
    f.add(any, spec({ channel: 'alerts' }));
    f.add(any, spec({ channel: 'alerts', device_id: 1 }));
    f.add(dev2Only, spec({ channel: 'alerts', device_id: 2, alert_type: 'device_offline' }));
    assert.equal(f.alert({ type: 'alert', n: 1 }, dev1, 'critical', 'temperature_high'), 2);
    assert.equal(f.alert({ type: 'alert', n: 2 }, dev2, 'warning', 'device_offline'), 2);
    assert.equal(f.alert({ type: 'alert', n: 3 }, undefined, 'info', 'custom'), 1);
    assert.deepEqual(crit.frames.map((m) => m.n), [1]);
    assert.deepEqual(any.frames.map((m) => m.n), [1, 2, 3]);
    assert.deepEqual(dev2Only.frames.map((m) => m.n), [2]);
    assert.equal(f.stats.serialised, 3);

    const online = client();
    f.add(online, spec({ channel: 'devices', status_types: ['online'] }));
    f.deviceStatus({ s: 'offline' }, dev1, 'offline');
    f.deviceStatus({ s: 'online' }, dev1, 'online');
    assert.deepEqual(online.frames, [{ s: 'online' }]);
  });

  it('removing subscriptions stops delivery and empties the indexes', () => {
    const f = new T.FanOut(() => 0);
    const c = client();
    const subs = [
      f.add(c, spec({ channel: 'telemetry', device_id: [1, 2] })),
      f.add(c, spec({ channel: 'telemetry', frequency: '1m' })),
      f.add(c, spec({ channel: 'system' })),
      f.add(c, spec({ channel: 'alerts' })),
      f.add(c, spec({ channel: 'devices', device_id: 1 })),
    ];
    assert.equal(f.size, 5);
    assert.equal(f.timed, true);
    for (const s of subs) f.remove(s);
    assert.equal(f.size, 0);
    assert.equal(f.timed, false);
    assert.equal(f.wantsTelemetry(dev1), false);
  });
});
