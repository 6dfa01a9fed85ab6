/**
 * Device state handling: how a simulated device folds incoming params into its own state.
 *
 * Params are transparent key/value data (protocol §3.6), so a command only replaces the keys it
 * carries. The one structured exception is the multi-channel `switches` array (§3.12): servers
 * and apps send only the changed outlets (`[{"outlet":2,"switch":"on"}]`), so those entries are
 * merged into the existing array by `outlet` rather than replacing it.
 */

export type Params = Record<string, unknown>;

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Merge `incoming` into `state` in place. Values are deep-copied so callers cannot alias state. */
export function mergeParams(state: Params, incoming: Params): Params {
  for (const [key, value] of Object.entries(incoming)) {
    if (key === 'switches' && Array.isArray(value) && Array.isArray(state.switches)) {
      state.switches = mergeByOutlet(state.switches, value);
    } else {
      state[key] = structuredClone(value);
    }
  }
  return state;
}

/**
 * Merge per-outlet entries: an entry whose `outlet` already exists updates that entry's fields;
 * a new outlet is appended. Entries without a numeric `outlet` cannot be matched, so they are
 * appended as-is (the device would not know which channel they mean either).
 */
export function mergeByOutlet(current: unknown[], incoming: unknown[]): unknown[] {
  const result = current.map((entry) => structuredClone(entry));
  for (const entry of incoming) {
    const copy = structuredClone(entry);
    const outlet = isPlainObject(copy) ? copy.outlet : undefined;
    const index =
      typeof outlet === 'number' ? result.findIndex((e) => isPlainObject(e) && e.outlet === outlet) : -1;
    const existing = index >= 0 ? result[index] : undefined;
    if (isPlainObject(existing) && isPlainObject(copy)) {
      result[index] = { ...existing, ...copy };
    } else {
      result.push(copy);
    }
  }
  return result;
}
