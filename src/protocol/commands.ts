/**
 * Turning what a flow sends to `sonoff-device-out` into device params, for every family.
 * Friendly forms (`"on"`, `true`, `{"outlet":1,"switch":"toggle"}`, `{"transmit":2}`) are resolved
 * against the device's known state and capabilities; other objects pass through as raw params.
 * Either way the result is checked against what the device can do, so a command it cannot
 * perform fails here, before anything is sent.
 */
import { capabilitiesOf, type Capabilities } from './capabilities';
import { CoolkitError, ErrorCode } from './errors';
import type { Params } from './types';

export type SwitchValue = 'on' | 'off';

export const PULSE_MIN_MS = 500;
export const PULSE_MAX_MS = 3_600_000;
const STARTUP_VALUES = ['on', 'off', 'stay'];

function bad(message: string): CoolkitError {
  return new CoolkitError(ErrorCode.BAD_REQUEST, message);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !Buffer.isBuffer(v);
}

/** `"on"`/`"off"`/booleans/1/0 → `on|off`; `"toggle"` stays; anything else is undefined. */
export function normaliseSwitch(value: unknown): SwitchValue | 'toggle' | undefined {
  if (value === true || value === 1) return 'on';
  if (value === false || value === 0) return 'off';
  if (typeof value !== 'string') return undefined;
  const v = value.trim().toLowerCase();
  if (v === 'on' || v === 'true' || v === '1') return 'on';
  if (v === 'off' || v === 'false' || v === '0') return 'off';
  if (v === 'toggle') return 'toggle';
  return undefined;
}

function outletState(state: Params, outlet: number): SwitchValue | undefined {
  const switches = state.switches;
  if (!Array.isArray(switches)) return undefined;
  const entry = switches.find((s) => isPlainObject(s) && s.outlet === outlet) as Record<string, unknown> | undefined;
  const value = entry?.switch;
  return value === 'on' || value === 'off' ? value : undefined;
}

function invert(v: SwitchValue): SwitchValue {
  return v === 'on' ? 'off' : 'on';
}

function isMulti(caps: Capabilities, state: Params): boolean {
  return caps.family === 'multi' || (caps.family === 'unknown' && Array.isArray(state.switches) && state.switch === undefined);
}

function outletsOf(caps: Capabilities, state: Params): number[] {
  if (caps.channels > 1) return Array.from({ length: caps.channels }, (_, i) => i);
  const known = Array.isArray(state.switches)
    ? (state.switches as unknown[]).filter(isPlainObject).map((s) => s.outlet).filter((o): o is number => typeof o === 'number')
    : [];
  return known;
}

/** Whole-device switch: `switch` for one-channel devices, every outlet for multi-channel ones. */
function wholeDevice(value: SwitchValue | 'toggle', state: Params, caps: Capabilities): Params {
  if (caps.family === 'rf') throw bad('an RF bridge has no relay: send {"transmit": <channel>} instead');
  if (isMulti(caps, state)) {
    const outlets = outletsOf(caps, state);
    if (outlets.length === 0) throw bad('the device has not reported its outlets yet: address one with {"outlet": n, "switch": "on"}');
    let target: SwitchValue;
    if (value === 'toggle') target = outlets.some((o) => outletState(state, o) === 'on') ? 'off' : 'on';
    else target = value;
    return { switches: outlets.map((outlet) => ({ switch: target, outlet })) };
  }
  if (value === 'toggle') {
    const current = state.switch;
    if (current !== 'on' && current !== 'off') throw bad('cannot toggle: the device has not reported its switch state yet');
    return { switch: invert(current) };
  }
  return { switch: value };
}

/** Parse an outlet number: an integer from 0 (outlets count from 0 on the wire). */
export function parseOutlet(value: unknown, caps?: Capabilities): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 31) {
    throw bad(`outlet must be an integer from 0, got ${JSON.stringify(value)}`);
  }
  if (caps && caps.channels > 0 && n >= caps.channels && caps.source !== 'none') {
    throw bad(`outlet ${n} does not exist: this device has ${caps.channels} channel${caps.channels === 1 ? '' : 's'} (0..${caps.channels - 1})`);
  }
  return n;
}

/** Inching width: 500..3 600 000 ms in steps of 500. */
export function parsePulseWidth(value: unknown): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < PULSE_MIN_MS || n > PULSE_MAX_MS || n % 500 !== 0) {
    throw bad(`pulseWidth must be ${PULSE_MIN_MS}..${PULSE_MAX_MS} ms in steps of 500, got ${JSON.stringify(value)}`);
  }
  return n;
}

