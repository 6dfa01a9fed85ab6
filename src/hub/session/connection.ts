/**
 * One client connection of a hub gateway: sends with backpressure (a slow reader cannot make
 * the server buffer without bound), liveness for the gateway's single heartbeat sweep, the
 * per-connection rate gate and an in-flight counter for requests that wait on devices.
 */
import type { WebSocket } from 'ws';
import { RateGate, type RateOptions } from './limits';
import type { Identity } from './types';

export interface BackpressureOptions {
  /** Above this many buffered bytes, droppable messages (events) are dropped. Default 256 KiB. */
  highWaterBytes: number;
  /** A send that would take the buffer above this disconnects the client. Default 1 MiB. */
  maxBufferedBytes: number;
  /** Disconnect a client that stays above the high-water mark this long, ms. Default 5000. */
  maxCongestedMs: number;
}

export const DEFAULT_BACKPRESSURE: BackpressureOptions = { highWaterBytes: 256 * 1024, maxBufferedBytes: 1024 * 1024, maxCongestedMs: 5000 };

/** WebSocket close codes used by the session layer. */
export const HubCloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  UNSUPPORTED_DATA: 1003,
  POLICY: 1008,
  TOO_BIG: 1009,
  INTERNAL: 1011,
  TRY_AGAIN_LATER: 1013,
} as const;

export interface ConnectionHooks {
  /** The connection must go for a reason the gateway should count and log. */
  kill(conn: HubConnection, why: 'slow-reader' | 'congested'): void;
}

let nextConnectionId = 1;

export class HubConnection {
  /** Process-unique number, for logs. */
  readonly id = nextConnectionId++;
  readonly openedAt: number;
  /** Set false by the heartbeat sweep before each ping, true on pong or any frame. */
  alive = true;
  /** Events dropped because this client read too slowly. */
  droppedEvents = 0;
  /** Requests in progress (waiting on a device or a flow). */
  inFlight = 0;
  /** For the dialect: per-connection state. */
  readonly data: Record<string, unknown> = {};
  readonly rate: RateGate;
  private congestedSince = 0;
  private closed = false;

  constructor(
    readonly ws: WebSocket,
    readonly identity: Identity,
    readonly remote: string,
    readonly origin: string | undefined,
    private readonly backpressure: BackpressureOptions,
    rate: RateOptions,
    private readonly maxInFlight: number,
    private readonly hooks: ConnectionHooks,
    now = Date.now(),
  ) {
    this.openedAt = now;
    this.rate = new RateGate(rate, now);
  }

  get isOpen(): boolean {
    return !this.closed && this.ws.readyState === 1;
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  /**
   * Send one text frame. `droppable` messages (broadcast events) are skipped while the client
   * is behind; anything that would take the buffer past the hard limit disconnects it.
   * Returns whether the frame was queued.
   */
  send(data: string | Buffer, droppable = false, now = Date.now()): boolean {
    if (!this.isOpen) return false;
    const buffered = this.ws.bufferedAmount;
    const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    if (buffered + size > this.backpressure.maxBufferedBytes) {
      this.hooks.kill(this, 'slow-reader');
      return false;
    }
    if (buffered > this.backpressure.highWaterBytes) {
      if (this.congestedSince === 0) this.congestedSince = now;
      else if (now - this.congestedSince > this.backpressure.maxCongestedMs) {
        this.hooks.kill(this, 'congested');
        return false;
      }
      if (droppable) {
        this.droppedEvents++;
        return false;
      }
    } else {
      this.congestedSince = 0;
    }
    this.ws.send(data, { binary: false });
    return true;
  }

  /** Called by the sweep: a client that stayed behind too long is dropped even when nothing is sent. */
  checkCongestion(now = Date.now()): void {
    if (!this.isOpen) return;
    if (this.ws.bufferedAmount <= this.backpressure.highWaterBytes) {
      this.congestedSince = 0;
      return;
    }
    if (this.congestedSince === 0) this.congestedSince = now;
    else if (now - this.congestedSince > this.backpressure.maxCongestedMs) this.hooks.kill(this, 'congested');
  }

  /** Reserve a slot for a request that completes later; false when too many are in progress. */
  beginOp(): boolean {
    if (this.inFlight >= this.maxInFlight) return false;
    this.inFlight++;
    return true;
  }

  endOp(): void {
    if (this.inFlight > 0) this.inFlight--;
  }

  /** Close with a code; the socket is cut if the closing handshake does not finish in 1 s. */
  close(code: number = HubCloseCode.NORMAL, reason = ''): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.ws.close(code, reason.slice(0, 120));
    } catch {
      this.ws.terminate();
      return;
    }
    const timer = setTimeout(() => this.ws.terminate(), 1000);
    timer.unref();
    this.ws.once('close', () => clearTimeout(timer));
  }

  /** Cut the socket at once (dead peer, slow reader): buffered data is discarded. */
  terminate(): void {
    this.closed = true;
    this.ws.terminate();
  }
}
