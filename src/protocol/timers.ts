/**
 * Device timers (coolkit-protocol.md §3.9, coolkit-uiid-protocol.md "Timer Rules"): the timers a
 * Sonoff runs itself, so they fire while Node-RED is down.
 *
 * Three shapes:
 * - the USER shape a flow sends and `list` returns: local times in an IANA zone,
 *   `{"type":"once","at":"2025-06-01T07:30","do":{"switch":"on"}}`,
 *   `{"type":"repeat","at":"07:30","days":["mon","fri"],"do":...}`,
 *   `{"type":"duration","at":"...","every":60,"do":...,"after":30,"then":...}`,
 *   `{"type":"delay","minutes":30,"do":...}`;
 * - the stored SPEC: the same, normalised (epoch ms, weekday numbers, the zone kept per timer);
 * - the WIRE shape the device takes, in UTC, in the key order of the 2017 capture:
 *   `{"coolkit_timer_type","at",("period"),"mId","enabled","do"|"startDo","endDo","type"}`.
 *
 * Repeat timers are a cron `"min hour * * days"` in UTC, so when the local time crosses midnight
 * in UTC the weekday set shifts with it, and when the zone changes its offset (daylight saving)
 * the UTC form changes: `wireTimer` uses the offset in force at the timer's next occurrence and
 * `nextRecheck` says when the array must be computed (and pushed) again.
 */
import { randomUUID } from 'node:crypto';
import type { Capabilities } from './capabilities';
import { CoolkitError, ErrorCode } from './errors';
import type { Params } from './types';
import { addDays, canonicalTimeZone, formatLocalIso, fromWall, nextOffsetChange, parseUserTime, toWall, weekdayOf, zoneOffsetMinutes } from './localtime';

/** "You can set up to 8 timers, but only 1 loop timer" (eWeLink app and firmware). */
export const MAX_TIMERS = 8;
export const MAX_LOOP_TIMERS = 1;
/** Longest loop cycle and countdown we accept, in minutes (one week). */
export const MAX_MINUTES = 10_080;

const MINUTE = 60_000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;

const DAY_ALIASES: Readonly<Record<string, number>> = {
  sun: 0, sunday: 0, mon: 1, monday: 1, tue: 2, tues: 2, tuesday: 2, wed: 3, wednesday: 3,
  thu: 4, thur: 4, thurs: 4, thursday: 4, fri: 5, friday: 5, sat: 6, saturday: 6,
};

export type OnOff = 'on' | 'off';

/** What a timer does: switch the relay (one outlet on multi-channel devices), and on a TH the thermostat. */
export interface TimerAction {
  switch: OnOff;
  outlet?: number;
  mainSwitch?: OnOff;
}

interface SpecBase {
  /** The timer's `mId` on the wire: stable for the timer's life. */
  id: string;
  name?: string;
  enabled: boolean;
  /** The IANA zone the user's times are in. */
  timezone: string;
}

export interface OnceSpec extends SpecBase {
  type: 'once';
  at: number;
  do: TimerAction;
}
export interface DelaySpec extends SpecBase {
  type: 'delay';
  minutes: number;
  /** When the countdown ends (set when it was started). */
  at: number;
  do: TimerAction;
}
export interface RepeatSpec extends SpecBase {
  type: 'repeat';
  hour: number;
  minute: number;
  /** Local weekdays, Sunday = 0, ascending. */
  days: number[];
  do: TimerAction;
}
export interface DurationSpec extends SpecBase {
  type: 'duration';
  /** Start of the first cycle. */
  at: number;
  /** Cycle length, minutes. */
  every: number;
  do: TimerAction;
  /** Alternate loop: `then` runs `after` minutes into each cycle. */
  after?: number;
  then?: TimerAction;
}
/** A timer found on the device that none of the shapes above describes: kept and pushed as it is. */
export interface RawSpec extends SpecBase {
  type: 'raw';
  wire: Params;
}

export type TimerSpec = OnceSpec | DelaySpec | RepeatSpec | DurationSpec | RawSpec;

/** One timer as the device takes it. */
export type WireTimer = Params;

function bad(message: string): CoolkitError {
  return new CoolkitError(ErrorCode.BAD_REQUEST, message);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !Buffer.isBuffer(v);
}

