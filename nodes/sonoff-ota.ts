/**
 * `sonoff-ota`: firmware updates from the user's own server. Keeps a firmware store (user1/user2
 * pairs per model and version, in `<userDir>/coolkit/firmware`), serves images over plain HTTP
 * on its own port, sends the `upgrade` message and reports every state change of the update.
 */
import * as path from 'node:path';
import * as os from 'node:os';
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import { CoolkitError, ErrorCode } from '../src/protocol/errors';
import { FirmwareServer } from '../src/cloud/firmware/server';
import { FirmwareError, FirmwareStore, type FirmwareEntry } from '../src/cloud/firmware/store';
import { OtaManager, type OtaProgress } from '../src/cloud/firmware/ota';
import type { CoolkitServerNode, ServerUser } from './types';

interface OtaConfig extends NodeDef {
  server: string;
  deviceid: string;
  version: string;
  port: number | string;
  maxConcurrent: number | string;
  timeout: number | string;
}

type Send = (msg: Record<string, unknown>) => void;
type Done = (err?: Error) => void;

function positiveInt(value: unknown, fallback: number): number {
  const n = Number(value);
  return Number.isInteger(n) && n > 0 ? n : fallback;
}

function entryJson(e: FirmwareEntry) {
  const img = (i: FirmwareEntry['user1']) => ({ name: i.name, size: i.size, sha256: i.sha256 });
  return { model: e.model, version: e.version, user1: img(e.user1), user2: img(e.user2), addedAt: e.addedAt };
}

