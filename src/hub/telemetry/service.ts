/**
 * The telemetry API (Valtronics-style, seed 003) on top of the hub session layer: in-band JWT
 * `auth` (or a bearer token on the upgrade), `subscribe`/`unsubscribe` to the `telemetry`,
 * `alerts`, `devices` and `system` channels, `ping`/`pong`, `batch`, and the messages for
 * each channel fed from the local cloud's device events and the alert engine.
 *
 * Written against a small connection interface (`Conn`, which the session layer's
 * `HubConnection` satisfies) so every rule is testable without sockets. No timers: the owner
 * calls `tick(now)` once a second for auth deadlines, token expiry, frequency windows, system
 * samples and alert durations.
 */
import type { IncomingMessage } from 'node:http';
import type { Logger } from '../../cloud/log';
import { silentLogger, ThrottledLog } from '../../cloud/log';
import type { DeviceEvent } from '../../cloud/server';
import { AttemptLimiter } from '../session/limits';
import type { AuthResult, ConnectionHandler, Identity } from '../session/types';
import { AlertEngine, type ActiveAlert, type AlertChange, type AlertRule, type AlertSnapshot, type ExternalAlert } from './alerts';
import { DeviceNumbers } from './devices';
import { FanOut, alertMatches, deviceMatches, type DeviceRef, type Subscriber, type Subscription } from './fanout';
import { channelOf, deviceKeys, subscriptionSpec, type Channel, type DeviceStatus } from './filters';
import { readingsOf, type SystemMetric } from './metrics';
import { checkMessage, parseFrame, type ClientMessage } from './schema';
import type { TokenResult, TokenVerifier } from './jwt';

/** What the service needs of a connection (the session layer's HubConnection has it all). */
export interface Conn {
  readonly id: number;
  readonly identity: Identity;
  readonly remote: string;
  readonly data: Record<string, unknown>;
  readonly rate: { take(now?: number): 'ok' | 'limited' | 'close' };
  readonly isOpen: boolean;
  send(data: string | Buffer, droppable?: boolean): boolean;
  close(code?: number, reason?: string): void;
}

/** A device as the cloud knows it. */
export interface DeviceInfoLike {
  deviceid: string;
  name?: string;
  model?: string;
  online: boolean;
  lastSeen?: number;
  firstSeen?: number;
}

export interface TelemetryLimits {
  /** Authenticated connections per user (token `sub`). Seed: 100. */
  maxPerUser: number;
  /** Time to send a valid `auth` after connecting, ms. */
  authTimeoutMs: number;
  /** Subscriptions per connection. */
  maxSubscriptions: number;
  /** Failed authentications per address per minute before it is refused for a minute. */
  authFailuresPerMinute: number;
  /** Messages waiting behind an `auth` being verified, per connection. */
  maxQueued: number;
}

export const DEFAULT_TELEMETRY_LIMITS: TelemetryLimits = {
  maxPerUser: 100,
  authTimeoutMs: 10_000,
  maxSubscriptions: 100,
  authFailuresPerMinute: 5,
  maxQueued: 100,
};

/** Close codes of this API (1008 policy, 1013 try later; 4001 token expired, private range). */
export const TelemetryClose = { POLICY: 1008, TRY_LATER: 1013, TOKEN_EXPIRED: 4001 } as const;

export interface TelemetryServiceOptions {
  /** Verifies tokens; without one every authentication fails. */
  verifier?: TokenVerifier;
  rules: AlertRule[];
  limits?: Partial<TelemetryLimits>;
  logger?: Logger;
  /** Device lookups in the local cloud. */
  device(deviceid: string): DeviceInfoLike | undefined;
  devices(): DeviceInfoLike[];
  /** Host metrics for the system channel. */
  sampleSystem(): Record<SystemMetric, number>;
  /** An alert was raised or cleared (for the node's output). */
  onAlert?(change: AlertChange, message: Record<string, unknown>): void;
  /** Persistent state changed (alerts, device numbers): save soon. */
  onStateChange?(): void;
  clock?: () => number;
}

