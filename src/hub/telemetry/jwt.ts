/**
 * HS256 JSON Web Tokens for the telemetry API, with `jose`: only HS256 is accepted (never
 * `none`, never another algorithm), `exp` is required, the clock tolerance is small, and the
 * secret must have at least 256 bits (RFC 7518 §3.2).
 */
import { errors, jwtVerify, SignJWT } from 'jose';

/** Seconds a token's `exp`/`nbf` may be off (clock skew between the issuer and this host). */
export const CLOCK_TOLERANCE_S = 5;
/** The shortest secret accepted, in bytes. */
export const MIN_SECRET_BYTES = 32;
/** Default lifetime of the tokens this node issues (Valtronics: 30 minutes). */
export const DEFAULT_TTL_S = 30 * 60;
/** Longest `sub` kept as a user name. */
const MAX_SUB = 128;

export type TokenFailure = 'invalid_token' | 'token_expired';

export interface VerifiedToken {
  ok: true;
  /** The user: the token's `sub`, or `token` when it has none. */
  user: string;
  /** Expiry, ms epoch. */
  expiresAt: number;
}

export type TokenResult = VerifiedToken | { ok: false; error: TokenFailure; message: string };

export function secretProblem(secret: string | undefined): string | undefined {
  if (!secret) return 'no JWT secret is set';
  if (Buffer.byteLength(secret, 'utf8') < MIN_SECRET_BYTES) return `the JWT secret must be at least ${MIN_SECRET_BYTES} bytes long`;
  return undefined;
}

export class TokenVerifier {
  private readonly key: Uint8Array;
  private readonly toleranceS: number;

  /** `toleranceS` is bounded to 0..30 s: an unbounded tolerance would let expired tokens in. */
  constructor(secret: string, toleranceS = CLOCK_TOLERANCE_S) {
    const problem = secretProblem(secret);
    if (problem) throw new Error(problem);
    this.toleranceS = Math.max(0, Math.min(30, Number.isFinite(toleranceS) ? toleranceS : CLOCK_TOLERANCE_S));
    this.key = new Uint8Array(Buffer.from(secret, 'utf8'));
  }

  /** Verify a compact JWS; never throws. */
  async verify(token: string, now = Date.now()): Promise<TokenResult> {
    if (typeof token !== 'string' || token.length === 0 || token.length > 4096) return { ok: false, error: 'invalid_token', message: 'no token' };
    try {
      const { payload } = await jwtVerify(token, this.key, {
        algorithms: ['HS256'],
        requiredClaims: ['exp'],
        clockTolerance: this.toleranceS,
        currentDate: new Date(now),
      });
      const sub = typeof payload.sub === 'string' && payload.sub !== '' ? payload.sub.slice(0, MAX_SUB) : 'token';
      return { ok: true, user: sub, expiresAt: (payload.exp as number) * 1000 };
    } catch (err) {
      if (err instanceof errors.JWTExpired) return { ok: false, error: 'token_expired', message: 'the token has expired' };
      if (err instanceof errors.JWTClaimValidationFailed) return { ok: false, error: 'invalid_token', message: `the token is not valid: ${err.message}` };
      if (err instanceof errors.JOSEAlgNotAllowed) return { ok: false, error: 'invalid_token', message: 'the token must be signed with HS256' };
      if (err instanceof errors.JWSSignatureVerificationFailed) return { ok: false, error: 'invalid_token', message: 'the token signature does not match' };
      return { ok: false, error: 'invalid_token', message: 'the token is not a valid JWT' };
    }
  }

  /** The moment after which a token that expires at `expiresAt` is refused. */
  deadline(expiresAt: number): number {
    return expiresAt + this.toleranceS * 1000;
  }
}

/** Issue an HS256 token (for the editor's "new token" button, flows and tests). */
export async function signToken(secret: string, options: { sub?: string; ttlSeconds?: number; now?: number } = {}): Promise<{ token: string; expiresAt: number }> {
  const problem = secretProblem(secret);
  if (problem) throw new Error(problem);
  const now = Math.floor((options.now ?? Date.now()) / 1000);
  const ttl = Math.max(1, Math.min(Math.floor(options.ttlSeconds ?? DEFAULT_TTL_S), 366 * 24 * 3600));
  const jwt = new SignJWT({}).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuedAt(now).setExpirationTime(now + ttl);
  if (options.sub) jwt.setSubject(options.sub.slice(0, MAX_SUB));
  const token = await jwt.sign(new Uint8Array(Buffer.from(secret, 'utf8')));
  return { token, expiresAt: (now + ttl) * 1000 };
}
