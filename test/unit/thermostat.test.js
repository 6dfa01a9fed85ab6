'use strict';
// The TH10/TH16 thermostat (src/protocol/thermostat.ts): payload → params byte-equivalent to the
// app capture (shared/seeds/000_*.txt), validation against the sensor, the state a flow sees,
// the status text, and the local-control decision (hysteresis + minimum on/off time).
const assert = require('node:assert/strict');
const th = require('../../dist/src/protocol/thermostat');
const { UIID_CAPABILITIES } = require('../../dist/src/protocol/capabilities');

// The params of the four app commands of seed 000, as the capture writes them.
const SEED = {
  below28: '{"deviceType":"temperature","mainSwitch":"on","targets":[{"targetHigh":"28","reaction":{"switch":"off"}},{"targetLow":"28","reaction":{"switch":"on"}}]}',
  above28: '{"deviceType":"temperature","mainSwitch":"on","targets":[{"targetHigh":"28","reaction":{"switch":"on"}},{"targetLow":"28","reaction":{"switch":"off"}}]}',
  manualOff: '{"deviceType":"normal","mainSwitch":"off"}',
  manualOn: '{"switch":"on","mainSwitch":"on","deviceType":"normal"}',
};

const thCaps = { ...UIID_CAPABILITIES[15], source: 'model' };
const AM2301 = { sensorType: 'AM2301', currentTemperature: '22.5', currentHumidity: '48', switch: 'off' };

function params(payload) {
  return JSON.stringify(th.thermostatParams(th.parseThermostatPayload(payload)));
}

function refuses(fn, pattern) {
  assert.throws(fn, (err) => {
    assert.equal(err.code, 400, err.message);
    assert.match(err.message, pattern);
    return true;
  });
}

describe('thermostat: payload → device params', () => {
  it('seed 000: "switch on below 28", "switch on above 28", manual off and on, byte for byte', () => {
    assert.equal(params({ mode: 'heat', setpoint: 28 }), SEED.below28);
    assert.equal(params({ mode: 'cool', setpoint: 28 }), SEED.above28);
    assert.equal(params({ mode: 'off' }), SEED.manualOff);
    assert.equal(params('off'), SEED.manualOff);
    assert.equal(params({ mode: 'manual', switch: 'on' }), SEED.manualOn);
    assert.equal(params({ mode: 'temperature', setpoint: '28' }), SEED.below28);
    assert.equal(params({ mode: 'temperature', switchOn: 'above', setpoint: 28 }), SEED.above28);
  });

  it('bands: high first, low second, values as strings the device takes', () => {
    assert.deepEqual(th.thermostatParams(th.parseThermostatPayload({ mode: 'cool', high: 26, low: 24 })).targets, [
      { targetHigh: '26', reaction: { switch: 'on' } },
      { targetLow: '24', reaction: { switch: 'off' } },
    ]);
    assert.deepEqual(th.thermostatParams(th.parseThermostatPayload({ mode: 'heat', high: 21.54, low: 20.96 })).targets, [
      { targetHigh: '21.5', reaction: { switch: 'off' } },
      { targetLow: '21', reaction: { switch: 'on' } },
    ]);
    // A setpoint with a hysteresis is a band around it.
    assert.deepEqual(th.thermostatParams(th.parseThermostatPayload({ mode: 'heat', setpoint: 21, hysteresis: 1 })).targets.map((x) => x.targetHigh ?? x.targetLow), ['21.5', '20.5']);
  });

  it('humidity: a dehumidifier switches on above, a humidifier below; values are whole percent', () => {
    assert.equal(params({ mode: 'humidity', setpoint: 60 }), '{"deviceType":"humidity","mainSwitch":"on","targets":[{"targetHigh":"60","reaction":{"switch":"on"}},{"targetLow":"60","reaction":{"switch":"off"}}]}');
    assert.equal(params({ mode: 'humidity', switchOn: 'below', high: 55.4, low: 40 }), '{"deviceType":"humidity","mainSwitch":"on","targets":[{"targetHigh":"55","reaction":{"switch":"off"}},{"targetLow":"40","reaction":{"switch":"on"}}]}');
    assert.equal(params({ mode: 'dehumidify', setpoint: 60 }), params({ mode: 'humidity', setpoint: 60 }));
    assert.equal(params({ mode: 'humidify', setpoint: 60 }), params({ mode: 'humidity', switchOn: 'below', setpoint: 60 }));
    assert.equal(params({ mode: 'manual', switch: 'off' }), '{"switch":"off","mainSwitch":"off","deviceType":"normal"}');
  });

  it('refuses payloads that are not a thermostat setting', () => {
    refuses(() => th.parseThermostatPayload({ mode: 'warm', setpoint: 20 }), /mode must be/);
    refuses(() => th.parseThermostatPayload({ mode: 'heat' }), /needs "setpoint"/);
    refuses(() => th.parseThermostatPayload({ mode: 'heat', setpoint: 'hot' }), /setpoint must be a number/);
    refuses(() => th.parseThermostatPayload({ mode: 'heat', high: 24, low: 26 }), /high \(24\) must be greater than or equal to low \(26\)/);
    refuses(() => th.parseThermostatPayload({ mode: 'heat', high: 24 }), /both "high" and "low"/);
    refuses(() => th.parseThermostatPayload({ mode: 'heat', setpoint: 20, high: 24, low: 22 }), /either "setpoint"/);
    refuses(() => th.parseThermostatPayload({ mode: 'heat', setpoint: 20, switchOn: 'above' }), /switches on below/);
    refuses(() => th.parseThermostatPayload({ mode: 'heat', setpoint: 20, target: 3 }), /unknown key "target"/);
    refuses(() => th.parseThermostatPayload({ mode: 'off', setpoint: 20 }), /takes no "setpoint"/);
    refuses(() => th.parseThermostatPayload({ mode: 'cool', setpoint: 20, switch: 'on' }), /"switch" is for "off" and "manual"/);
    refuses(() => th.parseThermostatPayload(42), /payload must be an object/);
  });
});