export interface TelemetryState {
  alerts?: AlertSnapshot;
  numbers?: { next?: number; devices?: Record<string, number> };
}

interface Session {
  conn: Conn;
  client: Subscriber;
  channel?: Channel;
  user?: string;
  /** ms epoch after which the token is no longer valid. */
  tokenDeadline: number;
  /** ms epoch by which an unauthenticated connection must authenticate. */
  authDeadline: number;
  subs: Map<string, Subscription>;
  queue: string[];
  busy: boolean;
  lastLimitedReply: number;
  limitedSinceReply: number;
}

const REASONS: Record<string, string> = {
  registered: 'Device connected',
  reconnected: 'Device reconnected',
  disconnected: 'Connection lost',
  'heartbeat timeout': 'Heartbeat timeout',
};

let anonymous = 0;

/** `Authorization: Bearer <token>` of an upgrade request. */
export function bearerToken(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (typeof h !== 'string') return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m ? m[1] : undefined;
}

export class TelemetryService implements ConnectionHandler {
  readonly fanout: FanOut;
  readonly alerts: AlertEngine;
  readonly numbers: DeviceNumbers;
  readonly limits: TelemetryLimits;
  private readonly logger: Logger;
  private readonly throttled: ThrottledLog;
  private readonly clock: () => number;
  private readonly sessions = new Set<Session>();
  private readonly pending = new Set<Session>();
  private readonly perUser = new Map<string, number>();
  private readonly failures: AttemptLimiter;
  private readonly status = new Map<string, DeviceStatus>();
  private readonly lastSeen = new Map<string, number>();
  private lastPrune = 0;
  /** Paths served → the channel of a per-channel endpoint (undefined for the main one). */
  readonly paths = new Map<string, Channel | undefined>();

  constructor(private readonly options: TelemetryServiceOptions) {
    this.limits = { ...DEFAULT_TELEMETRY_LIMITS, ...stripUndefined(options.limits ?? {}) };
    this.logger = options.logger ?? silentLogger;
    this.throttled = new ThrottledLog(this.logger);
    this.clock = options.clock ?? Date.now;
    this.fanout = new FanOut(this.clock);
    this.failures = new AttemptLimiter({ attemptsPerMinute: 0, failuresPerMinute: this.limits.authFailuresPerMinute, blockMs: 60_000 });
    this.numbers = new DeviceNumbers(() => options.onStateChange?.());
    this.alerts = new AlertEngine(options.rules, {
      emit: (change) => this.onAlertChange(change),
      describe: (deviceid) => this.options.device(deviceid)?.name || deviceid,
    });
  }

  // ---------------------------------------------------------------- state and start-up

  /**
   * Restore saved state and take stock of the devices: numbers for the known ones (in the
   * order they first connected), their status, and offline timers for the offline ones.
   */
  start(state: TelemetryState | undefined): void {
    const now = this.clock();
    this.numbers.restore(state?.numbers);
    const known = this.options.devices().slice().sort((a, b) => (a.firstSeen ?? 0) - (b.firstSeen ?? 0) || a.deviceid.localeCompare(b.deviceid));
    for (const d of known) {
      this.numbers.numberOf(d.deviceid);
      if (d.lastSeen) this.lastSeen.set(d.deviceid, d.lastSeen);
    }
    this.alerts.restore(state?.alerts, now);
    for (const d of known) {
      this.status.set(d.deviceid, this.statusOf(d.deviceid, d.online));
      if (!d.online) this.alerts.deviceOffline(d.deviceid, now, d.lastSeen);
    }
  }

  state(): TelemetryState {
    return { alerts: this.alerts.snapshot(), numbers: this.numbers.snapshot() };
  }

  get connectionCount(): number {
    return this.sessions.size;
  }

  get authenticatedCount(): number {
    return this.sessions.size - this.pending.size;
  }

  usersConnected(user: string): number {
    return this.perUser.get(user) ?? 0;
  }

  private ref(deviceid: string): DeviceRef {
    return { deviceid, number: this.numbers.numberOf(deviceid) };
  }

