/**
 * `zhiting-bridge`: every device of a `coolkit-server`, plus devices the flow defines, served
 * through the Zhiting (智汀) SmartAssistant WebSocket API (`src/hub/zhiting`) on a port of its own
 * or on Node-RED's HTTP server, behind the shared hub session layer (`src/hub/session`: token
 * before the upgrade, Origin allow-list, limits, backpressure, heartbeat).
 *
 * Input: `{action:"define"|"update"|"remove"|"answer", ...}` in msg.payload (virtual devices).
 * Output: one message per set_attributes request for a virtual device.
 */
import type * as http from 'node:http';
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow, NodeStatus } from 'node-red';
import type { DeviceEvent } from '../src/cloud/server';
import type { DeviceEventKind } from '../src/cloud/router';
import type { Logger } from '../src/cloud/log';
import { HubGateway } from '../src/hub/session/gateway';
import { joinPath, OwnServer, UpgradeRouter } from '../src/hub/session/serve';
import { parseOrigins, tokenAuthenticator } from '../src/hub/session/auth';
import type { HubConnection } from '../src/hub/session/connection';
import { ZhitingHub, type VirtualSetRequest } from '../src/hub/zhiting/api';
import type { FirmwareProvider } from '../src/hub/zhiting/firmware';
import type { CoolkitServerNode, ServerUser } from './types';
import { findServer, isPlainObject, numberIn } from './shared';

interface BridgeConfig extends NodeDef {
  server: string;
  listen: 'port' | 'node-red';
  bind?: string;
  port?: number | string;
  path?: string;
  allowQueryToken?: boolean | string;
  origins?: string;
  maxPayload?: number | string;
  rateLimit?: number | string;
  answerTimeout?: number | string;
}

interface BridgeCredentials {
  token?: string;
}

type Done = (err?: Error) => void;

const DEFAULT_PORT = 37965;
const DEFAULT_PATH = '/ws';
const RETRY_LISTEN_MS = 15_000;
const STATUS_COALESCE_MS = 250;

function isTrue(value: unknown): boolean {
  return value === true || value === 'true';
}

/** A path for the WebSocket: starts with `/`, no query, no spaces. */
function checkPath(value: unknown): string | undefined {
  const p = typeof value === 'string' && value.trim() !== '' ? value.trim() : DEFAULT_PATH;
  return /^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/.test(p) ? p : undefined;
}

class InputError extends Error {
  constructor(message: string, readonly code = 400) {
    super(message);
    this.name = 'ZhitingBridgeError';
  }
}

