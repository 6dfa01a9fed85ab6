/**
 * The MQTT topic tree of the backbone (pure: builders and a parser, no I/O).
 *
 *   <prefix>/<deviceid>/state          retained  {params, report, normalized, instance, ts}
 *   <prefix>/<deviceid>/online         retained  {online, instance, reason, ts}
 *   <prefix>/<deviceid>/capabilities   retained  {model, romVersion, name, capabilities, instance, ts}
 *   <prefix>/<deviceid>/set            commands (any instance may publish; the holder executes)
 *   <prefix>/<deviceid>/result         command results when the command named no reply topic
 *   <prefix>/_instances/<instanceId>   retained  presence {online, host, port, devices, ts} (LWT: online false)
 *   <prefix>/_reply/<instanceId>       results addressed to one instance (its own remote commands)
 *
 * The prefix may contain `/` (e.g. `home/coolkit`) but no wildcards.
 */

export type DeviceTopicKind = 'state' | 'online' | 'capabilities' | 'set' | 'result';

export const DEVICE_TOPIC_KINDS: readonly DeviceTopicKind[] = ['state', 'online', 'capabilities', 'set', 'result'];

export type ParsedTopic =
  | { type: 'device'; deviceid: string; kind: DeviceTopicKind }
  | { type: 'instance'; instanceId: string }
  | { type: 'reply'; instanceId: string };

export const DEFAULT_PREFIX = 'coolkit';

const DEVICE_ID = /^[0-9a-f]{10}$/;
const INSTANCE_ID = /^[A-Za-z0-9_.-]{1,64}$/;

/** A usable prefix: trimmed, no leading/trailing `/`, no wildcards or empty levels; else the default. */
export function normalisePrefix(prefix: string | undefined): string {
  const p = (prefix ?? '').trim().replace(/^\/+|\/+$/g, '');
  if (!p || /[#+\u0000]/.test(p) || p.split('/').some((level) => level === '')) return DEFAULT_PREFIX;
  return p;
}

/** Whether `prefix` is acceptable as given (the editor validates with this). */
export function isValidPrefix(prefix: string): boolean {
  const p = prefix.trim();
  return p !== '' && normalisePrefix(p) === p;
}

/** An instance id usable as one topic level. */
export function sanitiseInstanceId(id: string): string {
  const cleaned = id.trim().replace(/[^A-Za-z0-9_.-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 64);
  return cleaned;
}

export function isInstanceId(id: string): boolean {
  return INSTANCE_ID.test(id);
}

export class Topics {
  readonly prefix: string;
  private readonly levels: number;

  constructor(prefix?: string) {
    this.prefix = normalisePrefix(prefix);
    this.levels = this.prefix.split('/').length;
  }

  device(deviceid: string, kind: DeviceTopicKind): string {
    return `${this.prefix}/${deviceid}/${kind}`;
  }

  state(deviceid: string): string {
    return this.device(deviceid, 'state');
  }

  online(deviceid: string): string {
    return this.device(deviceid, 'online');
  }

  capabilities(deviceid: string): string {
    return this.device(deviceid, 'capabilities');
  }

  set(deviceid: string): string {
    return this.device(deviceid, 'set');
  }

  result(deviceid: string): string {
    return this.device(deviceid, 'result');
  }

  instance(instanceId: string): string {
    return `${this.prefix}/_instances/${instanceId}`;
  }

  reply(instanceId: string): string {
    return `${this.prefix}/_reply/${instanceId}`;
  }

  /** Subscriptions an instance needs: every device's retained topics and commands, presence, its replies. */
  subscriptions(instanceId: string): string[] {
    return [
      `${this.prefix}/+/state`,
      `${this.prefix}/+/online`,
      `${this.prefix}/+/capabilities`,
      `${this.prefix}/+/set`,
      `${this.prefix}/_instances/+`,
      this.reply(instanceId),
    ];
  }

  /** Parse a topic of this tree; undefined for anything else (other prefixes, bad ids, unknown kinds). */
  parse(topic: string): ParsedTopic | undefined {
    if (!topic.startsWith(`${this.prefix}/`)) return undefined;
    const rest = topic.split('/').slice(this.levels);
    if (rest.length !== 2) return undefined;
    const [a, b] = rest as [string, string];
    if (a === '_instances') return isInstanceId(b) ? { type: 'instance', instanceId: b } : undefined;
    if (a === '_reply') return isInstanceId(b) ? { type: 'reply', instanceId: b } : undefined;
    if (!DEVICE_ID.test(a)) return undefined;
    if (!(DEVICE_TOPIC_KINDS as readonly string[]).includes(b)) return undefined;
    return { type: 'device', deviceid: a, kind: b as DeviceTopicKind };
  }
}
