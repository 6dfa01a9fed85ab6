/**
 * The local cloud: one HTTP(S) listener that answers `POST /dispatch/device` and upgrades
 * `/api/ws` to device WebSocket sessions, a device registry, and the command path. Events:
 *
 * - `update` ({deviceid, params, state, device}) for every device report
 * - `online` / `offline` ({deviceid, state, device, reason})
 * - `status` () when listening state or the online count changes
 * - `warning` (Error) for problems the user should see (corrupt state file, failed save)
 *
 * Liveness uses one sweep timer for all devices; lookups are by deviceid.
 */
import { answerBadRequest } from './bad-request';
import { EventEmitter } from 'node:events';
import * as http from 'node:http';
import * as https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import * as path from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { buildDispatchReply, SequenceGenerator } from '../protocol/builders';
import { CoolkitError, ErrorCode } from '../protocol/errors';
import { checkDispatch } from '../protocol/schemas';
import type { DeviceInfo, Params, RegisterMessage } from '../protocol/types';
import { deviceInfo, DeviceRegistry, type DeviceRecord } from './registry';
import { CloseCode, DeviceSession, type CommandResult, type SessionHost } from './device-session';
import { ensureSelfSignedCertificate, loadKeyPairFiles, serverTlsOptions } from './tls';
import { resolveOptions, type CloudOptions } from './options';
import { bounded, ThrottledLog } from './log';
import { isOutletOnly, OutletCoalescer } from './coalesce';
import { OfflineQueue } from './offline-queue';
import { MeteringKeeper } from './metering';
import { capabilitiesOf, type Capabilities } from '../protocol/capabilities';
import { normaliseState, type Normalised } from '../protocol/normalise';
import { buildAppDeviceUpdate, buildAppDispatchReply, buildSysmsg, type UserOnlineMessage } from '../protocol/app';
import { selectQueryParams } from '../protocol/builders';
import { Admission } from './admission';
import { AppSession, type AppHost } from './app-session';
import { importPendingDevices } from './pending';
import { destroyOnError } from './socket-error';
import { createHash, timingSafeEqual } from 'node:crypto';

export interface DeviceEvent {
  deviceid: string;
  /** The params this report carried (for online/offline: `{online}`; for RF triggers: `{channel, at}`). */
  params: Params;
  /** The full merged state after this report. */
  state: Params;
  /** Numbers for readings (temperature, power, ...), booleans for relays; null when unavailable. */
  normalized: Normalised;
  device: DeviceInfo;
  reason?: string;
  /** RF bridge triggers: the channel that fired. */
  channel?: number;
  /** Set when another instance of the installation holds the device (MQTT backbone): its instance id. */
  instance?: string;
}

/**
 * What a multi-instance backbone (src/mqtt) plugs into the cloud: where `/dispatch/device` sends a
 * device, and commands for devices another instance holds. Unset = a single instance.
 */
export interface ClusterHook {
  /** Host and port a dispatching device should connect to; undefined = this instance. */
  dispatchTarget(deviceid: string): { host: string; port: number } | undefined;
  /** Send a command to a device held by another live instance; undefined when no other instance holds it. */
  remoteCommand(deviceid: string, params: Params, timeoutMs: number): Promise<CommandResult> | undefined;
}

/** What a backbone learnt about a device held elsewhere (see `CoolkitCloud.applyRemote`). */
export interface RemoteDeviceInfo {
  instance: string;
  model?: string;
  romVersion?: string;
  name?: string;
  /** `factoryKeyHash()` of the device's factory key, from the instance that holds it. */
  keyHash?: string;
}

export interface CommandOptions {
  timeoutMs?: number;
  /** Merge with other per-outlet commands to this device sent within the coalescing window. */
  coalesce?: boolean;
  /** When the device is offline: fail at once (503, default) or queue until it is back. */
  offline?: 'fail' | 'queue';
  /** How long a queued command waits for the device, ms (default 10 min). */
  queueExpiryMs?: number;
}

export type CloudState = 'stopped' | 'starting' | 'listening' | 'error';

/** A start failure with the system error code (`EADDRINUSE`, `EACCES`, ...) kept. */
export class ListenError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'ListenError';
  }
}