  private statusOf(deviceid: string, online: boolean): DeviceStatus {
    if (!online) return 'offline';
    return this.alerts.hasWarning(deviceid) ? 'warning' : 'online';
  }

  // ---------------------------------------------------------------- device events

  /** One event of the local cloud (`coolkit-server`'s `subscribe('', ...)`). */
  deviceEvent(kind: 'update' | 'online' | 'offline' | 'trigger', ev: DeviceEvent): void {
    const now = this.clock();
    const deviceid = ev.deviceid;
    switch (kind) {
      case 'update': {
        this.lastSeen.set(deviceid, now);
        const report = readingsOf(ev.params, ev.normalized);
        if (report.mask === 0) return;
        const dev = this.ref(deviceid);
        this.fanout.telemetry(dev, report, new Date(now).toISOString());
        for (const [metric, value] of Object.entries(report.values)) {
          this.alerts.reading(deviceid, metric as keyof typeof report.values, value as number, now);
        }
        return;
      }
      case 'online':
        this.lastSeen.set(deviceid, now);
        this.setStatus(deviceid, this.statusOf(deviceid, true), REASONS[ev.reason ?? ''] ?? (ev.reason || 'Device connected'), ev.reason);
        this.alerts.deviceOnline(deviceid, now);
        return;
      case 'offline': {
        const seen = this.options.device(deviceid)?.lastSeen ?? this.lastSeen.get(deviceid);
        if (seen) this.lastSeen.set(deviceid, seen);
        this.setStatus(deviceid, 'offline', REASONS[ev.reason ?? ''] ?? (ev.reason || 'Connection lost'), ev.reason);
        this.alerts.deviceOffline(deviceid, now, seen);
        return;
      }
      default:
    }
  }

  private setStatus(deviceid: string, next: DeviceStatus, reason: string, code?: string): void {
    const old = this.status.get(deviceid) ?? 'offline';
    if (old === next) return;
    this.status.set(deviceid, next);
    const dev = this.ref(deviceid);
    const now = this.clock();
    const seen = this.lastSeen.get(deviceid);
    const metadata: Record<string, unknown> = { last_seen: seen ? new Date(seen).toISOString() : null };
    if (code) metadata.reason_code = code;
    const name = this.options.device(deviceid)?.name;
    if (name) metadata.name = name;
    this.fanout.deviceStatus(
      { type: 'device_status_update', channel: 'devices', device_id: dev.number, deviceid, old_status: old, new_status: next, timestamp: new Date(now).toISOString(), reason, metadata },
      dev,
      next,
    );
  }

  // ---------------------------------------------------------------- alerts

  private onAlertChange(change: AlertChange): void {
    const message = this.alertMessage(change);
    const a = change.alert;
    const dev = a.deviceid ? this.ref(a.deviceid) : undefined;
    this.fanout.alert(message, dev, a.severity, a.alert_type);
    this.options.onStateChange?.();
    try {
      this.options.onAlert?.(change, message);
    } catch (err) {
      this.logger.warn(`telemetry: alert output failed: ${(err as Error).message}`);
    }
    if (a.deviceid && a.alert_type !== 'device_offline') {
      const current = this.status.get(a.deviceid);
      if (current && current !== 'offline') {
        this.setStatus(a.deviceid, this.statusOf(a.deviceid, true), change.status === 'active' ? `Alert raised: ${a.title}` : 'Alert cleared');
      }
    }
  }

  /** The wire form of an alert (as the seed shows it, plus `status`, `deviceid`, `alert_type`). */
  alertMessage(change: AlertChange | { status: 'active'; alert: ActiveAlert; at: number }, replay = false): Record<string, unknown> {
    const a = change.alert;
    const msg: Record<string, unknown> = {
      type: 'alert',
      channel: 'alerts',
      alert_id: a.alert_id,
      device_id: a.deviceid ? this.numbers.numberOf(a.deviceid) : null,
      severity: a.severity,
      title: a.title,
      message: a.message,
      timestamp: new Date(change.status === 'active' ? a.raised_at : change.at).toISOString(),
      metadata: a.metadata,
      alert_type: a.alert_type,
      status: change.status,
      raised_at: new Date(a.raised_at).toISOString(),
    };
    if (a.deviceid) msg.deviceid = a.deviceid;
    if (change.status === 'cleared') {
      const c = change as AlertChange;
      msg.cleared_at = new Date(c.at).toISOString();
      if (c.clearMessage) msg.message = c.clearMessage;
      if (c.clearValue !== undefined) msg.metadata = { ...a.metadata, cleared_value: c.clearValue };
    }
    if (replay) msg.replay = true;
    return msg;
  }

