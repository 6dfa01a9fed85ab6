/**
 * `sonoff-ota`: firmware updates from the user's own server. Keeps a firmware store (user1/user2
 * pairs per model and version, in `<userDir>/coolkit/firmware`), serves images over plain HTTP
 * on its own port, sends the `upgrade` message and reports every state change of the update.
 *
 * Several sonoff-ota nodes may use the same server and port (one for `check`, one for `update`,
 * ...): they share one firmware server and one update tracker, so the concurrency limit counts
 * every update on that server, and they share one store per user directory.
 */
import * as path from 'node:path';
import * as os from 'node:os';
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow, NodeStatus } from 'node-red';
import { CoolkitError, ErrorCode } from '../src/protocol/errors';
import type { CoolkitCloud } from '../src/cloud/server';
import { FirmwareServer } from '../src/cloud/firmware/server';
import { FirmwareError, FirmwareStore, type FirmwareEntry } from '../src/cloud/firmware/store';
import { OtaManager, type OtaProgress } from '../src/cloud/firmware/ota';
import type { ServerUser } from './types';
import { deviceIdProblem, findServer, resolveDeviceId, TypedValue } from './shared';
import { storeFirmwareProvider } from '../src/hub/zhiting/firmware';

interface OtaConfig extends NodeDef {
  server: string;
  deviceid: string;
  /** Where the device ID comes from: str (default, flows saved before typed inputs), msg, flow, global or env. */
  deviceidType?: string;
  version: string;
  /** Where the firmware version comes from: str (default), msg, flow, global or env. */
  versionType?: string;
  port: number | string;
  maxConcurrent: number | string;
  timeout: number | string;
}

type Send = (msg: Record<string, unknown>) => void;
type Done = (err?: Error) => void;

const DEFAULT_PORT = 8088;
const DEFAULT_MAX_CONCURRENT = 2;
const DEFAULT_TIMEOUT_S = 600;
const RETRY_LISTEN_MS = 15_000;
/** Throttled fallback download: 16 KiB/s, a 500 KB image in about half a minute. */
const SLOW_THROTTLE = 16 * 1024;
const ACK_TIMEOUT_MS = 15_000;
const ACTIONS = ['update', 'check', 'add', 'list', 'remove'];
const VERSION = /^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$/;

function positiveInt(value: unknown, fallback: number): number {
  if (value === '' || value === undefined || value === null) return fallback;
  const n = Number(value);
  return Number.isInteger(n) && n > 0 ? n : fallback;
}

/** 1..65535, or 0 for any free port (tests); anything else is the default. */
function portNumber(value: unknown): number {
  if (value === '' || value === undefined || value === null) return DEFAULT_PORT;
  const n = Number(value);
  return Number.isInteger(n) && n >= 0 && n <= 65535 ? n : DEFAULT_PORT;
}

function entryJson(e: FirmwareEntry) {
  const img = (i: FirmwareEntry['user1']) => ({ name: i.name, size: i.size, sha256: i.sha256 });
  return { model: e.model, version: e.version, user1: img(e.user1), user2: img(e.user2), addedAt: e.addedAt };
}

/** One firmware HTTP server + update tracker per cloud and port, shared by the nodes using them. */
interface Service {
  files: FirmwareServer;
  ota: OtaManager;
  store: FirmwareStore;
  users: Set<string>;
  ready: boolean;
  error: string | undefined;
  retry: NodeJS.Timeout | undefined;
  closed: boolean;
  /** Called whenever `ready`/`error` change. */
  onState: Set<() => void>;
}

const services = new Map<CoolkitCloud, Map<number, Service>>();
const stores = new Map<string, { store: FirmwareStore; warning: string | undefined }>();

function storeFor(dir: string): { store: FirmwareStore; warning: string | undefined } {
  let s = stores.get(dir);
  if (!s) {
    const store = new FirmwareStore(dir);
    s = { store, warning: store.load() };
    stores.set(dir, s);
  }
  return s;
}

