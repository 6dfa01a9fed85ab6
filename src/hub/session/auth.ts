/**
 * Building blocks for the checks made before an upgrade: a shared-token authenticator (header,
 * optionally `?token=`), the Origin allow-list, and log redaction of query tokens.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { AuthResult, Authenticator } from './types';

/** Compare secrets in constant time (hashes have equal length whatever the input). */
export function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

export interface TokenAuthOptions {
  /** The token clients must present. Empty: every request is refused. */
  token: string;
  /** Header carrying the token, lower case. Default `smart-assistant-token` (Zhiting). */
  header?: string;
  /** Also accept `?<queryParam>=` (browsers cannot set headers on a WebSocket). Default false. */
  allowQuery?: boolean;
  queryParam?: string;
  /** Identity id given to clients with the right token. Default `token`. */
  identity?: string;
  /** Body of the 401 answer. Default `{"error":"invalid token"}`. */
  refusalBody?: unknown;
}

/** The token of a request: the header first, then (only if allowed) the query parameter. */
export function presentedToken(req: IncomingMessage, header: string, allowQuery: boolean, queryParam = 'token'): string | undefined {
  const value = req.headers[header];
  if (typeof value === 'string' && value !== '') return value;
  if (Array.isArray(value) && value.length > 0) return value[0];
  if (!allowQuery) return undefined;
  const url = req.url ?? '';
  const q = url.indexOf('?');
  if (q < 0) return undefined;
  const found = new URLSearchParams(url.slice(q + 1)).get(queryParam);
  return found === null || found === '' ? undefined : found;
}

/** A shared-secret authenticator: the right token gives the identity `{id}`, anything else 401. */
export function tokenAuthenticator(options: TokenAuthOptions): Authenticator {
  const header = (options.header ?? 'smart-assistant-token').toLowerCase();
  const id = options.identity ?? 'token';
  const body = options.refusalBody ?? { error: 'invalid token' };
  return (req): AuthResult => {
    if (!options.token) return { ok: false, status: 401, reason: 'no token is configured on this server', body };
    const given = presentedToken(req, header, options.allowQuery === true, options.queryParam);
    if (given === undefined) return { ok: false, status: 401, reason: 'no token presented', body };
    if (!sameSecret(given, options.token)) return { ok: false, status: 401, reason: 'wrong token', body };
    return { ok: true, identity: { id } };
  };
}

/** `https://Example.com:443/` → `https://example.com`; undefined for anything that is not an http(s) origin. */
export function normaliseOrigin(value: string): string | undefined {
  const text = value.trim();
  if (text === '' || text === 'null') return undefined;
  try {
    const url = new URL(text);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
    return url.origin;
  } catch {
    return undefined;
  }
}

/** Parse a comma-separated allow-list; returns the origins and the entries that are not origins. */
export function parseOrigins(list: string | string[] | undefined): { origins: string[]; invalid: string[] } {
  const items = Array.isArray(list) ? list : String(list ?? '').split(',');
  const origins: string[] = [];
  const invalid: string[] = [];
  for (const raw of items) {
    const item = raw.trim();
    if (item === '') continue;
    const o = normaliseOrigin(item);
    if (o && !origins.includes(o)) origins.push(o);
    else if (!o) invalid.push(item);
  }
  return { origins, invalid };
}

/**
 * The Origin rule: a request without an Origin header (not a browser) passes; a browser's Origin
 * must match an allow-list entry exactly (scheme, host and port). No wildcards.
 */
export function originAllowed(origin: string | undefined, allowed: readonly string[]): boolean {
  if (origin === undefined) return true;
  const o = normaliseOrigin(origin);
  return o !== undefined && allowed.includes(o);
}

/** A request URL for the log: query values of token-like parameters replaced by `***`. */
export function redactUrl(url: string | undefined): string {
  const text = url ?? '';
  return text.replace(/([?&](?:token|access_token|auth|key|jwt)=)[^&#]*/gi, '$1***');
}