export = function register(RED: NodeAPI): void {
  function SonoffOta(this: Node, config: OtaConfig): void {
    RED.nodes.createNode(this, config);
    const node = this;
    const server = RED.nodes.getNode(config.server) as CoolkitServerNode | null;
    if (!server || typeof server.register !== 'function') {
      node.error(RED._('sonoff-ota.errors.missing-server'));
      node.status({ fill: 'red', shape: 'ring', text: RED._('sonoff-ota.errors.missing-server') });
      node.on('input', (_m: NodeMessageInFlow, _s: unknown, done: Done) => done(new Error(RED._('sonoff-ota.errors.missing-server'))));
      return;
    }
    const cloud = server.cloud;
    const userDir = (RED.settings as { userDir?: string }).userDir ?? path.join(os.homedir(), '.node-red');
    const store = new FirmwareStore(path.join(userDir, 'coolkit', 'firmware'));
    const warning = store.load();
    if (warning) node.warn(warning);
    const port = positiveInt(config.port, 8088);
    const files = new FirmwareServer(cloud.options.bind, port);
    const ota = new OtaManager(cloud, store, files, {
      advertiseHost: cloud.options.advertiseHost,
      maxConcurrent: positiveInt(config.maxConcurrent, 2),
      timeoutMs: positiveInt(config.timeout, 600) * 1000,
      ackTimeoutMs: 15_000,
      slowThrottle: 16 * 1024,
    });
    let ready = false;
    files.start().then(
      () => {
        ready = true;
        node.status({ fill: 'grey', shape: 'dot', text: RED._('sonoff-ota.status.ready', { port: files.listeningPort, images: store.list().length }) });
      },
      (err: Error) => {
        node.error(RED._('sonoff-ota.errors.port', { error: err.message }));
        node.status({ fill: 'red', shape: 'ring', text: err.message });
      },
    );

    ota.on('progress', (p: OtaProgress) => {
      const fill = p.state === 'success' ? 'green' : p.state === 'failed' ? 'red' : 'blue';
      node.status({ fill, shape: p.state === 'failed' ? 'ring' : 'dot', text: RED._('sonoff-ota.status.progress', { deviceid: p.deviceid, state: p.state }) });
    });

    const user: ServerUser = {
      id: node.id,
      onServerStatus(status, healthy) {
        if (!healthy) node.status(status);
      },
    };
    server.register(user);

    async function handle(msg: NodeMessageInFlow & Record<string, unknown>, send: Send): Promise<void> {
      const payload = (msg.payload && typeof msg.payload === 'object' && !Buffer.isBuffer(msg.payload) ? msg.payload : {}) as Record<string, unknown>;
      const action = typeof payload.action === 'string' ? payload.action : 'update';
      const deviceid = String(payload.deviceid ?? msg.deviceid ?? config.deviceid ?? '').trim().toLowerCase();
      switch (action) {
        case 'add': {
          const model = String(payload.model ?? '');
          const version = String(payload.version ?? '');
          let entry: FirmwareEntry;
          if (Buffer.isBuffer(payload.user1) && Buffer.isBuffer(payload.user2)) entry = await store.add(model, version, payload.user1, payload.user2);
          else if (typeof payload.path === 'string') entry = await store.addFromDirectory(model, version, payload.path);
          else if (typeof payload.user1Path === 'string' && typeof payload.user2Path === 'string') entry = await store.addFromFiles(model, version, payload.user1Path, payload.user2Path);
          else throw new CoolkitError(ErrorCode.BAD_REQUEST, 'add needs user1 and user2 as Buffers, a directory "path", or "user1Path" and "user2Path"');
          send({ ...msg, topic: `${entry.model}/${entry.version}`, payload: { action: 'added', firmware: entryJson(entry) } });
          return;
        }
        case 'list':
          send({ ...msg, payload: store.list().map(entryJson) });
          return;
        case 'remove': {
          const removed = await store.remove(String(payload.model ?? ''), String(payload.version ?? ''));
          if (!removed) throw new CoolkitError(ErrorCode.NOT_FOUND, `no firmware ${String(payload.version)} for model ${String(payload.model)}`);
          send({ ...msg, payload: { action: 'removed', model: payload.model, version: payload.version } });
          return;
        }
        case 'check': {
          if (!deviceid) throw new CoolkitError(ErrorCode.BAD_REQUEST, RED._('sonoff-ota.errors.no-deviceid'));
          send({ ...msg, topic: deviceid, payload: ota.check(deviceid) });
          return;
        }
        case 'update': {
          if (!deviceid) throw new CoolkitError(ErrorCode.BAD_REQUEST, RED._('sonoff-ota.errors.no-deviceid'));
          if (!ready) throw new CoolkitError(ErrorCode.SERVER_ERROR, RED._('sonoff-ota.errors.not-ready'));
          const version = typeof payload.version === 'string' && payload.version ? payload.version : config.version || undefined;
          const model = typeof payload.model === 'string' ? payload.model : undefined;
          const forward = (p: OtaProgress) => {
            if (p.deviceid === deviceid) send({ ...msg, topic: deviceid, payload: p });
          };
          ota.on('progress', forward);
          let final: OtaProgress;
          try {
            final = await ota.update(deviceid, version, model);
          } finally {
            ota.off('progress', forward);
          }
          if (final.state !== 'success') throw new CoolkitError(ErrorCode.SERVER_ERROR, `update of ${deviceid} to ${final.version} failed: ${final.reason ?? 'unknown reason'}`, deviceid);
          return;
        }
        default:
          throw new CoolkitError(ErrorCode.BAD_REQUEST, `unknown action "${action.slice(0, 20)}": use update, check, add, list or remove`);
      }
    }

    node.on('input', (msg: NodeMessageInFlow & Record<string, unknown>, send: Send, done: Done) => {
      handle(msg, send).then(
        () => done(),
        (err: Error) => {
          const e = err instanceof FirmwareError ? new CoolkitError(ErrorCode.BAD_REQUEST, err.message) : err;
          node.status({ fill: 'red', shape: 'ring', text: e.message.slice(0, 60) });
          done(e);
        },
      );
    });

    node.on('close', (done: () => void) => {
      server.deregister(user);
      ota.close();
      files.close().then(done, () => done());
    });
  }

  RED.nodes.registerType('sonoff-ota', SonoffOta as unknown as Parameters<NodeAPI['nodes']['registerType']>[1]);
};
