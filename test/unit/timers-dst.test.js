'use strict';
// The daylight-saving re-push of sonoff-timer's per-device set (nodes/sonoff-timer.ts), on a fake
// clock shared with a simulated device that runs the pushed timers: a weekly 07:30 Europe/Berlin
// timer fires at 07:30 local on both sides of the spring change, because the set pushes the new
// UTC array right after the last winter occurrence. Also: a device offline at that moment gets
// the new array when it comes back.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { internals } = require('../../dist/nodes/sonoff-timer.js');
const { parseTimer } = require('../../dist/src/protocol/timers');
const { formatLocalIso } = require('../../dist/src/protocol/localtime');
const { SimulatedDevice } = require('../../dist/src/sim');
const { attachTimerRunner, FakeClock } = require('../../dist/src/sim/timers');

const ZONE = 'Europe/Berlin';
const flush = () => new Promise((r) => setImmediate(r));

/** A stand-in for the coolkit-server node: one device record, pushes go to a simulated device. */
function fakeServer(clock, onPush) {
  const record = { deviceid: '1000ff0001', online: true, params: {} };
  const listeners = [];
  const pushes = [];
  return {
    record,
    pushes,
    emit: (kind) => listeners.forEach((l) => l(kind, {})),
    server: {
      id: 'srv',
      subscribe: (_id, l) => { listeners.push(l); return () => listeners.splice(listeners.indexOf(l), 1); },
      cloud: {
        device: () => record,
        sendCommand: async (_id, params) => {
          if (!record.online) throw Object.assign(new Error('offline'), { code: 503 });
          pushes.push({ at: clock.now(), timers: structuredClone(params.timers) });
          record.params.timers = structuredClone(params.timers);
          onPush?.(params.timers);
          return { ms: 1 };
        },
      },
    },
  };
}

