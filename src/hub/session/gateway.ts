/**
 * A hub WebSocket endpoint, independent of the API spoken on it. Before the upgrade: per-IP
 * attempt limit, Origin allow-list, pluggable authentication, connection caps; refusals are
 * plain HTTP answers (401/403/429/503). After it: frame size limit (`maxPayload`, close 1009),
 * text frames only (1003), per-connection rate limit (answer + drop, close 1008 when sustained),
 * backpressure per client, and ONE heartbeat timer for every connection (ping, terminate peers
 * that did not answer the previous ping). Broadcasts are serialised once for all clients.
 */
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { bounded, silentLogger, ThrottledLog, type Logger } from '../../cloud/log';
import { originAllowed, redactUrl } from './auth';
import { DEFAULT_BACKPRESSURE, HubCloseCode, HubConnection, type BackpressureOptions } from './connection';
import { AttemptLimiter, DEFAULT_ATTEMPTS, DEFAULT_RATE, type AttemptOptions, type RateOptions } from './limits';
import type { Authenticator, ConnectionHandler, Identity, Refusal } from './types';
import { destroyOnError } from '../../cloud/socket-error';

export interface GatewayOptions {
  /** Display name for logs, e.g. `zhiting`. */
  name: string;
  authenticate: Authenticator;
  handler: ConnectionHandler;
  /** Browser origins allowed (normalised, see parseOrigins). Requests without Origin always pass this check. */
  origins: readonly string[];
  /** Largest accepted frame, bytes. Default 65 536. */
  maxPayload: number;
  /** Open connections at most, all clients. Default 1000. */
  maxConnections: number;
  /** Open connections at most per identity. Default 100. */
  maxPerIdentity: number;
  /** Requests in progress at most per connection. Default 8. */
  maxInFlight: number;
  /** Protocol ping interval; a peer that has not answered the previous ping is cut. Default 30 000 ms; 0 = off. */
  heartbeatMs: number;
  rate: RateOptions;
  attempts: AttemptOptions;
  backpressure: BackpressureOptions;
  logger: Logger;
}

export const DEFAULT_GATEWAY = {
  maxPayload: 64 * 1024,
  maxConnections: 1000,
  maxPerIdentity: 100,
  maxInFlight: 8,
  heartbeatMs: 30_000,
};

export type GatewayInit = Pick<GatewayOptions, 'name' | 'authenticate' | 'handler'> & Partial<Omit<GatewayOptions, 'rate' | 'attempts' | 'backpressure'>> & {
  rate?: Partial<RateOptions>;
  attempts?: Partial<AttemptOptions>;
  backpressure?: Partial<BackpressureOptions>;
};

/** Counters for status displays and tests. */
export interface GatewayStats {
  open: number;
  accepted: number;
  refused: Record<number, number>;
  rateLimited: number;
  rateClosed: number;
  slowReaders: number;
  deadPeers: number;
  droppedEvents: number;
  broadcasts: number;
}

export class HubGateway {
  readonly options: GatewayOptions;
  readonly connections = new Set<HubConnection>();
  readonly stats: GatewayStats = { open: 0, accepted: 0, refused: {}, rateLimited: 0, rateClosed: 0, slowReaders: 0, deadPeers: 0, droppedEvents: 0, broadcasts: 0 };
  private readonly wss: WebSocketServer;
  private readonly perIdentity = new Map<string, number>();
  private readonly attempts: AttemptLimiter;
  private readonly throttled: ThrottledLog;
  private sweepTimer: NodeJS.Timeout | undefined;
  private closing = false;
  private readonly hooks = { kill: (conn: HubConnection, why: 'slow-reader' | 'congested') => this.kill(conn, why) };