function acquireService(cloud: CoolkitCloud, port: number, store: FirmwareStore, userId: string): Service {
  let byPort = services.get(cloud);
  if (!byPort) {
    byPort = new Map();
    services.set(cloud, byPort);
  }
  const existing = byPort.get(port);
  if (existing) {
    existing.users.add(userId);
    return existing;
  }
  const files = new FirmwareServer(cloud.options.bind, port);
  const ota = new OtaManager(cloud, store, files, {
    advertiseHost: cloud.options.advertiseHost,
    maxConcurrent: DEFAULT_MAX_CONCURRENT,
    timeoutMs: DEFAULT_TIMEOUT_S * 1000,
    ackTimeoutMs: ACK_TIMEOUT_MS,
    slowThrottle: SLOW_THROTTLE,
  });
  const svc: Service = { files, ota, store, users: new Set([userId]), ready: false, error: undefined, retry: undefined, closed: false, onState: new Set() };
  const notify = () => {
    for (const fn of svc.onState) fn();
  };
  const listen = () => {
    svc.retry = undefined;
    files.start().then(
      () => {
        if (svc.closed) {
          void files.close();
          return;
        }
        svc.ready = true;
        svc.error = undefined;
        notify();
      },
      (err: Error) => {
        if (svc.closed) return;
        svc.error = err.message;
        notify();
        svc.retry = setTimeout(listen, RETRY_LISTEN_MS);
      },
    );
  };
  listen();
  byPort.set(port, svc);
  return svc;
}

function releaseService(cloud: CoolkitCloud, port: number, userId: string): Promise<void> {
  const byPort = services.get(cloud);
  const svc = byPort?.get(port);
  if (!byPort || !svc) return Promise.resolve();
  svc.users.delete(userId);
  if (svc.users.size > 0) return Promise.resolve();
  svc.closed = true;
  if (svc.retry) clearTimeout(svc.retry);
  byPort.delete(port);
  if (byPort.size === 0) services.delete(cloud);
  svc.ota.close();
  return svc.files.close();
}

