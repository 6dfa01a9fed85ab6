/**
 * The fan-out engine of the telemetry API: subscriptions indexed by device, so a report costs
 * a few map lookups whatever the number of devices and subscribers; each outgoing message is
 * serialised once per distinct content (per metric mask), never per client.
 *
 * `frequency` windows are aligned to the clock (a 5s window ends at :00, :05, ...), so every
 * subscription with the same period shares one buffer holding the latest value of each metric
 * per device; `tick(now)` (the server's one timer) flushes the windows and system samples due.
 */
import type { DeviceStatus, SubscriptionSpec } from './filters';
import { labelOf } from './filters';
import {
  SYSTEM_BIT,
  SYSTEM_METRICS,
  telemetryObject,
  TELEMETRY_BIT,
  TELEMETRY_METRICS,
  UNITS,
  type Reading,
  type ReportReadings,
  type SystemMetric,
  type TelemetryMetric,
} from './metrics';

/** Where messages go: a connection (backpressure and dropping are its business). */
export interface Subscriber {
  send(data: Buffer, droppable: boolean): boolean;
}

export interface Subscription {
  readonly id: number;
  readonly client: Subscriber;
  readonly spec: SubscriptionSpec;
}

/** A device as messages name it. */
export interface DeviceRef {
  deviceid: string;
  number: number;
}

/** Subscriptions of one kind, by device key, plus those for every device. */
export class SubIndex {
  readonly all = new Set<Subscription>();
  private readonly byKey = new Map<string, Set<Subscription>>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  add(sub: Subscription): void {
    this.count++;
    if (!sub.spec.devices) {
      this.all.add(sub);
      return;
    }
    for (const key of sub.spec.devices) {
      let set = this.byKey.get(key);
      if (!set) {
        set = new Set();
        this.byKey.set(key, set);
      }
      set.add(sub);
    }
  }

  remove(sub: Subscription): void {
    if (!sub.spec.devices) {
      if (this.all.delete(sub)) this.count--;
      return;
    }
    let found = false;
    for (const key of sub.spec.devices) {
      const set = this.byKey.get(key);
      if (!set) continue;
      if (set.delete(sub)) found = true;
      if (set.size === 0) this.byKey.delete(key);
    }
    if (found) this.count--;
  }

  /** Whether any subscription could want this device. */
  wants(dev: DeviceRef | undefined): boolean {
    if (this.all.size > 0) return true;
    if (!dev) return false;
    return this.byKey.has(`d:${dev.deviceid}`) || this.byKey.has(`i:${dev.number}`);
  }

  /** Every subscription for this device (one listing a device twice, by number and id, comes twice). */
  forEach(dev: DeviceRef | undefined, fn: (sub: Subscription) => void): void {
    for (const sub of this.all) fn(sub);
    if (!dev) return;
    const byId = this.byKey.get(`d:${dev.deviceid}`);
    if (byId) for (const sub of byId) fn(sub);
    const byNumber = this.byKey.get(`i:${dev.number}`);
    if (byNumber) for (const sub of byNumber) fn(sub);
  }
}

interface WindowEntry {
  dev: DeviceRef;
  mask: number;
  readings: Partial<Record<TelemetryMetric, Reading>>;
}

interface WindowGroup {
  periodMs: number;
  index: SubIndex;
  buffer: Map<string, WindowEntry>;
  nextFlush: number;
}

interface SystemGroup {
  periodMs: number;
  subs: Set<Subscription>;
  nextFlush: number;
}

export interface FanOutStats {
  /** JSON.stringify calls for outgoing broadcast messages. */
  serialised: number;
  /** Frames handed to subscribers. */
  delivered: number;
}

function alignedNext(now: number, period: number): number {
  return (Math.floor(now / period) + 1) * period;
}

export class FanOut {
  readonly stats: FanOutStats = { serialised: 0, delivered: 0 };
  private nextSubId = 1;
  private readonly realtime = new SubIndex();
  private readonly windows = new Map<number, WindowGroup>();
  private readonly system = new Map<number, SystemGroup>();
  private readonly alertSubs = new SubIndex();
  private readonly deviceSubs = new SubIndex();

  constructor(private readonly clock: () => number = Date.now) {}

  /** Subscriptions in total. */
  get size(): number {
    let n = this.realtime.size + this.alertSubs.size + this.deviceSubs.size;
    for (const g of this.windows.values()) n += g.index.size;
    for (const g of this.system.values()) n += g.subs.size;
    return n;
  }

  /** Whether the timer has anything to do here (windows or system samples). */
  get timed(): boolean {
    return this.windows.size > 0 || this.system.size > 0;
  }

