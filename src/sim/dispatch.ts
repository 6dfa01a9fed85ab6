/**
 * Step 1 of the device handshake (protocol §3.2): `POST /dispatch/device`, which tells the
 * device which IP/port to open its WebSocket to.
 *
 * Uses node:http(s) rather than fetch because the simulator must talk to servers with
 * self-signed certificates (`rejectUnauthorized: false`) and fetch has no per-request switch.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { isPlainObject } from './state';

/** Body sent by the device, in the seed's key order. */
export interface DispatchBody {
  accept: 'ws;2';
  version: 2;
  ts: number;
  deviceid: string;
  apikey: string;
  model: string;
  romVersion: string;
}

/** Where the dispatch reply says to connect. */
export interface DispatchTarget {
  IP: string;
  port: number;
}

export interface DispatchOptions {
  rejectUnauthorized: boolean;
  timeoutMs: number;
  signal?: AbortSignal;
}

/** Raised for anything but a well-formed `{"error":0,"IP","port"}` reply. */
export class DispatchError extends Error {
  constructor(
    message: string,
    /** HTTP status, when a response arrived. */
    readonly status?: number,
    /** The `error` field of the reply, when it was a non-zero CoolKit error code. */
    readonly code?: number,
  ) {
    super(message);
    this.name = 'DispatchError';
  }
}

/** `${server}/dispatch/device`, tolerating a trailing slash on `server`. */
export function dispatchUrl(server: string): URL {
  return new URL(`${server.replace(/\/+$/, '')}/dispatch/device`);
}

export function postDispatch(server: string, body: DispatchBody, opts: DispatchOptions): Promise<DispatchTarget> {
  const url = dispatchUrl(server);
  const payload = JSON.stringify(body);
  const transport = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : undefined;
  if (!transport) return Promise.reject(new DispatchError(`unsupported server protocol ${url.protocol}`));

  return new Promise<DispatchTarget>((resolve, reject) => {
    const req = transport.request(
      url,
      {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) },
        rejectUnauthorized: opts.rejectUnauthorized,
        timeout: opts.timeoutMs,
        signal: opts.signal,
        // A fresh connection per dispatch, as a rebooting device would make; also means no
        // pooled keep-alive socket outlives stop().
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          try {
            resolve(parseDispatchReply(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8')));
          } catch (err) {
            reject(err);
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new DispatchError(`dispatch timed out after ${opts.timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** Validate the reply strictly: a simulator exists to notice servers that get this wrong. */
export function parseDispatchReply(status: number, text: string): DispatchTarget {
  if (status !== 200) throw new DispatchError(`dispatch HTTP ${status}: ${text.slice(0, 200)}`, status);
  let reply: unknown;
  try {
    reply = JSON.parse(text);
  } catch {
    throw new DispatchError(`dispatch reply is not JSON: ${text.slice(0, 200)}`, status);
  }
  if (!isPlainObject(reply)) throw new DispatchError('dispatch reply is not an object', status);
  if (reply.error !== 0) {
    const code = typeof reply.error === 'number' ? reply.error : undefined;
    throw new DispatchError(`dispatch error ${String(reply.error)}: ${String(reply.reason)}`, status, code);
  }
  const { IP, port } = reply;
  if (typeof IP !== 'string' || IP === '') throw new DispatchError('dispatch reply has no IP', status);
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new DispatchError(`dispatch reply has a bad port: ${JSON.stringify(port)}`, status);
  }
  return { IP, port };
}
