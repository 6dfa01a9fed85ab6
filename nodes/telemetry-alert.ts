/**
 * `telemetry-alert`: the telemetry and alerts WebSocket API (seed 003, `src/hub/telemetry`) for
 * the devices of a `coolkit-server`, on a port of its own (default 8000) or on Node-RED's HTTP
 * server, behind the shared hub session layer; plus the alert rules, whose alerts also leave
 * the node's output for the flow.
 *
 * Input: raise or clear an alert from the flow (`msg.payload`, see the help).
 * Output: one message per alert raised or cleared.
 */
import * as os from 'node:os';
import * as nodePath from 'node:path';
import type * as http from 'node:http';
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow, NodeStatus } from 'node-red';
import type { DeviceEvent } from '../src/cloud/server';
import type { DeviceEventKind } from '../src/cloud/router';
import type { Logger } from '../src/cloud/log';
import { parseOrigins } from '../src/hub/session/auth';
import { normaliseRules } from '../src/hub/telemetry/alerts';
import { SEVERITIES, type Severity } from '../src/hub/telemetry/filters';
import { secretProblem, signToken, DEFAULT_TTL_S } from '../src/hub/telemetry/jwt';
import { stateFileFor, TelemetryServer, type ListenChoice } from '../src/hub/telemetry/server';
import type { ServerUser } from './types';
import { findServer, isPlainObject, numberIn } from './shared';

interface TelemetryAlertConfig extends NodeDef {
  server: string;
  listen: 'port' | 'node-red';
  bind?: string;
  port?: number | string;
  path?: string;
  origins?: string;
  rules?: unknown;
}

interface TelemetryAlertCredentials {
  jwtSecret?: string;
}

interface TelemetryAlertNode extends Node {
  telemetry?: TelemetryServer;
  jwtSecret?: string;
}

type Done = (err?: Error) => void;

const DEFAULT_PORT = 8000;
const DEFAULT_PATH = '/ws';
const RETRY_LISTEN_MS = 15_000;
const STATUS_COALESCE_MS = 250;

/** A path for the WebSocket: starts with `/`, no query, no spaces, no trailing `/`. */
function checkPath(value: unknown): string | undefined {
  const p = typeof value === 'string' && value.trim() !== '' ? value.trim().replace(/\/+$/, '') : DEFAULT_PATH;
  return /^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/.test(p) ? p : undefined;
}

class InputError extends Error {
  constructor(message: string, readonly code = 400) {
    super(message);
    this.name = 'TelemetryAlertError';
  }
}

