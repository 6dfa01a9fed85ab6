'use strict';
// A real Node-RED process for end-to-end tests: the package is `npm pack`ed, installed into a
// fresh user directory like a user would from the palette, and Node-RED (4.1 or 5, see
// COOLKIT_NODE_RED) is started on 127.0.0.1 with admin authentication on.
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { tmpDir } = require('./cloud');
const { request, sleep } = require('./raw');

const root = path.resolve(__dirname, '../..');
const runtime = process.env.COOLKIT_NODE_RED || 'node-red';
const runtimeDir = path.dirname(require.resolve(`${runtime}/package.json`));
const PASSWORD = 'e2e-password';

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

/** Pack the package and install the tarball into a new user directory. */
function installPackage() {
  const packDir = tmpDir('coolkit-pack-');
  const out = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', packDir], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const tarball = path.join(packDir, JSON.parse(out)[0].filename);
  const userDir = tmpDir('coolkit-userdir-');
  fs.writeFileSync(path.join(userDir, 'package.json'), JSON.stringify({ name: 'node-red-project', private: true }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--omit=dev', tarball], { cwd: userDir, stdio: ['ignore', 'ignore', 'inherit'] });
  return { userDir, tarball };
}

function writeSettings(userDir, port) {
  const bcrypt = require(require.resolve('bcryptjs', { paths: [runtimeDir] }));
  const hash = bcrypt.hashSync(PASSWORD, 8);
  const settings = {
    uiHost: '127.0.0.1',
    uiPort: port,
    flowFile: 'flows.json',
    credentialSecret: 'e2e-secret',
    adminAuth: { type: 'credentials', users: [{ username: 'admin', password: hash, permissions: '*' }] },
    logging: { console: { level: 'info', metrics: false, audit: false } },
    diagnostics: { enabled: false },
    telemetry: { enabled: false },
    externalModules: { palette: { allowInstall: false } },
  };
  const file = path.join(userDir, 'settings.js');
  fs.writeFileSync(file, `module.exports = ${JSON.stringify(settings, null, 2)};\n`);
  return file;
}

class NodeRedProcess {
  constructor(userDir) {
    this.userDir = userDir;
    this.log = '';
  }

  async start() {
    this.port = this.port ?? await freePort();
    const settings = writeSettings(this.userDir, this.port);
    this.base = `http://127.0.0.1:${this.port}`;
    this.child = spawn(process.execPath, [path.join(runtimeDir, 'red.js'), '-u', this.userDir, '-s', settings], {
      cwd: this.userDir,
      env: { ...process.env, NODE_RED_ENABLE_PROJECTS: 'false' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const onData = (d) => { this.log += d.toString(); };
    this.child.stdout.on('data', onData);
    this.child.stderr.on('data', onData);
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
    const until = Date.now() + 30000;
    for (;;) {
      if (this.child.exitCode !== null) throw new Error(`Node-RED exited:\n${this.log}`);
      const res = await request(this.base, '/auth/login', { method: 'GET' }).catch(() => null);
      if (res && res.status === 200) break;
      if (Date.now() > until) throw new Error(`Node-RED did not start:\n${this.log}`);
      await sleep(200);
    }
    const token = await request(this.base, '/auth/token', { body: { client_id: 'node-red-admin', grant_type: 'password', scope: '*', username: 'admin', password: PASSWORD } });
    if (token.status !== 200) throw new Error(`login failed: ${token.text}`);
    this.token = token.json.access_token;
  }

  api(pathname, { method = 'GET', body, headers = {} } = {}) {
    return request(this.base, pathname, { method, body, headers: { Authorization: `Bearer ${this.token}`, 'Node-RED-Deployment-Type': 'full', ...headers } });
  }

  async deploy(flows) {
    const res = await this.api('/flows', { method: 'POST', body: flows });
    if (res.status !== 200 && res.status !== 204) throw new Error(`deploy failed ${res.status}: ${res.text}`);
  }

  async stop(signal = 'SIGINT') {
    if (!this.child || this.child.exitCode !== null) return;
    this.child.kill(signal);
    const t = setTimeout(() => this.child.kill('SIGKILL'), 15000);
    await this.exited;
    clearTimeout(t);
  }
}

module.exports = { installPackage, NodeRedProcess, freePort, runtime, runtimeDir };