function parseOnOff(name: string, value: unknown): SwitchValue {
  const v = normaliseSwitch(value);
  if (v !== 'on' && v !== 'off') throw bad(`"${name}" must be "on" or "off", got ${JSON.stringify(value)}`);
  return v;
}

function parseStartup(value: unknown): string {
  if (typeof value !== 'string' || !STARTUP_VALUES.includes(value)) {
    throw bad(`startup must be "on", "off" or "stay", got ${JSON.stringify(value)}`);
  }
  return value;
}

function parseRfChannel(value: unknown, state: Params, mustBeLearned: boolean): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 63) throw bad(`RF channel must be an integer 0..63, got ${JSON.stringify(value)}`);
  if (mustBeLearned && Array.isArray(state.rfList)) {
    const learned = (state.rfList as unknown[]).some((e) => isPlainObject(e) && Number(e.rfChl) === n);
    if (!learned) throw bad(`RF channel ${n} is not learned on this bridge: capture it first`);
  }
  return n;
}

/** Friendly per-outlet forms: `{outlet, switch}`, `{outlet, startup}`, `{outlet, pulse, pulseWidth}`. */
function outletCommand(payload: Record<string, unknown>, state: Params, caps: Capabilities): Params {
  const outlet = parseOutlet(payload.outlet, caps);
  const rest = { ...payload };
  delete rest.outlet;
  const single = !isMulti(caps, state) && caps.family !== 'unknown';
  if (single && outlet > 0) throw bad(`outlet ${outlet} does not exist: this is a one-channel device (use outlet 0 or no outlet)`);
  const out: Params = {};
  if ('switch' in rest) {
    const sw = normaliseSwitch(rest.switch);
    if (sw === undefined) throw bad('an outlet command needs "switch": "on", "off" or "toggle"');
    delete rest.switch;
    let target: SwitchValue;
    if (sw === 'toggle') {
      const current = single ? (state.switch === 'on' || state.switch === 'off' ? state.switch : undefined) : outletState(state, outlet);
      if (current === undefined) throw bad(`cannot toggle outlet ${outlet}: its state is not known yet`);
      target = invert(current);
    } else target = sw;
    if (single) out.switch = target;
    else out.switches = [{ switch: target, outlet }];
  }
  if ('startup' in rest) {
    const startup = parseStartup(rest.startup);
    delete rest.startup;
    if (single) out.startup = startup;
    else out.configure = [{ startup, outlet }];
  }
  if ('pulse' in rest) {
    const pulse = parseOnOff('pulse', rest.pulse);
    const width = rest.pulseWidth ?? rest.width;
    delete rest.pulse;
    delete rest.pulseWidth;
    delete rest.width;
    const entry: Record<string, unknown> = { pulse };
    if (width !== undefined) entry.width = parsePulseWidth(width);
    else if (pulse === 'on') throw bad('inching needs a pulseWidth in ms (500..3600000, steps of 500)');
    if (single) {
      out.pulse = pulse;
      if (entry.width !== undefined) out.pulseWidth = entry.width;
    } else out.pulses = [{ ...entry, outlet }];
  }
  if (Object.keys(out).length === 0) throw bad('an outlet command needs "switch", "startup" or "pulse"');
  return { ...rest, ...out };
}

/** RF bridge friendly forms: `{"transmit":n}`, `{"capture":n}`, `{"captureCancel":true}`. */
function rfCommand(payload: Record<string, unknown>, state: Params): Params | undefined {
  if ('transmit' in payload) return { cmd: 'transmit', rfChl: parseRfChannel(payload.transmit, state, true) };
  if ('capture' in payload) return { cmd: 'capture', rfChl: parseRfChannel(payload.capture, state, false) };
  if ('captureCancel' in payload) return { cmd: 'captureCancel' };
  return undefined;
}

/**
 * Check params against what the device can do. Unknown devices (no model match, no report yet)
 * are only checked for well-formed values.
 */
