/**
 * What a simulated device DOES besides storing params, per family (protocol §3.12–3.16):
 *
 * - switch (UIID 1, also the base of pow and th): inching: `pulse:"on"` + switch turned on →
 *   off again after `pulseWidth` ms, reported as `{"switch":"off"}`.
 * - multi (UIID 2/3/4): per-outlet inching from `pulses[].width`, interlock (`lock:1`: turning one
 *   outlet on turns the others off), outlets beyond the channel count ignored (the CK examples
 *   send 4-entry arrays even to a Dual).
 * - pow (UIID 5/32): live metering (random walk), reported only inside a `uiActive` window and
 *   only on change > 2 W / 5 V / 0.03 A; `hundredDaysKwh:"get"`, `oneKwh:"get"`.
 * - th (UIID 15): sensor readings reported on change >= 0.5 °C / 5 %RH (checked every
 *   sensorTickMs) and on connect; the on-device thermostat (`deviceType`, `mainSwitch`, `targets`).
 * - rfbridge (UIID 28): `cmd` capture / captureCancel / edit / transmit, `trigger` reports.
 *
 * Every timer goes through the device's BehaviourScheduler (one timer per device, or none with
 * a FleetTicker) and is dropped when the device goes offline.
 */
import type { BehaviourScheduler } from './scheduler';
import {
  type DeviceProfile,
  decodeHundredDaysKwh,
  encodeHundredDaysKwh,
  formatHumidity,
  formatMetering,
  formatTemperature,
  hundredDaysKwhFor,
  INITIAL_HUMIDITY,
  INITIAL_TEMPERATURE,
  randomRfVal,
  seededRandom,
  sensorCapabilities,
} from './models';
import { isPlainObject, mergeParams, type Params } from './state';

/** What a behaviour may use of its device. */
export interface BehaviourHost {
  readonly deviceid: string;
  /** The device's live state object: behaviours mutate it directly. */
  readonly params: Params;
  /** Send an `update` report (full state without argument). False when offline. */
  report(params?: Params): boolean;
  readonly scheduler: BehaviourScheduler;
  random(): number;
}

export interface BehaviourOptions {
  /** pow: how often a uiActive window checks for a reportable change. Default 1000 ms. */
  meteringTickMs?: number;
  /** th: how often readings are sampled and checked against the report thresholds. Default 5000 ms. */
  sensorTickMs?: number;
  /** rfbridge: time from `cmd:"capture"` to the learned code being reported. Default 300 ms. */
  captureDelayMs?: number;
  /** rfbridge: random trigger of a learned channel about every this many ms (±50 %). 0 = off. */
  rfTriggerIntervalMs?: number;
  /** th: sensor model, overrides the profile's. */
  sensorType?: string;
  /** Random walk of metering and sensor readings. Default true; false keeps readings still (tests). */
  drift?: boolean;
}

/** How the device should handle one server `update`. */
export interface UpdateOutcome {
  /** Non-zero: ack with this error and change nothing. */
  error?: number;
  /** Params to merge into the state (mergeParams). */
  apply?: Params;
  /** Send the full state after the ack (as the seed shows). Default true. */
  reportFull?: boolean;
  /** Runs after the ack, the full report and the 'command' event. */
  after?: () => void;
}

export type ChangeSource = 'server' | 'local' | 'device';

const ON_OFF = ['on', 'off'];
const STARTUP = ['on', 'stay', 'off'];
const BAD_PARAMS = 400;

const isOutlet = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/** CK-UIID: inching width in ms, [500, 3600000], a multiple of 500. */
export function isValidPulseWidth(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 500 && v <= 3_600_000 && v % 500 === 0;
}

/**
 * Reject params a real device would answer with error 400 (CK-UIID: "error": 0 // or 400).
 * Only the keys present are checked; unknown keys are transparent (§3.6).
 */
export function validateCommonParams(p: Params): boolean {
  if ('switch' in p && !ON_OFF.includes(p.switch as string)) return false;
  if ('startup' in p && !STARTUP.includes(p.startup as string)) return false;
  if ('pulse' in p && !ON_OFF.includes(p.pulse as string)) return false;
  if ('sledOnline' in p && !ON_OFF.includes(p.sledOnline as string)) return false;
  if ('pulseWidth' in p && !isValidPulseWidth(p.pulseWidth)) return false;
  const arrays: Array<[string, (e: Record<string, unknown>) => boolean]> = [
    ['switches', (e) => ON_OFF.includes(e.switch as string)],
    ['configure', (e) => STARTUP.includes(e.startup as string)],
    ['pulses', (e) => (!('pulse' in e) || ON_OFF.includes(e.pulse as string)) && (!('width' in e) || isValidPulseWidth(e.width))],
  ];
  for (const [key, entryOk] of arrays) {
    if (!(key in p)) continue;
    const v = p[key];
    if (!Array.isArray(v) || !v.every((e) => isPlainObject(e) && isOutlet(e.outlet) && entryOk(e))) return false;
  }
  return true;
}

