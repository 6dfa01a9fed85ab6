/**
 * One small HTTP client for the pairing tool: one request, one fresh connection, a deadline
 * for the whole exchange, and failures sorted into what a user can act on:
 *
 * - `unreachable`: no TCP connection (refused, no route, DNS failure, or the connect itself timed out)
 * - `timeout`:     connected, but no complete answer before the deadline
 * - `closed`:      connected, and the peer closed/reset the connection without an answer
 *
 * node:http rather than fetch: fetch cannot tell a connect timeout from a slow answer, and
 * cannot skip certificate checks for a Node-RED behind a self-signed certificate.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import * as zlib from 'node:zlib';

export type HttpFailureKind = 'unreachable' | 'timeout' | 'closed';

export class HttpFailure extends Error {
  constructor(
    message: string,
    readonly kind: HttpFailureKind,
    /** errno-style code when there was one (ECONNREFUSED, EHOSTUNREACH, ...). */
    readonly errno?: string,
  ) {
    super(message);
    this.name = 'HttpFailure';
  }
}

export interface HttpRequest {
  method: 'GET' | 'POST';
  url: URL;
  headers?: Record<string, string | number>;
  body?: string;
  timeoutMs: number;
  /** https only; default true. */
  rejectUnauthorized?: boolean;
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

/** errno codes meaning "could not open a connection at all". */
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EADDRNOTAVAIL',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
]);

const DESCRIBE: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  EHOSTUNREACH: 'no route to host',
  ENETUNREACH: 'network unreachable',
  EHOSTDOWN: 'host is down',
  ENETDOWN: 'network is down',
  EADDRNOTAVAIL: 'address not available',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed',
  ETIMEDOUT: 'connection timed out',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed',
};

export function httpRequest(req: HttpRequest): Promise<HttpResponse> {
  const { url } = req;
  const transport = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : undefined;
  if (!transport) return Promise.reject(new TypeError(`unsupported protocol ${url.protocol}`));
  const headers: Record<string, string | number> = { ...req.headers };
  if (req.body !== undefined) headers['Content-Length'] = Buffer.byteLength(req.body);

  return new Promise<HttpResponse>((resolve, reject) => {
    let connected = false;
    let settled = false;
    const finish = (err: Error | undefined, res?: HttpResponse): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // One exchange per connection; never leave a socket open (the app sends Keep-Alive).
      request.destroy();
      if (err) reject(err);
      else resolve(res!);
    };
    const request = transport.request(url, {
      method: req.method,
      headers,
      agent: false,
      rejectUnauthorized: req.rejectUnauthorized ?? true,
    });
    const timer = setTimeout(() => {
      const s = Math.round(req.timeoutMs / 100) / 10;
      finish(
        connected
          ? new HttpFailure(`no answer within ${s} s`, 'timeout')
          : new HttpFailure(`connection timed out after ${s} s`, 'unreachable', 'ETIMEDOUT'),
      );
    }, req.timeoutMs);
    request.on('socket', (socket) => {
      if (!socket.connecting) connected = true;
      else socket.once('connect', () => (connected = true));
    });
    request.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code;
      if (code && UNREACHABLE.has(code) && !connected) {
        finish(new HttpFailure(DESCRIBE[code] ?? code, 'unreachable', code));
      } else if (connected || code === 'ECONNRESET' || code === 'EPIPE') {
        const what = code && DESCRIBE[code] ? DESCRIBE[code] : 'connection closed';
        finish(new HttpFailure(`${what} without an answer`, 'closed', code));
      } else {
        finish(new HttpFailure(err.message, 'unreachable', code));
      }
    });
    request.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => finish(new HttpFailure(`answer cut off (${err.message})`, 'closed')));
      res.on('close', () => {
        if (!res.complete) finish(new HttpFailure('answer cut off', 'closed'));
      });
      res.on('end', () => {
        let buf = Buffer.concat(chunks);
        const enc = String(res.headers['content-encoding'] ?? '').toLowerCase();
        try {
          if (enc === 'gzip') buf = zlib.gunzipSync(buf);
          else if (enc === 'deflate') buf = zlib.inflateSync(buf);
        } catch {
          // Leave the bytes as they are; the caller reports them as not JSON.
        }
        finish(undefined, { status: res.statusCode ?? 0, headers: res.headers, text: buf.toString('utf8') });
      });
    });
    request.end(req.body);
  });
}
