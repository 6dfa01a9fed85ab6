/**
 * Subscription filters: what a client may ask for on each channel, normalised into a
 * `SubscriptionSpec` the fan-out engine matches with set lookups and bit masks.
 *
 * The seed document puts filters in two places: its JavaScript client spreads them at the top
 * level of the subscribe message (`{type, channel, device_id, severity}`), its Python client
 * and several examples nest them in `filters`. Both are accepted; `filters` wins on a clash.
 */
import {
  ALL_SYSTEM,
  ALL_TELEMETRY,
  isSystemMetric,
  isTelemetryMetric,
  maskOf,
  SYSTEM_BIT,
  SYSTEM_METRICS,
  TELEMETRY_BIT,
  TELEMETRY_METRICS,
  type SystemMetric,
  type TelemetryMetric,
} from './metrics';

export const CHANNELS = ['telemetry', 'alerts', 'devices', 'system'] as const;
export type Channel = (typeof CHANNELS)[number];

export const SEVERITIES = ['critical', 'warning', 'info'] as const;
export type Severity = (typeof SEVERITIES)[number];

export const DEVICE_STATUSES = ['online', 'offline', 'warning'] as const;
export type DeviceStatus = (typeof DEVICE_STATUSES)[number];

/** Device ids per subscription at most. */
export const MAX_DEVICES_PER_SUBSCRIPTION = 50;
/** The shortest and longest window of a `frequency`. */
export const MIN_PERIOD_MS = 1000;
export const MAX_PERIOD_MS = 24 * 3600 * 1000;
/** The system channel's period when the client gives none (the seed's example uses 30s). */
export const DEFAULT_SYSTEM_PERIOD_MS = 30_000;

export function isChannel(v: unknown): v is Channel {
  return typeof v === 'string' && (CHANNELS as readonly string[]).includes(v);
}

/** A refusal with the telemetry API's error code. */
export interface FilterError {
  ok: false;
  error: string;
  message: string;
}

export interface SubscriptionSpec {
  channel: Channel;
  /** Device keys (`d:<deviceid>` or `i:<index>`), or null for every device. */
  devices: string[] | null;
  /** Telemetry or system metrics wanted (bit mask). */
  metricMask: number;
  /** 0 = real-time; otherwise the window length in ms. */
  periodMs: number;
  severities: ReadonlySet<string> | null;
  alertTypes: ReadonlySet<string> | null;
  statusTypes: ReadonlySet<string> | null;
  /** What the subscription ended up as, for the confirmation message. */
  echo: Record<string, unknown>;
}

/** `real-time`, `5s`, `2m`, `1h`, `1500ms` (whole seconds only), or a number of seconds. */
export function parseFrequency(value: unknown): { ok: true; periodMs: number; label: string } | FilterError {
  if (value === undefined || value === null) return { ok: true, periodMs: 0, label: 'real-time' };
  let ms: number;
  if (typeof value === 'number') {
    ms = value * 1000;
  } else if (typeof value === 'string') {
    const text = value.trim().toLowerCase();
    if (text === 'real-time' || text === 'realtime' || text === 'real_time') return { ok: true, periodMs: 0, label: 'real-time' };
    const m = /^(\d{1,6})\s*(ms|s|m|h)?$/.exec(text);
    if (!m) return bad('invalid_filter', `frequency must be "real-time" or a period such as "5s", "1m", "1h" (got ${JSON.stringify(value).slice(0, 40)})`);
    const unit = m[2] ?? 's';
    ms = Number(m[1]) * (unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000);
  } else {
    return bad('invalid_filter', 'frequency must be a string or a number of seconds');
  }
  if (!Number.isFinite(ms) || ms < MIN_PERIOD_MS || ms > MAX_PERIOD_MS || ms % 1000 !== 0) {
    return bad('invalid_filter', `frequency must be whole seconds between 1s and 24h (got ${JSON.stringify(value).slice(0, 40)})`);
  }
  return { ok: true, periodMs: ms, label: labelOf(ms) };
}

export function labelOf(ms: number): string {
  if (ms === 0) return 'real-time';
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return `${ms / 1000}s`;
}

/**
 * A device key from what a client sent: an integer is the device's index in this node's device
 * list (`i:3`), a 10-hex-character string its eWeLink deviceid (`d:1000aa0001`). A numeric
 * string counts as an index.
 */
export function deviceKey(value: unknown): string | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 1 && value <= 2 ** 31 ? `i:${value}` : undefined;
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (/^[0-9a-fA-F]{10}$/.test(text) && !/^\d{1,9}$/.test(text)) return `d:${text.toLowerCase()}`;
  if (/^\d{1,9}$/.test(text)) {
    const n = Number(text);
    return n >= 1 ? `i:${n}` : undefined;
  }
  return undefined;
}

/** Device keys of a `device_id` filter; null = every device. */
export function deviceKeys(value: unknown): { ok: true; keys: string[] | null } | FilterError {
  if (value === undefined || value === null || value === '*' || value === 'all') return { ok: true, keys: null };
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0) return { ok: true, keys: null };
  if (list.length > MAX_DEVICES_PER_SUBSCRIPTION) return bad('invalid_filter', `device_id lists at most ${MAX_DEVICES_PER_SUBSCRIPTION} devices`);
  const keys: string[] = [];
  for (const item of list) {
    const key = deviceKey(item);
    if (!key) return bad('invalid_filter', `device_id ${JSON.stringify(item).slice(0, 40)} is neither a device number (1, 2, ...) nor a 10-character deviceid`);
    if (!keys.includes(key)) keys.push(key);
  }
  return { ok: true, keys };
}