function pad2(n: number): string {
  return String(n).padStart(2, '0');
}

// ---- user input → spec --------------------------------------------------------------------

function onOff(what: string, v: unknown): OnOff {
  if (v === true || v === 1) return 'on';
  if (v === false || v === 0) return 'off';
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    if (s === 'on' || s === 'off') return s;
  }
  throw bad(`${what} must be "on" or "off", got ${JSON.stringify(v)}`);
}

function wholeMinutes(what: string, v: unknown, min: number, max: number): number {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    throw bad(`${what} must be a whole number of minutes from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return n;
}

/**
 * A timer action from what the user wrote: `"on"`, `{"switch":"on"}`, `{"switch":"on","outlet":1}`,
 * `{"switch":"on","mainSwitch":"on"}` (TH), or the wire forms `{"switches":[{"switch":"on","outlet":1}]}`.
 * Checked against the device: one outlet of a multi-channel device, `mainSwitch` only on a TH.
 */
export function parseAction(value: unknown, caps: Capabilities | undefined, what = 'do'): TimerAction {
  let v: unknown = value;
  if (typeof v === 'string' || typeof v === 'boolean') v = { switch: v };
  if (!isObject(v)) throw bad(`"${what}" must be an object such as {"switch":"on"}, got ${JSON.stringify(value)}`);
  let src: Record<string, unknown> = v;
  if (Array.isArray(src.switches)) {
    if (src.switches.length !== 1 || !isObject(src.switches[0])) throw bad(`"${what}": a timer switches one outlet: "switches" must hold exactly one {"switch","outlet"}`);
    const { switches: _s, ...rest } = src;
    src = { ...rest, ...(src.switches[0] as Record<string, unknown>) };
  }
  for (const key of Object.keys(src)) {
    if (key !== 'switch' && key !== 'outlet' && key !== 'mainSwitch') throw bad(`"${what}" may hold "switch", "outlet" and (TH10/TH16) "mainSwitch", not "${key}"`);
  }
  if (!('switch' in src)) throw bad(`"${what}" needs "switch": "on" or "off"`);
  const action: TimerAction = { switch: onOff(`${what}.switch`, src.switch) };
  const family = caps?.family ?? 'unknown';
  if (family === 'rf') throw bad('an RF bridge has no relay for a timer to switch');
  if (src.outlet !== undefined && src.outlet !== null) {
    const n = typeof src.outlet === 'string' && src.outlet.trim() !== '' ? Number(src.outlet) : src.outlet;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 31) throw bad(`${what}.outlet must be an integer from 0, got ${JSON.stringify(src.outlet)}`);
    if (family === 'multi') {
      if (caps && n >= caps.channels) throw bad(`${what}.outlet ${n} does not exist: this device has ${caps.channels} channels (0..${caps.channels - 1})`);
      action.outlet = n;
    } else if (family === 'unknown') {
      action.outlet = n;
    } else if (n !== 0) {
      throw bad(`${what}.outlet ${n} does not exist: this is a one-channel device`);
    }
  } else if (family === 'multi') {
    throw bad(`a timer on a ${caps?.channels ?? 'multi'}-channel device switches one outlet: add "outlet" (0..${(caps?.channels ?? 1) - 1}) to "${what}"`);
  }
  if (src.mainSwitch !== undefined) {
    if (family !== 'th' && family !== 'unknown') throw bad(`${what}.mainSwitch is for TH10/TH16 only: this device has no thermostat`);
    action.mainSwitch = onOff(`${what}.mainSwitch`, src.mainSwitch);
  }
  return action;
}

/** Weekdays from `["mon","fri"]`, `[1,5]`, `"mon,fri"`, `"weekdays"`, `"weekends"`, `"daily"`. */
export function parseDays(value: unknown): number[] {
  if (value === undefined || value === null) return [0, 1, 2, 3, 4, 5, 6];
  const tokens: unknown[] = Array.isArray(value) ? value : typeof value === 'string' ? value.split(/[\s,]+/).filter(Boolean) : [value];
  const out = new Set<number>();
  for (const token of tokens) {
    if (typeof token === 'number' && Number.isInteger(token) && token >= 0 && token <= 7) {
      out.add(token % 7);
      continue;
    }
    const s = typeof token === 'string' ? token.trim().toLowerCase() : '';
    if (/^[0-7]$/.test(s)) out.add(Number(s) % 7);
    else if (s === 'daily' || s === 'everyday' || s === '*') [0, 1, 2, 3, 4, 5, 6].forEach((d) => out.add(d));
    else if (s === 'weekdays') [1, 2, 3, 4, 5].forEach((d) => out.add(d));
    else if (s === 'weekends') [0, 6].forEach((d) => out.add(d));
    else {
      const i = DAY_ALIASES[s];
      if (i === undefined) throw bad(`days: ${JSON.stringify(token)} is not a weekday (use "sun".."sat", 0..6 with Sunday = 0, "weekdays", "weekends" or "daily")`);
      out.add(i);
    }
  }
  if (out.size === 0) throw bad('days must name at least one weekday');
  return [...out].sort((a, b) => a - b);
}

function parseClock(value: unknown): { hour: number; minute: number } {
  const m = typeof value === 'string' ? /^(\d{1,2}):(\d{2})(?::00)?$/.exec(value.trim()) : null;
  if (!m || Number(m[1]) > 23 || Number(m[2]) > 59) throw bad(`a repeat timer's "at" must be a local time "HH:MM" (00:00..23:59), got ${JSON.stringify(value)}`);
  return { hour: Number(m[1]), minute: Number(m[2]) };
}

function parseInstant(what: string, value: unknown, timeZone: string): number {
  const t = parseUserTime(value, timeZone);
  if (t === undefined) throw bad(`${what} must be an ISO time such as "2025-06-01T07:30" (local) or "2025-06-01T05:30:00Z", got ${JSON.stringify(value)}`);
  return t;
}

/** Keys a timer object may carry; `next` and `expired` are what `list` adds and are ignored. */
const KEYS: Readonly<Record<string, readonly string[]>> = {
  once: ['at', 'do'],
  delay: ['minutes', 'period', 'at', 'do'],
  repeat: ['at', 'days', 'do'],
  duration: ['at', 'every', 'do', 'after', 'then', 'startDo', 'endDo'],
  raw: ['wire'],
};
const COMMON_KEYS = ['type', 'id', 'name', 'enabled', 'timezone', 'next', 'expired'];

export interface ParseContext {
  /** The zone for times without an offset (the node's). */
  timezone: string;
  now: number;
  caps?: Capabilities;
  /** Generates mIds (tests pass a fixed one). */
  newId?: () => string;
}

/**
 * A user timer object → a stored spec. Times in the past are refused for `once`; a `delay`
 * starts counting now unless `at` says when it ends.
 */
export function parseTimer(input: unknown, ctx: ParseContext): TimerSpec {
  if (!isObject(input)) throw bad(`a timer must be an object such as {"type":"once","at":"2025-06-01T07:30","do":{"switch":"on"}}, got ${JSON.stringify(input)?.slice(0, 60)}`);
  const type = typeof input.type === 'string' ? input.type.trim().toLowerCase() : input.type;
  if (typeof type !== 'string' || !(type in KEYS)) throw bad(`timer type must be "once", "repeat", "duration" or "delay", got ${JSON.stringify(input.type)}`);
  for (const key of Object.keys(input)) {
    if (!COMMON_KEYS.includes(key) && !KEYS[type].includes(key)) throw bad(`a ${type} timer has no "${key}" (it takes ${[...KEYS[type], 'enabled', 'name', 'id', 'timezone'].join(', ')})`);
  }
  let timezone = ctx.timezone;
  if (input.timezone !== undefined && input.timezone !== null && input.timezone !== '') {
    const tz = canonicalTimeZone(input.timezone);
    if (!tz) throw bad(`timezone ${JSON.stringify(input.timezone)} is not an IANA time zone such as "Europe/Berlin"`);
    timezone = tz;
  }
  let id: string;
  if (input.id !== undefined && input.id !== null && input.id !== '') {
    if (typeof input.id !== 'string' || !UUID.test(input.id)) throw bad(`id must be the timer's UUID (its mId), got ${JSON.stringify(input.id)}: use "name" for your own label`);
    id = input.id.toLowerCase();
  } else {
    id = (ctx.newId ?? randomUUID)();
  }
  let enabled = true;
  if (input.enabled !== undefined) {
    if (input.enabled === true || input.enabled === 1) enabled = true;
    else if (input.enabled === false || input.enabled === 0) enabled = false;
    else throw bad(`enabled must be true or false, got ${JSON.stringify(input.enabled)}`);
  }
  const base: SpecBase = { id, enabled, timezone };
  if (input.name !== undefined && input.name !== null && input.name !== '') {
    if (typeof input.name !== 'string' || input.name.length > 64) throw bad('name must be a text of at most 64 characters');
    base.name = input.name;
  }
  switch (type) {
    case 'once': {
      const at = parseInstant('a once timer\'s "at"', input.at, timezone);
      if (at <= ctx.now) throw bad(`a once timer's "at" (${formatLocalIso(timezone, at)}) is in the past`);
      return { ...base, type: 'once', at, do: parseAction(input.do, ctx.caps) };
    }
    case 'delay': {
      const minutes = wholeMinutes('a delay timer\'s "minutes"', input.minutes ?? input.period, 1, MAX_MINUTES);
      let at = ctx.now + minutes * MINUTE;
      if (input.at !== undefined && input.at !== null && input.at !== '') {
        at = parseInstant('a delay timer\'s "at"', input.at, timezone);
        if (at <= ctx.now) throw bad(`a delay timer's "at" (${formatLocalIso(timezone, at)}) is in the past`);
      }
      return { ...base, type: 'delay', minutes, at, do: parseAction(input.do, ctx.caps) };
    }
    case 'repeat': {
      const { hour, minute } = parseClock(input.at);
      return { ...base, type: 'repeat', hour, minute, days: parseDays(input.days), do: parseAction(input.do, ctx.caps) };
    }
    case 'duration': {
      if (ctx.caps?.family === 'multi') throw bad('multi-channel devices do not run loop (duration) timers');
      const at = input.at === undefined || input.at === null || input.at === '' ? Math.ceil(ctx.now / MINUTE) * MINUTE : parseInstant('a duration timer\'s "at"', input.at, timezone);
      const every = wholeMinutes('a duration timer\'s "every"', input.every, 1, MAX_MINUTES);
      const first = input.do ?? input.startDo;
      const second = input.then ?? input.endDo;
      const spec: DurationSpec = { ...base, type: 'duration', at, every, do: parseAction(first, ctx.caps) };
      if (second !== undefined || input.after !== undefined) {
        if (second === undefined) throw bad('an alternating duration timer needs "then", the action "after" minutes into each cycle');
        if (input.after === undefined) throw bad('an alternating duration timer needs "after": the minutes into each cycle when "then" runs');
        spec.after = wholeMinutes('a duration timer\'s "after"', input.after, 1, every - 1 < 1 ? 1 : every - 1);
        if (spec.after >= every) throw bad(`a duration timer's "after" (${spec.after}) must be shorter than "every" (${every})`);
        spec.then = parseAction(second, ctx.caps, 'then');
      }
      return spec;
    }
    default: {
      if (!isObject(input.wire)) throw bad('a raw timer needs "wire": the timer object exactly as the device takes it');
      return { ...base, id: typeof input.wire.mId === 'string' ? input.wire.mId : id, type: 'raw', wire: structuredClone(input.wire) };
    }
  }
}

/** Refuse an array the device cannot hold: more than 8 timers, more than one loop timer, a repeated id. */
export function checkLimits(specs: readonly TimerSpec[]): void {
  if (specs.length > MAX_TIMERS) throw bad(`too many timers: a device holds at most ${MAX_TIMERS} (this would make ${specs.length}); remove one first`);
  const loops = specs.filter((s) => s.type === 'duration' || (s.type === 'raw' && (s.wire.type === 'duration' || s.wire.coolkit_timer_type === 'duration'))).length;
  if (loops > MAX_LOOP_TIMERS) throw bad(`too many loop timers: a device runs at most ${MAX_LOOP_TIMERS} duration timer (this would make ${loops})`);
  const ids = new Set<string>();
  for (const s of specs) {
    if (ids.has(s.id)) throw bad(`two timers have the id ${s.id}`);
    ids.add(s.id);
  }
}

// ---- spec → wire --------------------------------------------------------------------------

/** The `do` object the device takes: `{"switch"}` (+ `mainSwitch`), or `{"switches":[{"switch","outlet"}]}`. */
export function wireAction(action: TimerAction): Params {
  if (action.outlet !== undefined) return { switches: [{ switch: action.switch, outlet: action.outlet }] };
  const out: Params = { switch: action.switch };
  if (action.mainSwitch) out.mainSwitch = action.mainSwitch;
  return out;
}

interface Occurrence {
  instant: number;
  /** Local wall time minus UTC at this occurrence, minutes (for a skipped time: the offset before the change). */
  offset: number;
}

/** The first local occurrence of a repeat timer strictly after `after`. */
export function nextRepeatOccurrence(spec: Pick<RepeatSpec, 'hour' | 'minute' | 'days' | 'timezone'>, after: number): Occurrence | undefined {
  if (spec.days.length === 0) return undefined;
  const today = toWall(spec.timezone, after);
  for (let i = -1; i <= 8; i++) {
    const date = addDays(today, i);
    if (!spec.days.includes(weekdayOf(date))) continue;
    const wall = { ...date, hour: spec.hour, minute: spec.minute, second: 0 };
    const instant = fromWall(spec.timezone, wall);
    if (instant > after) {
      const local = Date.UTC(date.year, date.month - 1, date.day, spec.hour, spec.minute);
      return { instant, offset: Math.round((local - instant) / MINUTE) };
    }
  }
  return undefined;
}

/** A repeat timer's schedule in UTC: minute of the day and weekdays, for a UTC offset (minutes). */
export function utcSchedule(hour: number, minute: number, days: readonly number[], offsetMinutes: number): { minuteOfDay: number; days: number[] } {
  const utc = hour * 60 + minute - offsetMinutes;
  const shift = Math.floor(utc / 1440);
  const minuteOfDay = ((utc % 1440) + 1440) % 1440;
  return { minuteOfDay, days: [...new Set(days.map((d) => (((d + shift) % 7) + 7) % 7))].sort((a, b) => a - b) };
}

/** The UTC cron of a repeat timer, for a local time and weekdays at a given UTC offset (minutes). */
export function repeatCron(hour: number, minute: number, days: readonly number[], offsetMinutes: number): string {
  const { minuteOfDay, days: utcDays } = utcSchedule(hour, minute, days, offsetMinutes);
  return `${minuteOfDay % 60} ${Math.floor(minuteOfDay / 60)} * * ${utcDays.join(',')}`;
}

/** When the device would next fire a repeat timer's cron made with `offset`, after `after`. */
function cronFiring(spec: Pick<RepeatSpec, 'hour' | 'minute' | 'days'>, offset: number, after: number): number | undefined {
  const { minuteOfDay, days } = utcSchedule(spec.hour, spec.minute, spec.days, offset);
  return nextUtcCron(minuteOfDay, days, after);
}

/** The last local occurrence of a repeat timer at or before `at`. */
export function previousRepeatOccurrence(spec: Pick<RepeatSpec, 'hour' | 'minute' | 'days' | 'timezone'>, at: number): Occurrence | undefined {
  const today = toWall(spec.timezone, at);
  for (let i = 1; i >= -8; i--) {
    const date = addDays(today, i);
    if (!spec.days.includes(weekdayOf(date))) continue;
    const instant = fromWall(spec.timezone, { ...date, hour: spec.hour, minute: spec.minute, second: 0 });
    if (instant <= at) {
      const local = Date.UTC(date.year, date.month - 1, date.day, spec.hour, spec.minute);
      return { instant, offset: Math.round((local - instant) / MINUTE) };
    }
  }
  return undefined;
}

/**
 * The UTC offset a repeat timer's cron must use at `now`: the offset of its next occurrence,
 * unless a cron made with it would fire once more before that occurrence (in autumn, a daily
 * 07:30 right after Saturday's 07:30 CEST would fire again at 06:30 UTC = 08:30 CEST): then the
 * previous occurrence's offset stays until that moment has passed (`nextRecheck` says when).
 */
export function repeatOffset(spec: RepeatSpec, now: number): number {
  const occ = nextRepeatOccurrence(spec, now);
  if (!occ) return zoneOffsetMinutes(spec.timezone, now);
  const firing = cronFiring(spec, occ.offset, now);
  if (firing !== undefined && firing < occ.instant) return previousRepeatOccurrence(spec, now)?.offset ?? occ.offset;
  return occ.offset;
}

/** One timer in the device's shape, at time `now` (repeat timers depend on the zone's current offset). */
export function wireTimer(spec: TimerSpec, now: number): WireTimer {
  const enabled = spec.enabled ? 1 : 0;
  switch (spec.type) {
    case 'once':
      return { coolkit_timer_type: 'once', at: new Date(spec.at).toISOString(), mId: spec.id, enabled, do: wireAction(spec.do), type: 'once' };
    case 'delay':
      return { coolkit_timer_type: 'delay', at: new Date(spec.at).toISOString(), period: String(spec.minutes), mId: spec.id, enabled, do: wireAction(spec.do), type: 'once' };
    case 'repeat': {
      const offset = repeatOffset(spec, now);
      return { coolkit_timer_type: 'repeat', at: repeatCron(spec.hour, spec.minute, spec.days, offset), mId: spec.id, enabled, do: wireAction(spec.do), type: 'repeat' };
    }
    case 'duration': {
      const at = `${new Date(spec.at).toISOString()} ${spec.every}${spec.after !== undefined ? ` ${spec.after}` : ''}`;
      const out: WireTimer = { coolkit_timer_type: 'duration', at, mId: spec.id, enabled };
      if (spec.then && spec.after !== undefined) {
        out.startDo = wireAction(spec.do);
        out.endDo = wireAction(spec.then);
      } else {
        out.do = wireAction(spec.do);
      }
      out.type = 'duration';
      return out;
    }
    case 'raw':
      return { ...structuredClone(spec.wire), mId: spec.id, enabled };
  }
}

/** The full array the device gets (always the whole list, §3.9). */
export function wireTimers(specs: readonly TimerSpec[], now: number): WireTimer[] {
  return specs.map((s) => wireTimer(s, now));
}

// ---- wire → spec (timers already on a device) -----------------------------------------------

function actionFromWire(v: unknown): TimerAction | undefined {
  try {
    return parseAction(v, undefined);
  } catch {
    return undefined;
  }
}

const CRON = /^(\d{1,2}) (\d{1,2}) \* \* ((?:[0-6](?:,[0-6])*)|\*)$/;

/**
 * A timer read from the device (or another app) as a spec, with local times in `timezone`.
 * Anything this module cannot describe becomes a `raw` spec that is kept as it is.
 */
export function timerFromWire(wire: unknown, timezone: string, now: number): TimerSpec | undefined {
  if (!isObject(wire)) return undefined;
  const id = typeof wire.mId === 'string' && wire.mId ? wire.mId : randomUUID();
  const base: SpecBase = { id, enabled: wire.enabled !== 0 && wire.enabled !== '0' && wire.enabled !== false, timezone };
  const raw: RawSpec = { ...base, type: 'raw', wire: structuredClone(wire) };
  const kind = typeof wire.coolkit_timer_type === 'string' ? wire.coolkit_timer_type : wire.type;
  const at = typeof wire.at === 'string' ? wire.at.trim() : '';
  if (kind === 'once' || kind === 'delay') {
    const t = Date.parse(at);
    const action = actionFromWire(wire.do);
    if (!Number.isFinite(t) || !action || !/(Z|[+-]\d\d:?\d\d)$/i.test(at)) return raw;
    if (kind === 'delay') {
      const minutes = Number(wire.period);
      if (!Number.isInteger(minutes) || minutes < 1) return raw;
      return { ...base, type: 'delay', minutes, at: t, do: action };
    }
    return { ...base, type: 'once', at: t, do: action };
  }
  if (kind === 'repeat') {
    const m = CRON.exec(at);
    const action = actionFromWire(wire.do);
    if (!m || !action || Number(m[1]) > 59 || Number(m[2]) > 23) return raw;
    const utcMinutes = Number(m[2]) * 60 + Number(m[1]);
    const utcDays = m[3] === '*' ? [0, 1, 2, 3, 4, 5, 6] : m[3].split(',').map(Number);
    // The local form, read with the offset in force at the cron's next UTC occurrence.
    const probe = nextUtcCron(utcMinutes, utcDays, now) ?? now;
    const offset = wallUtcMinutes(timezone, probe) - Math.floor(probe / MINUTE);
    const local = utcMinutes + offset;
    const shift = Math.floor(local / 1440);
    const inDay = ((local % 1440) + 1440) % 1440;
    const days = [...new Set(utcDays.map((d) => (((d + shift) % 7) + 7) % 7))].sort((a, b) => a - b);
    return { ...base, type: 'repeat', hour: Math.floor(inDay / 60), minute: inDay % 60, days, do: action };
  }
  if (kind === 'duration') {
    const parts = at.split(/\s+/);
    const t = Date.parse(parts[0] ?? '');
    const every = Number(parts[1]);
    if (!Number.isFinite(t) || !Number.isInteger(every) || every < 1 || parts.length > 3) return raw;
    if (parts.length === 3) {
      const after = Number(parts[2]);
      const first = actionFromWire(wire.startDo);
      const second = actionFromWire(wire.endDo);
      if (!Number.isInteger(after) || after < 1 || after >= every || !first || !second) return raw;
      return { ...base, type: 'duration', at: t, every, after, do: first, then: second };
    }
    const action = actionFromWire(wire.do);
    if (!action) return raw;
    return { ...base, type: 'duration', at: t, every, do: action };
  }
  return raw;
}

/** Minutes since the epoch of the local wall time at `t` (as if it were UTC). */
function wallUtcMinutes(timezone: string, t: number): number {
  const w = toWall(timezone, t);
  return Math.floor(Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute) / MINUTE);
}