export = function register(RED: NodeAPI): void {
  function SonoffOta(this: Node, config: OtaConfig): void {
    RED.nodes.createNode(this, config);
    const node = this;
    const server = findServer(RED, node, config.server, 'sonoff-ota');
    if (!server) return;
    const cloud = server.cloud;
    const userDir = (RED.settings as { userDir?: string }).userDir ?? path.join(os.homedir(), '.node-red');
    const { store, warning } = storeFor(path.join(userDir, 'coolkit', 'firmware'));
    if (warning) node.warn(warning);
    const port = portNumber(config.port);
    const maxConcurrent = positiveInt(config.maxConcurrent, DEFAULT_MAX_CONCURRENT);
    const timeoutMs = positiveInt(config.timeout, DEFAULT_TIMEOUT_S) * 1000;
    // Device and Version: plain text as before, or msg/flow/global evaluated per message, or env.
    const device = new TypedValue(RED, node, config.deviceid, config.deviceidType);
    const versionSource = new TypedValue(RED, node, config.version, config.versionType);
    const deviceProblem = deviceIdProblem(RED, 'sonoff-ota', device);
    if (deviceProblem) node.error(deviceProblem);
    if (versionSource.typeError) node.error(versionSource.typeError);
    else if (versionSource.type === 'env' && versionSource.fixed === undefined) node.error(RED._('sonoff-ota.errors.version-empty', { source: versionSource.source }));
    const svc = acquireService(cloud, port, store, node.id);
    const { ota, files } = svc;
    // The hub APIs (zhiting-bridge check_update / ota) use this store and tracker while the node lives.
    const provider = storeFirmwareProvider(store, ota);
    server.firmware = provider;
    let closed = false;
    let own: NodeStatus | undefined;
    let serverHealthy = true;

    function show(status: NodeStatus): void {
      own = status;
      if (serverHealthy) node.status(status);
    }
    function showIdle(): void {
      if (svc.error) show({ fill: 'red', shape: 'ring', text: RED._('sonoff-ota.errors.port', { error: svc.error }) });
      else if (svc.ready) show({ fill: 'grey', shape: 'dot', text: RED._('sonoff-ota.status.ready', { port: files.listeningPort, images: store.list().length }) });
      else show({ fill: 'yellow', shape: 'ring', text: RED._('sonoff-ota.status.starting') });
    }
    let lastError: string | undefined;
    const onState = () => {
      if (svc.error && svc.error !== lastError) node.error(RED._('sonoff-ota.errors.port', { error: svc.error }));
      lastError = svc.error;
      showIdle();
    };
    svc.onState.add(onState);
    showIdle();

    const user: ServerUser = {
      id: node.id,
      onServerStatus(status, healthy) {
        serverHealthy = healthy;
        if (!healthy) node.status(status);
        else if (own) node.status(own);
      },
    };
    server.register(user);

    function progressStatus(p: OtaProgress): void {
      const fill = p.state === 'success' ? 'green' : p.state === 'failed' ? 'red' : 'blue';
      const others = ota.running - (p.state === 'success' || p.state === 'failed' ? 0 : 1);
      const key = others > 0 ? 'sonoff-ota.status.progress-more' : 'sonoff-ota.status.progress';
      show({ fill, shape: p.state === 'failed' ? 'ring' : 'dot', text: RED._(key, { deviceid: p.deviceid, state: RED._(`sonoff-ota.state.${p.state}`), version: p.version, more: others }) });
    }

    async function handle(msg: NodeMessageInFlow & Record<string, unknown>, send: Send): Promise<void> {
      const raw = msg.payload;
      const payload = (raw && typeof raw === 'object' && !Buffer.isBuffer(raw) && !Array.isArray(raw) ? raw : {}) as Record<string, unknown>;
      const action = typeof payload.action === 'string' ? payload.action : typeof raw === 'string' && ACTIONS.includes(raw) ? raw : 'update';
      // payload.deviceid, then msg.deviceid, then the node's Device (evaluated only when needed).
      const explicit = payload.deviceid ?? msg.deviceid;
      const deviceFor = (): Promise<string> =>
        explicit !== undefined && explicit !== null ? Promise.resolve(String(explicit).trim().toLowerCase()) : resolveDeviceId(RED, 'sonoff-ota', device, msg, () => '');
      switch (action) {
        case 'add': {
          const model = String(payload.model ?? '');
          const version = String(payload.version ?? '');
          let entry: FirmwareEntry;
          if (Buffer.isBuffer(payload.user1) && Buffer.isBuffer(payload.user2)) entry = await store.add(model, version, payload.user1, payload.user2);
          else if (typeof payload.path === 'string' && payload.path) entry = await store.addFromDirectory(model, version, payload.path);
          else if (typeof payload.user1Path === 'string' && typeof payload.user2Path === 'string') entry = await store.addFromFiles(model, version, payload.user1Path, payload.user2Path);
          else throw new CoolkitError(ErrorCode.BAD_REQUEST, 'add needs model, version and the images: user1 and user2 as Buffers, a directory "path", or "user1Path" and "user2Path"');
          send({ ...msg, topic: `${entry.model}/${entry.version}`, payload: { action: 'added', firmware: entryJson(entry) } });
          if (!ota.running) showIdle();
          return;
        }
        case 'list':
          send({ ...msg, payload: store.list().map(entryJson) });
          return;
        case 'remove': {
          const model = String(payload.model ?? '');
          const version = String(payload.version ?? '');
          if (ota.isServing(model, version)) throw new CoolkitError(409, `firmware ${model} ${version} is being served to a device right now; remove it when the update has finished`);
          const removed = await store.remove(model, version);
          if (!removed) throw new CoolkitError(ErrorCode.NOT_FOUND, `no firmware ${version} for model ${model} in the store`);
          send({ ...msg, topic: `${model}/${version}`, payload: { action: 'removed', model, version } });
          if (!ota.running) showIdle();
          return;
        }
        case 'check': {
          const deviceid = await deviceFor();
          if (!deviceid) throw new CoolkitError(ErrorCode.BAD_REQUEST, RED._('sonoff-ota.errors.no-deviceid'));
          send({ ...msg, topic: deviceid, payload: ota.check(deviceid) });
          return;
        }
        case 'update': {
          const deviceid = await deviceFor();
          if (!deviceid) throw new CoolkitError(ErrorCode.BAD_REQUEST, RED._('sonoff-ota.errors.no-deviceid'));
          if (!svc.ready) throw new CoolkitError(ErrorCode.OFFLINE, RED._('sonoff-ota.errors.not-ready'));
          const version = typeof payload.version === 'string' && payload.version ? payload.version : await configuredVersion(msg);
          const model = typeof payload.model === 'string' && payload.model ? payload.model : undefined;
          const final = await ota.update(deviceid, {
            version,
            model,
            timeoutMs,
            maxConcurrent,
            onProgress: (p) => {
              if (closed) return;
              progressStatus(p);
              send({ ...msg, topic: deviceid, payload: p });
            },
          });
          if (final.state !== 'success') {
            const timedOut = (final.reason ?? '').startsWith('timeout');
            throw new CoolkitError(timedOut ? ErrorCode.TIMEOUT : ErrorCode.SERVER_ERROR, `update of ${deviceid} to ${final.version} failed: ${final.reason ?? 'unknown reason'}`, deviceid);
          }
          return;
        }
        default:
          throw new CoolkitError(ErrorCode.BAD_REQUEST, `unknown action "${action.slice(0, 20)}": use update, check, add, list or remove`);
      }
    }

    /**
     * The node's Version for an update: a plain one as before (empty: the newest image), or the
     * value of msg/flow/global/env, which must then be a version (empty is an error, so a missing
     * property never updates a device to whatever is newest).
     */
    async function configuredVersion(msg: NodeMessageInFlow & Record<string, unknown>): Promise<string | undefined> {
      if (versionSource.typeError) throw new CoolkitError(ErrorCode.BAD_REQUEST, versionSource.typeError);
      if (versionSource.type === 'str') return config.version || undefined;
      let value: unknown;
      try {
        value = await versionSource.evaluate(msg);
      } catch (err) {
        throw new CoolkitError(ErrorCode.BAD_REQUEST, RED._('sonoff-ota.errors.version-eval', { source: versionSource.source, error: (err as Error).message }));
      }
      if (value === undefined || value === null || (typeof value === 'string' && value.trim() === '')) {
        throw new CoolkitError(ErrorCode.BAD_REQUEST, RED._('sonoff-ota.errors.version-empty', { source: versionSource.source }));
      }
      const text = typeof value === 'string' ? value.trim() : typeof value === 'number' && Number.isFinite(value) ? String(value) : '';
      if (!VERSION.test(text)) {
        let shown: string;
        try {
          shown = (JSON.stringify(value) ?? typeof value).slice(0, 40);
        } catch {
          shown = typeof value;
        }
        throw new CoolkitError(ErrorCode.BAD_REQUEST, RED._('sonoff-ota.errors.version-invalid', { source: versionSource.source, value: shown }));
      }
      return text;
    }

    node.on('input', (msg: NodeMessageInFlow & Record<string, unknown>, send: Send, done: Done) => {
      handle(msg, send).then(
        () => done(),
        (err: Error) => {
          if (closed) {
            done();
            return;
          }
          const e = err instanceof FirmwareError ? new CoolkitError(ErrorCode.BAD_REQUEST, err.message) : err;
          if (!ota.running) show({ fill: 'red', shape: 'ring', text: e.message.slice(0, 60) });
          done(e);
        },
      );
    });

    node.on('close', (done: () => void) => {
      closed = true;
      svc.onState.delete(onState);
      if (server.firmware === provider) delete server.firmware;
      server.deregister(user);
      releaseService(cloud, port, node.id).then(done, () => done());
    });
  }

  RED.nodes.registerType('sonoff-ota', SonoffOta as unknown as Parameters<NodeAPI['nodes']['registerType']>[1]);
};
