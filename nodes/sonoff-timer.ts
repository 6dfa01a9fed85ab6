/**
 * `sonoff-timer`: manages the timers a device runs itself (once, repeat, duration, delay), so
 * they fire while Node-RED is down. Flows speak local time; the device gets UTC, always the
 * whole array (coolkit-protocol.md §3.9), mIds stay stable, and the limits (8 timers, 1 loop
 * timer) are enforced before anything is sent.
 *
 * The timers of one device are a `DeviceTimerSet` shared by every sonoff-timer node of the same
 * server: the user's local specs are saved atomically in
 * `<userDir>/coolkit/timers-<server id>-<deviceid>.json` (they survive a restart), the array the
 * device acknowledged is in the server's device record (so the device's own `query` for
 * `timers` is answered from it). When a repeat timer's UTC form changes (the zone's offset
 * changes with daylight saving) the set pushes the new array at that moment, and again whenever
 * the device comes back online with a stale array.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow, NodeStatus } from 'node-red';
import type { DeviceEvent } from '../src/cloud/server';
import type { DeviceEventKind } from '../src/cloud/router';
import { atomicWriteFile, loadJsonFile } from '../src/cloud/store';
import { CoolkitError, ErrorCode } from '../src/protocol/errors';
import { canonicalTimeZone, formatLocalIso, systemTimeZone } from '../src/protocol/localtime';
import {
  checkLimits,
  isExpired,
  mergeUserTimer,
  nextFireOf,
  nextRecheck,
  parseTimer,
  sameWire,
  timerFromWire,
  userTimer,
  wireTimers,
  type TimerSpec,
  type WireTimer,
} from '../src/protocol/timers';
import type { CoolkitServerNode, ServerUser } from './types';
import { deviceIdProblem, findServer, TypedValue, withDeviceId } from './shared';

interface TimerNodeConfig extends NodeDef {
  server: string;
  deviceid: string;
  /** Where the device ID comes from: str (default, flows saved before typed inputs), msg, flow, global or env. */
  deviceidType?: string;
  /** IANA zone of the times flows send; empty = the zone Node-RED runs in. */
  timezone?: string;
}

type Done = (err?: Error) => void;

const MAX_DELAY = 2 ** 31 - 1;
/** Give a device that just connected time to finish its handshake before a timer push. */
const SYNC_AFTER_ONLINE_MS = 500;
const ACTIONS = ['add', 'update', 'remove', 'enable', 'disable', 'clear', 'list', 'set'];

interface StoredSet {
  version: 1;
  deviceid: string;
  timers: TimerSpec[];
}

function checkStored(value: unknown): string | undefined {
  const v = value as Partial<StoredSet> | null;
  if (!v || typeof v !== 'object' || v.version !== 1) return 'not a timer file (version 1)';
  if (!Array.isArray(v.timers) || !v.timers.every((t) => t && typeof t === 'object' && typeof t.id === 'string' && typeof t.type === 'string')) return 'timers is not a list of timers';
  return undefined;
}

function bad(message: string, code: number = ErrorCode.BAD_REQUEST): CoolkitError {
  return new CoolkitError(code, message);
}

function safeName(s: string): string {
  return s.replace(/[^0-9A-Za-z_-]/g, '_');
}

interface SetListener {
  changed(): void;
}

/** Where a set gets its time from: the real clock, or a fake one in tests. */
interface SetClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realClock: SetClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** What a set needs of the server node (the real one, or a stand-in in tests). */
type SetServer = Pick<CoolkitServerNode, 'id' | 'subscribe'> & { cloud: Pick<CoolkitServerNode['cloud'], 'device' | 'sendCommand'> };

/** The timers of one device on one server, shared by every sonoff-timer node that manages it. */
class DeviceTimerSet {
  specs: TimerSpec[] = [];
  /** True once the user's set is on disk (or was loaded from it): from then on it is the truth. */
  private owned = false;
  private chain: Promise<unknown> = Promise.resolve();
  private recheckTimer: unknown;
  private syncTimer: unknown;
  private readonly unsubscribe: () => void;
  readonly listeners = new Set<SetListener>();
  private disposed = false;

