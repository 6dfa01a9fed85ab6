'use strict';
// Device timers (src/protocol/timers.ts, localtime.ts): user shape ⇄ wire shape, local time ⇄
// UTC in explicit IANA zones, the weekday shift across midnight, daylight-saving changes, limits
// and bad input. Wire shapes follow the 2017 capture (shared/seeds/001_*.txt), key order included.
const assert = require('node:assert/strict');
const lt = require('../../dist/src/protocol/localtime');
const t = require('../../dist/src/protocol/timers');
const { UIID_CAPABILITIES } = require('../../dist/src/protocol/capabilities');

const ID = 'bd37062f-05e6-4b7c-918b-6e5a7041fa49';
const basic = { ...UIID_CAPABILITIES[1], source: 'model' };
const fourCh = { ...UIID_CAPABILITIES[4], source: 'model' };
const th = { ...UIID_CAPABILITIES[15], source: 'model' };
const rf = { ...UIID_CAPABILITIES[28], source: 'model' };

function exact(actual, expected) {
  assert.deepEqual(actual, expected);
  assert.deepEqual(Object.keys(actual), Object.keys(expected), 'key order');
}

function ctx(timezone, now, caps = basic) {
  let n = 0;
  return { timezone, now, caps, newId: () => `00000000-0000-4000-8000-${String(++n).padStart(12, '0')}` };
}

function parse(input, timezone, now, caps) {
  return t.parseTimer(input, ctx(timezone, now, caps));
}

/** A repeat timer's cron at `now`. */
function cron(timezone, at, days, now) {
  return t.wireTimer(parse({ type: 'repeat', at, days, do: { switch: 'on' } }, timezone, now), now).at;
}

/** Reject with a 400 whose message matches. */
function refuses(fn, pattern) {
  assert.throws(fn, (err) => {
    assert.equal(err.code, 400, err.message);
    assert.match(err.message, pattern);
    return true;
  });
}

describe('timers: local time helpers (Intl only)', () => {
  it('offsets, wall time and ISO strings with the local offset', () => {
    assert.equal(lt.zoneOffsetMinutes('Europe/Berlin', Date.UTC(2025, 0, 15)), 60);
    assert.equal(lt.zoneOffsetMinutes('Europe/Berlin', Date.UTC(2025, 6, 15)), 120);
    assert.equal(lt.zoneOffsetMinutes('America/New_York', Date.UTC(2025, 0, 15)), -300);
    assert.equal(lt.zoneOffsetMinutes('Asia/Kolkata', Date.UTC(2025, 6, 15)), 330);
    assert.equal(lt.zoneOffsetMinutes('Pacific/Auckland', Date.UTC(2025, 0, 15)), 780);
    assert.equal(lt.zoneOffsetMinutes('Pacific/Auckland', Date.UTC(2025, 6, 15)), 720);
    assert.equal(lt.formatLocalIso('Asia/Kolkata', Date.UTC(2025, 0, 1, 0, 0)), '2025-01-01T05:30:00+05:30');
    assert.equal(lt.formatLocalIso('America/New_York', Date.UTC(2025, 0, 1, 3, 4, 5)), '2024-12-31T22:04:05-05:00');
    assert.equal(lt.canonicalTimeZone('Mars/Olympus'), undefined);
    assert.equal(lt.canonicalTimeZone('Europe/Berlin'), 'Europe/Berlin');
    assert.equal(typeof lt.systemTimeZone(), 'string');
  });

  it('finds the next offset change to the second, and none in zones without daylight saving', () => {
    assert.equal(new Date(lt.nextOffsetChange('Europe/Berlin', Date.UTC(2025, 0, 1))).toISOString(), '2025-03-30T01:00:00.000Z');
    assert.equal(new Date(lt.nextOffsetChange('Europe/Berlin', Date.UTC(2025, 5, 1))).toISOString(), '2025-10-26T01:00:00.000Z');
    assert.equal(new Date(lt.nextOffsetChange('America/New_York', Date.UTC(2025, 0, 1))).toISOString(), '2025-03-09T07:00:00.000Z');
    assert.equal(new Date(lt.nextOffsetChange('Pacific/Auckland', Date.UTC(2025, 0, 1))).toISOString(), '2025-04-05T14:00:00.000Z');
    assert.equal(lt.nextOffsetChange('Asia/Kolkata', Date.UTC(2025, 0, 1)), undefined);
  });

  it('reads wall times that are skipped or repeated by a change with the compatible rule', () => {
    // Berlin springs forward at 02:00 → 03:00: 02:30 does not exist and becomes 03:30 CEST.
    assert.equal(new Date(lt.fromWall('Europe/Berlin', { year: 2025, month: 3, day: 30, hour: 2, minute: 30 })).toISOString(), '2025-03-30T01:30:00.000Z');
    // Autumn: 02:30 happens twice; the earlier (CEST) one is meant.
    assert.equal(new Date(lt.fromWall('Europe/Berlin', { year: 2025, month: 10, day: 26, hour: 2, minute: 30 })).toISOString(), '2025-10-26T00:30:00.000Z');
  });

  it('parses user times: local without offset, absolute with Z or an offset, impossible dates refused', () => {
    assert.equal(new Date(lt.parseUserTime('2025-06-01T07:30', 'Europe/Berlin')).toISOString(), '2025-06-01T05:30:00.000Z');
    assert.equal(new Date(lt.parseUserTime('2025-06-01 07:30:15', 'Europe/Berlin')).toISOString(), '2025-06-01T05:30:15.000Z');
    assert.equal(new Date(lt.parseUserTime('2025-06-01T07:30:00Z', 'Europe/Berlin')).toISOString(), '2025-06-01T07:30:00.000Z');
    assert.equal(new Date(lt.parseUserTime('2025-06-01T07:30:00+05:30', 'Europe/Berlin')).toISOString(), '2025-06-01T02:00:00.000Z');
    assert.equal(new Date(lt.parseUserTime('2025-01-15T21:00', 'America/New_York')).toISOString(), '2025-01-16T02:00:00.000Z');
    for (const bad of ['2025-02-30T10:00', '2025-13-01T10:00', '2025-06-01T24:00', 'tomorrow', '', '07:30', null]) {
      assert.equal(lt.parseUserTime(bad, 'Europe/Berlin'), undefined, String(bad));
    }
  });
});

