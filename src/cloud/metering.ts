/**
 * Real-time power metering stays on only while the server re-sends `{"uiActive": 60}` (POW/S31
 * report power/voltage/current only inside that window). The vendor app re-sends it every 50 s
 * while its screen is open; here, a device is "watched" while a flow node wants its live data.
 * One timer serves every watched device; devices nobody watches are left alone.
 */
export class MeteringKeeper {
  /** deviceid → number of watchers; '' means "every metering device". */
  private readonly watchers = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly intervalMs: number,
    /** Send the keep-alive to one device (errors are the sender's business). */
    private readonly keepAlive: (deviceid: string) => void,
    /** Online devices that meter power. */
    private readonly meteringDevices: () => Iterable<string>,
  ) {}

  /** Start watching a device ('' = all metering devices); returns the function that stops it. */
  watch(deviceid: string): () => void {
    this.watchers.set(deviceid, (this.watchers.get(deviceid) ?? 0) + 1);
    this.ensureTimer();
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      const n = (this.watchers.get(deviceid) ?? 1) - 1;
      if (n <= 0) this.watchers.delete(deviceid);
      else this.watchers.set(deviceid, n);
      if (this.watchers.size === 0) this.stop();
    };
  }

  isWatched(deviceid: string): boolean {
    return this.watchers.has('') || this.watchers.has(deviceid);
  }

  get enabled(): boolean {
    return this.intervalMs > 0;
  }

  /** Send the keep-alive to every watched online metering device. */
  tick(): void {
    const all = this.watchers.has('');
    for (const deviceid of this.meteringDevices()) {
      if (all || this.watchers.has(deviceid)) this.keepAlive(deviceid);
    }
  }

  private ensureTimer(): void {
    if (this.timer || this.intervalMs <= 0) return;
    this.timer = setInterval(() => this.tick(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
