/**
 * Who may connect. Modes:
 * - `open`: any device is accepted (a LAN with only your own devices).
 * - `allowlist`: only devices already known (registered before, approved in the editor, or
 *   recorded by `coolkit-pair`), and only with the factory apikey recorded for them, so a
 *   spoofed deviceid with the wrong key is refused.
 * - `auto` (default): `open` while the server started with no known device (first set-up),
 *   `allowlist` from the next start on.
 * In every mode but `open`, a pairing window accepts new devices for a few minutes.
 * Refused devices are remembered (bounded) so the user can approve them.
 */
import { createHash } from 'node:crypto';
import { CoolkitError, ErrorCode } from '../protocol/errors';
import type { DeviceRecord } from './registry';

export type AdmissionMode = 'auto' | 'open' | 'allowlist';

export interface RefusedDevice {
  deviceid: string;
  factoryApikey: string;
  model: string;
  romVersion: string;
  remote: string;
  reason: string;
  attempts: number;
  firstAttempt: number;
  lastAttempt: number;
}

export const MAX_REFUSED = 200;

export class Admission {
  private pairingUntil = 0;
  private openForSetup = false;
  private readonly refusedDevices = new Map<string, RefusedDevice>();

  constructor(public mode: AdmissionMode) {}

  /** Called once at start: `auto` is open only when the registry starts empty. */
  start(knownDevices: number): void {
    this.openForSetup = this.mode === 'auto' && knownDevices === 0;
  }

  /** The mode in effect now (what `auto` resolved to). */
  get effectiveMode(): 'open' | 'allowlist' {
    return this.mode === 'open' || this.openForSetup ? 'open' : 'allowlist';
  }

  openPairing(minutes: number, now = Date.now()): number {
    this.pairingUntil = minutes > 0 ? now + minutes * 60_000 : 0;
    return this.pairingUntil;
  }

  pairingOpenUntil(now = Date.now()): number {
    return this.pairingUntil > now ? this.pairingUntil : 0;
  }

  /** Accept or refuse a register. `record` is the known device, if any. */
  decide(record: DeviceRecord | undefined, deviceid: string, factoryApikey: string, now = Date.now()): CoolkitError | undefined {
    const open = this.effectiveMode === 'open';
    if (record) {
      const differs = record.factoryApikey
        ? record.factoryApikey !== factoryApikey
        : record.factoryKeyHash !== undefined && record.factoryKeyHash !== factoryKeyHash(deviceid, factoryApikey);
      if (!open && differs) {
        return new CoolkitError(ErrorCode.FORBIDDEN, `device ${deviceid} presented a factory apikey that differs from the recorded one (spoofed deviceid?)`, deviceid);
      }
      return undefined;
    }
    if (open || this.pairingOpenUntil(now) > 0) return undefined;
    return new CoolkitError(ErrorCode.FORBIDDEN, `device ${deviceid} is not on the allow-list: approve it in the editor or open a pairing window`, deviceid);
  }

  /** Remember a refusal for the editor's "refused devices" list. */
  noteRefused(entry: Omit<RefusedDevice, 'attempts' | 'firstAttempt' | 'lastAttempt'>, now = Date.now()): void {
    const existing = this.refusedDevices.get(entry.deviceid);
    if (existing) {
      this.refusedDevices.delete(entry.deviceid);
      this.refusedDevices.set(entry.deviceid, { ...existing, ...entry, attempts: existing.attempts + 1, lastAttempt: now });
      return;
    }
    if (this.refusedDevices.size >= MAX_REFUSED) {
      const oldest = this.refusedDevices.keys().next().value;
      if (oldest !== undefined) this.refusedDevices.delete(oldest);
    }
    this.refusedDevices.set(entry.deviceid, { ...entry, attempts: 1, firstAttempt: now, lastAttempt: now });
  }

  refused(): RefusedDevice[] {
    return [...this.refusedDevices.values()];
  }

  takeRefused(deviceid: string): RefusedDevice | undefined {
    const entry = this.refusedDevices.get(deviceid);
    this.refusedDevices.delete(deviceid);
    return entry;
  }
}

/**
 * What instances sharing an MQTT broker publish instead of a device's factory key: enough to
 * check a key a device presents, useless for impersonating it (the key is a random UUID).
 */
export function factoryKeyHash(deviceid: string, factoryApikey: string): string {
  return createHash('sha256').update(`coolkit-factory-key:${deviceid}:${factoryApikey}`).digest('hex');
}
