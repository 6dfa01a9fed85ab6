/**
 * Where `check_update` and `ota` get firmware from. The OTA firmware store is a later piece of
 * work; until it is plugged in, `noFirmware` answers "no update available" and refuses `ota`.
 */

export interface FirmwareInfo {
  version: string;
  /** Download URL the device would fetch. */
  url: string;
  /** Release notes, one line. */
  info?: string;
}

export interface FirmwareProvider {
  /** The newest firmware known for a device model, or undefined. */
  latest(model: string): FirmwareInfo | undefined | Promise<FirmwareInfo | undefined>;
  /**
   * Start flashing `firmware` onto a device; resolves when the device accepted the upgrade.
   * Absent: this server cannot update firmware (ota answers so, ota_support is false).
   */
  upgrade?(deviceid: string, firmware: FirmwareInfo): Promise<void>;
}

/** No firmware store: nothing is ever newer, ota is not available. */
export const noFirmware: FirmwareProvider = {
  latest: () => undefined,
};

/** Compare dotted versions numerically ("1.10.0" > "1.9.3"); non-numeric parts compare as text. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.\-+_ ]/);
  const pb = b.split(/[.\-+_ ]/);
  const n = Math.max(pa.length, pb.length);
  for (let i = 0; i < n; i++) {
    const x = pa[i] ?? '0';
    const y = pb[i] ?? '0';
    const nx = /^\d+$/.test(x) ? Number(x) : NaN;
    const ny = /^\d+$/.test(y) ? Number(y) : NaN;
    const c = Number.isNaN(nx) || Number.isNaN(ny) ? x.localeCompare(y) : nx - ny;
    if (c !== 0) return c < 0 ? -1 : 1;
  }
  return 0;
}

/** The shape of the OTA issue's firmware store and update manager that the adapter needs. */
export interface FirmwareStoreLike {
  latest(model: string): { model: string; version: string; addedAt?: string } | undefined;
}
export interface OtaManagerLike {
  update(deviceid: string, options: { version?: string; model?: string; onProgress?: (p: { state: string; reason?: string }) => void }): Promise<{ state: string; reason?: string }>;
}

/** States of an OTA update after which the device has accepted it (Zhiting `ota` answers then). */
const ACCEPTED = new Set(['acked', 'disconnected', 'downloading', 'downloaded', 'success']);

/**
 * A FirmwareProvider over the local firmware store and OTA manager: `latest` from the store,
 * `upgrade` starts the update and resolves once the device accepted it (ack, or it dropped the
 * connection to download, as some firmware does); it rejects when the update fails before that.
 */
export function storeFirmwareProvider(store: FirmwareStoreLike, ota?: OtaManagerLike): FirmwareProvider {
  const provider: FirmwareProvider = {
    latest(model: string): FirmwareInfo | undefined {
      const entry = store.latest(model);
      if (!entry) return undefined;
      return { version: entry.version, url: '', info: `${entry.model} ${entry.version}${entry.addedAt ? `, added ${entry.addedAt}` : ''}` };
    },
  };
  if (ota) {
    provider.upgrade = (deviceid: string, firmware: FirmwareInfo) => new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (p: { state: string; reason?: string }) => {
        if (settled) return;
        if (ACCEPTED.has(p.state)) {
          settled = true;
          resolve();
        } else if (p.state === 'failed') {
          settled = true;
          reject(new Error(p.reason ?? 'the update failed'));
        }
      };
      ota.update(deviceid, { version: firmware.version, onProgress: settle }).then(settle, (err: Error) => {
        if (!settled) {
          settled = true;
          reject(err);
        }
      });
    });
  }
  return provider;
}
