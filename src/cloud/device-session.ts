/**
 * One device WebSocket connection: the register handshake, then date / update / query /
 * acks, and the commands waiting for an ack on this socket. It knows nothing about Node-RED;
 * it reports to its `SessionHost` (the cloud).
 */
import type { WebSocket } from 'ws';
import {
  buildDateReply,
  buildErrorReply,
  buildQueryReply,
  buildRegisterReply,
  buildServerUpdate,
  buildUpdateAck,
  selectQueryParams,
} from '../protocol/builders';
import { CoolkitError, ErrorCode } from '../protocol/errors';
import { parseDeviceFrame } from '../protocol/schemas';
import type { AckMessage, Params, QueryMessage, RegisterMessage, UpdateMessage } from '../protocol/types';
import type { DeviceRecord } from './registry';
import { TokenBucket } from './rate';

export interface CommandResult {
  deviceid: string;
  sequence: string;
  /** Round trip from send to ack, ms. */
  ms: number;
}

interface Pending {
  resolve(result: CommandResult): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
  sentAt: number;
}

/** What a session needs from the cloud. */
export interface SessionHost {
  readonly hbInterval: number;
  /** Accept or refuse a register; returns the record, or an error to send back. */
  admit(session: DeviceSession, msg: RegisterMessage): Promise<DeviceRecord | CoolkitError>;
  report(session: DeviceSession, record: DeviceRecord, params: Params): void;
  warn(key: string, message: string): void;
  /** The session ended (socket closed); the host decides whether the device is offline. */
  ended(session: DeviceSession): void;
  /** The first frame was an app's `userOnline`: the connection belongs to an app session. */
  handOffToApp(session: DeviceSession, firstFrame: string): void;
}

/** WebSocket close codes we use. */
export const CloseCode = {
  GOING_AWAY: 1001,
  POLICY: 1008,
  TOO_BIG: 1009,
  REPLACED: 4000,
  REFUSED: 4003,
} as const;

/**
 * The socket's listeners are shared by every session (the socket is `this`, its session is
 * stored on it) instead of four closures per connection: thousands of devices stay connected
 * for days, so per-connection memory counts.
 */
const SESSION = Symbol('coolkit.deviceSession');
type SessionSocket = WebSocket & { [SESSION]?: DeviceSession };

function onSocketMessage(this: SessionSocket, data: Buffer, isBinary: boolean): void {
  this[SESSION]?.onFrame(data, isBinary);
}
function onSocketAlive(this: SessionSocket): void {
  const session = this[SESSION];
  if (session) session.lastSeen = Date.now();
}
function onSocketClose(this: SessionSocket): void {
  this[SESSION]?.onClose();
}
function onSocketError(this: SessionSocket, err: Error): void {
  this[SESSION]?.onSocketError(err);
}

export class DeviceSession {
  record: DeviceRecord | undefined;
  lastSeen: number;
  readonly openedAt: number;
  /** Commands waiting for this device's ack by sequence (created on the first command). */
  private pending: Map<string, Pending> | undefined;
  private readonly bucket: TokenBucket;
  private registering = false;
  private closed = false;
  /** The update ack is the same bytes every time for a device: encoded once, on its first report. */
  private ackFrame: { apikey: string; bytes: Buffer } | undefined;

  constructor(
    readonly ws: WebSocket,
    readonly remote: string,
    private readonly host: SessionHost,
    rate: { burst: number; perSecond: number },
    now = Date.now(),
  ) {
    this.lastSeen = now;
    this.openedAt = now;
    this.bucket = new TokenBucket(rate.burst, rate.perSecond, now);
    (ws as SessionSocket)[SESSION] = this;
    ws.on('message', onSocketMessage);
    ws.on('ping', onSocketAlive);
    ws.on('pong', onSocketAlive);
    ws.on('close', onSocketClose);
    ws.on('error', onSocketError);
  }

  /** Stop handling this socket (it now belongs to another session type). */
  detach(): void {
    this.closed = true;
    this.ws.off('message', onSocketMessage);
    this.ws.off('ping', onSocketAlive);
    this.ws.off('pong', onSocketAlive);
    this.ws.off('close', onSocketClose);
    this.ws.off('error', onSocketError);
    (this.ws as SessionSocket)[SESSION] = undefined;
  }

  /** @internal the socket reported an error (ws closes it itself). */
  onSocketError(err: Error): void {
    this.host.warn(`wserr:${this.remote}`, `device socket ${this.label()}: ${err.message}`);
  }

