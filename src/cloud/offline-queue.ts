/**
 * Commands for devices that are offline, kept until the device is back: one merged desired
 * state per device (the latest value per param wins, per-outlet arrays merged by outlet), a
 * bounded number of waiting callers, and an expiry checked by the cloud's existing sweep (no
 * timer per device). When the device re-registers, the merged params are sent once and every
 * caller gets that one result.
 */
import { CoolkitError, ErrorCode } from '../protocol/errors';
import { mergeParams } from '../protocol/state';
import type { Params } from '../protocol/types';
import type { CommandResult } from './device-session';

interface Waiter {
  resolve(r: CommandResult): void;
  reject(e: Error): void;
  expiresAt: number;
}

interface Entry {
  params: Params;
  waiters: Waiter[];
}

export class OfflineQueue {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly maxWaitersPerDevice = 100) {}

  get size(): number {
    return this.entries.size;
  }

  /** Queue params for an offline device until it is back or `expiresAt` passes. */
  add(deviceid: string, params: Params, expiresAt: number): Promise<CommandResult> {
    let entry = this.entries.get(deviceid);
    if (!entry) {
      entry = { params: {}, waiters: [] };
      this.entries.set(deviceid, entry);
    }
    if (entry.waiters.length >= this.maxWaitersPerDevice) {
      return Promise.reject(new CoolkitError(ErrorCode.TOO_MANY_REQUESTS, `too many commands queued for offline device ${deviceid} (limit ${this.maxWaitersPerDevice})`, deviceid));
    }
    mergeParams(entry.params, structuredClone(params));
    const e = entry;
    return new Promise((resolve, reject) => {
      e.waiters.push({ resolve, reject, expiresAt });
    });
  }

  /** Take the merged params of a device that came back (undefined when nothing is queued). */
  take(deviceid: string): { params: Params; settle(result: CommandResult | Error): void } | undefined {
    const entry = this.entries.get(deviceid);
    if (!entry) return undefined;
    this.entries.delete(deviceid);
    return {
      params: entry.params,
      settle(result) {
        for (const w of entry.waiters) {
          if (result instanceof Error) w.reject(result);
          else w.resolve(result);
        }
      },
    };
  }

  /** Reject waiters whose time is up; drop a device's desired state when nobody waits for it. */
  expire(now: number): void {
    for (const [deviceid, entry] of this.entries) {
      const keep: Waiter[] = [];
      for (const w of entry.waiters) {
        if (w.expiresAt <= now) w.reject(new CoolkitError(ErrorCode.OFFLINE, `device ${deviceid} did not come back before the queued command expired`, deviceid));
        else keep.push(w);
      }
      entry.waiters = keep;
      if (keep.length === 0) this.entries.delete(deviceid);
    }
  }

  cancelAll(err: Error): void {
    for (const entry of this.entries.values()) entry.waiters.forEach((w) => w.reject(err));
    this.entries.clear();
  }
}
