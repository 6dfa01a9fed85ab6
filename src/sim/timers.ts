/**
 * Device-side timers for the simulator: a stock Sonoff keeps the `timers` array the server pushed
 * (coolkit-protocol.md §3.9) and runs it itself, in UTC, whether or not a server is connected.
 * `attachTimerRunner` gives a SimulatedDevice that ability:
 *
 * - the array comes from a server `update` with `timers` (the 'command' event), from the reply
 *   to the device's own `query` for `timers` (object form `{"timers":[…]}` or the array-wrapped
 *   form some servers use), or from the device's state when attached;
 * - once and delay fire at `at`; repeat follows the UTC cron `"min hour * * days"`; duration runs
 *   `do` at the start and every cycle, or `startDo` at each cycle start and `endDo` `after`
 *   minutes into it; disabled timers (`enabled: 0`) never fire;
 * - a firing applies `do` like a local change (`setLocal`), so it is reported to the server when
 *   connected. Multi-channel `{"switches":[…]}` and flat `{"outlet":n,"switch":…}` forms both work.
 *
 * Time comes from a clock: the real one by default, or a `FakeClock` that tests move with
 * `advance(ms)`.
 */
import type { SimulatedDevice } from './device';
import { isPlainObject, type Params } from './state';

export interface SimClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Node's timers cap a delay at 2^31 - 1 ms; longer waits are re-armed. */
const MAX_DELAY = 2 ** 31 - 1;
const MINUTE = 60_000;

export const realClock: SimClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, Math.min(Math.max(ms, 0), MAX_DELAY));
    t.unref?.();
    return t;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

interface Pending {
  id: number;
  at: number;
  fn: () => void;
}

/** A clock that only moves when told: `advance(ms)` runs every callback that falls due, in order. */
export class FakeClock implements SimClock {
  private current: number;
  private seq = 0;
  private readonly pending = new Map<number, Pending>();

  constructor(start: number = Date.now()) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.pending.set(id, { id, at: this.current + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number);
  }

  /** Callbacks waiting. */
  get size(): number {
    return this.pending.size;
  }

  /** Move time forward by `ms`, running due callbacks at their own time (earliest first). */
  advance(ms: number): void {
    this.advanceTo(this.current + ms);
  }

  advanceTo(target: number): void {
    for (;;) {
      let next: Pending | undefined;
      for (const p of this.pending.values()) {
        if (p.at <= target && (!next || p.at < next.at || (p.at === next.at && p.id < next.id))) next = p;
      }
      if (!next) break;
      this.pending.delete(next.id);
      this.current = Math.max(this.current, next.at);
      next.fn();
    }
    this.current = Math.max(this.current, target);
  }
}

/** One firing, for tests. */
export interface TimerFiring {
  mId: string;
  /** When it fired (clock time). */
  at: number;
  params: Params;
}

export interface TimerRunnerOptions {
  clock?: SimClock;
  /** Called after each firing. */
  onFire?: (firing: TimerFiring) => void;
}

export interface TimerRunner {
  /** The array the device holds now. */
  readonly timers: Params[];
  /** Every firing so far, oldest first. */
  readonly fired: TimerFiring[];
  /** When each enabled timer fires next (clock time), by mId. */
  nextFires(): Map<string, number>;
  /** Replace the array, as a server `update` would. */
  load(timers: unknown): void;
  /** Stop running timers and listening to the device. */
  stop(): void;
}

/** A timer action as the params a device applies. */
export function actionParams(action: unknown): Params | undefined {
  if (!isPlainObject(action)) return undefined;
  if (typeof action.outlet === 'number' && typeof action.switch === 'string') {
    const { outlet, switch: sw, ...rest } = action;
    return { ...rest, switches: [{ switch: sw, outlet }] };
  }
  return Object.keys(action).length > 0 ? structuredClone(action) : undefined;
}

const CRON = /^(\d{1,2}) (\d{1,2}) (\*|\d{1,2}) (\*|\d{1,2}) (\*|[0-6](?:-[0-6])?(?:,[0-6](?:-[0-6])?)*)$/;

function cronDays(field: string): Set<number> {
  if (field === '*') return new Set([0, 1, 2, 3, 4, 5, 6]);
  const out = new Set<number>();
  for (const part of field.split(',')) {
    const [a, b] = part.split('-').map(Number);
    for (let d = a; d <= (b ?? a); d++) out.add(d);
  }
  return out;
}

/** The next instant strictly after `after` that matches a UTC cron (day of month and month included). */
export function nextCronInstant(cron: string, after: number): number | undefined {
  const m = CRON.exec(cron.trim());
  if (!m) return undefined;
  const minute = Number(m[1]);
  const hour = Number(m[2]);
  if (minute > 59 || hour > 23) return undefined;
  const dom = m[3] === '*' ? undefined : Number(m[3]);
  const month = m[4] === '*' ? undefined : Number(m[4]);
  const days = cronDays(m[5]);
  const d = new Date(after);
  for (let i = 0; i <= 400; i++) {
    const t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + i, hour, minute);
    if (t <= after) continue;
    const day = new Date(t);
    if (!days.has(day.getUTCDay())) continue;
    if (dom !== undefined && day.getUTCDate() !== dom) continue;
    if (month !== undefined && day.getUTCMonth() + 1 !== month) continue;
    return t;
  }
  return undefined;
}

interface Event {
  at: number;
  params: Params;
}