export = function register(RED: NodeAPI): void {
  function ZhitingBridge(this: Node & { credentials?: BridgeCredentials }, config: BridgeConfig): void {
    RED.nodes.createNode(this, config);
    const node = this;
    const server = findServer(RED, node, config.server, 'zhiting-bridge');
    if (!server) return;
    const token = node.credentials?.token ?? '';
    const listenMode = config.listen === 'node-red' ? 'node-red' : 'port';
    const bind = (config.bind ?? '').trim() || '0.0.0.0';
    const port = Math.trunc(numberIn(config.port, DEFAULT_PORT, 0, 65535));
    const path = checkPath(config.path);
    const maxPayload = Math.trunc(numberIn(config.maxPayload, 65536, 1024, 16 * 1024 * 1024));
    const rate = numberIn(config.rateLimit, 100, 1, 10_000);
    const answerMs = numberIn(config.answerTimeout, 2, 0, 60) * 1000;
    const { origins, invalid } = parseOrigins(config.origins);
    if (invalid.length > 0) node.warn(RED._('zhiting-bridge.errors.bad-origins', { origins: invalid.join(', ') }));
    const logger: Logger = {
      debug: (m) => node.debug(m),
      info: (m) => node.log(m),
      warn: (m) => node.warn(m),
      error: (m) => node.error(m),
    };

    let closing = false;
    let where = '';
    let listenError: string | undefined;
    let serverStatus: { status: NodeStatus; healthy: boolean } | undefined;
    let statusTimer: NodeJS.Timeout | undefined;
    let retryTimer: NodeJS.Timeout | undefined;

    const hub = new ZhitingHub({
      source: server.cloud,
      // The OTA firmware store plugs in by setting `firmware` on the coolkit-server node.
      firmware: () => (server as CoolkitServerNode & { firmware?: FirmwareProvider }).firmware,
      virtualAnswerMs: answerMs,
      logger,
      onVirtualSet: (request: VirtualSetRequest) => {
        const payload: Record<string, unknown> = { action: 'set', set_id: request.set_id, identity: request.identity, attributes: request.attributes };
        if (request.attributes.length === 1) Object.assign(payload, request.attributes[0]);
        node.send({ topic: request.identity, set_id: request.set_id, payload });
      },
    });

    const gateway = new HubGateway({
      name: `zhiting-bridge ${node.id}`,
      authenticate: tokenAuthenticator({
        token,
        header: 'smart-assistant-token',
        allowQuery: isTrue(config.allowQueryToken),
        refusalBody: { status: 5012, reason: 'invalid user credentials' },
      }),
      handler: {
        opened: () => scheduleStatus(),
        message: (conn: HubConnection, text: string) => hub.message(conn, text),
        limited: (conn: HubConnection, text: string) => hub.limited(conn, text),
        closed: () => scheduleStatus(),
      },
      origins,
      maxPayload,
      rate: { burst: Math.max(1, Math.round(rate)), perSecond: rate },
      logger,
    });
    hub.setBroadcaster((text) => gateway.broadcast(text));

    function currentStatus(): NodeStatus {
      if (path === undefined) return { fill: 'red', shape: 'ring', text: RED._('zhiting-bridge.errors.bad-path') };
      if (listenError) return { fill: 'red', shape: 'ring', text: listenError };
      if (!where) return { fill: 'yellow', shape: 'ring', text: RED._('zhiting-bridge.status.starting') };
      if (!token) return { fill: 'red', shape: 'ring', text: RED._('zhiting-bridge.status.no-token', { where }) };
      if (serverStatus && !serverStatus.healthy) return { fill: 'yellow', shape: 'ring', text: RED._('zhiting-bridge.status.server', { status: String(serverStatus.status.text ?? '') }) };
      return { fill: 'green', shape: gateway.size > 0 ? 'dot' : 'ring', text: RED._('zhiting-bridge.status.listening', { where, clients: gateway.size }) };
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
    server.register(user);
    const unsubscribe = server.subscribe('', (kind: DeviceEventKind, ev: DeviceEvent) => hub.onDeviceEvent(kind, ev));

    // ---- serving -------------------------------------------------------------------------------
    let removeRoute: (() => void) | undefined;
    let own: OwnServer | undefined;

    function serveOnNodeRed(): void {
      const httpServer = (RED as unknown as { server?: http.Server }).server;
      const root = (RED.settings as unknown as { httpNodeRoot?: string | false }).httpNodeRoot;
      if (!httpServer || root === false) {
        listenError = RED._('zhiting-bridge.errors.no-node-red-server');
        node.error(listenError);
        return;
      }
      const full = joinPath(root ?? '/', path as string);
      try {
        removeRoute = UpgradeRouter.for(httpServer).add(full, gateway);
      } catch (err) {
        listenError = RED._('zhiting-bridge.errors.path-in-use', { path: full });
        node.error(`${listenError}: ${(err as Error).message}`);
        return;
      }
      where = full;
      node.log(RED._('zhiting-bridge.log.serving', { where: `Node-RED ${full}` }));
    }

    function serveOnPort(): void {
      const s = new OwnServer({ bind, port });
      own = s;
      try {
        removeRoute = s.router.add(path as string, gateway);
      } catch (err) {
        listenError = (err as Error).message;
        return;
      }
      s.listen().then(
        () => {
          if (closing) {
            void s.close();
            return;
          }
          listenError = undefined;
          where = `:${s.port}${path}`;
          node.log(RED._('zhiting-bridge.log.serving', { where: `${bind}:${s.port}${path}` }));
          pushStatus();
        },
        (err: NodeJS.ErrnoException) => {
          if (closing) return;
          const code = err.code ?? '';
          listenError = code === 'EADDRINUSE'
            ? RED._('zhiting-bridge.errors.eaddrinuse', { port })
            : code === 'EACCES'
              ? RED._('zhiting-bridge.errors.eacces', { port })
              : RED._('zhiting-bridge.errors.listen', { bind, port, error: err.message });
          node.error(listenError);
          pushStatus();
          if (code === 'EADDRINUSE') retryTimer = setTimeout(() => serveRetry(s), RETRY_LISTEN_MS);
        },
      );
    }

    function serveRetry(s: OwnServer): void {
      retryTimer = undefined;
      if (closing) return;
      s.listen().then(() => {
        listenError = undefined;
        where = `:${s.port}${path}`;
        node.log(RED._('zhiting-bridge.log.serving', { where: `${bind}:${s.port}${path}` }));
        pushStatus();
      }, () => {
        if (!closing) retryTimer = setTimeout(() => serveRetry(s), RETRY_LISTEN_MS);
      });
    }

    // For tests and diagnostics: the running hub, its gateway and where it listens.
    Object.defineProperty(node, 'zhiting', {
      value: {
        hub,
        gateway,
        get port(): number { return own?.port ?? 0; },
        get where(): string { return where; },
      },
    });

    if (path === undefined) node.error(RED._('zhiting-bridge.errors.bad-path'));
    else if (listenMode === 'node-red') serveOnNodeRed();
    else serveOnPort();
    if (!token) node.warn(RED._('zhiting-bridge.status.no-token', { where: where || path || '' }));
    pushStatus();

    // ---- flow input: virtual devices -----------------------------------------------------------
    node.on('input', (msg: NodeMessageInFlow & { set_id?: unknown }, _send: unknown, done: Done) => {
      const p = msg.payload;
      try {
        if (!isPlainObject(p)) throw new InputError(RED._('zhiting-bridge.errors.bad-input'));
        switch (p.action) {
          case 'define':
            hub.defineVirtual(p.device);
            break;
          case 'update': {
            if (typeof p.identity === 'string' && !hub.virtual.get(p.identity)) throw new InputError(RED._('zhiting-bridge.errors.no-virtual', { identity: p.identity }), 404);
            const updates = Array.isArray(p.attributes)
              ? p.attributes.map((a) => (isPlainObject(a) ? a : {}) as { instance_id: unknown; attribute: unknown; val: unknown })
              : [{ instance_id: p.instance_id, attribute: p.attribute, val: p.val }];
            hub.updateVirtual(p.identity, updates);
            break;
          }
          case 'remove':
            if (!hub.removeVirtual(p.identity)) throw new InputError(RED._('zhiting-bridge.errors.no-virtual', { identity: String(p.identity) }), 404);
            break;
          case 'answer': {
            const setId = p.set_id ?? msg.set_id;
            if (!hub.answerVirtual(setId, p.success !== false, p.error, p.error_code)) {
              throw new InputError(RED._('zhiting-bridge.errors.no-pending', { id: String(setId) }), 404);
            }
            break;
          }
          default:
            throw new InputError(RED._('zhiting-bridge.errors.bad-action', { action: String(p.action) }));
        }
        done();
      } catch (err) {
        const e = err instanceof InputError ? err : new InputError((err as Error).message);
        done(e);
      }
    });

    node.on('close', (_removed: boolean, done: () => void) => {
      closing = true;
      if (statusTimer) clearTimeout(statusTimer);
      if (retryTimer) clearTimeout(retryTimer);
      unsubscribe();
      server.deregister(user);
      hub.stop();
      removeRoute?.();
      const closed = gateway.close().then(() => own?.close());
      closed.then(() => {
        node.status({});
        done();
      }, () => done());
    });
  }

  RED.nodes.registerType('zhiting-bridge', ZhitingBridge as unknown as Parameters<NodeAPI['nodes']['registerType']>[1], {
    credentials: { token: { type: 'password' } },
  });
};
