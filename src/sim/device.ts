/**
 * A simulated stock-firmware Sonoff speaking the DEVICE side of the CoolKit (eWeLink v2)
 * protocol, byte-for-byte in the shape of the 2017 cloud capture (shared/seeds/001_*.txt):
 *
 *   POST /dispatch/device → WebSocket /api/ws → register → date → update (full state) → query ["timers"]
 *
 * then acks every server-pushed action and reports its state after applying an `update`.
 * It exists to test servers, so it validates what it receives, exposes fault injection
 * (error acks, silent drops, slow acks, power loss) and never throws from I/O callbacks.
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import {
  createBehaviour,
  PowBehaviour,
  RfBridgeBehaviour,
  ThBehaviour,
  type Behaviour,
  type BehaviourHost,
  type UpdateOutcome,
  type RfTransmission,
  type SensorReading,
} from './behaviour';
import { postDispatch, type DispatchBody, type DispatchTarget } from './dispatch';
import { initialParams, resolveProfile, type DeviceProfile } from './models';
import {
  DEFAULT_DOWNLOAD_TIMEOUT_MS,
  DEFAULT_REBOOT_DELAY_MS,
  downloadImage,
  ESP_IMAGE_MAGIC,
  parseUpgrade,
  pickImage,
  sha256Hex,
  type BinListEntry,
  type OtaFailure,
  type OtaImage,
  type SimOtaEvent,
  type SimOtaOptions,
} from './ota';
import { BehaviourScheduler, type FleetTicker } from './scheduler';
import { isPlainObject, mergeParams, type Params } from './state';

export type { Params } from './state';
export type JsonObject = Record<string, unknown>;

export interface ReconnectPolicy {
  minMs: number;
  maxMs: number;
}

/** What `onCommand` may ask for: ack with a non-zero `error`, or never ack at all. */
export interface CommandVerdict {
  error?: number;
  noAck?: boolean;
}

export interface SimDeviceOptions {
  /** Base URL, e.g. 'https://127.0.0.1:8443' or 'http://127.0.0.1:8080'; dispatch is POSTed to `${server}/dispatch/device`. */
  server: string;
  /** 10 hex chars, e.g. '100008db11'. */
  deviceid: string;
  /** Factory apikey UUID; random if absent. */
  apikey?: string;
  /**
   * Which Sonoff family to play (./models PROFILES): 'basic' (default), '2ch', '3ch', '4ch', 'pow',
   * 's31', 'th16', 'th16-ds18b20', 'rfbridge', the model string of one of them ('PSF-B04-GL'), or
   * a DeviceProfile object. Any other string is a raw model string with the basic behaviour.
   */
  profile?: string | DeviceProfile;
  /** Model string to report; default the profile's ('ITA-GZ1-GL' for basic). Does not change the behaviour. */
  model?: string;
  /** Default the profile's ('1.5.5' for basic). */
  romVersion?: string;
  /**
   * Initial state; default the profile's initial params, for basic {switch:'off', fwVersion:romVersion,
   * rssi:-31, staMac:<from deviceid>, startup:'off', pulse:'off', pulseWidth:500, sledOnline:'on'}.
   */
  params?: Params;
  /** pow/s31: metering check interval inside a uiActive window. Default 1000 ms. */
  meteringTickMs?: number;
  /** th16: sensor sampling / report check interval. Default 5000 ms (CK-UIID: "judged every 5S"). */
  sensorTickMs?: number;
  /** th16: sensor model (DHT11 | DS18B20 | AM2301 | MS01 | errorType); default the profile's. */
  sensorType?: string;
  /** rfbridge: delay from cmd capture to the learned code's report. Default 300 ms. */
  captureDelayMs?: number;
  /** rfbridge: trigger a random learned channel about every this many ms (±50 %) while online. Default 0 = never. */
  rfTriggerIntervalMs?: number;
  /** Random walk of metering and sensor readings. Default true. */
  drift?: boolean;
  /** Random source for readings, loads and RF codes; default Math.random. */
  random?: () => number;
  /**
   * Run behaviour timers on this shared fleet ticker instead of one timer of this device's own
   * (the CLI shares one across the fleet).
   */
  ticker?: FleetTicker;
  /** Periodic full state report (action update); 0/undefined = off. */
  reportIntervalMs?: number;
  /** WebSocket ping frame interval; default (config.hbInterval + 7) s from the register reply, 90 s without one. 0 = no pings. */
  pingIntervalMs?: number;
  /** Close and reconnect when a ping gets no pong within this time (CoolKit rule: 3 s). Default 3000; 0 = never. */
  pongTimeoutMs?: number;
  /** Default {minMs: 1000, maxMs: 30000}: exponential back-off with jitter, re-running dispatch each time. */
  reconnect?: false | ReconnectPolicy;
  /** Connect to this host instead of the IP in the dispatch reply. */
  connectHost?: string;
  /** Connect to this port instead of the port in the dispatch reply. */
  connectPort?: number;
  /** Default false: the server uses a self-signed certificate. */
  rejectUnauthorized?: boolean;
  /** Delay before handling (applying + acking) a server command. Default 0. */
  ackDelayMs?: number;
  /** Fault injection, called for every server-pushed action before it is applied. */
  onCommand?: (params: Params, msg: JsonObject) => CommandVerdict | void;
  /** Send {"action":"query","params":["timers"]} after the first report. Default true, as in the seed. */
  queryTimers?: boolean;
  /**
   * What the device does with an `upgrade` (./ota): by default it acks, downloads the image for its
   * inactive partition, checks the sha256, reboots and comes back with the new version. The
   * options inject failures; `false` only acks, applying nothing (the behaviour before OTA existed).
   */
  ota?: false | SimOtaOptions;
}

