'use strict';
// The allow-list holds across instances: a device held by instance B is known to instance A only
// through the broker, with a hash of its factory key; a register on A with another key for the
// same deviceid is refused, the device's own key is accepted. Two clouds in this process, a
// private Mosquitto on 127.0.0.1, devices speaking the protocol over real sockets.
const assert = require('node:assert/strict');
const path = require('node:path');
const { CoolkitCloud } = require('../../dist/src/cloud/server');
const { MqttBackbone } = require('../../dist/src/mqtt/backbone');
const { Mosquitto, requireMosquitto } = require('../helpers/mosquitto');
const { RawClient, waitFor } = require('../helpers/raw');
const { tmpDir, recordingLogger } = require('../helpers/cloud');

const KEY = 'f0000000-0000-4000-8000-000000000001';
const OTHER_KEY = 'f0000000-0000-4000-8000-00000000dead';

async function cloud(name) {
  const { logger } = recordingLogger();
  const c = new CoolkitCloud({ bind: '127.0.0.1', port: 0, advertiseHost: '127.0.0.1', tls: 'off', admission: 'allowlist', stateDir: tmpDir(`coolkit-adm-${name}-`), logger });
  await c.start();
  return c;
}

async function register(c, deviceid, apikey) {
  const dev = new RawClient(`ws://127.0.0.1:${c.port}/api/ws`);
  await dev.open();
  const reply = await dev.ask({ userAgent: 'device', apikey, deviceid, action: 'register', version: 2, romVersion: '3.5.0', model: 'ITA-GZ1-GL', ts: 1 }, 10000);
  return { dev, reply };
}

describe('mqtt backbone: the allow-list across instances', function () {
  this.timeout(60000);
  let broker;
  const cleanups = [];

  before(async function () {
    const bin = requireMosquitto(this);
    broker = new Mosquitto(bin);
    await broker.start();
  });
  after(async () => {
    for (const c of cleanups.reverse()) await Promise.resolve().then(c).catch(() => {});
    if (broker) await broker.stop();
  });

  it('refuses a spoofed deviceid on the other instance and admits the device with its own key', async () => {
    const a = await cloud('a');
    const b = await cloud('b');
    cleanups.push(() => a.close(), () => b.close());
    const { logger } = recordingLogger();
    const backbones = [
      new MqttBackbone(a, { url: broker.url, instanceId: 'adm-a', advertiseHost: '127.0.0.1', logger, heartbeatMs: 2000 }),
      new MqttBackbone(b, { url: broker.url, instanceId: 'adm-b', advertiseHost: '127.0.0.1', logger, heartbeatMs: 2000 }),
    ];
    backbones.forEach((bb) => bb.start());
    cleanups.push(() => Promise.all(backbones.map((bb) => bb.stop())));
    await waitFor(() => backbones.every((bb) => bb.state === 'connected'), 20000);

    // Approved on B (as the editor or coolkit-pair would), then connected there.
    b.allowDevice('1000aa0001', KEY);
    const held = await register(b, '1000aa0001', KEY);
    cleanups.push(() => held.dev.close());
    assert.equal(held.reply.error, 0);
    await held.dev.ask({ userAgent: 'device', apikey: held.reply.apikey, deviceid: '1000aa0001', action: 'update', params: { switch: 'on' } });

    // A learns the device from the broker, without its key.
    await waitFor(() => a.isRemote('1000aa0001') && a.device('1000aa0001')?.factoryKeyHash && a.device('1000aa0001').params.switch === 'on', 20000);
    assert.equal(a.device('1000aa0001').factoryApikey, '');

    const spoof = await register(a, '1000aa0001', OTHER_KEY);
    cleanups.push(() => spoof.dev.close());
    assert.equal(spoof.reply.error, 403, JSON.stringify(spoof.reply));
    assert.ok(!a.isLocal('1000aa0001'));

    // The real device moving to A (its instance went away, or dispatch sent it there) is admitted.
    held.dev.close();
    const moved = await register(a, '1000aa0001', KEY);
    cleanups.push(() => moved.dev.close());
    assert.equal(moved.reply.error, 0, JSON.stringify(moved.reply));
    assert.ok(a.isLocal('1000aa0001'));
    assert.equal(a.device('1000aa0001').params.switch, 'on', 'its state is kept');
  });
});
