'use strict';
// Seed 001 (the 2017 capture of the real cloud) replayed message by message over real TLS.
// Every server answer must match the capture field for field, apart from the values that
// naturally differ (issued apikey, date, sequence).
const assert = require('node:assert/strict');
const { request, RawClient, once } = require('../helpers/raw');
const { startCloud } = require('../helpers/cloud');

const FACTORY = 'a1b2c3d4-0000-4000-8000-00000000db11';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('seed 001: device trace against the local cloud (TLS)', function () {
  this.timeout(20000);
  let env;
  before(async () => { env = await startCloud(); });
  after(async () => { await env.cloud.close(); });

  it('answers dispatch, register, date, update, query, and pushes a command in the capture shape', async () => {
    const dispatch = await request(env.base, '/dispatch/device', {
      body: '{\n\t"accept":"ws;2",\n\t"version":2,\n\t"ts":933,\n\t"deviceid":"100008db11",\n\t"apikey":"' + FACTORY + '",\n\t"model":"ITA-GZ1-GL",\n\t"romVersion":"1.5.5"\n}',
    });
    assert.equal(dispatch.status, 200);
    assert.equal(dispatch.headers['content-type'], 'application/json');
    assert.equal(Number(dispatch.headers['content-length']), Buffer.byteLength(dispatch.text));
    assert.deepEqual(dispatch.json, { error: 0, reason: 'ok', IP: '127.0.0.1', port: env.cloud.port });
    assert.equal(typeof dispatch.json.port, 'number');

    // The firmware sends a constant key and the cloud's host name.
    const dev = new RawClient(`wss://${dispatch.json.IP}:${dispatch.json.port}/api/ws`, { headers: { Host: 'iotgo.iteadstudio.com' } });
    await dev.open();

    const reg = await dev.ask({ userAgent: 'device', apikey: FACTORY, deviceid: '100008db11', action: 'register', version: 2, romVersion: '1.5.5', model: 'ITA-GZ1-GL', ts: 970 });
    assert.deepEqual(Object.keys(reg), ['error', 'deviceid', 'apikey', 'config']);
    assert.equal(reg.error, 0);
    assert.equal(reg.deviceid, '100008db11');
    assert.match(reg.apikey, UUID);
    assert.notEqual(reg.apikey, FACTORY, 'the issued apikey differs from the factory key');
    assert.equal(reg.config.hb, 1);
    assert.equal(reg.config.hbInterval, 145);
    assert.deepEqual(Object.keys(reg.config), ['devConfig', 'hb', 'hbInterval']);
    const key = reg.apikey;

    const date = await dev.ask({ userAgent: 'device', apikey: key, deviceid: '100008db11', action: 'date' });
    assert.deepEqual(Object.keys(date), ['error', 'deviceid', 'apikey', 'date']);
    assert.equal(date.apikey, key);
    assert.match(date.date, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(Math.abs(Date.parse(date.date) - Date.now()) < 5000, 'date is the real UTC time');

    const reported = once(env.cloud, 'update');
    const ack = await dev.ask({ userAgent: 'device', apikey: key, deviceid: '100008db11', action: 'update', params: { switch: 'off', fwVersion: '1.5.5', rssi: -31, staMac: '5C:CF:7F:A6:FD:F6', startup: 'off' } });
    assert.deepEqual(ack, { error: 0, deviceid: '100008db11', apikey: key });
    const ev = await reported;
    assert.equal(ev.params.switch, 'off');
    assert.equal(ev.device.model, 'ITA-GZ1-GL');

    const query = await dev.ask({ userAgent: 'device', apikey: key, deviceid: '100008db11', action: 'query', params: ['timers'] });
    assert.deepEqual(query, { error: 0, deviceid: '100008db11', apikey: key, params: 0 });

    const command = env.cloud.sendCommand('100008db11', { switch: 'on' });
    const pushed = await dev.next();
    assert.deepEqual(Object.keys(pushed), ['action', 'deviceid', 'apikey', 'userAgent', 'sequence', 'ts', 'params', 'from']);
    assert.equal(pushed.action, 'update');
    assert.equal(pushed.apikey, key);
    assert.equal(pushed.userAgent, 'app');
    assert.equal(pushed.from, 'app');
    assert.equal(pushed.ts, 0);
    assert.equal(typeof pushed.sequence, 'string');
    assert.deepEqual(pushed.params, { switch: 'on' });
    dev.send({ error: 0, userAgent: 'device', apikey: key, deviceid: '100008db11', sequence: pushed.sequence });
    const result = await command;
    assert.equal(result.sequence, pushed.sequence);

    // The report that follows the command, acked again.
    const ack2 = await dev.ask({ userAgent: 'device', apikey: key, deviceid: '100008db11', action: 'update', params: { switch: 'on', fwVersion: '1.5.5', rssi: -31, staMac: '5C:CF:7F:A6:FD:F6', startup: 'off' } });
    assert.deepEqual(ack2, { error: 0, deviceid: '100008db11', apikey: key });
    assert.equal(env.cloud.device('100008db11').params.switch, 'on');

    // WebSocket ping control frames are answered with pong.
    const pong = new Promise((resolve) => dev.ws.once('pong', resolve));
    dev.ws.ping();
    await pong;
    dev.close();
  });

  it('keeps the issued apikey stable across re-registration', async () => {
    const a = new RawClient(env.wsUrl);
    await a.open();
    const first = await a.ask({ userAgent: 'device', apikey: FACTORY, deviceid: '100008db22', action: 'register', model: 'ITA-GZ1-GL', romVersion: '1.5.5' });
    a.close();
    const b = new RawClient(env.wsUrl);
    await b.open();
    const second = await b.ask({ userAgent: 'device', apikey: FACTORY, deviceid: '100008db22', action: 'register', model: 'ITA-GZ1-GL', romVersion: '1.5.5' });
    assert.equal(second.apikey, first.apikey);
    b.close();
  });
});
