/**
 * The alert engine: threshold rules (a metric above or below a value, for one device or all)
 * with hysteresis and a minimum duration, offline rules (a device offline for longer than N
 * seconds), and alerts raised and cleared by flows.
 *
 * Every alert is raised once and cleared once, with an increasing `alert_id`. A value that
 * hovers at a threshold raises nothing until it has stayed past the threshold for the whole
 * duration, and an active alert clears only when the value is back past the threshold by the
 * hysteresis, again for the whole duration. No timers here: `tick(now)` (called by the
 * server's one timer) looks only at the (rule, device) pairs that are waiting on a duration.
 */
import { isTelemetryMetric, UNITS, type TelemetryMetric } from './metrics';
import { SEVERITIES, type Severity } from './filters';

export type RuleKind = 'above' | 'below' | 'offline';

export interface AlertRule {
  id: string;
  kind: RuleKind;
  /** above/below: the metric compared. */
  metric?: TelemetryMetric;
  /** One device ('' = every device). */
  deviceid: string;
  threshold?: number;
  /** How far back past the threshold the value must come before the alert clears (>= 0). */
  hysteresis: number;
  /** above/below: seconds the condition must hold to raise (and to clear). offline: seconds offline before raising. */
  durationS: number;
  severity: Severity;
  title?: string;
  message?: string;
}

export interface ActiveAlert {
  alert_id: number;
  /** `<rule id>|<deviceid>` for rules, `flow|<key>` for alerts raised by a flow. */
  key: string;
  rule_id?: string;
  deviceid?: string;
  severity: Severity;
  alert_type: string;
  title: string;
  message: string;
  /** ms epoch. */
  raised_at: number;
  metadata: Record<string, unknown>;
}

export interface AlertChange {
  status: 'active' | 'cleared';
  alert: ActiveAlert;
  /** ms epoch of this change. */
  at: number;
  /** For a clear: why, in words. */
  clearMessage?: string;
  /** For a clear: the value that cleared it, when a reading did. */
  clearValue?: number;
}

export interface AlertHooks {
  emit(change: AlertChange): void;
  /** A device's display name (its name, or the deviceid). */
  describe(deviceid: string): string;
}

export interface AlertSnapshot {
  nextId: number;
  active: ActiveAlert[];
}

export interface ExternalAlert {
  key?: string;
  deviceid?: string;
  severity?: Severity;
  alert_type?: string;
  title?: string;
  message?: string;
  metadata?: Record<string, unknown>;
}

interface Track {
  key: string;
  rule: AlertRule;
  deviceid: string;
  phase: 'raising' | 'clearing';
  since: number;
  value?: number;
  lastSeen?: number;
}

/** Longest alert text kept. */
const MAX_TEXT = 500;

/** Validate rules from the node's configuration; bad rules are reported and skipped. */
export function normaliseRules(raw: unknown): { rules: AlertRule[]; problems: string[] } {
  const rules: AlertRule[] = [];
  const problems: string[] = [];
  const list = Array.isArray(raw) ? raw : [];
  const ids = new Set<string>();
  list.forEach((item, i) => {
    const r = (item ?? {}) as Record<string, unknown>;
    const n = i + 1;
    const kind = r.kind;
    if (kind !== 'above' && kind !== 'below' && kind !== 'offline') {
      problems.push(`rule ${n}: kind must be above, below or offline`);
      return;
    }
    const deviceid = typeof r.deviceid === 'string' ? r.deviceid.trim().toLowerCase() : '';
    if (deviceid !== '' && !/^[0-9a-f]{10}$/.test(deviceid)) {
      problems.push(`rule ${n}: device must be empty (all devices) or 10 hexadecimal characters`);
      return;
    }
    const severity = typeof r.severity === 'string' && (SEVERITIES as readonly string[]).includes(r.severity) ? (r.severity as Severity) : 'warning';
    const duration = num(r.duration ?? r.durationS);
    const durationS = duration === undefined ? (kind === 'offline' ? 300 : 0) : duration;
    if (!(durationS >= 0 && durationS <= 7 * 24 * 3600)) {
      problems.push(`rule ${n}: duration must be 0..604800 seconds`);
      return;
    }
    const rule: AlertRule = { id: '', kind, deviceid, hysteresis: 0, durationS, severity };
    if (kind !== 'offline') {
      if (!isTelemetryMetric(r.metric)) {
        problems.push(`rule ${n}: metric must be one of temperature, humidity, power, voltage, current, rssi`);
        return;
      }
      const threshold = num(r.threshold);
      if (threshold === undefined) {
        problems.push(`rule ${n}: threshold must be a number`);
        return;
      }
      const hysteresis = num(r.hysteresis) ?? 0;
      if (!(hysteresis >= 0)) {
        problems.push(`rule ${n}: hysteresis must be a number >= 0`);
        return;
      }
      rule.metric = r.metric;
      rule.threshold = threshold;
      rule.hysteresis = hysteresis;
    }
    if (typeof r.title === 'string' && r.title.trim()) rule.title = r.title.trim().slice(0, 200);
    if (typeof r.message === 'string' && r.message.trim()) rule.message = r.message.trim().slice(0, MAX_TEXT);
    let id = typeof r.id === 'string' && /^[\w.-]{1,64}$/.test(r.id) ? r.id : [kind, rule.metric ?? '', deviceid || '*', rule.threshold ?? rule.durationS].join(':');
    while (ids.has(id)) id = `${id}+`;
    ids.add(id);
    rule.id = id;
    rules.push(rule);
  });
  return { rules, problems };
}