  /** An alert from a flow; see AlertEngine.raiseExternal. `device` is a deviceid or a device number. */
  raise(input: Omit<ExternalAlert, 'deviceid'> & { device?: unknown }): { alert: ActiveAlert; created: boolean } {
    const { device, ...rest } = input;
    let deviceid: string | undefined;
    if (device !== undefined && device !== null && device !== '') {
      const keys = deviceKeys(device);
      const key = keys.ok && keys.keys && keys.keys.length === 1 ? keys.keys[0] : undefined;
      if (!key) throw new Error('device must be one deviceid (10 hexadecimal characters) or one device number');
      deviceid = key.startsWith('d:') ? key.slice(2) : this.numbers.deviceidOf(Number(key.slice(2)));
      if (!deviceid) throw new Error(`there is no device number ${key.slice(2)}`);
    }
    return this.alerts.raiseExternal({ ...rest, deviceid }, this.clock());
  }

  clear(ref: { key?: string; alert_id?: number }, message?: string): ActiveAlert | undefined {
    return this.alerts.clearExternal(ref, this.clock(), message);
  }

  // ---------------------------------------------------------------- the one timer

  tick(now = this.clock()): void {
    for (const s of this.pending) {
      if (now >= s.authDeadline) {
        this.reply(s, { type: 'auth_response', success: false, error: 'auth_timeout', message: `no valid auth message within ${Math.round(this.limits.authTimeoutMs / 1000)} s` });
        s.conn.close(TelemetryClose.POLICY, 'authentication timeout');
        this.pending.delete(s);
      }
    }
    for (const s of this.sessions) {
      if (s.user !== undefined && now > s.tokenDeadline) {
        this.reply(s, { type: 'error', error: 'token_expired', message: 'the token has expired: connect again with a new token' });
        s.conn.close(TelemetryClose.TOKEN_EXPIRED, 'token expired');
        s.tokenDeadline = Infinity;
      }
    }
    this.alerts.tick(now);
    if (this.fanout.timed) this.fanout.tick(now, () => this.options.sampleSystem());
    if (now - this.lastPrune >= 60_000) {
      this.lastPrune = now;
      this.failures.prune(now);
    }
  }

  // ---------------------------------------------------------------- upgrade authentication

  /**
   * The session layer's authenticator: a bearer token on the upgrade authenticates now (401 if
   * it is bad, 503 past the per-user limit); without one the connection opens unauthenticated
   * and must send `auth` in time. Addresses with repeated failed `auth` messages get 429.
   */
  authenticate(req: IncomingMessage, path: string): AuthResult | Promise<AuthResult> {
    const remote = req.socket.remoteAddress ?? '?';
    const channel = this.paths.get(path);
    const wait = this.failures.check(remote);
    if (wait > 0) return { ok: false, status: 429, reason: 'too many failed authentications', headers: { 'Retry-After': String(wait) } };
    const token = bearerToken(req);
    if (token === undefined) return { ok: true, identity: { id: `anonymous#${++anonymous}`, channel } };
    return this.verify(token).then((r): AuthResult => {
      if (!r.ok) return { ok: false, status: 401, reason: r.message, body: { type: 'auth_response', success: false, error: r.error, message: r.message } };
      if (this.usersConnected(r.user) >= this.limits.maxPerUser) {
        return { ok: false, status: 503, reason: `connection limit per user (${this.limits.maxPerUser}) reached`, headers: { 'Retry-After': '30' }, body: { type: 'error', error: 'too_many_connections', message: `at most ${this.limits.maxPerUser} connections per user` } };
      }
      return { ok: true, identity: { id: `user:${r.user}`, user: r.user, expiresAt: r.expiresAt, channel } };
    });
  }

