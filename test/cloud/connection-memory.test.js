'use strict';
// Memory held per connected device: once a device's WebSocket is up, nothing may keep its HTTP
// upgrade request (headers and raw header strings, over 1 KB) alive for the connection's
// lifetime. Thousands of devices stay connected for days.
const assert = require('node:assert/strict');
const v8 = require('node:v8');
const vm = require('node:vm');
const { startCloud } = require('../helpers/cloud');
const { RawClient, sleep } = require('../helpers/raw');

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
const FACTORY = 'f0000000-0000-4000-8000-000000000001';

describe('per-connection memory', function () {
  this.timeout(20000);
  let ctx;
  const clients = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    if (ctx) await ctx.cloud.close();
    ctx = undefined;
  });

  it('a connected device does not keep its upgrade request alive', async () => {
    ctx = await startCloud({ tls: 'off', admission: 'open' });
    const requests = [];
    ctx.cloud['server'].prependListener('upgrade', (req) => requests.push(new WeakRef(req)));
    for (let i = 0; i < 5; i++) {
      const dev = new RawClient(ctx.wsUrl);
      clients.push(dev);
      await dev.open();
      const reg = await dev.ask({ userAgent: 'device', apikey: FACTORY, deviceid: `40000000${i}0`, action: 'register', version: 2, romVersion: '3.5.0', model: 'PSF-BD1-GL' });
      assert.equal(reg.error, 0);
    }
    assert.equal(requests.length, 5);
    // WeakRefs are only cleared after the current job: collect over a few turns.
    for (let i = 0; i < 5 && requests.some((r) => r.deref()); i++) {
      await sleep(50);
      gc();
    }
    assert.equal(ctx.cloud.onlineCount, 5, 'the devices are still connected');
    assert.deepEqual(requests.map((r) => r.deref() === undefined), [true, true, true, true, true], 'upgrade requests still reachable');
  });
});
