/**
 * Local wall time in an IANA time zone, with nothing but the Intl API: offsets, wall time ⇄
 * instant (with the "compatible" rule for times that do not exist or exist twice around a
 * daylight-saving change), the next offset change of a zone, and ISO strings with the local
 * offset. Devices keep their timers in UTC (coolkit-uiid-protocol "Timer Rules"); users think
 * in local time, so every conversion between the two goes through here.
 */

export interface WallTime {
  year: number;
  /** 1..12 */
  month: number;
  /** 1..31 */
  day: number;
  /** 0..23 */
  hour: number;
  minute: number;
  second: number;
  /** 0..6, Sunday = 0 (as in cron). */
  weekday: number;
}

const MINUTE = 60_000;
const DAY = 86_400_000;
const WEEKDAYS: Readonly<Record<string, number>> = { Sun: 0, Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6 };
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      weekday: 'short',
      era: 'short',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** The zone Node-RED runs in (`TZ`, or the system's), e.g. `Europe/Berlin`; `UTC` if unknown. */
export function systemTimeZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch {
    return 'UTC';
  }
}

/** The zone's canonical name, or undefined when Intl does not know it. */
export function canonicalTimeZone(timeZone: unknown): string | undefined {
  if (typeof timeZone !== 'string' || timeZone.trim() === '') return undefined;
  try {
    return new Intl.DateTimeFormat('en-US', { timeZone: timeZone.trim() }).resolvedOptions().timeZone;
  } catch {
    return undefined;
  }
}

/** Wall time of an instant in a zone (seconds precision). */
export function toWall(timeZone: string, epochMs: number): WallTime {
  const parts = formatter(timeZone).formatToParts(new Date(epochMs));
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? '';
  let year = Number(get('year'));
  if (/^B/i.test(get('era'))) year = 1 - year;
  return {
    year,
    month: Number(get('month')),
    day: Number(get('day')),
    hour: Number(get('hour')) % 24,
    minute: Number(get('minute')),
    second: Number(get('second')),
    weekday: WEEKDAYS[get('weekday')] ?? 0,
  };
}

/** Wall fields read as if they were UTC (a "local epoch"). */
function wallAsUtc(w: Pick<WallTime, 'year' | 'month' | 'day' | 'hour' | 'minute'> & { second?: number }): number {
  const d = new Date(0);
  d.setUTCFullYear(w.year, w.month - 1, w.day);
  d.setUTCHours(w.hour, w.minute, w.second ?? 0, 0);
  return d.getTime();
}

/** UTC offset of the zone at an instant, in minutes (Berlin in summer: 120; New York in winter: -300). */
export function zoneOffsetMinutes(timeZone: string, epochMs: number): number {
  const whole = Math.floor(epochMs / 1000) * 1000;
  return Math.round((wallAsUtc(toWall(timeZone, whole)) - whole) / MINUTE);
}

/**
 * The instant of a wall time in a zone. A time skipped by a spring-forward change is moved on by
 * the gap (02:30 → 03:30); a time that occurs twice in autumn is the earlier one. This is the
 * "compatible" rule of RFC 5545 and of JavaScript Temporal.
 */
export function fromWall(timeZone: string, wall: { year: number; month: number; day: number; hour: number; minute: number; second?: number }): number {
  const local = wallAsUtc(wall);
  const before = zoneOffsetMinutes(timeZone, local - DAY);
  const after = zoneOffsetMinutes(timeZone, local + DAY);
  const candidates = [local - before * MINUTE, local - after * MINUTE]
    .filter((t) => zoneOffsetMinutes(timeZone, t) * MINUTE === local - t)
    .sort((a, b) => a - b);
  if (candidates.length > 0) return candidates[0];
  // In a gap: read the wall time with the offset in force before the change.
  return local - before * MINUTE;
}

/**
 * The first instant after `fromMs` at which the zone's offset differs from its offset at
 * `fromMs`, or undefined when there is none within `horizonMs` (zones without daylight saving).
 * Precise to the second.
 */