export class Behaviour {
  constructor(
    protected readonly host: BehaviourHost,
    protected readonly profile: DeviceProfile,
    protected readonly opts: BehaviourOptions,
  ) {}

  protected get state(): Params {
    return this.host.params;
  }

  protected get drift(): boolean {
    return this.opts.drift ?? true;
  }

  /** Called once with the profile's initial params (not when the caller supplied `params`). */
  initState(_params: Params): void {}

  /** Registered: called before the handshake's full report, so state changes made here are in it. */
  onOnline(): void {}

  /** The connection is gone (or stop()); the device has already cleared the scheduler. */
  onOffline(): void {}

  /** Decide how to handle a server `update`. Default: validate, merge everything, report the full state. */
  handleUpdate(params: Params): UpdateOutcome {
    if (!validateCommonParams(params)) return { error: BAD_PARAMS };
    return { apply: params };
  }

  /** After `applied` was merged into the state (server command, setLocal, or the device itself). */
  afterApply(_applied: Params, _source: ChangeSource): void {}
}

/** UIID 1 (and the single relay of pow and th): inching. */
export class SwitchBehaviour extends Behaviour {
  /** th overrides: no inching under automatic control (CK-UIID UIID15). */
  protected inchingAllowed(): boolean {
    return true;
  }

  override afterApply(applied: Params, _source: ChangeSource): void {
    if (!('switch' in applied)) return;
    const s = this.state;
    if (s.switch === 'on' && s.pulse === 'on' && this.inchingAllowed()) {
      const width = isValidPulseWidth(s.pulseWidth) ? s.pulseWidth : 500;
      this.host.scheduler.set('inch', width, () => {
        if (this.state.switch === 'on') this.setSwitch('off');
      });
    } else if (s.switch !== 'on') {
      this.host.scheduler.clear('inch');
    }
  }

  /** The device changes its own relay (inching, thermostat) and reports just that. */
  protected setSwitch(value: 'on' | 'off'): void {
    this.state.switch = value;
    this.host.report({ switch: value });
    this.afterApply({ switch: value }, 'device');
  }
}

/** UIID 2/3/4: `switches`, `configure`, `pulses` per outlet, `lock` interlock. */
export class MultiBehaviour extends Behaviour {
  private get channels(): number {
    return this.profile.channels ?? 4;
  }

  override handleUpdate(params: Params): UpdateOutcome {
    if (!validateCommonParams(params)) return { error: BAD_PARAMS };
    if ('lock' in params && params.lock !== 0 && params.lock !== 1) return { error: BAD_PARAMS };
    const apply: Params = { ...params };
    for (const key of ['switches', 'configure', 'pulses']) {
      if (Array.isArray(apply[key])) {
        apply[key] = (apply[key] as Array<Record<string, unknown>>).filter((e) => (e.outlet as number) < this.channels);
      }
    }
    const lock = 'lock' in apply ? apply.lock : this.state.lock;
    if (lock === 1 && Array.isArray(apply.switches)) {
      const turnedOn = (apply.switches as Array<Record<string, unknown>>).filter((e) => e.switch === 'on').at(-1);
      if (turnedOn) {
        // Interlock: exactly the last outlet switched on stays on.
        apply.switches = this.outletList().map((outlet) => ({ switch: outlet === turnedOn.outlet ? 'on' : 'off', outlet }));
      }
    }
    return { apply };
  }

