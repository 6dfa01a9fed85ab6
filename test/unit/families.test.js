'use strict';
// Every common Sonoff family: capabilities, normalised readings, and commands checked against
// what the device can do (coolkit-uiid-protocol.md, coolkit-protocol.md §3.12-3.16).
const assert = require('node:assert/strict');
const p = require('../../dist/src/protocol');

const basicCaps = p.capabilitiesOf('ITA-GZ1-GL', {});
const fourCaps = p.capabilitiesOf('PSF-B04-GL', {});
const thCaps = p.capabilitiesOf('PSA-BHA-GL', {});
const powCaps = p.capabilitiesOf('SIM-POW-R2', { switch: 'on', power: '12.00', voltage: '230.00', current: '0.05' });
const rfCaps = p.capabilitiesOf('SIM-RF-BRIDGE', { rfList: [{ rfChl: 0, rfVal: 'AA' }, { rfChl: 1, rfVal: 'BB' }] });
const rfState = { rfList: [{ rfChl: 0, rfVal: 'AA' }, { rfChl: 1, rfVal: 'BB' }] };
const fourState = { switches: [0, 1, 2, 3].map((outlet) => ({ switch: 'off', outlet })) };

function rejects(fn, why) {
  assert.throws(fn, (err) => err.code === 400 && why.test(err.message), String(why));
}

describe('families: capabilities', () => {
  it('knows models from captures and UIIDs', () => {
    assert.equal(basicCaps.family, 'switch');
    assert.equal(basicCaps.uiid, 1);
    assert.equal(fourCaps.family, 'multi');
    assert.equal(fourCaps.channels, 4);
    assert.equal(thCaps.family, 'th');
    assert.ok(thCaps.thermostat && thCaps.temperature && thCaps.humidity);
    for (const [uiid, family, channels] of [[2, 'multi', 2], [3, 'multi', 3], [7, 'multi', 2], [8, 'multi', 3], [9, 'multi', 4], [6, 'switch', 1], [14, 'switch', 1], [5, 'pow', 1], [32, 'pow', 1], [28, 'rf', 0]]) {
      const c = p.capabilitiesOf(undefined, {}, uiid);
      assert.equal(c.family, family, `uiid ${uiid}`);
      assert.equal(c.channels, channels, `uiid ${uiid}`);
    }
  });

  it('recognises unknown models from their params', () => {
    assert.equal(powCaps.family, 'pow');
    assert.ok(powCaps.metering);
    assert.equal(p.capabilitiesOf('X', { switch: 'on', power: '1', alarmType: 'pcv' }).uiid, 32);
    assert.equal(rfCaps.family, 'rf');
    assert.equal(p.capabilitiesOf('X', { cmd: 'trigger', rfTrig3: '2020-09-21T02:34:14.000Z' }).family, 'rf');
    assert.equal(p.capabilitiesOf('X', { currentTemperature: '22', currentHumidity: '50' }).family, 'th');
    const dual = p.capabilitiesOf('X', { switches: [{ switch: 'on', outlet: 0 }, { switch: 'off', outlet: 1 }] });
    assert.equal(dual.family, 'multi');
    assert.equal(dual.channels, 2);
    assert.equal(p.capabilitiesOf('X', { switch: 'on' }).family, 'switch');
    assert.equal(p.capabilitiesOf('X', {}).family, 'unknown');
  });
});

describe('families: normalised readings', () => {
  it('turns strings, numbers and "unavailable" into numbers or null, never NaN', () => {
    const th = p.normaliseState({ switch: 'on', currentTemperature: '22.5', currentHumidity: 'unavailable', sensorType: 'DS18B20' }, thCaps);
    assert.equal(th.temperature, 22.5);
    assert.equal(th.humidity, null);
    assert.equal(th.switch, true);
    const am = p.normaliseState({ currentTemperature: 21, currentHumidity: '45' }, thCaps);
    assert.equal(am.temperature, 21);
    assert.equal(am.humidity, 45);
    // DHT11 reads 0..50 °C: 255 is a glitch.
    assert.equal(p.normaliseState({ currentTemperature: '255', sensorType: 'DHT11' }, thCaps).temperature, null);
    assert.equal(p.normaliseState({ currentTemperature: 'NaN' }, thCaps).temperature, null);
    assert.equal(p.normaliseState({ currentTemperature: '' }, thCaps).temperature, null);
    assert.equal(p.normaliseState({}, thCaps).temperature, null);
    const pow = p.normaliseState({ switch: 'on', power: '1800.01', voltage: 247.86, current: '7.26' }, powCaps);
    assert.deepEqual([pow.power, pow.voltage, pow.current], [1800.01, 247.86, 7.26]);
    assert.equal(p.normaliseState({ power: '-5' }, powCaps).power, null);
    for (const v of Object.values(p.normaliseState({ power: 'x', voltage: null, current: {} }, powCaps))) assert.ok(v === null || typeof v === 'boolean' || Array.isArray(v));
  });

  it('gives per-outlet booleans for multi-channel devices', () => {
    const n = p.normaliseState({ switches: [{ switch: 'on', outlet: 0 }, { switch: 'off', outlet: 2 }] }, fourCaps);
    assert.deepEqual(n.outlets, [true, null, false, null]);
  });

  it('decodes hundredDaysKwhData to numbers, today first', () => {
    const hex = '190101' + '190301' + '000000'.repeat(98);
    const days = p.decodeHundredDaysKwh(hex);
    assert.equal(days.length, 100);
    assert.deepEqual(days.slice(0, 3), [25.11, 25.31, 0]);
    assert.equal(p.decodeHundredDaysKwh('zz'), undefined);
    assert.deepEqual(p.normaliseState({ hundredDaysKwhData: hex }, powCaps).dailyKwh.slice(0, 2), [25.11, 25.31]);
  });
});

