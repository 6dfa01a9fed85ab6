'use strict';
// The backbone against a broker that wants credentials, on MQTT 3.1.1 as well as 5: wrong
// credentials leave the instance serving its own devices and say why; the right ones connect and
// the device's retained state appears on the broker. A private Mosquitto with a password file.
const assert = require('node:assert/strict');
const mqtt = require('mqtt');
const { CoolkitCloud } = require('../../dist/src/cloud/server');
const { MqttBackbone } = require('../../dist/src/mqtt/backbone');
const { Mosquitto, requireMosquitto } = require('../helpers/mosquitto');
const { RawClient, waitFor } = require('../helpers/raw');
const { tmpDir, recordingLogger } = require('../helpers/cloud');

const KEY = 'f0000000-0000-4000-8000-000000000001';

describe('mqtt backbone: broker credentials and protocol versions', function () {
  this.timeout(60000);
  let broker;
  const cleanups = [];

  before(async function () {
    const bin = requireMosquitto(this);
    broker = new Mosquitto(bin, { users: { coolkit: 's3cret-pass' } });
    await broker.start();
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await Promise.resolve().then(c).catch(() => {});
  });
  after(async () => {
    if (broker) await broker.stop();
  });

  async function instance(options) {
    const { logger, lines } = recordingLogger();
    const cloud = new CoolkitCloud({ bind: '127.0.0.1', port: 0, advertiseHost: '127.0.0.1', tls: 'off', admission: 'open', stateDir: tmpDir('coolkit-auth-'), logger });
    await cloud.start();
    const backbone = new MqttBackbone(cloud, { url: broker.url, advertiseHost: '127.0.0.1', logger, heartbeatMs: 2000, ...options });
    backbone.start();
    cleanups.push(() => cloud.close(), () => backbone.stop());
    return { cloud, backbone, lines };
  }

  it('wrong credentials: not connected, the reason is logged without the password, local devices still work', async () => {
    const { cloud, backbone, lines } = await instance({ instanceId: 'auth-bad', username: 'coolkit', password: 'wrong-password' });
    await waitFor(() => backbone.lastError, 20000);
    assert.notEqual(backbone.state, 'connected');
    assert.match(backbone.lastError, /not authori[sz]ed|bad user ?name or password/i);
    assert.ok(!Object.values(lines).flat().some((l) => l.includes('wrong-password')), 'the password is never logged');
    const dev = new RawClient(`ws://127.0.0.1:${cloud.port}/api/ws`);
    cleanups.push(() => dev.close());
    await dev.open();
    const reg = await dev.ask({ userAgent: 'device', apikey: KEY, deviceid: '1000aa0011', action: 'register', model: 'ITA-GZ1-GL', romVersion: '1' }, 10000);
    assert.equal(reg.error, 0, 'the instance serves its own devices without the broker');
  });

  for (const protocolVersion of [4, 5]) {
    it(`right credentials on MQTT ${protocolVersion === 4 ? '3.1.1' : '5'}: connects and publishes the device's retained state`, async () => {
      const id = `1000aa00${protocolVersion === 4 ? '41' : '51'}`;
      const { cloud, backbone } = await instance({ instanceId: `auth-v${protocolVersion}`, username: 'coolkit', password: 's3cret-pass', protocolVersion });
      await waitFor(() => backbone.state === 'connected', 20000);
      const dev = new RawClient(`ws://127.0.0.1:${cloud.port}/api/ws`);
      cleanups.push(() => dev.close());
      await dev.open();
      const reg = await dev.ask({ userAgent: 'device', apikey: KEY, deviceid: id, action: 'register', model: 'ITA-GZ1-GL', romVersion: '1' }, 10000);
      await dev.ask({ userAgent: 'device', apikey: reg.apikey, deviceid: id, action: 'update', params: { switch: 'on' } }, 10000);
      const sub = mqtt.connect(broker.url, { username: 'coolkit', password: 's3cret-pass', protocolVersion });
      cleanups.push(() => sub.endAsync());
      const state = await new Promise((resolve, reject) => {
        sub.on('error', reject);
        sub.on('message', (topic, payload) => {
          const v = JSON.parse(payload.toString());
          if (topic === `coolkit/${id}/state` && v.params?.switch === 'on') resolve(v);
        });
        sub.on('connect', () => sub.subscribe(`coolkit/${id}/state`));
      });
      assert.equal(state.instance, `auth-v${protocolVersion}`);
    });
  }
});