  constructor(
    private readonly server: SetServer,
    readonly deviceid: string,
    private readonly file: string,
    timezone: string,
    private readonly log: { warn(m: string): void; error(m: string): void },
    private readonly clock: SetClock = realClock,
  ) {
    const loaded = loadJsonFile<StoredSet>(file, checkStored);
    if (loaded.corrupt) log.error(`timer file ${file} is unusable (${loaded.corrupt.reason}); moved aside to ${loaded.corrupt.movedTo}`);
    if (loaded.data) {
      this.specs = loaded.data.timers;
      this.owned = true;
    } else {
      // Never managed here: start from what the device holds (set by the app or another server).
      const wire = server.cloud.device(deviceid)?.params.timers;
      if (Array.isArray(wire)) {
        const now = clock.now();
        this.specs = wire.map((w) => timerFromWire(w, timezone, now)).filter((s): s is TimerSpec => s !== undefined);
      }
    }
    this.unsubscribe = server.subscribe(deviceid, (kind: DeviceEventKind, _ev: DeviceEvent) => {
      if (kind === 'online') this.scheduleSync(SYNC_AFTER_ONLINE_MS);
    });
    this.scheduleRecheck();
    this.scheduleSync(0);
  }

  /** What the device should hold now. */
  wire(now = this.clock.now()): WireTimer[] {
    return wireTimers(this.specs, now);
  }

  private online(): boolean {
    return this.server.cloud.device(this.deviceid)?.online === true;
  }

