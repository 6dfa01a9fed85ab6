'use strict';
// coolkit-server's one-time hint for busy installations: with 300 devices online and Node
// started without --max-semi-space-size, the Node-RED log says once how to start Node-RED
// (README "Install"); with fewer devices it says nothing.
const assert = require('node:assert/strict');
const { helper, nodes, runtime, runtimeVersion } = require('../helpers/nodered');
const { RawClient, waitFor } = require('../helpers/raw');
const { tmpDir } = require('../helpers/cloud');
const { GC_HINT_DEVICES } = require('../../dist/src/cloud/gc-hint');

const FACTORY = 'f0000000-0000-4000-8000-000000000001';

// The test helper does not load the package's message catalogs: RED._ answers the key (the
// catalogs' texts are checked in test/unit/gc-hint.test.js).
const hints = () => helper.log().args.map((a) => a[0]).filter((m) => m && m.msg === 'coolkit-server.log.gcHint');

describe(`coolkit-server GC hint on Node-RED ${runtimeVersion()} (${runtime}), Node ${process.version}`, function () {
  this.timeout(60000);
  const sockets = [];

  before((done) => { helper.startServer(done); });
  after((done) => { helper.stopServer(done); });
  beforeEach(() => helper.settings({ userDir: tmpDir('coolkit-gchint-') }));
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.close();
    await helper.unload();
  });

  async function connect(srv, count) {
    const one = async (i) => {
      const dev = new RawClient(`ws://127.0.0.1:${srv.cloud.port}/api/ws`);
      sockets.push(dev);
      await dev.open();
      const reg = await dev.ask({ userAgent: 'device', apikey: FACTORY, deviceid: `20${String(i).padStart(8, '0')}`, action: 'register', version: 2, romVersion: '3.5.0', model: 'PSF-BD1-GL' });
      assert.equal(reg.error, 0, JSON.stringify(reg));
    };
    for (let i = 0; i < count; i += 50) await Promise.all(Array.from({ length: Math.min(50, count - i) }, (_, k) => one(i + k)));
  }

  it(`logs once, at info level, when ${GC_HINT_DEVICES} devices are online and Node has no semi-space option`, async function () {
    if ((process.env.NODE_OPTIONS || '').includes('semi-space') || process.execArgv.some((a) => a.includes('semi-space'))) this.skip();
    await helper.load([nodes.server], [{ id: 'srv', type: 'coolkit-server', bind: '127.0.0.1', port: 0, advertiseHost: '127.0.0.1', tls: 'off', hbInterval: 145, commandTimeout: 2, admission: 'open' }]);
    const srv = helper.getNode('srv');
    await waitFor(() => srv.cloud.state === 'listening');
    await connect(srv, GC_HINT_DEVICES - 1);
    await waitFor(() => srv.cloud.onlineCount === GC_HINT_DEVICES - 1, 20000);
    await new Promise((r) => setTimeout(r, 1500)); // the status push is coalesced
    assert.equal(hints().length, 0, 'no hint below the threshold');
    await connect(srv, GC_HINT_DEVICES + 20);
    await waitFor(() => hints().length > 0, 20000);
    await new Promise((r) => setTimeout(r, 1500));
    const h = hints();
    assert.equal(h.length, 1, 'said once');
    assert.equal(h[0].level, helper.log().INFO);
    assert.equal(h[0].type, 'coolkit-server');
  });
});