export = function register(RED: NodeAPI): void {
  function TelemetryAlert(this: TelemetryAlertNode & { credentials?: TelemetryAlertCredentials }, config: TelemetryAlertConfig): void {
    RED.nodes.createNode(this, config);
    const node = this;
    const server = findServer(RED, node, config.server, 'telemetry-alert');
    if (!server) return;
    const secret = node.credentials?.jwtSecret ?? '';
    const secretIssue = secretProblem(secret);
    node.jwtSecret = secretIssue ? undefined : secret;
    const listenMode = config.listen === 'node-red' ? 'node-red' : 'port';
    const bind = (config.bind ?? '').trim() || '0.0.0.0';
    const port = Math.trunc(numberIn(config.port, DEFAULT_PORT, 0, 65535));
    const path = checkPath(config.path);
    const { origins, invalid } = parseOrigins(config.origins);
    if (invalid.length > 0) node.warn(RED._('telemetry-alert.errors.bad-origins', { origins: invalid.join(', ') }));
    const { rules, problems } = normaliseRules(config.rules);
    for (const p of problems) node.warn(RED._('telemetry-alert.errors.bad-rule', { problem: p }));
    const logger: Logger = {
      debug: (m) => node.debug(m),
      info: (m) => node.log(m),
      warn: (m) => node.warn(m),
      error: (m) => node.error(m),
    };
    const userDir = (RED.settings as { userDir?: string }).userDir ?? nodePath.join(os.homedir(), '.node-red');
    const stateDir = nodePath.join(userDir, 'coolkit');

    let listen: ListenChoice | undefined;
    let listenError: string | undefined;
    if (path === undefined) {
      listenError = RED._('telemetry-alert.errors.bad-path');
    } else if (listenMode === 'node-red') {
      const httpServer = (RED as unknown as { server?: http.Server }).server;
      const root = (RED.settings as unknown as { httpNodeRoot?: string | false }).httpNodeRoot;
      if (!httpServer || root === false) listenError = RED._('telemetry-alert.errors.no-node-red-server');
      else listen = { mode: 'server', server: httpServer, root: root ?? '/' };
    } else {
      listen = { mode: 'port', bind, port };
    }

    let closing = false;
    let where = '';
    let serverStatus: { status: NodeStatus; healthy: boolean } | undefined;
    let statusTimer: NodeJS.Timeout | undefined;
    let retryTimer: NodeJS.Timeout | undefined;

    const telemetry = new TelemetryServer({
      secret: node.jwtSecret,
      listen: listen ?? { mode: 'port', bind, port },
      path: path ?? DEFAULT_PATH,
      origins,
      rules,
      device: (id) => server.cloud.device(id),
      devices: () => server.cloud.devices(),
      stateFile: stateFileFor(stateDir, node.id),
      diskPath: userDir,
      logger,
      onAlert: (change, message) => {
        node.send({ topic: change.alert.alert_type, payload: message });
        scheduleStatus();
      },
      onConnections: () => scheduleStatus(),
    });
    node.telemetry = telemetry;

    function currentStatus(): NodeStatus {
      const alerts = telemetry.service.alerts.activeCount;
      if (listenError) return { fill: 'red', shape: 'ring', text: listenError };
      if (secretIssue) return { fill: 'yellow', shape: 'ring', text: RED._('telemetry-alert.status.no-secret', { alerts }) };
      if (!where) return { fill: 'yellow', shape: 'ring', text: RED._('telemetry-alert.status.starting') };
      if (serverStatus && !serverStatus.healthy) return { fill: 'yellow', shape: 'ring', text: RED._('telemetry-alert.status.server', { status: String(serverStatus.status.text ?? '') }) };
      const clients = telemetry.connections;
      return { fill: alerts > 0 ? 'yellow' : 'green', shape: clients > 0 ? 'dot' : 'ring', text: RED._('telemetry-alert.status.listening', { where, clients, alerts }) };
    }

    function pushStatus(): void {
      statusTimer = undefined;
      if (!closing) node.status(currentStatus());
    }

    function scheduleStatus(): void {
      if (statusTimer || closing) return;
      statusTimer = setTimeout(pushStatus, STATUS_COALESCE_MS);
    }

    const user: ServerUser = {
      id: node.id,
      onServerStatus(status, healthy) {
        serverStatus = { status, healthy };
        pushStatus();
      },
    };

    // Started once the flow is built: restoring saved alerts may clear some (their rule is
    // gone), and those clears leave the output.
    let unsubscribe: (() => void) | undefined;
    const startTimer = setImmediate(() => {
      if (closing) return;
      telemetry.init();
      unsubscribe = server.subscribe('', (kind: DeviceEventKind, ev: DeviceEvent) => telemetry.service.deviceEvent(kind, ev));
      pushStatus();
    });
    server.register(user);

    function serve(): void {
      retryTimer = undefined;
      if (closing || !listen || secretIssue) return;
      telemetry.listen().then(
        () => {
          if (closing) return;
          listenError = undefined;
          const main = telemetry.paths[0] ?? path;
          where = listen?.mode === 'port' ? `:${telemetry.port}${main}` : `${main}`;
          node.log(RED._('telemetry-alert.log.serving', { where: listen?.mode === 'port' ? `${bind}:${telemetry.port}${main}` : `Node-RED ${main}` }));
          pushStatus();
        },
        (err: NodeJS.ErrnoException) => {
          if (closing) return;
          const code = err.code ?? '';
          listenError = code === 'EADDRINUSE'
            ? RED._('telemetry-alert.errors.eaddrinuse', { port })
            : code === 'EACCES'
              ? RED._('telemetry-alert.errors.eacces', { port })
              : code === 'EPATHINUSE'
                ? RED._('telemetry-alert.errors.path-in-use', { path: path ?? '' })
                : RED._('telemetry-alert.errors.listen', { bind, port, error: err.message });
          node.error(listenError);
          pushStatus();
          if (code === 'EADDRINUSE') retryTimer = setTimeout(serve, RETRY_LISTEN_MS);
        },
      );
    }

    if (listenError) node.error(listenError);
    else if (secretIssue) node.warn(RED._('telemetry-alert.errors.secret', { problem: secretIssue }));
    serve();
    pushStatus();

    // ---- flow input: raise and clear alerts --------------------------------------------------
    node.on('input', (msg: NodeMessageInFlow, _send: unknown, done: Done) => {
      try {
        let p = msg.payload;
        if (typeof p === 'string' && p.trim() !== '') p = { title: p };
        if (!isPlainObject(p)) throw new InputError(RED._('telemetry-alert.errors.bad-input'));
        const action = p.action ?? 'raise';
        const key = p.key !== undefined ? String(p.key) : typeof msg.topic === 'string' && msg.topic !== '' ? msg.topic : undefined;
        if (action === 'clear') {
          const alertId = p.alert_id;
          if (alertId !== undefined && !(typeof alertId === 'number' && Number.isInteger(alertId))) throw new InputError(RED._('telemetry-alert.errors.bad-alert-id'));
          if (alertId === undefined && key === undefined) throw new InputError(RED._('telemetry-alert.errors.clear-what'));
          telemetry.service.clear(alertId !== undefined ? { alert_id: alertId as number } : { key }, typeof p.message === 'string' ? p.message : undefined);
          done();
          return;
        }
        if (action !== 'raise') throw new InputError(RED._('telemetry-alert.errors.bad-action', { action: String(action) }));
        const severity = p.severity ?? 'warning';
        if (typeof severity !== 'string' || !(SEVERITIES as readonly string[]).includes(severity)) throw new InputError(RED._('telemetry-alert.errors.bad-severity'));
        const metadata = p.metadata;
        if (metadata !== undefined && !isPlainObject(metadata)) throw new InputError(RED._('telemetry-alert.errors.bad-metadata'));
        if (metadata && JSON.stringify(metadata).length > 4096) throw new InputError(RED._('telemetry-alert.errors.bad-metadata'));
        telemetry.service.raise({
          key,
          device: p.device ?? p.deviceid ?? p.device_id,
          severity: severity as Severity,
          alert_type: typeof p.alert_type === 'string' ? p.alert_type : undefined,
          title: typeof p.title === 'string' ? p.title : undefined,
          message: typeof p.message === 'string' ? p.message : undefined,
          metadata: metadata as Record<string, unknown> | undefined,
        });
        done();
      } catch (err) {
        done(err instanceof InputError ? err : new InputError((err as Error).message));
      }
    });

    node.on('close', (_removed: boolean, done: () => void) => {
      closing = true;
      if (statusTimer) clearTimeout(statusTimer);
      if (retryTimer) clearTimeout(retryTimer);
      clearImmediate(startTimer);
      unsubscribe?.();
      server.deregister(user);
      telemetry.close().then(
        () => {
          node.status({});
          done();
        },
        (err: Error) => {
          node.warn(`close: ${err.message}`);
          done();
        },
      );
    });
  }

  RED.nodes.registerType('telemetry-alert', TelemetryAlert as unknown as Parameters<NodeAPI['nodes']['registerType']>[1], {
    credentials: { jwtSecret: { type: 'password' } },
  });

  registerAdminRoutes(RED);
};