  // ---------------------------------------------------------------- connections

  opened(conn: Conn): void {
    const identity = conn.identity;
    const s: Session = {
      conn,
      client: { send: (data, droppable) => conn.send(data, droppable) },
      channel: identity.channel as Channel | undefined,
      tokenDeadline: Infinity,
      authDeadline: this.clock() + this.limits.authTimeoutMs,
      subs: new Map(),
      queue: [],
      busy: false,
      lastLimitedReply: 0,
      limitedSinceReply: 0,
    };
    conn.data.telemetry = s;
    this.sessions.add(s);
    if (typeof identity.user === 'string') {
      this.signIn(s, identity.user, identity.expiresAt as number);
    } else {
      this.pending.add(s);
    }
  }

  closed(conn: Conn): void {
    const s = conn.data.telemetry as Session | undefined;
    if (!s) return;
    this.sessions.delete(s);
    this.pending.delete(s);
    for (const sub of s.subs.values()) this.fanout.remove(sub);
    s.subs.clear();
    s.queue.length = 0;
    if (s.user !== undefined) this.userLeft(s.user);
  }

  /** A frame dropped by the per-connection rate limit: say so, at most once a second. */
  limited(conn: Conn): void {
    const s = conn.data.telemetry as Session | undefined;
    if (!s) return;
    const now = this.clock();
    s.limitedSinceReply++;
    if (now - s.lastLimitedReply < 1000) return;
    s.lastLimitedReply = now;
    this.reply(s, { type: 'error', error: 'rate_limited', message: 'more than 100 messages per second: messages are being dropped', dropped: s.limitedSinceReply });
    s.limitedSinceReply = 0;
  }

  message(conn: Conn, text: string): void {
    const s = conn.data.telemetry as Session | undefined;
    if (!s) return;
    if (s.busy) {
      if (s.queue.length >= this.limits.maxQueued) {
        this.reply(s, { type: 'error', error: 'busy', message: 'too many messages while the token is verified' });
        return;
      }
      s.queue.push(text);
      return;
    }
    this.run(s, text);
  }

  /** Handle a frame; an async step (token verification) holds the queue until it is done. */
  private run(s: Session, text: string): void {
    let result: void | Promise<void>;
    try {
      result = this.frame(s, text);
    } catch (err) {
      this.logger.error(`telemetry: message handler failed: ${(err as Error).message}`);
      this.reply(s, { type: 'error', error: 'internal_error', message: 'the server could not handle this message' });
      return;
    }
    if (!(result instanceof Promise)) return;
    s.busy = true;
    result
      .catch((err: Error) => {
        this.logger.error(`telemetry: message handler failed: ${err.message}`);
        this.reply(s, { type: 'error', error: 'internal_error', message: 'the server could not handle this message' });
      })
      .finally(() => {
        s.busy = false;
        while (!s.busy && s.queue.length > 0 && s.conn.isOpen) this.run(s, s.queue.shift() as string);
      });
  }

  private frame(s: Session, text: string): void | Promise<void> {
    const parsed = parseFrame(text);
    if (!parsed.ok) {
      this.reply(s, { type: 'error', error: parsed.error, message: parsed.message });
      return;
    }
    const checked = checkMessage(parsed.value, Buffer.byteLength(text, 'utf8'));
    if (!checked.ok) {
      this.refuse(s, checked.error, checked.message, checked.type, checked.id);
      return;
    }
    if (checked.msg.type === 'batch') return this.batch(s, checked.msg);
    return this.one(s, checked.msg);
  }

