/** A token bucket with no timer: tokens are refilled lazily from the clock on each take. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(private readonly burst: number, private readonly perSecond: number, now = Date.now()) {
    this.tokens = burst;
    this.last = now;
  }

  /** Take one token; false when the bucket is empty (the caller is flooding). */
  take(now = Date.now()): boolean {
    const elapsed = now - this.last;
    if (elapsed > 0) {
      this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.perSecond) / 1000);
      this.last = now;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