  override afterApply(applied: Params, _source: ChangeSource): void {
    if (!Array.isArray(applied.switches)) return;
    for (const entry of applied.switches as Array<Record<string, unknown>>) {
      const outlet = entry.outlet as number;
      const key = `inch:${outlet}`;
      const pulse = this.entryFor('pulses', outlet);
      if (this.switchOf(outlet) === 'on' && pulse?.pulse === 'on') {
        const width = isValidPulseWidth(pulse.width) ? pulse.width : 500;
        this.host.scheduler.set(key, width, () => {
          if (this.switchOf(outlet) !== 'on') return;
          mergeParams(this.state, { switches: [{ switch: 'off', outlet }] });
          // Real 4CH report the whole switches array, not just the outlet that changed.
          this.host.report({ switches: this.state.switches });
        });
      } else if (this.switchOf(outlet) !== 'on') {
        this.host.scheduler.clear(key);
      }
    }
  }

  private outletList(): number[] {
    return [...Array(this.channels).keys()];
  }

  private entryFor(key: string, outlet: number): Record<string, unknown> | undefined {
    const list = this.state[key];
    if (!Array.isArray(list)) return undefined;
    const e: unknown = list.find((x) => isPlainObject(x) && x.outlet === outlet);
    return isPlainObject(e) ? e : undefined;
  }

  private switchOf(outlet: number): unknown {
    return this.entryFor('switches', outlet)?.switch;
  }
}

/** Change thresholds of real-time reporting (CK-UIID UIID5). */
export const METERING_THRESHOLDS = { power: 2, voltage: 5, current: 0.03 } as const;

interface Metering {
  power: number;
  voltage: number;
  current: number;
}

/** UIID 5/32: metering inside uiActive windows, energy history. */
export class PowBehaviour extends SwitchBehaviour {
  private voltage: number;
  private power = 0;
  /** The simulated appliance's nominal load when switched on, fixed per device (60–1500 W). */
  private readonly loadW: number;
  private activeUntil = 0;
  private lastReported: Metering | undefined;

  constructor(host: BehaviourHost, profile: DeviceProfile, opts: BehaviourOptions) {
    super(host, profile, opts);
    this.voltage = 230 + (host.random() - 0.5) * 4;
    this.loadW = 60 + seededRandom(`load:${host.deviceid}`)() * 1440;
  }

  /** A fresh device's metering params are its live readings (a switched-off plug: power 0). */
  override initState(params: Params): void {
    for (const [k, v] of Object.entries(this.formatted(this.sample(false)))) if (k in params) params[k] = v;
  }

  /** Epoch ms at which the current (or last) uiActive window ends; 0 if none was ever opened. */
  get meteringActiveUntil(): number {
    return this.activeUntil;
  }

  get meteringActive(): boolean {
    return this.activeUntil > Date.now();
  }

  /** The live (unreported) readings. */
  get metering(): Metering {
    return { power: this.power, voltage: this.voltage, current: this.current() };
  }

  private get tickMs(): number {
    return this.opts.meteringTickMs ?? 1000;
  }

  override onOffline(): void {
    this.activeUntil = 0;
    this.lastReported = undefined;
  }

  override handleUpdate(params: Params): UpdateOutcome {
    const apply: Params = { ...params };
    const followUps: Array<() => void> = [];

    if ('uiActive' in apply) {
      const seconds = uiActiveSeconds(apply.uiActive);
      if (seconds === undefined) return { error: BAD_PARAMS };
      delete apply.uiActive; // a request, not state
      followUps.push(() => this.openWindow(seconds));
    }
    if ('hundredDaysKwh' in apply) {
      if (apply.hundredDaysKwh !== 'get') return { error: BAD_PARAMS };
      delete apply.hundredDaysKwh;
      followUps.push(() => this.host.report({ hundredDaysKwhData: encodeHundredDaysKwh(hundredDaysKwhFor(this.host.deviceid)) }));
    }
    if ('oneKwh' in apply) {
      if (!['start', 'stop', 'get'].includes(apply.oneKwh as string)) return { error: BAD_PARAMS };
      if (apply.oneKwh === 'get') {
        delete apply.oneKwh;
        followUps.push(() => this.host.report({ oneKwhData: this.oneKwhData() }));
      }
    }
    if (!validateCommonParams(apply)) return { error: BAD_PARAMS };
    return { apply, reportFull: Object.keys(apply).length > 0, after: () => followUps.forEach((f) => f()) };
  }

  /** Consumption since `oneKwh:"start"`, as a 2-decimal string ("110.32"): the last 10 days of the history. */
  private oneKwhData(): string {
    const days = decodeHundredDaysKwh(encodeHundredDaysKwh(hundredDaysKwhFor(this.host.deviceid)));
    return days.slice(0, 10).reduce((a, b) => a + b, 0).toFixed(2);
  }