  /**
   * A batch: each item is checked as a message of its own (1 KiB, schema) and counts toward
   * the rate limit; items are handled in order, each answered as if it came alone.
   */
  private batch(s: Session, msg: ClientMessage): void | Promise<void> {
    const items = msg.messages as unknown[];
    const dropped: number[] = [];
    const finish = () => {
      if (dropped.length > 0 && s.conn.isOpen) {
        this.reply(s, { type: 'error', error: 'rate_limited', message: `more than 100 messages per second: ${dropped.length} batch item(s) dropped`, ref: 'batch', dropped: dropped.length, indexes: dropped });
      }
    };
    const step = (i: number): void | Promise<void> => {
      for (; i < items.length; i++) {
        if (!s.conn.isOpen) return;
        // The frame took one token from the rate gate; every further item takes its own.
        if (i > 0) {
          const verdict = s.conn.rate.take();
          if (verdict === 'close') {
            s.conn.close(TelemetryClose.POLICY, 'rate limit exceeded');
            return;
          }
          if (verdict === 'limited') {
            dropped.push(i);
            continue;
          }
        }
        const item = items[i];
        const bytes = Buffer.byteLength(JSON.stringify(item) ?? '', 'utf8');
        const checked = checkMessage(item, bytes, true);
        if (!checked.ok) {
          this.refuse(s, checked.error, checked.message, checked.type, checked.id, i);
          continue;
        }
        const r = this.one(s, checked.msg, i);
        if (r instanceof Promise) return r.then(() => step(i + 1));
      }
      finish();
    };
    return step(0);
  }

  private one(s: Session, msg: ClientMessage, index?: number): void | Promise<void> {
    if (msg.type === 'auth') return this.auth(s, msg, index);
    if (msg.type === 'ping') {
      const pong: Record<string, unknown> = { type: 'pong', timestamp: new Date(this.clock()).toISOString() };
      if (msg.timestamp !== undefined) pong.ping_timestamp = msg.timestamp;
      if (msg.id !== undefined) pong.id = msg.id;
      this.reply(s, pong);
      return;
    }
    if (s.user === undefined) {
      this.refuse(s, 'auth_required', 'authenticate first: send {"type":"auth","token":"<JWT>"}', msg.type, msg.id, index);
      return;
    }
    switch (msg.type) {
      case 'subscribe':
        this.subscribe(s, msg, index);
        return;
      case 'unsubscribe':
        this.unsubscribe(s, msg, index);
        return;
      case 'get_devices':
        this.reply(s, withId({ type: 'device_list', devices: this.deviceList() }, msg.id));
        return;
      case 'get_alerts':
        this.reply(s, withId({ type: 'alert_list', alerts: this.alerts.activeAlerts().map((a) => this.alertMessage({ status: 'active', alert: a, at: a.raised_at })) }, msg.id));
        return;
      default:
        this.refuse(s, 'unknown_message_type', `unknown message type "${msg.type}"`, msg.type, msg.id, index);
    }
  }

  private async auth(s: Session, msg: ClientMessage, index?: number): Promise<void> {
    const remote = s.conn.remote;
    const r = await this.verify(msg.token as string);
    if (!s.conn.isOpen) return;
    const extra: Record<string, unknown> = {};
    if (msg.id !== undefined) extra.id = msg.id;
    if (index !== undefined) extra.index = index;
    if (!r.ok) {
      this.reply(s, { type: 'auth_response', success: false, error: r.error, message: r.message, ...extra });
      if (s.user === undefined) {
        this.failures.fail(remote);
        this.throttled.warn(`authfail:${remote}`, `telemetry: authentication from ${remote} failed: ${r.message}`);
        this.pending.delete(s);
        s.conn.close(TelemetryClose.POLICY, r.error);
      }
      return;
    }
    if (s.user !== undefined) {
      if (s.user !== r.user) {
        this.reply(s, { type: 'auth_response', success: false, error: 'user_mismatch', message: 'a connection keeps its user: the new token is for another user', ...extra });
        return;
      }
      s.tokenDeadline = this.deadline(r.expiresAt);
      this.reply(s, { type: 'auth_response', success: true, user: r.user, expires_at: new Date(r.expiresAt).toISOString(), ...extra });
      return;
    }
    if (this.usersConnected(r.user) >= this.limits.maxPerUser) {
      this.reply(s, { type: 'auth_response', success: false, error: 'too_many_connections', message: `at most ${this.limits.maxPerUser} connections per user`, ...extra });
      this.pending.delete(s);
      s.conn.close(TelemetryClose.TRY_LATER, 'too many connections for this user');
      return;
    }
    const response: Record<string, unknown> = { type: 'auth_response', success: true, user: r.user, expires_at: new Date(r.expiresAt).toISOString(), ...extra };
    this.signIn(s, r.user, r.expiresAt, response);
    this.reply(s, response);
  }

