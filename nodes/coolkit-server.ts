/**
 * `coolkit-server` config node: runs one local cloud (`CoolkitCloud`) shared by every
 * `sonoff-*` node that points at it, pushes its status to them (the MQTT broker node pattern),
 * and serves the editor's device list on an admin endpoint.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import type { NodeAPI, NodeDef, NodeStatus } from 'node-red';
import { CoolkitCloud, ListenError } from '../src/cloud/server';
import { DeviceEventRouter } from '../src/cloud/router';
import type { Logger } from '../src/cloud/log';
import type { CoolkitServerNode, ServerUser } from './types';

interface ServerConfig extends NodeDef {
  bind: string;
  port: number | string;
  advertiseHost: string;
  tls: 'auto' | 'files' | 'off';
  certFile: string;
  keyFile: string;
  legacyTls: boolean | string;
  hbInterval: number | string;
  commandTimeout: number | string;
  uiActiveInterval: number | string;
}

/** Status updates are coalesced: a herd of 10 000 reconnecting devices makes one update, not 10 000. */
const STATUS_COALESCE_MS = 250;
/** A port that was busy is tried again after this long, while the node lives. */
const RETRY_LISTEN_MS = 15_000;

function toInt(value: unknown, fallback: number): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  return typeof n === 'number' && Number.isInteger(n) ? n : fallback;
}

export = function register(RED: NodeAPI): void {
  function CoolkitServer(this: CoolkitServerNode, config: ServerConfig): void {
    RED.nodes.createNode(this, config);
    const node = this;
    const users = new Map<string, ServerUser>();
    const router = new DeviceEventRouter();
    const port = toInt(config.port, 8443);
    const logger: Logger = {
      debug: (m) => node.debug(m),
      info: (m) => node.log(m),
      warn: (m) => node.warn(m),
      error: (m) => node.error(m),
    };
    const userDir = (RED.settings as { userDir?: string }).userDir ?? path.join(os.homedir(), '.node-red');
    const cloud = new CoolkitCloud({
      bind: config.bind || '0.0.0.0',
      port,
      advertiseHost: (config.advertiseHost ?? '').trim(),
      tls: config.tls === 'files' || config.tls === 'off' ? config.tls : 'auto',
      certFile: config.certFile ?? '',
      keyFile: config.keyFile ?? '',
      legacyTls: config.legacyTls !== false && config.legacyTls !== 'false',
      hbInterval: toInt(config.hbInterval, 145),
      commandTimeoutMs: toInt(config.commandTimeout, 10) * 1000,
      uiActiveIntervalMs: toInt(config.uiActiveInterval, 50) * 1000,
      stateDir: path.join(userDir, 'coolkit'),
      stateFile: `devices-${node.id.replace(/[^0-9A-Za-z_-]/g, '_')}.json`,
      logger,
    });
    node.cloud = cloud;

    let closing = false;
    let retryTimer: NodeJS.Timeout | undefined;
    let statusTimer: NodeJS.Timeout | undefined;

    function currentStatus(): { status: NodeStatus; healthy: boolean } {
      switch (cloud.state) {
        case 'listening':
          return {
            status: { fill: 'green', shape: cloud.onlineCount > 0 ? 'dot' : 'ring', text: RED._('coolkit-server.status.listening', { port: cloud.port, online: cloud.onlineCount }) },
            healthy: true,
          };
        case 'error': {
          const err = cloud.lastError;
          const code = err instanceof ListenError ? err.code : '';
          const text = code === 'EADDRINUSE'
            ? RED._('coolkit-server.errors.eaddrinuse', { port })
            : code === 'EACCES'
              ? RED._('coolkit-server.errors.eacces', { port })
              : code === 'ETLS'
                ? RED._('coolkit-server.errors.tls', { error: err?.message ?? '' })
                : RED._('coolkit-server.errors.listen', { bind: cloud.options.bind, port, error: err?.message ?? '' });
          return { status: { fill: 'red', shape: 'ring', text }, healthy: false };
        }
        case 'starting':
          return { status: { fill: 'yellow', shape: 'ring', text: RED._('coolkit-server.status.starting') }, healthy: false };
        default:
          return { status: { fill: 'grey', shape: 'ring', text: RED._('coolkit-server.status.stopped') }, healthy: false };
      }
    }

    function pushStatus(): void {
      statusTimer = undefined;
      if (closing) return;
      const { status, healthy } = currentStatus();
      for (const user of users.values()) {
        try {
          user.onServerStatus(status, healthy);
        } catch (err) {
          node.warn(`status update failed: ${(err as Error).message}`);
        }
      }
    }

    function scheduleStatus(): void {
      if (statusTimer || closing) return;
      statusTimer = setTimeout(pushStatus, STATUS_COALESCE_MS);
    }

    const onRouteError = (err: Error) => node.warn(`a device listener failed: ${err.message}`);
    cloud.on('status', scheduleStatus);
    cloud.on('update', (ev) => router.dispatch('update', ev, onRouteError));
    cloud.on('online', (ev) => router.dispatch('online', ev, onRouteError));
    cloud.on('offline', (ev) => router.dispatch('offline', ev, onRouteError));
    cloud.on('trigger', (ev) => router.dispatch('trigger', ev, onRouteError));
    cloud.on('warning', (err: Error) => node.error(RED._('coolkit-server.errors.state', { error: err.message })));

    node.register = (user) => {
      users.set(user.id, user);
      const { status, healthy } = currentStatus();
      user.onServerStatus(status, healthy);
    };
    node.deregister = (user) => {
      users.delete(user.id);
    };
    node.subscribe = (deviceid, listener) => router.subscribe(deviceid, listener);

    function start(): void {
      cloud.start().catch((err: Error) => {
        if (closing) return;
        node.error(currentStatus().status.text as string);
        pushStatus();
        if (err instanceof ListenError && err.code === 'EADDRINUSE') {
          retryTimer = setTimeout(() => {
            retryTimer = undefined;
            if (!closing) start();
          }, RETRY_LISTEN_MS);
        }
      });
    }
    start();

    node.on('close', (_removed: boolean, done: () => void) => {
      closing = true;
      if (retryTimer) clearTimeout(retryTimer);
      if (statusTimer) clearTimeout(statusTimer);
      cloud.removeAllListeners();
      cloud.close().then(done, (err: Error) => {
        node.warn(`close: ${err.message}`);
        done();
      });
    });
  }

  RED.nodes.registerType('coolkit-server', CoolkitServer as unknown as Parameters<NodeAPI['nodes']['registerType']>[1]);

  // The editor's device picker and device list (read-only here).
  RED.httpAdmin.get('/coolkit/:id/devices', RED.auth.needsPermission('coolkit-server.read'), (req, res) => {
    const server = RED.nodes.getNode(String(req.params.id)) as CoolkitServerNode | null;
    if (!server || !server.cloud) {
      res.status(404).json({ error: 'not deployed' });
      return;
    }
    res.json(
      server.cloud.devices().map((d) => ({
        deviceid: d.deviceid,
        model: d.model,
        romVersion: d.romVersion,
        online: d.online,
        lastSeen: new Date(d.lastSeen).toISOString(),
        name: d.name,
      })),
    );
  });
};