  private openWindow(seconds: number): void {
    if (seconds <= 0) {
      this.activeUntil = Date.now();
      this.host.scheduler.clear('meter');
      return;
    }
    const wasActive = this.meteringActive;
    this.activeUntil = Date.now() + seconds * 1000;
    if (!wasActive) {
      // A new window starts with the current readings, so the UI has values at once.
      this.lastReported = undefined;
      this.checkAndReport();
    }
    this.scheduleTick();
  }

  private scheduleTick(): void {
    const left = this.activeUntil - Date.now();
    if (left <= 0) {
      this.host.scheduler.clear('meter');
      return;
    }
    this.host.scheduler.set('meter', Math.min(this.tickMs, left), () => {
      if (!this.meteringActive) return; // window over: report nothing more
      this.checkAndReport();
      this.scheduleTick();
    });
  }

  private checkAndReport(): void {
    const m = this.sample(this.drift);
    const r = (x: number) => Math.round(x * 100) / 100;
    const last = this.lastReported;
    const changed =
      !last ||
      Math.abs(r(m.power) - r(last.power)) > METERING_THRESHOLDS.power ||
      Math.abs(r(m.voltage) - r(last.voltage)) > METERING_THRESHOLDS.voltage ||
      Math.abs(r(m.current) - r(last.current)) > METERING_THRESHOLDS.current;
    if (!changed) return;
    const params = this.formatted(m);
    Object.assign(this.state, params);
    if (this.host.report(params)) this.lastReported = m;
  }

  /** Advance the random walk (when `walk`) and return the readings. */
  private sample(walk: boolean): Metering {
    if (walk) this.voltage = clamp(this.voltage + (this.host.random() - 0.5), 225, 235);
    if (this.state.switch !== 'on') this.power = 0;
    else if (this.power === 0) this.power = this.loadW;
    else if (walk) {
      const noisy = this.power * (1 + (this.host.random() - 0.5) * 0.04);
      this.power = clamp(noisy + (this.loadW - noisy) * 0.1, 60, 1500);
    }
    return this.metering;
  }

  private current(): number {
    return this.voltage > 0 ? this.power / this.voltage : 0;
  }

  private formatted(m: Metering): Params {
    const type = this.profile.meteringValues ?? 'string';
    return { power: formatMetering(m.power, type), voltage: formatMetering(m.voltage, type), current: formatMetering(m.current, type) };
  }
}

/** `{"uiActive":60}` (seconds); also tolerated: "60" and the SPM form `{"time":60}`. */
function uiActiveSeconds(v: unknown): number | undefined {
  const n = isPlainObject(v) ? v.time : typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  return typeof n === 'number' && Number.isFinite(n) && n >= 0 ? n : undefined;
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}

export interface SensorReading {
  temperature?: number;
  humidity?: number;
}

type Zone = 'high' | 'low' | 'mid';

/** UIID 15: sensor reports and the on-device thermostat. */
export class ThBehaviour extends SwitchBehaviour {
  private temperature: number | undefined;
  private humidity: number | undefined;
  private lastReported: SensorReading = {};
  /** Thermostat zone at the last evaluation; undefined = act on the next evaluation wherever we are. */
  private zone: Zone | undefined;
  readonly sensorType: string;

  constructor(host: BehaviourHost, profile: DeviceProfile, opts: BehaviourOptions) {
    super(host, profile, opts);
    this.sensorType = opts.sensorType ?? profile.sensorType ?? 'AM2301';
    const caps = sensorCapabilities(this.sensorType);
    this.temperature = caps.temperature ? INITIAL_TEMPERATURE : undefined;
    this.humidity = caps.humidity ? INITIAL_HUMIDITY : undefined;
  }

  /** The live readings (undefined = the sensor does not measure it). */
  get reading(): SensorReading {
    return { temperature: this.temperature, humidity: this.humidity };
  }

  /** Test hook: set the sensor reading; it is checked (report thresholds, thermostat) on the next sensor tick. */
  setReading(r: SensorReading): void {
    const caps = sensorCapabilities(this.sensorType);
    if (r.temperature !== undefined) {
      if (!Number.isFinite(r.temperature)) throw new TypeError('temperature must be a finite number');
      if (caps.temperature) this.temperature = r.temperature;
    }
    if (r.humidity !== undefined) {
      if (!Number.isFinite(r.humidity)) throw new TypeError('humidity must be a finite number');
      if (caps.humidity) this.humidity = r.humidity;
    }
  }

