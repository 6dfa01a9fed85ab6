/**
 * Normalised readings for flows, beside the raw params: numbers for temperature, humidity, power,
 * voltage and current. Devices send strings ("22.5"), numbers (S31 over LAN: 247.86) or
 * "unavailable"; anything that is not a plausible number becomes `null`, never NaN.
 */
import type { Capabilities } from './capabilities';
import type { Params } from './types';

export interface Normalised {
  /** 1-channel relay: true = on. */
  switch?: boolean | null;
  /** Multi-channel relays by outlet index. */
  outlets?: Array<boolean | null>;
  temperature?: number | null;
  humidity?: number | null;
  power?: number | null;
  voltage?: number | null;
  current?: number | null;
  /** Daily energy in kWh for the last 100 days, today first (decoded `hundredDaysKwhData`). */
  dailyKwh?: number[];
  rssi?: number | null;
}

/** Plausible ranges; values outside are sensor glitches (e.g. DHT11's 0/255 on a bad read). */
export const RANGES = {
  temperature: [-55, 125], // DS18B20 range, the widest TH sensor
  humidity: [0, 100],
  power: [0, 10_000], // W; a 16 A plug at 250 V is 4 kW
  voltage: [0, 400],
  current: [0, 100],
  rssi: [-130, 0],
} as const;

/** Sensor ranges of the TH10/TH16 probes (UIID15 `sensorType`). */
export const SENSOR_RANGES: Readonly<Record<string, { temperature?: readonly [number, number]; humidity?: readonly [number, number] }>> = {
  DHT11: { temperature: [0, 50], humidity: [20, 90] },
  DS18B20: { temperature: [-55, 125] },
  AM2301: { temperature: [-40, 80], humidity: [0, 100] },
  MS01: { humidity: [0, 100] },
  errorType: {},
};

/** A reading as a finite number inside [min, max], or null. */
export function toReading(value: unknown, [min, max]: readonly [number, number]): number | null {
  let n: number;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'string' && value.trim() !== '' && /^[-+]?\d*\.?\d+(e[-+]?\d+)?$/i.test(value.trim())) n = Number(value);
  else return null;
  if (!Number.isFinite(n) || n < min || n > max) return null;
  return n;
}

function onOff(value: unknown): boolean | null {
  return value === 'on' ? true : value === 'off' ? false : null;
}

/**
 * Decode `hundredDaysKwhData`: 3 bytes per day, today first; byte 0 is whole kWh, byte 1 tenths,
 * byte 2 hundredths ("190101" = 25.11). Returns undefined for anything malformed.
 */
export function decodeHundredDaysKwh(hex: unknown): number[] | undefined {
  if (typeof hex !== 'string' || hex.length === 0 || hex.length % 6 !== 0 || !/^[0-9a-fA-F]+$/.test(hex)) return undefined;
  const days: number[] = [];
  for (let i = 0; i < hex.length; i += 6) {
    const whole = parseInt(hex.slice(i, i + 2), 16);
    const tenths = parseInt(hex.slice(i + 2, i + 4), 16);
    const hundredths = parseInt(hex.slice(i + 4, i + 6), 16);
    days.push(Math.round((whole + tenths / 10 + hundredths / 100) * 100) / 100);
  }
  return days;
}

/** The normalised view of a device's state, limited to what its capabilities say it has. */
export function normaliseState(state: Params, caps: Capabilities): Normalised {
  const out: Normalised = {};
  if (caps.family === 'multi' || (Array.isArray(state.switches) && state.switch === undefined)) {
    const outlets: Array<boolean | null> = new Array(Math.max(caps.channels, 0)).fill(null);
    if (Array.isArray(state.switches)) {
      for (const s of state.switches as Array<Record<string, unknown>>) {
        if (s && typeof s.outlet === 'number' && s.outlet >= 0 && s.outlet < 32) outlets[s.outlet] = onOff(s.switch);
      }
    }
    out.outlets = outlets;
  } else if (caps.channels === 1 || state.switch !== undefined) {
    out.switch = onOff(state.switch);
  }
  const sensor = typeof state.sensorType === 'string' ? SENSOR_RANGES[state.sensorType] : undefined;
  if (caps.temperature || state.currentTemperature !== undefined) {
    const range = sensor ? sensor.temperature : RANGES.temperature;
    out.temperature = range ? toReading(state.currentTemperature, range) : null;
  }
  if (caps.humidity || state.currentHumidity !== undefined) {
    const range = sensor ? sensor.humidity : RANGES.humidity;
    out.humidity = range ? toReading(state.currentHumidity, range) : null;
  }
  if (caps.metering) {
    out.power = toReading(state.power, RANGES.power);
    out.voltage = toReading(state.voltage, RANGES.voltage);
    out.current = toReading(state.current, RANGES.current);
    const daily = decodeHundredDaysKwh(state.hundredDaysKwhData);
    if (daily) out.dailyKwh = daily;
  }
  if (state.rssi !== undefined) out.rssi = toReading(state.rssi, RANGES.rssi);
  return out;
}
