/**
 * Limits of the session layer, all without timers of their own: a per-connection message rate
 * gate (token bucket plus "over the limit for too long"), and per-IP connection-attempt and
 * failed-auth counters (fixed one-minute windows, pruned by the gateway's sweep).
 */

export interface RateOptions {
  /** Bucket size: messages accepted in a burst. Default 100. */
  burst: number;
  /** Refill per second. Default 100. */
  perSecond: number;
  /** Close the connection after being over the limit continuously for this long, ms. Default 3000. */
  closeAfterMs: number;
}

export const DEFAULT_RATE: RateOptions = { burst: 100, perSecond: 100, closeAfterMs: 3000 };

export type RateVerdict = 'ok' | 'limited' | 'close';

/** Token bucket refilled lazily from the clock, plus sustained-flood detection. */
export class RateGate {
  private tokens: number;
  private last: number;
  private limitedSince = 0;
  private lastLimited = 0;
  /** Messages dropped so far. */
  dropped = 0;

  constructor(private readonly options: RateOptions, now = Date.now()) {
    this.tokens = options.burst;
    this.last = now;
  }

  take(now = Date.now()): RateVerdict {
    const elapsed = now - this.last;
    if (elapsed > 0) {
      this.tokens = Math.min(this.options.burst, this.tokens + (elapsed * this.options.perSecond) / 1000);
      this.last = now;
    }
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 'ok';
    }
    this.dropped++;
    // A gap of more than a second without limited messages starts a new episode.
    if (this.limitedSince === 0 || now - this.lastLimited > 1000) this.limitedSince = now;
    this.lastLimited = now;
    return now - this.limitedSince >= this.options.closeAfterMs ? 'close' : 'limited';
  }
}

export interface AttemptOptions {
  /** Connection attempts per IP per minute (successful or not). Default 10. */
  attemptsPerMinute: number;
  /** Failed authentications per IP per minute before the IP is blocked. Default 5. */
  failuresPerMinute: number;
  /** How long a blocked IP is refused, ms. Default 60 000. */
  blockMs: number;
}

export const DEFAULT_ATTEMPTS: AttemptOptions = { attemptsPerMinute: 10, failuresPerMinute: 5, blockMs: 60_000 };

interface IpWindow {
  windowStart: number;
  attempts: number;
  failures: number;
  blockedUntil: number;
}

const WINDOW_MS = 60_000;
const MAX_TRACKED_IPS = 10_000;

/** Per-IP attempt accounting. `check` counts an attempt and says whether it may proceed. */
export class AttemptLimiter {
  private readonly ips = new Map<string, IpWindow>();

  constructor(private readonly options: AttemptOptions) {}

  private entry(ip: string, now: number): IpWindow {
    let e = this.ips.get(ip);
    if (!e) {
      if (this.ips.size >= MAX_TRACKED_IPS) this.prune(now, true);
      e = { windowStart: now, attempts: 0, failures: 0, blockedUntil: 0 };
      this.ips.set(ip, e);
    } else if (now - e.windowStart >= WINDOW_MS) {
      e.windowStart = now;
      e.attempts = 0;
      e.failures = 0;
    }
    return e;
  }

  /** Count one attempt; returns the seconds to wait when refused, 0 when it may proceed. */
  check(ip: string, now = Date.now()): number {
    const e = this.entry(ip, now);
    if (e.blockedUntil > now) return Math.ceil((e.blockedUntil - now) / 1000);
    e.attempts++;
    if (this.options.attemptsPerMinute > 0 && e.attempts > this.options.attemptsPerMinute) {
      return Math.max(1, Math.ceil((e.windowStart + WINDOW_MS - now) / 1000));
    }
    return 0;
  }

  /** Count a failed authentication; enough of them block the IP. */
  fail(ip: string, now = Date.now()): void {
    const e = this.entry(ip, now);
    e.failures++;
    if (this.options.failuresPerMinute > 0 && e.failures >= this.options.failuresPerMinute) e.blockedUntil = now + this.options.blockMs;
  }

  /** Forget windows that ended (all of them when `hard` and still too many). */
  prune(now = Date.now(), hard = false): void {
    for (const [ip, e] of this.ips) {
      if (now - e.windowStart >= WINDOW_MS && e.blockedUntil <= now) this.ips.delete(ip);
    }
    if (hard && this.ips.size >= MAX_TRACKED_IPS) this.ips.clear();
  }

  get size(): number {
    return this.ips.size;
  }
}