  private get tickMs(): number {
    return this.opts.sensorTickMs ?? 5000;
  }

  protected override inchingAllowed(): boolean {
    return !this.autoMode();
  }

  private autoMode(): boolean {
    const t = this.state.deviceType;
    return (t === 'temperature' || t === 'humidity') && this.state.mainSwitch === 'on';
  }

  override onOnline(): void {
    // "upload the temperature and humidity when online": the handshake's full report carries them.
    Object.assign(this.state, this.formatted());
    this.lastReported = this.reading;
    this.scheduleTick();
  }

  private scheduleTick(): void {
    this.host.scheduler.set('sensor', this.tickMs, () => {
      this.sensorTick();
      this.scheduleTick();
    });
  }

  private sensorTick(): void {
    if (this.drift) {
      const rnd = () => this.host.random() - 0.5;
      if (this.temperature !== undefined) this.temperature = clamp(this.temperature + rnd() * 0.4, -40, 80);
      if (this.humidity !== undefined) this.humidity = clamp(this.humidity + rnd() * 2, 0, 100);
    }
    const tenths = (x: number | undefined) => (x === undefined ? undefined : Math.round(x * 10));
    const dt = diff(tenths(this.temperature), tenths(this.lastReported.temperature));
    const dh = diff(roundOpt(this.humidity), roundOpt(this.lastReported.humidity));
    if (dt >= 5 || dh >= 5) {
      // Both values together, as the doc's report example shows (with sensorType).
      const params = { ...this.formatted(), sensorType: this.sensorType };
      Object.assign(this.state, params);
      if (this.host.report(params)) this.lastReported = this.reading;
    }
    this.evaluateThermostat();
  }

  private formatted(): Params {
    return {
      currentTemperature: this.temperature === undefined ? 'unavailable' : formatTemperature(this.temperature),
      currentHumidity: this.humidity === undefined ? 'unavailable' : formatHumidity(this.humidity),
    };
  }

  override handleUpdate(params: Params): UpdateOutcome {
    if (!validateCommonParams(params)) return { error: BAD_PARAMS };
    if ('mainSwitch' in params && !ON_OFF.includes(params.mainSwitch as string)) return { error: BAD_PARAMS };
    if ('deviceType' in params && !['normal', 'temperature', 'humidity'].includes(params.deviceType as string)) return { error: BAD_PARAMS };
    if ('targets' in params && !(Array.isArray(params.targets) && params.targets.every(isPlainObject))) return { error: BAD_PARAMS };
    return { apply: params };
  }

  override afterApply(applied: Params, source: ChangeSource): void {
    const t = this.state.deviceType;
    if (source === 'local' && 'switch' in applied && (t === 'temperature' || t === 'humidity')) {
      // CK-UIID UIID15: pressing the button off in auto mode enters temporary manual mode;
      // turning it on again returns to auto mode.
      const main = applied.switch === 'on' ? 'on' : 'off';
      if (this.state.mainSwitch !== main) {
        this.state.mainSwitch = main;
        this.host.report({ mainSwitch: main });
      }
    }
    super.afterApply(applied, source);
    if ('deviceType' in applied || 'mainSwitch' in applied || 'targets' in applied) {
      this.zone = undefined;
      if (source !== 'device') this.evaluateThermostat();
    }
  }

  /** Switch the relay when the reading enters the high (>= targetHigh) or low (<= targetLow) zone. */
  private evaluateThermostat(): void {
    if (!this.autoMode()) {
      this.zone = undefined;
      return;
    }
    const value = this.state.deviceType === 'temperature' ? this.temperature : this.humidity;
    if (value === undefined) return;
    const targets = Array.isArray(this.state.targets) ? this.state.targets.filter(isPlainObject) : [];
    const high = targets.find((t) => 'targetHigh' in t);
    const low = targets.find((t) => 'targetLow' in t);
    const highV = high ? Number(high.targetHigh) : NaN;
    const lowV = low ? Number(low.targetLow) : NaN;
    const zone: Zone = value >= highV ? 'high' : value <= lowV ? 'low' : 'mid';
    if (zone === this.zone) return;
    this.zone = zone;
    const target = zone === 'high' ? high : zone === 'low' ? low : undefined;
    const reaction = target && isPlainObject(target.reaction) ? target.reaction.switch : undefined;
    if ((reaction === 'on' || reaction === 'off') && this.state.switch !== reaction) this.setSwitch(reaction);
  }
}