describe('timers: user shape → wire shape', () => {
  const now = Date.parse('2017-09-17T00:24:54.955Z');

  it('a once timer is the capture\'s timer exactly (seed 001)', () => {
    const spec = parse({ type: 'once', at: '2017-09-17T00:30:00.000Z', do: { switch: 'off' }, id: ID }, 'UTC', now);
    // The server push in the capture, byte for byte.
    const seed = JSON.parse('{"coolkit_timer_type":"once","at":"2017-09-17T00:30:00.000Z","mId":"bd37062f-05e6-4b7c-918b-6e5a7041fa49","enabled":1,"do":{"switch":"off"},"type":"once"}');
    assert.equal(JSON.stringify(t.wireTimer(spec, now)), JSON.stringify(seed));
  });

  it('a local once time is sent in UTC and listed back in local time with its offset', () => {
    const n = Date.UTC(2025, 4, 1);
    const spec = parse({ type: 'once', at: '2025-06-01T07:30', do: 'on' }, 'Europe/Berlin', n);
    assert.equal(t.wireTimer(spec, n).at, '2025-06-01T05:30:00.000Z');
    const user = t.userTimer(spec, n);
    exact(user, { id: spec.id, type: 'once', at: '2025-06-01T07:30:00+02:00', do: { switch: 'on' }, enabled: true, timezone: 'Europe/Berlin', next: '2025-06-01T07:30:00+02:00' });
    // The list shape is accepted again as it is.
    assert.deepEqual(parse(user, 'Asia/Kolkata', n), spec);
  });

  it('every type has the wire fields and key order of the docs', () => {
    const n = Date.UTC(2025, 4, 1, 10, 0, 0);
    const tz = 'Europe/Berlin';
    exact(t.wireTimer(parse({ type: 'delay', minutes: 30, do: { switch: 'off' } }, tz, n), n), {
      coolkit_timer_type: 'delay', at: '2025-05-01T10:30:00.000Z', period: '30', mId: '00000000-0000-4000-8000-000000000001', enabled: 1, do: { switch: 'off' }, type: 'once',
    });
    exact(t.wireTimer(parse({ type: 'repeat', at: '12:00', days: ['mon', 'wed'], do: { switch: 'on' }, enabled: false }, tz, n), n), {
      coolkit_timer_type: 'repeat', at: '0 10 * * 1,3', mId: '00000000-0000-4000-8000-000000000001', enabled: 0, do: { switch: 'on' }, type: 'repeat',
    });
    exact(t.wireTimer(parse({ type: 'duration', at: '2025-05-01T12:00', every: 30, do: { switch: 'off' } }, tz, n), n), {
      coolkit_timer_type: 'duration', at: '2025-05-01T10:00:00.000Z 30', mId: '00000000-0000-4000-8000-000000000001', enabled: 1, do: { switch: 'off' }, type: 'duration',
    });
    exact(t.wireTimer(parse({ type: 'duration', at: '2025-05-01T12:00', every: 60, do: { switch: 'off' }, after: 30, then: { switch: 'on' } }, tz, n), n), {
      coolkit_timer_type: 'duration', at: '2025-05-01T10:00:00.000Z 60 30', mId: '00000000-0000-4000-8000-000000000001', enabled: 1, startDo: { switch: 'off' }, endDo: { switch: 'on' }, type: 'duration',
    });
  });

  it('every type round-trips: user → wire → user, and wire → spec → wire', () => {
    const n = Date.UTC(2025, 4, 1, 10, 0, 0);
    const tz = 'America/New_York';
    const inputs = [
      { type: 'once', at: '2025-05-02T06:15', do: { switch: 'on' }, name: 'wake' },
      { type: 'delay', minutes: 90, do: { switch: 'off' } },
      { type: 'repeat', at: '22:45', days: ['fri', 'sat'], do: { switch: 'off' } },
      { type: 'duration', at: '2025-05-01T08:00', every: 45, do: { switch: 'on' }, after: 15, then: { switch: 'off' } },
    ];
    for (const input of inputs) {
      const spec = parse(input, tz, n);
      const user = t.userTimer(spec, n);
      for (const [k, v] of Object.entries(input)) {
        if (k === 'at' && input.type !== 'repeat') assert.equal(Date.parse(user.at), lt.parseUserTime(v, tz), k);
        else assert.deepEqual(user[k], v, `${input.type}.${k}`);
      }
      const wire = t.wireTimer(spec, n);
      const back = t.timerFromWire(wire, tz, n);
      const { name: _name, ...unnamed } = spec;
      assert.deepEqual(back, unnamed, `${input.type} from wire`);
      assert.deepEqual(t.wireTimer(back, n), wire);
    }
    // Something this module does not model is kept and pushed as it is.
    const odd = { coolkit_timer_type: 'once', at: '2025-05-02T06:15:00.000Z', mId: ID, enabled: 1, do: { ledLight: 'on' }, type: 'once' };
    const raw = t.timerFromWire(odd, tz, n);
    assert.equal(raw.type, 'raw');
    assert.deepEqual(t.wireTimer(raw, n), odd);
  });

  it('multi-channel timers switch one outlet with the switches form; loop timers are refused there', () => {
    const n = Date.UTC(2025, 4, 1);
    const spec = parse({ type: 'once', at: '2025-05-02T06:15Z', do: { switch: 'on', outlet: 2 } }, 'UTC', n, fourCh);
    assert.deepEqual(t.wireTimer(spec, n).do, { switches: [{ switch: 'on', outlet: 2 }] });
    assert.deepEqual(t.userTimer(spec, n).do, { switch: 'on', outlet: 2 });
    // The wire form is accepted as input too.
    assert.deepEqual(parse({ type: 'once', at: '2025-05-02T06:15Z', do: { switches: [{ switch: 'off', outlet: 3 }] } }, 'UTC', n, fourCh).do, { switch: 'off', outlet: 3 });
    refuses(() => parse({ type: 'once', at: '2025-05-02T06:15Z', do: { switch: 'on' } }, 'UTC', n, fourCh), /switches one outlet: add "outlet"/);
    refuses(() => parse({ type: 'once', at: '2025-05-02T06:15Z', do: { switch: 'on', outlet: 4 } }, 'UTC', n, fourCh), /outlet 4 does not exist: this device has 4 channels/);
    refuses(() => parse({ type: 'once', at: '2025-05-02T06:15Z', do: { switch: 'on', outlet: 1 } }, 'UTC', n, basic), /one-channel device/);
    refuses(() => parse({ type: 'duration', every: 10, do: { switch: 'on', outlet: 1 } }, 'UTC', n, fourCh), /do not run loop/);
    refuses(() => parse({ type: 'once', at: '2025-05-02T06:15Z', do: 'on' }, 'UTC', n, rf), /no relay/);
  });

  it('TH10/TH16 timers carry mainSwitch in do when the user gives it, other devices refuse it', () => {
    const n = Date.UTC(2025, 4, 1);
    const spec = parse({ type: 'repeat', at: '06:00', do: { switch: 'on', mainSwitch: 'on' } }, 'UTC', n, th);
    exact(t.wireTimer(spec, n).do, { switch: 'on', mainSwitch: 'on' });
    exact(t.wireTimer(parse({ type: 'repeat', at: '06:00', do: { switch: 'on' } }, 'UTC', n, th), n).do, { switch: 'on' });
    assert.equal(t.wireTimer(spec, n).at, '0 6 * * 0,1,2,3,4,5,6');
    refuses(() => parse({ type: 'repeat', at: '06:00', do: { switch: 'on', mainSwitch: 'on' } }, 'UTC', n, basic), /TH10\/TH16 only/);
  });
});

