'use strict';
// Pure parts of the MQTT backbone: topic tree, placement, set/online payload parsing, and Home
// Assistant discovery configs checked against a schema written from HA's documented options.
const assert = require('node:assert/strict');
const { Topics, normalisePrefix, isValidPrefix, sanitiseInstanceId } = require('../../dist/src/mqtt/topics');
const { chooseInstance, RecentAssignments } = require('../../dist/src/mqtt/placement');
const { parseSetMessage, setPayloadToParams, parseOnline, parseState, parseInstance, parseResult, buildState, thermostatSummary, parseCapabilities } = require('../../dist/src/mqtt/payloads');
const { Admission, factoryKeyHash } = require('../../dist/src/cloud/admission');
const { discoveryMessages } = require('../../dist/src/mqtt/discovery');
const { capabilitiesOf } = require('../../dist/src/protocol/capabilities');
const { validateDiscovery } = require('../helpers/ha-schema');

describe('mqtt topics', () => {
  it('builds and parses the tree under the default and a nested prefix', () => {
    const t = new Topics();
    assert.equal(t.prefix, 'coolkit');
    assert.equal(t.state('1000aa0001'), 'coolkit/1000aa0001/state');
    assert.equal(t.instance('a'), 'coolkit/_instances/a');
    assert.deepEqual(t.parse('coolkit/1000aa0001/set'), { type: 'device', deviceid: '1000aa0001', kind: 'set' });
    assert.deepEqual(t.parse('coolkit/_instances/node-1'), { type: 'instance', instanceId: 'node-1' });
    assert.deepEqual(t.parse('coolkit/_reply/node-1'), { type: 'reply', instanceId: 'node-1' });
    const n = new Topics('home/sonoff/');
    assert.equal(n.online('1000aa0001'), 'home/sonoff/1000aa0001/online');
    assert.deepEqual(n.parse('home/sonoff/1000aa0001/state'), { type: 'device', deviceid: '1000aa0001', kind: 'state' });
    assert.ok(n.subscriptions('x').includes('home/sonoff/+/set'));
  });

  it('rejects foreign and malformed topics', () => {
    const t = new Topics();
    for (const bad of ['other/1000aa0001/state', 'coolkit/1000AA0001/state', 'coolkit/1000aa001/state', 'coolkit/1000aa0001/nope', 'coolkit/1000aa0001/state/x', 'coolkit/_instances/bad id', 'coolkit']) {
      assert.equal(t.parse(bad), undefined, bad);
    }
  });

  it('normalises prefixes and instance ids', () => {
    assert.equal(normalisePrefix('a/#'), 'coolkit');
    assert.equal(normalisePrefix('a//b'), 'coolkit');
    assert.equal(normalisePrefix(' /x/y/ '), 'x/y');
    assert.equal(isValidPrefix('x/y'), true);
    assert.equal(isValidPrefix('x/+'), false);
    assert.equal(sanitiseInstanceId(' my host #1 '), 'my-host--1');
  });
});

describe('mqtt placement', () => {
  const inst = (id, devices, online = true) => ({ id, online, host: '127.0.0.1', port: 1000, devices, ts: 0 });
  it('keeps a device on the live instance it was on', () => {
    assert.equal(chooseInstance({ deviceid: 'x', lastOwner: 'b', instances: [inst('a', 0), inst('b', 50)] }).id, 'b');
  });
  it('moves a device off a dead instance to the least loaded live one', () => {
    assert.equal(chooseInstance({ deviceid: 'x', lastOwner: 'c', instances: [inst('a', 5), inst('b', 3), inst('c', 0, false)] }).id, 'b');
  });
  it('breaks ties by id and counts recent assignments, so a herd is spread', () => {
    const recent = new RecentAssignments(30_000);
    const instances = [inst('b', 0), inst('a', 0), inst('c', 0)];
    const picks = [];
    for (let i = 0; i < 9; i++) {
      const chosen = chooseInstance({ deviceid: `d${i}`, instances, pending: recent.pending(1000) });
      recent.note(`d${i}`, chosen.id, 1000);
      picks.push(chosen.id);
    }
    assert.deepEqual(picks.slice(0, 3), ['a', 'b', 'c']);
    for (const id of ['a', 'b', 'c']) assert.equal(picks.filter((p) => p === id).length, 3);
    assert.equal(recent.pending(40_000).size, 0, 'assignments expire');
    recent.note('z', 'a', 0);
    recent.arrived('z');
    assert.equal(recent.size, 0);
  });
  it('answers nothing when no instance is live', () => {
    assert.equal(chooseInstance({ deviceid: 'x', instances: [inst('a', 0, false)] }), undefined);
  });
});

