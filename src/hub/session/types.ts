/**
 * Types of the hub session layer: who a connection belongs to, how a connection request is
 * authenticated (pluggable: token, JWT, ...), and what a dialect (Zhiting, telemetry, ...) gets
 * told about its connections.
 */
import type { IncomingMessage } from 'node:http';
import type { HubConnection } from './connection';

/** Who is on the other end, as the authenticator decided. `id` groups connections for per-user limits. */
export interface Identity {
  id: string;
  /** Anything the dialect needs later (scopes, token expiry, ...). */
  [extra: string]: unknown;
}

/** An HTTP refusal written instead of the upgrade. */
export interface Refusal {
  status: number;
  /** Short reason for the log (never a token). */
  reason: string;
  /** JSON body; default `{"error": reason}`. */
  body?: unknown;
  headers?: Record<string, string>;
}

export type AuthResult = { ok: true; identity: Identity } | ({ ok: false } & Refusal);

/**
 * Decides a connection request before the upgrade: an identity, or a refusal. May be async
 * (e.g. JWT verification); the upgrade waits for it.
 */
export type Authenticator = (req: IncomingMessage) => AuthResult | Promise<AuthResult>;

/** What a dialect implements; the session layer calls it for each connection. */
export interface ConnectionHandler {
  /** A connection passed every check and is open. */
  opened?(conn: HubConnection): void;
  /** One text frame (already rate-limited, size-limited, UTF-8). */
  message(conn: HubConnection, text: string): void;
  /** A text frame dropped by the rate limit: answer it in the dialect's error form, if at all. */
  limited?(conn: HubConnection, text: string): void;
  closed?(conn: HubConnection, code: number, reason: string): void;
}