  constructor(init: GatewayInit) {
    this.options = {
      ...DEFAULT_GATEWAY,
      origins: [],
      logger: silentLogger,
      ...stripUndefined(init),
      rate: { ...DEFAULT_RATE, ...stripUndefined(init.rate ?? {}) },
      attempts: { ...DEFAULT_ATTEMPTS, ...stripUndefined(init.attempts ?? {}) },
      backpressure: { ...DEFAULT_BACKPRESSURE, ...stripUndefined(init.backpressure ?? {}) },
    } as GatewayOptions;
    this.throttled = new ThrottledLog(this.options.logger);
    this.attempts = new AttemptLimiter(this.options.attempts);
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: this.options.maxPayload,
      perMessageDeflate: false,
      clientTracking: false,
      skipUTF8Validation: false,
    });
  }

  get size(): number {
    return this.connections.size;
  }

  /**
   * Take an upgrade request whose path is this gateway's. Every outcome is handled here: the
   * upgrade, or an HTTP refusal and the socket closed.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', destroyOnError);
    const remote = req.socket.remoteAddress ?? '?';
    if (this.closing) {
      this.refuse(socket, remote, { status: 503, reason: 'shutting down' });
      return;
    }
    const wait = this.attempts.check(remote);
    if (wait > 0) {
      this.refuse(socket, remote, { status: 429, reason: 'too many connection attempts', headers: { 'Retry-After': String(wait) } });
      return;
    }
    const originHeader = req.headers.origin;
    const origin = typeof originHeader === 'string' ? originHeader : undefined;
    if (!originAllowed(origin, this.options.origins)) {
      this.attempts.fail(remote);
      this.refuse(socket, remote, { status: 403, reason: `origin ${bounded(origin ?? '', 80)} is not allowed` });
      return;
    }
    let verdict;
    try {
      verdict = this.options.authenticate(req);
    } catch (err) {
      this.refuse(socket, remote, { status: 500, reason: `authentication failed: ${(err as Error).message}` });
      return;
    }
    if (verdict instanceof Promise) {
      verdict.then(
        (v) => this.afterAuth(req, socket, head, remote, origin, v),
        (err: Error) => this.refuse(socket, remote, { status: 500, reason: `authentication failed: ${err.message}` }),
      );
    } else {
      this.afterAuth(req, socket, head, remote, origin, verdict);
    }
  }

  private afterAuth(req: IncomingMessage, socket: Duplex, head: Buffer, remote: string, origin: string | undefined, verdict: Awaited<ReturnType<Authenticator>>): void {
    if (socket.destroyed) return;
    if (!verdict.ok) {
      this.attempts.fail(remote);
      this.refuse(socket, remote, verdict);
      return;
    }
    if (this.closing) {
      this.refuse(socket, remote, { status: 503, reason: 'shutting down' });
      return;
    }
    const identity = verdict.identity;
    if (this.connections.size >= this.options.maxConnections) {
      this.refuse(socket, remote, { status: 503, reason: `connection limit (${this.options.maxConnections}) reached`, headers: { 'Retry-After': '30' } });
      return;
    }
    if ((this.perIdentity.get(identity.id) ?? 0) >= this.options.maxPerIdentity) {
      this.refuse(socket, remote, { status: 503, reason: `connection limit per user (${this.options.maxPerIdentity}) reached`, headers: { 'Retry-After': '30' } });
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws: WebSocket) => this.accept(ws, identity, remote, origin, req));
  }

  private accept(ws: WebSocket, identity: Identity, remote: string, origin: string | undefined, req: IncomingMessage): void {
    if (this.closing) {
      ws.close(HubCloseCode.GOING_AWAY, 'server shutting down');
      return;
    }
    const conn = new HubConnection(ws, identity, remote, origin, this.options.backpressure, this.options.rate, this.options.maxInFlight, this.hooks);
    this.connections.add(conn);
    this.perIdentity.set(identity.id, (this.perIdentity.get(identity.id) ?? 0) + 1);
    this.stats.accepted++;
    this.stats.open = this.connections.size;
    this.options.logger.debug(`${this.options.name}: client #${conn.id} connected from ${remote}${origin ? ` (origin ${bounded(origin, 80)})` : ''} as ${identity.id} on ${redactUrl(req.url)}`);
    ws.on('message', (data: RawData, isBinary: boolean) => this.onFrame(conn, data, isBinary));
    ws.on('pong', () => { conn.alive = true; });
    ws.on('error', (err: Error) => {
      // ws closes the socket itself on protocol errors (1009 too big, 1007 bad UTF-8, ...).
      this.throttled.warn(`wserr:${remote}`, `${this.options.name}: client #${conn.id} from ${remote}: ${err.message}`);
    });
    ws.on('close', (code: number, reason: Buffer) => this.onClose(conn, code, reason.toString()));
    this.ensureSweep();
    try {
      this.options.handler.opened?.(conn);
    } catch (err) {
      this.options.logger.warn(`${this.options.name}: open handler failed: ${(err as Error).message}`);
    }
  }

  private onFrame(conn: HubConnection, data: RawData, isBinary: boolean): void {
    // Frames already in flight when we decided to close are not handled (nor counted) again.
    if (!conn.isOpen) return;
    conn.alive = true;
    if (isBinary) {
      conn.close(HubCloseCode.UNSUPPORTED_DATA, 'text frames only');
      return;
    }
    const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.from(data).toString('utf8');
    const verdict = conn.rate.take();
    if (verdict !== 'ok') {
      this.stats.rateLimited++;
      if (verdict === 'close') {
        this.stats.rateClosed++;
        this.throttled.warn(`rate:${conn.remote}`, `${this.options.name}: client #${conn.id} from ${conn.remote} kept flooding (over ${this.options.rate.perSecond} messages/s); closed`);
        conn.close(HubCloseCode.POLICY, 'rate limit exceeded');
        return;
      }
      try {
        this.options.handler.limited?.(conn, text);
      } catch (err) {
        this.options.logger.warn(`${this.options.name}: limit handler failed: ${(err as Error).message}`);
      }
      return;
    }
    try {
      this.options.handler.message(conn, text);
    } catch (err) {
      this.options.logger.error(`${this.options.name}: message handler failed: ${(err as Error).message}`);
    }
  }

  private onClose(conn: HubConnection, code: number, reason: string): void {
    if (!this.connections.delete(conn)) return;
    const n = (this.perIdentity.get(conn.identity.id) ?? 1) - 1;
    if (n <= 0) this.perIdentity.delete(conn.identity.id);
    else this.perIdentity.set(conn.identity.id, n);
    this.stats.open = this.connections.size;
    this.stats.droppedEvents += conn.droppedEvents;
    this.options.logger.debug(`${this.options.name}: client #${conn.id} from ${conn.remote} disconnected (${code}${reason ? ` ${bounded(reason, 80)}` : ''})`);
    try {
      this.options.handler.closed?.(conn, code, reason);
    } catch (err) {
      this.options.logger.warn(`${this.options.name}: close handler failed: ${(err as Error).message}`);
    }
    if (this.connections.size === 0) this.stopSweep();
  }

  private kill(conn: HubConnection, why: 'slow-reader' | 'congested'): void {
    this.stats.slowReaders++;
    this.throttled.warn(`slow:${conn.remote}`, `${this.options.name}: client #${conn.id} from ${conn.remote} reads too slowly (${conn.bufferedAmount} bytes waiting${why === 'congested' ? ` for over ${this.options.backpressure.maxCongestedMs} ms` : ''}); disconnected`);
    conn.terminate();
  }

  private refuse(socket: Duplex, remote: string, refusal: Refusal): void {
    this.stats.refused[refusal.status] = (this.stats.refused[refusal.status] ?? 0) + 1;
    this.throttled.warn(`refused:${refusal.status}:${remote}`, `${this.options.name}: refused a connection from ${remote}: ${refusal.reason} (HTTP ${refusal.status})`);
    writeRefusal(socket, refusal);
  }

  /** The one timer: ping everyone, cut who did not answer the last ping, drop clients stuck behind. */
  private ensureSweep(): void {
    if (this.sweepTimer || this.options.heartbeatMs <= 0) return;
    this.sweepTimer = setInterval(() => this.sweep(), this.options.heartbeatMs);
    this.sweepTimer.unref();
  }

  private stopSweep(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
  }

  /** Exposed for tests; normally run by the heartbeat timer. */
  sweep(now = Date.now()): void {
    for (const conn of this.connections) {
      if (!conn.alive) {
        this.stats.deadPeers++;
        this.options.logger.debug(`${this.options.name}: client #${conn.id} from ${conn.remote} did not answer a ping; dropped`);
        conn.terminate();
        continue;
      }
      conn.checkCongestion(now);
      if (!conn.isOpen) continue;
      conn.alive = false;
      try {
        conn.ws.ping();
      } catch {
        conn.terminate();
      }
    }
    this.attempts.prune(now);
  }

  /**
   * Send one message to every open connection (or those `filter` accepts). The text is encoded
   * once; it is droppable for clients that are behind. Returns how many clients got it.
   */
  broadcast(text: string | Buffer, filter?: (conn: HubConnection) => boolean): number {
    if (this.connections.size === 0) return 0;
    this.stats.broadcasts++;
    const data = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
    let sent = 0;
    for (const conn of this.connections) {
      if (filter && !filter(conn)) continue;
      if (conn.send(data, true)) sent++;
    }
    return sent;
  }

  /** Close every connection (1001 by default), stop the timer, refuse new upgrades. */
  async close(code: number = HubCloseCode.GOING_AWAY, reason = 'server shutting down'): Promise<void> {
    this.closing = true;
    this.stopSweep();
    const open = [...this.connections];
    if (open.length === 0) return;
    await new Promise<void>((resolve) => {
      let left = open.length;
      const cutoff = setTimeout(() => {
        for (const c of open) c.terminate();
      }, 1000);
      cutoff.unref();
      for (const c of open) {
        c.ws.once('close', () => {
          if (--left === 0) {
            clearTimeout(cutoff);
            resolve();
          }
        });
        c.close(code, reason);
      }
    });
  }
}

/** Write an HTTP refusal on a socket that was asking for an upgrade, then close it. */
export function writeRefusal(socket: Duplex, refusal: Refusal): void {
  if (socket.destroyed) return;
  const body = JSON.stringify(refusal.body ?? { error: refusal.reason });
  const headers: Record<string, string> = {
    Connection: 'close',
    'Content-Type': 'application/json',
    'Content-Length': String(Buffer.byteLength(body)),
    ...(refusal.headers ?? {}),
  };
  const head = `HTTP/1.1 ${refusal.status} ${STATUS_CODES[refusal.status] ?? 'Error'}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`;
  socket.end(head + body);
  setTimeout(() => socket.destroy(), 1000).unref();
}

function stripUndefined<T extends object>(o: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out as T;
}