/** The next instant after `after` matching a UTC cron `min hour * * days`. */
export function nextUtcCron(minuteOfDay: number, days: readonly number[], after: number): number | undefined {
  const d = new Date(after);
  for (let i = 0; i <= 8; i++) {
    const t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + i, Math.floor(minuteOfDay / 60), minuteOfDay % 60);
    if (t > after && days.includes(new Date(t).getUTCDay())) return t;
  }
  return undefined;
}

// ---- spec → user shape, next fire, re-push schedule --------------------------------------------

/** When the timer fires next (epoch ms), or undefined (disabled, or a once/delay time that has passed). */
export function nextFire(spec: TimerSpec, now: number): number | undefined {
  if (!spec.enabled) return undefined;
  switch (spec.type) {
    case 'once':
    case 'delay':
      return spec.at > now ? spec.at : undefined;
    case 'repeat':
      return nextRepeatOccurrence(spec, now)?.instant;
    case 'duration': {
      if (spec.at > now) return spec.at;
      const cycle = spec.every * MINUTE;
      const k = Math.floor((now - spec.at) / cycle);
      const candidates = [spec.at + k * cycle, spec.at + (k + 1) * cycle];
      if (spec.after !== undefined) candidates.push(spec.at + k * cycle + spec.after * MINUTE, spec.at + (k + 1) * cycle + spec.after * MINUTE);
      return Math.min(...candidates.filter((t) => t > now));
    }
    case 'raw':
      return undefined;
  }
}

