/**
 * The TH10/TH16 thermostat (UIID 15, coolkit-protocol.md §3.15; seed 000): what a flow sends to
 * `thermostat-targets` → the params the device takes, the device's thermostat state for the
 * node's output and status, and the local-control decision for devices without an on-board
 * thermostat.
 *
 * Device params, exactly as the 2018 app capture (seed 000):
 * - "switch on below 28": `{"deviceType":"temperature","mainSwitch":"on","targets":[
 *   {"targetHigh":"28","reaction":{"switch":"off"}},{"targetLow":"28","reaction":{"switch":"on"}}]}`
 * - "switch on above 28": the same with the reactions swapped;
 * - thermostat off: `{"deviceType":"normal","mainSwitch":"off"}`;
 * - manual on: `{"switch":"on","mainSwitch":"on","deviceType":"normal"}`.
 * Targets: index 0 is the high one, index 1 the low one; values are strings.
 */
import type { Capabilities } from './capabilities';
import { CoolkitError, ErrorCode } from './errors';
import { RANGES, SENSOR_RANGES, toReading } from './normalise';
import type { Params } from './types';

export type Quantity = 'temperature' | 'humidity';
export type AutoMode = 'heat' | 'cool' | 'humidify' | 'dehumidify';
export type ThermostatMode = AutoMode | 'off' | 'manual';

/** A thermostat setting from `msg.payload`, validated. */
export interface ThermostatSetting {
  mode: ThermostatMode;
  /** For the automatic modes. */
  quantity?: Quantity;
  /** Which side of the band switches the relay on (heat/humidify: below, cool/dehumidify: above). */
  switchOn?: 'below' | 'above';
  /** The setpoint the user gave (low = high = setpoint on the device). */
  setpoint?: number;
  low?: number;
  high?: number;
  /** off/manual: the relay state to set with it, if any. */
  switch?: 'on' | 'off';
}

function bad(message: string): CoolkitError {
  return new CoolkitError(ErrorCode.BAD_REQUEST, message);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !Buffer.isBuffer(v);
}

const MODES: readonly ThermostatMode[] = ['heat', 'cool', 'humidify', 'dehumidify', 'off', 'manual'];

export function unitOf(quantity: Quantity): string {
  return quantity === 'temperature' ? '°C' : '%';
}

/** Values as the device takes them: temperature to 0.1 °C, humidity to 1 %, as strings ("28", "25.5"). */
export function targetValue(quantity: Quantity, value: number): string {
  const rounded = quantity === 'temperature' ? Math.round(value * 10) / 10 : Math.round(value);
  return String(Object.is(rounded, -0) ? 0 : rounded);
}

function num(what: string, v: unknown): number {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n)) throw bad(`${what} must be a number, got ${JSON.stringify(v)}`);
  return n;
}

const PAYLOAD_KEYS = ['mode', 'setpoint', 'high', 'low', 'switchOn', 'switch', 'hysteresis'];

/**
 * `msg.payload` → a setting. Forms: `{"mode":"heat","setpoint":28}`, `{"mode":"cool","high":26,"low":24}`,
 * `{"mode":"humidity","setpoint":60}` (switch on above: a dehumidifier; `"switchOn":"below"` for a
 * humidifier, or mode `humidify`/`dehumidify`), `{"mode":"off"}`, `{"mode":"manual","switch":"on"}`.
 * `hysteresis` (default `defaultHysteresis`) widens a setpoint into a band of that width; the
 * on-device thermostat gets low = high = setpoint unless the payload asks for a band.
 */