describe('thermostat: validation against the sensor', () => {
  const check = (payload, state) => th.validateSetting(th.parseThermostatPayload(payload), state, thCaps);

  it('accepts targets inside the sensor\'s range', () => {
    check({ mode: 'heat', setpoint: 28 }, AM2301);
    check({ mode: 'cool', high: 80, low: -40 }, AM2301);
    check({ mode: 'humidity', setpoint: 60 }, AM2301);
    check({ mode: 'heat', setpoint: 28 }, {}); // nothing reported yet: the widest range applies
    check({ mode: 'off' }, { sensorType: 'errorType' });
  });

  it('refuses values outside the sensor\'s range, quantities it does not measure, and missing sensors', () => {
    refuses(() => check({ mode: 'heat', setpoint: 60 }, { ...AM2301, sensorType: 'DHT11' }), /setpoint 60 °C is outside the DHT11 sensor's range 0..50 °C/);
    refuses(() => check({ mode: 'humidity', setpoint: 95 }, { ...AM2301, sensorType: 'DHT11' }), /outside the DHT11 sensor's range 20..90 %/);
    refuses(() => check({ mode: 'cool', high: 90, low: 20 }, AM2301), /high 90 °C is outside the AM2301 sensor's range -40..80 °C/);
    refuses(() => check({ mode: 'humidity', setpoint: 50 }, { sensorType: 'DS18B20', currentTemperature: '21' }), /DS18B20 sensor measures no humidity/);
    refuses(() => check({ mode: 'heat', setpoint: 20 }, { sensorType: 'MS01' }), /MS01 sensor measures no temperature/);
    refuses(() => check({ mode: 'heat', setpoint: 20 }, { sensorType: 'errorType' }), /unsupported sensor/);
    // Seed 000: a TH16 with a temperature probe only reports humidity "unavailable".
    refuses(() => check({ mode: 'humidity', setpoint: 50 }, { currentTemperature: '22', currentHumidity: 'unavailable' }), /no humidity sensor is connected/);
    refuses(() => check({ mode: 'heat', setpoint: 130 }, {}), /outside the sensor range -55..125 °C/);
  });
});

describe('thermostat: state and status', () => {
  it('reads the mode, targets, readings and relay back from the device\'s params', () => {
    const view = th.deviceThermostatView({ ...AM2301, ...JSON.parse(SEED.below28) });
    assert.deepEqual(view, { mode: 'heat', temperature: 22.5, humidity: 48, sensorType: 'AM2301', relay: false, control: 'device', quantity: 'temperature', high: 28, low: 28, setpoint: 28 });
    assert.equal(th.statusText(view), 'heat < 28 °C · 22.5 °C now');
    assert.equal(th.statusText(th.deviceThermostatView({ ...AM2301, ...JSON.parse(SEED.above28) })), 'cool > 28 °C · 22.5 °C now');
    assert.equal(th.statusText(th.deviceThermostatView({ ...AM2301, deviceType: 'temperature', mainSwitch: 'on', targets: [{ targetHigh: 26, reaction: { switch: 'on' } }, { targetLow: 24, reaction: { switch: 'off' } }] })), 'cool 24–26 °C · 22.5 °C now');
    assert.equal(th.statusText(th.deviceThermostatView({ ...AM2301, ...JSON.parse(SEED.manualOn) })), 'manual · on · 22.5 °C now');
    assert.equal(th.statusText(th.deviceThermostatView({ ...AM2301, ...JSON.parse(params({ mode: 'humidity', setpoint: 60 })) })), 'dehumidify > 60 % · 48 % now');
    // Button pressed off in auto mode: temporary manual.
    const paused = th.deviceThermostatView({ ...AM2301, ...JSON.parse(SEED.below28), mainSwitch: 'off' });
    assert.equal(paused.paused, true);
    assert.equal(th.statusText(paused), 'paused: heat < 28 °C · 22.5 °C now');
  });

  it('unavailable or impossible readings are null, never NaN', () => {
    const view = th.deviceThermostatView({ currentTemperature: '22', currentHumidity: 'unavailable' });
    assert.equal(view.temperature, 22);
    assert.equal(view.humidity, null);
    assert.equal(th.deviceThermostatView({ sensorType: 'DHT11', currentTemperature: '255' }).temperature, null);
    assert.equal(th.statusText(th.deviceThermostatView({})), 'manual');
  });
});

describe('thermostat: local control decisions', () => {
  const cfg = { minOnMs: 60_000, minOffMs: 120_000 };
  const heat = th.parseThermostatPayload({ mode: 'heat', setpoint: 21 }, 1); // on below 20.5, off above 21.5
  const cool = th.parseThermostatPayload({ mode: 'cool', high: 26, low: 24 });
  const now = 1_000_000_000;

  it('switches on below the band and off above it, holds inside it (hysteresis)', () => {
    assert.deepEqual(th.decide(cfg, heat, {}, 20.4, false, now), { action: 'switch', to: 'on', reason: 'temperature 20.4 < 20.5' });
    assert.equal(th.decide(cfg, heat, {}, 21, false, now).action, 'none');
    assert.equal(th.decide(cfg, heat, {}, 21, true, now).action, 'none');
    assert.equal(th.decide(cfg, heat, {}, 21.6, true, now).to, 'off');
    assert.equal(th.decide(cfg, heat, {}, 19, true, now).reason, 'already on');
    assert.equal(th.decide(cfg, cool, {}, 26.5, false, now).to, 'on');
    assert.equal(th.decide(cfg, cool, {}, 25, true, now).action, 'none');
    assert.equal(th.decide(cfg, cool, {}, 23.9, true, now).to, 'off');
  });

  it('waits out the minimum on and off times, so the relay never chatters', () => {
    assert.deepEqual(th.decide(cfg, heat, { lastSwitchAt: now - 10_000 }, 22, true, now), { action: 'wait', to: 'off', until: now + 50_000, reason: 'minimum on time' });
    assert.equal(th.decide(cfg, heat, { lastSwitchAt: now - 60_000 }, 22, true, now).action, 'switch');
    assert.deepEqual(th.decide(cfg, heat, { lastSwitchAt: now - 60_000 }, 19, false, now), { action: 'wait', to: 'on', until: now + 60_000, reason: 'minimum off time' });
    assert.equal(th.decide(cfg, heat, { lastSwitchAt: now - 120_000 }, 19, false, now).action, 'switch');
  });

  it('does nothing without a setting, a reading, or in off/manual', () => {
    assert.equal(th.decide(cfg, undefined, {}, 19, false, now).action, 'none');
    assert.equal(th.decide(cfg, heat, {}, null, false, now).reason, 'no reading');
    assert.equal(th.decide(cfg, th.parseThermostatPayload({ mode: 'off' }), {}, 19, false, now).action, 'none');
    // Unknown relay state: act on the reading.
    assert.equal(th.decide(cfg, heat, { lastSwitchAt: now }, 19, null, now).action, 'switch');
  });
});