describe('mqtt payloads', () => {
  it('parses plain, JSON and envelope commands', () => {
    assert.deepEqual(parseSetMessage(Buffer.from('ON')), { payload: 'on' });
    assert.deepEqual(parseSetMessage(Buffer.from('{"switch":"off"}')), { payload: { switch: 'off' } });
    assert.deepEqual(parseSetMessage('{"payload":{"outlet":1,"switch":"on"},"id":7,"replyTo":"me/r","timeout":3000}'), { payload: { outlet: 1, switch: 'on' }, id: '7', replyTo: 'me/r', timeoutMs: 3000 });
  });
  it('gives a reason for malformed commands instead of throwing', () => {
    assert.match(parseSetMessage(Buffer.from('{"switch":')).error, /malformed JSON/);
    assert.match(parseSetMessage(Buffer.alloc(0)).error, /empty/);
    assert.match(parseSetMessage(Buffer.alloc(20000, 'a')).error, /larger/);
    assert.match(parseSetMessage('{"payload":"on","replyTo":"a/#"}').error, /replyTo/);
    assert.match(parseSetMessage('{"payload":"on","timeout":"soon"}').error, /timeout/);
    assert.match(parseSetMessage('{"payload":"on","id":{}}').error, /id/);
  });
  it('turns set payloads into params, including thermostat modes completed from the state', () => {
    const basic = capabilitiesOf('ITA-GZ1-GL', {});
    assert.deepEqual(setPayloadToParams('toggle', { switch: 'on' }, basic), { switch: 'off' });
    assert.throws(() => setPayloadToParams(42, {}, basic), /not a command|payload/);
    const th = capabilitiesOf('PSA-BHA-GL', {});
    const state = { switch: 'off', sensorType: 'AM2301', currentTemperature: '20', currentHumidity: '50', deviceType: 'normal', mainSwitch: 'off' };
    const heat = setPayloadToParams({ thermostat: { mode: 'heat', setpoint: 22 } }, state, th);
    assert.equal(heat.deviceType, 'temperature');
    assert.equal(heat.mainSwitch, 'on');
    const setpointOnly = setPayloadToParams({ thermostat: { setpoint: 25 } }, { ...state, ...heat }, th);
    assert.deepEqual(thermostatSummary({ ...state, ...setpointOnly }), { mode: 'heat', setpoint: 25 });
    assert.deepEqual(setPayloadToParams({ thermostat: { mode: 'off' } }, state, th), { deviceType: 'normal', mainSwitch: 'off' });
    assert.throws(() => setPayloadToParams({ thermostat: { mode: 'heat' } }, {}, basic), /no thermostat/);
  });
  it('parses retained payloads strictly', () => {
    assert.deepEqual(parseOnline(Buffer.from('{"online":true,"instance":"a","ts":1}')), { online: true, instance: 'a', reason: undefined, ts: 1 });
    assert.equal(parseOnline(Buffer.from('{"online":"yes","instance":"a"}')), undefined);
    assert.equal(parseOnline(Buffer.from('nope')), undefined);
    assert.equal(parseState(Buffer.from('{"params":[],"instance":"a"}')), undefined);
    assert.equal(parseInstance(Buffer.from('{"online":true,"host":"h","port":1,"devices":3}'), 'x').devices, 3);
    assert.equal(parseInstance(Buffer.from('{}'), 'x'), undefined);
    assert.equal(parseResult(Buffer.from('{"ok":true,"error":0,"id":"1"}')).id, '1');
    assert.equal(parseResult(Buffer.from('{"ok":1}')), undefined);
  });
  it('adds the thermostat summary to TH state', () => {
    const caps = capabilitiesOf('PSA-BHA-GL', {});
    const s = buildState({ deviceType: 'temperature', mainSwitch: 'on', targets: [{ targetHigh: '28', reaction: { switch: 'off' } }, { targetLow: '28', reaction: { switch: 'on' } }] }, {}, {}, caps, 'a', 5);
    assert.deepEqual(s.thermostat, { mode: 'heat', setpoint: 28 });
    assert.equal(buildState({ switch: 'on' }, {}, {}, capabilitiesOf('ITA-GZ1-GL', {}), 'a').thermostat, undefined);
  });
});

