'use strict';
// The simulator runs the timers it holds (src/sim/timers.ts) against a controllable clock: once,
// delay, repeat (UTC cron), duration (repeat and alternate), disabled timers, multi-channel forms.
// The device is not connected: a real Sonoff runs its timers with no server too.
const assert = require('node:assert/strict');
const { SimulatedDevice } = require('../../dist/src/sim');
const { attachTimerRunner, FakeClock, nextCronInstant, nextTimerEvent } = require('../../dist/src/sim/timers');

const MIN = 60_000;

function device(profile = 'basic', params) {
  return new SimulatedDevice({ server: 'https://127.0.0.1:1', deviceid: '1000ff0001', profile, reconnect: false, drift: false, ...(params ? { params } : {}) });
}

const timer = (extra) => ({ coolkit_timer_type: 'once', mId: 'a0000000-0000-4000-8000-000000000001', enabled: 1, type: 'once', ...extra });

describe('simulator: device timers on a fake clock', () => {
  it('FakeClock runs due callbacks in time order, and only when advanced', () => {
    const clock = new FakeClock(1000);
    const seen = [];
    clock.setTimeout(() => seen.push(['b', clock.now()]), 200);
    clock.setTimeout(() => { seen.push(['a', clock.now()]); clock.setTimeout(() => seen.push(['c', clock.now()]), 50); }, 100);
    const gone = clock.setTimeout(() => seen.push(['x']), 10);
    clock.clearTimeout(gone);
    clock.advance(99);
    assert.deepEqual(seen, []);
    clock.advance(101);
    assert.deepEqual(seen, [['a', 1100], ['c', 1150], ['b', 1200]]);
    assert.equal(clock.now(), 1200);
  });

  it('a once timer switches the device at its time, not before, and only once', () => {
    const start = Date.parse('2017-09-17T00:25:00.000Z');
    const clock = new FakeClock(start);
    const dev = device();
    const fired = [];
    const runner = attachTimerRunner(dev, { clock, onFire: (f) => fired.push(f) });
    runner.load([timer({ at: '2017-09-17T00:30:00.000Z', do: { switch: 'on' } })]);
    clock.advance(5 * MIN - 1);
    assert.equal(dev.state.switch, 'off');
    clock.advance(1);
    assert.equal(dev.state.switch, 'on');
    assert.equal(fired.length, 1);
    assert.equal(new Date(fired[0].at).toISOString(), '2017-09-17T00:30:00.000Z');
    clock.advance(24 * 60 * MIN);
    assert.equal(runner.fired.length, 1);
    runner.stop();
  });

  it('a delay timer fires at its end time; a disabled timer never fires', () => {
    const start = Date.UTC(2025, 0, 1, 10);
    const clock = new FakeClock(start);
    const dev = device();
    const runner = attachTimerRunner(dev, { clock });
    runner.load([
      timer({ coolkit_timer_type: 'delay', at: new Date(start + 30 * MIN).toISOString(), period: '30', do: { switch: 'on' } }),
      timer({ mId: 'a0000000-0000-4000-8000-000000000002', enabled: 0, at: new Date(start + 10 * MIN).toISOString(), do: { switch: 'on' } }),
    ]);
    clock.advance(29 * MIN);
    assert.equal(dev.state.switch, 'off');
    clock.advance(MIN);
    assert.equal(dev.state.switch, 'on');
    assert.deepEqual(runner.fired.map((f) => f.mId), ['a0000000-0000-4000-8000-000000000001']);
    runner.stop();
  });

  it('a repeat timer follows its UTC cron, weekdays included', () => {
    // Wednesday 1 January 2025, 12:00 UTC.
    const clock = new FakeClock(Date.UTC(2025, 0, 1, 12));
    const dev = device();
    const runner = attachTimerRunner(dev, { clock });
    runner.load([
      { coolkit_timer_type: 'repeat', at: '30 19 * * 0,4', mId: 'on', enabled: 1, do: { switch: 'on' }, type: 'repeat' },
      { coolkit_timer_type: 'repeat', at: '0 20 * * 0,4', mId: 'off', enabled: 1, do: { switch: 'off' }, type: 'repeat' },
    ]);
    clock.advance(7 * 24 * 60 * MIN);
    assert.deepEqual(runner.fired.map((f) => `${new Date(f.at).toISOString()} ${f.mId}`), [
      '2025-01-02T19:30:00.000Z on', '2025-01-02T20:00:00.000Z off', '2025-01-05T19:30:00.000Z on', '2025-01-05T20:00:00.000Z off',
    ]);
    assert.equal(nextCronInstant('0 0 * * *', Date.UTC(2025, 0, 1, 0, 0)), Date.UTC(2025, 0, 2));
    assert.equal(nextCronInstant('not a cron', 0), undefined);
    runner.stop();
  });

  it('duration timers: one action every cycle, or start and end actions alternating', () => {
    const start = Date.UTC(2025, 0, 1, 10);
    const clock = new FakeClock(start);
    const dev = device();
    const runner = attachTimerRunner(dev, { clock });
    runner.load([{ coolkit_timer_type: 'duration', at: `${new Date(start + 5 * MIN).toISOString()} 60 20`, mId: 'loop', enabled: 1, startDo: { switch: 'on' }, endDo: { switch: 'off' }, type: 'duration' }]);
    clock.advance(5 * MIN);
    assert.equal(dev.state.switch, 'on');
    clock.advance(20 * MIN);
    assert.equal(dev.state.switch, 'off');
    clock.advance(40 * MIN);
    assert.equal(dev.state.switch, 'on');
    assert.deepEqual(runner.fired.map((f) => (f.at - start) / MIN), [5, 25, 65]);
    // A loop whose start is in the past keeps its phase.
    const ev = nextTimerEvent({ type: 'duration', at: `${new Date(start - 95 * MIN).toISOString()} 30`, enabled: 1, do: { switch: 'on' } }, start);
    assert.equal((ev.at - start) / MIN, 25);
    runner.stop();
  });

  it('multi-channel forms switch one outlet; TH timers carry mainSwitch', () => {
    const clock = new FakeClock(Date.UTC(2025, 0, 1));
    const dev = device('4ch');
    const runner = attachTimerRunner(dev, { clock });
    runner.load([
      timer({ at: new Date(clock.now() + MIN).toISOString(), do: { switches: [{ switch: 'on', outlet: 2 }] } }),
      timer({ mId: 'flat', at: new Date(clock.now() + 2 * MIN).toISOString(), do: { switch: 'on', outlet: 0 } }),
    ]);
    clock.advance(2 * MIN);
    assert.deepEqual(dev.state.switches.filter((s) => s.switch === 'on').map((s) => s.outlet), [0, 2]);
    runner.stop();

    const thDev = device('th16');
    const thRunner = attachTimerRunner(thDev, { clock });
    thRunner.load([timer({ at: new Date(clock.now() + MIN).toISOString(), do: { switch: 'on', mainSwitch: 'on' } })]);
    clock.advance(MIN);
    assert.equal(thDev.state.switch, 'on');
    assert.equal(thDev.state.mainSwitch, 'on');
    thRunner.stop();
  });

  it('takes the array from a server update, from a query reply, and from the state it holds', () => {
    const clock = new FakeClock(Date.UTC(2025, 0, 1));
    const at = new Date(clock.now() + MIN).toISOString();
    const held = device('basic', { switch: 'off', timers: [timer({ at, do: { switch: 'on' } })] });
    const runner = attachTimerRunner(held, { clock });
    assert.equal(runner.timers.length, 1);
    // A query reply in the object form, then in the array-wrapped form.
    held.emit('message', { error: 0, deviceid: '1000ff0001', apikey: 'k', params: { timers: [timer({ at, do: { switch: 'on' } }), timer({ mId: 'b', at, do: { switch: 'off' } })] } });
    assert.equal(runner.timers.length, 2);
    held.emit('message', { error: 0, deviceid: '1000ff0001', apikey: 'k', params: [{ timers: [] }] });
    assert.equal(runner.timers.length, 0);
    held.emit('message', { error: 0, deviceid: '1000ff0001', apikey: 'k', params: 0 });
    assert.equal(runner.timers.length, 0);
    held.emit('command', { timers: [timer({ at, do: { switch: 'on' } })] }, {});
    assert.equal(runner.nextFires().get('a0000000-0000-4000-8000-000000000001'), clock.now() + MIN);
    clock.advance(MIN);
    assert.equal(held.state.switch, 'on');
    runner.stop();
  });
});
