/**
 * Coalescing of per-outlet commands. Multi-channel firmware applies only the last of several
 * quick `switches` messages (users lost channel commands this way with other servers), so
 * commands to outlets of the same device within a short window are merged into one message,
 * entries merged by outlet (the latest wins), and every caller gets the one ack.
 */
import { mergeOutletArray, OUTLET_ARRAYS } from '../protocol/state';
import type { Params } from '../protocol/types';
import type { CommandResult } from './device-session';

interface Batch {
  params: Params;
  waiters: Array<{ resolve(r: CommandResult): void; reject(e: Error): void }>;
  timer: NodeJS.Timeout;
}

/** True when params only hold per-outlet arrays (`switches`, `configure`, `pulses`). */
export function isOutletOnly(params: Params): boolean {
  const keys = Object.keys(params);
  return keys.length > 0 && keys.every((k) => OUTLET_ARRAYS.has(k) && Array.isArray(params[k]));
}

export class OutletCoalescer {
  private readonly batches = new Map<string, Batch>();

  constructor(
    private readonly send: (deviceid: string, params: Params) => Promise<CommandResult>,
    private readonly windowMs = 100,
  ) {}

  /** Queue outlet params for a device; resolves with the ack of the merged message. */
  add(deviceid: string, params: Params): Promise<CommandResult> {
    return new Promise((resolve, reject) => {
      let batch = this.batches.get(deviceid);
      if (!batch) {
        const timer = setTimeout(() => this.flush(deviceid), this.windowMs);
        batch = { params: {}, waiters: [], timer };
        this.batches.set(deviceid, batch);
      }
      for (const key of Object.keys(params)) {
        batch.params[key] = mergeOutletArray(batch.params[key] ?? [], params[key] as unknown[]);
      }
      batch.waiters.push({ resolve, reject });
    });
  }

  private flush(deviceid: string): void {
    const batch = this.batches.get(deviceid);
    if (!batch) return;
    this.batches.delete(deviceid);
    this.send(deviceid, batch.params).then(
      (result) => batch.waiters.forEach((w) => w.resolve(result)),
      (err: Error) => batch.waiters.forEach((w) => w.reject(err)),
    );
  }

  /** Fail every waiting command (server closing). */
  cancelAll(err: Error): void {
    for (const [deviceid, batch] of this.batches) {
      clearTimeout(batch.timer);
      this.batches.delete(deviceid);
      batch.waiters.forEach((w) => w.reject(err));
    }
  }
}
