/**
 * The pending-devices import file: how a device paired while Node-RED was unreachable gets into
 * the coolkit-server allow-list. The server reads it on start, adds the devices, and renames it
 * to `<file>.imported`.
 *
 * Format: a JSON array (UTF-8, pretty-printed, trailing newline) of
 *
 *   {"deviceid": "100008db17", "apikey": "<factory apikey>", "name": "Hall lamp", "pairedAt": "2026-01-31T12:00:00.000Z"}
 *
 * `name` is omitted when not given; `pairedAt` is an ISO 8601 UTC timestamp. One entry per
 * deviceid: re-pairing a device replaces its entry (newest wins) and moves it to the end.
 *
 * Writes are atomic: a temp file in the same directory, fsync, rename over the target, then a
 * best-effort fsync of the directory, so the server never reads a half-written file and a crash
 * leaves either the old or the new file. The file is created with mode 0600: it holds apikeys.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface PendingDevice {
  deviceid: string;
  apikey: string;
  name?: string;
  /** ISO 8601 UTC. */
  pairedAt: string;
}

export interface AddPendingResult {
  file: string;
  /** True when an entry for the same deviceid was replaced. */
  replaced: boolean;
  /** Entries in the file after the write. */
  count: number;
  /** Where an unreadable previous file was moved, if it was. */
  movedAside?: string;
}

/** `~/.node-red/coolkit/pending-devices.json` (Node-RED's default user directory). */
export function defaultImportFile(home: string = os.homedir()): string {
  return path.join(home, '.node-red', 'coolkit', 'pending-devices.json');
}

export class ImportFileError extends Error {
  constructor(
    message: string,
    readonly file: string,
  ) {
    super(message);
    this.name = 'ImportFileError';
  }
}

function isEntry(v: unknown): v is PendingDevice {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const o = v as Record<string, unknown>;
  return (
    typeof o.deviceid === 'string' &&
    o.deviceid !== '' &&
    typeof o.apikey === 'string' &&
    o.apikey !== '' &&
    (o.name === undefined || typeof o.name === 'string') &&
    (o.pairedAt === undefined || typeof o.pairedAt === 'string')
  );
}

/**
 * Entries of an import file; [] when it does not exist. Throws ImportFileError when the file
 * exists but is not a JSON array of entries.
 */
export async function readPendingDevices(file: string): Promise<PendingDevice[]> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new ImportFileError(`cannot read ${file}: ${(err as Error).message}`, file);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new ImportFileError(`${file} is not valid JSON`, file);
  }
  if (!Array.isArray(data)) throw new ImportFileError(`${file} is not a JSON array`, file);
  const bad = data.findIndex((e) => !isEntry(e));
  if (bad >= 0) throw new ImportFileError(`${file}: entry ${bad} has no deviceid/apikey`, file);
  return data as PendingDevice[];
}

/** Write `text` to `file` atomically (temp + fsync + rename + directory fsync). */
export async function writeFileAtomic(file: string, text: string, mode = 0o600): Promise<void> {
  const dir = path.dirname(file);
  await fsp.mkdir(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(tmp, 'wx', mode);
    await handle.writeFile(text, 'utf8');
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fsp.rename(tmp, file);
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  // Make the rename itself durable. Not possible everywhere (Windows), hence best effort.
  try {
    const d = await fsp.open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    /* best effort */
  }
}

/**
 * Add (or replace, by deviceid) one device in the import file. An existing file that cannot be
 * parsed is not overwritten silently: it is moved aside to `<file>.corrupt-<timestamp>` and
 * reported in `movedAside`.
 */
export async function addPendingDevice(
  file: string,
  device: { deviceid: string; apikey: string; name?: string },
  now: Date = new Date(),
): Promise<AddPendingResult> {
  let entries: PendingDevice[];
  let movedAside: string | undefined;
  try {
    entries = await readPendingDevices(file);
  } catch (err) {
    if (!(err instanceof ImportFileError)) throw err;
    movedAside = `${file}.corrupt-${now.toISOString().replace(/[:.]/g, '-')}`;
    try {
      await fsp.rename(file, movedAside);
    } catch (renameErr) {
      throw new ImportFileError(`${err.message}, and it cannot be moved aside: ${(renameErr as Error).message}`, file);
    }
    entries = [];
  }
  const entry: PendingDevice = {
    deviceid: device.deviceid,
    apikey: device.apikey,
    ...(device.name ? { name: device.name } : {}),
    pairedAt: now.toISOString(),
  };
  const kept = entries.filter((e) => e.deviceid !== device.deviceid);
  const replaced = kept.length !== entries.length;
  kept.push(entry);
  try {
    await writeFileAtomic(file, `${JSON.stringify(kept, null, 2)}\n`);
  } catch (err) {
    throw new ImportFileError(`cannot write ${file}: ${(err as Error).message}`, file);
  }
  const result: AddPendingResult = { file, replaced, count: kept.length };
  if (movedAside) result.movedAside = movedAside;
  return result;
}