/** A once or delay timer whose time has passed: it can never fire again. */
export function isExpired(spec: TimerSpec, now: number): boolean {
  return (spec.type === 'once' || spec.type === 'delay') && spec.at <= now;
}

/** The earliest next fire over all timers. */
export function nextFireOf(specs: readonly TimerSpec[], now: number): number | undefined {
  let best: number | undefined;
  for (const s of specs) {
    const t = nextFire(s, now);
    if (t !== undefined && (best === undefined || t < best)) best = t;
  }
  return best;
}

/**
 * When the wire array must be computed again because a repeat timer's UTC form changes: just
 * after the next offset change of a zone in use, or just after the last occurrence at the old
 * offset (and after any moment at which the new cron would fire spuriously, see `repeatOffset`).
 * Undefined when nothing changes.
 */
export function nextRecheck(specs: readonly TimerSpec[], now: number): number | undefined {
  let best: number | undefined;
  const consider = (t: number | undefined) => {
    if (t !== undefined && t > now && (best === undefined || t < best)) best = t;
  };
  const zones = new Set<string>();
  for (const s of specs) {
    if (s.type !== 'repeat') continue;
    zones.add(s.timezone);
    const first = nextRepeatOccurrence(s, now);
    if (!first) continue;
    // Held back now: the cron for the next occurrence would fire before it.
    const early = cronFiring(s, first.offset, now);
    if (early !== undefined && early < first.instant) consider(early + 1000);
    const second = nextRepeatOccurrence(s, first.instant);
    if (second && first.offset !== second.offset) {
      const spurious = cronFiring(s, second.offset, first.instant);
      consider(Math.max(first.instant, spurious !== undefined && spurious < second.instant ? spurious : 0) + 1000);
    }
  }
  for (const zone of zones) {
    const change = nextOffsetChange(zone, now);
    consider(change === undefined ? undefined : change + 1000);
  }
  return best;
}

