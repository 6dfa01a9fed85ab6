'use strict';
// The Zhiting API (src/hub/zhiting) over real sockets on 127.0.0.1, with simulated Sonoff
// devices of every family on a real local cloud: the seed's request and response shapes field
// for field, the thing model per family, events, every error case, ids, and virtual devices.
const assert = require('node:assert/strict');
const { sleep, waitFor } = require('../helpers/raw');
const { startHub } = require('./zhiting-env');
const { parseJson, BigNumber, storeFirmwareProvider, compareVersions, frame } = require('../../dist/src/hub/zhiting');

const keys = (o) => Object.keys(o).sort();

describe('Zhiting hub API', function () {
  this.timeout(20000);
  let env;
  afterEach(async () => { if (env) await env.stop(); env = undefined; });

  describe('lossless JSON', () => {
    it('keeps integers beyond 2^53 and the raw id text; bounds depth and refuses prototype keys', () => {
      const p = parseJson('{"id": 1655797023123456789, "n": [1, -9007199254740993, 2.5]}');
      assert.equal(p.idRaw, '1655797023123456789');
      assert.ok(p.value.n[1] instanceof BigNumber);
      assert.equal(p.value.n[1].raw, '-9007199254740993');
      assert.equal(p.value.n[2], 2.5);
      assert.equal(parseJson('{"ID":7,"x":{"id":9}}').idRaw, '7', 'top level only, any case');
      assert.throws(() => parseJson('{"a":'.repeat(20) + '1' + '}'.repeat(20)), /nesting deeper than 16/);
      assert.throws(() => parseJson('{"__proto__":{"x":1}}'), /not allowed/);
      assert.throws(() => parseJson('{"a":1} x'), /after the JSON value/);
      assert.throws(() => parseJson('{"a":"\u0001"}'), /control character/);
      assert.deepEqual(parseJson('{"s":"a\\u00e9\\n","t":true,"f":false,"z":null}').value, { s: 'a\u00e9\n', t: true, f: false, z: null });
      assert.equal(frame('1655797023123456789', { success: true }), '{"id":1655797023123456789,"success":true}');
      assert.equal(compareVersions('1.10.0', '1.9.3'), 1);
      assert.equal(compareVersions('2.0', '2.0.0'), 0);
    });
  });

  describe('seed shapes, field for field', () => {
    it('discover: one response per device with {name, identity, model, manufacturer, plugin_id}', async () => {
      env = await startHub();
      const c = await env.client();
      const none = await c.ask({ id: 1, service: 'discover' });
      assert.deepEqual(none, { id: 1, type: '', result: null, success: true }, 'no device: still one answer');
      await env.sim('1000aa0001', 'basic');
      await env.sim('1000aa0004', '4ch');
      c.send({ id: 2, service: 'discover' });
      await c.waitFrame(() => (c.responses(2).length === 2 ? true : undefined));
      const found = c.responses(2).sort((a, b) => a.result.device.identity.localeCompare(b.result.device.identity));
      for (const r of found) {
        assert.deepEqual(keys(r), ['id', 'result', 'success', 'type']);
        assert.equal(r.type, '');
        assert.equal(r.success, true);
        assert.deepEqual(keys(r.result), ['device']);
        assert.deepEqual(keys(r.result.device), ['identity', 'manufacturer', 'model', 'name', 'plugin_id']);
      }
      assert.deepEqual(found[0].result.device, { name: '1000aa0001', identity: '1000aa0001', model: 'ITA-GZ1-GL', manufacturer: 'SONOFF', plugin_id: 'coolkit' });
      assert.equal(found[1].result.device.model, 'PSF-B04-GL');
      // The raw text puts id first, as the seed does.
      assert.ok(c.texts.find((t) => t.startsWith('{"id":2,') && t.includes('1000aa0001')).startsWith('{"id":2,"type":"","result":{"device":'));
    });

    it('get_attributes: {identity, device:{name, identity, instances:[{type, instance_id, attrs:[{attribute, val, val_type}]}], ota_support}}', async () => {
      env = await startHub();
      await env.sim('1000aa0001', 'basic');
      const c = await env.client();
      const r = await c.ask({ id: 1, domain: 'zhiting', service: 'get_attributes', identity: '1000aa0001' });
      assert.deepEqual(keys(r), ['id', 'result', 'success', 'type']);
      assert.equal(r.success, true);
      assert.deepEqual(keys(r.result), ['device', 'identity']);
      assert.equal(r.result.identity, '1000aa0001');
      assert.deepEqual(keys(r.result.device), ['identity', 'instances', 'name', 'ota_support']);
      assert.equal(r.result.device.ota_support, false, 'no firmware store plugged in');
      assert.deepEqual(r.result.device.instances, [
        {
          type: 'info',
          instance_id: 0,
          attrs: [
            { attribute: 'identity', val: '1000aa0001', val_type: 'string', permission: 1 },
            { attribute: 'model', val: 'ITA-GZ1-GL', val_type: 'string', permission: 1 },
            { attribute: 'manufacturer', val: 'SONOFF', val_type: 'string', permission: 1 },
            { attribute: 'version', val: '1.5.5', val_type: 'string', permission: 1 },
            { attribute: 'name', val: '', val_type: 'string', permission: 1 },
            { attribute: 'online', val: true, val_type: 'bool', permission: 1 },
          ],
        },
        { type: 'switch', instance_id: 1, attrs: [{ attribute: 'power', val: 'off', val_type: 'string', permission: 0 }] },
      ]);
    });

    it('set_attributes: {id, type:"response", success:true} after the device acks, then attribute_change {type, identity, instance_id, attr:{attribute, val, val_type}}', async () => {
      env = await startHub();
      const dev = await env.sim('1000aa0001', 'basic');
      const commands = [];
      dev.on('command', (p) => commands.push(p));
      const c = await env.client();
      const other = await env.client();
      const r = await c.ask({ id: 1, domain: 'zhiting', service: 'set_attributes', identity: '1000aa0001', service_data: { attributes: [{ instance_id: 1, attribute: 'power', val: 'on' }] } });
      assert.deepEqual(r, { id: 1, type: 'response', success: true });
      assert.deepEqual(commands, [{ switch: 'on' }]);
      const expected = { type: 'attribute_change', identity: '1000aa0001', instance_id: 1, attr: { attribute: 'power', val: 'on', val_type: 'string' } };
      assert.deepEqual(await c.event((e) => e.instance_id === 1), expected);
      assert.deepEqual(await other.event((e) => e.instance_id === 1), expected, 'every client gets events');
      assert.deepEqual(keys(c.events[0]), ['attr', 'identity', 'instance_id', 'type']);
      // toggle resolves from the known state, as sonoff-device-out does
      await c.ask({ id: 2, service: 'set_attributes', identity: '1000aa0001', service_data: { attributes: [{ instance_id: 1, attribute: 'power', val: 'toggle' }] } });
      assert.deepEqual(commands[1], { switch: 'off' });
      await c.event((e) => e.attr.val === 'off');
    });

    it('check_update without a firmware store: no update available, in the seed shape', async () => {
      env = await startHub();
      await env.sim('1000aa0001', 'basic');
      const c = await env.client();
      const r = await c.ask({ id: 1, domain: 'zhiting', service: 'check_update', identity: '1000aa0001' });
      assert.deepEqual(r, {
        id: 1,
        type: 'response',
        result: { current_version: '1.5.5', latest_firmware: { version: '1.5.5', url: '', info: 'no update available' }, update_available: false },
        success: true,
      });
      const o = await c.ask({ id: 2, domain: 'zhiting', service: 'ota', identity: '1000aa0001' });
      assert.deepEqual(o, { id: 2, type: 'response', success: false, error: 'firmware updates are not available on this server', error_code: 12 });
    });

    it('check_update and ota with a firmware provider: update available, ota answers {result:null, success:true}', async () => {
      const upgrades = [];
      const firmware = {
        latest: async (model) => (model === 'ITA-GZ1-GL' ? { version: '1.6.0', url: 'http://127.0.0.1/fw/user1.bin', info: 'fixes' } : undefined),
        upgrade: async (deviceid, fw) => { upgrades.push([deviceid, fw.version]); },
      };
      env = await startHub({ hub: { firmware } });
      await env.sim('1000aa0001', 'basic');
      await env.sim('1000aa0004', '4ch');
      const c = await env.client();
      const r = await c.ask({ id: 1, service: 'check_update', identity: '1000aa0001' });
      assert.deepEqual(r.result, { current_version: '1.5.5', latest_firmware: { version: '1.6.0', url: 'http://127.0.0.1/fw/user1.bin', info: 'fixes' }, update_available: true });
      assert.equal((await c.ask({ id: 2, service: 'get_attributes', identity: '1000aa0001' })).result.device.ota_support, true);
      assert.deepEqual(await c.ask({ id: 3, domain: 'zhiting', service: 'ota', identity: '1000aa0001' }), { id: 3, type: 'response', result: null, success: true });
      assert.deepEqual(upgrades, [['1000aa0001', '1.6.0']]);
      const none = await c.ask({ id: 4, service: 'ota', identity: '1000aa0004' });
      assert.equal(none.error_code, 9);
      assert.match(none.error, /no update available: device 1000aa0004 runs firmware 2\.0\.2/);
    });

    it('the firmware store adapter: latest from the store, ota resolves when the device accepted, fails when the update fails', async () => {
      const store = { latest: (model) => (model === 'M' ? { model: 'M', version: '3.0.0', addedAt: '2024-01-01' } : undefined) };
      const ota = {
        update: (deviceid, { version, onProgress }) => new Promise((resolve) => {
          setTimeout(() => onProgress({ state: 'sent' }), 5);
          if (deviceid === 'bad') setTimeout(() => resolve({ state: 'failed', reason: 'the device answered error 404' }), 10);
          else setTimeout(() => onProgress({ state: 'acked' }), 10);
          assert.equal(version, '3.0.0');
        }),
      };
      const p = storeFirmwareProvider(store, ota);
      assert.deepEqual(p.latest('M'), { version: '3.0.0', url: '', info: 'M 3.0.0, added 2024-01-01' });
      assert.equal(p.latest('X'), undefined);
      await p.upgrade('good', { version: '3.0.0', url: '' });
      await assert.rejects(p.upgrade('bad', { version: '3.0.0', url: '' }), /error 404/);
      assert.equal(storeFirmwareProvider(store).upgrade, undefined, 'no OTA manager: ota not available');
    });
  });

  describe('thing model per family', () => {
    it('multi-channel: one instance per channel; two channels in one request go out as one message', async () => {
      env = await startHub();
      const dev = await env.sim('1000aa0004', '4ch');
      const commands = [];
      dev.on('command', (p) => commands.push(p));
      const c = await env.client();
      const g = await c.ask({ id: 1, service: 'get_attributes', identity: '1000aa0004' });
      assert.deepEqual(g.result.device.instances.slice(1).map((i) => [i.instance_id, i.type, i.attrs[0].val]), [[1, 'switch', 'off'], [2, 'switch', 'off'], [3, 'switch', 'off'], [4, 'switch', 'off']]);
      const r = await c.ask({ id: 2, service: 'set_attributes', identity: '1000aa0004', service_data: { attributes: [{ instance_id: 1, attribute: 'power', val: 'on' }, { instance_id: 3, attribute: 'power', val: 'on' }] } });
      assert.equal(r.success, true);
      assert.deepEqual(commands, [{ switches: [{ switch: 'on', outlet: 0 }, { switch: 'on', outlet: 2 }] }]);
      await c.event((e) => e.instance_id === 1 && e.attr.val === 'on');
      await c.event((e) => e.instance_id === 3 && e.attr.val === 'on');
      await sleep(100);
      assert.equal(c.events.filter((e) => e.instance_id === 2 || e.instance_id === 4).length, 0, 'unchanged channels send nothing');
    });

    it('power meter: switch plus power, voltage, current as numbers (float32), read only', async () => {
      env = await startHub();
      await env.sim('1000aa0032', 'pow');
      const c = await env.client();
      const g = await c.ask({ id: 1, service: 'get_attributes', identity: '1000aa0032' });
      const inst = g.result.device.instances;
      assert.deepEqual(inst.map((i) => i.type), ['info', 'outlet', 'power_meter']);
      assert.deepEqual(inst[2].attrs.map((a) => [a.attribute, typeof a.val, a.val_type, a.permission]), [
        ['power', 'number', 'float32', 1],
        ['voltage', 'number', 'float32', 1],
        ['current', 'number', 'float32', 1],
      ]);
      assert.ok(inst[2].attrs[1].val > 200, 'the "230.xx" string on the wire is a number here');
      const ro = await c.ask({ id: 2, service: 'set_attributes', identity: '1000aa0032', service_data: { attributes: [{ instance_id: 2, attribute: 'power', val: 5 }] } });
      assert.deepEqual(ro, { id: 2, type: 'response', success: false, error: 'attribute "power" of instance 2 (power_meter) is read-only', error_code: 7 });
      assert.equal((await c.ask({ id: 3, service: 'set_attributes', identity: '1000aa0032', service_data: { attributes: [{ instance_id: 1, attribute: 'power', val: 'on' }] } })).success, true);
    });

    it('TH16: switch, temperature and humidity (read only, events on change), thermostat targets settable', async () => {
      env = await startHub();
      const dev = await env.sim('1000aa0015', 'th16', { sensorTickMs: 50 });
      const c = await env.client();
      const g = await c.ask({ id: 1, service: 'get_attributes', identity: '1000aa0015' });
      const inst = g.result.device.instances;
      assert.deepEqual(inst.map((i) => [i.instance_id, i.type]), [[0, 'info'], [1, 'switch'], [2, 'temperature_and_humidity_sensor'], [3, 'thermostat']]);
      assert.deepEqual(inst[2].attrs.map((a) => [a.attribute, a.val, a.val_type, a.permission]), [['temperature', 22.5, 'float32', 1], ['humidity', 45, 'float32', 1]]);
      assert.deepEqual(inst[3].attrs.map((a) => [a.attribute, a.val_type, a.permission]), [
        ['auto', 'bool', 0], ['mode', 'string', 0], ['target_high', 'float32', 0], ['high_reaction', 'string', 0], ['target_low', 'float32', 0], ['low_reaction', 'string', 0],
      ]);
      const ro = await c.ask({ id: 2, service: 'set_attributes', identity: '1000aa0015', service_data: { attributes: [{ instance_id: 2, attribute: 'temperature', val: 30 }] } });
      assert.equal(ro.error_code, 7);
      const commands = [];
      dev.on('command', (p) => commands.push(p));
      const set = await c.ask({
        id: 3,
        service: 'set_attributes',
        identity: '1000aa0015',
        service_data: { attributes: [
          { instance_id: 3, attribute: 'mode', val: 'temperature' },
          { instance_id: 3, attribute: 'auto', val: true },
          { instance_id: 3, attribute: 'target_high', val: 28.5 },
          { instance_id: 3, attribute: 'target_low', val: 20 },
        ] },
      });
      assert.equal(set.success, true, JSON.stringify(set));
      assert.deepEqual(commands, [{ deviceType: 'temperature', mainSwitch: 'on', targets: [{ targetHigh: '28.5', reaction: { switch: 'off' } }, { targetLow: '20', reaction: { switch: 'on' } }] }]);
      await c.event((e) => e.instance_id === 3 && e.attr.attribute === 'target_high' && e.attr.val === 28.5);
      const wrongOrder = await c.ask({ id: 4, service: 'set_attributes', identity: '1000aa0015', service_data: { attributes: [{ instance_id: 3, attribute: 'target_high', val: 10 }] } });
      assert.deepEqual([wrongOrder.error_code, wrongOrder.error], [3, 'target_high (10) must be above target_low (20)']);
      dev.setReading({ temperature: 26.3 });
      const ev = await c.event((e) => e.attr.attribute === 'temperature');
      assert.deepEqual(ev, { type: 'attribute_change', identity: '1000aa0015', instance_id: 2, attr: { attribute: 'temperature', val: 26.3, val_type: 'float32' } });
    });

    it('RF bridge: one instance per learned channel; transmit sends the code; a received code is an event', async () => {
      env = await startHub();
      const dev = await env.sim('1000aa0028', 'rfbridge');
      const c = await env.client();
      const g = await c.ask({ id: 1, service: 'get_attributes', identity: '1000aa0028' });
      assert.deepEqual(g.result.device.instances.slice(1), [
        { type: 'rf_button', instance_id: 1, attrs: [{ attribute: 'transmit', val: false, val_type: 'bool', permission: 0 }, { attribute: 'triggered_at', val: null, val_type: 'string', permission: 1 }] },
        { type: 'rf_button', instance_id: 2, attrs: [{ attribute: 'transmit', val: false, val_type: 'bool', permission: 0 }, { attribute: 'triggered_at', val: null, val_type: 'string', permission: 1 }] },
      ]);
      const r = await c.ask({ id: 2, service: 'set_attributes', identity: '1000aa0028', service_data: { attributes: [{ instance_id: 2, attribute: 'transmit', val: true }] } });
      assert.equal(r.success, true, JSON.stringify(r));
      await waitFor(() => dev.transmitted.length === 1);
      assert.equal(dev.transmitted[0].rfChl, 1);
      const no = await c.ask({ id: 3, service: 'set_attributes', identity: '1000aa0028', service_data: { attributes: [{ instance_id: 1, attribute: 'transmit', val: false }] } });
      assert.equal(no.error_code, 3);
      assert.match(no.error, /set to true/);
      assert.ok(dev.triggerRf(0));
      const ev = await c.event((e) => e.attr.attribute === 'triggered_at');
      assert.equal(ev.instance_id, 1);
      assert.equal(typeof ev.attr.val, 'string');
      assert.ok(dev.triggerRf(0), 'the same channel again');
      await c.waitFrame(() => (c.events.filter((e) => e.attr.attribute === 'triggered_at').length === 2 ? true : undefined));
    });

    it('online and offline are attribute_change events of the info instance; one broadcast per change for all clients', async () => {
      env = await startHub();
      const a = await env.client();
      const b = await env.client();
      const dev = await env.sim('1000aa0001', 'basic');
      const online = await a.event((e) => e.attr.attribute === 'online' && e.attr.val === true);
      assert.deepEqual(online, { type: 'attribute_change', identity: '1000aa0001', instance_id: 0, attr: { attribute: 'online', val: true, val_type: 'bool' } });
      await b.event((e) => e.attr.attribute === 'online');
      const before = env.broadcasts;
      await dev.stop();
      await a.event((e) => e.attr.attribute === 'online' && e.attr.val === false);
      await b.event((e) => e.attr.attribute === 'online' && e.attr.val === false);
      assert.equal(env.broadcasts - before, 1, 'serialised and broadcast once for both clients');
    });
  });

  describe('errors: always an answer with success:false and a clear error', () => {
    let c;
    beforeEach(async () => {
      // long enough for a device's answer on a busy machine; only the no-ack case waits it out
      env = await startHub({ cloud: { commandTimeoutMs: 2000 } });
      c = await env.client();
    });
    const set = (identity, attributes, id = 9) => ({ id, service: 'set_attributes', identity, service_data: { attributes } });

    it('unknown service, unknown device, instance and attribute', async () => {
      await env.sim('1000aa0001', 'basic');
      assert.deepEqual(await c.ask({ id: 1, service: 'update_thing_model', identity: '1000aa0001' }), {
        id: 1, type: 'response', success: false, error: 'unknown service "update_thing_model": this hub offers discover, get_attributes, set_attributes, check_update, ota', error_code: 12,
      });
      assert.deepEqual(await c.ask({ id: 2, service: 'get_attributes', identity: '1000ffffff' }), { id: 2, type: 'response', success: false, error: 'device "1000ffffff" is not known to this hub', error_code: 5 });
      for (const service of ['set_attributes', 'check_update', 'ota']) {
        assert.equal((await c.ask({ id: 3, service, identity: 'nope', service_data: { attributes: [{ instance_id: 1, attribute: 'power', val: 'on' }] } })).error_code, 5, service);
      }
      assert.deepEqual(await c.ask(set('1000aa0001', [{ instance_id: 7, attribute: 'power', val: 'on' }], 4)), { id: 4, type: 'response', success: false, error: 'device 1000aa0001 has no instance 7', error_code: 5 });
      assert.deepEqual(await c.ask(set('1000aa0001', [{ instance_id: 1, attribute: 'brightness', val: 5 }], 5)), { id: 5, type: 'response', success: false, error: 'instance 1 (switch) of device 1000aa0001 has no attribute "brightness"', error_code: 5 });
      assert.deepEqual(await c.ask(set('1000aa0001', [{ instance_id: 0, attribute: 'name', val: 'x' }], 6)), { id: 6, type: 'response', success: false, error: 'attribute "name" of instance 0 (info) is read-only', error_code: 7 });
    });

    it('malformed requests: not JSON, not an object, no id, bad id, no service, no identity, bad service_data, bad values', async () => {
      await env.sim('1000aa0001', 'basic');
      const n = c.texts.length;
      c.send('{"id": 1, "service": ');
      assert.deepEqual(JSON.parse(await c.rawAfter(n)), { id: null, type: 'response', success: false, error: 'malformed request: unexpected end of input at position 21', error_code: 3 });
      const cases = [
        ['[1,2]', null, 'malformed request: a request is a JSON object, not an array'],
        ['{"service":"discover"}', null, 'malformed request: "id" is required'],
        ['{"id":"abc","service":"discover"}', 'abc', 'malformed request: "id" must be an integer (64-bit), not string "abc"'],
        ['{"id":1.5,"service":"discover"}', 1.5, 'malformed request: "id" must be an integer (64-bit), not number 1.5'],
        ['{"id":3}', 3, 'malformed request: "service" is required'],
        ['{"id":4,"service":7}', 4, 'malformed request: "service" must be a string, not number 7'],
        ['{"id":5,"service":"get_attributes"}', 5, '"identity" is required for get_attributes'],
        ['{"id":6,"service":"get_attributes","identity":1000}', 6, '"identity" must be a string, not number 1000'],
        ['{"id":7,"service":"set_attributes","identity":"1000aa0001"}', 7, '"service_data" must be an object with "attributes", not nothing'],
        ['{"id":8,"service":"set_attributes","identity":"1000aa0001","service_data":{"attributes":[]}}', 8, '"service_data.attributes" must be a non-empty array of {instance_id, attribute, val}'],
        ['{"id":9,"service":"set_attributes","identity":"1000aa0001","service_data":{"attributes":[{"instance_id":1,"attribute":"power","val":true}]}}', 9, 'attributes[0]: "power" is a string, not boolean true'],
        ['{"id":10,"service":"set_attributes","identity":"1000aa0001","service_data":{"attributes":[{"instance_id":1,"attribute":"power","val":"dim"}]}}', 10, 'attributes[0]: "power" must be one of "on", "off", "toggle", not string "dim"'],
        ['{"id":11,"service":"set_attributes","identity":"1000aa0001","service_data":{"attributes":[{"instance_id":"1","attribute":"power","val":"on"}]}}', 11, 'attributes[0].instance_id must be an integer, not string "1"'],
        ['{"id":12,"service":"set_attributes","identity":"1000aa0001","service_data":{"attributes":[{"instance_id":1,"attribute":"power"}]}}', 12, 'attributes[0].val is required'],
        ['{"id":13,"__proto__":{"x":1}}', null, 'malformed request: key "__proto__" is not allowed at position 20'],
      ];
      for (const [text, id, error] of cases) {
        const m = c.texts.length;
        c.send(text);
        const r = JSON.parse(await c.rawAfter(m));
        assert.deepEqual(r, { id, type: 'response', success: false, error, error_code: 3 }, text);
      }
      // an id beyond int64 is refused but still echoed exactly
      const m = c.texts.length;
      c.send('{"id":99999999999999999999,"service":"discover"}');
      assert.equal(await c.rawAfter(m), '{"id":99999999999999999999,"type":"response","success":false,"error":"malformed request: \\"id\\" must be an integer (64-bit), not the integer 99999999999999999999 (out of range)","error_code":3}');
    });

    it('device offline (14), no acknowledgement (4), device error code (2)', async () => {
      const dev = await env.sim('1000aa0001', 'basic');
      let verdict = { noAck: true };
      const dev2 = await env.sim('1000aa0002', 'basic', { onCommand: () => verdict });
      const timeout = await c.ask(set('1000aa0002', [{ instance_id: 1, attribute: 'power', val: 'on' }], 1), 10000);
      assert.deepEqual(timeout, { id: 1, type: 'response', success: false, error: 'device 1000aa0002 did not acknowledge within 2 s', error_code: 4 });
      verdict = { error: 500 };
      const refused = await c.ask(set('1000aa0002', [{ instance_id: 1, attribute: 'power', val: 'on' }], 2));
      assert.deepEqual(refused, { id: 2, type: 'response', success: false, error: 'device 1000aa0002 refused the command (error 500)', error_code: 2 });
      await dev.stop();
      await waitFor(() => !env.cloud.device('1000aa0001').online);
      const offline = await c.ask(set('1000aa0001', [{ instance_id: 1, attribute: 'power', val: 'on' }], 3));
      assert.deepEqual(offline, { id: 3, type: 'response', success: false, error: 'device 1000aa0001 is offline', error_code: 14 });
      assert.ok(dev2);
    });

    it('ids are echoed exactly: 19 digits, negative, zero; keys match case-insensitively; "ping" gets "pong"', async () => {
      await env.sim('1000aa0001', 'basic');
      for (const id of ['1655797023123456789', '-9223372036854775808', '0', '9007199254740993']) {
        const m = c.texts.length;
        c.send(`{"id":${id},"domain":"zhiting","service":"get_attributes","identity":"1000aa0001"}`);
        const text = await c.rawAfter(m);
        assert.ok(text.startsWith(`{"id":${id},"type":"response","result":{"identity":"1000aa0001"`), text.slice(0, 80));
      }
      const m = c.texts.length;
      c.send('{"ID":77,"Service":"discover"}');
      assert.ok((await c.rawAfter(m)).startsWith('{"id":77,"type":"","result":{"device":{'));
      const p = c.texts.length;
      c.send('ping');
      assert.equal(await c.rawAfter(p), 'pong');
    });

    it('too many requests waiting on devices (8 per connection) and the rate limit answer with error_code 8', async () => {
      await env.stop();
      env = await startHub({ cloud: { commandTimeoutMs: 800 }, gateway: { maxInFlight: 2, rate: { burst: 12, perSecond: 1, closeAfterMs: 10000 } } });
      c = await env.client();
      await env.sim('1000aa0002', 'basic', { onCommand: () => ({ noAck: true }) });
      for (let id = 1; id <= 3; id++) c.send(set('1000aa0002', [{ instance_id: 1, attribute: 'power', val: 'on' }], id));
      const third = await c.waitFrame(() => c.responses(3)[0]);
      assert.deepEqual([third.error_code, third.error], [8, 'too many requests in progress on this connection (at most 2): wait for the answers']);
      for (let id = 10; id < 30; id++) c.send({ id, service: 'discover' });
      const limited = await c.waitFrame(() => c.texts.map((t) => JSON.parse(t)).find((r) => r.error_code === 8 && r.id >= 10));
      assert.match(limited.error, /rate limit exceeded/);
    });
  });

  describe('virtual devices (defined by the flow)', () => {
    const lamp = {
      identity: 'zigbee-lamp-1',
      model: 'TS0505B',
      manufacturer: 'Tuya',
      name: 'Desk lamp',
      instances: [{ instance_id: 1, type: 'light_bulb', attributes: [
        { attribute: 'power', val_type: 'string', permission: 0, val: 'off', values: ['on', 'off', 'toggle'] },
        { attribute: 'brightness', val_type: 'int', permission: 0, val: 55, min: 1, max: 100 },
        { attribute: 'color_temp', val_type: 'int', permission: 1, val: 3500 },
      ] }],
    };

    it('discover, get_attributes and events serve them like Sonoff devices', async () => {
      const sets = [];
      env = await startHub({ hub: { onVirtualSet: (r) => sets.push(r) } });
      const c = await env.client();
      env.hub.defineVirtual(lamp);
      await c.event((e) => e.identity === 'zigbee-lamp-1' && e.attr.attribute === 'brightness');
      const d = await c.ask({ id: 1, service: 'discover' });
      assert.deepEqual(d.result.device, { name: 'Desk lamp', identity: 'zigbee-lamp-1', model: 'TS0505B', manufacturer: 'Tuya', plugin_id: 'node-red' });
      const g = await c.ask({ id: 2, service: 'get_attributes', identity: 'zigbee-lamp-1' });
      assert.deepEqual(g.result, { identity: 'zigbee-lamp-1', device: { name: 'Desk lamp', identity: 'zigbee-lamp-1', instances: [{ type: 'light_bulb', instance_id: 1, attrs: [
        { attribute: 'power', val: 'off', val_type: 'string', permission: 0 },
        { attribute: 'brightness', val: 55, val_type: 'int', permission: 0, min: 1, max: 100 },
        { attribute: 'color_temp', val: 3500, val_type: 'int', permission: 1 },
      ] }], ota_support: false } });
      assert.equal(env.hub.updateVirtual('zigbee-lamp-1', [{ instance_id: 1, attribute: 'color_temp', val: 4000 }]), 1);
      assert.deepEqual(await c.event((e) => e.attr.attribute === 'color_temp' && e.attr.val === 4000), { type: 'attribute_change', identity: 'zigbee-lamp-1', instance_id: 1, attr: { attribute: 'color_temp', val: 4000, val_type: 'int' } });
      assert.equal(env.hub.updateVirtual('zigbee-lamp-1', [{ instance_id: 1, attribute: 'color_temp', val: 4000 }]), 0, 'no change, no event');
      assert.throws(() => env.hub.updateVirtual('zigbee-lamp-1', [{ instance_id: 1, attribute: 'brightness', val: 'x' }]), /"brightness" is an int/);
      assert.equal((await c.ask({ id: 3, service: 'set_attributes', identity: 'zigbee-lamp-1', service_data: { attributes: [{ instance_id: 1, attribute: 'color_temp', val: 1 }] } })).error_code, 7);
      assert.equal((await c.ask({ id: 4, service: 'set_attributes', identity: 'zigbee-lamp-1', service_data: { attributes: [{ instance_id: 1, attribute: 'brightness', val: 500 }] } })).error, 'attributes[0]: "brightness" must be at most 100, not 500');
      assert.equal((await c.ask({ id: 5, service: 'ota', identity: 'zigbee-lamp-1' })).error_code, 12);
      assert.deepEqual((await c.ask({ id: 6, service: 'check_update', identity: 'zigbee-lamp-1' })).result.update_available, false);
      assert.equal(sets.length, 0);
      env.hub.removeVirtual('zigbee-lamp-1');
      assert.equal((await c.ask({ id: 7, service: 'get_attributes', identity: 'zigbee-lamp-1' })).error_code, 5);
    });

    it('set requests go to the flow: an answer, a confirming update, or the timeout decides', async () => {
      const sets = [];
      // the flow's answers below must come before this timeout, also on a busy machine
      env = await startHub({ hub: { onVirtualSet: (r) => sets.push(r), virtualAnswerMs: 2000 } });
      const c = await env.client();
      env.hub.defineVirtual(lamp);
      const req = (id, attributes) => ({ id, service: 'set_attributes', identity: 'zigbee-lamp-1', service_data: { attributes } });
      // 1. explicit answer: success, values taken and broadcast
      c.send(req(1, [{ instance_id: 1, attribute: 'power', val: 'on' }, { instance_id: 1, attribute: 'brightness', val: 80 }]));
      await waitFor(() => sets.length === 1);
      assert.deepEqual(sets[0], { set_id: sets[0].set_id, identity: 'zigbee-lamp-1', attributes: [{ instance_id: 1, attribute: 'power', val: 'on' }, { instance_id: 1, attribute: 'brightness', val: 80 }] });
      assert.equal(env.hub.answerVirtual(sets[0].set_id, true), true);
      assert.deepEqual(await c.waitFrame(() => c.responses(1)[0]), { id: 1, type: 'response', success: true });
      await c.event((e) => e.attr.attribute === 'brightness' && e.attr.val === 80);
      // 2. refusal from the flow
      c.send(req(2, [{ instance_id: 1, attribute: 'power', val: 'off' }]));
      await waitFor(() => sets.length === 2);
      env.hub.answerVirtual(sets[1].set_id, false, 'lamp unreachable');
      assert.deepEqual(await c.waitFrame(() => c.responses(2)[0]), { id: 2, type: 'response', success: false, error: 'lamp unreachable', error_code: 2 });
      assert.equal(env.hub.answerVirtual(sets[1].set_id, true), false, 'answered once');
      // 3. the flow reports the new value: that confirms the request
      c.send(req(3, [{ instance_id: 1, attribute: 'power', val: 'off' }]));
      await waitFor(() => sets.length === 3);
      env.hub.updateVirtual('zigbee-lamp-1', [{ instance_id: 1, attribute: 'power', val: 'off' }]);
      assert.deepEqual(await c.waitFrame(() => c.responses(3)[0]), { id: 3, type: 'response', success: true });
      // 4. no answer: success after the timeout, value taken
      const t0 = Date.now();
      const r4 = await c.ask(req(4, [{ instance_id: 1, attribute: 'brightness', val: 10 }]), 10000);
      assert.equal(r4.success, true);
      assert.ok(Date.now() - t0 >= 1900, 'answered by the timeout');
      await c.event((e) => e.attr.attribute === 'brightness' && e.attr.val === 10);
      // 5. removed while waiting: the request fails
      c.send(req(5, [{ instance_id: 1, attribute: 'power', val: 'on' }]));
      await waitFor(() => sets.length === 5);
      env.hub.removeVirtual('zigbee-lamp-1');
      const r5 = await c.waitFrame(() => c.responses(5)[0]);
      assert.deepEqual([r5.error_code, r5.error], [14, 'set request for zigbee-lamp-1 failed: the device was removed by the flow']);
      assert.equal(env.hub.pendingCount, 0);
    });

    it('definitions are validated, and may not take a Sonoff identity', async () => {
      env = await startHub();
      await env.sim('1000aa0001', 'basic');
      const bad = (def, re) => assert.throws(() => env.hub.defineVirtual(def), re);
      bad({ ...lamp, identity: '1000aa0001' }, /is a device of the coolkit server/);
      bad({ ...lamp, identity: '' }, /identity must be a non-empty string/);
      bad({ ...lamp, instances: [] }, /instances must be a non-empty array/);
      bad({ ...lamp, instances: [{ instance_id: 1, type: 'x', attributes: [{ attribute: 'a', val_type: 'float', permission: 0 }] }] }, /val_type must be one of int, bool, string, float32/);
      bad({ ...lamp, instances: [{ instance_id: 1, type: 'x', attributes: [{ attribute: 'a', val_type: 'int', permission: 5 }] }] }, /permission must be 0/);
      bad({ ...lamp, instances: [{ instance_id: 1, type: 'x', attributes: [{ attribute: 'a', val_type: 'int', val: 'z' }] }] }, /"a" is an int/);
      bad({ ...lamp, instances: [lamp.instances[0], lamp.instances[0]] }, /instance_id 1 is used twice/);
      bad('lamp', /device must be an object/);
    });
  });
});