function num(v: unknown): number | undefined {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  return typeof n === 'number' && Number.isFinite(n) ? n : undefined;
}

function fmt(value: number | undefined, metric: TelemetryMetric | undefined): string {
  if (value === undefined) return '?';
  const v = Math.round(value * 100) / 100;
  return metric ? `${v} ${UNITS[metric]}` : String(v);
}

function capital(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

export class AlertEngine {
  private readonly byMetric = new Map<TelemetryMetric, AlertRule[]>();
  private readonly offlineRules: AlertRule[] = [];
  private readonly rules = new Map<string, AlertRule>();
  /** (rule, device) pairs waiting on a duration. */
  private readonly tracks = new Map<string, Track>();
  private readonly active = new Map<string, ActiveAlert>();
  private readonly keyById = new Map<number, string>();
  /** Active alerts per device that are not offline alerts (they make the device's status "warning"). */
  private readonly warnings = new Map<string, number>();
  private nextId = 1;

  constructor(rules: AlertRule[], private readonly hooks: AlertHooks) {
    for (const rule of rules) {
      this.rules.set(rule.id, rule);
      if (rule.kind === 'offline') this.offlineRules.push(rule);
      else if (rule.metric) {
        const list = this.byMetric.get(rule.metric) ?? [];
        list.push(rule);
        this.byMetric.set(rule.metric, list);
      }
    }
  }

  get ruleCount(): number {
    return this.rules.size;
  }

  /** Whether any rule looks at this metric (lets the caller skip work). */
  watches(metric: TelemetryMetric): boolean {
    return this.byMetric.has(metric);
  }

  /**
   * Take back the state saved before a restart: the id counter and the active alerts. Alerts
   * whose rule is gone (or no longer covers the device) are cleared at `now`.
   */
  restore(snapshot: AlertSnapshot | undefined, now = Date.now()): void {
    if (!snapshot) return;
    if (Number.isInteger(snapshot.nextId) && snapshot.nextId > this.nextId) this.nextId = snapshot.nextId;
    const orphans: ActiveAlert[] = [];
    for (const a of snapshot.active ?? []) {
      if (!a || !Number.isInteger(a.alert_id) || typeof a.key !== 'string') continue;
      if (a.alert_id >= this.nextId) this.nextId = a.alert_id + 1;
      this.store(a);
      if (a.rule_id !== undefined) {
        const rule = this.rules.get(a.rule_id);
        if (!rule || (rule.deviceid !== '' && rule.deviceid !== a.deviceid)) orphans.push(a);
      }
    }
    for (const a of orphans) this.clear(a.key, now, 'the rule that raised this alert was changed or removed');
  }

  snapshot(): AlertSnapshot {
    return { nextId: this.nextId, active: [...this.active.values()] };
  }

  activeAlerts(): ActiveAlert[] {
    return [...this.active.values()];
  }

  get activeCount(): number {
    return this.active.size;
  }

  /** Tracks waiting on a duration (for tests and status). */
  get pendingCount(): number {
    return this.tracks.size;
  }

  hasWarning(deviceid: string): boolean {
    return (this.warnings.get(deviceid) ?? 0) > 0;
  }

  getById(alertId: number): ActiveAlert | undefined {
    const key = this.keyById.get(alertId);
    return key === undefined ? undefined : this.active.get(key);
  }

  /** A reading from a device report. */
  reading(deviceid: string, metric: TelemetryMetric, value: number, now = Date.now()): void {
    const rules = this.byMetric.get(metric);
    if (!rules) return;
    for (const rule of rules) {
      if (rule.deviceid !== '' && rule.deviceid !== deviceid) continue;
      const key = `${rule.id}|${deviceid}`;
      const T = rule.threshold as number;
      const isActive = this.active.has(key);
      const hold = rule.durationS * 1000;
      if (!isActive) {
        const raise = rule.kind === 'above' ? value > T : value < T;
        if (!raise) {
          this.tracks.delete(key);
          continue;
        }
        let t = this.tracks.get(key);
        if (!t || t.phase !== 'raising') {
          t = { key, rule, deviceid, phase: 'raising', since: now };
          this.tracks.set(key, t);
        }
        t.value = value;
        if (now - t.since >= hold) {
          this.tracks.delete(key);
          this.raiseRule(rule, deviceid, value, t.since, now);
        }
      } else {
        const H = rule.hysteresis;
        const clear = rule.kind === 'above' ? value <= T - H : value >= T + H;
        if (!clear) {
          this.tracks.delete(key);
          continue;
        }
        let t = this.tracks.get(key);
        if (!t || t.phase !== 'clearing') {
          t = { key, rule, deviceid, phase: 'clearing', since: now };
          this.tracks.set(key, t);
        }
        t.value = value;
        if (now - t.since >= hold) {
          this.tracks.delete(key);
          this.clear(key, now, this.clearText(rule, deviceid, value), value);
        }
      }
    }
  }

  /** A device went offline at `now` (its last frame was at `lastSeen`). */
  deviceOffline(deviceid: string, now = Date.now(), lastSeen?: number): void {
    for (const rule of this.offlineRules) {
      if (rule.deviceid !== '' && rule.deviceid !== deviceid) continue;
      const key = `${rule.id}|${deviceid}`;
      if (this.active.has(key) || this.tracks.has(key)) continue;
      const t: Track = { key, rule, deviceid, phase: 'raising', since: now, lastSeen };
      if (rule.durationS === 0) this.raiseOffline(t, now);
      else this.tracks.set(key, t);
    }
  }

  deviceOnline(deviceid: string, now = Date.now()): void {
    for (const rule of this.offlineRules) {
      if (rule.deviceid !== '' && rule.deviceid !== deviceid) continue;
      const key = `${rule.id}|${deviceid}`;
      this.tracks.delete(key);
      if (this.active.has(key)) this.clear(key, now, `${this.hooks.describe(deviceid)} is back online`);
    }
  }

  /** Raise or clear what has waited long enough. Looks only at waiting pairs. */
  tick(now = Date.now()): void {
    if (this.tracks.size === 0) return;
    for (const t of [...this.tracks.values()]) {
      const hold = t.rule.durationS * 1000;
      if (now - t.since < hold) continue;
      this.tracks.delete(t.key);
      if (t.rule.kind === 'offline') this.raiseOffline(t, now);
      else if (t.phase === 'raising') this.raiseRule(t.rule, t.deviceid, t.value as number, t.since, now);
      else this.clear(t.key, now, this.clearText(t.rule, t.deviceid, t.value as number), t.value);
    }
  }

  /**
   * An alert from a flow. With a `key`, raising it again while it is active changes nothing
   * (`created: false`).
   */
  raiseExternal(input: ExternalAlert, now = Date.now()): { alert: ActiveAlert; created: boolean } {
    const key = input.key !== undefined && input.key !== '' ? `flow|${String(input.key).slice(0, 128)}` : undefined;
    if (key) {
      const existing = this.active.get(key);
      if (existing) return { alert: existing, created: false };
    }
    const id = this.nextId++;
    const alert: ActiveAlert = {
      alert_id: id,
      key: key ?? `flow|#${id}`,
      severity: input.severity ?? 'warning',
      alert_type: (input.alert_type || 'custom').slice(0, 64),
      title: (input.title || 'Alert').slice(0, 200),
      message: (input.message ?? '').slice(0, MAX_TEXT),
      raised_at: now,
      metadata: input.metadata ?? {},
    };
    if (input.deviceid) alert.deviceid = input.deviceid;
    this.store(alert);
    this.hooks.emit({ status: 'active', alert, at: now });
    return { alert, created: true };
  }

  /** Clear a flow's alert by key, or any alert by id. Returns the cleared alert. */
  clearExternal(ref: { key?: string; alert_id?: number }, now = Date.now(), message = 'cleared by the flow'): ActiveAlert | undefined {
    let key: string | undefined;
    if (ref.alert_id !== undefined) key = this.keyById.get(ref.alert_id);
    else if (ref.key !== undefined && ref.key !== '') key = `flow|${String(ref.key).slice(0, 128)}`;
    if (key === undefined || !this.active.has(key)) return undefined;
    return this.clear(key, now, message);
  }

  private raiseRule(rule: AlertRule, deviceid: string, value: number, since: number, now: number): void {
    const metric = rule.metric as TelemetryMetric;
    const above = rule.kind === 'above';
    const name = this.hooks.describe(deviceid);
    const id = this.nextId++;
    const alert: ActiveAlert = {
      alert_id: id,
      key: `${rule.id}|${deviceid}`,
      rule_id: rule.id,
      deviceid,
      severity: rule.severity,
      alert_type: `${metric}_${above ? 'high' : 'low'}`,
      title: rule.title ?? `${above ? 'High' : 'Low'} ${capital(metric)} Alert`,
      message: rule.message ?? `${capital(metric)} ${fmt(value, metric)} is ${above ? 'above' : 'below'} ${fmt(rule.threshold, metric)} on ${name}${rule.durationS > 0 ? ` (for ${rule.durationS} s)` : ''}`,
      raised_at: now,
      metadata: {
        metric,
        unit: UNITS[metric],
        threshold_value: rule.threshold,
        actual_value: value,
        hysteresis: rule.hysteresis,
        duration: rule.durationS,
        since: new Date(since).toISOString(),
        rule_id: rule.id,
      },
    };
    this.store(alert);
    this.hooks.emit({ status: 'active', alert, at: now });
  }

  private raiseOffline(t: Track, now: number): void {
    const rule = t.rule;
    const name = this.hooks.describe(t.deviceid);
    const seconds = Math.round((now - t.since) / 1000);
    const id = this.nextId++;
    const alert: ActiveAlert = {
      alert_id: id,
      key: t.key,
      rule_id: rule.id,
      deviceid: t.deviceid,
      severity: rule.severity,
      alert_type: 'device_offline',
      title: rule.title ?? 'Device Offline Alert',
      message: rule.message ?? `${name} has been offline for ${seconds} s`,
      raised_at: now,
      metadata: {
        offline_since: new Date(t.since).toISOString(),
        last_seen: t.lastSeen ? new Date(t.lastSeen).toISOString() : null,
        threshold_value: rule.durationS,
        actual_value: seconds,
        duration: rule.durationS,
        rule_id: rule.id,
      },
    };
    this.store(alert);
    this.hooks.emit({ status: 'active', alert, at: now });
  }

  private clearText(rule: AlertRule, deviceid: string, value: number): string {
    const metric = rule.metric as TelemetryMetric;
    return `${capital(metric)} back to ${fmt(value, metric)} on ${this.hooks.describe(deviceid)}`;
  }

  private store(alert: ActiveAlert): void {
    this.active.set(alert.key, alert);
    this.keyById.set(alert.alert_id, alert.key);
    if (alert.deviceid && alert.alert_type !== 'device_offline') this.warnings.set(alert.deviceid, (this.warnings.get(alert.deviceid) ?? 0) + 1);
  }

  private clear(key: string, now: number, message: string, value?: number): ActiveAlert | undefined {
    const alert = this.active.get(key);
    if (!alert) return undefined;
    this.active.delete(key);
    this.keyById.delete(alert.alert_id);
    this.tracks.delete(key);
    if (alert.deviceid && alert.alert_type !== 'device_offline') {
      const n = (this.warnings.get(alert.deviceid) ?? 1) - 1;
      if (n <= 0) this.warnings.delete(alert.deviceid);
      else this.warnings.set(alert.deviceid, n);
    }
    this.hooks.emit({ status: 'cleared', alert, at: now, clearMessage: message, clearValue: value });
    return alert;
  }
}