describe('mqtt: who may connect on another instance', () => {
  const KEY = 'f0000000-0000-4000-8000-000000000001';
  it('the capabilities message carries a hash of the factory key, never the key', () => {
    const hash = factoryKeyHash('1000aa0001', KEY);
    assert.match(hash, /^[0-9a-f]{64}$/);
    assert.notEqual(hash, factoryKeyHash('1000aa0002', KEY), 'bound to the deviceid');
    const caps = capabilitiesOf('ITA-GZ1-GL', {});
    const parsed = parseCapabilities(Buffer.from(JSON.stringify({ model: 'ITA-GZ1-GL', romVersion: '1', capabilities: caps, instance: 'a', ts: 1, keyHash: hash })));
    assert.equal(parsed.keyHash, hash);
    assert.equal(parseCapabilities(Buffer.from(JSON.stringify({ capabilities: caps, instance: 'a', keyHash: KEY }))).keyHash, undefined, 'only a sha256 hex is taken');
  });

  it('a device known only by its key hash is refused with another key, accepted with its own', () => {
    const admission = new Admission('allowlist');
    const record = { deviceid: '1000aa0001', factoryApikey: '', apikey: 'x', model: '', romVersion: '', params: {}, online: false, lastSeen: 0, firstSeen: 0, factoryKeyHash: factoryKeyHash('1000aa0001', KEY) };
    assert.equal(admission.decide(record, '1000aa0001', 'f0000000-0000-4000-8000-00000000dead')?.code, 403);
    assert.equal(admission.decide(record, '1000aa0001', KEY), undefined);
    assert.equal(new Admission('open').decide(record, '1000aa0001', 'f0000000-0000-4000-8000-00000000dead'), undefined, 'open mode admits anyone, as before');
  });
});

describe('Home Assistant discovery', () => {
  const topics = new Topics();
  const devices = {
    basic: { deviceid: '1000aa0001', model: 'ITA-GZ1-GL', romVersion: '1.5.5', capabilities: capabilitiesOf('ITA-GZ1-GL', {}) },
    fourCh: { deviceid: '1000aa0004', model: 'PSF-B04-GL', romVersion: '2.0.2', name: 'Hall', capabilities: capabilitiesOf('PSF-B04-GL', {}) },
    th16: { deviceid: '1000aa0015', model: 'PSA-BHA-GL', romVersion: '2.0.4', capabilities: capabilitiesOf('PSA-BHA-GL', {}), temperatureRange: [-40, 80] },
    pow: { deviceid: '1000aa0032', model: 'POWR2', romVersion: '2.0.4', capabilities: capabilitiesOf(undefined, { switch: 'on', power: '1.0', voltage: '230', current: '0.1', alarmType: 'pvc' }) },
    rf: { deviceid: '1000aa0028', model: 'RFB', romVersion: '1.0', capabilities: capabilitiesOf(undefined, { rfList: [] }) },
  };

  it('every config validates against the documented schema', () => {
    for (const [name, d] of Object.entries(devices)) {
      for (const m of discoveryMessages(d, topics, { swVersion: '0.1.0' })) {
        assert.deepEqual(validateDiscovery(m.topic, m.config), [], `${name} ${m.topic}`);
      }
    }
  });

  it('makes the entities each family needs, with unique ids and one device block', () => {
    const kinds = (d) => discoveryMessages(d, topics).map((m) => `${m.component}:${m.objectId}`).sort();
    assert.deepEqual(kinds(devices.basic), ['sensor:rssi', 'switch:switch']);
    assert.deepEqual(kinds(devices.fourCh), ['sensor:rssi', 'switch:outlet_1', 'switch:outlet_2', 'switch:outlet_3', 'switch:outlet_4']);
    assert.deepEqual(kinds(devices.th16), ['climate:thermostat', 'sensor:humidity', 'sensor:rssi', 'sensor:temperature', 'switch:switch']);
    assert.deepEqual(kinds(devices.pow), ['sensor:current', 'sensor:power', 'sensor:rssi', 'sensor:voltage', 'switch:switch']);
    assert.deepEqual(kinds(devices.rf), ['sensor:rssi']);
    const all = Object.values(devices).flatMap((d) => discoveryMessages(d, topics));
    assert.equal(new Set(all.map((m) => m.config.unique_id)).size, all.length);
    const outlet = discoveryMessages(devices.fourCh, topics, { discoveryPrefix: 'ha' }).find((m) => m.objectId === 'outlet_2');
    assert.equal(outlet.topic, 'ha/switch/coolkit_1000aa0004/outlet_2/config');
    assert.deepEqual(JSON.parse(outlet.config.payload_on), { outlet: 1, switch: 'on' });
    assert.equal(outlet.config.device.name, 'Hall');
    assert.equal(outlet.config.command_topic, 'coolkit/1000aa0004/set');
    assert.equal(outlet.config.availability[0].topic, 'coolkit/1000aa0004/online');
    const climate = discoveryMessages(devices.th16, topics).find((m) => m.component === 'climate');
    assert.deepEqual([climate.config.min_temp, climate.config.max_temp], [-40, 80]);
  });

  it('the schema catches what Home Assistant would reject', () => {
    const good = discoveryMessages(devices.basic, topics).find((m) => m.component === 'switch');
    assert.notDeepEqual(validateDiscovery(good.topic, { ...good.config, command_topic: undefined }), []);
    assert.notDeepEqual(validateDiscovery(good.topic, { ...good.config, made_up_key: 1 }), []);
    assert.notDeepEqual(validateDiscovery(good.topic, { ...good.config, qos: '1' }), []);
    assert.notDeepEqual(validateDiscovery('homeassistant/switch/bad id/config', good.config), []);
  });
});
