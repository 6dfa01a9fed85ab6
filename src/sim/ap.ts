/**
 * A simulated stock-firmware Sonoff in AP (pairing) mode, the HTTP side of protocol §3.1:
 *
 *   GET  /device → {"deviceid","apikey","chipid"?,"accept":"post"}   (the factory apikey)
 *   POST /ap     ← {"serverName","port","ssid"|"SSID","password","version"?} → {"error":0}
 *
 * The real device serves this on http://10.10.7.1 on its own `ITEAD-<deviceid>` Wi-Fi; the
 * simulator listens on 127.0.0.1 (port 0 = ephemeral) so a provisioning client can be tested.
 * It is deliberately as strict as the real firmware is reported to be:
 *
 * - `port` must be a JSON number. A string port (`"port":"8443"`) is answered `{"error":400}`,
 *   the failure mode CoolKit's developer guide warns about ("If Post request fails, please check
 *   if a string is passed as the port parameter"; mirko/SonOTA#17).
 * - Any other invalid body (not JSON, no serverName, no ssid/SSID, no password) is also `{"error":400}`.
 *
 * Fault injection:
 * - `refuse`: accept the TCP connection and close it without an answer (the client sees a reset /
 *   "socket hang up"), for every path or just one.
 * - `delayMs`: answer late, to trigger a client timeout.
 * - `apError`: answer every `/ap` with this non-zero error code.
 * - `requireAppHeaders`: firmware 3.5.0 only accepted `/ap` from clients that look like the
 *   eWeLink app (itead/Sonoff_Devices_DIY_Tools#125: the working request carried
 *   `User-Agent: okhttp/3.12.12`, `Content-Type: application/json;charset=UTF-8`,
 *   `package-name: com.coolkit`, …). Which header the firmware checks is not known; this
 *   simulator requires BOTH a `Content-Type` of `application/json` (parameters allowed) AND a
 *   `User-Agent` starting with `okhttp/`, and answers `{"error":400}` otherwise, so a curl-,
 *   Postman- or bare-Node-looking client fails as it did in that report.
 *
 * All options except the identity (`deviceid`/`apikey`/`chipid`) and `host`/`port` are public
 * mutable fields, so a test can change the behaviour between two requests.
 */
import { EventEmitter } from 'node:events';
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { factoryApikeyFor } from './ids';

export type ApPath = '/device' | '/ap';

export interface SimAccessPointOptions {
  /** Default '100008db17' (the seed's ITEAD-100008db17). */
  deviceid?: string;
  /** Factory apikey; default derived from the deviceid (`factoryApikeyFor`), so it is stable. */
  apikey?: string;
  /** Reported by `/device` when set (CK-v1 docs show e.g. "sjljb"); omitted otherwise. */
  chipid?: string;
  /** Default '127.0.0.1'. */
  host?: string;
  /** Default 0: an ephemeral port, see start(). */
  port?: number;
  /** Close connections without answering: true = every path, or only the given path. */
  refuse?: boolean | ApPath;
  /** Answer this many ms late: a number for every path, or per path. */
  delayMs?: number | Partial<Record<ApPath, number>>;
  /** Only accept `/ap` with `Content-Type: application/json…` and `User-Agent: okhttp/…` (fw 3.5.0). */
  requireAppHeaders?: boolean;
  /** Answer every `POST /ap` `{"error":<apError>}` (a firmware that rejects the settings). 0/undefined = off. */
  apError?: number;
}

/** The Wi-Fi and server settings of an accepted `POST /ap`. */
export interface ApProvisioning {
  serverName: string;
  port: number;
  /** From `ssid`, or `SSID` when only that key was sent. */
  ssid: string;
  password: string;
  version?: number;
  /** The body exactly as parsed, both ssid keys included. */
  body: Record<string, unknown>;
  headers: http.IncomingHttpHeaders;
}

/** Every request the simulator answered (or refused), in arrival order. */
export interface ApRequestRecord {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  /** Raw request body text ('' for GET). */
  body: string;
  /** HTTP status sent, or 'refused' when the connection was closed without an answer. */
  status: number | 'refused';
  /** The JSON reply sent, when there was one. */
  reply?: Record<string, unknown>;
}

export interface SimAccessPointEvents {
  /** A `POST /ap` was accepted (`{"error":0}` sent). */
  provisioned: (settings: ApProvisioning) => void;
  /** Any request, after it was answered or refused. */
  request: (record: ApRequestRecord) => void;
}

export declare interface SimulatedAccessPoint {
  on<E extends keyof SimAccessPointEvents>(event: E, listener: SimAccessPointEvents[E]): this;
  once<E extends keyof SimAccessPointEvents>(event: E, listener: SimAccessPointEvents[E]): this;
  off<E extends keyof SimAccessPointEvents>(event: E, listener: SimAccessPointEvents[E]): this;
}

const MAX_BODY = 4096;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Why an `/ap` body is rejected, or undefined when it is acceptable. */
export function apBodyProblem(body: unknown): string | undefined {
  if (!isObject(body)) return 'body is not a JSON object';
  const { serverName, port, password, version } = body;
  if (typeof serverName !== 'string' || serverName === '') return 'serverName missing';
  if (typeof port !== 'number') return `port must be a number, got ${typeof port}`;
  if (!Number.isInteger(port) || port < 1 || port > 65535) return `port out of range: ${port}`;
  const ssid = body.ssid ?? body.SSID;
  if (typeof ssid !== 'string' || ssid === '') return 'ssid/SSID missing';
  if (typeof password !== 'string') return 'password missing';
  if (version !== undefined && typeof version !== 'number') return 'version must be a number';
  return undefined;
}

