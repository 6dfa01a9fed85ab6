/**
 * Logging for the cloud: a small interface the Node-RED config node maps onto `node.log/warn/error`,
 * plus a throttle so a misbehaving or hostile peer cannot flood the Node-RED log.
 */
export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** Longest line we log about one event (peer-controlled text is cut). */
export const MAX_LOG_LINE = 300;

export function bounded(text: string, max = MAX_LOG_LINE): string {
  const oneLine = text.replace(/[\r\n\t]+/g, ' ');
  return oneLine.length > max ? `${oneLine.slice(0, max)}…` : oneLine;
}

/**
 * Logs a given key at most once per window and counts what it suppressed, so a flood
 * of the same complaint becomes one line a minute with a count.
 */
export class ThrottledLog {
  private readonly seen = new Map<string, { until: number; suppressed: number }>();

  constructor(private readonly logger: Logger, private readonly windowMs = 60_000, private readonly maxKeys = 1000) {}

  warn(key: string, msg: string, now = Date.now()): void {
    const entry = this.seen.get(key);
    if (entry && entry.until > now) {
      entry.suppressed++;
      return;
    }
    const suffix = entry && entry.suppressed > 0 ? ` (${entry.suppressed} similar suppressed)` : '';
    if (this.seen.size >= this.maxKeys) this.prune(now);
    this.seen.set(key, { until: now + this.windowMs, suppressed: 0 });
    this.logger.warn(bounded(msg) + suffix);
  }

  private prune(now: number): void {
    for (const [key, entry] of this.seen) if (entry.until <= now) this.seen.delete(key);
    if (this.seen.size >= this.maxKeys) this.seen.clear();
  }
}