  /** Run `op` after every earlier operation on this device. */
  private queue<T>(op: () => Promise<T>): Promise<T> {
    const run = this.chain.then(op, op);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /**
   * Change the set: `mutate` gets a copy of the current specs (expired once timers dropped) and
   * returns the new ones. The device must acknowledge the full array before anything changes.
   */
  edit(mutate: (specs: TimerSpec[], now: number) => TimerSpec[]): Promise<TimerSpec[]> {
    return this.queue(async () => {
      const now = this.clock.now();
      const current = structuredClone(this.specs).filter((s) => !isExpired(s, now));
      const next = mutate(current, now);
      checkLimits(next);
      const wire = wireTimers(next, now);
      await this.server.cloud.sendCommand(this.deviceid, { timers: wire });
      this.specs = next;
      this.owned = true;
      await this.save();
      this.scheduleRecheck();
      this.notify();
      return this.specs;
    });
  }

  private async save(): Promise<void> {
    const data: StoredSet = { version: 1, deviceid: this.deviceid, timers: this.specs };
    try {
      await atomicWriteFile(this.file, JSON.stringify(data, null, 1));
    } catch (err) {
      this.log.error(`cannot save the timers of ${this.deviceid} to ${this.file}: ${(err as Error).message}`);
    }
  }

  private notify(): void {
    for (const l of this.listeners) {
      try {
        l.changed();
      } catch (err) {
        this.log.warn(`timer status update failed: ${(err as Error).message}`);
      }
    }
  }

  private scheduleSync(ms: number): void {
    if (this.syncTimer !== undefined) this.clock.clearTimeout(this.syncTimer);
    this.syncTimer = this.clock.setTimeout(() => {
      this.syncTimer = undefined;
      void this.sync();
    }, ms);
  }

  /** Push the array if the device holds another one (a zone offset change, or changes made while it was offline). */
  sync(): Promise<void> {
    return this.queue(async () => {
      if (this.disposed || !this.online()) return;
      const now = this.clock.now();
      const wire = this.wire(now);
      const held = this.server.cloud.device(this.deviceid)?.params.timers;
      if (sameWire(wire, held)) return;
      if (!this.owned && wire.length === 0) return;
      try {
        await this.server.cloud.sendCommand(this.deviceid, { timers: wire });
        this.notify();
      } catch (err) {
        this.log.warn(`could not update the timers of ${this.deviceid}: ${(err as Error).message}; trying again when it reconnects`);
      }
    });
  }

  /** One timer per set: wake up when a repeat timer's UTC form changes (daylight saving), and push. */
  private scheduleRecheck(): void {
    if (this.recheckTimer !== undefined) this.clock.clearTimeout(this.recheckTimer);
    this.recheckTimer = undefined;
    if (this.disposed) return;
    const now = this.clock.now();
    const at = nextRecheck(this.specs, now);
    if (at === undefined) return;
    const wait = Math.min(Math.max(at - now, 0), MAX_DELAY);
    this.recheckTimer = this.clock.setTimeout(() => {
      this.recheckTimer = undefined;
      if (this.clock.now() >= at) void this.sync().then(() => this.scheduleRecheck());
      else this.scheduleRecheck();
    }, wait);
  }

  /** When the set next wakes up to re-check its array (tests). */
  get nextRecheckAt(): number | undefined {
    return this.recheckTimer === undefined ? undefined : nextRecheck(this.specs, this.clock.now());
  }

  dispose(): void {
    this.disposed = true;
    if (this.recheckTimer !== undefined) this.clock.clearTimeout(this.recheckTimer);
    if (this.syncTimer !== undefined) this.clock.clearTimeout(this.syncTimer);
    this.unsubscribe();
  }
}

/** Every live set, by `<server id>/<deviceid>`. */
const sets = new Map<string, { set: DeviceTimerSet; users: number }>();

function acquire(server: CoolkitServerNode, deviceid: string, file: string, timezone: string, log: { warn(m: string): void; error(m: string): void }): DeviceTimerSet {
  const key = `${server.id}/${deviceid}`;
  let entry = sets.get(key);
  if (!entry) {
    entry = { set: new DeviceTimerSet(server, deviceid, file, timezone, log), users: 0 };
    sets.set(key, entry);
  }
  entry.users++;
  return entry.set;
}

function release(server: CoolkitServerNode, set: DeviceTimerSet): void {
  const key = `${server.id}/${set.deviceid}`;
  const entry = sets.get(key);
  if (!entry || entry.set !== set) return;
  if (--entry.users <= 0) {
    set.dispose();
    sets.delete(key);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Find the timer a message means: `id`, `name` or `index` (0-based position in the list). */
function findIndex(specs: TimerSpec[], sel: { id?: unknown; name?: unknown; index?: unknown }): number {
  if (sel.id !== undefined && sel.id !== null && sel.id !== '') {
    const id = String(sel.id).toLowerCase();
    const i = specs.findIndex((s) => s.id.toLowerCase() === id);
    if (i < 0) throw bad(`no timer has the id ${String(sel.id)}`, ErrorCode.NOT_FOUND);
    return i;
  }
  if (sel.name !== undefined && sel.name !== null && sel.name !== '') {
    const i = specs.findIndex((s) => s.name === sel.name);
    if (i < 0) throw bad(`no timer is named ${JSON.stringify(sel.name)}`, ErrorCode.NOT_FOUND);
    return i;
  }
  if (sel.index !== undefined && sel.index !== null) {
    const n = typeof sel.index === 'string' && sel.index.trim() !== '' ? Number(sel.index) : sel.index;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) throw bad(`index must be a whole number from 0, got ${JSON.stringify(sel.index)}`);
    if (n >= specs.length) throw bad(`there is no timer ${n}: the device has ${specs.length}`, ErrorCode.NOT_FOUND);
    return n;
  }
  throw bad('say which timer: "id" (from list), "name" or "index"');
}

function register(RED: NodeAPI): void {
  function SonoffTimer(this: Node, config: TimerNodeConfig): void {
    RED.nodes.createNode(this, config);
    const node = this;
    const server = findServer(RED, node, config.server, 'sonoff-timer');
    if (!server) return;
    const configuredZone = (config.timezone ?? '').trim();
    const timezone = configuredZone ? canonicalTimeZone(configuredZone) : systemTimeZone();
    if (!timezone) {
      const text = RED._('sonoff-timer.errors.timezone', { timezone: configuredZone });
      node.error(text);
      node.status({ fill: 'red', shape: 'ring', text });
      node.on('input', (_msg: NodeMessageInFlow, _send: unknown, done: Done) => done(bad(text)));
      return;
    }
    const zone: string = timezone;
    // Device: a plain ID (empty: msg.deviceid), msg/flow/global evaluated per message, or env
    // (resolved once, and then managed from the start like a plain ID).
    const device = new TypedValue(RED, node, config.deviceid, config.deviceidType);
    const problem = deviceIdProblem(RED, 'sonoff-timer', device);
    const configured = problem || device.dynamic ? '' : device.type === 'env' ? String(device.fixed).trim().toLowerCase() : device.value.toLowerCase();
    const userDir = (RED.settings as { userDir?: string }).userDir ?? path.join(os.homedir(), '.node-red');
    const stateDir = path.join(userDir, 'coolkit');
    const log = { warn: (m: string) => node.warn(m), error: (m: string) => node.error(m) };
    const mine = new Map<string, DeviceTimerSet>();
    let serverHealthy = false;
    let serverStatus: NodeStatus = {};
    let lastError: NodeStatus | undefined = problem ? { fill: 'red', shape: 'ring', text: problem.slice(0, 80) } : undefined;
    if (problem) node.error(problem);
    let statusTimer: NodeJS.Timeout | undefined;
    /** The device the status shows: the configured one, or the last one handled. */
    let shown: string | undefined = configured || undefined;

    const listener: SetListener = { changed: () => refreshStatus() };

    function setFor(deviceid: string): DeviceTimerSet {
      let set = mine.get(deviceid);
      if (!set) {
        const file = path.join(stateDir, `timers-${safeName(server!.id)}-${safeName(deviceid)}.json`);
        set = acquire(server!, deviceid, file, zone, log);
        set.listeners.add(listener);
        mine.set(deviceid, set);
      }
      return set;
    }

    const nextFormat = new Intl.DateTimeFormat('en-GB', { timeZone: zone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    const farFormat = new Intl.DateTimeFormat('en-GB', { timeZone: zone, day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });

    function refreshStatus(): void {
      if (statusTimer) clearTimeout(statusTimer);
      statusTimer = undefined;
      if (!serverHealthy) {
        node.status(serverStatus);
        return;
      }
      if (lastError) {
        node.status(lastError);
        return;
      }
      const set = shown ? mine.get(shown) : undefined;
      if (!set) {
        node.status(serverStatus);
        return;
      }
      const now = Date.now();
      const live = set.specs.filter((s) => !isExpired(s, now));
      const next = nextFireOf(live, now);
      const online = server!.cloud.device(set.deviceid)?.online === true;
      let text: string;
      if (live.length === 0) text = RED._('sonoff-timer.status.none');
      else if (next === undefined) text = RED._('sonoff-timer.status.idle', { count: live.length });
      else text = RED._('sonoff-timer.status.next', { count: live.length, next: (next - now < 6 * 86_400_000 ? nextFormat : farFormat).format(new Date(next)) });
      node.status({ fill: online ? 'green' : 'grey', shape: online ? 'dot' : 'ring', text });
      if (next !== undefined) {
        statusTimer = setTimeout(refreshStatus, Math.min(next - now + 1000, MAX_DELAY));
        statusTimer.unref?.();
      }
    }

    const user: ServerUser = {
      id: node.id,
      onServerStatus(status, healthy) {
        serverHealthy = healthy;
        serverStatus = status;
        refreshStatus();
      },
    };
    let unsubscribeDevice: (() => void) | undefined;
    if (configured) {
      setFor(configured);
      unsubscribeDevice = server.subscribe(configured, (kind: DeviceEventKind) => {
        if (kind === 'online' || kind === 'offline') refreshStatus();
      });
    }
    server.register(user);

    function fail(err: Error, done: Done): void {
      lastError = { fill: 'red', shape: 'ring', text: err.message.slice(0, 80) };
      refreshStatus();
      done(err);
    }

    node.on('input', (msg: NodeMessageInFlow & { deviceid?: unknown }, send: (m: NodeMessageInFlow) => void, done: Done) => {
      // A configured Device wins over msg.deviceid; an empty plain Device takes msg.deviceid.
      const fromMsg = () => (typeof msg.deviceid === 'string' ? msg.deviceid.trim().toLowerCase() : '');
      withDeviceId(RED, 'sonoff-timer', device, msg, fromMsg, (err, deviceid) => {
        if (err) fail(err, done);
        else if (!deviceid) fail(bad(RED._('sonoff-timer.errors.no-deviceid')), done);
        else handle(msg, send, done, deviceid);
      });
    });

    function handle(msg: NodeMessageInFlow, send: (m: NodeMessageInFlow) => void, done: Done, deviceid: string): void {
      let payload: unknown = msg.payload;
      if (typeof payload === 'string') payload = { action: payload.trim().toLowerCase() };
      if (!isObject(payload)) {
        fail(bad('payload must be an object such as {"action":"list"} or {"action":"add","timer":{…}}'), done);
        return;
      }
      const p = payload;
      const action = typeof p.action === 'string' ? p.action.trim().toLowerCase() : p.action;
      if (typeof action !== 'string' || !ACTIONS.includes(action)) {
        fail(bad(`unknown action ${JSON.stringify(p.action)}: use ${ACTIONS.join(', ')}`), done);
        return;
      }
      shown = deviceid;
      const set = setFor(deviceid);
      const caps = server!.cloud.capabilities(deviceid);
      const ctx = (now: number) => ({ timezone: zone, now, caps });

      function output(specs: TimerSpec[]): void {
        const now = Date.now();
        const next = nextFireOf(specs, now);
        const out = msg as NodeMessageInFlow & Record<string, unknown>;
        out.payload = specs.map((s) => userTimer(s, now));
        out.topic = deviceid;
        out.deviceid = deviceid;
        out.action = action;
        out.next = next === undefined ? null : formatLocalIso(zone, next);
        lastError = undefined;
        refreshStatus();
        send(out);
        done();
      }

      if (action === 'list') {
        output(set.specs);
        return;
      }

      const timerList = (): unknown[] => {
        if (Array.isArray(p.timers)) return p.timers;
        if (p.timer !== undefined) return [p.timer];
        throw bad(`"${action}" needs "timer" (or "timers": [...])`);
      };
      /** Which timer: `id` (also inside `timer`), `name` or `index`. */
      const selector = () => {
        const t = isObject(p.timer) ? p.timer : {};
        return { id: p.id ?? t.id, name: p.name, index: p.index };
      };

      const mutate = (specs: TimerSpec[], now: number): TimerSpec[] => {
        switch (action) {
          case 'add': {
            const added = timerList().map((t) => parseTimer(t, ctx(now)));
            for (const a of added) if (specs.some((s) => s.id === a.id)) throw bad(`a timer with id ${a.id} exists already: use "update"`);
            return [...specs, ...added];
          }
          case 'set':
            return timerList()
              .filter((t) => !(isObject(t) && t.expired === true))
              .map((t) => parseTimer(t, ctx(now)));
          case 'clear':
            return [];
          case 'update': {
            const sel = selector();
            const i = findIndex(specs, sel);
            const patch = isObject(p.timer) ? { ...p.timer } : undefined;
            if (!patch) throw bad('"update" needs "timer": the fields to change');
            delete patch.id;
            const merged = mergeUserTimer(userTimer(specs[i], now), patch);
            specs[i] = parseTimer(merged, ctx(now));
            return specs;
          }
          case 'remove': {
            const i = findIndex(specs, selector());
            specs.splice(i, 1);
            return specs;
          }
          default: {
            // enable / disable: one timer, or every timer when none is named
            const enabled = action === 'enable';
            const sel = selector();
            const named = sel.id !== undefined || sel.name !== undefined || sel.index !== undefined;
            const indexes = named ? [findIndex(specs, sel)] : specs.map((_s, i) => i);
            for (const i of indexes) {
              if (enabled && isExpired(specs[i], now)) throw bad(`timer ${specs[i].id} cannot be enabled: its time has passed`);
              specs[i].enabled = enabled;
            }
            return specs;
          }
        }
      };

      node.status({ fill: 'yellow', shape: 'ring', text: RED._('sonoff-timer.status.sending', { deviceid }) });
      set.edit(mutate).then(output, (err: Error) => fail(err, done));
    }

    node.on('close', (done: () => void) => {
      if (statusTimer) clearTimeout(statusTimer);
      unsubscribeDevice?.();
      server.deregister(user);
      for (const set of mine.values()) {
        set.listeners.delete(listener);
        release(server, set);
      }
      mine.clear();
      node.status({});
      done();
    });
  }

  RED.nodes.registerType('sonoff-timer', SonoffTimer as unknown as Parameters<NodeAPI['nodes']['registerType']>[1]);
}

// The set is exposed for tests (a fake clock proves the daylight-saving re-push); Node-RED only
// calls the function.
namespace register {
  export const internals = { DeviceTimerSet };
}

export = register;