export class CoolkitCloud extends EventEmitter implements SessionHost, AppHost {
  readonly options: CloudOptions;
  readonly registry: DeviceRegistry;
  state: CloudState = 'stopped';
  lastError: Error | undefined;
  private server: http.Server | https.Server | undefined;
  private readonly wss: WebSocketServer;
  private readonly sessions = new Map<string, DeviceSession>();
  private readonly unregistered = new Set<DeviceSession>();
  private readonly sequences = new SequenceGenerator();
  private readonly throttled: ThrottledLog;
  private sweepTimer: NodeJS.Timeout | undefined;
  private boundPort = 0;
  private sweeps = 0;
  private readonly coalescer: OutletCoalescer;
  private readonly offlineQueue = new OfflineQueue();
  readonly metering: MeteringKeeper;
  readonly admission: Admission;
  private readonly apps = new Set<AppSession>();
  private readonly capsCache = new WeakMap<DeviceRecord, { model: string; caps: Capabilities; shape: number }>();
  /** Multi-instance backbone hooks (src/mqtt), when configured. */
  cluster: ClusterHook | undefined;
  /** Devices shown online because another instance holds them (applyRemote). */
  private readonly remoteHeld = new Set<string>();

  constructor(options: Partial<CloudOptions> & Pick<CloudOptions, 'stateDir' | 'logger'>) {
    super();
    this.options = resolveOptions(options);
    this.throttled = new ThrottledLog(this.options.logger);
    this.registry = new DeviceRegistry({
      file: path.join(this.options.stateDir, this.options.stateFile),
      onError: (err) => this.reportWarning(err),
    });
    this.wss = new WebSocketServer({ noServer: true, maxPayload: this.options.maxPayload, perMessageDeflate: false, clientTracking: false });
    this.admission = new Admission(this.options.admission);
    this.coalescer = new OutletCoalescer((deviceid, params) => this.sendNow(deviceid, params, this.options.commandTimeoutMs), this.options.coalesceWindowMs);
    this.metering = new MeteringKeeper(this.options.uiActiveIntervalMs, (deviceid) => this.keepMeteringAlive(deviceid), () => this.onlineMeteringDevices());
  }

  get hbInterval(): number {
    return this.options.hbInterval;
  }

  /** The port actually bound (differs from options.port when that was 0). */
  get port(): number {
    return this.boundPort;
  }

  get onlineCount(): number {
    return this.registry.online;
  }

  /** Load state, set up TLS and listen. Rejects with a ListenError (code kept) on failure. */
  async start(): Promise<void> {
    if (this.state === 'starting' || this.state === 'listening') return;
    this.setState('starting');
    try {
      this.registry.load();
      this.importPending();
      this.admission.start(this.registry.size);
      const server = await this.createServer();
      this.server = server;
      await this.listen(server);
      this.boundPort = (server.address() as { port: number }).port;
      this.sweepTimer = setInterval(() => this.sweep(), this.options.sweepIntervalMs);
      this.sweepTimer.unref();
      this.lastError = undefined;
      this.setState('listening');
      this.options.logger.info(`listening on ${this.options.bind}:${this.boundPort} (${this.options.tls === 'off' ? 'plain HTTP/WS' : 'TLS'}), advertising ${this.options.advertiseHost}`);
    } catch (err) {
      this.lastError = err as Error;
      await this.closeServer();
      this.setState('error');
      throw err;
    }
  }

