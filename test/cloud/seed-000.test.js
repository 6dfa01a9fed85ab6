'use strict';
// Seed 000 (a trace of the vendor app talking to the cloud) replayed message by message against
// the local cloud over TLS, with a TH16 playing the device. Every answer must match the trace
// field for field, apart from values that naturally differ (date, sequence echo is exact).
const assert = require('node:assert/strict');
const { request, RawClient, sleep } = require('../helpers/raw');
const { startCloud } = require('../helpers/cloud');

const APP_APIKEY = 'ea017bb3-892a-4ce0-8cd6-a4ad5e1b5843';
const APP_AT = '3c303f2cd81300278df1f299cbf7093bf921d797';
const FACTORY = 'f0000000-0000-4000-8000-0000babecafe';

describe('seed 000: app trace against the local cloud (TLS)', function () {
  this.timeout(20000);
  let env;
  let dev;
  let app;

  before(async () => {
    // the default command timeout (10 s): the device acks at once, however busy the machine;
    // the 504 case lowers it for itself
    env = await startCloud({ appApikey: APP_APIKEY, appToken: APP_AT });
    // The TH16 of the trace, acking every command and recording it.
    dev = new RawClient(env.wsUrl);
    await dev.open();
    const reg = await dev.ask({ userAgent: 'device', apikey: FACTORY, deviceid: 'babecafe11', action: 'register', model: 'PSA-BHA-GL', romVersion: '2.0.4' });
    dev.key = reg.apikey;
    dev.commands = [];
    dev.ws.on('message', (data) => {
      const msg = JSON.parse(data.toString());
      if (msg.action !== 'update') return;
      dev.commands.push(msg.params);
      dev.ws.send(JSON.stringify({ error: 0, userAgent: 'device', apikey: dev.key, deviceid: 'babecafe11', sequence: msg.sequence }));
    });
  });

  after(async () => {
    dev.close();
    if (app) app.close();
    await env.cloud.close();
  });

  it('answers /dispatch/app', async () => {
    const res = await request(env.base, '/dispatch/app', { method: 'GET' });
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, { port: env.cloud.port, IP: '127.0.0.1', reason: 'ok', domain: '127.0.0.1', error: 0 });
  });

  it('replays the trace: userOnline, thermostat updates, reports pushed to the app', async () => {
    app = new RawClient(env.wsUrl);
    await app.open();
    const online = await app.ask({
      action: 'userOnline', version: 6, imei: 'D139421A-17B5-11E8-B642-0ED5F89F718B', ts: '1519293433', model: 'iPhone8,4', os: 'ios', romVersion: '11.2.5',
      at: APP_AT, userAgent: 'app', apikey: APP_APIKEY, appid: 'koOxK9TnUzqA703xezqmF96RzEAoL6Vn', nonce: '3BDdpq43', sequence: '1519293433136', apkVesrion: '1.8',
    });
    assert.equal(JSON.stringify(online), JSON.stringify({ error: 0, apikey: APP_APIKEY, config: { hb: 1, hbInterval: 145 }, sequence: '1519293433136' }));

    const below28 = { deviceType: 'temperature', mainSwitch: 'on', targets: [{ targetHigh: '28', reaction: { switch: 'off' } }, { targetLow: '28', reaction: { switch: 'on' } }] };
    let reply = await app.ask({ action: 'update', apikey: APP_APIKEY, deviceid: 'babecafe11', params: below28, sequence: '1519293442952', userAgent: 'app' });
    assert.equal(JSON.stringify(reply), JSON.stringify({ error: 0, deviceid: 'babecafe11', apikey: APP_APIKEY, sequence: '1519293442952' }));
    assert.deepEqual(dev.commands.at(-1), below28, 'the device got the targets exactly');

    const above28 = { deviceType: 'temperature', mainSwitch: 'on', targets: [{ targetHigh: '28', reaction: { switch: 'on' } }, { targetLow: '28', reaction: { switch: 'off' } }] };
    reply = await app.ask({ action: 'update', apikey: APP_APIKEY, deviceid: 'babecafe11', params: above28, sequence: '1519293449395', userAgent: 'app' });
    assert.equal(JSON.stringify(reply), JSON.stringify({ error: 0, deviceid: 'babecafe11', apikey: APP_APIKEY, sequence: '1519293449395' }));
    assert.deepEqual(dev.commands.at(-1), above28);

    // The device reports its stats; the app gets it as in the trace.
    dev.send({ userAgent: 'device', apikey: dev.key, deviceid: 'babecafe11', action: 'update', params: { rssi: -55, staMac: '2C:3A:E8:4F:54:59', fwVersion: '2.0.4', startup: 'off', switch: 'off' } });
    const pushed = await app.next();
    assert.equal(JSON.stringify(pushed), JSON.stringify({ action: 'update', deviceid: 'babecafe11', apikey: APP_APIKEY, userAgent: 'device', ts: 0, params: { rssi: -55, staMac: '2C:3A:E8:4F:54:59', fwVersion: '2.0.4', startup: 'off', switch: 'off' }, from: 'device' }));

    reply = await app.ask({ action: 'update', userAgent: 'app', apikey: APP_APIKEY, deviceid: 'babecafe11', params: { deviceType: 'normal', mainSwitch: 'off' }, sequence: '1519293454525' });
    assert.equal(JSON.stringify(reply), JSON.stringify({ error: 0, deviceid: 'babecafe11', apikey: APP_APIKEY, sequence: '1519293454525' }));
    reply = await app.ask({ action: 'update', userAgent: 'app', apikey: APP_APIKEY, deviceid: 'babecafe11', params: { switch: 'on', mainSwitch: 'on', deviceType: 'normal' }, sequence: '1519293457086' });
    assert.equal(JSON.stringify(reply), JSON.stringify({ error: 0, deviceid: 'babecafe11', apikey: APP_APIKEY, sequence: '1519293457086' }));
    assert.deepEqual(dev.commands.at(-1), { switch: 'on', mainSwitch: 'on', deviceType: 'normal' });

    dev.send({ userAgent: 'device', apikey: dev.key, deviceid: 'babecafe11', action: 'update', params: { currentTemperature: '22', currentHumidity: 'unavailable' } });
    const temp = await app.next();
    assert.equal(JSON.stringify(temp), JSON.stringify({ action: 'update', deviceid: 'babecafe11', apikey: APP_APIKEY, userAgent: 'device', ts: 0, params: { currentTemperature: '22', currentHumidity: 'unavailable' }, from: 'device' }));

    app.send('ping');
    assert.equal(await app.nextText(), 'pong');
  });

  it('answers app queries from the stored state', async () => {
    const reply = await app.ask({ action: 'query', apikey: APP_APIKEY, deviceid: 'babecafe11', params: ['currentTemperature', 'switch'], sequence: '1519293460000', userAgent: 'app' });
    assert.deepEqual(reply, { error: 0, deviceid: 'babecafe11', apikey: APP_APIKEY, sequence: '1519293460000', params: { currentTemperature: '22', switch: 'on' } }, 'the last acknowledged switch command is stored');
    const none = await app.ask({ action: 'query', apikey: APP_APIKEY, deviceid: 'babecafe11', params: ['timers'], sequence: '1519293460001' });
    assert.deepEqual(none.params, {});
  });

  it('relays errors: 504 when the device does not ack, 503 when offline, and sysmsg notices', async () => {
    const silent = new RawClient(env.wsUrl);
    await silent.open();
    await silent.ask({ userAgent: 'device', apikey: FACTORY, deviceid: 'babecafe22', action: 'register', model: 'ITA-GZ1-GL' });
    const notice = await app.next();
    assert.equal(notice.action, 'sysmsg');
    assert.equal(notice.deviceid, 'babecafe22');
    assert.deepEqual(notice.params, { online: true });
    const saved = env.cloud.options.commandTimeoutMs;
    env.cloud.options.commandTimeoutMs = 500;
    let timeout;
    try {
      timeout = await app.ask({ action: 'update', apikey: APP_APIKEY, deviceid: 'babecafe22', params: { switch: 'on' }, sequence: '1519293470000' }, 10000);
    } finally {
      env.cloud.options.commandTimeoutMs = saved;
    }
    assert.equal(timeout.error, 504);
    assert.equal(timeout.sequence, '1519293470000');
    silent.close();
    const offline = await app.next();
    assert.deepEqual([offline.action, offline.deviceid, offline.params.online], ['sysmsg', 'babecafe22', false]);
    const refused = await app.ask({ action: 'update', apikey: APP_APIKEY, deviceid: 'babecafe22', params: { switch: 'on' }, sequence: '1519293470001' });
    assert.equal(refused.error, 503);
    const unknown = await app.ask({ action: 'update', apikey: APP_APIKEY, deviceid: 'babecafe99', params: { switch: 'on' }, sequence: '1519293470002' });
    assert.equal(unknown.error, 503);
  });

  it('refuses bad credentials with 406 and closes the socket', async () => {
    for (const creds of [{ at: 'wrong', apikey: APP_APIKEY }, { at: APP_AT, apikey: '00000000-0000-4000-8000-000000000000' }]) {
      const bad = new RawClient(env.wsUrl);
      await bad.open();
      const reply = await bad.ask({ action: 'userOnline', userAgent: 'app', nonce: 'abcdefgh', sequence: '1', ...creds });
      assert.equal(reply.error, 406);
      assert.equal(reply.sequence, '1');
      await bad.waitClose();
    }
    // An unauthenticated socket gets nothing relayed and cannot command.
    const anon = new RawClient(env.wsUrl);
    await anon.open();
    const before = dev.commands.length;
    const r = await anon.ask({ action: 'update', deviceid: 'babecafe11', params: { switch: 'on' }, sequence: '2' });
    assert.ok(r.error === 400 || r.error === 401, `refused before userOnline (${r.error})`);
    await sleep(100);
    assert.equal(dev.commands.length, before, 'nothing reached the device');
    anon.close();
  });
});