function userAction(a: TimerAction): Params {
  const out: Params = { switch: a.switch };
  if (a.outlet !== undefined) out.outlet = a.outlet;
  if (a.mainSwitch !== undefined) out.mainSwitch = a.mainSwitch;
  return out;
}

/**
 * A spec in the shape a flow sends (what `list` returns), times local in the timer's zone with
 * their offset, plus `next` (the next fire, local) and `expired` for once timers that have run.
 */
export function userTimer(spec: TimerSpec, now: number): Params {
  const out: Params = { id: spec.id };
  if (spec.name !== undefined) out.name = spec.name;
  out.type = spec.type;
  const tz = spec.timezone;
  switch (spec.type) {
    case 'once':
      out.at = formatLocalIso(tz, spec.at);
      out.do = userAction(spec.do);
      break;
    case 'delay':
      out.minutes = spec.minutes;
      out.at = formatLocalIso(tz, spec.at);
      out.do = userAction(spec.do);
      break;
    case 'repeat':
      out.at = `${pad2(spec.hour)}:${pad2(spec.minute)}`;
      out.days = spec.days.map((d) => DAY_NAMES[d]);
      out.do = userAction(spec.do);
      break;
    case 'duration':
      out.at = formatLocalIso(tz, spec.at);
      out.every = spec.every;
      out.do = userAction(spec.do);
      if (spec.after !== undefined && spec.then) {
        out.after = spec.after;
        out.then = userAction(spec.then);
      }
      break;
    case 'raw':
      out.wire = structuredClone(spec.wire);
      break;
  }
  out.enabled = spec.enabled;
  out.timezone = tz;
  const next = nextFire(spec, now);
  out.next = next === undefined ? null : formatLocalIso(tz, next);
  if (isExpired(spec, now)) out.expired = true;
  return out;
}