  private async createServer(): Promise<http.Server | https.Server> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => this.onRequest(req, res);
    let server: http.Server | https.Server;
    if (this.options.tls === 'off') {
      server = http.createServer(handler);
    } else {
      let pair;
      try {
        pair = this.options.tls === 'files'
          ? loadKeyPairFiles(this.options.certFile, this.options.keyFile)
          : await ensureSelfSignedCertificate(path.join(this.options.stateDir, 'tls'), [this.options.advertiseHost]);
      } catch (err) {
        throw new ListenError('ETLS', `TLS set-up failed: ${(err as Error).message}`);
      }
      server = https.createServer(serverTlsOptions(pair, this.options.legacyTls), handler);
      server.on('tlsClientError', (err: Error & { code?: string }, socket) => {
        const code = err.code ?? '';
        // A client that rejects our certificate (an alert, or a reset right after it) is firmware
        // that verifies the vendor's certificate; other failures (timeouts, plain HTTP) are not.
        const rejected = /ALERT_(CERTIFICATE|BAD_CERTIFICATE|UNKNOWN_CA|DECRYPT)|ECONNRESET/.test(code);
        const hint = rejected ? '; firmware that verifies the vendor certificate cannot use a local server' : '';
        this.warn(`tls:${socket.remoteAddress}`, `TLS handshake with ${socket.remoteAddress ?? '?'} failed (${code || bounded(err.message, 80)})${hint}`);
      });
    }
    server.headersTimeout = 10_000;
    server.requestTimeout = 15_000;
    server.keepAliveTimeout = 5_000;
    server.maxHeadersCount = 64;
    server.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
    server.on('clientError', (err: Error, socket: Duplex) => {
      const remote = (socket as Socket).remoteAddress ?? '?';
      this.warn(`client:${remote}`, `bad HTTP request from ${remote}: ${err.message}`);
      answerBadRequest(socket);
    });
    return server;
  }

  private listen(server: http.Server): Promise<void> {
    const { bind, port } = this.options;
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        server.off('listening', onListening);
        const code = err.code ?? 'ELISTEN';
        const text = code === 'EADDRINUSE'
          ? `port ${port} is already in use`
          : code === 'EACCES'
            ? `no permission to listen on port ${port} (ports below 1024 need privileges)`
            : `cannot listen on ${bind}:${port}: ${err.message}`;
        reject(new ListenError(code, text));
      };
      const onListening = () => {
        server.off('error', onError);
        server.on('error', (err) => this.reportWarning(err));
        resolve();
      };
      server.once('error', onError);
      server.once('listening', onListening);
      server.listen({ host: bind, port });
    });
  }

  // ---- HTTP: dispatch -------------------------------------------------------------------

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = (req.url ?? '/').split('?')[0];
    if (url === '/dispatch/app') {
      req.resume();
      this.sendJson(res, 200, buildAppDispatchReply(this.options.advertiseHost, this.boundPort));
      return;
    }
    if (url !== '/dispatch/device') {
      this.sendJson(res, 404, { error: ErrorCode.NOT_FOUND, reason: 'not found' });
      req.resume();
      return;
    }
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      this.sendJson(res, 405, { error: ErrorCode.BAD_REQUEST, reason: 'use POST' });
      req.resume();
      return;
    }
    const limit = this.options.maxDispatchBody;
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    req.on('data', (chunk: Buffer) => {
      if (tooBig) return;
      size += chunk.length;
      if (size > limit) {
        tooBig = true;
        this.sendJson(res, 413, { error: ErrorCode.PAYLOAD_TOO_LARGE, reason: `body larger than ${limit} bytes` }, true);
        return;
      }
      chunks.push(chunk);
    });
    req.on('error', () => res.destroy());
    req.on('end', () => {
      if (tooBig) return;
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        this.warn(`dispatch:${req.socket.remoteAddress}`, `dispatch from ${req.socket.remoteAddress ?? '?'}: malformed JSON`);
        this.sendJson(res, 400, { error: ErrorCode.BAD_REQUEST, reason: 'malformed JSON' });
        return;
      }
      const checked = checkDispatch(body);
      if (!checked.ok) {
        this.warn(`dispatch:${req.socket.remoteAddress}`, `dispatch from ${req.socket.remoteAddress ?? '?'}: ${checked.reason}`);
        this.sendJson(res, 400, { error: ErrorCode.BAD_REQUEST, reason: checked.reason });
        return;
      }
      let target: { host: string; port: number } | undefined;
      try {
        target = this.cluster?.dispatchTarget(checked.body.deviceid);
      } catch (err) {
        this.warn('dispatch:cluster', `dispatch placement failed: ${(err as Error).message}`);
      }
      this.sendJson(res, 200, buildDispatchReply(target?.host ?? this.options.advertiseHost, target?.port ?? this.boundPort));
    });
  }

  private sendJson(res: http.ServerResponse, status: number, body: unknown, close = false): void {
    if (res.headersSent) return;
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(text),
      Server: 'openresty',
      Connection: close ? 'close' : 'keep-alive',
    });
    res.end(text);
  }

  // ---- WebSocket: device sessions --------------------------------------------------------

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', destroyOnError);
    const url = (req.url ?? '/').split('?')[0];
    if (url !== '/api/ws' || this.state !== 'listening') {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    // No closure here may use `req`: it would stay alive with the connection.
    const remote = req.socket.remoteAddress ?? '?';
    this.wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      const session = new DeviceSession(ws, remote, this, { burst: this.options.rateBurst, perSecond: this.options.ratePerSecond });
      this.unregistered.add(session);
    });
  }

  /** Register handshake: accept the device, replace a stale socket of the same deviceid. */
  async admit(session: DeviceSession, msg: RegisterMessage): Promise<DeviceRecord | CoolkitError> {
    const refusal = this.admission.decide(this.registry.get(msg.deviceid), msg.deviceid, msg.apikey);
    if (refusal) {
      this.admission.noteRefused({ deviceid: msg.deviceid, factoryApikey: msg.apikey, model: msg.model ?? '', romVersion: msg.romVersion ?? '', remote: session.remote, reason: refusal.message });
      this.warn(`refused:${msg.deviceid}`, `refused device ${msg.deviceid} from ${session.remote}: ${refusal.message}`);
      this.emit('refused', { deviceid: msg.deviceid, reason: refusal.message });
      return refusal;
    }
    const { record, isNew } = this.registry.register(msg.deviceid, msg.apikey, msg.model, msg.romVersion);
    this.admission.takeRefused(msg.deviceid); // accepted now (pairing window): no longer "refused"
    if (isNew) {
      // The issued apikey must survive a crash right after this reply.
      await this.registry.flush();
      if (!session.isOpen) return record;
      this.options.logger.info(`new device ${record.deviceid} (${record.model || 'unknown model'}, firmware ${record.romVersion || '?'})`);
    }
    const previous = this.sessions.get(record.deviceid);
    this.unregistered.delete(session);
    this.sessions.set(record.deviceid, session);
    if (previous && previous !== session) {
      previous.record = undefined; // its close must not mark the device offline
      previous.close(CloseCode.REPLACED, 'replaced by a new connection');
    }
    const movedHere = this.remoteHeld.delete(record.deviceid);
    if (!record.online || movedHere) {
      this.registry.setOnline(record, true);
      this.emitDevice('online', record, { online: true }, previous ? 'reconnected' : movedHere ? 'moved here' : 'registered');
      this.emit('status');
    }
    // After the register reply has gone out: queued commands, and live metering if watched.
    setImmediate(() => this.afterRegister(record.deviceid));
    return record;
  }

  private afterRegister(deviceid: string): void {
    if (!this.sessions.get(deviceid)?.record) return;
    const queued = this.offlineQueue.take(deviceid);
    if (queued) {
      this.sendNow(deviceid, queued.params, this.options.commandTimeoutMs).then(
        (result) => queued.settle(result),
        (err: Error) => queued.settle(err),
      );
    }
    if (this.metering.enabled && this.metering.isWatched(deviceid) && this.capabilities(deviceid)?.metering) this.keepMeteringAlive(deviceid);
  }

  private keepMeteringAlive(deviceid: string): void {
    this.sendNow(deviceid, { uiActive: this.options.uiActiveSeconds }, this.options.commandTimeoutMs).catch((err: Error) => {
      this.warn(`uiactive:${deviceid}`, `live metering keep-alive for ${deviceid} failed: ${err.message}`);
    });
  }

  private *onlineMeteringDevices(): Iterable<string> {
    for (const [deviceid, session] of this.sessions) {
      const record = session.record;
      if (record && this.capabilitiesOfRecord(record).metering) yield deviceid;
    }
  }

  /** What a device can do (from its model, or from the params it reported). */
  capabilities(deviceid: string): Capabilities | undefined {
    const record = this.registry.get(deviceid);
    return record ? this.capabilitiesOfRecord(record) : undefined;
  }

  /**
   * Capabilities are looked up on every report, so those known from the model are cached per
   * record. Those recognised from params are recomputed: a later report can reveal more (a
   * power meter whose first report only had `switch`).
   */
  private capabilitiesOfRecord(record: DeviceRecord): Capabilities {
    // Capabilities recognised from params (a model not in the table) are kept until a report
    // changes the shape of the state (a first `power`, an RF trigger, more outlets).
    const shape = this.registry.shapeOf(record);
    const cached = this.capsCache.get(record);
    if (cached && cached.model === record.model && (cached.caps.source === 'model' || cached.shape === shape)) return cached.caps;
    const caps = capabilitiesOf(record.model, record.params);
    this.capsCache.set(record, { model: record.model, caps, shape });
    return caps;
  }

  /** Keep live power readings coming from a device ('' = every power meter); returns the stop function. */
  watchMetering(deviceid: string): () => void {
    const stop = this.metering.watch(deviceid);
    if (this.metering.enabled && this.state === 'listening') {
      if (deviceid) {
        if (this.sessions.get(deviceid)?.record && this.capabilities(deviceid)?.metering) this.keepMeteringAlive(deviceid);
      } else {
        for (const id of this.onlineMeteringDevices()) this.keepMeteringAlive(id);
      }
    }
    return stop;
  }

  report(_session: DeviceSession, record: DeviceRecord, params: Params): void {
    record.lastSeen = Date.now();
    this.registry.applyReport(record, params);
    this.emitDevice('update', record, params);
    if (params.cmd === 'trigger') this.emitTriggers(record, params);
  }

  /** An RF bridge reports `{"cmd":"trigger","rfTrig<n>":"<time>"}`: one event per channel. */
  private emitTriggers(record: DeviceRecord, params: Params): void {
    for (const key of Object.keys(params)) {
      const m = /^rfTrig(\d+)$/.exec(key);
      if (!m) continue;
      const channel = Number(m[1]);
      if (this.listenerCount('trigger') === 0) return;
      const ev: DeviceEvent = {
        deviceid: record.deviceid,
        params: { channel, at: params[key] },
        state: record.params,
        normalized: normaliseState(record.params, this.capabilitiesOfRecord(record)),
        device: deviceInfo(record),
        channel,
      };
      this.emit('trigger', ev);
    }
  }

  ended(session: DeviceSession): void {
    this.unregistered.delete(session);
    const record = session.record;
    if (!record || this.sessions.get(record.deviceid) !== session) return;
    this.sessions.delete(record.deviceid);
    this.markOffline(record, 'disconnected');
  }

  private markOffline(record: DeviceRecord, reason: string): void {
    if (!record.online) return;
    this.registry.setOnline(record, false);
    this.emitDevice('offline', record, { online: false }, reason);
    this.emit('status');
  }

  private emitDevice(event: 'update' | 'online' | 'offline', record: DeviceRecord, params: Params, reason?: string, instance?: string): void {
    if (this.apps.size > 0) this.relayToApps(event, record, params);
    if (this.listenerCount(event) === 0) return;
    const normalized = normaliseState(record.params, this.capabilitiesOfRecord(record));
    const ev: DeviceEvent = { deviceid: record.deviceid, params, state: record.params, normalized, device: deviceInfo(record) };
    if (reason) ev.reason = reason;
    if (instance) ev.instance = instance;
    this.emit(event, ev);
  }

  // ---- Devices held by other instances (multi-instance backbone) ----------------------------

  /** Devices connected to this instance (sessions), as opposed to `onlineCount` which includes remote ones. */
  get localCount(): number {
    return this.sessions.size;
  }

  /** Whether the device is connected to this instance. */
  isLocal(deviceid: string): boolean {
    // `sessions` holds registered sessions only (set in admit, before the online event).
    return this.sessions.has(deviceid);
  }

  /** Whether the device is shown online because another instance holds it. */
  isRemote(deviceid: string): boolean {
    return this.remoteHeld.has(deviceid);
  }

  /**
   * Mirror a device another instance holds, so flows, hub APIs and apps here see it like a local
   * one: `update` merges `params` into the record (`silent`: no event, e.g. a retained state at
   * start), `online`/`offline` change its liveness. Ignored while the device is connected here.
   */
  applyRemote(deviceid: string, kind: 'update' | 'online' | 'offline', params: Params, info: RemoteDeviceInfo, reason?: string, silent = false): void {
    if (this.isLocal(deviceid)) return;
    let record = this.registry.get(deviceid);
    if (!record) {
      if (kind === 'offline') return;
      record = this.registry.register(deviceid, '', info.model, info.romVersion, 0).record;
    }
    if (info.model && record.model !== info.model) record.model = info.model;
    if (info.romVersion && record.romVersion !== info.romVersion) record.romVersion = info.romVersion;
    if (info.name !== undefined && record.name === undefined) record.name = info.name;
    if (info.keyHash && !record.factoryApikey && record.factoryKeyHash !== info.keyHash) {
      record.factoryKeyHash = info.keyHash;
      this.registry.changed();
    }
    if (kind === 'update') {
      this.registry.applyReport(record, params);
      if (silent) return;
      this.emitDevice('update', record, params, undefined, info.instance);
      if (params.cmd === 'trigger') this.emitTriggers(record, params);
      return;
    }
    if (kind === 'online') {
      const wasOnline = record.online;
      this.remoteHeld.add(deviceid);
      record.lastSeen = Date.now();
      if (!wasOnline) {
        this.registry.setOnline(record, true);
        this.emitDevice('online', record, { online: true }, reason ?? 'online on another instance', info.instance);
        this.emit('status');
      }
      const queued = this.offlineQueue.take(deviceid);
      if (queued) {
        const sent = this.cluster?.remoteCommand(deviceid, queued.params, this.options.commandTimeoutMs);
        if (sent) sent.then((r) => queued.settle(r), (err: Error) => queued.settle(err));
        else queued.settle(new CoolkitError(ErrorCode.OFFLINE, `device ${deviceid} is offline`, deviceid));
      }
      return;
    }
    if (!this.remoteHeld.delete(deviceid) || !record.online) return;
    this.registry.setOnline(record, false);
    this.emitDevice('offline', record, { online: false }, reason ?? 'offline on another instance', info.instance);
    this.emit('status');
  }

  /** One timer for all sockets: drop devices silent past the heartbeat and sockets that never registered. */
  private sweep(now = Date.now()): void {
    const silentBefore = now - this.options.offlineAfterMs;
    for (const session of this.sessions.values()) {
      if (session.lastSeen < silentBefore) {
        this.warn(`silent:${session.deviceid}`, `device ${session.label()} silent for ${Math.round((now - session.lastSeen) / 1000)} s; marking it offline`);
        const record = session.record;
        if (record) {
          this.sessions.delete(record.deviceid);
          this.markOffline(record, 'heartbeat timeout');
        }
        session.record = undefined;
        session.terminate();
      }
    }
    this.offlineQueue.expire(now);
    const loginBefore = now - this.options.registerDeadlineMs;
    for (const app of this.apps) {
      // Silent apps, and apps that never logged in within the register deadline, are dropped.
      if (app.lastSeen < silentBefore || (!app.authenticated && app.openedAt < loginBefore)) app.terminate();
    }
    if (++this.sweeps % 12 === 0) this.importPending();
    const registerBefore = now - this.options.registerDeadlineMs;
    for (const session of this.unregistered) {
      if (session.openedAt < registerBefore) {
        this.unregistered.delete(session);
        session.terminate();
      }
    }
  }

  // ---- App side ----------------------------------------------------------------------------

  handOffToApp(session: DeviceSession, firstFrame: string): void {
    this.unregistered.delete(session);
    const app = new AppSession(session.ws, session.remote, this, { burst: this.options.rateBurst, perSecond: this.options.ratePerSecond });
    this.apps.add(app);
    app.onFrame(firstFrame);
  }

  authenticate(msg: UserOnlineMessage): string | CoolkitError {
    const { appApikey, appToken } = this.options;
    if (!appApikey || !appToken) return new CoolkitError(ErrorCode.AUTH_FAILED, 'app access is not configured on this server (set the app account in the server node)');
    if (!sameSecret(msg.apikey, appApikey) || !sameSecret(msg.at, appToken)) {
      this.warn('appauth', 'an app presented wrong credentials (userOnline refused with 406)');
      return new CoolkitError(ErrorCode.AUTH_FAILED, 'authentication failed');
    }
    return appApikey;
  }

  relayUpdate(deviceid: string, params: Params): Promise<CommandResult> {
    return this.sendCommand(deviceid, params);
  }

  queryState(deviceid: string, keys: string[]): Params | CoolkitError {
    const record = this.registry.get(deviceid);
    if (!record) return new CoolkitError(ErrorCode.NOT_FOUND, `device ${deviceid} is unknown to this server`, deviceid);
    if (!record.online) return new CoolkitError(ErrorCode.OFFLINE, `device ${deviceid} is offline`, deviceid);
    const found = selectQueryParams(record.params, keys);
    return found === 0 ? {} : found;
  }

  appOnline(_session: AppSession): void {
    this.emit('status');
  }

  appEnded(session: AppSession): void {
    this.apps.delete(session);
  }

  get appCount(): number {
    return this.apps.size;
  }

  /** Device reports and online/offline notices go to every logged-in app: serialised once. */
  private relayToApps(event: 'update' | 'online' | 'offline', record: DeviceRecord, params: Params): void {
    const apikey = this.options.appApikey;
    const text = JSON.stringify(event === 'update' ? buildAppDeviceUpdate(record.deviceid, apikey, params) : buildSysmsg(record.deviceid, apikey, event === 'online'));
    for (const app of this.apps) if (app.authenticated) app.sendText(text);
  }

  // ---- Admission -----------------------------------------------------------------------------

  /** Approve a device (editor, `coolkit-pair`, or from the refused list). */
  allowDevice(deviceid: string, factoryApikey?: string, name?: string): DeviceRecord {
    const refused = this.admission.takeRefused(deviceid);
    return this.registry.allow(deviceid, factoryApikey ?? refused?.factoryApikey, name);
  }

  /** Forget a device: drop its connection and its record. */
  forgetDevice(deviceid: string): boolean {
    const session = this.sessions.get(deviceid);
    if (session) {
      this.sessions.delete(deviceid);
      const record = session.record;
      if (record) this.markOffline(record, 'forgotten');
      session.record = undefined;
      session.close(CloseCode.REFUSED, 'forgotten by the server');
    }
    return this.registry.remove(deviceid);
  }

  openPairing(minutes: number): number {
    const until = this.admission.openPairing(minutes);
    this.options.logger.info(until ? `pairing window open until ${new Date(until).toISOString()}: new devices are accepted` : 'pairing window closed');
    this.emit('status');
    return until;
  }

  private importPending(): void {
    const file = path.join(this.options.stateDir, this.options.pendingDevicesFile);
    const result = importPendingDevices(file, (entry) => {
      this.registry.allow(entry.deviceid, entry.apikey, entry.name);
      this.admission.takeRefused(entry.deviceid);
    });
    if (result.imported > 0) this.options.logger.info(`imported ${result.imported} paired device(s) from ${file}`);
    if (result.error) this.reportWarning(new Error(result.error));
  }

  // ---- Commands ----------------------------------------------------------------------------

  /**
   * Send params to a device; resolves on its ack, rejects with a CoolkitError (503 offline,
   * 504 timeout, or the device's code). Per-outlet commands can be coalesced; commands for an
   * offline (known) device can be queued until it is back.
   */
  sendCommand(deviceid: string, params: Params, options: CommandOptions | number = {}): Promise<CommandResult> {
    const opts: CommandOptions = typeof options === 'number' ? { timeoutMs: options } : options;
    const online = this.sessions.get(deviceid)?.record !== undefined;
    if (!online && this.cluster) {
      const remote = this.cluster.remoteCommand(deviceid, params, opts.timeoutMs ?? this.options.commandTimeoutMs);
      if (remote) return remote;
    }
    if (!online && opts.offline === 'queue' && this.registry.get(deviceid)) {
      return this.offlineQueue.add(deviceid, params, Date.now() + (opts.queueExpiryMs ?? 600_000));
    }
    if (online && opts.coalesce && isOutletOnly(params)) return this.coalescer.add(deviceid, params);
    return this.sendNow(deviceid, params, opts.timeoutMs ?? this.options.commandTimeoutMs);
  }

  private sendNow(deviceid: string, params: Params, timeoutMs: number): Promise<CommandResult> {
    const session = this.sessions.get(deviceid);
    if (!session || !session.record) {
      const known = this.registry.get(deviceid);
      return Promise.reject(new CoolkitError(ErrorCode.OFFLINE, known ? `device ${deviceid} is offline` : `device ${deviceid} is unknown to this server (it never connected)`, deviceid));
    }
    const record = session.record;
    return session.command(params, this.sequences.next(), timeoutMs).then((result) => {
      // Like the vendor cloud, keep what the device accepted (timers, targets, settings), so a
      // later device `query` is answered from it; one-shot commands are not state.
      const kept = persistentParams(params);
      if (kept) this.registry.applyReport(record, kept);
      return result;
    });
  }

  /** A new unique sequence for server messages that are built elsewhere (e.g. OTA). */
  nextSequence(): string {
    return this.sequences.next();
  }

  /** The live session of a device, if connected. */
  session(deviceid: string): DeviceSession | undefined {
    return this.sessions.get(deviceid);
  }

  device(deviceid: string): DeviceRecord | undefined {
    return this.registry.get(deviceid);
  }

  devices(): DeviceRecord[] {
    return [...this.registry.all()];
  }

  // ---- Logging and lifecycle ---------------------------------------------------------------

  warn(key: string, message: string): void {
    this.throttled.warn(key, message);
  }

  /** A problem the user should see: to the 'warning' listeners (the node shows it as an error), else to the log. */
  private reportWarning(err: Error): void {
    if (this.listenerCount('warning') > 0) this.emit('warning', err);
    else this.options.logger.warn(bounded(err.message));
  }

  private setState(state: CloudState): void {
    this.state = state;
    this.emit('status');
  }

  /** Close every device socket with 1001, stop listening, clear timers, save state. */
  async close(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.metering.stop();
    const stopped = new CoolkitError(ErrorCode.OFFLINE, 'the server stopped');
    this.coalescer.cancelAll(stopped);
    this.offlineQueue.cancelAll(stopped);
    for (const app of this.apps) app.close(CloseCode.GOING_AWAY, 'server shutting down');
    const apps = [...this.apps];
    this.apps.clear();
    setTimeout(() => apps.forEach((a) => a.terminate()), 1000).unref();
    const sessions = [...this.sessions.values(), ...this.unregistered];
    this.sessions.clear();
    this.unregistered.clear();
    for (const session of sessions) {
      const record = session.record;
      session.record = undefined;
      if (record) this.registry.setOnline(record, false);
      session.close(CloseCode.GOING_AWAY, 'server shutting down');
    }
    // Sockets that do not finish the closing handshake quickly are cut.
    const cutoff = setTimeout(() => {
      for (const session of sessions) session.terminate();
    }, 1000);
    await this.closeServer();
    clearTimeout(cutoff);
    await this.registry.close();
    this.setState('stopped');
  }

  private closeServer(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return Promise.resolve();
    return new Promise((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
      setTimeout(() => {
        server.closeAllConnections();
      }, 200).unref();
    });
  }
}

/** Params that are commands rather than state, never stored from a server command. */
const TRANSIENT_PARAMS = new Set(['cmd', 'rfChl', 'uiActive', 'hundredDaysKwh', 'oneKwh', 'startTime', 'endTime']);

function persistentParams(params: Params): Params | undefined {
  let out: Params | undefined;
  for (const key of Object.keys(params)) {
    if (TRANSIENT_PARAMS.has(key)) continue;
    (out ??= {})[key] = params[key];
  }
  return out;
}

/** Compare secrets in constant time (hashes have equal length whatever the input). */
function sameSecret(given: unknown, expected: string): boolean {
  if (typeof given !== 'string') return false;
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

export { CloseCode };
