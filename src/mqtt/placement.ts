/**
 * Which instance should hold a device (pure). The rule, applied at every `/dispatch/device`:
 *
 * 1. the live instance the device was last on (affinity: no needless moves), else
 * 2. the live instance with the fewest devices, counting those it reported in its presence
 *    message plus the devices this dispatcher sent it recently that have not shown up yet (so a
 *    herd of devices dispatching at once is spread, not all sent to the same "least loaded" one),
 *    ties broken by instance id.
 */

export interface InstanceInfo {
  id: string;
  online: boolean;
  /** Where devices connect (the instance's advertised host and port). */
  host: string;
  port: number;
  /** Devices the instance holds (from its presence message). */
  devices: number;
  /** ms epoch of its last presence message. */
  ts: number;
}

export interface PlacementInput {
  deviceid: string;
  /** The instance that held the device last (from its retained `online` message), if known. */
  lastOwner?: string;
  instances: Iterable<InstanceInfo>;
  /** Extra load per instance id (recent assignments not yet reflected in `devices`). */
  pending?: ReadonlyMap<string, number>;
}

export function chooseInstance(input: PlacementInput): InstanceInfo | undefined {
  let best: InstanceInfo | undefined;
  let bestLoad = Infinity;
  for (const inst of input.instances) {
    if (!inst.online) continue;
    if (input.lastOwner && inst.id === input.lastOwner) return inst;
    const load = inst.devices + (input.pending?.get(inst.id) ?? 0);
    if (load < bestLoad || (load === bestLoad && best !== undefined && inst.id < best.id)) {
      best = inst;
      bestLoad = load;
    }
  }
  return best;
}

/**
 * Recent dispatch decisions, so the load of an instance counts devices sent to it that have not
 * connected yet. Entries expire after `ttlMs` or when the device shows up on that instance.
 */
export class RecentAssignments {
  private readonly byDevice = new Map<string, { instance: string; at: number }>();

  constructor(private readonly ttlMs = 30_000, private readonly max = 100_000) {}

  note(deviceid: string, instance: string, now = Date.now()): void {
    this.byDevice.delete(deviceid);
    if (this.byDevice.size >= this.max) {
      const oldest = this.byDevice.keys().next().value;
      if (oldest !== undefined) this.byDevice.delete(oldest);
    }
    this.byDevice.set(deviceid, { instance, at: now });
  }

  /** The device connected somewhere: it is counted in that instance's own number from now on. */
  arrived(deviceid: string): void {
    this.byDevice.delete(deviceid);
  }

  /** Per-instance count of pending assignments (expired ones are dropped). */
  pending(now = Date.now()): Map<string, number> {
    const out = new Map<string, number>();
    for (const [deviceid, entry] of this.byDevice) {
      if (entry.at + this.ttlMs <= now) {
        this.byDevice.delete(deviceid);
        continue;
      }
      out.set(entry.instance, (out.get(entry.instance) ?? 0) + 1);
    }
    return out;
  }

  get size(): number {
    return this.byDevice.size;
  }
}
