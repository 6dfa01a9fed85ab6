'use strict';
// Starting a real CoolkitCloud on 127.0.0.1 with a fresh state directory. The generated
// certificate is made once per test run and copied into each state directory, so each test
// still runs real TLS but does not pay for RSA key generation.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { CoolkitCloud } = require('../../dist/src/cloud/server');
const { ensureSelfSignedCertificate } = require('../../dist/src/cloud/tls');

const cacheDir = path.join(os.tmpdir(), `coolkit-test-cert-${process.pid}`);
let certReady;

function tmpDir(prefix = 'coolkit-test-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

async function stateDirWithCert() {
  certReady ??= ensureSelfSignedCertificate(cacheDir);
  await certReady;
  const dir = tmpDir();
  fs.cpSync(cacheDir, path.join(dir, 'tls'), { recursive: true });
  return dir;
}

/** A logger that records lines, for asserting what the user would read. */
function recordingLogger() {
  const lines = { debug: [], info: [], warn: [], error: [] };
  const logger = {};
  for (const level of Object.keys(lines)) logger[level] = (m) => lines[level].push(m);
  return { logger, lines };
}

async function startCloud(options = {}) {
  const stateDir = options.stateDir ?? await stateDirWithCert();
  const { logger, lines } = recordingLogger();
  const cloud = new CoolkitCloud({ bind: '127.0.0.1', port: 0, advertiseHost: '127.0.0.1', tls: 'auto', stateDir, logger, ...options });
  await cloud.start();
  const scheme = cloud.options.tls === 'off' ? 'http' : 'https';
  const ws = cloud.options.tls === 'off' ? 'ws' : 'wss';
  return { cloud, stateDir, lines, base: `${scheme}://127.0.0.1:${cloud.port}`, wsUrl: `${ws}://127.0.0.1:${cloud.port}/api/ws` };
}

module.exports = { tmpDir, stateDirWithCert, startCloud, recordingLogger };
