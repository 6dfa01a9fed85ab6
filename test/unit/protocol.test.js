'use strict';
const assert = require('node:assert/strict');
const p = require('../../dist/src/protocol');

const FACTORY = 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee';
const ISSUED = '11111111-2222-4333-8444-555555555555';

describe('protocol: parsing device frames', () => {
  it('classifies the seed register, date, update, query and ack messages', () => {
    const reg = p.parseDeviceFrame(JSON.stringify({ userAgent: 'device', apikey: FACTORY, deviceid: '100008db11', action: 'register', version: 2, romVersion: '1.5.5', model: 'ITA-GZ1-GL', ts: 970 }));
    assert.equal(reg.kind, 'register');
    assert.equal(reg.msg.model, 'ITA-GZ1-GL');
    assert.equal(p.parseDeviceFrame(JSON.stringify({ userAgent: 'device', apikey: ISSUED, deviceid: '100008db11', action: 'date' })).kind, 'date');
    const upd = p.parseDeviceFrame(JSON.stringify({ userAgent: 'device', apikey: ISSUED, deviceid: '100008db11', action: 'update', params: { switch: 'off', rssi: -31 } }));
    assert.equal(upd.kind, 'update');
    assert.deepEqual(upd.msg.params, { switch: 'off', rssi: -31 });
    const q = p.parseDeviceFrame(JSON.stringify({ userAgent: 'device', apikey: ISSUED, deviceid: '100008db11', action: 'query', params: ['timers'] }));
    assert.equal(q.kind, 'query');
    const ack = p.parseDeviceFrame(JSON.stringify({ error: 0, userAgent: 'device', apikey: ISSUED, deviceid: '100008db11', sequence: '1505608036953' }));
    assert.equal(ack.kind, 'ack');
    assert.equal(ack.msg.sequence, '1505608036953');
    assert.deepEqual(p.parseDeviceFrame('ping'), { kind: 'ping' });
  });

  it('tolerates numbers sent as strings and extra fields', () => {
    const reg = p.parseDeviceFrame(JSON.stringify({ apikey: FACTORY, deviceid: '100008DB11', action: 'register', version: '2', ts: '970', romVersion: '2.0.4', model: 'PSA-BHA-GL', mac: 'x', d_seq: 4 }));
    assert.equal(reg.kind, 'register');
    assert.equal(reg.msg.mac, 'x');
  });

  it('is strict about deviceid, apikey, action and sequence', () => {
    const cases = [
      [{ apikey: FACTORY, deviceid: '12345', action: 'register' }, /deviceid/],
      [{ apikey: 'not-a-uuid', deviceid: '100008db11', action: 'register' }, /apikey/],
      [{ apikey: FACTORY, deviceid: '100008db11', action: 'explode' }, /unknown action "explode"/],
      [{ apikey: FACTORY, deviceid: '100008db11', action: 42 }, /unknown action/],
      [{ apikey: FACTORY, deviceid: '100008db11', action: 'update', params: 'on' }, /params must be object/],
      [{ apikey: FACTORY, deviceid: '100008db11', action: 'query', params: [1] }, /params/],
      [{ apikey: FACTORY, deviceid: '100008db11', error: 0, sequence: 12345 }, /sequence must be string/],
      [{ apikey: FACTORY, deviceid: '100008db11', error: 'zero', sequence: '1' }, /error must be integer/],
      [{ deviceid: '100008db11' }, /neither an action nor/],
    ];
    for (const [msg, why] of cases) {
      const r = p.parseDeviceFrame(JSON.stringify(msg));
      assert.equal(r.kind, 'invalid', JSON.stringify(msg));
      assert.equal(r.code, 400);
      assert.match(r.reason, why);
    }
  });

  it('rejects malformed, non-object and deeply nested JSON without throwing', () => {
    assert.equal(p.parseDeviceFrame('{"action":"upd').reason, 'malformed JSON');
    assert.equal(p.parseDeviceFrame('[1,2]').reason, 'message is not a JSON object');
    assert.equal(p.parseDeviceFrame('null').reason, 'message is not a JSON object');
    let deep = '1';
    for (let i = 0; i < 50000; i++) deep = `[${deep}]`;
    const r = p.parseDeviceFrame(`{"action":"update","deviceid":"100008db11","apikey":"${FACTORY}","params":{"x":${deep}}}`);
    assert.equal(r.kind, 'invalid');
    assert.match(r.reason, /deeper than 12/);
    assert.equal(r.deviceid, '100008db11');
  });

  it('validates dispatch bodies', () => {
    assert.equal(p.checkDispatch({ accept: 'ws;2', version: 2, ts: 933, deviceid: '100008db11', apikey: FACTORY, model: 'ITA-GZ1-GL', romVersion: '1.5.5' }).ok, true);
    assert.match(p.checkDispatch({ deviceid: '100008db11' }).reason, /apikey/);
    assert.equal(p.checkDispatch('x').ok, false);
  });
});