describe('timers: time zones and the weekday shift across midnight', () => {
  const winter = Date.UTC(2025, 0, 15, 12);
  const summer = Date.UTC(2025, 6, 15, 12);

  it('Asia/Kolkata (+05:30): Monday 00:30 local is Sunday 19:00 UTC', () => {
    assert.equal(cron('Asia/Kolkata', '00:30', ['mon'], winter), '0 19 * * 0');
    assert.equal(cron('Asia/Kolkata', '05:29', ['sun', 'mon'], winter), '59 23 * * 0,6');
    assert.equal(cron('Asia/Kolkata', '05:30', ['sun', 'mon'], winter), '0 0 * * 0,1');
  });

  it('Pacific/Auckland (+13 in January, +12 in July): the morning is the previous UTC day', () => {
    assert.equal(cron('Pacific/Auckland', '08:00', ['mon', 'tue'], winter), '0 19 * * 0,1');
    assert.equal(cron('Pacific/Auckland', '08:00', ['mon', 'tue'], summer), '0 20 * * 0,1');
    // Sunday wraps to Saturday.
    assert.equal(cron('Pacific/Auckland', '10:00', ['sun'], winter), '0 21 * * 6');
  });

  it('America/New_York (-05:00): Friday and Saturday 21:00 local are Saturday and Sunday 02:00 UTC', () => {
    assert.equal(cron('America/New_York', '21:00', ['fri', 'sat'], winter), '0 2 * * 0,6');
    assert.equal(cron('America/New_York', '21:00', ['fri', 'sat'], summer), '0 1 * * 0,6');
    assert.equal(cron('America/New_York', '18:59', 'weekdays', winter), '59 23 * * 1,2,3,4,5');
  });

  it('Europe/Berlin: Sunday and Monday 00:30 local are Saturday and Sunday 23:30 UTC', () => {
    assert.equal(cron('Europe/Berlin', '00:30', ['sun', 'mon'], winter), '30 23 * * 0,6');
    assert.equal(cron('Europe/Berlin', '00:30', ['sun', 'mon'], summer), '30 22 * * 0,6');
  });

  it('reads a device cron back into local time and weekdays', () => {
    const wire = { coolkit_timer_type: 'repeat', at: '0 19 * * 0', mId: ID, enabled: 1, do: { switch: 'on' }, type: 'repeat' };
    const user = t.userTimer(t.timerFromWire(wire, 'Asia/Kolkata', winter), winter);
    assert.equal(user.at, '00:30');
    assert.deepEqual(user.days, ['mon']);
    const nz = t.userTimer(t.timerFromWire({ ...wire, at: '0 21 * * 6' }, 'Pacific/Auckland', winter), winter);
    assert.equal(nz.at, '10:00');
    assert.deepEqual(nz.days, ['sun']);
  });
});

