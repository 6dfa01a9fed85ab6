'use strict';
// `node-red-dev validate`, the Flow Library's own checks, must pass: package metadata, node files
// with parseable registerType calls, examples for every node, and dependencies.
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const path = require('node:path');

describe('node-red-dev validate', function () {
  this.timeout(180000);

  it('reports no failures, and no warning but the scoped-name advice (the package name is fixed)', (done) => {
    const root = path.resolve(__dirname, '../..');
    const bin = path.join(path.dirname(require.resolve('node-red-dev/package.json')), 'bin', 'run');
    execFile(process.execPath, ['-r', path.join(root, 'test/helpers/offline-catalogue.js'), bin, 'validate', '-p', root], { cwd: root, encoding: 'utf8' }, (err, stdout, stderr) => {
      try {
        const out = `${stdout}\n${stderr}`;
        assert.ifError(err);
        assert.match(out, /Complete/);
        assert.doesNotMatch(out, /❌/);
        assert.match(out, /Examples found for all nodes/);
        const warnings = out.split('\n').filter((l) => /Warning/.test(l));
        assert.deepEqual(warnings.filter((l) => !/P04/.test(l)), [], warnings.join('\n'));
        done();
      } catch (e) {
        done(e);
      }
    });
  });
});
