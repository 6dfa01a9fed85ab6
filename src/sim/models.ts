/**
 * Device profiles: which Sonoff family a simulated device plays (protocol §3.12–3.16, CK-UIID
 * sections UIID1/2/3/4/5/15/28/32). A profile fixes the firmware `model` string sent in dispatch
 * and register, the romVersion, the initial params (keys, order and VALUE TYPES as the real
 * family sends them) and the behaviour (see ./behaviour).
 *
 * Model strings: `ITA-GZ1-GL` (Basic, seed 001), `PSF-B04-GL` (4CH Pro, §3.12) and `PSA-BHA-GL`
 * (TH10/TH16, §3.6, mdopp#29) are real firmware model strings. For the Dual/3CH, POW R2, S31 and
 * RF Bridge our references give no firmware model string, so those profiles report clearly
 * labelled stand-ins starting with `SIM-`. That is deliberate, not a gap to fill with a guess:
 * a server meets models it does not know in the field and must then classify the device by its
 * params (`switches` → multi-channel, `power`/`voltage` → metering, `currentTemperature` → TH,
 * `rfList` → RF bridge), and these profiles make it do exactly that.
 */
import { createHash } from 'node:crypto';
import { staMacFor } from './ids';
import type { Params } from './state';

export type ProfileKind = 'switch' | 'multi' | 'pow' | 'th' | 'rfbridge';

export interface DeviceProfile {
  /** Profile key, e.g. '4ch'. */
  readonly name: string;
  /** Firmware model string reported in dispatch and register. */
  readonly model: string;
  readonly romVersion: string;
  /** CoolKit UIID of the family (informational: devices never send it). */
  readonly uiid: number;
  readonly kind: ProfileKind;
  /** 'multi': number of outlets (1–8), outlet numbers 0..channels-1. */
  readonly channels?: number;
  /** 'pow': type of power/voltage/current; 'string' as via the cloud, 'number' as S31 sends over LAN. */
  readonly meteringValues?: 'string' | 'number';
  /** 'th': sensor model (DHT11 | DS18B20 | AM2301 | MS01 | errorType). Default AM2301. */
  readonly sensorType?: string;
  /** One line for --help. */
  readonly description: string;
}

export const PROFILES: Readonly<Record<string, DeviceProfile>> = Object.freeze({
  basic: {
    name: 'basic',
    model: 'ITA-GZ1-GL',
    romVersion: '1.5.5',
    uiid: 1,
    kind: 'switch',
    description: 'Sonoff Basic (UIID 1): switch, startup, inching (pulse/pulseWidth), sledOnline',
  },
  '2ch': {
    name: '2ch',
    model: 'SIM-DUAL', // stand-in, see the header
    romVersion: '2.0.2',
    uiid: 2,
    kind: 'multi',
    channels: 2,
    description: 'Dual (UIID 2), 2 outlets: switches/configure/pulses arrays (stand-in model)',
  },
  '3ch': {
    name: '3ch',
    model: 'SIM-3CH', // stand-in, see the header
    romVersion: '2.0.2',
    uiid: 3,
    kind: 'multi',
    channels: 3,
    description: '3-channel (UIID 3), 3 outlets (stand-in model)',
  },
  '4ch': {
    name: '4ch',
    model: 'PSF-B04-GL',
    romVersion: '2.0.2',
    uiid: 4,
    kind: 'multi',
    channels: 4,
    description: '4CH Pro (UIID 4), 4 outlets, per-outlet inching, interlock (lock)',
  },
  pow: {
    name: 'pow',
    model: 'SIM-POW-R2', // stand-in, see the header
    romVersion: '3.5.0',
    uiid: 32,
    kind: 'pow',
    meteringValues: 'string',
    description: 'POW R2 (UIID 32): power/voltage/current as "12.34" strings, uiActive, kWh history (stand-in model)',
  },
  s31: {
    name: 's31',
    model: 'SIM-S31', // stand-in, see the header
    romVersion: '3.5.0',
    uiid: 32,
    kind: 'pow',
    meteringValues: 'number',
    description: 'S31 (UIID 32): like pow but metering values are numbers, LAN-style (stand-in model)',
  },
  th16: {
    name: 'th16',
    model: 'PSA-BHA-GL',
    romVersion: '2.0.4',
    uiid: 15,
    kind: 'th',
    sensorType: 'AM2301',
    description: 'TH10/TH16 (UIID 15) with AM2301: temperature + humidity, on-device thermostat',
  },
  'th16-ds18b20': {
    name: 'th16-ds18b20',
    model: 'PSA-BHA-GL',
    romVersion: '2.0.4',
    uiid: 15,
    kind: 'th',
    sensorType: 'DS18B20',
    description: 'TH16 with DS18B20: temperature only, currentHumidity "unavailable"',
  },
  rfbridge: {
    name: 'rfbridge',
    model: 'SIM-RF-BRIDGE', // stand-in, see the header
    romVersion: '2.7.0',
    uiid: 28,
    kind: 'rfbridge',
    description: 'RF Bridge 433 (UIID 28): rfList, cmd capture/captureCancel/edit/transmit, trigger reports (stand-in model)',
  },
} satisfies Record<string, DeviceProfile>);

