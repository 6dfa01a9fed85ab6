/**
 * Device state handling: how a simulated device folds incoming params into its own state.
 *
 * Params are transparent key/value data (protocol §3.6), so a command only replaces the keys it
 * carries. The structured exceptions are the multi-channel per-outlet arrays `switches`,
 * `configure` and `pulses` (§3.12): servers and apps send only the changed outlets
 * (`[{"outlet":2,"switch":"on"}]`), so those entries are merged into the existing array by
 * `outlet` rather than replacing it.
 */

export type Params = Record<string, unknown>;

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Merge `incoming` into `state` in place. Values are deep-copied so callers cannot alias state. */
/** Per-outlet arrays merged by `outlet`. */
export const PER_OUTLET_KEYS: readonly string[] = ['switches', 'configure', 'pulses'];

export function mergeParams(state: Params, incoming: Params): Params {
  for (const [key, value] of Object.entries(incoming)) {
    const current = state[key];
    if (PER_OUTLET_KEYS.includes(key) && Array.isArray(value) && Array.isArray(current)) {
      state[key] = mergeByOutlet(current, value);
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
