'use strict';
// Who may connect: open, allowlist (with the factory key checked), auto, pairing windows,
// approvals and the import of devices recorded by coolkit-pair.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { RawClient, waitFor } = require('../helpers/raw');
const { startCloud, stateDirWithCert } = require('../helpers/cloud');

const KEY_A = 'aaaaaaaa-0000-4000-8000-000000000001';
const KEY_B = 'bbbbbbbb-0000-4000-8000-000000000002';

async function tryRegister(env, deviceid, apikey) {
  const dev = new RawClient(env.wsUrl);
  await dev.open();
  const reply = await dev.ask({ userAgent: 'device', apikey, deviceid, action: 'register', model: 'ITA-GZ1-GL', romVersion: '1.5.5' });
  if (reply.error !== 0) {
    const closed = await dev.waitClose();
    return { reply, closed };
  }
  dev.close();
  return { reply };
}

describe('cloud: admission', function () {
  this.timeout(20000);

  it('open: accepts any device, even a known id with another key', async () => {
    const env = await startCloud({ admission: 'open' });
    assert.equal((await tryRegister(env, '1000cc0001', KEY_A)).reply.error, 0);
    assert.equal((await tryRegister(env, '1000cc0001', KEY_B)).reply.error, 0);
    await env.cloud.close();
  });

  it('allowlist: refuses unknown devices and spoofed ids, lists refusals, accepts after approval', async () => {
    const env = await startCloud({ admission: 'allowlist' });
    const unknown = await tryRegister(env, '1000cc0002', KEY_A);
    assert.equal(unknown.reply.error, 403);
    assert.match(unknown.reply.reason, /not on the allow-list/);
    assert.equal(unknown.closed.code, 4003);
    const refused = env.cloud.admission.refused();
    assert.equal(refused.length, 1);
    assert.equal(refused[0].deviceid, '1000cc0002');
    assert.equal(refused[0].factoryApikey, KEY_A);
    assert.equal(refused[0].model, 'ITA-GZ1-GL');
    assert.equal(env.cloud.device('1000cc0002'), undefined, 'a refused device is not stored');

    env.cloud.allowDevice('1000cc0002', undefined, 'Hall');
    assert.equal(env.cloud.admission.refused().length, 0);
    assert.equal((await tryRegister(env, '1000cc0002', KEY_A)).reply.error, 0, 'approved with the key it presented');
    assert.equal(env.cloud.device('1000cc0002').name, 'Hall');

    const spoof = await tryRegister(env, '1000cc0002', KEY_B);
    assert.equal(spoof.reply.error, 403);
    assert.match(spoof.reply.reason, /differs from the recorded one/);
    assert.equal(env.cloud.device('1000cc0002').factoryApikey, KEY_A, 'the recorded key is kept');
    await env.cloud.close();
  });

  it('a pairing window accepts new devices for its duration only', async () => {
    const env = await startCloud({ admission: 'allowlist' });
    env.cloud.openPairing(1 / 30); // 2 s: time for a registration on a busy machine
    assert.equal((await tryRegister(env, '1000cc0003', KEY_A)).reply.error, 0);
    await waitFor(() => env.cloud.admission.pairingOpenUntil() === 0, 10000);
    assert.equal((await tryRegister(env, '1000cc0004', KEY_A)).reply.error, 403);
    assert.equal((await tryRegister(env, '1000cc0003', KEY_A)).reply.error, 0, 'paired devices stay accepted');
    await env.cloud.close();
  });

  it('auto: open for the first set-up, allowlist once devices are known at start', async () => {
    const stateDir = await stateDirWithCert();
    const first = await startCloud({ stateDir });
    assert.equal(first.cloud.admission.effectiveMode, 'open');
    assert.equal((await tryRegister(first, '1000cc0005', KEY_A)).reply.error, 0);
    assert.equal((await tryRegister(first, '1000cc0006', KEY_A)).reply.error, 0);
    await first.cloud.close();
    const second = await startCloud({ stateDir });
    assert.equal(second.cloud.admission.effectiveMode, 'allowlist');
    assert.equal((await tryRegister(second, '1000cc0005', KEY_A)).reply.error, 0);
    assert.equal((await tryRegister(second, '1000cc0007', KEY_A)).reply.error, 403);
    await second.cloud.close();
  });

  it('imports devices recorded by coolkit-pair and renames the file', async () => {
    const stateDir = await stateDirWithCert();
    const file = path.join(stateDir, 'pending-devices.json');
    fs.writeFileSync(file, JSON.stringify([{ deviceid: '1000cc0008', apikey: KEY_B, name: 'Porch', pairedAt: new Date().toISOString() }, { deviceid: 'bad', apikey: 'x' }]));
    const env = await startCloud({ stateDir, admission: 'allowlist' });
    assert.equal(env.cloud.device('1000cc0008').name, 'Porch');
    assert.ok(fs.existsSync(`${file}.imported`));
    assert.ok(!fs.existsSync(file));
    assert.equal((await tryRegister(env, '1000cc0008', KEY_B)).reply.error, 0);
    assert.equal((await tryRegister(env, '1000cc0008', KEY_A)).reply.error, 403, 'only with the key read from the device');
    await env.cloud.close();
  });

  it('forgetting a device drops its connection and its record', async () => {
    const env = await startCloud({ admission: 'open' });
    const dev = new RawClient(env.wsUrl);
    await dev.open();
    await dev.ask({ userAgent: 'device', apikey: KEY_A, deviceid: '1000cc0009', action: 'register' });
    assert.equal(env.cloud.forgetDevice('1000cc0009'), true);
    assert.equal((await dev.waitClose()).code, 4003);
    assert.equal(env.cloud.device('1000cc0009'), undefined);
    await env.cloud.close();
  });
});