/** Merge an update into a timer's user shape (a change of minutes restarts a countdown). */
export function mergeUserTimer(current: Params, patch: Record<string, unknown>): Params {
  const merged: Params = { ...current, ...patch };
  delete merged.next;
  delete merged.expired;
  if (patch.type !== undefined && patch.type !== current.type) {
    // A new type keeps only what the patch says, plus the identity.
    const fresh: Params = { ...patch, id: current.id };
    if (current.name !== undefined && patch.name === undefined) fresh.name = current.name;
    if (current.timezone !== undefined && patch.timezone === undefined) fresh.timezone = current.timezone;
    if (patch.do === undefined && current.do !== undefined) fresh.do = current.do;
    if (patch.enabled === undefined) fresh.enabled = current.enabled;
    return fresh;
  }
  if (merged.type === 'delay' && (patch.minutes !== undefined || patch.period !== undefined) && patch.at === undefined) delete merged.at;
  return merged;
}

// ---- comparing arrays ------------------------------------------------------------------------

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (isObject(v)) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) out[k] = canonical(v[k]);
    return out;
  }
  return v;
}

/** Whether the device already holds this array (key order ignored; no timers = `[]`, `0` or absent). */
export function sameWire(a: unknown, b: unknown): boolean {
  const norm = (x: unknown) => (Array.isArray(x) ? x : []);
  return JSON.stringify(canonical(norm(a))) === JSON.stringify(canonical(norm(b)));
}

/** Epoch minutes helper for tests and the simulator. */
export const MINUTE_MS = MINUTE;