/** Event signatures of SimulatedDevice. */
export interface SimDeviceEvents {
  /** Register accepted. Emitted after the initial date/update/query were sent. */
  registered: (reply: JsonObject) => void;
  /** A server `update` was applied to the state, acked and reported. */
  command: (params: Params, msg: JsonObject) => void;
  /** Every server message: the parsed object, or the raw text when it is not a JSON object (e.g. 'pong'). */
  message: (msg: JsonObject | string) => void;
  /** An `update` report was sent. */
  report: (params: Params) => void;
  /** An open WebSocket closed (also on stop() and dropConnection()). */
  disconnected: (code: number, reason: string) => void;
  /** Progress of an over-the-air update (see SimOtaPhase). */
  ota: (ev: SimOtaEvent) => void;
  /** Only emitted when someone listens; otherwise errors are dropped. */
  error: (err: Error) => void;
}

/** Errors raised by the simulator itself; `code` carries a CoolKit error code when there is one. */
export class SimDeviceError extends Error {
  constructor(
    message: string,
    readonly code?: number,
  ) {
    super(message);
    this.name = 'SimDeviceError';
  }
}

export const DEFAULT_MODEL = 'ITA-GZ1-GL';
export const DEFAULT_ROM_VERSION = '1.5.5';
export const DEFAULT_RECONNECT: Readonly<ReconnectPolicy> = { minMs: 1000, maxMs: 30000 };

const DISPATCH_TIMEOUT_MS = 10_000;
const HANDSHAKE_TIMEOUT_MS = 10_000;
/** A server that accepts the socket but never answers register would otherwise stall the device forever. */
const REGISTER_TIMEOUT_MS = 10_000;
/** stop() waits this long for a clean close before terminating the socket. */
const CLOSE_TIMEOUT_MS = 1_000;
/** CoolKit: "By default 90 s" when the server gives no hbInterval. */
const DEFAULT_PING_MS = 90_000;

/**
 * Back-off before reconnect attempt `attempt` (0-based): min·2^attempt capped at max, times a
 * jitter factor in [0.5, 1.5) so a fleet that lost its server does not return in lock-step,
 * clamped to [min, max].
 */
export function backoffDelay(attempt: number, policy: ReconnectPolicy, random: () => number = Math.random): number {
  const base = Math.min(policy.maxMs, policy.minMs * 2 ** attempt);
  const jittered = base * (0.5 + random());
  return Math.round(Math.min(policy.maxMs, Math.max(policy.minMs, jittered)));
}