describe('timers: daylight-saving changes', () => {
  it('Europe/Berlin spring forward: the UTC form changes after the last winter occurrence, and the re-push is scheduled then', () => {
    const before = Date.parse('2025-03-29T05:00:00Z'); // Saturday 06:00 CET
    const spec = parse({ type: 'repeat', at: '07:30', days: 'daily', do: 'on' }, 'Europe/Berlin', before);
    assert.equal(t.wireTimer(spec, before).at, '30 6 * * 0,1,2,3,4,5,6');
    assert.equal(lt.formatLocalIso('Europe/Berlin', t.nextFire(spec, before)), '2025-03-29T07:30:00+01:00');
    // Saturday's 07:30 CET is the last one at +01:00: right after it the array must change.
    const recheck = t.nextRecheck([spec], before);
    assert.equal(new Date(recheck).toISOString(), '2025-03-29T06:30:01.000Z');
    assert.equal(t.wireTimer(spec, recheck).at, '30 5 * * 0,1,2,3,4,5,6');
    // It fires at 07:30 local on both sides of the change.
    assert.equal(lt.formatLocalIso('Europe/Berlin', t.nextFire(spec, recheck)), '2025-03-30T07:30:00+02:00');
    assert.equal(new Date(t.nextFire(spec, recheck)).toISOString(), '2025-03-30T05:30:00.000Z');
    // With no occurrence left before it, the change itself is the next re-check.
    assert.equal(new Date(t.nextRecheck([spec], Date.parse('2025-03-29T12:00:00Z'))).toISOString(), '2025-03-30T01:00:01.000Z');
  });

  it('Europe/Berlin fall back: 07:30 moves from 05:30 to 06:30 UTC on 26 October', () => {
    const before = Date.parse('2025-10-25T12:00:00Z');
    const spec = parse({ type: 'repeat', at: '07:30', days: ['sun'], do: 'off' }, 'Europe/Berlin', before);
    // The next occurrence is already after the change: the array carries winter time at once.
    assert.equal(t.wireTimer(spec, before).at, '30 6 * * 0');
    const weekday = parse({ type: 'repeat', at: '07:30', days: ['sat'], do: 'off' }, 'Europe/Berlin', Date.parse('2025-10-25T04:00:00Z'));
    assert.equal(t.wireTimer(weekday, Date.parse('2025-10-25T04:00:00Z')).at, '30 5 * * 6');
    assert.equal(t.wireTimer(weekday, Date.parse('2025-10-26T01:00:01Z')).at, '30 6 * * 6');
  });

  it('Europe/Berlin fall back, daily: the new array waits until the old one cannot fire twice on Saturday', () => {
    const sat = Date.parse('2025-10-25T04:00:00Z'); // Saturday 06:00 CEST
    const spec = parse({ type: 'repeat', at: '07:30', days: 'daily', do: 'on' }, 'Europe/Berlin', sat);
    assert.equal(t.wireTimer(spec, sat).at, '30 5 * * 0,1,2,3,4,5,6');
    // Right after Saturday's 07:30 CEST, "30 6" would fire again at 08:30 CEST: it is held back.
    const recheck = t.nextRecheck([spec], sat);
    assert.equal(new Date(recheck).toISOString(), '2025-10-25T06:30:01.000Z');
    assert.equal(t.wireTimer(spec, Date.parse('2025-10-25T05:30:01Z')).at, '30 5 * * 0,1,2,3,4,5,6');
    assert.equal(t.nextRecheck([spec], Date.parse('2025-10-25T05:30:01Z')), recheck);
    assert.equal(t.wireTimer(spec, recheck).at, '30 6 * * 0,1,2,3,4,5,6');
    assert.equal(lt.formatLocalIso('Europe/Berlin', t.nextFire(spec, recheck)), '2025-10-26T07:30:00+01:00');
  });

  it('a time repeated by the fall-back change fires once, at its first occurrence', () => {
    const sat = Date.parse('2025-10-25T12:00:00Z');
    const spec = parse({ type: 'repeat', at: '02:30', days: ['sun'], do: 'on' }, 'Europe/Berlin', sat);
    assert.equal(t.wireTimer(spec, sat).at, '30 0 * * 0'); // 02:30 CEST
    const atChange = t.nextRecheck([spec], sat);
    assert.equal(new Date(atChange).toISOString(), '2025-10-26T01:00:01.000Z');
    // 02:30 CET (01:30 UTC) is the same wall time again: the old array stays until it has passed.
    assert.equal(t.wireTimer(spec, atChange).at, '30 0 * * 0');
    const after = t.nextRecheck([spec], atChange);
    assert.equal(new Date(after).toISOString(), '2025-10-26T01:30:01.000Z');
    assert.equal(t.wireTimer(spec, after).at, '30 1 * * 0');
  });

  it('America/New_York: the weekday shift and the offset change together (Sunday 21:00 → Monday 02:00/01:00 UTC)', () => {
    const winter = Date.parse('2025-03-08T12:00:00Z');
    const spec = parse({ type: 'repeat', at: '21:00', days: ['sun'], do: 'on' }, 'America/New_York', winter);
    // The next Sunday 21:00 (9 March) is already EDT.
    assert.equal(t.wireTimer(spec, winter).at, '0 1 * * 1');
    assert.equal(t.wireTimer(spec, Date.parse('2025-03-01T12:00:00Z')).at, '0 2 * * 1');
    assert.equal(new Date(t.nextRecheck([spec], Date.parse('2025-03-01T12:00:00Z'))).toISOString(), '2025-03-03T02:00:01.000Z');
  });

  it('Pacific/Auckland fall back in April: +13 → +12', () => {
    const before = Date.parse('2025-04-04T00:00:00Z');
    const spec = parse({ type: 'repeat', at: '08:00', days: 'daily', do: 'on' }, 'Pacific/Auckland', before);
    assert.equal(t.wireTimer(spec, before).at, '0 19 * * 0,1,2,3,4,5,6');
    assert.equal(t.wireTimer(spec, Date.parse('2025-04-06T00:00:00Z')).at, '0 20 * * 0,1,2,3,4,5,6');
  });

  it('a time skipped by the change fires an hour later that day, then at the new offset', () => {
    const before = Date.parse('2025-03-29T12:00:00Z');
    const spec = parse({ type: 'repeat', at: '02:30', days: ['sun'], do: 'on' }, 'Europe/Berlin', before);
    assert.equal(t.wireTimer(spec, before).at, '30 1 * * 0');
    const first = t.nextRecheck([spec], before);
    assert.equal(new Date(first).toISOString(), '2025-03-30T01:00:01.000Z');
    assert.equal(t.wireTimer(spec, first).at, '30 1 * * 0', 'still today\'s 03:30 CEST');
    const second = t.nextRecheck([spec], first);
    assert.equal(new Date(second).toISOString(), '2025-03-30T01:30:01.000Z');
    assert.equal(t.wireTimer(spec, second).at, '30 0 * * 0');
  });

  it('zones without daylight saving, and once timers, need no re-push', () => {
    const n = Date.UTC(2025, 0, 1);
    assert.equal(t.nextRecheck([parse({ type: 'repeat', at: '08:00', do: 'on' }, 'Asia/Kolkata', n)], n), undefined);
    assert.equal(t.nextRecheck([parse({ type: 'once', at: '2025-06-01T08:00', do: 'on' }, 'Europe/Berlin', n)], n), undefined);
    // A once timer on the far side of a change uses that day's offset.
    assert.equal(t.wireTimer(parse({ type: 'once', at: '2025-06-01T08:00', do: 'on' }, 'Europe/Berlin', n), n).at, '2025-06-01T06:00:00.000Z');
  });
});

