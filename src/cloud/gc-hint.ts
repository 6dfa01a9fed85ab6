/**
 * A one-time hint for busy installations: with Node's default young generation (16 MiB
 * semi-space), the per-socket objects of ws and net that live until a device's next frame are
 * promoted at nearly every scavenge once hundreds of devices report, and the GC pauses show as
 * slow acks (README, "Performance"). `--max-semi-space-size` can only be set when Node starts.
 */

/** Devices online from which the hint is worth giving. */
export const GC_HINT_DEVICES = 300;

/** Whether `--max-semi-space-size` (or V8's `--max_semi_space_size`) is among the Node options. */
export function hasSemiSpaceOption(execArgv: readonly string[], nodeOptions: string | undefined): boolean {
  const all = [...execArgv, ...(nodeOptions ?? '').split(/\s+/)];
  return all.some((a) => /^--max[-_]semi[-_]space[-_]size(=|$)/.test(a));
}

/**
 * Whether the hint is due: at least `GC_HINT_DEVICES` online and Node started without a
 * semi-space size. (The text is the node's, in its locales.)
 */
export function gcHintDue(online: number, execArgv: readonly string[], nodeOptions: string | undefined): boolean {
  return online >= GC_HINT_DEVICES && !hasSemiSpaceOption(execArgv, nodeOptions);
}