export const DEFAULT_PROFILE = 'basic';

export function profileNames(): string[] {
  return Object.keys(PROFILES);
}

/**
 * A profile by key (case-insensitive), by the firmware model string of a profile with a REAL
 * model (`PSF-B04-GL` → 4ch), or else the basic behaviour reporting `nameOrModel` as a raw model
 * string. A DeviceProfile object is validated and returned as is.
 */
export function resolveProfile(nameOrModel: string | DeviceProfile | undefined): DeviceProfile {
  if (nameOrModel === undefined) return PROFILES[DEFAULT_PROFILE];
  if (typeof nameOrModel !== 'string') {
    validateProfile(nameOrModel);
    return nameOrModel;
  }
  const byName = PROFILES[nameOrModel.toLowerCase()];
  if (byName) return byName;
  const byModel = Object.values(PROFILES).find((p) => p.model === nameOrModel);
  if (byModel) return byModel;
  return { ...PROFILES[DEFAULT_PROFILE], name: nameOrModel, model: nameOrModel, description: 'raw model string, basic behaviour' };
}

function validateProfile(p: DeviceProfile): void {
  if (typeof p.model !== 'string' || p.model === '') throw new TypeError('profile.model is required');
  if (!['switch', 'multi', 'pow', 'th', 'rfbridge'].includes(p.kind)) throw new TypeError(`unknown profile kind "${String(p.kind)}"`);
  if (p.kind === 'multi') {
    const n = p.channels;
    if (!(typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 8)) throw new TypeError('a multi profile needs channels 1-8');
  }
}

// ---- deterministic randomness ----------------------------------------------------------------