/** Editor helpers: the device numbers, the active alerts, and a token for trying the API. */
function registerAdminRoutes(RED: NodeAPI): void {
  type Req = { params: Record<string, string>; body?: Record<string, unknown> };
  type Res = { status(code: number): Res; json(body: unknown): void };
  const read = RED.auth.needsPermission('telemetry-alert.read');
  const write = RED.auth.needsPermission('telemetry-alert.write');
  const withNode = (handler: (node: TelemetryAlertNode, req: Req, res: Res) => void | Promise<void>) => (req: Req, res: Res) => {
    const node = RED.nodes.getNode(String(req.params.id)) as TelemetryAlertNode | null;
    if (!node || !node.telemetry) {
      res.status(404).json({ error: 'not deployed' });
      return;
    }
    Promise.resolve()
      .then(() => handler(node, req, res))
      .catch((err: Error) => res.status(400).json({ error: err.message }));
  };
  const app = RED.httpAdmin;
  app.get('/coolkit-telemetry/:id/devices', read, withNode((node, _req, res) => {
    res.json((node.telemetry as TelemetryServer).service.deviceList());
  }) as never);
  app.get('/coolkit-telemetry/:id/alerts', read, withNode((node, _req, res) => {
    const service = (node.telemetry as TelemetryServer).service;
    res.json(service.alerts.activeAlerts().map((a) => service.alertMessage({ status: 'active', alert: a, at: a.raised_at })));
  }) as never);
  app.post('/coolkit-telemetry/:id/token', write, withNode(async (node, req, res) => {
    if (!node.jwtSecret) throw new Error('the node has no JWT secret (at least 32 characters) deployed');
    const body = req.body ?? {};
    const sub = typeof body.sub === 'string' && body.sub.trim() ? body.sub.trim().slice(0, 128) : 'editor';
    const ttl = Number(body.ttl ?? DEFAULT_TTL_S);
    if (!Number.isFinite(ttl) || ttl < 60 || ttl > 366 * 24 * 3600) throw new Error('ttl must be 60..31622400 seconds');
    const { token, expiresAt } = await signToken(node.jwtSecret, { sub, ttlSeconds: ttl });
    res.json({ token, sub, expires_at: new Date(expiresAt).toISOString() });
  }) as never);
}
