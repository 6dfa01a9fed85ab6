/**
 * The telemetry and system metrics of the telemetry API, their units and bit masks, and the
 * readings one device report carries. A report carries only what the device sent: a TH16 that
 * reports `{"switch":"on"}` has no telemetry, even though its full state has a temperature.
 */
import type { Normalised } from '../../protocol/normalise';
import type { Params } from '../../protocol/types';

export const TELEMETRY_METRICS = ['temperature', 'humidity', 'power', 'voltage', 'current', 'rssi'] as const;
export type TelemetryMetric = (typeof TELEMETRY_METRICS)[number];

export const SYSTEM_METRICS = ['cpu_usage', 'memory_usage', 'disk_usage', 'active_connections'] as const;
export type SystemMetric = (typeof SYSTEM_METRICS)[number];

export const UNITS: Readonly<Record<TelemetryMetric, string>> = {
  temperature: '°C',
  humidity: '%',
  power: 'W',
  voltage: 'V',
  current: 'A',
  rssi: 'dBm',
};

/** The device param that carries each metric (the value itself comes from the normalised state). */
const PARAM_OF: Readonly<Record<TelemetryMetric, string>> = {
  temperature: 'currentTemperature',
  humidity: 'currentHumidity',
  power: 'power',
  voltage: 'voltage',
  current: 'current',
  rssi: 'rssi',
};

export const TELEMETRY_BIT: Readonly<Record<TelemetryMetric, number>> = Object.fromEntries(TELEMETRY_METRICS.map((m, i) => [m, 1 << i])) as Record<TelemetryMetric, number>;
export const SYSTEM_BIT: Readonly<Record<SystemMetric, number>> = Object.fromEntries(SYSTEM_METRICS.map((m, i) => [m, 1 << i])) as Record<SystemMetric, number>;
export const ALL_TELEMETRY = (1 << TELEMETRY_METRICS.length) - 1;
export const ALL_SYSTEM = (1 << SYSTEM_METRICS.length) - 1;

export function isTelemetryMetric(name: unknown): name is TelemetryMetric {
  return typeof name === 'string' && (TELEMETRY_METRICS as readonly string[]).includes(name);
}

export function isSystemMetric(name: unknown): name is SystemMetric {
  return typeof name === 'string' && (SYSTEM_METRICS as readonly string[]).includes(name);
}

/** One reading as sent on the wire. */
export interface Reading {
  value: number;
  unit: string;
  timestamp: string;
}

/** The readings of one report: values by metric plus the mask of metrics present. */
export interface ReportReadings {
  mask: number;
  values: Partial<Record<TelemetryMetric, number>>;
}

/**
 * The metrics a report carries with a usable value: the param was in this report and its
 * normalised value is a number (never `null`: unavailable sensors send no telemetry).
 */
export function readingsOf(params: Params, normalized: Normalised): ReportReadings {
  let mask = 0;
  const values: Partial<Record<TelemetryMetric, number>> = {};
  for (const metric of TELEMETRY_METRICS) {
    if (!(PARAM_OF[metric] in params)) continue;
    const v = normalized[metric];
    if (typeof v !== 'number' || !Number.isFinite(v)) continue;
    values[metric] = v;
    mask |= TELEMETRY_BIT[metric];
  }
  return { mask, values };
}

/** The `telemetry` object of a message: the metrics in `mask`, in the table's order. */
export function telemetryObject(readings: Partial<Record<TelemetryMetric, Reading>>, mask: number): Record<string, Reading> {
  const out: Record<string, Reading> = {};
  for (const metric of TELEMETRY_METRICS) {
    if (mask & TELEMETRY_BIT[metric]) {
      const r = readings[metric];
      if (r) out[metric] = r;
    }
  }
  return out;
}

export function maskOf<M extends string>(names: readonly M[], bits: Readonly<Record<M, number>>): number {
  let mask = 0;
  for (const n of names) mask |= bits[n];
  return mask;
}

export function namesOf<M extends string>(mask: number, all: readonly M[], bits: Readonly<Record<M, number>>): M[] {
  return all.filter((m) => (mask & bits[m]) !== 0);
}