export function nextOffsetChange(timeZone: string, fromMs: number, horizonMs = 400 * DAY): number | undefined {
  const base = zoneOffsetMinutes(timeZone, fromMs);
  let lo = fromMs;
  let hi: number | undefined;
  for (let t = fromMs + DAY / 2; t <= fromMs + horizonMs; t += DAY / 2) {
    if (zoneOffsetMinutes(timeZone, t) !== base) {
      hi = t;
      break;
    }
    lo = t;
  }
  if (hi === undefined) return undefined;
  let loS = Math.floor(lo / 1000);
  let hiS = Math.floor(hi / 1000);
  while (hiS - loS > 1) {
    const mid = Math.floor((loS + hiS) / 2);
    if (zoneOffsetMinutes(timeZone, mid * 1000) === base) loS = mid;
    else hiS = mid;
  }
  return hiS * 1000;
}

function pad(n: number, width = 2): string {
  const s = String(Math.abs(n)).padStart(width, '0');
  return n < 0 ? `-${s}` : s;
}

/** `2025-06-01T07:30:00+02:00`: the wall time in the zone with its offset (seconds precision). */
export function formatLocalIso(timeZone: string, epochMs: number): string {
  const w = toWall(timeZone, epochMs);
  const offset = zoneOffsetMinutes(timeZone, epochMs);
  const sign = offset < 0 ? '-' : '+';
  const abs = Math.abs(offset);
  return `${pad(w.year, 4)}-${pad(w.month)}-${pad(w.day)}T${pad(w.hour)}:${pad(w.minute)}:${pad(w.second)}${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

/**
 * Parse a time a user gave: an ISO 8601 date-time with `Z` or an offset is that instant; one
 * without is a wall time in `timeZone`; a number is epoch milliseconds. Undefined when the text
 * is not such a time or names a date that does not exist (2025-02-30).
 */
export function parseUserTime(value: unknown, timeZone: string): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (value instanceof Date) return Number.isFinite(value.getTime()) ? value.getTime() : undefined;
  if (typeof value !== 'string') return undefined;
  const m = ISO.exec(value.trim());
  if (!m) return undefined;
  const [, y, mo, d, h = '00', mi = '00', s = '00', frac = '', zone] = m;
  const wall = { year: Number(y), month: Number(mo), day: Number(d), hour: Number(h), minute: Number(mi), second: Number(s) };
  if (wall.month < 1 || wall.month > 12 || wall.day < 1 || wall.hour > 23 || wall.minute > 59 || wall.second > 59) return undefined;
  const probe = new Date(Date.UTC(wall.year, wall.month - 1, wall.day));
  if (probe.getUTCDate() !== wall.day || probe.getUTCMonth() !== wall.month - 1) return undefined;
  const ms = frac ? Math.round(Number(`0.${frac}`) * 1000) : 0;
  if (zone) {
    let offset = 0;
    if (zone.toUpperCase() !== 'Z') {
      const digits = zone.replace(':', '');
      const hours = Number(digits.slice(1, 3));
      const minutes = digits.length > 3 ? Number(digits.slice(3, 5)) : 0;
      if (hours > 23 || minutes > 59) return undefined;
      offset = (zone.startsWith('-') ? -1 : 1) * (hours * 60 + minutes);
    }
    return wallAsUtc(wall) - offset * MINUTE + ms;
  }
  return fromWall(timeZone, wall) + ms;
}

/** Add whole days to a calendar date (no time zone involved). */
export function addDays(date: { year: number; month: number; day: number }, days: number): { year: number; month: number; day: number } {
  const d = new Date(0);
  d.setUTCFullYear(date.year, date.month - 1, date.day + days);
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate() };
}

/** Weekday (Sunday = 0) of a calendar date. */
export function weekdayOf(date: { year: number; month: number; day: number }): number {
  const d = new Date(0);
  d.setUTCFullYear(date.year, date.month - 1, date.day);
  return d.getUTCDay();
}