export function parseThermostatPayload(payload: unknown, defaultHysteresis = 0): ThermostatSetting {
  let p: unknown = payload;
  if (typeof p === 'string') p = { mode: p };
  if (!isObject(p)) throw bad(`payload must be an object such as {"mode":"heat","setpoint":21}, got ${JSON.stringify(payload)?.slice(0, 60)}`);
  for (const key of Object.keys(p)) {
    if (!PAYLOAD_KEYS.includes(key)) throw bad(`unknown key "${key}" (a thermostat payload has ${PAYLOAD_KEYS.join(', ')})`);
  }
  let mode = typeof p.mode === 'string' ? p.mode.trim().toLowerCase() : p.mode;
  let switchOn: 'below' | 'above' | undefined;
  if (p.switchOn !== undefined) {
    if (p.switchOn !== 'below' && p.switchOn !== 'above') throw bad(`switchOn must be "below" or "above", got ${JSON.stringify(p.switchOn)}`);
    switchOn = p.switchOn;
  }
  if (mode === 'humidity') mode = switchOn === 'below' ? 'humidify' : 'dehumidify';
  else if (mode === 'temperature') mode = switchOn === 'above' ? 'cool' : 'heat';
  if (typeof mode !== 'string' || !MODES.includes(mode as ThermostatMode)) {
    throw bad(`mode must be "heat", "cool", "humidity" (or "humidify"/"dehumidify"), "off" or "manual", got ${JSON.stringify(p.mode)}`);
  }
  const m = mode as ThermostatMode;
  if (m === 'off' || m === 'manual') {
    for (const key of ['setpoint', 'high', 'low', 'hysteresis', 'switchOn']) if (p[key] !== undefined) throw bad(`mode "${m}" takes no "${key}"`);
    const setting: ThermostatSetting = { mode: m };
    if (p.switch !== undefined) {
      if (p.switch !== 'on' && p.switch !== 'off' && typeof p.switch !== 'boolean') throw bad(`switch must be "on" or "off", got ${JSON.stringify(p.switch)}`);
      setting.switch = p.switch === true || p.switch === 'on' ? 'on' : 'off';
    }
    return setting;
  }
  if (p.switch !== undefined) throw bad(`mode "${m}" switches the relay itself: "switch" is for "off" and "manual"`);
  const quantity: Quantity = m === 'heat' || m === 'cool' ? 'temperature' : 'humidity';
  const expected: 'below' | 'above' = m === 'heat' || m === 'humidify' ? 'below' : 'above';
  if (switchOn !== undefined && switchOn !== expected) throw bad(`mode "${m}" switches on ${expected} the target, not ${switchOn}`);
  const setting: ThermostatSetting = { mode: m, quantity, switchOn: expected };
  const hasBand = p.high !== undefined || p.low !== undefined;
  if (p.setpoint !== undefined && hasBand) throw bad('give either "setpoint" or "high" and "low", not both');
  if (p.setpoint !== undefined) {
    const s = num('setpoint', p.setpoint);
    const h = p.hysteresis !== undefined ? num('hysteresis', p.hysteresis) : defaultHysteresis;
    if (h < 0) throw bad(`hysteresis must not be negative, got ${h}`);
    setting.setpoint = s;
    setting.low = s - h / 2;
    setting.high = s + h / 2;
  } else if (hasBand) {
    if (p.high === undefined || p.low === undefined) throw bad('a band needs both "high" and "low"');
    if (p.hysteresis !== undefined) throw bad('"hysteresis" goes with "setpoint"; "high" and "low" already make the band');
    setting.high = num('high', p.high);
    setting.low = num('low', p.low);
  } else {
    throw bad(`mode "${m}" needs "setpoint" (or "high" and "low")`);
  }
  if ((setting.high as number) < (setting.low as number)) throw bad(`high (${setting.high}) must be greater than or equal to low (${setting.low})`);
  return setting;
}

/** The sensor's range for a quantity, or a reason why there is no reading of it. */
export function sensorRange(state: Params, quantity: Quantity): { range: readonly [number, number]; sensor?: string } | { missing: string } {
  const sensorType = typeof state.sensorType === 'string' ? state.sensorType : undefined;
  const reading = quantity === 'temperature' ? state.currentTemperature : state.currentHumidity;
  if (sensorType === 'errorType') return { missing: 'the device reports an unsupported sensor (sensorType "errorType")' };
  if (sensorType && SENSOR_RANGES[sensorType]) {
    const range = SENSOR_RANGES[sensorType][quantity];
    if (!range) return { missing: `the ${sensorType} sensor measures no ${quantity}` };
    return { range, sensor: sensorType };
  }
  if (reading === 'unavailable') return { missing: `no ${quantity} sensor is connected (the device reports ${quantity === 'temperature' ? 'currentTemperature' : 'currentHumidity'} "unavailable")` };
  return { range: quantity === 'temperature' ? RANGES.temperature : RANGES.humidity };
}

/**
 * Check a setting against the device that measures: it has a sensor for the quantity and the
 * targets are in the sensor's range.
 */
