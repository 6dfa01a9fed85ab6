/**
 * Deterministic identities for simulated devices.
 *
 * The CLI must present the *same* devices on every run (same deviceid, same factory apikey,
 * same MAC), so a server that stores device records sees them come back instead of meeting a
 * new fleet each time. Everything here is therefore derived from the deviceid alone.
 */
import { createHash } from 'node:crypto';

/** Sonoff device ids are 10 lowercase hex chars, e.g. `100008db11`. */
export const DEVICE_ID_LENGTH = 10;

const DEVICE_ID_RE = /^[0-9a-f]{10}$/;

export function isDeviceId(value: string): boolean {
  return DEVICE_ID_RE.test(value);
}

/**
 * Device id `n` of a fleet: `prefix` followed by `n` in hex, zero-padded to 10 chars.
 * Throws if the prefix is not hex or `n` does not fit in the remaining digits.
 */
export function deviceIdFor(prefix: string, n: number): string {
  const p = prefix.toLowerCase();
  if (!/^[0-9a-f]*$/.test(p) || p.length >= DEVICE_ID_LENGTH) {
    throw new RangeError(`prefix must be 0-${DEVICE_ID_LENGTH - 1} hex chars, got "${prefix}"`);
  }
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`device number must be a non-negative integer, got ${n}`);
  const digits = DEVICE_ID_LENGTH - p.length;
  const counter = n.toString(16);
  if (counter.length > digits) {
    throw new RangeError(`device number ${n} does not fit in ${digits} hex digit(s) after prefix "${prefix}"`);
  }
  return p + counter.padStart(digits, '0');
}

/** How many devices (numbered from 1) fit after `prefix`. */
export function maxDevicesForPrefix(prefix: string): number {
  return 16 ** (DEVICE_ID_LENGTH - prefix.length) - 1;
}

/**
 * A stable factory apikey for `deviceid`: sha256 of the id laid out as a UUID.
 * The version/variant bits are set as for v4 because some servers validate keys with a strict
 * RFC 4122 regex; the value is not random, but nothing on the wire can tell.
 */
export function factoryApikeyFor(deviceid: string): string {
  const b = createHash('sha256').update(`coolkit-sim:${deviceid}`).digest().subarray(0, 16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * A station MAC in the seed's format (`5C:CF:7F:A6:FD:F6`): the Espressif OUI `5C:CF:7F`
 * followed by the last 6 hex chars of the deviceid, so it is unique within a fleet and readable.
 */
export function staMacFor(deviceid: string): string {
  const tail = deviceid.toUpperCase().padStart(6, '0').slice(-6);
  return `5C:CF:7F:${tail.slice(0, 2)}:${tail.slice(2, 4)}:${tail.slice(4, 6)}`;
}
