'use strict';
// A private Mosquitto broker for tests: its own process on a free 127.0.0.1 port with a generated
// config (anonymous, no persistence), so a test can stop and restart it. Mosquitto comes from
// Debian (`.ci/run` installs it; Debian puts it in /usr/sbin, often not on PATH).
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { tmpDir } = require('./cloud');
const { freePort } = require('./nrprocess');
const { sleep } = require('./raw');
const net = require('node:net');

function mosquittoBinary() {
  for (const candidate of ['/usr/sbin/mosquitto', '/usr/local/sbin/mosquitto']) {
    if (fs.existsSync(candidate)) return candidate;
  }
  try {
    return execFileSync('sh', ['-c', 'command -v mosquitto'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Skip the suite without mosquitto, except under CI where it must be installed (then fail). */
function requireMosquitto(ctx) {
  const bin = mosquittoBinary();
  if (bin) return bin;
  if (process.env.CI) throw new Error('mosquitto is not installed (apt-get install mosquitto): required under CI');
  ctx.skip();
  return undefined;
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

class Mosquitto {
  /** `users`: {name: password}; when given, anonymous clients are refused. */
  constructor(bin, { users } = {}) {
    this.bin = bin;
    this.dir = tmpDir('coolkit-mosquitto-');
    this.log = '';
    this.users = users;
  }

  get url() {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async start() {
    this.port = this.port ?? await freePort();
    const conf = path.join(this.dir, 'mosquitto.conf');
    const auth = ['allow_anonymous true'];
    if (this.users) {
      const file = path.join(this.dir, 'passwd');
      fs.writeFileSync(file, '', { mode: 0o600 });
      for (const [name, password] of Object.entries(this.users)) {
        execFileSync(path.join(path.dirname(this.bin).replace(/sbin$/, 'bin'), 'mosquitto_passwd'), ['-b', file, name, password], { stdio: 'ignore' });
      }
      auth.splice(0, 1, 'allow_anonymous false', `password_file ${file}`);
      // started as root, mosquitto switches to its own user, which cannot read our private temp dir
      if (process.getuid?.() === 0) auth.push('user root');
    }
    fs.writeFileSync(conf, [`listener ${this.port} 127.0.0.1`, ...auth, 'persistence false', 'log_dest stderr', 'log_type error', 'log_type warning', ''].join('\n'));
    this.child = spawn(this.bin, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    const onData = (d) => { this.log = (this.log + d.toString()).slice(-20000); };
    this.child.stdout.on('data', onData);
    this.child.stderr.on('data', onData);
    this.exited = new Promise((resolve) => this.child.once('exit', resolve));
    const until = Date.now() + 15000;
    for (;;) {
      if (this.child.exitCode !== null) throw new Error(`mosquitto exited: ${this.log}`);
      if (await canConnect(this.port)) return;
      if (Date.now() > until) throw new Error(`mosquitto did not start: ${this.log}`);
      await sleep(50);
    }
  }

  async stop() {
    if (!this.child || this.child.exitCode !== null) return;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(t);
  }
}

module.exports = { Mosquitto, mosquittoBinary, requireMosquitto };