describe('sonoff-timer: the daylight-saving re-push (fake clock)', () => {
  let dir;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coolkit-dst-')); });

  it('Europe/Berlin spring forward: the device fires at 07:30 local before and after the change', async () => {
    const clock = new FakeClock(Date.parse('2025-03-29T05:00:00Z')); // Saturday 06:00 CET
    const dev = new SimulatedDevice({ server: 'https://127.0.0.1:1', deviceid: '1000ff0001', reconnect: false, drift: false });
    const runner = attachTimerRunner(dev, { clock });
    const fake = fakeServer(clock, (timers) => runner.load(timers));
    const log = { warn: () => {}, error: (m) => assert.fail(m) };
    const set = new internals.DeviceTimerSet(fake.server, '1000ff0001', path.join(dir, 'timers.json'), ZONE, log, clock);

    await set.edit((_specs, now) => [parseTimer({ type: 'repeat', at: '07:30', days: 'daily', do: { switch: 'on' } }, { timezone: ZONE, now })]);
    assert.equal(fake.pushes.length, 1);
    assert.equal(fake.pushes[0].timers[0].at, '30 6 * * 0,1,2,3,4,5,6');
    assert.equal(new Date(set.nextRecheckAt).toISOString(), '2025-03-29T06:30:01.000Z');
    const mId = fake.pushes[0].timers[0].mId;

    // Saturday's 07:30 CET fires on the winter array; a second later the summer array is pushed.
    clock.advanceTo(Date.parse('2025-03-29T06:30:01Z'));
    await flush();
    assert.equal(fake.pushes.length, 2);
    assert.equal(new Date(fake.pushes[1].at).toISOString(), '2025-03-29T06:30:01.000Z');
    assert.equal(fake.pushes[1].timers[0].at, '30 5 * * 0,1,2,3,4,5,6');
    assert.equal(fake.pushes[1].timers[0].mId, mId, 'the same timer');

    // Sunday and Monday fire at 07:30 CEST.
    clock.advanceTo(Date.parse('2025-03-31T12:00:00Z'));
    await flush();
    assert.deepEqual(runner.fired.map((f) => formatLocalIso(ZONE, f.at)), [
      '2025-03-29T07:30:00+01:00', '2025-03-30T07:30:00+02:00', '2025-03-31T07:30:00+02:00',
    ]);
    // Nothing else to do until the autumn change.
    assert.equal(fake.pushes.length, 2);
    assert.equal(new Date(set.nextRecheckAt).toISOString(), '2025-10-26T01:00:01.000Z');
    set.dispose();
    runner.stop();
  });

  it('Europe/Berlin fall back: a daily 07:30 and a Sunday 02:30 each fire once a day at their local time', async () => {
    const clock = new FakeClock(Date.parse('2025-10-25T04:00:00Z')); // Saturday 06:00 CEST
    const dev = new SimulatedDevice({ server: 'https://127.0.0.1:1', deviceid: '1000ff0001', reconnect: false, drift: false });
    const runner = attachTimerRunner(dev, { clock });
    const fake = fakeServer(clock, (timers) => runner.load(timers));
    const log = { warn: () => {}, error: (m) => assert.fail(m) };
    const set = new internals.DeviceTimerSet(fake.server, '1000ff0001', path.join(dir, 'timers.json'), ZONE, log, clock);
    await set.edit((_specs, now) => [
      parseTimer({ type: 'repeat', at: '07:30', days: 'daily', do: { switch: 'on' }, name: 'daily' }, { timezone: ZONE, now }),
      parseTimer({ type: 'repeat', at: '02:30', days: ['sun'], do: { switch: 'off' }, name: 'night' }, { timezone: ZONE, now }),
    ]);
    // Step through the wake-ups of the set (each push is asynchronous), then to Monday noon.
    const end = Date.parse('2025-10-27T12:00:00Z');
    while (set.nextRecheckAt !== undefined && set.nextRecheckAt < end) {
      clock.advanceTo(set.nextRecheckAt);
      await flush();
    }
    clock.advanceTo(end);
    await flush();
    const byTimer = (name) => runner.fired.filter((f) => f.params.switch === (name === 'daily' ? 'on' : 'off')).map((f) => formatLocalIso(ZONE, f.at));
    assert.deepEqual(byTimer('daily'), ['2025-10-25T07:30:00+02:00', '2025-10-26T07:30:00+01:00', '2025-10-27T07:30:00+01:00']);
    assert.deepEqual(byTimer('night'), ['2025-10-26T02:30:00+02:00']);
    assert.deepEqual(fake.pushes.map((p) => p.timers.map((x) => x.at).join(' | ')), [
      '30 5 * * 0,1,2,3,4,5,6 | 30 0 * * 0',
      '30 6 * * 0,1,2,3,4,5,6 | 30 0 * * 0',
      '30 6 * * 0,1,2,3,4,5,6 | 30 1 * * 0',
    ]);
    set.dispose();
    runner.stop();
  });

  it('a device offline at the change gets the new array when it comes back; the set reloads from its file', async () => {
    const clock = new FakeClock(Date.parse('2025-10-24T12:00:00Z'));
    const fake = fakeServer(clock);
    const log = { warn: () => {}, error: (m) => assert.fail(m) };
    const file = path.join(dir, 'timers.json');
    const set = new internals.DeviceTimerSet(fake.server, '1000ff0001', file, 'America/New_York', log, clock);
    await set.edit((_s, now) => [parseTimer({ type: 'repeat', at: '21:00', days: ['sat'], do: 'off' }, { timezone: 'America/New_York', now })]);
    assert.equal(fake.pushes[0].timers[0].at, '0 1 * * 0');
    set.dispose();

    // Restart: a new set reads the user's timers back from the file.
    const again = new internals.DeviceTimerSet(fake.server, '1000ff0001', file, 'America/New_York', log, clock);
    assert.equal(again.specs.length, 1);
    assert.equal(again.specs[0].id, fake.pushes[0].timers[0].mId);
    await flush();
    clock.advance(0);
    await flush();
    assert.equal(fake.pushes.length, 1, 'the device already holds the right array');

    // New York falls back on 2 November; the device is offline then.
    fake.record.online = false;
    clock.advanceTo(Date.parse('2025-11-03T00:00:00Z'));
    await flush();
    assert.equal(fake.pushes.length, 1);
    fake.record.online = true;
    fake.emit('online');
    clock.advance(500);
    await flush();
    assert.equal(fake.pushes.length, 2);
    assert.equal(fake.pushes[1].timers[0].at, '0 2 * * 0');
    again.dispose();
  });
});