describe('timers: limits and bad input', () => {
  const n = Date.UTC(2025, 0, 1);
  const once = (i) => parse({ type: 'once', at: `2025-02-0${(i % 9) + 1}T08:00Z`, do: 'on' }, 'UTC', n);

  it('8 timers and 1 loop timer at most, ids unique', () => {
    const eight = Array.from({ length: 8 }, (_, i) => ({ ...once(i), id: `00000000-0000-4000-8000-00000000000${i}` }));
    t.checkLimits(eight);
    refuses(() => t.checkLimits([...eight, { ...once(9), id: ID }]), /too many timers: a device holds at most 8/);
    const loop = (id) => ({ ...parse({ type: 'duration', every: 10, do: 'on' }, 'UTC', n), id });
    t.checkLimits([loop(ID)]);
    refuses(() => t.checkLimits([loop(ID), loop('00000000-0000-4000-8000-000000000009')]), /at most 1 duration timer/);
    refuses(() => t.checkLimits([{ ...once(1), id: ID }, { ...once(2), id: ID }]), /two timers have the id/);
  });

  it('bad times, past once times, unknown types and keys are refused with a clear message', () => {
    refuses(() => parse({ type: 'once', at: 'tomorrow 8am', do: 'on' }, 'UTC', n), /must be an ISO time/);
    refuses(() => parse({ type: 'once', at: '2025-02-30T08:00', do: 'on' }, 'UTC', n), /must be an ISO time/);
    refuses(() => parse({ type: 'once', at: '2024-12-31T23:59', do: 'on' }, 'UTC', n), /is in the past/);
    refuses(() => parse({ type: 'once', do: 'on' }, 'UTC', n), /must be an ISO time/);
    refuses(() => parse({ type: 'weekly', at: '08:00', do: 'on' }, 'UTC', n), /timer type must be/);
    refuses(() => parse({ type: 'repeat', at: '8am', do: 'on' }, 'UTC', n), /"HH:MM"/);
    refuses(() => parse({ type: 'repeat', at: '24:00', do: 'on' }, 'UTC', n), /"HH:MM"/);
    refuses(() => parse({ type: 'repeat', at: '08:00', days: ['funday'], do: 'on' }, 'UTC', n), /not a weekday/);
    refuses(() => parse({ type: 'repeat', at: '08:00', day: 'mon', do: 'on' }, 'UTC', n), /has no "day"/);
    refuses(() => parse({ type: 'repeat', at: '08:00', do: { switch: 'dim' } }, 'UTC', n), /"on" or "off"/);
    refuses(() => parse({ type: 'repeat', at: '08:00' }, 'UTC', n), /must be an object such as/);
    refuses(() => parse({ type: 'delay', minutes: 0, do: 'on' }, 'UTC', n), /whole number of minutes/);
    refuses(() => parse({ type: 'duration', every: 10, after: 10, then: 'off', do: 'on' }, 'UTC', n), /shorter than "every"|from 1 to 9/);
    refuses(() => parse({ type: 'duration', every: 10, then: 'off', do: 'on' }, 'UTC', n), /needs "after"/);
    refuses(() => parse({ type: 'once', at: '2025-02-01T08:00', do: 'on', timezone: 'Mars/Olympus' }, 'UTC', n), /IANA time zone/);
    refuses(() => parse({ type: 'once', at: '2025-02-01T08:00', do: 'on', id: 'kitchen' }, 'UTC', n), /use "name"/);
    refuses(() => parse('on', 'UTC', n), /a timer must be an object/);
  });

  it('days accept names, numbers (Sunday = 0 or 7) and groups', () => {
    assert.deepEqual(t.parseDays(['Monday', 'fri', 0]), [0, 1, 5]);
    assert.deepEqual(t.parseDays('weekends'), [0, 6]);
    assert.deepEqual(t.parseDays('mon,wed 7'), [0, 1, 3]);
    assert.deepEqual(t.parseDays(undefined), [0, 1, 2, 3, 4, 5, 6]);
  });

  it('compares arrays regardless of key order; no timers equals [] and 0', () => {
    assert.ok(t.sameWire([{ a: 1, b: { c: 2, d: 3 } }], [{ b: { d: 3, c: 2 }, a: 1 }]));
    assert.ok(t.sameWire([], 0));
    assert.ok(t.sameWire([], undefined));
    assert.ok(!t.sameWire([{ a: 1 }], [{ a: 2 }]));
  });

  it('an update of minutes restarts a countdown; a type change keeps identity and action', () => {
    const cur = { id: ID, type: 'delay', minutes: 5, at: '2025-01-01T00:05:00+00:00', do: { switch: 'on' }, enabled: true, timezone: 'UTC', next: 'x' };
    assert.deepEqual(t.mergeUserTimer(cur, { minutes: 10 }), { id: ID, type: 'delay', minutes: 10, do: { switch: 'on' }, enabled: true, timezone: 'UTC' });
    assert.deepEqual(t.mergeUserTimer(cur, { type: 'repeat', at: '08:00' }), { type: 'repeat', at: '08:00', id: ID, timezone: 'UTC', do: { switch: 'on' }, enabled: true });
  });
});