export function validateParams(params: Params, caps: Capabilities): void {
  const known = caps.family !== 'unknown';
  const need = (ok: boolean, what: string) => {
    if (known && !ok) throw bad(`this ${describeFamily(caps)} cannot ${what}`);
  };
  if ('switch' in params) {
    need(caps.channels === 1, 'take "switch" (use {"outlet": n, "switch": ...} for a multi-channel device)');
    parseOnOff('switch', params.switch);
  }
  if ('switches' in params) {
    need(caps.family === 'multi', 'take "switches" (it has no outlets)');
    if (!Array.isArray(params.switches) || params.switches.length === 0) throw bad('"switches" must be a non-empty array of {"switch","outlet"}');
    for (const s of params.switches) {
      if (!isPlainObject(s)) throw bad('"switches" entries must be objects');
      parseOutlet(s.outlet, caps);
      parseOnOff('switch', s.switch);
    }
  }
  if ('startup' in params) {
    need(caps.powerOnState && caps.family !== 'multi', 'set "startup" (multi-channel devices use {"outlet": n, "startup": ...})');
    parseStartup(params.startup);
  }
  if ('configure' in params) need(caps.family === 'multi', 'take "configure"');
  if ('pulses' in params) need(caps.family === 'multi', 'take "pulses"');
  if ('pulse' in params) {
    need(caps.inching && caps.family !== 'multi', 'do inching with "pulse"');
    parseOnOff('pulse', params.pulse);
  }
  if ('pulseWidth' in params) parsePulseWidth(params.pulseWidth);
  if ('sledOnline' in params) {
    need(caps.led, 'switch its LED');
    parseOnOff('sledOnline', params.sledOnline);
  }
  if ('cmd' in params) need(caps.rf, 'take RF commands ("cmd")');
  for (const key of ['uiActive', 'hundredDaysKwh', 'oneKwh']) if (key in params) need(caps.metering, `take "${key}" (it does not meter power)`);
  for (const key of ['mainSwitch', 'deviceType', 'targets']) if (key in params) need(caps.thermostat, `take "${key}" (it has no thermostat)`);
}

function describeFamily(caps: Capabilities): string {
  switch (caps.family) {
    case 'switch': return 'one-channel switch';
    case 'multi': return `${caps.channels}-channel switch`;
    case 'pow': return 'power meter';
    case 'th': return 'TH sensor switch';
    case 'rf': return 'RF bridge';
    default: return 'device';
  }
}

/**
 * Resolve a flow payload to the params to send.
 * @param payload what arrived in `msg.payload`
 * @param state the device's last known state (for toggles and RF channels)
 * @param caps the device's capabilities (default: recognised from `state`)
 */
export function payloadToParams(payload: unknown, state: Params, caps: Capabilities = capabilitiesOf(undefined, state)): Params {
  let params: Params;
  if (typeof payload === 'string' && payload.trim().toLowerCase() === 'capturecancel') {
    params = { cmd: 'captureCancel' };
  } else if (typeof payload === 'string' || typeof payload === 'boolean' || typeof payload === 'number') {
    const simple = normaliseSwitch(payload);
    if (simple === undefined) {
      throw bad(`payload ${JSON.stringify(payload).slice(0, 40)} is not a command: use "on", "off", "toggle", a boolean or a params object`);
    }
    params = wholeDevice(simple, state, caps);
  } else if (!isPlainObject(payload)) {
    throw bad(`payload must be "on", "off", "toggle", a boolean or an object, not ${payload === null ? 'null' : Array.isArray(payload) ? 'an array' : typeof payload}`);
  } else if (Object.keys(payload).length === 0) {
    throw bad('payload object is empty: nothing to send');
  } else if ('outlet' in payload) {
    params = outletCommand(payload, state, caps);
  } else {
    const rf = rfCommand(payload, state);
    if (rf) params = rf;
    else if ('switch' in payload) {
      const sw = normaliseSwitch(payload.switch);
      if (sw === undefined) throw bad(`"switch" must be "on", "off" or "toggle", got ${JSON.stringify(payload.switch)}`);
      const rest = { ...payload };
      delete rest.switch;
      params = { ...rest, ...wholeDevice(sw, state, caps) };
    } else {
      params = { ...payload };
      if ('pulse' in params && params.pulseWidth === undefined && params.pulse === 'on' && caps.family !== 'unknown') {
        throw bad('inching needs a pulseWidth in ms (500..3600000, steps of 500)');
      }
    }
  }
  validateParams(params, caps);
  return params;
}

/** A short human summary of params for node status, e.g. `on` or `outlets 1:on`. */
export function summariseParams(params: Params): string {
  if (typeof params.switch === 'string') return params.switch;
  if (Array.isArray(params.switches)) {
    const parts = (params.switches as unknown[]).filter(isPlainObject).map((s) => `${String(s.outlet)}:${String(s.switch)}`);
    return `outlets ${parts.join(' ')}`.slice(0, 40);
  }
  if (typeof params.cmd === 'string') return `${params.cmd}${params.rfChl !== undefined ? ` ${String(params.rfChl)}` : ''}`;
  const keys = Object.keys(params);
  return keys.slice(0, 3).join(', ') + (keys.length > 3 ? '…' : '');
}
