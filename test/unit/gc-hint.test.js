'use strict';
// The coolkit-server's one-time hint for busy installations (README "Install" / "Performance"):
// due from GC_HINT_DEVICES online devices unless Node was started with a semi-space size, and the
// advice it gives (NODE_OPTIONS=--max-semi-space-size=32) really enlarges the young generation.
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const { gcHintDue, hasSemiSpaceOption, GC_HINT_DEVICES } = require('../../dist/src/cloud/gc-hint');

describe('GC hint', () => {
  it('is due only from GC_HINT_DEVICES devices online', () => {
    assert.equal(gcHintDue(GC_HINT_DEVICES - 1, [], undefined), false);
    assert.equal(gcHintDue(GC_HINT_DEVICES, [], undefined), true);
    assert.equal(gcHintDue(5000, [], ''), true);
  });

  it('is not due when Node was started with a semi-space size, on the command line or in NODE_OPTIONS', () => {
    assert.equal(gcHintDue(5000, ['--max-semi-space-size=32'], undefined), false);
    assert.equal(gcHintDue(5000, [], '--max_old_space_size=512 --max-semi-space-size=64'), false);
    assert.equal(gcHintDue(5000, ['--max_semi_space_size', '32'], undefined), false);
    // other options do not count
    assert.equal(hasSemiSpaceOption(['--max-old-space-size=512', '--expose-gc'], '--trace-warnings'), false);
    assert.equal(hasSemiSpaceOption([], '--max-semi-space-sizes=3'), false);
  });

  it('the coolkit-server log text says what to do, in en-US and zh-CN', () => {
    for (const lang of ['en-US', 'zh-CN']) {
      const text = require(`../../locales/${lang}/coolkit-server.json`)['coolkit-server'].log.gcHint;
      assert.match(text, /NODE_OPTIONS=--max-semi-space-size=32/, lang);
      assert.match(text, /__online__/, lang);
    }
  });

  it('the advised NODE_OPTIONS reaches the process and enlarges its young generation', function () {
    this.timeout(20_000);
    // Allocate enough short-lived objects for the new space to grow to its maximum, then report it.
    const script = `
      const v8 = require('node:v8');
      const { hasSemiSpaceOption } = require(${JSON.stringify(require.resolve('../../dist/src/cloud/gc-hint'))});
      let keep = [], max = 0;
      for (let i = 0; i < 2e6; i++) {
        keep.push({ i, s: 'x' + i });
        if (keep.length > 150000) keep = [];
        if (i % 50000 === 0) max = Math.max(max, v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size);
      }
      process.stdout.write(JSON.stringify({ max, seen: hasSemiSpaceOption(process.execArgv, process.env.NODE_OPTIONS) }));`;
    const run = (nodeOptions) => JSON.parse(execFileSync(process.execPath, ['-e', script], { env: { ...process.env, NODE_OPTIONS: nodeOptions } }).toString());
    const plain = run('');
    const advised = run('--max-semi-space-size=32');
    assert.equal(plain.seen, false);
    assert.equal(advised.seen, true);
    assert.ok(advised.max > plain.max, `new space ${advised.max} with the option vs ${plain.max} without`);
  });
});
