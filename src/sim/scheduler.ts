/**
 * Timers for simulated device behaviour (inching, metering and sensor ticks, RF capture, random
 * RF triggers), built so that a device never holds more than ONE timer for all of them:
 *
 * - A BehaviourScheduler keeps named one-shot tasks (`set('inch:2', 500, fn)` replaces an earlier
 *   'inch:2'); periodic work re-arms itself from its own callback.
 * - Standalone, the scheduler arms a single setTimeout for its earliest task.
 * - With a FleetTicker (the CLI passes one to every device), it arms nothing at all: the ticker runs
 *   ONE setInterval for the whole fleet and calls `runDue()` on the schedulers that have tasks.
 *   Due times are then quantised to the ticker resolution (100 ms by default): an inching width
 *   of 500 ms fires after 500–600 ms, which is well inside what a server can observe.
 *
 * The device clears every task when its connection goes away or it is stopped, so nothing keeps
 * running (or keeps the process alive) for an offline device.
 */

interface Task {
  at: number;
  fn: () => void;
}

/** One setInterval shared by many schedulers. It runs only while at least one scheduler has tasks. */
export class FleetTicker {
  private readonly members = new Set<BehaviourScheduler>();
  private timer: NodeJS.Timeout | undefined;

  constructor(readonly resolutionMs = 100) {
    if (!(resolutionMs > 0)) throw new RangeError('resolutionMs must be > 0');
  }

  /** Schedulers with pending tasks (for tests and diagnostics). */
  get size(): number {
    return this.members.size;
  }

  /** True while the shared interval is armed. */
  get running(): boolean {
    return this.timer !== undefined;
  }

  /** @internal called by BehaviourScheduler */
  attach(s: BehaviourScheduler): void {
    this.members.add(s);
    // unref: the devices' sockets keep a process alive while they are online; a pending task of
    // an offline device (e.g. inching after setLocal()) must not.
    if (!this.timer) this.timer = setInterval(() => this.tick(), this.resolutionMs).unref();
  }

  /** @internal called by BehaviourScheduler */
  detach(s: BehaviourScheduler): void {
    this.members.delete(s);
    if (this.members.size === 0) this.stop();
  }

  /** Clear the interval (members are forgotten; their tasks no longer run). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.members.clear();
  }

  private tick(): void {
    const now = Date.now();
    // Copy: runDue() may detach (or, via callbacks, attach) members while we iterate.
    for (const s of [...this.members]) s.runDue(now);
  }
}

export class BehaviourScheduler {
  private readonly tasks = new Map<string, Task>();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private running = false;

  constructor(
    private readonly ticker?: FleetTicker,
    /** Called when a task throws; the scheduler itself carries on. */
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {}

  /** (Re)schedule task `key` to run `delayMs` from now. */
  set(key: string, delayMs: number, fn: () => void): void {
    this.tasks.set(key, { at: Date.now() + Math.max(0, delayMs), fn });
    this.rearm();
  }

  has(key: string): boolean {
    return this.tasks.has(key);
  }

  clear(key: string): void {
    if (this.tasks.delete(key)) this.rearm();
  }

  /** Drop every task and release the timer / the fleet ticker. */
  clearAll(): void {
    this.tasks.clear();
    this.rearm();
  }

  /** Number of pending tasks. */
  get size(): number {
    return this.tasks.size;
  }

  /** Run every task due at `now`, earliest first. Tasks may schedule new tasks (also under their own key). */
  runDue(now = Date.now()): void {
    if (this.running) return;
    this.running = true;
    try {
      const due = [...this.tasks.entries()].filter(([, t]) => t.at <= now).sort((a, b) => a[1].at - b[1].at);
      for (const [key, task] of due) {
        // Skip a task that an earlier callback cleared or replaced.
        if (this.tasks.get(key) !== task) continue;
        this.tasks.delete(key);
        try {
          task.fn();
        } catch (err) {
          this.onError(err);
        }
      }
    } finally {
      this.running = false;
      this.rearm();
    }
  }

  private rearm(): void {
    if (this.running) return; // runDue() re-arms once at the end
    if (this.ticker) {
      if (this.tasks.size > 0) this.ticker.attach(this);
      else this.ticker.detach(this);
      return;
    }
    let next = Infinity;
    for (const t of this.tasks.values()) next = Math.min(next, t.at);
    if (next === this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = next;
    if (next === Infinity) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.timerAt = Infinity;
        this.runDue();
      },
      Math.max(0, next - Date.now()),
    ).unref(); // see FleetTicker.attach
  }
}
