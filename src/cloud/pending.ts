/**
 * Import of devices recorded by `coolkit-pair` when Node-RED was not reachable (the pairing
 * computer is on the device's access point). The file is a JSON array of
 * `{deviceid, apikey, name?, pairedAt}`; after import it is renamed to `<file>.imported`.
 * Importing twice is harmless (add-or-update by deviceid).
 */
import * as fs from 'node:fs';
import { APIKEY_PATTERN, DEVICEID_PATTERN } from '../protocol/schemas';

export interface PendingDevice {
  deviceid: string;
  apikey: string;
  name?: string;
}

const deviceidRe = new RegExp(DEVICEID_PATTERN);
const apikeyRe = new RegExp(APIKEY_PATTERN);

export function importPendingDevices(file: string, add: (entry: PendingDevice) => void): { imported: number; error?: string } {
  if (!fs.existsSync(file)) return { imported: 0 };
  let list: unknown;
  try {
    list = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    const aside = `${file}.corrupt-${Date.now()}`;
    try {
      fs.renameSync(file, aside);
    } catch {
      // reported below either way
    }
    return { imported: 0, error: `paired-devices file ${file} is not valid JSON (${(err as Error).message}); moved aside to ${aside}` };
  }
  if (!Array.isArray(list)) return { imported: 0, error: `paired-devices file ${file} is not a JSON array; left as it is` };
  let imported = 0;
  for (const entry of list) {
    const e = entry as Partial<PendingDevice> | null;
    if (!e || typeof e.deviceid !== 'string' || !deviceidRe.test(e.deviceid) || typeof e.apikey !== 'string' || !apikeyRe.test(e.apikey)) continue;
    add({ deviceid: e.deviceid.toLowerCase(), apikey: e.apikey, name: typeof e.name === 'string' ? e.name.slice(0, 100) : undefined });
    imported++;
  }
  try {
    fs.renameSync(file, `${file}.imported`);
  } catch (err) {
    return { imported, error: `imported ${file} but could not rename it: ${(err as Error).message}` };
  }
  return { imported };
}
