'use strict';
// Family features of the cloud over real TLS sockets: coalesced outlet commands, the offline
// queue, live-metering keep-alive, RF trigger events and normalized readings.
const assert = require('node:assert/strict');
const { RawClient, once, sleep, waitFor } = require('../helpers/raw');
const { startCloud } = require('../helpers/cloud');

const FACTORY = 'f0000000-0000-4000-8000-000000000001';

async function device(env, deviceid, model, params) {
  const dev = new RawClient(env.wsUrl);
  await dev.open();
  const reg = await dev.ask({ userAgent: 'device', apikey: FACTORY, deviceid, action: 'register', model, romVersion: '2.0.2' });
  dev.key = reg.apikey;
  dev.deviceid = deviceid;
  dev.received = [];
  if (params) await dev.ask({ action: 'update', deviceid, apikey: dev.key, params });
  return dev;
}

/** Ack every command and record it. */
function autoAck(dev) {
  dev.ws.on('message', (data) => {
    const msg = JSON.parse(data.toString());
    if (!msg.sequence || !msg.action) return;
    dev.received.push(msg);
    dev.ws.send(JSON.stringify({ error: 0, deviceid: dev.deviceid, apikey: dev.key, sequence: msg.sequence }));
  });
}

describe('cloud: device families', function () {
  this.timeout(20000);
  let env;
  beforeEach(async () => { env = await startCloud({ uiActiveIntervalMs: 200, coalesceWindowMs: 100, sweepIntervalMs: 50 }); });
  afterEach(async () => { await env.cloud.close(); });

  it('coalesces four outlet commands sent in a burst into one switches message', async () => {
    const dev = await device(env, '1000bb0004', 'PSF-B04-GL', { switches: [0, 1, 2, 3].map((outlet) => ({ switch: 'off', outlet })) });
    autoAck(dev);
    const results = await Promise.all([0, 1, 2, 3].map((outlet) => env.cloud.sendCommand('1000bb0004', { switches: [{ switch: 'on', outlet }] }, { coalesce: true })));
    assert.equal(dev.received.length, 1, 'one device message');
    assert.deepEqual(dev.received[0].params, { switches: [0, 1, 2, 3].map((outlet) => ({ switch: 'on', outlet })) });
    assert.equal(new Set(results.map((r) => r.sequence)).size, 1, 'every caller got the same ack');
    // Later commands to the same outlet in one window: the latest wins.
    await Promise.all([
      env.cloud.sendCommand('1000bb0004', { switches: [{ switch: 'off', outlet: 2 }] }, { coalesce: true }),
      env.cloud.sendCommand('1000bb0004', { switches: [{ switch: 'on', outlet: 2 }] }, { coalesce: true }),
    ]);
    assert.deepEqual(dev.received[1].params, { switches: [{ switch: 'on', outlet: 2 }] });
    dev.close();
  });

  it('queues commands for an offline device and applies the merged result when it re-registers', async () => {
    let dev = await device(env, '1000bb0001', 'ITA-GZ1-GL', { switch: 'off' });
    const offline = once(env.cloud, 'offline');
    dev.close();
    await offline;
    const first = env.cloud.sendCommand('1000bb0001', { switch: 'on', sledOnline: 'off' }, { offline: 'queue' });
    const second = env.cloud.sendCommand('1000bb0001', { switch: 'off' }, { offline: 'queue' });
    await assert.rejects(env.cloud.sendCommand('1000bb0001', { switch: 'on' }), (e) => e.code === 503, 'without the queue option it fails at once');
    dev = new RawClient(env.wsUrl);
    await dev.open();
    const reg = await dev.ask({ userAgent: 'device', apikey: FACTORY, deviceid: '1000bb0001', action: 'register', model: 'ITA-GZ1-GL' });
    const pushed = await dev.next();
    assert.deepEqual(pushed.params, { switch: 'off', sledOnline: 'off' }, 'latest value per param wins');
    dev.send({ error: 0, deviceid: '1000bb0001', apikey: reg.apikey, sequence: pushed.sequence });
    const [a, b] = await Promise.all([first, second]);
    assert.equal(a.sequence, pushed.sequence);
    assert.equal(b.sequence, pushed.sequence);
    dev.close();
  });

  it('expires queued commands for a device that stays away, and refuses to queue for unknown devices', async () => {
    const dev = await device(env, '1000bb0001', 'ITA-GZ1-GL', { switch: 'off' });
    const offline = once(env.cloud, 'offline');
    dev.close();
    await offline;
    await assert.rejects(env.cloud.sendCommand('1000bb0001', { switch: 'on' }, { offline: 'queue', queueExpiryMs: 100 }), (e) => e.code === 503 && /expired/.test(e.message));
    await assert.rejects(env.cloud.sendCommand('1000bb0999', { switch: 'on' }, { offline: 'queue' }), (e) => e.code === 503 && /unknown/.test(e.message));
  });

  it('keeps real-time metering alive with uiActive only while someone watches a power meter', async () => {
    const pow = await device(env, '1000bb0005', 'SIM-POW-R2', { switch: 'on', power: '12.00', voltage: '230.00', current: '0.05' });
    const basic = await device(env, '1000bb0006', 'ITA-GZ1-GL', { switch: 'on' });
    autoAck(pow);
    autoAck(basic);
    await sleep(300);
    assert.equal(pow.received.length, 0, 'nobody watches: nothing sent');
    const stop = env.cloud.watchMetering('');
    await waitFor(() => pow.received.length >= 3, 10000);
    assert.ok(pow.received.every((m) => m.params.uiActive === 60));
    assert.equal(basic.received.length, 0, 'devices that do not meter are left alone');
    stop();
    const count = pow.received.length;
    await sleep(500);
    assert.ok(pow.received.length <= count + 1, 'stops when nobody watches');
    pow.close();
    basic.close();
  });

  it('turns RF bridge triggers into events with the channel, and reports normalized readings', async () => {
    const rf = await device(env, '1000bb0028', 'SIM-RF-BRIDGE', { rfList: [{ rfChl: 0, rfVal: 'AA' }] });
    const trig = once(env.cloud, 'trigger');
    await rf.ask({ action: 'update', deviceid: '1000bb0028', apikey: rf.key, params: { cmd: 'trigger', rfTrig3: '2020-09-21T02:34:14.000Z' } });
    const ev = await trig;
    assert.equal(ev.channel, 3);
    assert.deepEqual(ev.params, { channel: 3, at: '2020-09-21T02:34:14.000Z' });

    const th = await device(env, '1000bb0015', 'PSA-BHA-GL');
    const upd = once(env.cloud, 'update', (e) => e.deviceid === '1000bb0015');
    await th.ask({ action: 'update', deviceid: '1000bb0015', apikey: th.key, params: { currentTemperature: '22.5', currentHumidity: 'unavailable', sensorType: 'DS18B20', switch: 'on' } });
    const u = await upd;
    assert.equal(u.normalized.temperature, 22.5);
    assert.equal(u.normalized.humidity, null);
    assert.equal(u.normalized.switch, true);
    rf.close();
    th.close();
  });
});

describe('cloud: stored settings', function () {
  this.timeout(10000);
  it('keeps the params a device acknowledged (e.g. timers) and answers its query from them', async () => {
    const env = await startCloud();
    const dev = await device(env, '1000bb0011', 'ITA-GZ1-GL', { switch: 'off' });
    autoAck(dev);
    const timers = [{ enabled: 1, mId: 'bd37062f-05e6-4b7c-918b-6e5a7041fa49', type: 'once', at: '2030-09-17T00:30:00.000Z', do: { switch: 'off' }, coolkit_timer_type: 'once' }];
    await env.cloud.sendCommand('1000bb0011', { timers });
    await env.cloud.sendCommand('1000bb0011', { uiActive: 60 }).catch(() => {});
    dev.ws.removeAllListeners('message');
    const reply = await dev.ask({ action: 'query', deviceid: '1000bb0011', apikey: dev.key, params: ['timers'] });
    assert.deepEqual(reply.params, { timers });
    assert.equal(env.cloud.device('1000bb0011').params.uiActive, undefined, 'one-shot commands are not stored');
    dev.close();
    await env.cloud.close();
  });
});
