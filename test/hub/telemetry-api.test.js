'use strict';
// The telemetry WebSocket API over real sockets: authentication (message and header, expired,
// forged, deadline, expiry while connected), every channel and filter, per-channel endpoints,
// ping, batch, unsubscribe, the device list and the error messages.
const assert = require('node:assert/strict');
const http = require('node:http');
const { startStack, nextMatching, drain, signed, waitFor } = require('./telemetry-fixture.test');
const { RawClient } = require('../helpers/raw');

const D1 = '1000aa0001';
const D2 = '1000aa0002';

/** The HTTP status of a refused upgrade. */
function upgradeStatus(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url.replace(/^ws/, 'http'));
    const req = http.request(u, { headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers } });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('telemetry API', function () {
  this.timeout(20000);
  let s;
  afterEach(async () => {
    if (s) await s.stop();
    s = undefined;
  });

  describe('authentication', () => {
    it('auth with a valid JWT: auth_response success with the user and expiry', async () => {
      s = await startStack();
      const c = s.client();
      await c.open();
      const r = await c.ask({ type: 'auth', token: await s.token('alice') });
      assert.equal(r.type, 'auth_response');
      assert.equal(r.success, true);
      assert.equal(r.user, 'alice');
      assert.ok(Date.parse(r.expires_at) > Date.now());
      assert.equal(s.service.usersConnected('alice'), 1);
    });

    it('expired, forged, exp-less and alg-none tokens: auth_response failure with a code, then close 1008', async () => {
      s = await startStack();
      const now = Math.floor(Date.now() / 1000);
      const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const cases = [
        [await signed({ sub: 'a' }, { exp: now - 60 }), 'token_expired'],
        [await signed({ sub: 'a' }, { exp: now + 60, secret: 'another-secret-of-32-characters!!' }), 'invalid_token'],
        [await signed({ sub: 'a' }), 'invalid_token'],
        [`${b64({ alg: 'none' })}.${b64({ sub: 'a', exp: now + 60 })}.`, 'invalid_token'],
        ['jwt-token', 'invalid_token'],
      ];
      for (const [token, error] of cases) {
        const c = s.client();
        await c.open();
        const r = await c.ask({ type: 'auth', token });
        assert.equal(r.type, 'auth_response');
        assert.equal(r.success, false);
        assert.equal(r.error, error);
        assert.ok(r.message);
        assert.equal((await c.waitClose()).code, 1008);
      }
    });

    it('closes a socket that does not authenticate in time (auth_timeout, 1008)', async () => {
      // The deadline leaves a slow machine time for the two exchanges before it.
      s = await startStack({ server: { limits: { authTimeoutMs: 1500 } } });
      const c = s.client();
      await c.open();
      // ping is answered before auth; anything else says auth_required.
      assert.equal((await c.ask({ type: 'ping' })).type, 'pong');
      const e = await c.ask({ type: 'subscribe', channel: 'telemetry' });
      assert.deepEqual([e.type, e.error, e.ref], ['error', 'auth_required', 'subscribe']);
      const r = await c.next(10000);
      assert.deepEqual([r.type, r.success, r.error], ['auth_response', false, 'auth_timeout']);
      assert.equal((await c.waitClose()).code, 1008);
    });

    it('closes a socket when its token expires (error token_expired, close 4001)', async () => {
      s = await startStack({ server: { clockToleranceS: 0 } });
      const c = s.client();
      await c.open();
      const { token } = await require('../../dist/src/hub/telemetry').signToken(require('./telemetry-fixture.test').SECRET, { sub: 'bob', ttlSeconds: 2 });
      assert.equal((await c.ask({ type: 'auth', token })).success, true);
      const e = await c.next(10000);
      assert.deepEqual([e.type, e.error], ['error', 'token_expired']);
      const closed = await c.waitClose();
      assert.deepEqual([closed.code, closed.reason], [4001, 'token expired']);
      await waitFor(() => s.service.usersConnected('bob') === 0);
    });

    it('a new token for the same user extends the connection; another user is refused', async () => {
      s = await startStack();
      const c = await s.authed('alice');
      const r = await c.ask({ type: 'auth', token: await s.token('alice', 3600), id: 7 });
      assert.deepEqual([r.success, r.id], [true, 7]);
      assert.ok(Date.parse(r.expires_at) > Date.parse(c.auth.expires_at));
      const other = await c.ask({ type: 'auth', token: await s.token('mallory') });
      assert.deepEqual([other.success, other.error], [false, 'user_mismatch']);
      assert.equal((await c.ask({ type: 'ping' })).type, 'pong', 'still connected');
      assert.equal(s.service.usersConnected('alice'), 1);
    });

    it('a bearer token on the upgrade authenticates at once; a bad one gets HTTP 401', async () => {
      s = await startStack();
      const c = s.client('/ws', { headers: { Authorization: `Bearer ${await s.token('carol')}` } });
      await c.open();
      const ack = await c.ask({ type: 'subscribe', channel: 'devices' });
      assert.equal(ack.type, 'subscription_confirmed');
      assert.equal(s.service.usersConnected('carol'), 1);
      const bad = await upgradeStatus(s.url(), { Authorization: `Bearer ${await signed({ sub: 'x' }, { exp: 1 })}` });
      assert.equal(bad.status, 401);
      assert.deepEqual(JSON.parse(bad.body), { type: 'auth_response', success: false, error: 'token_expired', message: 'the token has expired' });
    });

    it('an address with 5 failed authentications in a minute is refused (HTTP 429)', async () => {
      s = await startStack();
      for (let i = 0; i < 5; i++) {
        const c = s.client();
        await c.open();
        assert.equal((await c.ask({ type: 'auth', token: 'wrong' })).success, false);
      }
      const r = await upgradeStatus(s.url());
      assert.equal(r.status, 429);
      assert.ok(Number(r.headers['retry-after']) > 0);
    });

    it('refuses a browser Origin that is not allowed (HTTP 403); an allowed one passes', async () => {
      s = await startStack({ server: { origins: ['https://dash.example.com'] } });
      assert.equal((await upgradeStatus(s.url(), { Origin: 'https://evil.example.com' })).status, 403);
      const c = s.client('/ws', { origin: 'https://dash.example.com' });
      await c.open();
      assert.equal((await c.ask({ type: 'ping' })).type, 'pong');
    });
  });

  describe('telemetry channel', () => {
    it('sends telemetry_update with value, unit and timestamp for the metrics a report carries', async () => {
      s = await startStack();
      const dev = await s.device(D1, { switch: 'off', currentTemperature: '21.5', currentHumidity: '48', rssi: -61 });
      const c = await s.authed();
      const ack = await c.ask({ type: 'subscribe', channel: 'telemetry', device_id: 1, filters: { metrics: ['temperature', 'humidity'], frequency: 'real-time' }, id: 'sub-1' });
      assert.deepEqual(ack, { type: 'subscription_confirmed', channel: 'telemetry', subscription_id: ack.subscription_id, filters: { device_id: 1, metrics: ['temperature', 'humidity'], frequency: 'real-time' }, device_id: 1, id: 'sub-1' });
      await dev.report({ currentTemperature: '23.5', currentHumidity: '45.2', rssi: -60 });
      const m = await c.next();
      assert.equal(m.type, 'telemetry_update');
      assert.equal(m.channel, 'telemetry');
      assert.equal(m.device_id, 1);
      assert.equal(m.deviceid, D1);
      assert.deepEqual(Object.keys(m.telemetry), ['temperature', 'humidity']);
      assert.deepEqual({ v: m.telemetry.temperature.value, u: m.telemetry.temperature.unit }, { v: 23.5, u: '°C' });
      assert.deepEqual({ v: m.telemetry.humidity.value, u: m.telemetry.humidity.unit }, { v: 45.2, u: '%' });
      assert.ok(Math.abs(Date.parse(m.telemetry.temperature.timestamp) - Date.now()) < 5000);
      // A report that changes only the relay has no telemetry; "unavailable" is no value.
      await dev.report({ switch: 'on' });
      await dev.report({ currentTemperature: 'unavailable', currentHumidity: '44' });
      const next = await c.next();
      assert.deepEqual(Object.keys(next.telemetry), ['humidity']);
      assert.deepEqual(await drain(c, 150), []);
    });

    it('filters by device: a device number, a deviceid, a list; power, voltage, current and rssi', async () => {
      s = await startStack();
      const a = await s.device(D1);
      const b = await s.device(D2, { switch: 'off' }, 'S31');
      const byNumber = await s.authed();
      await byNumber.ask({ type: 'subscribe', channel: 'telemetry', device_id: 2 });
      const byId = await s.authed();
      await byId.ask({ type: 'subscribe', channel: 'telemetry', filters: { device_id: [D2], metrics: ['power'] } });
      const everything = await s.authed();
      await everything.ask({ type: 'subscribe', channel: 'telemetry' });
      await a.report({ currentTemperature: '20' });
      await b.report({ power: '12.30', voltage: '229.80', current: '0.08', rssi: -70 });
      const m1 = await byNumber.next();
      assert.equal(m1.deviceid, D2);
      assert.deepEqual(Object.fromEntries(Object.entries(m1.telemetry).map(([k, v]) => [k, [v.value, v.unit]])), {
        power: [12.3, 'W'], voltage: [229.8, 'V'], current: [0.08, 'A'], rssi: [-70, 'dBm'],
      });
      const m2 = await byId.next();
      assert.deepEqual(Object.keys(m2.telemetry), ['power']);
      // both updates (however long they take), then nothing more
      const both = [await everything.next(), await everything.next(), ...(await drain(everything, 100))];
      assert.deepEqual(both.map((m) => m.device_id), [1, 2]);
      assert.deepEqual(await drain(byNumber, 50), []);
    });

    it('frequency: the latest value per window instead of every report', async () => {
      // The service's clock is held still while the reports are made, so they share one window
      // however fast or slow this machine is; moving it past the window end lets the timer
      // flush the window.
      let frozen;
      s = await startStack({ server: { clock: () => frozen ?? Date.now() } });
      const dev = await s.device(D1);
      const c = await s.authed();
      frozen = Date.now();
      const windowEnd = (Math.floor(frozen / 2000) + 1) * 2000;
      await c.ask({ type: 'subscribe', channel: 'telemetry', filters: { frequency: '2s' } });
      for (const t of ['20', '21', '22']) await dev.report({ currentTemperature: t });
      // the timer runs every 50 ms: inside the window nothing is sent
      assert.deepEqual(await drain(c, 300), [], 'nothing before the window ends');
      frozen = windowEnd;
      const got = [await c.next(10000), ...(await drain(c, 300))];
      assert.equal(got.length, 1, 'one message per window');
      assert.equal(got[0].frequency, '2s');
      assert.equal(got[0].telemetry.temperature.value, 22, 'the latest value');
      // the next window starts empty: a report there is sent at its end, alone
      await dev.report({ currentTemperature: '23' });
      assert.deepEqual(await drain(c, 300), [], 'nothing before the next window ends');
      frozen = windowEnd + 2000;
      const next = [await c.next(10000), ...(await drain(c, 300))];
      assert.deepEqual(next.map((m) => m.telemetry.temperature.value), [23]);
    });
  });

  describe('devices channel', () => {
    it('device_status_update on online and offline with reason and last_seen; status_types filter', async () => {
      s = await startStack();
      const all = await s.authed();
      await all.ask({ type: 'subscribe', channel: 'devices' });
      const offlineOnly = await s.authed();
      await offlineOnly.ask({ type: 'subscribe', channel: 'devices', filters: { device_id: [1, 2, 3], status_types: ['offline'] } });
      const dev = await s.device(D1);
      const on = await all.next();
      assert.deepEqual({ ...on, timestamp: 0, metadata: { ...on.metadata, last_seen: 0 } }, {
        type: 'device_status_update', channel: 'devices', device_id: 1, deviceid: D1, old_status: 'offline', new_status: 'online', timestamp: 0, reason: 'Device connected', metadata: { last_seen: 0, reason_code: 'registered' },
      });
      dev.close();
      const off = await all.next();
      assert.deepEqual([off.old_status, off.new_status, off.reason], ['online', 'offline', 'Connection lost']);
      assert.ok(Date.parse(off.metadata.last_seen) <= Date.now());
      const only = await offlineOnly.next();
      assert.equal(only.new_status, 'offline');
      assert.deepEqual(await drain(offlineOnly, 100), []);
    });

    it('a device with an active alert is "warning", back to "online" when it clears', async () => {
      s = await startStack({ server: { rules: [{ id: 'hot', kind: 'above', metric: 'temperature', threshold: 30, hysteresis: 1 }] } });
      const dev = await s.device(D1, { currentTemperature: '20' });
      const c = await s.authed();
      await c.ask({ type: 'subscribe', channel: 'devices', status_types: ['warning', 'online'] });
      await dev.report({ currentTemperature: '31' });
      const w = await c.next();
      assert.deepEqual([w.old_status, w.new_status], ['online', 'warning']);
      assert.match(w.reason, /Alert raised: High Temperature Alert/);
      await dev.report({ currentTemperature: '29.5' });
      await dev.report({ currentTemperature: '28' });
      const ok = await c.next();
      assert.deepEqual([ok.old_status, ok.new_status, ok.reason], ['warning', 'online', 'Alert cleared']);
    });
  });

  describe('alerts channel', () => {
    it('alert messages as the seed shows them, raised and cleared once; severity, device and type filters', async () => {
      s = await startStack({
        server: {
          rules: [
            { id: 'hot', kind: 'above', metric: 'temperature', threshold: 30, hysteresis: 2, severity: 'critical' },
            { id: 'dry', kind: 'below', metric: 'humidity', threshold: 20, severity: 'info' },
          ],
        },
      });
      const dev = await s.device(D1, { currentTemperature: '25', currentHumidity: '50' });
      const crit = await s.authed();
      await crit.ask({ type: 'subscribe', channel: 'alerts', filters: { severity: ['critical', 'warning'], device_id: 1 } });
      const info = await s.authed();
      await info.ask({ type: 'subscribe', channel: 'alerts', severity: 'info', alert_type: ['humidity_low'] });
      const other = await s.authed();
      await other.ask({ type: 'subscribe', channel: 'alerts', device_id: 2 });
      await dev.report({ currentTemperature: '32.5' });
      await dev.report({ currentTemperature: '29.5' }); // inside the hysteresis: nothing
      await dev.report({ currentTemperature: '31' });
      await dev.report({ currentHumidity: '10' });
      const a = await crit.next();
      assert.deepEqual({ ...a, timestamp: 0, raised_at: 0, metadata: { ...a.metadata, since: 0 } }, {
        type: 'alert',
        channel: 'alerts',
        alert_id: 1,
        device_id: 1,
        deviceid: D1,
        severity: 'critical',
        title: 'High Temperature Alert',
        message: `Temperature 32.5 °C is above 30 °C on ${D1}`,
        timestamp: 0,
        raised_at: 0,
        alert_type: 'temperature_high',
        status: 'active',
        metadata: { metric: 'temperature', unit: '°C', threshold_value: 30, actual_value: 32.5, hysteresis: 2, duration: 0, since: 0, rule_id: 'hot' },
      });
      await dev.report({ currentTemperature: '27' });
      const cleared = await crit.next();
      assert.deepEqual([cleared.alert_id, cleared.status, cleared.metadata.cleared_value], [1, 'cleared', 27]);
      assert.ok(cleared.cleared_at);
      const i = await info.next();
      assert.deepEqual([i.alert_id, i.alert_type, i.severity], [2, 'humidity_low', 'info']);
      assert.deepEqual(await drain(crit, 100), []);
      assert.deepEqual(await drain(info, 50), []);
      assert.deepEqual(await drain(other, 50), []);
    });

    it('alerts already active are replayed once to a new subscriber (replay: true); get_alerts lists them', async () => {
      s = await startStack({ server: { rules: [{ id: 'watt', kind: 'above', metric: 'power', threshold: 100, severity: 'warning' }] } });
      const dev = await s.device(D1, { power: '500' }, 'S31');
      await waitFor(() => s.service.alerts.activeCount === 1);
      const c = await s.authed();
      const ack = await c.ask({ type: 'subscribe', channel: 'alerts', severity: ['warning'] });
      assert.equal(ack.type, 'subscription_confirmed');
      const replay = await c.next();
      assert.deepEqual([replay.type, replay.alert_id, replay.status, replay.replay], ['alert', 1, 'active', true]);
      const list = await c.ask({ type: 'get_alerts', id: 3 });
      assert.deepEqual([list.type, list.id, list.alerts.map((a) => a.alert_id)], ['alert_list', 3, [1]]);
      dev.close();
    });

    it('flow alerts (service.raise / clear) reach subscribers', async () => {
      s = await startStack();
      await s.device(D1);
      const c = await s.authed();
      await c.ask({ type: 'subscribe', channel: 'alerts' });
      s.service.raise({ key: 'door', device: D1, severity: 'critical', title: 'Door open', message: 'The garage door is open', alert_type: 'door' });
      const a = await c.next();
      assert.deepEqual([a.alert_id, a.device_id, a.title, a.alert_type, a.status], [1, 1, 'Door open', 'door', 'active']);
      s.service.clear({ key: 'door' });
      const b = await c.next();
      assert.deepEqual([b.alert_id, b.status, b.message], [1, 'cleared', 'cleared by the flow']);
    });
  });

  describe('system channel', () => {
    it('system_status_update at once and at the subscribed frequency; metrics filter', async () => {
      s = await startStack();
      const c = await s.authed();
      const ack = await c.ask({ type: 'subscribe', channel: 'system', filters: { metrics: ['cpu_usage', 'memory_usage', 'active_connections'], frequency: '1s' } });
      assert.deepEqual(ack.filters, { metrics: ['cpu_usage', 'memory_usage', 'active_connections'], frequency: '1s' });
      const first = await c.next();
      assert.equal(first.type, 'system_status_update');
      assert.equal(first.channel, 'system');
      assert.deepEqual(Object.keys(first.metrics), ['cpu_usage', 'memory_usage', 'active_connections']);
      assert.equal(first.metrics.active_connections, 1);
      for (const k of ['cpu_usage', 'memory_usage']) assert.ok(first.metrics[k] >= 0 && first.metrics[k] <= 100, k);
      const second = await c.next(10000);
      assert.ok(Date.parse(second.timestamp) - Date.parse(first.timestamp) >= 0);
      const all = await s.authed();
      await all.ask({ type: 'subscribe', channel: 'system' });
      const full = await all.next();
      assert.deepEqual(Object.keys(full.metrics), ['cpu_usage', 'memory_usage', 'disk_usage', 'active_connections']);
      assert.ok(full.metrics.disk_usage > 0 && full.metrics.disk_usage <= 100);
    });
  });

  describe('per-channel endpoints', () => {
    it('/ws/alerts, /ws/telemetry, /ws/devices, /ws/system deliver their channel from auth on', async () => {
      s = await startStack({ server: { rules: [{ id: 'hot', kind: 'above', metric: 'temperature', threshold: 30 }] } });
      const dev = await s.device(D1, { currentTemperature: '20' });
      const alerts = await s.authed('alice', '/ws/alerts');
      assert.equal(alerts.auth.subscribed.channel, 'alerts');
      const telemetry = await s.authed('alice', '/ws/telemetry');
      const devices = await s.authed('alice', '/ws/devices');
      const system = await s.authed('alice', '/ws/system');
      assert.equal((await system.next()).type, 'system_status_update');
      await dev.report({ currentTemperature: '35' });
      assert.equal((await telemetry.next()).type, 'telemetry_update');
      assert.equal((await alerts.next()).type, 'alert');
      assert.equal((await devices.next()).new_status, 'warning');
      // subscribe there sets the filters of the one subscription; another channel is refused.
      const ack = await telemetry.ask({ type: 'subscribe', metrics: ['humidity'] });
      assert.equal(ack.channel, 'telemetry');
      const refused = await telemetry.ask({ type: 'subscribe', channel: 'alerts' });
      assert.deepEqual([refused.type, refused.error], ['error', 'channel_not_available']);
      await dev.report({ currentTemperature: '36' });
      await dev.report({ currentHumidity: '40' });
      const m = await nextMatching(telemetry, (x) => x.type === 'telemetry_update');
      assert.deepEqual(Object.keys(m.telemetry), ['humidity']);
      assert.deepEqual(m.skipped, []);
    });
  });

  describe('ping, batch, unsubscribe, device list, errors', () => {
    it('ping -> pong with the server time and the ping timestamp', async () => {
      s = await startStack();
      const c = await s.authed();
      const p = await c.ask({ type: 'ping', timestamp: '2024-01-01T12:00:00Z', id: 1 });
      assert.deepEqual({ ...p, timestamp: typeof p.timestamp }, { type: 'pong', timestamp: 'string', ping_timestamp: '2024-01-01T12:00:00Z', id: 1 });
    });

    it('batch: up to 50 messages handled in order and answered one by one; bad items get an error with their index', async () => {
      s = await startStack();
      const c = s.client();
      await c.open();
      c.send({
        type: 'batch',
        messages: [
          { type: 'auth', token: await s.token() },
          { type: 'subscribe', channel: 'devices' },
          { type: 'ping', timestamp: 'x'.repeat(1100) },
          { type: 'nonsense' },
          { type: 'ping', id: 'last' },
        ],
      });
      const replies = [await c.next(), await c.next(), await c.next(), await c.next(), await c.next()];
      assert.deepEqual(replies.map((r) => [r.type, r.index, r.error]), [
        ['auth_response', 0, undefined],
        ['subscription_confirmed', 1, undefined],
        ['error', 2, 'message_too_large'],
        ['error', 3, 'unknown_message_type'],
        ['pong', undefined, undefined],
      ]);
      assert.equal(replies[4].id, 'last');
      const big = await c.ask({ type: 'batch', messages: Array.from({ length: 51 }, () => ({ type: 'ping' })) });
      assert.deepEqual([big.type, big.error], ['error', 'batch_too_large']);
      const fifty = Array.from({ length: 50 }, (_, i) => ({ type: 'ping', id: i }));
      c.send({ type: 'batch', messages: fifty });
      const pongs = [];
      for (let i = 0; i < 50; i++) pongs.push(await c.next());
      assert.deepEqual(pongs.map((p) => p.id), fifty.map((m) => m.id));
    });

    it('unsubscribe stops the messages; by device narrows a device list; nothing to remove is an error', async () => {
      s = await startStack();
      const a = await s.device(D1);
      const b = await s.device(D2);
      const c = await s.authed();
      await c.ask({ type: 'subscribe', channel: 'telemetry', device_id: [1, 2] });
      const un1 = await c.ask({ type: 'unsubscribe', channel: 'telemetry', device_id: 1 });
      assert.deepEqual([un1.type, un1.removed], ['unsubscription_confirmed', 1]);
      await a.report({ currentTemperature: '20' });
      await b.report({ currentTemperature: '21' });
      assert.equal((await c.next()).device_id, 2);
      const un = await c.ask({ type: 'unsubscribe', channel: 'telemetry' });
      assert.equal(un.type, 'unsubscription_confirmed');
      await b.report({ currentTemperature: '22' });
      assert.deepEqual(await drain(c, 150), []);
      const again = await c.ask({ type: 'unsubscribe', channel: 'telemetry' });
      assert.deepEqual([again.type, again.error], ['error', 'not_subscribed']);
      const sub = await c.ask({ type: 'subscribe', channel: 'alerts' });
      const byId = await c.ask({ type: 'unsubscribe', subscription_id: sub.subscription_id });
      assert.deepEqual([byId.type, byId.subscription_id], ['unsubscription_confirmed', sub.subscription_id]);
    });

    it('get_devices lists each device with its stable number', async () => {
      s = await startStack();
      await s.device(D2);
      await s.device(D1);
      const c = await s.authed();
      const r = await c.ask({ type: 'get_devices' });
      assert.equal(r.type, 'device_list');
      assert.deepEqual(r.devices.map((d) => [d.device_id, d.deviceid, d.status]), [[1, D2, 'online'], [2, D1, 'online']]);
    });

    it('everything refused gets a clear error message', async () => {
      s = await startStack();
      const c = await s.authed();
      const cases = [
        ['{not json', 'invalid_json'],
        [JSON.stringify({ type: 'dance' }), 'unknown_message_type'],
        [JSON.stringify({ type: 'subscribe', channel: 'weather' }), 'unknown_channel'],
        [JSON.stringify({ type: 'subscribe', channel: 'telemetry', metrics: ['pressure'] }), 'invalid_filter'],
        [JSON.stringify({ type: 'subscribe', channel: 'telemetry', frequency: 'often' }), 'invalid_filter'],
        [JSON.stringify({ type: 'subscribe', channel: 'system', device_id: 1 }), 'invalid_filter'],
        [JSON.stringify({ type: 'subscribe', channel: 'telemetry', extra: true }), 'invalid_message'],
        [JSON.stringify({ type: 'subscribe' }), 'invalid_message'],
        [JSON.stringify([1, 2]), 'invalid_message'],
      ];
      for (const [text, code] of cases) {
        const r = await c.ask(text);
        assert.equal(r.type, 'error', text);
        assert.equal(r.error, code, text);
        assert.equal(typeof r.message, 'string');
      }
      const ref = await c.ask({ type: 'subscribe', channel: 'weather', id: 'x1' });
      assert.deepEqual([ref.ref, ref.id], ['subscribe', 'x1']);
      assert.equal((await c.ask({ type: 'ping' })).type, 'pong', 'errors do not close the connection');
    });

    it('binary frames close the connection (1003); other paths get 404', async () => {
      s = await startStack();
      const c = await s.authed();
      c.ws.send(Buffer.from([1, 2, 3]), { binary: true });
      assert.equal((await c.waitClose()).code, 1003);
      assert.equal((await upgradeStatus(s.url('/other'))).status, 404);
      const r = await new Promise((resolve) => http.get(`http://127.0.0.1:${s.port}/ws`, (res) => { res.resume(); resolve(res.statusCode); }));
      assert.equal(r, 426);
    });
  });

  describe('on a shared HTTP server (Node-RED style)', () => {
    it('serves under the root path and leaves other upgrade paths alone', async () => {
      const httpServer = http.createServer((_req, res) => res.end('hello'));
      await new Promise((r) => httpServer.listen(0, '127.0.0.1', r));
      const foreign = [];
      httpServer.on('upgrade', (req, socket) => {
        if (!req.url.startsWith('/red/telemetry')) {
          foreign.push(req.url);
          socket.destroy();
        }
      });
      s = await startStack({ server: { listen: { mode: 'server', server: httpServer, root: '/red' }, path: '/telemetry' } });
      assert.deepEqual(s.server.paths, ['/red/telemetry', '/red/telemetry/telemetry', '/red/telemetry/alerts', '/red/telemetry/devices', '/red/telemetry/system']);
      const port = httpServer.address().port;
      const c = new RawClient(`ws://127.0.0.1:${port}/red/telemetry/alerts`);
      await c.open();
      const r = await c.ask({ type: 'auth', token: await s.token() });
      assert.equal(r.subscribed.channel, 'alerts');
      const other = new RawClient(`ws://127.0.0.1:${port}/comms`);
      await assert.rejects(other.open());
      assert.deepEqual(foreign, ['/comms']);
      c.close();
      await s.stop();
      s = undefined;
      await new Promise((r2) => httpServer.close(r2));
    });
  });

  describe('state on disk', () => {
    it('saves active alerts and device numbers atomically; a corrupt file is moved aside, not fatal', async () => {
      const fs = require('node:fs');
      const os = require('node:os');
      const path = require('node:path');
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coolkit-tel-state-'));
      const stateFile = path.join(dir, 'telemetry-x.json');
      s = await startStack({ server: { stateFile, rules: [{ id: 'hot', kind: 'above', metric: 'temperature', threshold: 30 }] } });
      const dev = await s.device(D1, { currentTemperature: '40' });
      await waitFor(() => s.service.alerts.activeCount === 1);
      await s.server.flush();
      const saved = JSON.parse(fs.readFileSync(stateFile, 'utf8'));
      assert.equal(saved.version, 1);
      assert.deepEqual(saved.alerts.active.map((a) => [a.alert_id, a.key]), [[1, `hot|${D1}`]]);
      assert.deepEqual(saved.numbers.devices, { [D1]: 1 });
      dev.close();
      await s.stop();
      fs.writeFileSync(stateFile, '{"version":1,"alerts":');
      const warnings = [];
      s = await startStack({ server: { stateFile, logger: { debug() {}, info() {}, warn: (m) => warnings.push(m), error() {} } } });
      assert.equal(s.service.alerts.activeCount, 0);
      assert.match(warnings.join('\n'), /unreadable .*moved to/);
      assert.ok(fs.readdirSync(dir).some((f) => f.startsWith('telemetry-x.json.corrupt-')));
    });
  });
});
