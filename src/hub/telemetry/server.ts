/**
 * The telemetry endpoint: a `TelemetryService` served by the hub session layer on a port of its
 * own or on a shared HTTP server (Node-RED's), at `<path>` and the per-channel paths
 * `<path>/telemetry`, `<path>/alerts`, `<path>/system`, `<path>/devices`; its state (active
 * alerts, alert id counter, device numbers) kept on disk; and the one timer that drives it.
 *
 * The alert engine runs from `init()` on, whether or not the listener could start.
 */
import type * as http from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import * as path from 'node:path';
import type { Logger } from '../../cloud/log';
import { silentLogger } from '../../cloud/log';
import { atomicWriteFile, loadJsonFile, SaveScheduler } from '../../cloud/store';
import { HubGateway, type GatewayInit } from '../session/gateway';
import { joinPath, OwnServer, requestPath, UpgradeRouter } from '../session/serve';
import { CHANNELS, type Channel } from './filters';
import { SystemSampler } from './system';
import { TelemetryService, type TelemetryServiceOptions, type TelemetryState } from './service';
import { TokenVerifier } from './jwt';
import { MAX_BATCH_ITEMS, MAX_MESSAGE_BYTES } from './schema';

export type ListenChoice =
  | { mode: 'port'; bind: string; port: number }
  | { mode: 'server'; server: http.Server | HttpsServer; root?: string };

export interface TelemetryServerOptions extends Omit<TelemetryServiceOptions, 'verifier' | 'sampleSystem' | 'onStateChange' | 'logger'> {
  /** HS256 secret (>= 32 bytes). Without one nothing listens; alerts still run. */
  secret?: string;
  /** Clock tolerance for token expiry, seconds (default CLOCK_TOLERANCE_S = 5). */
  clockToleranceS?: number;
  listen: ListenChoice;
  /** Main path, default `/ws`. */
  path?: string;
  /** Browser origins allowed to connect (exact, normalised). */
  origins?: string[];
  /** Session-layer settings (tests lower or raise limits here). */
  gateway?: Partial<Omit<GatewayInit, 'name' | 'authenticate' | 'handler'>>;
  /** Where state is kept (none: in memory only). */
  stateFile?: string;
  /** File system whose use the system channel reports. */
  diskPath?: string;
  /** Timer period, ms (default 1000). */
  tickMs?: number;
  /** A connection opened or closed (for a status display). */
  onConnections?(count: number): void;
  logger?: Logger;
}

/** The seed's numbers: 1000 connections, 64 KiB frames (a full 50-item batch), ping every 30 s. */
export const TELEMETRY_GATEWAY_DEFAULTS = {
  maxConnections: 1000,
  maxPerIdentity: 100,
  maxPayload: 64 * 1024,
  heartbeatMs: 30_000,
  rate: { burst: 100, perSecond: 100, closeAfterMs: 3000 },
  attempts: { attemptsPerMinute: 10, failuresPerMinute: 5, blockMs: 60_000 },
};

interface StateFile extends TelemetryState {
  version: 1;
}

function checkState(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object') return 'not an object';
  const v = value as Record<string, unknown>;
  if (v.version !== 1) return `unknown version ${String(v.version)}`;
  if (v.alerts !== undefined && (typeof v.alerts !== 'object' || !Array.isArray((v.alerts as { active?: unknown }).active))) return 'alerts.active is not a list';
  return undefined;
}

export class TelemetryServer {
  readonly service: TelemetryService;
  readonly gateway: HubGateway | undefined;
  readonly paths: string[] = [];
  private own: OwnServer | undefined;
  private readonly removers: Array<() => void> = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly saver: SaveScheduler | undefined;
  private readonly logger: Logger;
  private closed = false;
  private listening = false;