/** Ping interval the CoolKit docs prescribe: (hbInterval + 7) s. */
export function pingIntervalFromReply(reply: JsonObject): number {
  const config = reply.config;
  const hb = isPlainObject(config) ? config.hbInterval : undefined;
  return typeof hb === 'number' && hb > 0 ? (hb + 7) * 1000 : DEFAULT_PING_MS;
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function rawToText(data: WebSocket.RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

function validateOptions(o: SimDeviceOptions): void {
  if (!/^https?:\/\//i.test(o.server ?? '')) throw new TypeError(`server must be an http(s) URL, got "${o.server}"`);
  if (typeof o.deviceid !== 'string' || o.deviceid === '') throw new TypeError('deviceid is required');
  const r = o.reconnect;
  if (r && !(r.minMs > 0 && r.maxMs >= r.minMs)) throw new TypeError('reconnect needs 0 < minMs <= maxMs');
}

// Typed overloads for the events above (merged into the class declaration).
export declare interface SimulatedDevice {
  on<E extends keyof SimDeviceEvents>(event: E, listener: SimDeviceEvents[E]): this;
  once<E extends keyof SimDeviceEvents>(event: E, listener: SimDeviceEvents[E]): this;
  off<E extends keyof SimDeviceEvents>(event: E, listener: SimDeviceEvents[E]): this;
}

export class SimulatedDevice extends EventEmitter {
  readonly deviceid: string;
  /** The factory key, sent in dispatch and register only. */
  readonly factoryApikey: string;
  readonly model: string;
  /** The family this device plays. */
  readonly profile: DeviceProfile;

  private readonly opts: SimDeviceOptions;
  /** Every behaviour timer of this device (inching, metering, sensor, RF) lives here. */
  private readonly scheduler: BehaviourScheduler;
  private readonly behaviour: Behaviour;
  private readonly reconnectPolicy: false | ReconnectPolicy;
  private readonly bootAt = performance.now();
  private _state: Params;
  private _issuedApikey: string | undefined;
  private _registered = false;
  private _romVersion: string;

  // Over-the-air update state (survives reconnects, as flash does).
  private _runningImage: OtaImage = 'user1';
  private otaBusy = false;
  private otaFailuresUsed = 0;
  private otaAbort: AbortController | undefined;
  private otaTimer: NodeJS.Timeout | undefined;
  /** Set while the device is "off the network" for a download or a reboot: no reconnect. */
  private holdOffline = false;
  /** Emitted once the device has registered again after an update's reboot. */
  private otaOutcome: SimOtaEvent | undefined;

  /** True between start() and stop() (or a fatal failure with reconnect: false). */
  private running = false;
  /** Bumped on every connect and on stop(), so late async results of an old attempt are ignored. */
  private generation = 0;
  private attempt = 0;
  private startPromise: Promise<void> | undefined;
  private startWaiter: { resolve: () => void; reject: (err: Error) => void } | undefined;
  private dispatchAbort: AbortController | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;

  // Per-connection state, reset by openSocket().
  private ws: WebSocket | undefined;
  private opened = false;
  private awaitingRegister = false;
  private connError: Error | undefined;
  private pongTimer: NodeJS.Timeout | undefined;
  private readonly connTimeouts = new Set<NodeJS.Timeout>();
  private readonly connIntervals = new Set<NodeJS.Timeout>();

  constructor(options: SimDeviceOptions) {
    super();
    validateOptions(options);
    this.opts = options;
    this.deviceid = options.deviceid;
    this.factoryApikey = options.apikey ?? randomUUID();
    this.profile = resolveProfile(options.profile);
    this.model = options.model ?? this.profile.model;
    this._romVersion = options.romVersion ?? this.profile.romVersion;
    this.reconnectPolicy = options.reconnect === false ? false : (options.reconnect ?? { ...DEFAULT_RECONNECT });
    this._state = options.params
      ? structuredClone(options.params)
      : initialParams(this.profile, { deviceid: this.deviceid, romVersion: this.romVersion, sensorType: options.sensorType });
    this.scheduler = new BehaviourScheduler(options.ticker, (err) => this.emitError(err));
    const random = options.random ?? Math.random;
    const host: BehaviourHost = {
      deviceid: this.deviceid,
      params: this._state,
      report: (params) => this.report(params),
      scheduler: this.scheduler,
      random,
    };
    this.behaviour = createBehaviour(host, this.profile, options);
    if (!options.params) this.behaviour.initState(this._state);
  }

  /** The firmware version sent in dispatch and register; changes after a successful OTA update. */
  get romVersion(): string {
    return this._romVersion;
  }

  /** The OTA partition the firmware runs from ('user1' at first); an update flashes the other one. */
  get runningImage(): OtaImage {
    return this._runningImage;
  }

  /** True from an accepted `upgrade` until the device is back (or the update failed). */
  get updating(): boolean {
    return this.otaBusy;
  }

  /** A copy of the current params. */
  get state(): Params {
    return structuredClone(this._state);
  }

  /** The apikey from the last accepted register reply. */
  get issuedApikey(): string | undefined {
    return this._issuedApikey;
  }

  get registered(): boolean {
    return this._registered;
  }

  // ---- family-specific test hooks ---------------------------------------------------------------

  /** pow/s31: epoch ms at which the current (or last) uiActive window ends; 0 if none was opened (or other families). */
  get meteringActiveUntil(): number {
    return this.behaviour instanceof PowBehaviour ? this.behaviour.meteringActiveUntil : 0;
  }

  /** pow/s31: the live (not necessarily reported) readings; undefined for other families. */
  get metering(): { power: number; voltage: number; current: number } | undefined {
    return this.behaviour instanceof PowBehaviour ? this.behaviour.metering : undefined;
  }

  /** th16: the live sensor reading; undefined for other families. */
  get reading(): SensorReading | undefined {
    return this.behaviour instanceof ThBehaviour ? this.behaviour.reading : undefined;
  }

  /**
   * th16: set the sensor reading (°C / %RH). Like a real sensor change, it is reported (if beyond the
   * 0.5 °C / 5 %RH thresholds) and acted on by the thermostat at the next sensor tick.
   */
  setReading(reading: SensorReading): void {
    if (!(this.behaviour instanceof ThBehaviour)) throw new TypeError(`setReading() needs a th16 profile, this is "${this.profile.name}"`);
    this.behaviour.setReading(reading);
  }

  /** rfbridge: report that RF code `rfChl` was received (`{"cmd":"trigger","rfTrig<n>":"…"}`). False when offline. */
  triggerRf(rfChl: number): boolean {
    if (!(this.behaviour instanceof RfBridgeBehaviour)) throw new TypeError(`triggerRf() needs the rfbridge profile, this is "${this.profile.name}"`);
    return this.behaviour.triggerRf(rfChl);
  }

  /** rfbridge: the successful `cmd:"transmit"` commands so far (a copy); [] for other families. */
  get transmitted(): RfTransmission[] {
    return this.behaviour instanceof RfBridgeBehaviour ? this.behaviour.transmitted.map((t) => ({ ...t })) : [];
  }

  /**
   * Connect and register. Resolves on the first accepted register. With reconnect: false it
   * rejects when that first attempt fails; otherwise it keeps retrying. stop() before
   * registration rejects it.
   */
  start(): Promise<void> {
    if (this.startPromise) return this.startPromise;
    this.running = true;
    this.attempt = 0;
    const p = new Promise<void>((resolve, reject) => {
      this.startWaiter = { resolve, reject };
    });
    // Mark as handled: a caller that drives the device through events and never awaits
    // start() must not get an unhandledRejection crash. Awaiting callers still see it.
    p.catch(() => undefined);
    this.startPromise = p;
    void this.connect();
    return p;
  }

  /** Close the socket, clear every timer, and never reconnect (until start() again). */
  async stop(): Promise<void> {
    this.running = false;
    this.generation++;
    this.dispatchAbort?.abort();
    this.otaAbort?.abort();
    this.otaAbort = undefined;
    if (this.otaTimer) clearTimeout(this.otaTimer);
    this.otaTimer = undefined;
    this.holdOffline = false;
    this.otaBusy = false;
    this.otaOutcome = undefined;
    this.clearReconnectTimer();
    this.clearConnTimers();
    this.settleStart(new SimDeviceError('stopped before registration'));
    this.startPromise = undefined;
    const ws = this.ws;
    if (ws) await closeSocket(ws);
  }

  /** Local change (like a button press): merge into state and report just these params. Returns false when offline. */
  setLocal(params: Params): boolean {
    mergeParams(this._state, params);
    const sent = this.report(params);
    this.runBehaviour(() => this.behaviour.afterApply(params, 'local'));
    return sent;
  }

  /** Send an `update` report (full state by default). Returns false when not registered. */
  report(params?: Params): boolean {
    if (!this._registered) return false;
    const p = structuredClone(params ?? this._state);
    const sent = this.send({ ...this.envelope('update'), params: p });
    if (sent) this.safeEmit('report', p);
    return sent;
  }

  /** Raw send (objects are JSON-encoded). Returns false when the socket is not open. */
  send(message: JsonObject | string): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    const text = typeof message === 'string' ? message : JSON.stringify(message);
    ws.send(text, (err) => {
      if (err) this.emitError(err);
    });
    return true;
  }

  /** Kill the socket without a close handshake, like a power loss. Reconnect policy applies. */
  dropConnection(): void {
    if (!this.ws) return;
    // Offline at once (report()/send() now return false); 'disconnected' and the reconnect
    // follow from the socket's close event.
    this._registered = false;
    this.ws.terminate();
  }

  // ---- connection lifecycle -------------------------------------------------------------

  private async connect(): Promise<void> {
    const gen = ++this.generation;
    const abort = new AbortController();
    this.dispatchAbort = abort;
    let target: DispatchTarget;
    try {
      target = await postDispatch(this.opts.server, this.dispatchBody(), {
        rejectUnauthorized: this.opts.rejectUnauthorized ?? false,
        timeoutMs: DISPATCH_TIMEOUT_MS,
        signal: abort.signal,
      });
    } catch (err) {
      if (gen !== this.generation) return; // stopped meanwhile
      this.emitError(err);
      this.connectionLost(toError(err));
      return;
    } finally {
      if (this.dispatchAbort === abort) this.dispatchAbort = undefined;
    }
    if (gen !== this.generation) return;
    this.openSocket(this.socketUrl(target));
  }

  private socketUrl(target: DispatchTarget): string {
    const scheme = /^https:/i.test(this.opts.server) ? 'wss' : 'ws';
    const host = this.opts.connectHost ?? target.IP;
    const port = this.opts.connectPort ?? target.port;
    return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}/api/ws`;
  }

  private openSocket(url: string): void {
    const ws = new WebSocket(url, {
      perMessageDeflate: false,
      rejectUnauthorized: this.opts.rejectUnauthorized ?? false,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
    });
    this.ws = ws;
    this.opened = false;
    this.awaitingRegister = false;
    this.connError = undefined;
    ws.on('open', () => this.onOpen(ws));
    ws.on('message', (data) => this.onRawMessage(ws, data));
    ws.on('pong', () => this.onPong());
    ws.on('error', (err) => this.onSocketError(ws, err));
    ws.on('close', (code, reason) => this.onClose(ws, code, reason.toString('utf8')));
  }

  private onOpen(ws: WebSocket): void {
    if (ws !== this.ws) return;
    this.opened = true;
    this.awaitingRegister = true;
    this.send(this.registerMessage());
    this.connTimeout(REGISTER_TIMEOUT_MS, () => {
      if (!this.awaitingRegister) return;
      this.connError = new SimDeviceError(`no register reply within ${REGISTER_TIMEOUT_MS} ms`);
      this.emitError(this.connError);
      ws.terminate();
    });
  }

  private onSocketError(ws: WebSocket, err: Error): void {
    if (ws !== this.ws) return;
    this.connError ??= err;
    if (this.running) this.emitError(err);
  }

  private onClose(ws: WebSocket, code: number, reason: string): void {
    if (ws !== this.ws) return;
    this.ws = undefined;
    const wasOpen = this.opened;
    const err = this.connError ?? new SimDeviceError(wasOpen ? `connection closed (${code})` : 'connection failed');
    if (wasOpen) this.safeEmit('disconnected', code, reason);
    this.connectionLost(err);
  }

  /** Common tail of every failure: forget the connection, then reconnect or give up. */
  private connectionLost(err: Error): void {
    this.clearConnTimers();
    this._registered = false;
    this.awaitingRegister = false;
    if (!this.running) return;
    if (this.holdOffline) return; // downloading or rebooting: the OTA code reconnects
    if (this.reconnectPolicy === false) {
      this.running = false;
      this.startPromise = undefined;
      this.settleStart(err);
      return;
    }
    const delay = backoffDelay(this.attempt++, this.reconnectPolicy);
    this.clearReconnectTimer();
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.running) void this.connect();
    }, delay);
  }

  private settleStart(err?: Error): void {
    const waiter = this.startWaiter;
    this.startWaiter = undefined;
    if (!waiter) return;
    if (err) waiter.reject(err);
    else waiter.resolve();
  }

  // ---- incoming messages ----------------------------------------------------------------

  private onRawMessage(ws: WebSocket, data: WebSocket.RawData): void {
    if (ws !== this.ws) return;
    const text = rawToText(data);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (!isPlainObject(parsed)) {
      this.safeEmit('message', text); // e.g. the text 'pong'
      return;
    }
    this.safeEmit('message', parsed);
    if (typeof parsed.action === 'string') this.onServerAction(parsed);
    else if (this.awaitingRegister) this.onRegisterReply(parsed);
    // Anything else is a reply to our date/update/query: 'message' is all it gets.
  }

  private onRegisterReply(reply: JsonObject): void {
    this.awaitingRegister = false;
    if (reply.error !== 0 || typeof reply.apikey !== 'string' || reply.apikey === '') {
      const code = typeof reply.error === 'number' ? reply.error : undefined;
      const why = reply.error !== 0 ? `register rejected with error ${String(reply.error)}` : 'register reply has no apikey';
      this.connError = new SimDeviceError(why, code);
      this.emitError(this.connError);
      this.ws?.close();
      return;
    }
    this._issuedApikey = reply.apikey;
    this._registered = true;
    this.attempt = 0;
    this.runBehaviour(() => this.behaviour.onOnline());
    this.startHeartbeat(reply);
    const reportMs = this.opts.reportIntervalMs ?? 0;
    if (reportMs > 0) this.connInterval(reportMs, () => this.report());
    // Seed order: date, full update, query timers; sent before 'registered' fires so a
    // listener reacting to it cannot interleave its own messages into the handshake.
    this.send(this.envelope('date'));
    this.report();
    if (this.opts.queryTimers ?? true) this.send({ ...this.envelope('query'), params: ['timers'] });
    this.settleStart();
    this.safeEmit('registered', reply);
    const outcome = this.otaOutcome;
    this.otaOutcome = undefined;
    if (outcome) {
      this.otaBusy = false;
      this.safeEmit('ota', outcome);
    }
  }

  private onServerAction(msg: JsonObject): void {
    const delay = this.opts.ackDelayMs ?? 0;
    if (delay > 0) this.connTimeout(delay, () => this.handleServerAction(msg));
    else this.handleServerAction(msg);
  }

  /** Apply (update only), ack, then report the full state, as the seed shows. */
  private handleServerAction(msg: JsonObject): void {
    const params: Params = isPlainObject(msg.params) ? msg.params : {};
    const verdict = this.consultOnCommand(params, msg);
    if (verdict.noAck) return;
    const error = verdict.error ?? 0;
    if (error !== 0) {
      this.send(this.ack(msg, error));
      return;
    }
    if (msg.action === 'upgrade' && this.opts.ota !== false) {
      this.onUpgrade(msg);
      return;
    }
    if (msg.action !== 'update') {
      this.send(this.ack(msg, 0)); // e.g. upgrade with ota: false: acked, nothing applied
      return;
    }
    let outcome: UpdateOutcome = { apply: params };
    this.runBehaviour(() => {
      outcome = this.behaviour.handleUpdate(params);
    });
    if (outcome.error) {
      this.send(this.ack(msg, outcome.error));
      return;
    }
    const apply = outcome.apply ?? {};
    mergeParams(this._state, apply);
    this.send(this.ack(msg, 0));
    if (outcome.reportFull ?? true) this.report();
    this.safeEmit('command', params, msg);
    this.runBehaviour(() => this.behaviour.afterApply(apply, 'server'));
    if (outcome.after) this.runBehaviour(outcome.after);
  }

  // ---- over-the-air update ---------------------------------------------------------------------

  /** `upgrade` (coolkit-protocol.md §3.10): ack, download, verify, reboot, come back with the new version. */
  private onUpgrade(msg: JsonObject): void {
    const upgrade = parseUpgrade(msg.params);
    if (typeof upgrade === 'string') {
      this.send(this.ack(msg, 400));
      this.safeEmit('ota', { phase: 'failed', version: '', reason: upgrade });
      return;
    }
    const { version } = upgrade;
    if (upgrade.model !== '' && upgrade.model !== this.model) {
      // SonOTA: with another model "the websocket gets closed in the middle of the JSON transmission".
      this.safeEmit('ota', { phase: 'failed', version, reason: `upgrade is for model ${upgrade.model}, this device is a ${this.model}: connection dropped` });
      this.dropConnection();
      return;
    }
    if (this.otaBusy) {
      this.send(this.ack(msg, 400));
      return;
    }
    const o = this.opts.ota || {};
    let fail: OtaFailure | undefined;
    if (o.fail !== undefined && this.otaFailuresUsed < (o.failCount ?? Infinity)) {
      fail = o.fail;
      this.otaFailuresUsed++;
    }
    const image: OtaImage = o.image ?? (this._runningImage === 'user1' ? 'user2' : 'user1');
    if (fail === 'ack404') {
      this.send(this.ack(msg, 404));
      this.safeEmit('ota', { phase: 'failed', version, image, reason: 'acked with error 404 (told to)' });
      return;
    }
    const entry = pickImage(upgrade.binList, image);
    this.otaBusy = true;
    let offline: Promise<void> = Promise.resolve();
    if (fail === 'no-ack') offline = this.goOffline();
    else this.send(this.ack(msg, 0));
    this.safeEmit('ota', { phase: 'received', version, image, url: entry?.downloadUrl });
    void offline
      .then(() => this.runOta(version, image, entry, fail))
      .catch((err: unknown) => {
        this.emitError(err);
        this.otaBusy = false;
      });
  }

  private async runOta(version: string, image: OtaImage, entry: BinListEntry | undefined, fail: OtaFailure | undefined): Promise<void> {
    const o = this.opts.ota || {};
    const rebootDelay = o.rebootDelayMs ?? DEFAULT_REBOOT_DELAY_MS;
    const giveUp = (reason: string, bytes?: number) => {
      const ev: SimOtaEvent = { phase: 'failed', version, image, reason };
      if (bytes !== undefined) ev.bytes = bytes;
      if (this.holdOffline) {
        // Off the network for a direct download (no-ack): back with the old firmware.
        this.otaOutcome = ev;
        this.rebootInto(rebootDelay, undefined);
        return;
      }
      this.otaBusy = false;
      this.safeEmit('ota', ev);
    };
    if (!entry) {
      giveUp(`the binList has no ${image}.bin`);
      return;
    }
    const abort = new AbortController();
    this.otaAbort = abort;
    let data: Buffer;
    try {
      data = await downloadImage(entry.downloadUrl, {
        timeoutMs: o.downloadTimeoutMs ?? DEFAULT_DOWNLOAD_TIMEOUT_MS,
        signal: abort.signal,
        abortAfterFirstChunk: fail === 'download',
        onStart: () => this.safeEmit('ota', { phase: 'downloading', version, image, url: entry.downloadUrl }),
      });
    } catch (err) {
      if (abort.signal.aborted || !this.running) return; // stopped meanwhile
      const e = err as Error & { bytes?: number };
      giveUp(`download of ${entry.downloadUrl} failed: ${e.message}`, e.bytes);
      return;
    } finally {
      if (this.otaAbort === abort) this.otaAbort = undefined;
    }
    if (!this.running) return;
    this.safeEmit('ota', { phase: 'downloaded', version, image, bytes: data.length });
    // 'digest': the transfer was corrupted on the way (one flipped bit), so the hash differs.
    const received = fail === 'digest' ? Buffer.from(data) : data;
    if (fail === 'digest' && received.length > 0) received[received.length - 1] ^= 0x01;
    const digest = sha256Hex(received);
    if (digest !== entry.digest.toLowerCase()) {
      this.otaOutcome = { phase: 'failed', version, image, bytes: data.length, reason: `sha256 ${digest} does not match the digest ${entry.digest}: the image was not booted` };
    } else if (received[0] !== ESP_IMAGE_MAGIC) {
      this.otaOutcome = { phase: 'failed', version, image, bytes: data.length, reason: 'not an Espressif v2 image (first byte is not 0xEA): the bootloader refused it' };
    } else {
      this.otaOutcome = { phase: 'updated', version, image, bytes: data.length };
    }
    const good = this.otaOutcome.phase === 'updated';
    this.safeEmit('ota', { phase: 'rebooting', version: good ? version : this._romVersion, image: good ? image : this._runningImage });
    this.rebootInto(rebootDelay, good ? { version, image } : undefined);
  }

  /** Drop the connection and stay off the network until rebootInto() brings the device back. */
  private goOffline(): Promise<void> {
    this.holdOffline = true;
    const ws = this.ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    this._registered = false;
    // onClose (registered first) runs before this listener and sees holdOffline: no reconnect.
    return new Promise<void>((resolve) => {
      ws.once('close', () => resolve());
      ws.terminate();
    });
  }

  /** Reboot: offline now, and after `delayMs` connect again, running `next` if given (else the old firmware). */
  private rebootInto(delayMs: number, next: { version: string; image: OtaImage } | undefined): void {
    void this.goOffline().then(() => {
      if (!this.running) return;
      if (this.otaTimer) clearTimeout(this.otaTimer);
      this.otaTimer = setTimeout(() => {
        this.otaTimer = undefined;
        this.holdOffline = false;
        if (!this.running) return;
        if (next) {
          if (next.version) {
            this._romVersion = next.version;
            this._state.fwVersion = next.version;
          }
          this._runningImage = next.image;
        }
        this.attempt = 0;
        this.clearReconnectTimer();
        void this.connect();
      }, delayMs);
    });
  }

  /** Behaviour code must never unwind into ws internals. */
  private runBehaviour(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.emitError(err);
    }
  }

  private consultOnCommand(params: Params, msg: JsonObject): CommandVerdict {
    const hook = this.opts.onCommand;
    if (!hook) return {};
    try {
      return hook(params, msg) ?? {};
    } catch (err) {
      this.emitError(err); // a broken hook must not take the device down; fall back to normal handling
      return {};
    }
  }

  // ---- heartbeat --------------------------------------------------------------------------

  private startHeartbeat(reply: JsonObject): void {
    const ms = this.opts.pingIntervalMs ?? pingIntervalFromReply(reply);
    if (ms > 0) this.connInterval(ms, () => this.ping());
  }

  private ping(): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    ws.ping();
    const timeout = this.opts.pongTimeoutMs ?? 3000;
    if (timeout > 0 && !this.pongTimer) {
      this.pongTimer = this.connTimeout(timeout, () => {
        this.pongTimer = undefined;
        this.connError = new SimDeviceError(`no pong within ${timeout} ms`);
        this.emitError(this.connError);
        ws.terminate();
      });
    }
  }

  private onPong(): void {
    if (!this.pongTimer) return;
    clearTimeout(this.pongTimer);
    this.connTimeouts.delete(this.pongTimer);
    this.pongTimer = undefined;
  }

  // ---- outgoing message shapes (key order as in the seed) -----------------------------------

  private dispatchBody(): DispatchBody {
    return {
      accept: 'ws;2',
      version: 2,
      ts: this.uptimeMs(),
      deviceid: this.deviceid,
      apikey: this.factoryApikey,
      model: this.model,
      romVersion: this.romVersion,
    };
  }

  private registerMessage(): JsonObject {
    return {
      userAgent: 'device',
      apikey: this.factoryApikey,
      deviceid: this.deviceid,
      action: 'register',
      version: 2,
      romVersion: this.romVersion,
      model: this.model,
      ts: this.uptimeMs(),
    };
  }

  /** Header of every post-register request; uses the issued key (factory key only if none yet). */
  private envelope(action: string): JsonObject {
    return { userAgent: 'device', apikey: this._issuedApikey ?? this.factoryApikey, deviceid: this.deviceid, action };
  }

  private ack(msg: JsonObject, error: number): JsonObject {
    return {
      error,
      userAgent: 'device',
      apikey: this._issuedApikey ?? this.factoryApikey,
      deviceid: this.deviceid,
      sequence: msg.sequence, // dropped by JSON.stringify when the server sent none
    };
  }

  /** The seed's `ts` is a small tick count since boot (933, 970), not an epoch. */
  private uptimeMs(): number {
    return Math.round(performance.now() - this.bootAt);
  }

  // ---- timers and events ---------------------------------------------------------------------

  private connTimeout(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.connTimeouts.delete(t);
      fn();
    }, ms);
    this.connTimeouts.add(t);
    return t;
  }

  private connInterval(ms: number, fn: () => void): void {
    this.connIntervals.add(setInterval(fn, ms));
  }

  private clearConnTimers(): void {
    // Behaviour timers (inching, metering window, sensor ticks, RF capture) die with the connection.
    this.scheduler.clearAll();
    this.runBehaviour(() => this.behaviour.onOffline());
    for (const t of this.connTimeouts) clearTimeout(t);
    for (const t of this.connIntervals) clearInterval(t);
    this.connTimeouts.clear();
    this.connIntervals.clear();
    this.pongTimer = undefined;
  }

  private clearReconnectTimer(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
  }

  /** Emit without letting a throwing listener unwind into ws/http internals. */
  private safeEmit<E extends Exclude<keyof SimDeviceEvents, 'error'>>(
    event: E,
    ...args: Parameters<SimDeviceEvents[E]>
  ): void {
    try {
      this.emit(event, ...args);
    } catch (err) {
      this.emitError(err);
    }
  }

  /** 'error' only when someone listens: an unhandled 'error' would crash the host process. */
  private emitError(err: unknown): void {
    if (this.listenerCount('error') === 0) return;
    try {
      this.emit('error', toError(err));
    } catch {
      // the error listener itself threw; nothing sensible left to do
    }
  }
}

/** Close cleanly, but do not let an unresponsive peer hold stop() (or the process) hostage. */
function closeSocket(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => ws.terminate(), CLOSE_TIMEOUT_MS);
    ws.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    ws.close(1000);
  });
}