/** The header check of `requireAppHeaders`; undefined when the headers pass. */
export function appHeaderProblem(headers: http.IncomingHttpHeaders): string | undefined {
  const type = String(headers['content-type'] ?? '').toLowerCase();
  if (!/^application\/json\s*(;|$)/.test(type)) return `Content-Type is "${type}", not application/json`;
  const ua = String(headers['user-agent'] ?? '');
  if (!/^okhttp\//i.test(ua)) return `User-Agent is "${ua}", not the app's okhttp/…`;
  return undefined;
}

export class SimulatedAccessPoint extends EventEmitter {
  readonly deviceid: string;
  readonly apikey: string;
  readonly chipid: string | undefined;
  readonly host: string;

  refuse: boolean | ApPath;
  delayMs: number | Partial<Record<ApPath, number>>;
  requireAppHeaders: boolean;
  apError: number;

  /** Settings of the last accepted `POST /ap`. */
  received: ApProvisioning | undefined;
  /** Every request so far. */
  readonly requests: ApRequestRecord[] = [];

  private readonly requestedPort: number;
  private server: http.Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(options: SimAccessPointOptions = {}) {
    super();
    this.deviceid = options.deviceid ?? '100008db17';
    this.apikey = options.apikey ?? factoryApikeyFor(this.deviceid);
    this.chipid = options.chipid;
    this.host = options.host ?? '127.0.0.1';
    this.requestedPort = options.port ?? 0;
    this.refuse = options.refuse ?? false;
    this.delayMs = options.delayMs ?? 0;
    this.requireAppHeaders = options.requireAppHeaders ?? false;
    this.apError = options.apError ?? 0;
  }

  /** The Wi-Fi network the real device would open. */
  get ssid(): string {
    return `ITEAD-${this.deviceid}`;
  }

  /** The bound port (after start()). */
  get port(): number {
    const addr = this.server?.address();
    return addr && typeof addr === 'object' ? (addr as AddressInfo).port : 0;
  }

  /** Base URL to give a client, e.g. `http://127.0.0.1:41234` (after start()). */
  get url(): string {
    return `http://${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.port}`;
  }

  /** Listen. Resolves with the bound port (useful with port 0). */
  start(): Promise<{ port: number }> {
    if (this.server) return Promise.resolve({ port: this.port });
    const server = http.createServer((req, res) => this.handle(req, res));
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => {
        this.server = undefined;
        reject(err);
      };
      server.once('error', onError);
      server.listen(this.requestedPort, this.host, () => {
        server.off('error', onError);
        resolve({ port: this.port });
      });
    });
  }

  /** Stop listening and drop every open connection (including ones held by `delayMs`). */
  stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (!server) return Promise.resolve();
    return new Promise((resolve) => server.close(() => resolve()));
  }

  private refuses(path: string): boolean {
    return this.refuse === true || this.refuse === path;
  }

  private delayFor(path: string): number {
    if (typeof this.delayMs === 'number') return this.delayMs;
    return this.delayMs[path as ApPath] ?? 0;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    const method = req.method ?? 'GET';
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) tooBig = true;
      else chunks.push(c);
    });
    req.on('error', () => undefined);
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const record: ApRequestRecord = { method, path, headers: req.headers, body, status: 'refused' };
      if (this.refuses(path)) {
        this.requests.push(record);
        req.socket.destroy();
        this.emit('request', record);
        return;
      }
      const answer = (): void => {
        const { status, reply, provisioned } = this.route(method, path, body, tooBig, req.headers);
        record.status = status;
        record.reply = reply;
        this.requests.push(record);
        const payload = JSON.stringify(reply);
        res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) });
        res.end(payload);
        if (provisioned) {
          this.received = provisioned;
          this.emit('provisioned', provisioned);
        }
        this.emit('request', record);
      };
      const delay = this.delayFor(path);
      if (delay > 0) {
        const t = setTimeout(() => {
          this.timers.delete(t);
          if (!req.socket.destroyed) answer();
        }, delay);
        this.timers.add(t);
      } else {
        answer();
      }
    });
  }

  private route(
    method: string,
    path: string,
    text: string,
    tooBig: boolean,
    headers: http.IncomingHttpHeaders,
  ): { status: number; reply: Record<string, unknown>; provisioned?: ApProvisioning } {
    if (path === '/device' && method === 'GET') {
      const reply: Record<string, unknown> = { deviceid: this.deviceid, apikey: this.apikey };
      if (this.chipid !== undefined) reply.chipid = this.chipid;
      reply.accept = 'post';
      return { status: 200, reply };
    }
    if (path === '/ap' && method === 'POST') {
      // The firmware answers HTTP 200 with a non-zero `error` on a bad request.
      const rejected = { status: 200, reply: { error: 400 } };
      if (this.apError) return { status: 200, reply: { error: this.apError } };
      if (tooBig) return rejected;
      if (this.requireAppHeaders && appHeaderProblem(headers)) return rejected;
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        return rejected;
      }
      if (apBodyProblem(body)) return rejected;
      const b = body as Record<string, unknown>;
      const provisioned: ApProvisioning = {
        serverName: b.serverName as string,
        port: b.port as number,
        ssid: (b.ssid ?? b.SSID) as string,
        password: b.password as string,
        body: b,
        headers,
      };
      if (typeof b.version === 'number') provisioned.version = b.version;
      return { status: 200, reply: { error: 0 }, provisioned };
    }
    return { status: 404, reply: { error: 404 } };
  }
}
