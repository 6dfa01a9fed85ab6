'use strict';
// Run set-up for the bench driver: a snapshot of the built package (so a concurrent rebuild of
// dist/ cannot change the code under test mid-run), the RSA-2048 certificate shared by the TLS
// baseline and the cloud, CPU pinning with taskset, and the open-file limit.
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '../../..');

/** Copy package.json + dist/ to a temp dir; node_modules is a link to the repo's. */
function snapshotPackage() {
  const dist = path.join(root, 'dist');
  if (!fs.existsSync(path.join(dist, 'nodes', 'coolkit-server.js'))) {
    throw new Error('dist/ is missing: build first (node scripts/build.js, or npm run bench)');
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coolkit-bench-pkg-'));
  fs.copyFileSync(path.join(root, 'package.json'), path.join(dir, 'package.json'));
  fs.cpSync(dist, path.join(dir, 'dist'), { recursive: true });
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  return dir;
}

/** The RSA-2048 self-signed certificate, generated once and kept in the temp dir. */
async function benchCertificate() {
  const dir = path.join(os.tmpdir(), 'coolkit-bench-cert-rsa2048');
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  if (!fs.existsSync(certFile) || !fs.existsSync(keyFile)) {
    const selfsigned = require('selfsigned');
    const pems = await selfsigned.generate(null, { keySize: 2048, algorithm: 'sha256' });
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(keyFile + '.tmp', pems.private, { mode: 0o600 });
    fs.writeFileSync(certFile + '.tmp', pems.cert);
    fs.renameSync(keyFile + '.tmp', keyFile);
    fs.renameSync(certFile + '.tmp', certFile);
  }
  return { certFile, keyFile, arg: `${certFile},${keyFile}` };
}

/** Can we pin processes to cores? */
function pinning(disabled) {
  const cores = os.cpus().length;
  if (disabled) return { enabled: false, reason: 'disabled by --no-pin', cores };
  if (cores < 2) return { enabled: false, reason: `only ${cores} core`, cores };
  try {
    execFileSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' });
    return { enabled: true, server: '1', generator: '0', cores };
  } catch {
    return { enabled: false, reason: 'taskset not available (install util-linux) or not permitted', cores };
  }
}

/** Soft and hard limits on open files, from /proc/self/limits. */
function fileLimits() {
  try {
    const line = fs.readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const [soft, hard] = line.trim().split(/\s+/).slice(3, 5).map((v) => (v === 'unlimited' ? Infinity : Number(v)));
    return { soft, hard };
  } catch {
    return { soft: NaN, hard: NaN };
  }
}

/**
 * Spawn a Node child with IPC, pinned to `core` when pinning is on, with the open-file soft
 * limit raised to `nofile` (up to the hard limit) through a shell `ulimit` when needed.
 */
function spawnNode(script, args, { core, pin, nofile, execArgv = [], logFile, env = {} }) {
  let cmd = process.execPath;
  let argv = [...execArgv, script, ...args];
  if (pin && pin.enabled && core !== undefined) {
    argv = ['-c', String(core), cmd, ...argv];
    cmd = 'taskset';
  }
  const limits = fileLimits();
  if (nofile && limits.soft < nofile) {
    const target = Math.min(nofile, limits.hard);
    argv = ['-c', `ulimit -n ${target} && exec "$@"`, 'sh', cmd, ...argv];
    cmd = 'sh';
  }
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env: { ...process.env, ...env } });
  const out = logFile ? fs.createWriteStream(logFile, { flags: 'a' }) : null;
  let tail = '';
  const onData = (d) => {
    tail = (tail + d.toString()).slice(-4000);
    if (out) out.write(d);
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  child.tail = () => tail;
  child.on('exit', () => out && out.end());
  return child;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** TCP socket memory of the whole machine (kernel, not in any RSS), bytes. */
function sockstat() {
  try {
    const text = fs.readFileSync('/proc/net/sockstat', 'utf8');
    const m = text.match(/TCP: inuse (\d+) orphan (\d+) tw (\d+) alloc (\d+) mem (\d+)/);
    if (!m) return null;
    return { inuse: Number(m[1]), tw: Number(m[3]), alloc: Number(m[4]), memBytes: Number(m[5]) * 4096 };
  } catch {
    return null;
  }
}

module.exports = { root, snapshotPackage, benchCertificate, pinning, fileLimits, spawnNode, freePort, sockstat };