describe('protocol: reply builders', () => {
  it('builds the dispatch reply with a numeric port', () => {
    assert.deepEqual(p.buildDispatchReply('192.168.1.5', 8443), { error: 0, reason: 'ok', IP: '192.168.1.5', port: 8443 });
  });

  it('builds the register reply in the capture shape', () => {
    const r = p.buildRegisterReply('100008db11', ISSUED, 145);
    assert.deepEqual(Object.keys(r), ['error', 'deviceid', 'apikey', 'config']);
    assert.equal(r.config.hb, 1);
    assert.equal(r.config.hbInterval, 145);
    assert.equal(r.config.devConfig.storeAppsecret, '');
    assert.equal(Object.keys(r.config.devConfig).length, 15);
  });

  it('builds date in real UTC ISO', () => {
    const r = p.buildDateReply('100008db11', ISSUED, new Date(Date.UTC(2017, 8, 17, 0, 24, 54, 955)));
    assert.deepEqual(r, { error: 0, deviceid: '100008db11', apikey: ISSUED, date: '2017-09-17T00:24:54.955Z' });
    const now = Date.now();
    assert.ok(Math.abs(Date.parse(p.buildDateReply('a', 'b').date) - now) < 2000);
  });

  it('answers query with stored keys or 0', () => {
    assert.equal(p.selectQueryParams({}, ['timers']), 0);
    assert.equal(p.selectQueryParams({ switch: 'on' }, ['timers']), 0);
    assert.deepEqual(p.selectQueryParams({ switch: 'on', timers: [] }, ['timers']), { timers: [] });
    assert.deepEqual(p.selectQueryParams({ switch: 'on' }, []), { switch: 'on' });
    assert.deepEqual(p.buildQueryReply('100008db11', ISSUED, 0), { error: 0, deviceid: '100008db11', apikey: ISSUED, params: 0 });
  });

  it('builds server updates exactly like the capture', () => {
    const u = p.buildServerUpdate('100008db11', ISSUED, '1505608036953', { switch: 'on' });
    assert.equal(JSON.stringify(u), JSON.stringify({ action: 'update', deviceid: '100008db11', apikey: ISSUED, userAgent: 'app', sequence: '1505608036953', ts: 0, params: { switch: 'on' }, from: 'app' }));
  });

  it('issues unique string sequences even within one millisecond', () => {
    const g = new p.SequenceGenerator();
    const seen = new Set();
    for (let i = 0; i < 1000; i++) seen.add(g.next(1505608036953));
    assert.equal(seen.size, 1000);
    assert.equal(typeof g.next(), 'string');
  });
});

describe('protocol: state merge', () => {
  it('merges partial reports instead of replacing state', () => {
    const state = { switch: 'off', rssi: -31, startup: 'off' };
    p.mergeParams(state, { switch: 'on' });
    assert.deepEqual(state, { switch: 'on', rssi: -31, startup: 'off' });
  });

  it('merges per-outlet arrays by outlet', () => {
    const state = { switches: [0, 1, 2, 3].map((outlet) => ({ switch: 'off', outlet })) };
    p.mergeParams(state, { switches: [{ switch: 'on', outlet: 2 }] });
    assert.deepEqual(state.switches.map((s) => s.switch), ['off', 'off', 'on', 'off']);
  });

  it('ignores prototype-polluting keys', () => {
    const state = {};
    p.mergeParams(state, JSON.parse('{"__proto__":{"polluted":1},"switch":"on"}'));
    assert.equal({}.polluted, undefined);
    assert.equal(state.switch, 'on');
  });
});