  add(client: Subscriber, spec: SubscriptionSpec): Subscription {
    const sub: Subscription = { id: this.nextSubId++, client, spec };
    const now = this.clock();
    switch (spec.channel) {
      case 'telemetry':
        if (spec.periodMs === 0) this.realtime.add(sub);
        else {
          let g = this.windows.get(spec.periodMs);
          if (!g) {
            g = { periodMs: spec.periodMs, index: new SubIndex(), buffer: new Map(), nextFlush: alignedNext(now, spec.periodMs) };
            this.windows.set(spec.periodMs, g);
          }
          g.index.add(sub);
        }
        break;
      case 'system': {
        let g = this.system.get(spec.periodMs);
        if (!g) {
          g = { periodMs: spec.periodMs, subs: new Set(), nextFlush: alignedNext(now, spec.periodMs) };
          this.system.set(spec.periodMs, g);
        }
        g.subs.add(sub);
        break;
      }
      case 'alerts':
        this.alertSubs.add(sub);
        break;
      case 'devices':
        this.deviceSubs.add(sub);
        break;
    }
    return sub;
  }

  remove(sub: Subscription): void {
    const spec = sub.spec;
    switch (spec.channel) {
      case 'telemetry':
        if (spec.periodMs === 0) this.realtime.remove(sub);
        else {
          const g = this.windows.get(spec.periodMs);
          if (g) {
            g.index.remove(sub);
            if (g.index.size === 0) this.windows.delete(spec.periodMs);
          }
        }
        break;
      case 'system': {
        const g = this.system.get(spec.periodMs);
        if (g) {
          g.subs.delete(sub);
          if (g.subs.size === 0) this.system.delete(spec.periodMs);
        }
        break;
      }
      case 'alerts':
        this.alertSubs.remove(sub);
        break;
      case 'devices':
        this.deviceSubs.remove(sub);
        break;
    }
  }

  /** Does anyone want telemetry from this device (real-time or windowed)? */
  wantsTelemetry(dev: DeviceRef): boolean {
    if (this.realtime.wants(dev)) return true;
    for (const g of this.windows.values()) if (g.index.wants(dev)) return true;
    return false;
  }

  /** A device report with readings: real-time subscribers now, windows buffer the latest values. */
  telemetry(dev: DeviceRef, report: ReportReadings, timestamp: string): void {
    if (report.mask === 0) return;
    let readings: Partial<Record<TelemetryMetric, Reading>> | undefined;
    const build = () => {
      if (readings) return readings;
      readings = {};
      for (const m of TELEMETRY_METRICS) {
        const v = report.values[m];
        if (v !== undefined) readings[m] = { value: v, unit: UNITS[m], timestamp };
      }
      return readings;
    };
    if (this.realtime.size > 0 && this.realtime.wants(dev)) {
      const perClient = new Map<Subscriber, number>();
      this.realtime.forEach(dev, (sub) => {
        const m = report.mask & sub.spec.metricMask;
        if (m) perClient.set(sub.client, (perClient.get(sub.client) ?? 0) | m);
      });
      if (perClient.size > 0) this.deliverTelemetry(dev, build(), perClient, undefined);
    }
    let now: number | undefined;
    for (const g of this.windows.values()) {
      if (!g.index.wants(dev)) continue;
      // A window whose end has passed is sent before this report joins the next one, even if
      // the timer is late.
      now ??= this.clock();
      if (now >= g.nextFlush) this.flushWindow(g, now);
      let entry = g.buffer.get(dev.deviceid);
      if (!entry) {
        entry = { dev, mask: 0, readings: {} };
        g.buffer.set(dev.deviceid, entry);
      }
      const r = build();
      for (const m of TELEMETRY_METRICS) {
        if (report.mask & TELEMETRY_BIT[m]) entry.readings[m] = r[m];
      }
      entry.mask |= report.mask;
    }
  }

  private deliverTelemetry(dev: DeviceRef, readings: Partial<Record<TelemetryMetric, Reading>>, perClient: Map<Subscriber, number>, periodMs: number | undefined): void {
    const texts = new Map<number, Buffer>();
    for (const [client, mask] of perClient) {
      let data = texts.get(mask);
      if (!data) {
        const msg: Record<string, unknown> = {
          type: 'telemetry_update',
          channel: 'telemetry',
          device_id: dev.number,
          deviceid: dev.deviceid,
          telemetry: telemetryObject(readings, mask),
        };
        if (periodMs !== undefined) msg.frequency = labelOf(periodMs);
        data = this.encode(msg);
        texts.set(mask, data);
      }
      this.deliver(client, data);
    }
  }

