/**
 * The firmware download server. Devices fetch OTA images over plain HTTP (no TLS), so each
 * update gets its own unguessable URL (`/ota/rom/<token>/<name>`) that only the targeted device
 * knows; anything else is 404 with no hint. Supports `Content-Length`, `Accept-Ranges` and single
 * byte ranges, and a throttled mode for devices that fail a fast download (SonOTA's "slow
 * stream" fallback).
 */
import { answerBadRequest } from '../bad-request';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { ImageInfo } from './store';

export interface Grant {
  token: string;
  deviceid: string;
  images: ImageInfo[];
  /** Bytes per second; 0 = as fast as possible. */
  throttle: number;
  expiresAt: number;
}

export interface DownloadEvent {
  deviceid: string;
  token: string;
  name: string;
  /** Bytes sent so far. */
  bytes: number;
  /** Bytes this response carries (the range, or the whole image). */
  size: number;
  /** First byte of this response within the image. */
  start: number;
  /** Size of the whole image. */
  total: number;
  /** This response reaches the last byte of the image (a whole-file GET, or the final range). */
  toEnd: boolean;
  remote: string;
}

/** Parse a `Range: bytes=a-b` header against a size; undefined = whole file, null = unsatisfiable. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | undefined | null {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return null;
    start = Math.max(size - suffix, 0);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start > end || start >= size) return null;
  return { start, end };
}

/**
 * Events: `download-start`, `download-complete`, `download-aborted` (DownloadEvent).
 */
export class FirmwareServer extends EventEmitter {
  private readonly grants = new Map<string, Grant>();
  private server: http.Server | undefined;
  private boundPort = 0;

  constructor(private readonly bind: string, private readonly port: number) {
    super();
  }

  get listeningPort(): number {
    return this.boundPort;
  }

  start(): Promise<void> {
    const server = http.createServer((req, res) => this.onRequest(req, res));
    server.headersTimeout = 10_000;
    server.requestTimeout = 0; // a throttled download legitimately takes long
    server.on('clientError', (_err, socket) => answerBadRequest(socket));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        reject(Object.assign(new Error(err.code === 'EADDRINUSE' ? `firmware port ${this.port} is already in use` : `firmware server: ${err.message}`), { code: err.code }));
      });
      server.listen({ host: this.bind, port: this.port }, () => {
        this.boundPort = (server.address() as { port: number }).port;
        server.on('error', () => undefined);
        resolve();
      });
    });
  }

  /** A new download URL path for one device's update. */
  grant(deviceid: string, images: ImageInfo[], options: { throttle?: number; ttlMs?: number } = {}): Grant {
    const now = Date.now();
    for (const [t, g] of this.grants) if (g.expiresAt < now) this.grants.delete(t);
    const token = randomBytes(24).toString('base64url');
    const grant: Grant = { token, deviceid, images, throttle: options.throttle ?? 0, expiresAt: Date.now() + (options.ttlMs ?? 30 * 60_000) };
    this.grants.set(token, grant);
    return grant;
  }

  revoke(token: string): void {
    this.grants.delete(token);
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    req.resume();
    const m = /^\/ota\/rom\/([A-Za-z0-9_-]{16,64})\/([A-Za-z0-9._-]{1,64})$/.exec((req.url ?? '').split('?')[0]);
    const grant = m ? this.grants.get(m[1]) : undefined;
    const image = grant?.images.find((i) => i.name === m?.[2]);
    if (!grant || !image || grant.expiresAt < Date.now() || (req.method !== 'GET' && req.method !== 'HEAD')) {
      // No hint whether the token, the name or the method was wrong.
      res.writeHead(404, { 'Content-Length': 0, Connection: 'close' });
      res.end();
      return;
    }
    let size: number;
    try {
      size = fs.statSync(image.file).size;
    } catch {
      res.writeHead(404, { 'Content-Length': 0 });
      res.end();
      return;
    }
    const range = parseRange(req.headers.range, size);
    if (range === null) {
      res.writeHead(416, { 'Content-Range': `bytes */${size}`, 'Content-Length': 0 });
      res.end();
      return;
    }
    const start = range?.start ?? 0;
    const end = range?.end ?? size - 1;
    const headers: http.OutgoingHttpHeaders = {
      'Content-Type': 'application/octet-stream',
      'Content-Length': end - start + 1,
      'Accept-Ranges': 'bytes',
      'Cache-Control': 'no-store',
    };
    if (range) headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
    res.writeHead(range ? 206 : 200, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const ev: DownloadEvent = {
      deviceid: grant.deviceid,
      token: grant.token,
      name: image.name,
      bytes: 0,
      size: end - start + 1,
      start,
      total: size,
      toEnd: end === size - 1,
      remote: req.socket.remoteAddress ?? '?',
    };
    this.emit('download-start', ev);
    const throttle = grant.throttle;
    const stream = fs.createReadStream(image.file, { start, end, highWaterMark: throttle > 0 ? Math.max(512, Math.floor(throttle / 10)) : 64 * 1024 });
    let finished = false;
    if (throttle > 0) {
      // Written by hand, not piped: pipe() resumes the source on 'drain', which would undo the pacing.
      stream.on('data', (chunk: Buffer | string) => {
        ev.bytes += chunk.length;
        stream.pause();
        let paced = false;
        let drained = res.write(chunk);
        const next = () => {
          if (paced && drained && !res.destroyed) stream.resume();
        };
        setTimeout(() => {
          paced = true;
          next();
        }, Math.ceil((chunk.length / throttle) * 1000));
        if (!drained) {
          res.once('drain', () => {
            drained = true;
            next();
          });
        }
      });
      stream.on('end', () => res.end());
    } else {
      stream.on('data', (chunk: Buffer | string) => {
        ev.bytes += chunk.length;
      });
      stream.pipe(res);
    }
    res.on('finish', () => {
      finished = true;
      this.emit('download-complete', ev);
    });
    res.on('close', () => {
      if (!finished) {
        stream.destroy();
        this.emit('download-aborted', ev);
      }
    });
    stream.on('error', () => res.destroy());
  }

  close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.grants.clear();
    if (!server) return Promise.resolve();
    return new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }
}