export function validateSetting(setting: ThermostatSetting, sensorState: Params, sensorCaps?: Capabilities): void {
  if (!setting.quantity) return;
  const quantity = setting.quantity;
  if (sensorCaps && sensorCaps.family !== 'unknown' && !sensorCaps[quantity] && sensorState[quantity === 'temperature' ? 'currentTemperature' : 'currentHumidity'] === undefined) {
    throw bad(`the device has no ${quantity} sensor`);
  }
  const found = sensorRange(sensorState, quantity);
  if ('missing' in found) throw bad(found.missing);
  const [min, max] = found.range;
  const unit = unitOf(quantity);
  for (const [what, v] of [['setpoint', setting.setpoint], ['low', setting.low], ['high', setting.high]] as const) {
    if (v === undefined) continue;
    if (v < min || v > max) throw bad(`${what} ${v} ${unit} is outside the ${found.sensor ? `${found.sensor} sensor's` : 'sensor'} range ${min}..${max} ${unit}`);
  }
}

/** The on-device thermostat's params for a setting, key order as in seed 000. */
export function thermostatParams(setting: ThermostatSetting): Params {
  if (setting.mode === 'off' || setting.mode === 'manual') {
    if (setting.switch) return { switch: setting.switch, mainSwitch: setting.switch, deviceType: 'normal' };
    return { deviceType: 'normal', mainSwitch: 'off' };
  }
  const quantity = setting.quantity as Quantity;
  const onAbove = setting.switchOn === 'above';
  return {
    deviceType: quantity,
    mainSwitch: 'on',
    targets: [
      { targetHigh: targetValue(quantity, setting.high as number), reaction: { switch: onAbove ? 'on' : 'off' } },
      { targetLow: targetValue(quantity, setting.low as number), reaction: { switch: onAbove ? 'off' : 'on' } },
    ],
  };
}

// ---- state for output and status -------------------------------------------------------------

export interface ThermostatView {
  /** heat/cool/humidify/dehumidify while the thermostat runs; manual when it is off. */
  mode: ThermostatMode;
  /** Automatic control is set but the relay was switched by hand (temporary manual). */
  paused?: boolean;
  quantity?: Quantity;
  setpoint?: number;
  low?: number;
  high?: number;
  temperature: number | null;
  humidity: number | null;
  /** true = relay on. */
  relay: boolean | null;
  sensorType?: string;
  /** `local` when the node switches the relay itself. */
  control: 'device' | 'local';
}

function readingNumber(v: unknown): number | null {
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : null;
}

/** Readings of a device, null when it reports none or an impossible value. */
export function readingsOf(state: Params): { temperature: number | null; humidity: number | null; sensorType?: string } {
  const sensorType = typeof state.sensorType === 'string' ? state.sensorType : undefined;
  const temperature = sensorRange(state, 'temperature');
  const humidity = sensorRange(state, 'humidity');
  const out: { temperature: number | null; humidity: number | null; sensorType?: string } = {
    temperature: 'range' in temperature ? toReading(state.currentTemperature, temperature.range) : null,
    humidity: 'range' in humidity ? toReading(state.currentHumidity, humidity.range) : null,
  };
  if (sensorType) out.sensorType = sensorType;
  return out;
}

/** The on-device thermostat's state from a TH's params. */
export function deviceThermostatView(state: Params): ThermostatView {
  const readings = readingsOf(state);
  const relay = state.switch === 'on' ? true : state.switch === 'off' ? false : null;
  const view: ThermostatView = { mode: 'manual', ...readings, relay, control: 'device' };
  const type = state.deviceType;
  if (type !== 'temperature' && type !== 'humidity') return view;
  const targets = Array.isArray(state.targets) ? state.targets.filter(isObject) : [];
  const highT = targets.find((t) => 'targetHigh' in t);
  const lowT = targets.find((t) => 'targetLow' in t);
  const high = highT ? readingNumber(highT.targetHigh) : null;
  const low = lowT ? readingNumber(lowT.targetLow) : null;
  const highReaction = highT && isObject(highT.reaction) ? highT.reaction.switch : undefined;
  const lowReaction = lowT && isObject(lowT.reaction) ? lowT.reaction.switch : undefined;
  const onAbove = highReaction === 'on' || (highReaction === undefined && lowReaction === 'off');
  view.quantity = type;
  view.mode = type === 'temperature' ? (onAbove ? 'cool' : 'heat') : onAbove ? 'dehumidify' : 'humidify';
  if (high !== null) view.high = high;
  if (low !== null) view.low = low;
  if (high !== null && low !== null && high === low) view.setpoint = high;
  if (state.mainSwitch === 'off') view.paused = true;
  return view;
}

/** The view of a setting the node runs itself (local control). */
export function settingView(setting: ThermostatSetting | undefined, readings: { temperature: number | null; humidity: number | null; sensorType?: string }, relay: boolean | null): ThermostatView {
  const view: ThermostatView = { mode: setting?.mode ?? 'manual', ...readings, relay, control: 'local' };
  if (setting?.quantity) {
    view.quantity = setting.quantity;
    if (setting.setpoint !== undefined) view.setpoint = setting.setpoint;
    if (setting.low !== undefined) view.low = setting.low;
    if (setting.high !== undefined) view.high = setting.high;
  }
  return view;
}

function fmt(n: number): string {
  return String(Math.round(n * 10) / 10);
}

/**
 * Node status text: `heat < 28 °C · 22.5 °C now`, `cool 24–26 °C · 27 °C now`,
 * `dehumidify > 60 % · 55 % now`, `manual · on · 22.5 °C now`.
 */
export function statusText(view: ThermostatView): string {
  const q = view.quantity ?? (view.temperature !== null ? 'temperature' : 'humidity');
  const current = q === 'temperature' ? view.temperature : view.humidity;
  const now = current === null ? '' : ` · ${fmt(current)} ${unitOf(q)} now`;
  if (view.mode === 'manual' || view.mode === 'off') {
    const relay = view.relay === null ? '' : ` · ${view.relay ? 'on' : 'off'}`;
    return `${view.mode}${relay}${now}`;
  }
  const unit = unitOf(view.quantity ?? 'temperature');
  const below = view.mode === 'heat' || view.mode === 'humidify';
  let target = '';
  if (view.setpoint !== undefined) target = `${below ? '<' : '>'} ${fmt(view.setpoint)} ${unit}`;
  else if (view.low !== undefined && view.high !== undefined) target = `${fmt(view.low)}–${fmt(view.high)} ${unit}`;
  return `${view.paused ? 'paused: ' : ''}${view.mode} ${target}${now}`.replace(/\s+·/g, ' ·');
}

/** Whether two views differ in what the output reports. */
export function viewChanged(a: ThermostatView | undefined, b: ThermostatView): boolean {
  return !a || JSON.stringify(a) !== JSON.stringify(b);
}

// ---- local control ---------------------------------------------------------------------------

export interface LocalControlConfig {
  /** The relay stays on at least this long once switched on, ms. */
  minOnMs: number;
  /** The relay stays off at least this long once switched off, ms. */
  minOffMs: number;
}

export interface LocalControlMemory {
  /** When the relay last changed (by this node or by hand), epoch ms. */
  lastSwitchAt?: number;
}

export type Decision =
  | { action: 'none'; reason: string }
  | { action: 'switch'; to: 'on' | 'off'; reason: string }
  | { action: 'wait'; to: 'on' | 'off'; until: number; reason: string };

/**
 * What the node should do with the relay now. Heat/humidify switch on below `low` and off above
 * `high`; cool/dehumidify the other way round; between the two (the hysteresis band) the relay
 * keeps its state. A change is delayed until the relay has been on for `minOnMs` or off for
 * `minOffMs`, so it never chatters. Pure: the caller switches and remembers when.
 */
export function decide(config: LocalControlConfig, setting: ThermostatSetting | undefined, memory: LocalControlMemory, reading: number | null, relay: boolean | null, now: number): Decision {
  if (!setting || !setting.quantity || setting.low === undefined || setting.high === undefined) return { action: 'none', reason: 'thermostat off' };
  if (reading === null) return { action: 'none', reason: 'no reading' };
  const onBelow = setting.switchOn !== 'above';
  let want: 'on' | 'off' | undefined;
  if (onBelow) {
    if (reading < setting.low) want = 'on';
    else if (reading > setting.high) want = 'off';
  } else if (reading > setting.high) want = 'on';
  else if (reading < setting.low) want = 'off';
  if (want === undefined) return { action: 'none', reason: 'inside the band' };
  const current = relay === null ? undefined : relay ? 'on' : 'off';
  if (current === want) return { action: 'none', reason: `already ${want}` };
  if (current !== undefined && memory.lastSwitchAt !== undefined) {
    const minimum = current === 'on' ? config.minOnMs : config.minOffMs;
    const until = memory.lastSwitchAt + minimum;
    if (now < until) return { action: 'wait', to: want, until, reason: `minimum ${current} time` };
  }
  return { action: 'switch', to: want, reason: `${setting.quantity} ${fmt(reading)} ${onBelow ? (want === 'on' ? '<' : '>') : want === 'on' ? '>' : '<'} ${fmt(want === 'on' ? (onBelow ? setting.low : setting.high) : onBelow ? setting.high : setting.low)}` };
}