function asList(value: unknown): unknown[] | undefined {
  if (value === undefined || value === null) return undefined;
  return Array.isArray(value) ? value : [value];
}

function stringSet(name: string, value: unknown, allowed?: readonly string[]): { ok: true; set: Set<string> | null } | FilterError {
  const list = asList(value);
  if (!list || list.length === 0) return { ok: true, set: null };
  const set = new Set<string>();
  for (const item of list) {
    if (typeof item !== 'string' || item === '') return bad('invalid_filter', `${name} must be a string or a list of strings`);
    if (allowed && !allowed.includes(item)) return bad('invalid_filter', `${name} "${item.slice(0, 32)}" is not one of ${allowed.join(', ')}`);
    set.add(item);
  }
  return { ok: true, set };
}

/** Which filter keys each channel takes. */
const CHANNEL_FILTERS: Readonly<Record<Channel, readonly string[]>> = {
  telemetry: ['device_id', 'metrics', 'frequency'],
  alerts: ['device_id', 'severity', 'alert_type'],
  devices: ['device_id', 'status_types'],
  system: ['metrics', 'frequency'],
};

export const FILTER_KEYS = ['device_id', 'metrics', 'frequency', 'severity', 'alert_type', 'status_types'] as const;

/**
 * Turn a validated subscribe message into a spec. `pathChannel` is the channel of a per-channel
 * endpoint (`/ws/alerts`): the message may leave `channel` out there, and may not name another.
 */
export function subscriptionSpec(msg: Record<string, unknown>, pathChannel?: Channel): { ok: true; spec: SubscriptionSpec } | FilterError {
  const ch = channelOf(msg, pathChannel);
  if (!ch.ok) return ch;
  const channel = ch.channel;
  const nested = (msg.filters ?? {}) as Record<string, unknown>;
  const f: Record<string, unknown> = {};
  for (const key of FILTER_KEYS) {
    const v = nested[key] !== undefined ? nested[key] : msg[key];
    if (v !== undefined) f[key] = v;
  }
  for (const key of Object.keys(f)) {
    if (!CHANNEL_FILTERS[channel].includes(key)) return bad('invalid_filter', `the ${channel} channel has no ${key} filter (it takes ${CHANNEL_FILTERS[channel].join(', ')})`);
  }
  const echo: Record<string, unknown> = {};
  const devices = deviceKeys(f.device_id);
  if (!devices.ok) return devices;
  if (f.device_id !== undefined) echo.device_id = f.device_id;

  let metricMask = 0;
  if (channel === 'telemetry' || channel === 'system') {
    const list = asList(f.metrics);
    if (!list || list.length === 0) {
      metricMask = channel === 'telemetry' ? ALL_TELEMETRY : ALL_SYSTEM;
    } else {
      const valid = channel === 'telemetry' ? isTelemetryMetric : isSystemMetric;
      const names = channel === 'telemetry' ? TELEMETRY_METRICS : SYSTEM_METRICS;
      for (const m of list) {
        if (!valid(m)) return bad('invalid_filter', `metric ${JSON.stringify(m).slice(0, 40)} is not one of ${names.join(', ')}`);
      }
      metricMask = channel === 'telemetry'
        ? maskOf(list as TelemetryMetric[], TELEMETRY_BIT)
        : maskOf(list as SystemMetric[], SYSTEM_BIT);
      echo.metrics = (names as readonly string[]).filter((n) => list.includes(n));
    }
  }

  let periodMs = 0;
  if (channel === 'telemetry' || channel === 'system') {
    const freq = parseFrequency(f.frequency);
    if (!freq.ok) return freq;
    periodMs = freq.periodMs;
    // The system channel is sampled, never pushed: "real-time" there means every second.
    if (channel === 'system') periodMs = f.frequency === undefined ? DEFAULT_SYSTEM_PERIOD_MS : Math.max(periodMs, MIN_PERIOD_MS);
    echo.frequency = labelOf(periodMs);
  }

  const sev = stringSet('severity', f.severity, SEVERITIES);
  if (!sev.ok) return sev;
  if (sev.set) echo.severity = [...sev.set];
  const types = stringSet('alert_type', f.alert_type);
  if (!types.ok) return types;
  if (types.set) echo.alert_type = [...types.set];
  const statuses = stringSet('status_types', f.status_types, DEVICE_STATUSES);
  if (!statuses.ok) return statuses;
  if (statuses.set) echo.status_types = [...statuses.set];

  return {
    ok: true,
    spec: { channel, devices: devices.keys, metricMask, periodMs, severities: sev.set, alertTypes: types.set, statusTypes: statuses.set, echo },
  };
}

export function channelOf(msg: Record<string, unknown>, pathChannel?: Channel): { ok: true; channel: Channel } | FilterError {
  const given = msg.channel;
  if (given === undefined) {
    if (pathChannel) return { ok: true, channel: pathChannel };
    return bad('invalid_message', `channel is required (${CHANNELS.join(', ')})`);
  }
  if (!isChannel(given)) return bad('unknown_channel', `unknown channel ${JSON.stringify(given).slice(0, 40)}: use ${CHANNELS.join(', ')}`);
  if (pathChannel && given !== pathChannel) return bad('channel_not_available', `this endpoint serves the ${pathChannel} channel only; connect to the main endpoint for ${given}`);
  return { ok: true, channel: given };
}

function bad(error: string, message: string): FilterError {
  return { ok: false, error, message };
}
