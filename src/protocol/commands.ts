/**
 * Turning what a flow sends to `sonoff-device-out` into device params. Friendly forms
 * (`"on"`, `true`, `{"outlet":1,"switch":"toggle"}`) are resolved against the device's known
 * state; any other object is passed through as raw params. Invalid input fails here, before
 * anything is sent.
 */
import { CoolkitError, ErrorCode } from './errors';
import type { Params } from './types';

export type SwitchValue = 'on' | 'off';

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

/** Whole-device switch: `switch` for one-channel devices, every outlet for multi-channel ones. */
function wholeDevice(value: SwitchValue | 'toggle', state: Params): Params {
  if (Array.isArray(state.switches) && state.switch === undefined) {
    const outlets = (state.switches as unknown[]).filter(isPlainObject).map((s) => s.outlet).filter((o): o is number => typeof o === 'number');
    let target: SwitchValue;
    if (value === 'toggle') {
      const anyOn = outlets.some((o) => outletState(state, o) === 'on');
      target = anyOn ? 'off' : 'on';
    } else target = value;
    return { switches: outlets.map((outlet) => ({ switch: target, outlet })) };
  }
  if (value === 'toggle') {
    const current = state.switch;
    if (current !== 'on' && current !== 'off') {
      throw bad('cannot toggle: the device has not reported its switch state yet');
    }
    return { switch: invert(current) };
  }
  return { switch: value };
}

/** Parse an outlet number: a non-negative integer (0-based as on the wire). */
export function parseOutlet(value: unknown): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 31) {
    throw bad(`outlet must be an integer from 0, got ${JSON.stringify(value)}`);
  }
  return n;
}

/**
 * Resolve a flow payload to the params to send.
 * @param payload what arrived in `msg.payload`
 * @param state the device's last known state (for toggles)
 */
export function payloadToParams(payload: unknown, state: Params): Params {
  const simple = typeof payload === 'string' || typeof payload === 'boolean' || typeof payload === 'number'
    ? normaliseSwitch(payload)
    : undefined;
  if (simple !== undefined) return wholeDevice(simple, state);
  if (typeof payload === 'string' || typeof payload === 'boolean' || typeof payload === 'number') {
    throw bad(`payload ${JSON.stringify(payload).slice(0, 40)} is not a command: use "on", "off", "toggle", a boolean or a params object`);
  }
  if (!isPlainObject(payload)) {
    throw bad(`payload must be "on", "off", "toggle", a boolean or an object, not ${payload === null ? 'null' : Array.isArray(payload) ? 'an array' : typeof payload}`);
  }
  if (Object.keys(payload).length === 0) throw bad('payload object is empty: nothing to send');

  if ('outlet' in payload) {
    const outlet = parseOutlet(payload.outlet);
    const sw = normaliseSwitch(payload.switch);
    if (sw === undefined) throw bad('an outlet command needs "switch": "on", "off" or "toggle"');
    let target: SwitchValue;
    if (sw === 'toggle') {
      const current = outletState(state, outlet);
      if (current === undefined) throw bad(`cannot toggle outlet ${outlet}: its state is not known yet`);
      target = invert(current);
    } else target = sw;
    const rest = { ...payload };
    delete rest.outlet;
    delete rest.switch;
    return { ...rest, switches: [{ switch: target, outlet }] };
  }

  if ('switch' in payload) {
    const sw = normaliseSwitch(payload.switch);
    if (sw === undefined) throw bad(`"switch" must be "on", "off" or "toggle", got ${JSON.stringify(payload.switch)}`);
    const rest = { ...payload };
    delete rest.switch;
    return { ...rest, ...wholeDevice(sw, state) };
  }
  return { ...payload };
}

/** A short human summary of params for node status, e.g. `on` or `outlet 1 on`. */
export function summariseParams(params: Params): string {
  if (typeof params.switch === 'string') return params.switch;
  if (Array.isArray(params.switches)) {
    const parts = (params.switches as unknown[]).filter(isPlainObject).map((s) => `${String(s.outlet)}:${String(s.switch)}`);
    return `outlets ${parts.join(' ')}`.slice(0, 40);
  }
  const keys = Object.keys(params);
  return keys.slice(0, 3).join(', ') + (keys.length > 3 ? '…' : '');
}