function diff(a: number | undefined, b: number | undefined): number {
  if (a === undefined && b === undefined) return 0;
  if (a === undefined || b === undefined) return Infinity;
  return Math.abs(a - b);
}

function roundOpt(x: number | undefined): number | undefined {
  return x === undefined ? undefined : Math.round(x);
}

export interface RfTransmission {
  rfChl: number;
  rfVal: string;
  /** Epoch ms. */
  at: number;
}

/** UIID 28: learned codes (`rfList`) and the `cmd` protocol. */
export class RfBridgeBehaviour extends Behaviour {
  /** Successful `cmd:"transmit"` commands, oldest first. */
  readonly transmitted: RfTransmission[] = [];

  override onOnline(): void {
    this.scheduleRandomTrigger();
  }

  override handleUpdate(params: Params): UpdateOutcome {
    if (!('cmd' in params)) return super.handleUpdate(params);
    const chl = params.rfChl;
    switch (params.cmd) {
      case 'capture':
        if (!isRfChl(chl)) return { error: BAD_PARAMS };
        return {
          reportFull: false,
          after: () => this.host.scheduler.set('capture', this.opts.captureDelayMs ?? 300, () => this.learn(chl)),
        };
      case 'captureCancel':
        return { reportFull: false, after: () => this.host.scheduler.clear('capture') };
      case 'edit': {
        const list = params.rfList;
        if (!(Array.isArray(list) && list.every((e) => isPlainObject(e) && isRfChl(e.rfChl) && typeof e.rfVal === 'string'))) {
          return { error: BAD_PARAMS };
        }
        return { apply: { rfList: list }, reportFull: false };
      }
      case 'transmit': {
        const learned = isRfChl(chl) ? this.learned().find((e) => e.rfChl === chl) : undefined;
        if (!learned) return { error: BAD_PARAMS };
        return { reportFull: false, after: () => this.transmitted.push({ rfChl: chl as number, rfVal: learned.rfVal, at: Date.now() }) };
      }
      default:
        return { error: BAD_PARAMS };
    }
  }

  /** Report a received RF code on channel `rfChl`: `{"cmd":"trigger","rfTrig<n>":"<ISO, whole seconds>"}`. */
  triggerRf(rfChl: number): boolean {
    if (!isRfChl(rfChl)) throw new TypeError(`rfChl must be a non-negative integer, got ${String(rfChl)}`);
    const at = new Date(Math.floor(Date.now() / 1000) * 1000).toISOString();
    return this.host.report({ cmd: 'trigger', [`rfTrig${rfChl}`]: at });
  }

  private learned(): Array<{ rfChl: number; rfVal: string }> {
    const list = this.state.rfList;
    if (!Array.isArray(list)) return [];
    return list.filter((e): e is { rfChl: number; rfVal: string } => isPlainObject(e) && isRfChl(e.rfChl) && typeof e.rfVal === 'string');
  }

  private learn(rfChl: number): void {
    const list = this.learned().filter((e) => e.rfChl !== rfChl);
    list.push({ rfChl, rfVal: randomRfVal(() => this.host.random()) });
    list.sort((a, b) => a.rfChl - b.rfChl);
    this.state.rfList = list;
    this.host.report({ rfList: structuredClone(list) });
  }

  private scheduleRandomTrigger(): void {
    const every = this.opts.rfTriggerIntervalMs ?? 0;
    if (!(every > 0)) return;
    this.host.scheduler.set('rftrigger', every * (0.5 + this.host.random()), () => {
      const learned = this.learned();
      if (learned.length > 0) this.triggerRf(learned[Math.floor(this.host.random() * learned.length)].rfChl);
      this.scheduleRandomTrigger();
    });
  }
}

/** 16 remotes × up to 4 buttons (fw >= 2.7.0, CK-UIID UIID28 devConfig.remoteInfos). */
function isRfChl(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 64;
}

export function createBehaviour(host: BehaviourHost, profile: DeviceProfile, opts: BehaviourOptions): Behaviour {
  switch (profile.kind) {
    case 'multi':
      return new MultiBehaviour(host, profile, opts);
    case 'pow':
      return new PowBehaviour(host, profile, opts);
    case 'th':
      return new ThBehaviour(host, profile, opts);
    case 'rfbridge':
      return new RfBridgeBehaviour(host, profile, opts);
    default:
      return new SwitchBehaviour(host, profile, opts);
  }
}