  private signIn(s: Session, user: string, expiresAt: number, response?: Record<string, unknown>): void {
    s.user = user;
    s.tokenDeadline = this.deadline(expiresAt);
    this.pending.delete(s);
    this.perUser.set(user, (this.perUser.get(user) ?? 0) + 1);
    if (s.channel) {
      // A per-channel endpoint delivers its channel from authentication on; `subscribe` there
      // only changes the filters.
      const spec = subscriptionSpec({ channel: s.channel }, s.channel);
      if (spec.ok) {
        const sub = this.fanout.add(s.client, spec.spec);
        s.subs.set(s.channel, sub);
        if (response) response.subscribed = { channel: s.channel, subscription_id: sub.id };
        if (s.channel === 'system') queueMicrotask(() => this.systemNow(s, sub));
      }
    }
  }

  private verify(token: string): Promise<TokenResult> {
    if (!this.options.verifier) return Promise.resolve({ ok: false, error: 'invalid_token', message: 'this server has no JWT secret' });
    return this.options.verifier.verify(token, this.clock());
  }

  private deadline(expiresAt: number): number {
    return this.options.verifier ? this.options.verifier.deadline(expiresAt) : expiresAt;
  }

  private userLeft(user: string): void {
    const n = (this.perUser.get(user) ?? 1) - 1;
    if (n <= 0) this.perUser.delete(user);
    else this.perUser.set(user, n);
  }

  private subscribe(s: Session, msg: ClientMessage, index?: number): void {
    const checked = subscriptionSpec(msg, s.channel);
    if (!checked.ok) {
      this.refuse(s, checked.error, checked.message, 'subscribe', msg.id, index);
      return;
    }
    const spec = checked.spec;
    // On /ws one subscription per channel and device set (the same again replaces it); on a
    // per-channel endpoint exactly one.
    const key = s.channel ? s.channel : `${spec.channel}|${spec.devices ? [...spec.devices].sort().join(',') : '*'}`;
    const previous = s.subs.get(key);
    if (!previous && s.subs.size >= this.limits.maxSubscriptions) {
      this.refuse(s, 'too_many_subscriptions', `at most ${this.limits.maxSubscriptions} subscriptions per connection`, 'subscribe', msg.id, index);
      return;
    }
    if (previous) this.fanout.remove(previous);
    const sub = this.fanout.add(s.client, spec);
    s.subs.set(key, sub);
    const ack: Record<string, unknown> = { type: 'subscription_confirmed', channel: spec.channel, subscription_id: sub.id, filters: spec.echo };
    if (spec.echo.device_id !== undefined) ack.device_id = spec.echo.device_id;
    if (msg.id !== undefined) ack.id = msg.id;
    if (index !== undefined) ack.index = index;
    this.reply(s, ack);
    if (spec.channel === 'system') this.systemNow(s, sub);
    if (spec.channel === 'alerts') {
      // Alerts already active when a client subscribes (also after a restart) are sent once,
      // marked `replay: true`.
      for (const a of this.alerts.activeAlerts()) {
        const dev = a.deviceid ? this.ref(a.deviceid) : undefined;
        if (!deviceMatches(spec, dev) || !alertMatches(spec, a.severity, a.alert_type)) continue;
        s.conn.send(JSON.stringify(this.alertMessage({ status: 'active', alert: a, at: a.raised_at }, true)), true);
      }
    }
  }

  private systemNow(s: Session, sub: Subscription): void {
    if (!s.conn.isOpen) return;
    this.fanout.systemNow(sub, this.options.sampleSystem(), new Date(this.clock()).toISOString());
  }