  get deviceid(): string | undefined {
    return this.record?.deviceid;
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  label(): string {
    return this.record ? `${this.record.deviceid} (${this.remote})` : this.remote;
  }

  send(obj: unknown): void {
    if (this.closed || this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(JSON.stringify(obj));
  }

  /** Send an already encoded text frame (ws does not copy an unmasked Buffer). */
  private sendBytes(bytes: Buffer): void {
    if (this.closed || this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(bytes, { binary: false });
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    try {
      this.ws.close(code, reason);
    } catch {
      this.ws.terminate();
    }
  }

  terminate(): void {
    this.ws.terminate();
  }

  /** Push params to the device and wait for its ack. */
  command(params: Params, sequence: string, timeoutMs: number): Promise<CommandResult> {
    const record = this.record;
    if (!record || this.closed) return Promise.reject(new CoolkitError(ErrorCode.OFFLINE, 'device is offline'));
    return this.request(buildServerUpdate(record.deviceid, record.apikey, sequence, params), timeoutMs);
  }

  /** Push any server message that expects an ack by `sequence` (e.g. `upgrade`). */
  request(message: Record<string, unknown> & { sequence: string }, timeoutMs: number): Promise<CommandResult> {
    const record = this.record;
    if (!record || this.closed) return Promise.reject(new CoolkitError(ErrorCode.OFFLINE, 'device is offline'));
    const deviceid = record.deviceid;
    return new Promise<CommandResult>((resolve, reject) => {
      const pending = (this.pending ??= new Map());
      const timer = setTimeout(() => {
        pending.delete(message.sequence);
        reject(new CoolkitError(ErrorCode.TIMEOUT, `device ${deviceid} did not acknowledge within ${Math.round(timeoutMs / 100) / 10} s`, deviceid));
      }, timeoutMs);
      pending.set(message.sequence, { resolve, reject, timer, sentAt: Date.now() });
      this.send(message);
    });
  }

  /** @internal one frame from the device's socket. */
  onFrame(data: Buffer, isBinary: boolean): void {
    const now = Date.now();
    this.lastSeen = now;
    if (!this.bucket.take(now)) {
      this.host.warn(`flood:${this.remote}`, `device ${this.label()} sends too fast; closing its connection`);
      this.close(CloseCode.POLICY, 'rate limit exceeded');
      return;
    }
    if (isBinary) {
      this.replyError(ErrorCode.BAD_REQUEST, 'binary frames are not part of the protocol');
      return;
    }
    const text = data.toString('utf8');
    const frame = parseDeviceFrame(text);
    if (frame.kind === 'invalid' && !this.record && !this.registering && /"action"\s*:\s*"userOnline"/.test(text)) {
      this.detach();
      this.host.handOffToApp(this, text);
      return;
    }
    switch (frame.kind) {
      case 'ping':
        if (!this.closed) this.ws.send('pong');
        return;
      case 'invalid':
        this.host.warn(`bad:${this.remote}`, `bad message from device ${this.label()}: ${frame.reason}`);
        this.replyError(frame.code, frame.reason);
        return;
      case 'register':
        void this.onRegister(frame.msg);
        return;
    }
    const record = this.record;
    if (!record) {
      this.replyError(ErrorCode.UNAUTHORIZED, 'register first');
      return;
    }
    const msg = frame.msg;
    if (msg.deviceid !== record.deviceid) {
      this.replyError(ErrorCode.FORBIDDEN, `this connection belongs to device ${record.deviceid}`);
      return;
    }
    if (msg.apikey !== undefined && msg.apikey !== record.apikey && msg.apikey !== record.factoryApikey) {
      this.replyError(ErrorCode.UNAUTHORIZED, 'wrong apikey');
      return;
    }
    switch (frame.kind) {
      case 'date':
        this.send(buildDateReply(record.deviceid, record.apikey));
        return;
      case 'update':
        this.onUpdate(record, frame.msg);
        return;
      case 'query':
        this.onQuery(record, frame.msg);
        return;
      case 'ack':
        this.onAck(frame.msg);
        return;
    }
  }

  private async onRegister(msg: RegisterMessage): Promise<void> {
    if (this.record || this.registering) {
      this.replyError(ErrorCode.BAD_REQUEST, 'already registered on this connection');
      return;
    }
    this.registering = true;
    try {
      const result = await this.host.admit(this, msg);
      if (this.closed) return;
      if (result instanceof CoolkitError) {
        this.send(buildErrorReply(result.code, result.message, msg.deviceid));
        this.close(CloseCode.REFUSED, result.message.slice(0, 100));
        return;
      }
      this.record = result;
      this.send(buildRegisterReply(result.deviceid, result.apikey, this.host.hbInterval));
    } catch (err) {
      this.host.warn(`register:${this.remote}`, `register of ${msg.deviceid} failed: ${(err as Error).message}`);
      this.send(buildErrorReply(ErrorCode.SERVER_ERROR, 'server error', msg.deviceid));
      this.close(CloseCode.POLICY, 'server error');
    } finally {
      this.registering = false;
    }
  }

  private onUpdate(record: DeviceRecord, msg: UpdateMessage): void {
    let ack = this.ackFrame;
    if (!ack || ack.apikey !== record.apikey) {
      ack = { apikey: record.apikey, bytes: Buffer.from(JSON.stringify(buildUpdateAck(record.deviceid, record.apikey))) };
      this.ackFrame = ack;
    }
    this.sendBytes(ack.bytes);
    this.host.report(this, record, msg.params);
  }

  private onQuery(record: DeviceRecord, msg: QueryMessage): void {
    this.send(buildQueryReply(record.deviceid, record.apikey, selectQueryParams(record.params, msg.params)));
  }

  private onAck(msg: AckMessage): void {
    const pending = this.pending?.get(msg.sequence);
    if (!pending) return; // late ack after a timeout, or an ack for another server: nothing waits
    this.pending?.delete(msg.sequence);
    clearTimeout(pending.timer);
    const deviceid = this.record?.deviceid ?? msg.deviceid;
    if (msg.error === 0) {
      pending.resolve({ deviceid, sequence: msg.sequence, ms: Date.now() - pending.sentAt });
    } else {
      pending.reject(new CoolkitError(msg.error, `device ${deviceid} refused the command (error ${msg.error})`, deviceid));
    }
  }

  private replyError(code: number, reason: string): void {
    this.send(buildErrorReply(code, reason, this.record?.deviceid, this.record?.apikey));
  }

  /** @internal the device's socket closed. */
  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    const deviceid = this.record?.deviceid;
    const waiting = this.pending;
    this.pending = undefined;
    for (const pending of waiting?.values() ?? []) {
      clearTimeout(pending.timer);
      pending.reject(new CoolkitError(ErrorCode.OFFLINE, `device ${deviceid ?? ''} disconnected before acknowledging`.replace('  ', ' '), deviceid));
    }
    this.host.ended(this);
  }
}