  constructor(private readonly options: TelemetryServerOptions) {
    this.logger = options.logger ?? silentLogger;
    const verifier = options.secret ? new TokenVerifier(options.secret, options.clockToleranceS) : undefined;
    const sampler = new SystemSampler(options.diskPath ?? process.cwd(), () => this.gateway?.size ?? 0);
    const file = options.stateFile;
    this.saver = file
      ? new SaveScheduler(
        () => atomicWriteFile(file, `${JSON.stringify({ version: 1, ...this.service.state() } satisfies StateFile)}\n`),
        (err) => this.logger.error(`telemetry: cannot save ${file}: ${err.message}`),
        200,
      )
      : undefined;
    this.service = new TelemetryService({
      ...options,
      verifier,
      sampleSystem: () => sampler.sample(),
      onStateChange: () => this.saver?.schedule(),
      logger: this.logger,
    });
    if (verifier) {
      const g = options.gateway ?? {};
      this.gateway = new HubGateway({
        name: 'telemetry',
        ...TELEMETRY_GATEWAY_DEFAULTS,
        origins: options.origins ?? [],
        logger: this.logger,
        ...g,
        rate: { ...TELEMETRY_GATEWAY_DEFAULTS.rate, ...(g.rate ?? {}) },
        attempts: { ...TELEMETRY_GATEWAY_DEFAULTS.attempts, ...(g.attempts ?? {}) },
        authenticate: (req) => this.service.authenticate(req, requestPath(req.url)),
        handler: {
          opened: (conn) => {
            this.service.opened(conn);
            this.options.onConnections?.(this.gateway?.size ?? 0);
          },
          message: (conn, text) => this.service.message(conn, text),
          limited: (conn) => this.service.limited(conn),
          closed: (conn) => {
            this.service.closed(conn);
            this.options.onConnections?.(this.gateway?.size ?? 0);
          },
        },
      });
    }
  }

  /** Load the saved state, start the alert engine and the timer. */
  init(): void {
    let state: TelemetryState | undefined;
    if (this.options.stateFile) {
      const loaded = loadJsonFile<StateFile>(this.options.stateFile, checkState);
      if (loaded.corrupt) this.logger.warn(`telemetry: ${this.options.stateFile} was unreadable (${loaded.corrupt.reason}); moved to ${loaded.corrupt.movedTo}, starting without saved alerts`);
      state = loaded.data;
    }
    this.service.start(state);
    const tickMs = this.options.tickMs ?? 1000;
    this.timer = setInterval(() => {
      try {
        this.service.tick();
      } catch (err) {
        this.logger.error(`telemetry: timer failed: ${(err as Error).message}`);
      }
    }, tickMs);
    this.timer.unref();
  }

  /** The main path and the per-channel paths, as served. */
  private routes(): Array<[string, Channel | undefined]> {
    const base = (this.options.path ?? '/ws').replace(/\/+$/, '') || '/ws';
    const root = this.options.listen.mode === 'server' ? this.options.listen.root : undefined;
    const main = root !== undefined ? joinPath(root, base) : base;
    return [[main, undefined], ...CHANNELS.map((c): [string, Channel] => [`${main}/${c}`, c])];
  }

  /** Start serving; rejects (with the system error `code`) when the port cannot be had. Can be retried. */
  async listen(): Promise<void> {
    if (!this.gateway) throw Object.assign(new Error('no JWT secret'), { code: 'ENOSECRET' });
    if (this.listening || this.closed) return;
    const routes = this.routes();
    if (this.removers.length === 0) {
      const router = this.options.listen.mode === 'server'
        ? UpgradeRouter.for(this.options.listen.server)
        : (this.own ??= new OwnServer({ bind: this.options.listen.bind, port: this.options.listen.port })).router;
      try {
        for (const [p, channel] of routes) {
          this.removers.push(router.add(p, this.gateway));
          this.service.paths.set(p, channel);
          this.paths.push(p);
        }
      } catch (err) {
        this.unroute();
        throw Object.assign(err as Error, { code: 'EPATHINUSE' });
      }
    }
    if (this.own) await this.own.listen();
    this.listening = true;
  }

  get isListening(): boolean {
    return this.listening;
  }

  /** Port served on (own port mode), 0 otherwise. */
  get port(): number {
    return this.own?.port ?? 0;
  }

  get connections(): number {
    return this.gateway?.size ?? 0;
  }

  private unroute(): void {
    for (const remove of this.removers.splice(0)) remove();
    this.service.paths.clear();
    this.paths.length = 0;
  }

  /** Close every connection (1001), stop serving and the timer, save the state. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    try {
      await this.gateway?.close();
    } finally {
      this.unroute();
      await this.own?.close();
      await this.saver?.flush();
    }
  }

  /** Save now (tests, and before a planned stop). */
  async flush(): Promise<void> {
    await this.saver?.flush();
  }
}

/** `<dir>/telemetry-<node id>.json` */
export function stateFileFor(dir: string, nodeId: string): string {
  return path.join(dir, `telemetry-${nodeId.replace(/[^0-9A-Za-z_-]/g, '_')}.json`);
}

export const LIMITS = {
  maxMessageBytes: MAX_MESSAGE_BYTES,
  maxBatchItems: MAX_BATCH_ITEMS,
  ...TELEMETRY_GATEWAY_DEFAULTS,
};