describe('protocol: copies and depth', () => {
  it('cloneJson copies a report deeply: changing the copy leaves the original as it was', () => {
    const state = { switch: 'on', power: '12.3', switches: [{ outlet: 0, switch: 'on' }], timers: [{ mId: 'a', do: { switch: 'off' } }], n: null };
    const copy = p.cloneJson(state);
    assert.deepEqual(copy, state);
    copy.switches[0].switch = 'off';
    copy.timers[0].do.switch = 'on';
    copy.extra = 1;
    assert.equal(state.switches[0].switch, 'on');
    assert.equal(state.timers[0].do.switch, 'off');
    assert.equal('extra' in state, false);
    assert.equal(p.cloneJson('x'), 'x');
    assert.equal(p.cloneJson(null), null);
  });

  it('jsonDepth counts nesting, stops at the limit, and survives hostile nesting', () => {
    assert.equal(p.jsonDepth(1), 0);
    assert.equal(p.jsonDepth({}), 1);
    assert.equal(p.jsonDepth({ a: { b: [1, { c: 2 }] } }), 4);
    assert.equal(p.jsonDepth([[[]]]), 3);
    let deep = {};
    for (let i = 0; i < 100000; i++) deep = { d: deep };
    assert.equal(p.jsonDepth(deep), p.MAX_DEPTH + 1);
    const frame = `{"action":"update","deviceid":"1000aa0001","apikey":"${FACTORY}","params":${'['.repeat(5000)}${']'.repeat(5000)}}`;
    const parsed = p.parseDeviceFrame(frame);
    assert.equal(parsed.kind, 'invalid');
    assert.match(parsed.reason, /nests deeper/);
  });
});

describe('protocol: flow payloads to params', () => {
  const one = { switch: 'off' };
  const four = { switches: [0, 1, 2, 3].map((outlet) => ({ switch: outlet === 1 ? 'on' : 'off', outlet })) };

  it('accepts the friendly forms', () => {
    assert.deepEqual(p.payloadToParams('on', one), { switch: 'on' });
    assert.deepEqual(p.payloadToParams('OFF', one), { switch: 'off' });
    assert.deepEqual(p.payloadToParams(true, one), { switch: 'on' });
    assert.deepEqual(p.payloadToParams(false, one), { switch: 'off' });
    assert.deepEqual(p.payloadToParams('toggle', one), { switch: 'on' });
    assert.deepEqual(p.payloadToParams({ switch: 'toggle' }, { switch: 'on' }), { switch: 'off' });
    assert.deepEqual(p.payloadToParams({ outlet: 2, switch: 'on' }, four), { switches: [{ switch: 'on', outlet: 2 }] });
    assert.deepEqual(p.payloadToParams({ outlet: 1, switch: 'toggle' }, four), { switches: [{ switch: 'off', outlet: 1 }] });
    assert.deepEqual(p.payloadToParams({ startup: 'stay', sledOnline: 'off' }, one), { startup: 'stay', sledOnline: 'off' });
  });

  it('switches every outlet of a multi-channel device for a plain on/off', () => {
    assert.deepEqual(p.payloadToParams('on', four).switches.map((s) => s.switch), ['on', 'on', 'on', 'on']);
    assert.deepEqual(p.payloadToParams('toggle', four).switches.map((s) => s.switch), ['off', 'off', 'off', 'off']);
  });

  it('fails clearly on what it cannot send', () => {
    const bad = [
      ['dance', /not a command/],
      [42, /not a command/],
      [null, /not null/],
      [[1], /not an array/],
      [{}, /empty/],
      [{ outlet: -1, switch: 'on' }, /outlet must be/],
      [{ switch: 'maybe' }, /"switch" must be/],
      [{ outlet: 1, switch: 'on' }, /outlet 1 does not exist/],
    ];
    for (const [payload, why] of bad) {
      assert.throws(() => p.payloadToParams(payload, one), (err) => err.code === 400 && why.test(err.message), JSON.stringify(payload));
    }
    assert.throws(() => p.payloadToParams({ outlet: 1, switch: 'maybe' }, four), /needs "switch"/);
    assert.throws(() => p.payloadToParams('toggle', {}), /has not reported/);
    assert.throws(() => p.payloadToParams({ outlet: 3, switch: 'toggle' }, {}), /not known/);
  });
});