  /** An alert raised or cleared: one serialisation, to every matching subscriber once. */
  alert(message: Record<string, unknown>, dev: DeviceRef | undefined, severity: string, alertType: string): number {
    if (this.alertSubs.size === 0) return 0;
    let data: Buffer | undefined;
    const seen = new Set<Subscriber>();
    this.alertSubs.forEach(dev, (sub) => {
      if (seen.has(sub.client) || !alertMatches(sub.spec, severity, alertType)) return;
      seen.add(sub.client);
      data ??= this.encode(message);
      this.deliver(sub.client, data);
    });
    return seen.size;
  }

  /** A device status change, to every matching subscriber once. */
  deviceStatus(message: Record<string, unknown>, dev: DeviceRef, newStatus: DeviceStatus): number {
    if (this.deviceSubs.size === 0) return 0;
    let data: Buffer | undefined;
    const seen = new Set<Subscriber>();
    this.deviceSubs.forEach(dev, (sub) => {
      if (seen.has(sub.client)) return;
      if (sub.spec.statusTypes && !sub.spec.statusTypes.has(newStatus)) return;
      seen.add(sub.client);
      data ??= this.encode(message);
      this.deliver(sub.client, data);
    });
    return seen.size;
  }

  /** One system message for one subscription now (sent when it subscribes). */
  systemNow(sub: Subscription, sample: Record<SystemMetric, number>, timestamp: string): void {
    this.deliver(sub.client, this.encode(systemMessage(sample, sub.spec.metricMask, timestamp)));
  }

  /** Flush the windows and system periods that are due. */
  tick(now: number, sample: () => Record<SystemMetric, number>): void {
    for (const g of this.windows.values()) {
      if (now >= g.nextFlush) this.flushWindow(g, now);
    }
    let values: Record<SystemMetric, number> | undefined;
    const timestamp = new Date(now).toISOString();
    for (const g of this.system.values()) {
      if (now < g.nextFlush) continue;
      g.nextFlush = alignedNext(now, g.periodMs);
      values ??= sample();
      const perClient = new Map<Subscriber, number>();
      for (const sub of g.subs) perClient.set(sub.client, (perClient.get(sub.client) ?? 0) | sub.spec.metricMask);
      const texts = new Map<number, Buffer>();
      for (const [client, mask] of perClient) {
        let data = texts.get(mask);
        if (!data) {
          data = this.encode(systemMessage(values, mask, timestamp));
          texts.set(mask, data);
        }
        this.deliver(client, data);
      }
    }
  }

  /** Send a window's buffer (the latest values per device) and start the next window. */
  private flushWindow(g: WindowGroup, now: number): void {
    g.nextFlush = alignedNext(now, g.periodMs);
    if (g.buffer.size === 0) return;
    const buffer = [...g.buffer.values()];
    g.buffer.clear();
    for (const entry of buffer) {
      const perClient = new Map<Subscriber, number>();
      g.index.forEach(entry.dev, (sub) => {
        const m = entry.mask & sub.spec.metricMask;
        if (m) perClient.set(sub.client, (perClient.get(sub.client) ?? 0) | m);
      });
      if (perClient.size > 0) this.deliverTelemetry(entry.dev, entry.readings, perClient, g.periodMs);
    }
  }

  private encode(msg: unknown): Buffer {
    this.stats.serialised++;
    return Buffer.from(JSON.stringify(msg), 'utf8');
  }

  private deliver(client: Subscriber, data: Buffer): void {
    if (client.send(data, true)) this.stats.delivered++;
  }
}

export function alertMatches(spec: SubscriptionSpec, severity: string, alertType: string): boolean {
  if (spec.severities && !spec.severities.has(severity)) return false;
  if (spec.alertTypes && !spec.alertTypes.has(alertType)) return false;
  return true;
}

/** Whether a subscription's device filter takes this device (or a device-less message). */
export function deviceMatches(spec: SubscriptionSpec, dev: DeviceRef | undefined): boolean {
  if (!spec.devices) return true;
  if (!dev) return false;
  return spec.devices.includes(`d:${dev.deviceid}`) || spec.devices.includes(`i:${dev.number}`);
}

export function systemMessage(sample: Record<SystemMetric, number>, mask: number, timestamp: string): Record<string, unknown> {
  const metrics: Record<string, number> = {};
  for (const m of SYSTEM_METRICS) if (mask & SYSTEM_BIT[m]) metrics[m] = sample[m];
  return { type: 'system_status_update', channel: 'system', metrics, timestamp };
}
