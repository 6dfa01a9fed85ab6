/**
 * Merging device reports into stored state. Reports are partial (a 4CH device may report one
 * outlet), so state is merged, never replaced; per-outlet arrays are merged by `outlet`.
 */
import type { Params } from './types';

/** Params whose value is an array of per-outlet objects (`{outlet: n, ...}`). */
export const OUTLET_ARRAYS: ReadonlySet<string> = new Set(['switches', 'configure', 'pulses']);

type OutletEntry = { outlet: number } & Record<string, unknown>;

function isOutletEntry(v: unknown): v is OutletEntry {
  return v !== null && typeof v === 'object' && typeof (v as { outlet?: unknown }).outlet === 'number';
}

/** Merge per-outlet entries: an entry replaces fields of the same outlet, others are kept. */
export function mergeOutletArray(current: unknown, incoming: unknown[]): unknown[] {
  if (!Array.isArray(current) || !incoming.every(isOutletEntry)) return incoming;
  const byOutlet = new Map<number, OutletEntry>();
  for (const entry of current) if (isOutletEntry(entry)) byOutlet.set(entry.outlet, entry);
  for (const entry of incoming as OutletEntry[]) {
    byOutlet.set(entry.outlet, { ...(byOutlet.get(entry.outlet) ?? {}), ...entry });
  }
  return [...byOutlet.values()].sort((a, b) => a.outlet - b.outlet);
}

/** Merge a partial report into the stored state; returns the same object, updated in place. */
export function mergeParams(state: Params, report: Params): Params {
  for (const key of Object.keys(report)) {
    if (key === '__proto__' || key === 'constructor' || key === 'prototype') continue;
    const value = report[key];
    state[key] = OUTLET_ARRAYS.has(key) && Array.isArray(value) ? mergeOutletArray(state[key], value) : value;
  }
  return state;
}

/**
 * A deep copy of a JSON value (what a device report or stored state is): plain objects, arrays
 * and primitives. Several times faster than `structuredClone` for the small objects a report
 * holds, and it runs once or twice per report on the update path.
 */
export function cloneJson<T>(value: T): T {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    const out = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) out[i] = cloneJson(value[i] as unknown);
    return out as T;
  }
  const out: Record<string, unknown> = {};
  for (const key in value) {
    if (Object.prototype.hasOwnProperty.call(value, key)) out[key] = cloneJson((value as Record<string, unknown>)[key]);
  }
  return out as T;
}