describe('families: commands', () => {
  it('1-channel: switch, startup, inching with validated width, LED', () => {
    assert.deepEqual(p.payloadToParams({ startup: 'stay' }, {}, basicCaps), { startup: 'stay' });
    assert.deepEqual(p.payloadToParams({ pulse: 'on', pulseWidth: 1500 }, {}, basicCaps), { pulse: 'on', pulseWidth: 1500 });
    assert.deepEqual(p.payloadToParams({ sledOnline: 'off' }, {}, basicCaps), { sledOnline: 'off' });
    assert.deepEqual(p.payloadToParams({ outlet: 0, switch: 'on' }, {}, basicCaps), { switch: 'on' });
    rejects(() => p.payloadToParams({ pulse: 'on', pulseWidth: 1234 }, {}, basicCaps), /steps of 500/);
    rejects(() => p.payloadToParams({ pulse: 'on', pulseWidth: 400 }, {}, basicCaps), /500\.\.3600000/);
    rejects(() => p.payloadToParams({ pulse: 'on', pulseWidth: 3600500 }, {}, basicCaps), /pulseWidth/);
    rejects(() => p.payloadToParams({ pulse: 'on' }, {}, basicCaps), /needs a pulseWidth/);
    rejects(() => p.payloadToParams({ startup: 'keep' }, {}, basicCaps), /"on", "off" or "stay"/);
    rejects(() => p.payloadToParams({ switches: [{ switch: 'on', outlet: 0 }] }, {}, basicCaps), /one-channel switch cannot take "switches"/);
    rejects(() => p.payloadToParams({ uiActive: 60 }, {}, basicCaps), /does not meter/);
  });

  it('multi-channel: per-outlet switch, power-on state and inching; outlets checked', () => {
    assert.deepEqual(p.payloadToParams({ outlet: 3, switch: 'on' }, fourState, fourCaps), { switches: [{ switch: 'on', outlet: 3 }] });
    assert.deepEqual(p.payloadToParams({ outlet: 1, startup: 'on' }, fourState, fourCaps), { configure: [{ startup: 'on', outlet: 1 }] });
    assert.deepEqual(p.payloadToParams({ outlet: 2, pulse: 'on', pulseWidth: 2000 }, fourState, fourCaps), { pulses: [{ pulse: 'on', width: 2000, outlet: 2 }] });
    assert.deepEqual(p.payloadToParams('on', {}, fourCaps).switches.length, 4, 'all outlets from the capability table even before a report');
    rejects(() => p.payloadToParams({ outlet: 4, switch: 'on' }, fourState, fourCaps), /outlet 4 does not exist: this device has 4 channels/);
    rejects(() => p.payloadToParams({ switch: 'on', mainSwitch: 'on' }, fourState, fourCaps), /no thermostat/);
    rejects(() => p.payloadToParams({ startup: 'on' }, fourState, fourCaps), /multi-channel devices use/);
    rejects(() => p.payloadToParams({ switches: [{ switch: 'on', outlet: 7 }] }, fourState, fourCaps), /outlet 7 does not exist/);
  });

  it('power meters: uiActive, history and counters pass; relay works', () => {
    assert.deepEqual(p.payloadToParams({ uiActive: 60 }, {}, powCaps), { uiActive: 60 });
    assert.deepEqual(p.payloadToParams({ hundredDaysKwh: 'get' }, {}, powCaps), { hundredDaysKwh: 'get' });
    assert.deepEqual(p.payloadToParams('on', {}, powCaps), { switch: 'on' });
  });

  it('TH10/TH16: thermostat params pass through, only to devices with a thermostat', () => {
    const targets = [{ targetHigh: '28', reaction: { switch: 'off' } }, { targetLow: '28', reaction: { switch: 'on' } }];
    assert.deepEqual(p.payloadToParams({ deviceType: 'temperature', mainSwitch: 'on', targets }, {}, thCaps), { deviceType: 'temperature', mainSwitch: 'on', targets });
    rejects(() => p.payloadToParams({ targets }, {}, basicCaps), /no thermostat/);
  });

  it('RF bridge: transmit learned channels, capture and cancel learning; no relay', () => {
    assert.deepEqual(p.payloadToParams({ transmit: 1 }, rfState, rfCaps), { cmd: 'transmit', rfChl: 1 });
    assert.deepEqual(p.payloadToParams({ capture: 5 }, rfState, rfCaps), { cmd: 'capture', rfChl: 5 });
    assert.deepEqual(p.payloadToParams('captureCancel', rfState, rfCaps), { cmd: 'captureCancel' });
    assert.deepEqual(p.payloadToParams({ cmd: 'transmit', rfChl: 0 }, rfState, rfCaps), { cmd: 'transmit', rfChl: 0 });
    rejects(() => p.payloadToParams({ transmit: 7 }, rfState, rfCaps), /channel 7 is not learned/);
    rejects(() => p.payloadToParams('on', rfState, rfCaps), /no relay/);
    rejects(() => p.payloadToParams({ transmit: 1 }, {}, basicCaps), /cannot take RF commands/);
  });

  it('unknown devices get raw params through', () => {
    const unknown = p.capabilitiesOf('X', {});
    assert.deepEqual(p.payloadToParams({ anything: [1, 2], colorR: 255 }, {}, unknown), { anything: [1, 2], colorR: 255 });
    assert.deepEqual(p.payloadToParams({ outlet: 2, switch: 'on' }, {}, unknown), { switches: [{ switch: 'on', outlet: 2 }] });
  });
});
