/**
 * Device numbers for the telemetry API. The seed's clients use integer device ids (1, 2, 3);
 * Sonoff devices have 10-hex-character ids. Each device gets a stable number the first time
 * this node sees it (known devices at start-up in the order they first connected), kept on disk
 * and never reused. Messages carry both: `device_id` (the number) and `deviceid` (the string);
 * filters take either.
 */

export class DeviceNumbers {
  private readonly byId = new Map<string, number>();
  private readonly byNumber = new Map<number, string>();
  private next = 1;

  constructor(private readonly changed: () => void = () => {}) {}

  /** Load a saved map; ignores malformed entries. */
  restore(saved: { next?: number; devices?: Record<string, number> } | undefined): void {
    if (!saved) return;
    for (const [deviceid, n] of Object.entries(saved.devices ?? {})) {
      if (!/^[0-9a-f]{10}$/.test(deviceid) || !Number.isInteger(n) || n < 1 || this.byNumber.has(n)) continue;
      this.byId.set(deviceid, n);
      this.byNumber.set(n, deviceid);
      if (n >= this.next) this.next = n + 1;
    }
    if (Number.isInteger(saved.next) && (saved.next as number) > this.next) this.next = saved.next as number;
  }

  snapshot(): { next: number; devices: Record<string, number> } {
    return { next: this.next, devices: Object.fromEntries(this.byId) };
  }

  /** The device's number, assigned now if it has none. */
  numberOf(deviceid: string): number {
    let n = this.byId.get(deviceid);
    if (n === undefined) {
      n = this.next++;
      this.byId.set(deviceid, n);
      this.byNumber.set(n, deviceid);
      this.changed();
    }
    return n;
  }

  peek(deviceid: string): number | undefined {
    return this.byId.get(deviceid);
  }

  deviceidOf(n: number): string | undefined {
    return this.byNumber.get(n);
  }

  get size(): number {
    return this.byId.size;
  }
}
