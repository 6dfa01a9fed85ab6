/**
 * One app WebSocket connection (the vendor app's side of the protocol, seed 000): `userOnline`
 * with the account's access token, then `update`/`query` for devices. Device reports and
 * online/offline notices are pushed by the cloud through `sendText`.
 */
import type { WebSocket } from 'ws';
import {
  buildAppQueryReply,
  buildAppResult,
  buildUserOnlineReply,
  parseAppFrame,
  type AppQueryMessage,
  type AppUpdateMessage,
  type UserOnlineMessage,
} from '../protocol/app';
import { buildErrorReply } from '../protocol/builders';
import { CoolkitError, ErrorCode } from '../protocol/errors';
import type { Params } from '../protocol/types';
import type { CommandResult } from './device-session';
import { TokenBucket } from './rate';

/** Largest amount queued for a slow app before it is disconnected. */
export const MAX_APP_BUFFER = 1024 * 1024;

export interface AppHost {
  readonly hbInterval: number;
  /** Check the credentials; returns the account apikey or an error. */
  authenticate(msg: UserOnlineMessage): string | CoolkitError;
  relayUpdate(deviceid: string, params: Params): Promise<CommandResult>;
  /** Stored state for an app query, or an error (503 offline, 404 unknown). */
  queryState(deviceid: string, keys: string[]): Params | CoolkitError;
  appOnline(session: AppSession): void;
  appEnded(session: AppSession): void;
  warn(key: string, message: string): void;
}

export class AppSession {
  apikey: string | undefined;
  lastSeen = Date.now();
  readonly openedAt = Date.now();
  private closed = false;
  private readonly bucket: TokenBucket;

  constructor(readonly ws: WebSocket, readonly remote: string, private readonly host: AppHost, rate: { burst: number; perSecond: number }) {
    this.bucket = new TokenBucket(rate.burst, rate.perSecond);
    ws.on('message', (data, isBinary) => this.onFrame(data as Buffer, isBinary));
    ws.on('ping', () => {
      this.lastSeen = Date.now();
    });
    ws.on('close', () => this.onClose());
    ws.on('error', (err) => this.host.warn(`apperr:${remote}`, `app socket ${remote}: ${err.message}`));
  }

  get authenticated(): boolean {
    return this.apikey !== undefined;
  }

  /** Send an already serialised frame; a reader that cannot keep up is disconnected. */
  sendText(text: string): void {
    if (this.closed || this.ws.readyState !== this.ws.OPEN) return;
    if (this.ws.bufferedAmount > MAX_APP_BUFFER) {
      this.host.warn(`appslow:${this.remote}`, `app ${this.remote} does not read its messages; disconnecting it`);
      this.ws.terminate();
      return;
    }
    this.ws.send(text);
  }

  send(obj: unknown): void {
    this.sendText(JSON.stringify(obj));
  }

  terminate(): void {
    this.ws.terminate();
  }

  close(code: number, reason: string): void {
    if (!this.closed) this.ws.close(code, reason);
  }

  /** Handle a frame (also the first one, handed over by the connection that received it). */
  onFrame(data: Buffer | string, isBinary = false): void {
    this.lastSeen = Date.now();
    if (!this.bucket.take()) {
      this.host.warn(`appflood:${this.remote}`, `app ${this.remote} sends too fast; closing its connection`);
      this.close(1008, 'rate limit exceeded');
      return;
    }
    if (isBinary) {
      this.send(buildErrorReply(ErrorCode.BAD_REQUEST, 'binary frames are not part of the protocol'));
      return;
    }
    const frame = parseAppFrame(typeof data === 'string' ? data : data.toString('utf8'));
    switch (frame.kind) {
      case 'ping':
        if (!this.closed) this.ws.send('pong');
        return;
      case 'invalid': {
        const reply: Record<string, unknown> = { error: frame.code, reason: frame.reason };
        if (frame.sequence) reply.sequence = frame.sequence;
        this.send(reply);
        return;
      }
      case 'userOnline':
        this.onUserOnline(frame.msg);
        return;
    }
    if (!this.apikey) {
      this.send({ error: ErrorCode.AUTH_FAILED, reason: 'send userOnline first', sequence: frame.msg.sequence });
      return;
    }
    if (frame.kind === 'update') this.onUpdate(frame.msg, this.apikey);
    else this.onQuery(frame.msg, this.apikey);
  }

  private onUserOnline(msg: UserOnlineMessage): void {
    const result = this.host.authenticate(msg);
    if (result instanceof CoolkitError) {
      this.send({ error: result.code, reason: result.message, sequence: msg.sequence });
      this.close(4006, 'authentication failed');
      return;
    }
    const first = this.apikey === undefined;
    this.apikey = result;
    this.send(buildUserOnlineReply(result, this.host.hbInterval, msg.sequence));
    if (first) this.host.appOnline(this);
  }

  private onUpdate(msg: AppUpdateMessage, apikey: string): void {
    this.host.relayUpdate(msg.deviceid, msg.params).then(
      () => this.send(buildAppResult(0, msg.deviceid, apikey, msg.sequence)),
      (err: Error) => {
        const code = err instanceof CoolkitError ? err.code : ErrorCode.SERVER_ERROR;
        this.send(buildAppResult(code, msg.deviceid, apikey, msg.sequence, err.message));
      },
    );
  }

  private onQuery(msg: AppQueryMessage, apikey: string): void {
    const result = this.host.queryState(msg.deviceid, msg.params);
    if (result instanceof CoolkitError) this.send(buildAppResult(result.code, msg.deviceid, apikey, msg.sequence, result.message));
    else this.send(buildAppQueryReply(msg.deviceid, apikey, msg.sequence, result));
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.host.appEnded(this);
  }
}
