/**
 * Serving gateways: on an HTTP server we own (a port of its own), or on a shared one such as
 * Node-RED's `RED.server`. One `'upgrade'` listener per HTTP server routes by exact path to the
 * registered gateways; on a shared server, upgrades for other paths are left untouched for the
 * server's other listeners (Node-RED's editor comms, websocket nodes, ...).
 */
import { answerBadRequest } from '../../cloud/bad-request';
import * as http from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import type { HubGateway } from './gateway';
import { writeRefusal } from './gateway';

type AnyServer = http.Server | HttpsServer;

/** The path of a request URL without its query string. */
export function requestPath(url: string | undefined): string {
  const text = url ?? '/';
  const q = text.indexOf('?');
  return q < 0 ? text : text.slice(0, q);
}

/** Join an HTTP root (`/`, `/red/`, `red`) and a path (`/ws`) into `/red/ws`. */
export function joinPath(root: string | undefined, p: string): string {
  const r = `/${String(root ?? '').replace(/^\/+|\/+$/g, '')}`;
  const tail = `/${p.replace(/^\/+/, '')}`;
  return r === '/' ? tail : `${r}${tail}`;
}

const routers = new WeakMap<AnyServer, UpgradeRouter>();

export class UpgradeRouter {
  private readonly routes = new Map<string, HubGateway>();
  private attached = false;
  private readonly listener = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head);

  /**
   * @param exclusive the server is ours: answer unmatched upgrade paths with 404. On a shared
   *   server (false) they are left alone for other listeners.
   */
  private constructor(private readonly server: AnyServer, private readonly exclusive: boolean) {}

  /** The router of a server (one per server, made on first use). */
  static for(server: AnyServer, exclusive = false): UpgradeRouter {
    let router = routers.get(server);
    if (!router) {
      router = new UpgradeRouter(server, exclusive);
      routers.set(server, router);
    }
    return router;
  }

  /** Route `path` to a gateway; throws if the path is taken. Returns the function that removes it. */
  add(path: string, gateway: HubGateway): () => void {
    if (this.routes.has(path)) throw new Error(`the WebSocket path ${path} is already used by another hub node`);
    this.routes.set(path, gateway);
    if (!this.attached) {
      this.server.on('upgrade', this.listener);
      this.attached = true;
    }
    return () => {
      if (this.routes.get(path) !== gateway) return;
      this.routes.delete(path);
      if (this.routes.size === 0 && this.attached) {
        this.server.off('upgrade', this.listener);
        this.attached = false;
        routers.delete(this.server);
      }
    };
  }

  has(path: string): boolean {
    return this.routes.has(path);
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const gateway = this.routes.get(requestPath(req.url));
    if (gateway) {
      gateway.handleUpgrade(req, socket, head);
      return;
    }
    if (this.exclusive) {
      socket.on('error', () => socket.destroy());
      writeRefusal(socket, { status: 404, reason: 'not found' });
    }
    // Shared server: not ours. Do not touch the socket; other 'upgrade' listeners may want it.
  }
}

export interface OwnServerOptions {
  bind: string;
  port: number;
  /** Answer for plain HTTP requests (not upgrades). */
  describe?: string;
}

/** A plain HTTP server of our own for gateways: every non-upgrade request gets 426 or 404. */
export class OwnServer {
  readonly server: http.Server;
  readonly router: UpgradeRouter;

  constructor(private readonly options: OwnServerOptions) {
    this.server = http.createServer((req, res) => {
      req.resume();
      const known = this.router.has(requestPath(req.url));
      const body = JSON.stringify({ error: known ? 'this is a WebSocket endpoint: connect with a WebSocket client' : 'not found' });
      res.writeHead(known ? 426 : 404, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), Connection: 'close', ...(known ? { Upgrade: 'websocket' } : {}) });
      res.end(body);
    });
    this.server.headersTimeout = 10_000;
    this.server.requestTimeout = 15_000;
    this.server.keepAliveTimeout = 5_000;
    this.server.maxHeadersCount = 64;
    this.server.on('clientError', (_err: Error, socket: Duplex) => answerBadRequest(socket));
    this.router = UpgradeRouter.for(this.server, true);
  }

  get port(): number {
    const addr = this.server.address();
    return addr && typeof addr === 'object' ? addr.port : 0;
  }

  /** Listen; rejects with an Error whose `code` is the system error (EADDRINUSE, EACCES, ...). */
  listen(): Promise<void> {
    const { bind, port } = this.options;
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        this.server.off('listening', onListening);
        reject(err);
      };
      const onListening = () => {
        this.server.off('error', onError);
        this.server.on('error', () => {});
        resolve();
      };
      this.server.once('error', onError);
      this.server.once('listening', onListening);
      this.server.listen({ host: bind, port });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) {
        resolve();
        return;
      }
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
      setTimeout(() => this.server.closeAllConnections(), 200).unref();
    });
  }
}
