/**
 * What a device can do, from its UIID (device type) or model, and failing that from the shape of
 * the params it reports. Used by the nodes (validation before sending), the editor and the hub
 * APIs. Unknown devices still work: their params pass through untouched.
 *
 * UIIDs and params: coolkit-uiid-protocol.md (UIID1/2/3/4/5/6/7/8/9/14/15/28/32).
 */
import type { Params } from './types';

export type Family = 'switch' | 'multi' | 'pow' | 'th' | 'rf' | 'unknown';

export interface Capabilities {
  family: Family;
  /** Device type, when known from the model or the params. */
  uiid?: number;
  /** Relay channels: 1 for `switch`, 2..4 for `switches` arrays, 0 when none (RF bridge). */
  channels: number;
  metering: boolean;
  temperature: boolean;
  humidity: boolean;
  /** Runs the on-device thermostat (`mainSwitch`, `deviceType`, `targets`). */
  thermostat: boolean;
  rf: boolean;
  /** Inching (`pulse`/`pulseWidth`, or per-outlet `pulses`). */
  inching: boolean;
  /** Power-on state (`startup`, or per-outlet `configure`). */
  powerOnState: boolean;
  /** Network LED (`sledOnline`). */
  led: boolean;
  /** Where the capabilities came from. */
  source: 'model' | 'params' | 'none';
}

const base = { metering: false, temperature: false, humidity: false, thermostat: false, rf: false, inching: true, powerOnState: true, led: true };

function oneChannel(uiid: number): Omit<Capabilities, 'source'> {
  return { ...base, family: 'switch', uiid, channels: 1 };
}
function multi(uiid: number, channels: number): Omit<Capabilities, 'source'> {
  return { ...base, family: 'multi', uiid, channels };
}

/** Capabilities per UIID. */
export const UIID_CAPABILITIES: Readonly<Record<number, Omit<Capabilities, 'source'>>> = {
  1: oneChannel(1),
  6: oneChannel(6),
  14: oneChannel(14),
  24: oneChannel(24),
  2: multi(2, 2),
  3: multi(3, 3),
  4: multi(4, 4),
  7: multi(7, 2),
  8: multi(8, 3),
  9: multi(9, 4),
  29: multi(29, 2),
  31: multi(31, 4),
  5: { ...base, family: 'pow', uiid: 5, channels: 1, metering: true },
  32: { ...base, family: 'pow', uiid: 32, channels: 1, metering: true, inching: false },
  15: { ...base, family: 'th', uiid: 15, channels: 1, temperature: true, humidity: true, thermostat: true },
  28: { ...base, family: 'rf', uiid: 28, channels: 0, rf: true, inching: false, powerOnState: false, led: false },
};

/**
 * Firmware model strings seen in captures and issue logs (coolkit-protocol.md), mapped to UIIDs.
 * Other models are recognised from their params.
 */
export const MODEL_UIID: Readonly<Record<string, number>> = {
  'ITA-GZ1-GL': 1, // Sonoff Basic (2017 capture)
  'PSC-B01-GL': 1, // single-channel, fw 2.0.2 (eWeLink-Proxy history)
  'PSA-BHA-GL': 15, // TH10/TH16
  'PSF-B04-GL': 4, // 4CH Pro
  'PSF-A04-GL': 4, // 4CH Pro
};

const UNKNOWN: Capabilities = {
  family: 'unknown', channels: 0, metering: false, temperature: false, humidity: false, thermostat: false, rf: false, inching: false, powerOnState: false, led: false, source: 'none',
};

function outletCount(switches: unknown): number {
  if (!Array.isArray(switches)) return 0;
  let max = -1;
  for (const s of switches) {
    const outlet = (s as { outlet?: unknown } | null)?.outlet;
    if (typeof outlet === 'number' && outlet > max) max = outlet;
  }
  return Math.min(Math.max(max + 1, switches.length), 32);
}

/** Recognise a device from its params (for models not in MODEL_UIID). */
export function capabilitiesFromParams(params: Params): Capabilities {
  const has = (k: string) => Object.prototype.hasOwnProperty.call(params, k);
  if (has('rfList') || (params.cmd === 'trigger') || Object.keys(params).some((k) => /^rfTrig\d+$/.test(k))) {
    return { ...UIID_CAPABILITIES[28], source: 'params' };
  }
  if (has('currentTemperature') || has('currentHumidity') || has('sensorType') || has('mainSwitch') || has('deviceType')) {
    return { ...UIID_CAPABILITIES[15], source: 'params' };
  }
  if (has('power') || has('voltage') || has('current') || has('hundredDaysKwhData') || has('oneKwhData')) {
    const uiid = has('alarmType') || has('alarmPValue') ? 32 : 5;
    return { ...UIID_CAPABILITIES[uiid], source: 'params' };
  }
  if (has('switches')) {
    const channels = Math.max(outletCount(params.switches), 1);
    // Optional features are not always reported, so a switch recognised from params is assumed to have them.
    return { ...base, family: 'multi', channels, source: 'params' };
  }
  if (has('switch')) {
    return { ...base, family: 'switch', channels: 1, source: 'params' };
  }
  return UNKNOWN;
}

/** Capabilities of a device: its UIID (if the caller knows it), then its model, then its params. */
export function capabilitiesOf(model: string | undefined, params: Params, uiid?: number): Capabilities {
  if (uiid !== undefined && UIID_CAPABILITIES[uiid]) return modelCapabilities(uiid);
  const fromModel = model ? MODEL_UIID[model] : undefined;
  if (fromModel !== undefined) return modelCapabilities(fromModel);
  return capabilitiesFromParams(params);
}

/**
 * What a device type can do, one frozen object per UIID shared by every device of that type
 * (the cloud keeps each connected device's capabilities: thousands of copies otherwise).
 */
const sharedByUiid = new Map<number, Capabilities>();
function modelCapabilities(uiid: number): Capabilities {
  let caps = sharedByUiid.get(uiid);
  if (!caps) {
    caps = Object.freeze({ ...UIID_CAPABILITIES[uiid]!, source: 'model' }) as Capabilities;
    sharedByUiid.set(uiid, caps);
  }
  return caps;
}