/** A small seeded PRNG (mulberry32 over a sha256 of `seed`): same seed, same sequence. */
export function seededRandom(seed: string): () => number {
  let a = createHash('sha256').update(seed).digest().readUInt32LE(0);
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An RF code as the bridge reports it: 18 upper-case hex chars, e.g. "29EA015E04245575C0" (CK-UIID UIID28). */
export function randomRfVal(random: () => number): string {
  let s = '';
  for (let i = 0; i < 9; i++) s += Math.floor(random() * 256).toString(16).padStart(2, '0');
  return s.toUpperCase();
}

// ---- POW energy history ------------------------------------------------------------------------

/**
 * `hundredDaysKwhData` (CK-UIID UIID5): 100 days × 3 bytes as 600 lower-case hex chars, today
 * first; each day is byte0 = integer kWh, byte1 = tenths, byte2 = hundredths
 * (25.11 → "190101", 25.31 → "190301"). Values are clamped to [0, 255.99].
 */
export function encodeHundredDaysKwh(days: number[]): string {
  let out = '';
  for (let i = 0; i < 100; i++) {
    const v = Math.min(25599, Math.max(0, Math.round((days[i] ?? 0) * 100)));
    const whole = Math.floor(v / 100);
    const tenths = Math.floor((v % 100) / 10);
    const hundredths = v % 10;
    out += [whole, tenths, hundredths].map((b) => b.toString(16).padStart(2, '0')).join('');
  }
  return out;
}

/** Inverse of encodeHundredDaysKwh (as skydiver's parsePowerUsage reads it). */
export function decodeHundredDaysKwh(hex: string): number[] {
  if (!/^[0-9a-f]{600}$/.test(hex)) throw new TypeError('hundredDaysKwhData must be 600 lower-case hex chars');
  const days: number[] = [];
  for (let i = 0; i < 600; i += 6) {
    const [a, b, c] = [0, 2, 4].map((o) => parseInt(hex.slice(i + o, i + o + 2), 16));
    days.push(Math.round(a * 100 + b * 10 + c) / 100);
  }
  return days;
}

/** The simulated daily consumption of a device over the last 100 days (today first), fixed by its id. */
export function hundredDaysKwhFor(deviceid: string): number[] {
  const rnd = seededRandom(`kwh:${deviceid}`);
  const typical = 0.5 + rnd() * 12; // this appliance's typical day, kWh
  const days: number[] = [];
  for (let i = 0; i < 100; i++) {
    // Today is a partial day; some days the appliance is off.
    const share = i === 0 ? rnd() : 1;
    const v = rnd() < 0.1 ? 0 : typical * (0.6 + rnd() * 0.8) * share;
    days.push(Math.round(v * 100) / 100);
  }
  return days;
}

// ---- initial params ------------------------------------------------------------------------------

/** Sensor readings a TH profile starts with (strings "22.5" / "45" on the wire). */
export const INITIAL_TEMPERATURE = 22.5;
export const INITIAL_HUMIDITY = 45;

/** Format a temperature the way TH firmware does: 0.1 °C resolution, no trailing ".0" ("22.5", "15"). */
export function formatTemperature(t: number): string {
  return String(Math.round(t * 10) / 10);
}

/** Humidity has 1 % resolution ("45"). */
export function formatHumidity(h: number): string {
  return String(Math.round(h));
}

/** Which readings a sensor type provides. */
export function sensorCapabilities(sensorType: string): { temperature: boolean; humidity: boolean } {
  switch (sensorType) {
    case 'DS18B20':
      return { temperature: true, humidity: false };
    case 'MS01': // soil moisture: humidity only
      return { temperature: false, humidity: true };
    case 'errorType':
      return { temperature: false, humidity: false };
    default: // AM2301, DHT11
      return { temperature: true, humidity: true };
  }
}

export interface InitialParamsContext {
  deviceid: string;
  romVersion: string;
  /** th: overrides profile.sensorType. */
  sensorType?: string;
  /** pow: initial metering values (power 0 since the switch starts off). */
  metering?: { power: number; voltage: number; current: number };
}

export function formatMetering(value: number, type: 'string' | 'number'): string | number {
  return type === 'number' ? Math.round(value * 100) / 100 : value.toFixed(2);
}

/** Initial params of a fresh device of this profile, key order as the family reports them. */
export function initialParams(profile: DeviceProfile, ctx: InitialParamsContext): Params {
  const tail = { fwVersion: ctx.romVersion, rssi: -31, staMac: staMacFor(ctx.deviceid) };
  switch (profile.kind) {
    case 'switch':
      // The seed's keys in the seed's order, then what newer UIID1 firmware adds.
      return { switch: 'off', ...tail, startup: 'off', pulse: 'off', pulseWidth: 500, sledOnline: 'on' };
    case 'multi': {
      const outlets = [...Array(profile.channels ?? 4).keys()];
      return {
        switches: outlets.map((outlet) => ({ switch: 'off', outlet })),
        configure: outlets.map((outlet) => ({ startup: 'off', outlet })),
        pulses: outlets.map((outlet) => ({ pulse: 'off', width: 500, outlet })), // `width`, as real devices send (§3.12)
        lock: 0,
        sledOnline: 'on',
        ...tail,
      };
    }
    case 'pow': {
      const type = profile.meteringValues ?? 'string';
      const m = ctx.metering ?? { power: 0, voltage: 230, current: 0 };
      return {
        switch: 'off',
        startup: 'off',
        sledOnline: 'on',
        power: formatMetering(m.power, type),
        voltage: formatMetering(m.voltage, type),
        current: formatMetering(m.current, type),
        ...tail,
      };
    }
    case 'th': {
      const sensorType = ctx.sensorType ?? profile.sensorType ?? 'AM2301';
      const caps = sensorCapabilities(sensorType);
      return {
        switch: 'off',
        startup: 'off',
        pulse: 'off',
        pulseWidth: 500,
        mainSwitch: 'off',
        deviceType: 'normal',
        sensorType,
        currentTemperature: caps.temperature ? formatTemperature(INITIAL_TEMPERATURE) : 'unavailable',
        currentHumidity: caps.humidity ? formatHumidity(INITIAL_HUMIDITY) : 'unavailable',
        ...tail,
      };
    }
    case 'rfbridge': {
      const rnd = seededRandom(`rf:${ctx.deviceid}`);
      return {
        rfList: [
          { rfChl: 0, rfVal: randomRfVal(rnd) },
          { rfChl: 1, rfVal: randomRfVal(rnd) },
        ],
        ...tail,
      };
    }
  }
}
