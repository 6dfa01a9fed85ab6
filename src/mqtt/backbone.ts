/**
 * The MQTT backbone: joins several `CoolkitCloud` instances (and anything else that speaks MQTT,
 * e.g. Home Assistant) through one broker. See ./topics for the topic tree.
 *
 * - Publishes (retained) every device this instance holds: `state`, `online`, `capabilities`,
 *   optionally Home Assistant discovery configs; and its own presence on `_instances/<id>`, with
 *   a retained last-will marking it offline when it dies.
 * - Mirrors devices held elsewhere into the local cloud (`CoolkitCloud.applyRemote`), so nodes,
 *   hub APIs and apps here see them through the same events as local ones.
 * - Executes commands from `<prefix>/<deviceid>/set` for devices connected here and publishes
 *   the result; sends commands for devices held elsewhere the same way (`ClusterHook`).
 * - Answers `/dispatch/device` placement (./placement): the live instance the device was on,
 *   else the least loaded one.
 * - Broker down: the instance keeps serving its devices, publishes nothing (no unbounded queue),
 *   and on reconnect re-publishes everything it holds (resync).
 */
import { EventEmitter } from 'node:events';
import mqtt, { type IClientOptions, type IClientPublishOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import type { CoolkitCloud, DeviceEvent, ClusterHook, RemoteDeviceInfo } from '../cloud/server';
import { factoryKeyHash } from '../cloud/admission';
import type { CommandResult } from '../cloud/device-session';
import { bounded, ThrottledLog, type Logger } from '../cloud/log';
import { CoolkitError, ErrorCode } from '../protocol/errors';
import { normaliseState, SENSOR_RANGES } from '../protocol/normalise';
import type { Capabilities } from '../protocol/capabilities';
import type { Params } from '../protocol/types';
import { Topics } from './topics';
import { chooseInstance, RecentAssignments, type InstanceInfo } from './placement';
import { discoveryMessages, type DiscoveryDevice } from './discovery';
import {
  buildState, parseCapabilities, parseInstance, parseOnline, parseResult, parseSetMessage, parseState, setPayloadToParams,
  type CapabilitiesPayload, type InstancePayload, type OnlinePayload, type ResultPayload, type SetRequest,
} from './payloads';

export type BrokerState = 'connecting' | 'connected' | 'disconnected' | 'stopped';

export interface BackboneOptions {
  /** Broker URL: mqtt://, mqtts://, ws://, wss://. */
  url: string;
  username?: string;
  password?: string;
  /** MQTT protocol version: 5 (default) or 4 (3.1.1). */
  protocolVersion?: 4 | 5;
  /** Topic prefix (default `coolkit`). */
  prefix?: string;
  /** This instance's id (a topic level). */
  instanceId: string;
  /** Where devices dispatched here connect (the cloud's advertised host); the port is the cloud's. */
  advertiseHost: string;
  /** Home Assistant discovery on/off, and its prefix (default `homeassistant`). */
  discovery?: boolean;
  discoveryPrefix?: string;
  logger: Logger;
  /** Presence refresh interval, ms (default 10 s); an instance silent for 4 intervals counts as gone. */
  heartbeatMs?: number;
  reconnectPeriodMs?: number;
  connectTimeoutMs?: number;
  /** Package version, for presence and HA origin. */
  version?: string;
  /** For tests: make the client. */
  connect?: (url: string, options: IClientOptions) => MqttClient;
}

export interface BackboneStatus {
  state: BrokerState;
  url: string;
  instanceId: string;
  prefix: string;
  lastError?: string;
  instances: Array<InstanceInfo & { self: boolean; live: boolean }>;
}

interface Owner {
  instance: string;
  online: boolean;
}

interface PendingCommand {
  deviceid: string;
  sentAt: number;
  timer: NodeJS.Timeout;
  resolve(r: CommandResult): void;
  reject(e: Error): void;
}

/** Devices per synchronous slice while re-publishing everything (keeps the event loop responsive). */
const RESYNC_SLICE = 500;
/** Extra wait for a remote result beyond the command timeout (the broker round trips). */
const REMOTE_MARGIN_MS = 2000;

export class MqttBackbone extends EventEmitter implements ClusterHook {
  readonly topics: Topics;
  readonly instanceId: string;
  state: BrokerState = 'stopped';
  lastError: string | undefined;
  private client: MqttClient | undefined;
  private readonly opts: BackboneOptions;
  private readonly heartbeatMs: number;
  private readonly instances = new Map<string, InstanceInfo>();
  private readonly owners = new Map<string, Owner>();
  private readonly pending = new Map<string, PendingCommand>();
  private readonly assignments = new RecentAssignments();
  private readonly capsSig = new Map<string, string>();
  private readonly discoverySent = new Map<string, string>();
  private readonly throttled: ThrottledLog;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private presenceTimer: NodeJS.Timeout | undefined;
  private counter = 0;
  private resyncGeneration = 0;
  private readonly cloudListeners: Array<[string, (ev: DeviceEvent) => void]> = [];

  constructor(private readonly cloud: CoolkitCloud, options: BackboneOptions) {
    super();
    this.opts = options;
    this.topics = new Topics(options.prefix);
    this.instanceId = options.instanceId;
    this.heartbeatMs = options.heartbeatMs ?? 10_000;
    this.throttled = new ThrottledLog(options.logger);
  }

  // ---- lifecycle --------------------------------------------------------------------------

  start(): void {
    if (this.client) return;
    const on = (event: string, fn: (ev: DeviceEvent) => void) => {
      const wrapped = (ev: DeviceEvent) => {
        try {
          fn(ev);
        } catch (err) {
          this.throttled.warn(`mqtt:handler:${event}`, `mqtt: ${event} handler failed: ${(err as Error).message}`);
        }
      };
      this.cloud.on(event, wrapped);
      this.cloudListeners.push([event, wrapped]);
    };
    on('online', (ev: DeviceEvent) => this.onLocalOnline(ev));
    on('offline', (ev: DeviceEvent) => this.onLocalOffline(ev));
    on('update', (ev: DeviceEvent) => this.onLocalUpdate(ev));
    this.cloud.cluster = this;
    this.setState('connecting');
    const will: IClientOptions['will'] = {
      topic: this.topics.instance(this.instanceId),
      payload: Buffer.from(JSON.stringify({ id: this.instanceId, online: false, reason: 'connection lost', ts: Date.now() } satisfies InstancePayload)),
      qos: 1,
      retain: true,
    };
    const clientOptions: IClientOptions = {
      clientId: `coolkit-${this.instanceId}`.slice(0, 64),
      protocolVersion: this.opts.protocolVersion ?? 5,
      clean: true,
      keepalive: 30,
      reconnectPeriod: this.opts.reconnectPeriodMs ?? 2000,
      connectTimeout: this.opts.connectTimeoutMs ?? 10_000,
      queueQoSZero: false,
      resubscribe: false,
      will,
    };
    if (this.opts.username) clientOptions.username = this.opts.username;
    if (this.opts.password) clientOptions.password = this.opts.password;
    const client = (this.opts.connect ?? mqtt.connect)(this.opts.url, clientOptions);
    this.client = client;
    client.on('connect', () => this.safely('connect', () => this.onConnect()));
    client.on('close', () => this.safely('close', () => this.onDisconnect()));
    client.on('offline', () => this.safely('offline', () => this.onDisconnect()));
    client.on('error', (err: Error) => {
      this.lastError = bounded(err.message, 120);
      this.throttled.warn('mqtt:error', `mqtt: ${this.lastError}`);
    });
    client.on('message', (topic: string, payload: Buffer, packet: IPublishPacket) => this.safely('message', () => this.onMessage(topic, payload, packet)));
    this.heartbeatTimer = setInterval(() => this.safely('heartbeat', () => this.heartbeat()), this.heartbeatMs);
    this.heartbeatTimer.unref();
  }

  /** Graceful stop: mark this instance's devices and the instance offline (retained), then disconnect. */
  async stop(): Promise<void> {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.presenceTimer) clearTimeout(this.presenceTimer);
    this.heartbeatTimer = undefined;
    this.presenceTimer = undefined;
    for (const [event, fn] of this.cloudListeners) this.cloud.off(event, fn);
    this.cloudListeners.length = 0;
    if (this.cloud.cluster === this) this.cloud.cluster = undefined;
    this.failPending(new CoolkitError(ErrorCode.OFFLINE, 'the server stopped'));
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    if (client.connected) {
      const now = Date.now();
      for (const record of this.cloud.devices()) {
        if (!this.cloud.isLocal(record.deviceid)) continue;
        this.publishRaw(client, this.topics.online(record.deviceid), { online: false, instance: this.instanceId, reason: 'instance stopped', ts: now } satisfies OnlinePayload, true);
      }
      this.publishRaw(client, this.topics.instance(this.instanceId), { id: this.instanceId, online: false, reason: 'stopped', ts: now } satisfies InstancePayload, true);
    }
    this.setState('stopped');
    await Promise.race([
      client.endAsync(false).catch(() => undefined),
      new Promise<void>((resolve) => setTimeout(resolve, 3000).unref()),
    ]);
    client.end(true);
  }

  status(): BackboneStatus {
    const out: BackboneStatus = { state: this.state, url: redactUrl(this.opts.url), instanceId: this.instanceId, prefix: this.topics.prefix, instances: [] };
    if (this.lastError) out.lastError = this.lastError;
    for (const inst of this.liveView()) out.instances.push({ ...inst, self: inst.id === this.instanceId, live: this.isLive(inst) });
    for (const inst of this.instances.values()) if (!out.instances.some((i) => i.id === inst.id)) out.instances.push({ ...inst, self: false, live: false });
    return out;
  }

  /** The instance holding a device, as far as the broker says (undefined when nobody does). */
  ownerOf(deviceid: string): string | undefined {
    if (this.cloud.isLocal(deviceid)) return this.instanceId;
    const owner = this.owners.get(deviceid);
    return owner?.online ? owner.instance : undefined;
  }

  private safely(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.throttled.warn(`mqtt:${what}`, `mqtt: ${what} failed: ${(err as Error).message}`);
    }
  }

  private setState(state: BrokerState): void {
    if (this.state === state) return;
    const previous = this.state;
    this.state = state;
    if (state === 'connected') this.opts.logger.info(`mqtt: connected to ${redactUrl(this.opts.url)} as instance ${this.instanceId}`);
    else if (state === 'disconnected' && previous === 'connected') this.opts.logger.warn(`mqtt: disconnected from ${redactUrl(this.opts.url)}; serving local devices, retrying`);
    this.emit('status', state);
  }

  private onConnect(): void {
    const client = this.client;
    if (!client) return;
    this.setState('connected');
    this.lastError = undefined;
    const subs: Record<string, { qos: 0 | 1 }> = {};
    for (const t of this.topics.subscriptions(this.instanceId)) subs[t] = { qos: 1 };
    client.subscribe(subs, (err) => {
      if (err) this.throttled.warn('mqtt:subscribe', `mqtt: subscribe failed: ${err.message}`);
    });
    this.resync();
  }

  private onDisconnect(): void {
    if (!this.client) return;
    if (this.state === 'connected' || this.state === 'connecting') this.setState('disconnected');
    this.failPending(new CoolkitError(ErrorCode.OFFLINE, 'the MQTT broker connection was lost before the result arrived'));
  }

  private failPending(err: CoolkitError): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(new CoolkitError(err.code, err.message, p.deviceid));
    }
  }

  // ---- publishing -------------------------------------------------------------------------

  private publishRaw(client: MqttClient, topic: string, payload: unknown, retain: boolean, qos: 0 | 1 = 1): void {
    const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
    const opts: IClientPublishOptions = { qos, retain };
    client.publish(topic, text, opts, (err) => {
      if (err) this.throttled.warn('mqtt:publish', `mqtt: publish to ${topic} failed: ${err.message}`);
    });
  }

  /** Publish when connected; while the broker is down nothing is queued (resync on reconnect). */
  private publish(topic: string, payload: unknown, retain: boolean, qos: 0 | 1 = 1): boolean {
    const client = this.client;
    if (!client || !client.connected) return false;
    this.publishRaw(client, topic, payload, retain, qos);
    return true;
  }

  private presencePayload(): InstancePayload {
    return { id: this.instanceId, online: true, host: this.opts.advertiseHost, port: this.cloud.port, devices: this.cloud.localCount, version: this.opts.version, ts: Date.now() };
  }

  private publishPresence(): void {
    const p = this.presencePayload();
    this.instances.set(this.instanceId, { id: this.instanceId, online: true, host: p.host ?? '', port: p.port ?? 0, devices: p.devices ?? 0, ts: Date.now() });
    this.publish(this.topics.instance(this.instanceId), p, true);
  }

  private schedulePresence(): void {
    if (this.presenceTimer) return;
    this.presenceTimer = setTimeout(() => {
      this.presenceTimer = undefined;
      this.safely('presence', () => this.publishPresence());
    }, 500);
    this.presenceTimer.unref();
  }

  private heartbeat(): void {
    this.publishPresence();
    const now = Date.now();
    for (const inst of [...this.instances.values()]) {
      if (inst.id !== this.instanceId && inst.online && !this.isLive(inst, now)) {
        this.opts.logger.warn(`mqtt: instance ${inst.id} silent for ${Math.round((now - inst.ts) / 1000)} s; treating it as gone`);
        inst.online = false;
        this.instanceDown(inst.id, 'instance silent');
      }
    }
  }

  private publishDevice(deviceid: string, force: boolean): void {
    const record = this.cloud.device(deviceid);
    if (!record) return;
    const caps = this.cloud.capabilities(deviceid);
    if (!caps) return;
    const capsPayload: CapabilitiesPayload = { model: record.model, romVersion: record.romVersion, capabilities: caps, instance: this.instanceId, ts: Date.now() };
    if (record.name !== undefined) capsPayload.name = record.name;
    const keyHash = record.factoryApikey ? factoryKeyHash(deviceid, record.factoryApikey) : record.factoryKeyHash;
    if (keyHash) capsPayload.keyHash = keyHash;
    const sig = `${record.model}|${record.romVersion}|${record.name ?? ''}|${keyHash ?? ''}|${JSON.stringify(caps)}`;
    if (force || this.capsSig.get(deviceid) !== sig) {
      if (this.publish(this.topics.capabilities(deviceid), capsPayload, true)) this.capsSig.set(deviceid, sig);
      this.publishDiscovery(deviceid, force);
    }
  }

  private publishDiscovery(deviceid: string, force: boolean): void {
    if (!this.opts.discovery) return;
    const record = this.cloud.device(deviceid);
    const caps = this.cloud.capabilities(deviceid);
    if (!record || !caps) return;
    const sensor = typeof record.params.sensorType === 'string' ? SENSOR_RANGES[record.params.sensorType]?.temperature : undefined;
    const device: DiscoveryDevice = { deviceid, model: record.model, romVersion: record.romVersion, capabilities: caps };
    if (record.name) device.name = record.name;
    if (sensor) device.temperatureRange = sensor;
    const messages = discoveryMessages(device, this.topics, { discoveryPrefix: this.opts.discoveryPrefix, swVersion: this.opts.version });
    const sig = JSON.stringify(messages);
    if (!force && this.discoverySent.get(deviceid) === sig) return;
    let ok = true;
    for (const m of messages) ok = this.publish(m.topic, m.config, true) && ok;
    if (ok) this.discoverySent.set(deviceid, sig);
  }

  private statePayload(ev: { deviceid: string; state: Params; params: Params; normalized: DeviceEvent['normalized'] }): unknown {
    const caps = this.cloud.capabilities(ev.deviceid);
    return buildState(ev.state, ev.params, ev.normalized, caps ?? UNKNOWN_CAPS, this.instanceId);
  }

  /** Re-publish presence and every device held here (after every (re)connect). */
  private resync(): void {
    this.publishPresence();
    const generation = ++this.resyncGeneration;
    const ids = this.cloud.devices().filter((r) => this.cloud.isLocal(r.deviceid)).map((r) => r.deviceid);
    let i = 0;
    const slice = () => {
      if (generation !== this.resyncGeneration || !this.client?.connected) return;
      const end = Math.min(i + RESYNC_SLICE, ids.length);
      for (; i < end; i++) this.safely('resync', () => this.publishOwn(ids[i] as string, true, 'resync'));
      if (i < ids.length) setImmediate(slice);
    };
    slice();
  }

  private publishOwn(deviceid: string, force: boolean, reason: string): void {
    const record = this.cloud.device(deviceid);
    if (!record || !this.cloud.isLocal(deviceid)) return;
    this.owners.set(deviceid, { instance: this.instanceId, online: true });
    this.publishDevice(deviceid, force);
    this.publish(this.topics.online(deviceid), { online: true, instance: this.instanceId, reason, ts: Date.now() } satisfies OnlinePayload, true);
    const caps = this.cloud.capabilities(deviceid) ?? UNKNOWN_CAPS;
    this.publish(this.topics.state(deviceid), this.statePayload({ deviceid, state: record.params, params: record.params, normalized: normaliseState(record.params, caps) }), true);
  }

  // ---- local device events ----------------------------------------------------------------

  private onLocalOnline(ev: DeviceEvent): void {
    if (ev.instance) return;
    this.assignments.arrived(ev.deviceid);
    this.publishOwn(ev.deviceid, false, ev.reason ?? 'online');
    this.schedulePresence();
  }

  private onLocalOffline(ev: DeviceEvent): void {
    if (ev.instance) return;
    const owner = this.owners.get(ev.deviceid);
    // A device that moved to another instance meanwhile: its new holder's "online" stands.
    if (owner && owner.instance !== this.instanceId && owner.online) return;
    this.owners.set(ev.deviceid, { instance: this.instanceId, online: false });
    this.publish(this.topics.online(ev.deviceid), { online: false, instance: this.instanceId, reason: ev.reason ?? 'offline', ts: Date.now() } satisfies OnlinePayload, true);
    this.schedulePresence();
  }

  private onLocalUpdate(ev: DeviceEvent): void {
    if (ev.instance || !this.cloud.isLocal(ev.deviceid)) return;
    if (!this.client?.connected) return;
    // QoS 0: the next report supersedes a lost one, and resync follows every reconnect.
    this.publish(this.topics.state(ev.deviceid), this.statePayload(ev), true, 0);
    this.publishDevice(ev.deviceid, false);
  }

  // ---- incoming -----------------------------------------------------------------------------

  private onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    const parsed = this.topics.parse(topic);
    if (!parsed) return;
    if (parsed.type === 'instance') {
      this.onInstance(parsed.instanceId, payload);
      return;
    }
    if (parsed.type === 'reply') {
      if (parsed.instanceId !== this.instanceId) return;
      const result = parseResult(payload);
      if (!result) {
        this.throttled.warn('mqtt:bad-reply', `mqtt: malformed result on ${bounded(topic, 100)}`);
        return;
      }
      this.onResult(result);
      return;
    }
    const { deviceid, kind } = parsed;
    switch (kind) {
      case 'online': {
        if (payload.length === 0) return;
        const p = parseOnline(payload);
        if (!p) {
          this.throttled.warn('mqtt:bad-online', `mqtt: ignoring malformed payload on ${bounded(topic, 100)}`);
          return;
        }
        this.onRemoteOnline(deviceid, p, packet.retain);
        return;
      }
      case 'state': {
        if (payload.length === 0) return;
        const p = parseState(payload);
        if (!p) {
          this.throttled.warn('mqtt:bad-state', `mqtt: ignoring malformed payload on ${bounded(topic, 100)}`);
          return;
        }
        if (p.instance === this.instanceId || this.cloud.isLocal(deviceid)) return;
        const info = this.remoteInfo(deviceid, p.instance);
        this.cloud.applyRemote(deviceid, 'update', p.params, info, undefined, true);
        if (!packet.retain && Object.keys(p.report).length > 0) this.cloud.applyRemote(deviceid, 'update', p.report, info);
        return;
      }
      case 'capabilities': {
        if (payload.length === 0) return;
        const p = parseCapabilities(payload);
        if (!p) {
          this.throttled.warn('mqtt:bad-caps', `mqtt: ignoring malformed payload on ${bounded(topic, 100)}`);
          return;
        }
        this.remoteMeta.set(deviceid, p);
        if (p.instance === this.instanceId || this.cloud.isLocal(deviceid)) return;
        this.cloud.applyRemote(deviceid, 'update', {}, this.remoteInfo(deviceid, p.instance), undefined, true);
        return;
      }
      case 'set':
        this.onSet(deviceid, payload, packet);
        return;
      default:
        return;
    }
  }

  private readonly remoteMeta = new Map<string, CapabilitiesPayload>();

  private remoteInfo(deviceid: string, instance: string): RemoteDeviceInfo {
    const meta = this.remoteMeta.get(deviceid);
    const info: RemoteDeviceInfo = { instance };
    if (meta?.keyHash) info.keyHash = meta.keyHash;
    if (meta?.model) info.model = meta.model;
    if (meta?.romVersion) info.romVersion = meta.romVersion;
    if (meta?.name !== undefined) info.name = meta.name;
    return info;
  }

  private onInstance(id: string, payload: Buffer): void {
    if (id === this.instanceId) {
      // Our own presence, or a stale "offline" (our will from an earlier connection): restate it.
      const p = parseInstance(payload, id);
      if (!p || !p.online) this.publishPresence();
      return;
    }
    if (payload.length === 0) {
      const known = this.instances.get(id);
      this.instances.delete(id);
      if (known?.online) this.instanceDown(id, 'instance removed');
      return;
    }
    const p = parseInstance(payload, id);
    if (!p) {
      this.throttled.warn('mqtt:bad-instance', `mqtt: ignoring malformed presence of instance ${id}`);
      return;
    }
    const known = this.instances.get(id);
    p.ts = Date.now();
    this.instances.set(id, p);
    if (!p.online && known?.online !== false) this.instanceDown(id, 'instance offline');
    else if (p.online && !known?.online) this.opts.logger.info(`mqtt: instance ${id} is online (${p.host}:${p.port}, ${p.devices} devices)`);
  }

  /** An instance stopped or died: its devices are offline until they reconnect somewhere. */
  private instanceDown(id: string, reason: string): void {
    if (this.instances.get(id)?.online !== false) this.opts.logger.info(`mqtt: instance ${id} is offline; its devices re-dispatch to the live instances`);
    const leader = this.isLeader();
    for (const [deviceid, owner] of this.owners) {
      if (owner.instance !== id || !owner.online) continue;
      owner.online = false;
      this.cloud.applyRemote(deviceid, 'offline', {}, this.remoteInfo(deviceid, id), `${reason}: ${id}`);
      // Someone must correct the retained "online" the dead instance left behind.
      if (leader) this.publish(this.topics.online(deviceid), { online: false, instance: id, reason: `${reason}: ${id}`, ts: Date.now() } satisfies OnlinePayload, true);
    }
  }

  private onRemoteOnline(deviceid: string, p: OnlinePayload, retained: boolean): void {
    const local = this.cloud.isLocal(deviceid);
    if (p.instance === this.instanceId) {
      if (local && !p.online) this.publishOwn(deviceid, false, 'still connected here');
      else if (!local && p.online && this.owners.get(deviceid)?.instance !== this.instanceId) {
        // Left behind by an earlier run of this instance.
        this.owners.set(deviceid, { instance: this.instanceId, online: false });
        this.publish(this.topics.online(deviceid), { online: false, instance: this.instanceId, reason: 'not connected', ts: Date.now() } satisfies OnlinePayload, true);
      }
      return;
    }
    if (local) {
      // Another instance's retained claim from before the device came here: ours stands.
      if (!p.online || retained) this.publishOwn(deviceid, false, 'connected here');
      return;
    }
    const current = this.owners.get(deviceid);
    if (p.online) {
      const inst = this.instances.get(p.instance);
      // A retained claim of an instance known to be gone is stale.
      const stale = retained && inst !== undefined && !inst.online;
      this.owners.set(deviceid, { instance: p.instance, online: !stale });
      this.assignments.arrived(deviceid);
      this.cloud.applyRemote(deviceid, stale ? 'offline' : 'online', {}, this.remoteInfo(deviceid, p.instance), p.reason);
      return;
    }
    // Offline only counts from the instance that holds the device.
    if (current && current.online && current.instance !== p.instance) return;
    this.owners.set(deviceid, { instance: p.instance, online: false });
    this.cloud.applyRemote(deviceid, 'offline', {}, this.remoteInfo(deviceid, p.instance), p.reason);
  }

  // ---- commands -----------------------------------------------------------------------------

  private onSet(deviceid: string, payload: Buffer, packet: IPublishPacket): void {
    if (packet.retain) return; // a retained command would replay on every start: never execute it
    const props = packet.properties;
    const responseTopic = props?.responseTopic;
    const correlation = props?.correlationData;
    const local = this.cloud.isLocal(deviceid);
    if (!local) {
      // Nobody holds the device: the leader answers 503 so the sender is not left waiting.
      const owner = this.owners.get(deviceid);
      const held = owner?.online && (owner.instance === this.instanceId || this.isLive(this.instances.get(owner.instance)));
      if (held || !this.isLeader()) return;
    }
    const req = parseSetMessage(payload);
    const reply = (result: Omit<ResultPayload, 'instance' | 'ts' | 'deviceid'>, request?: SetRequest) => {
      const body: ResultPayload = { deviceid, ...result, instance: this.instanceId, ts: Date.now() };
      if (body.id === undefined) delete body.id;
      const topic = request?.replyTo ?? responseTopic ?? this.topics.result(deviceid);
      const client = this.client;
      if (!client?.connected) return;
      const opts: IClientPublishOptions = { qos: 1, retain: false };
      if (correlation && !request?.replyTo) opts.properties = { correlationData: correlation };
      client.publish(topic, JSON.stringify(body), opts, (err) => {
        if (err) this.throttled.warn('mqtt:publish', `mqtt: result publish to ${bounded(topic, 100)} failed: ${err.message}`);
      });
    };
    if ('error' in req) {
      this.throttled.warn(`mqtt:bad-set:${deviceid}`, `mqtt: bad command for ${deviceid}: ${req.error}`);
      reply({ ok: false, error: ErrorCode.BAD_REQUEST, reason: req.error });
      return;
    }
    const base = req.id !== undefined ? { id: req.id } : {};
    if (!local) {
      const known = this.cloud.device(deviceid);
      reply({ ...base, ok: false, error: ErrorCode.OFFLINE, reason: known ? `device ${deviceid} is offline` : `device ${deviceid} is unknown to this installation` }, req);
      return;
    }
    const record = this.cloud.device(deviceid);
    let params: Params;
    try {
      params = setPayloadToParams(req.payload, record?.params ?? {}, this.cloud.capabilities(deviceid) ?? UNKNOWN_CAPS);
    } catch (err) {
      const code = err instanceof CoolkitError ? err.code : ErrorCode.BAD_REQUEST;
      this.throttled.warn(`mqtt:bad-set:${deviceid}`, `mqtt: bad command for ${deviceid}: ${bounded((err as Error).message, 120)}`);
      reply({ ...base, ok: false, error: code, reason: (err as Error).message }, req);
      return;
    }
    const timeoutMs = req.timeoutMs ?? this.cloud.options.commandTimeoutMs;
    this.cloud.sendCommand(deviceid, params, { timeoutMs, coalesce: true }).then(
      (r) => reply({ ...base, ok: true, error: 0, ms: r.ms }, req),
      (err: Error) => reply({ ...base, ok: false, error: err instanceof CoolkitError ? err.code : ErrorCode.SERVER_ERROR, reason: err.message }, req),
    ).catch((err: Error) => this.throttled.warn('mqtt:reply', `mqtt: reply failed: ${err.message}`));
  }

  private onResult(result: ResultPayload): void {
    if (!result.id) return;
    const p = this.pending.get(result.id);
    if (!p) return;
    this.pending.delete(result.id);
    clearTimeout(p.timer);
    if (result.ok) p.resolve({ deviceid: p.deviceid, sequence: result.id, ms: result.ms ?? Date.now() - p.sentAt });
    else p.reject(new CoolkitError(result.error, result.reason ?? `error ${result.error}`, p.deviceid));
  }

  // ---- ClusterHook --------------------------------------------------------------------------

  remoteCommand(deviceid: string, params: Params, timeoutMs: number): Promise<CommandResult> | undefined {
    const owner = this.owners.get(deviceid);
    if (!owner?.online || owner.instance === this.instanceId) return undefined;
    if (!this.isLive(this.instances.get(owner.instance))) return undefined;
    const client = this.client;
    if (!client?.connected) {
      return Promise.reject(new CoolkitError(ErrorCode.OFFLINE, `device ${deviceid} is held by instance ${owner.instance}, and the MQTT broker is unreachable`, deviceid));
    }
    const id = `${this.instanceId}-${Date.now().toString(36)}-${(++this.counter).toString(36)}`;
    return new Promise<CommandResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new CoolkitError(ErrorCode.TIMEOUT, `no acknowledgement from device ${deviceid} (on instance ${owner.instance}) within ${Math.round(timeoutMs / 1000)} s`, deviceid));
      }, timeoutMs + REMOTE_MARGIN_MS);
      this.pending.set(id, { deviceid, sentAt: Date.now(), timer, resolve, reject });
      const envelope = { payload: params, id, replyTo: this.topics.reply(this.instanceId), timeout: Math.max(100, Math.min(timeoutMs, 600_000)), from: this.instanceId };
      client.publish(this.topics.set(deviceid), JSON.stringify(envelope), { qos: 1, retain: false }, (err) => {
        if (!err) return;
        const p = this.pending.get(id);
        if (!p) return;
        this.pending.delete(id);
        clearTimeout(p.timer);
        p.reject(new CoolkitError(ErrorCode.OFFLINE, `could not send the command for ${deviceid} through the broker: ${err.message}`, deviceid));
      });
    });
  }

  dispatchTarget(deviceid: string): { host: string; port: number } | undefined {
    if (!this.client?.connected) return undefined;
    this.publishPresenceIfStale();
    const owner = this.owners.get(deviceid);
    const chosen = chooseInstance({ deviceid, lastOwner: owner?.instance, instances: this.liveView(), pending: this.assignments.pending() });
    if (!chosen) return undefined;
    this.assignments.note(deviceid, chosen.id);
    if (chosen.id === this.instanceId || !chosen.host || !chosen.port) return undefined;
    return { host: chosen.host, port: chosen.port };
  }

  private publishPresenceIfStale(): void {
    const self = this.instances.get(this.instanceId);
    if (!self || self.devices !== this.cloud.localCount) {
      this.instances.set(this.instanceId, { id: this.instanceId, online: true, host: this.opts.advertiseHost, port: this.cloud.port, devices: this.cloud.localCount, ts: Date.now() });
    }
  }

  /** Live instances, this one first (with its current device count). */
  private liveView(): InstanceInfo[] {
    const out: InstanceInfo[] = [{ id: this.instanceId, online: this.cloud.state === 'listening', host: this.opts.advertiseHost, port: this.cloud.port, devices: this.cloud.localCount, ts: Date.now() }];
    for (const inst of this.instances.values()) {
      if (inst.id !== this.instanceId && this.isLive(inst)) out.push(inst);
    }
    return out;
  }

  private isLive(inst: InstanceInfo | undefined, now = Date.now()): boolean {
    if (!inst) return false;
    if (inst.id === this.instanceId) return this.cloud.state === 'listening';
    return inst.online && now - inst.ts < this.heartbeatMs * 4;
  }

  /** The live instance with the lowest id answers for devices nobody holds. */
  private isLeader(): boolean {
    for (const inst of this.instances.values()) {
      if (inst.id < this.instanceId && this.isLive(inst)) return false;
    }
    return true;
  }
}

const UNKNOWN_CAPS: Capabilities = { family: 'unknown', channels: 0, metering: false, temperature: false, humidity: false, thermostat: false, rf: false, inching: false, powerOnState: false, led: false, source: 'none' };

/** The broker URL without a password, for logs and status. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return bounded(url, 100);
  }
}