  /**
   * `unsubscribe`: by `subscription_id`; or every subscription of a channel; or, with
   * `device_id`, those devices out of the channel's device lists (a subscription left without
   * devices ends; one for every device is not narrowed).
   */
  private unsubscribe(s: Session, msg: ClientMessage, index?: number): void {
    const subId = msg.subscription_id as number | undefined;
    const nested = (msg.filters ?? {}) as Record<string, unknown>;
    const deviceFilter = nested.device_id !== undefined ? nested.device_id : msg.device_id;
    const keys = deviceKeys(deviceFilter);
    if (!keys.ok) {
      this.refuse(s, keys.error, keys.message, 'unsubscribe', msg.id, index);
      return;
    }
    let channel: Channel | undefined;
    if (subId === undefined || msg.channel !== undefined) {
      const ch = channelOf(msg, s.channel);
      if (!ch.ok) {
        this.refuse(s, ch.error, ch.message, 'unsubscribe', msg.id, index);
        return;
      }
      channel = ch.channel;
    }
    let removed = 0;
    for (const [key, sub] of [...s.subs]) {
      if (subId !== undefined && sub.id !== subId) continue;
      if (channel !== undefined && sub.spec.channel !== channel) continue;
      if (subId === undefined && keys.keys) {
        if (!sub.spec.devices) continue;
        const rest = sub.spec.devices.filter((k) => !keys.keys?.includes(k));
        if (rest.length === sub.spec.devices.length) continue;
        this.fanout.remove(sub);
        s.subs.delete(key);
        removed++;
        if (rest.length > 0) {
          const spec = { ...sub.spec, devices: rest, echo: { ...sub.spec.echo, device_id: rest.map(keyToId) } };
          s.subs.set(s.channel ? s.channel : `${spec.channel}|${[...rest].sort().join(',')}`, this.fanout.add(s.client, spec));
        }
        continue;
      }
      this.fanout.remove(sub);
      s.subs.delete(key);
      removed++;
    }
    if (removed === 0) {
      this.refuse(s, 'not_subscribed', 'no subscription matches this unsubscribe', 'unsubscribe', msg.id, index);
      return;
    }
    const ack: Record<string, unknown> = { type: 'unsubscription_confirmed', channel: channel ?? null, removed };
    if (subId !== undefined) ack.subscription_id = subId;
    if (deviceFilter !== undefined) ack.device_id = deviceFilter;
    if (msg.id !== undefined) ack.id = msg.id;
    if (index !== undefined) ack.index = index;
    this.reply(s, ack);
  }

  /** The device list with numbers, for `get_devices` and the editor. */
  deviceList(): Array<Record<string, unknown>> {
    return this.options.devices()
      .map((d) => ({
        device_id: this.numbers.numberOf(d.deviceid),
        deviceid: d.deviceid,
        name: d.name ?? null,
        model: d.model ?? null,
        status: this.status.get(d.deviceid) ?? this.statusOf(d.deviceid, d.online),
        last_seen: d.lastSeen ? new Date(d.lastSeen).toISOString() : null,
      }))
      .sort((a, b) => a.device_id - b.device_id);
  }

  private refuse(s: Session, error: string, message: string, ref?: string, id?: string | number, index?: number): void {
    const body: Record<string, unknown> = { type: 'error', error, message };
    if (ref !== undefined) body.ref = ref;
    if (id !== undefined) body.id = id;
    if (index !== undefined) body.index = index;
    this.reply(s, body);
  }

  private reply(s: Session, body: Record<string, unknown>): void {
    s.conn.send(JSON.stringify(body), false);
  }
}

/** `i:3` → 3, `d:1000aa0001` → "1000aa0001". */
function keyToId(key: string): string | number {
  return key.startsWith('i:') ? Number(key.slice(2)) : key.slice(2);
}

function withId(body: Record<string, unknown>, id: unknown): Record<string, unknown> {
  if (id !== undefined) body.id = id;
  return body;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out as Partial<T>;
}