/** The next event of one wire timer strictly after `after`. */
export function nextTimerEvent(timer: Params, after: number): Event | undefined {
  if (timer.enabled === 0 || timer.enabled === false || timer.enabled === '0') return undefined;
  const at = typeof timer.at === 'string' ? timer.at.trim() : '';
  const kind = timer.type === 'repeat' || timer.type === 'duration' ? timer.type : timer.coolkit_timer_type === 'repeat' || timer.coolkit_timer_type === 'duration' ? timer.coolkit_timer_type : 'once';
  if (kind === 'repeat') {
    const t = nextCronInstant(at, after);
    const params = actionParams(timer.do);
    return t !== undefined && params ? { at: t, params } : undefined;
  }
  if (kind === 'duration') {
    const parts = at.split(/\s+/);
    const start = Date.parse(parts[0] ?? '');
    const cycle = Number(parts[1]) * MINUTE;
    if (!Number.isFinite(start) || !(cycle > 0)) return undefined;
    const second = parts[2] !== undefined ? Number(parts[2]) * MINUTE : undefined;
    const k = after < start ? 0 : Math.floor((after - start) / cycle);
    const events: Event[] = [];
    for (const c of [k, k + 1]) {
      const cycleStart = start + c * cycle;
      if (second !== undefined && second > 0 && second < cycle) {
        const first = actionParams(timer.startDo ?? timer.do);
        const then = actionParams(timer.endDo);
        if (first) events.push({ at: cycleStart, params: first });
        if (then) events.push({ at: cycleStart + second, params: then });
      } else {
        const params = actionParams(timer.do);
        if (params) events.push({ at: cycleStart, params });
      }
    }
    return events.filter((e) => e.at > after).sort((a, b) => a.at - b.at)[0];
  }
  const t = Date.parse(at);
  const params = actionParams(timer.do);
  return Number.isFinite(t) && t > after && params ? { at: t, params } : undefined;
}

/** Timers from a query reply's `params`: `{"timers":[…]}`, `[{"timers":[…]}]`, or 0. */
function timersFromReply(params: unknown): unknown[] | undefined {
  if (isPlainObject(params) && Array.isArray(params.timers)) return params.timers;
  if (Array.isArray(params)) {
    const wrapped = params.find((p) => isPlainObject(p) && Array.isArray(p.timers)) as Params | undefined;
    if (wrapped) return wrapped.timers as unknown[];
  }
  return undefined;
}

/**
 * Make a simulated device run the timers it is given. Returns the runner; `stop()` detaches it.
 */
export function attachTimerRunner(device: SimulatedDevice, options: TimerRunnerOptions = {}): TimerRunner {
  const clock = options.clock ?? realClock;
  let timers: Params[] = [];
  const fired: TimerFiring[] = [];
  const handles = new Map<string, unknown>();
  /** The last clock time each timer was evaluated from: events after it are due. */
  const cursor = new Map<string, number>();
  let stopped = false;

  const keyOf = (timer: Params, index: number) => (typeof timer.mId === 'string' && timer.mId ? timer.mId : `#${index}`);

  function clearAll(): void {
    for (const h of handles.values()) clock.clearTimeout(h);
    handles.clear();
  }

  function arm(key: string, timer: Params): void {
    const from = cursor.get(key) ?? clock.now();
    const ev = nextTimerEvent(timer, from);
    if (!ev) return;
    const wait = ev.at - clock.now();
    if (wait > MAX_DELAY) {
      // Too far for one timeout: wake up and look again.
      handles.set(key, clock.setTimeout(() => arm(key, timer), MAX_DELAY));
      return;
    }
    handles.set(key, clock.setTimeout(() => {
      handles.delete(key);
      if (stopped) return;
      cursor.set(key, ev.at);
      const firing: TimerFiring = { mId: key, at: clock.now(), params: ev.params };
      fired.push(firing);
      try {
        device.setLocal(structuredClone(ev.params));
      } catch {
        // a broken device state must not stop the other timers
      }
      options.onFire?.(firing);
      arm(key, timer);
    }, Math.max(0, wait)));
  }

  function load(list: unknown): void {
    clearAll();
    cursor.clear();
    timers = Array.isArray(list) ? list.filter(isPlainObject).map((t) => structuredClone(t)) : [];
    const now = clock.now();
    timers.forEach((timer, i) => {
      const key = keyOf(timer, i);
      cursor.set(key, now);
      arm(key, timer);
    });
  }

  const onCommand = (params: Params) => {
    if ('timers' in params) load(params.timers);
  };
  const onMessage = (msg: Params | string) => {
    if (typeof msg === 'string' || typeof msg.action === 'string' || !('params' in msg)) return;
    const list = timersFromReply(msg.params);
    if (list) load(list);
  };
  device.on('command', onCommand);
  device.on('message', onMessage);
  const initial = device.state.timers;
  if (Array.isArray(initial)) load(initial);

  return {
    get timers() {
      return structuredClone(timers);
    },
    fired,
    nextFires() {
      const out = new Map<string, number>();
      timers.forEach((timer, i) => {
        const key = keyOf(timer, i);
        const ev = nextTimerEvent(timer, cursor.get(key) ?? clock.now());
        if (ev) out.set(key, ev.at);
      });
      return out;
    },
    load,
    stop() {
      stopped = true;
      clearAll();
      device.off('command', onCommand);
      device.off('message', onMessage);
    },
  };
}
