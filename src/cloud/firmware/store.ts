/**
 * Firmware images for OTA: a user1/user2 pair per model and version (stock Sonoff firmware uses
 * Espressif's two OTA partitions and downloads the image for the inactive one). Each image's
 * sha256 is computed once when it is added. Images live under `<dir>/<model>/<version>/` with an
 * index file, all written atomically, so the store survives restarts.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { atomicWriteFile, loadJsonFile } from '../store';

export interface ImageInfo {
  name: 'user1.bin' | 'user2.bin';
  file: string;
  size: number;
  sha256: string;
}

export interface FirmwareEntry {
  model: string;
  version: string;
  user1: ImageInfo;
  user2: ImageInfo;
  addedAt: string;
}

interface IndexFile {
  version: 1;
  firmware: FirmwareEntry[];
}

/** Espressif application images start with this magic byte. */
export const ESP_IMAGE_MAGIC = 0xea;
export const MAX_IMAGE_BYTES = 1024 * 1024;
/** Model and version become directory names: no separators, and no leading dot (so never `.` or `..`). */
const SAFE = /^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$/;

/** Numeric comparison of dotted versions ("2.10.0" > "2.9.1"); non-numeric parts compare as text. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.');
  const pb = b.split('.');
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? '0';
    const y = pb[i] ?? '0';
    const nx = Number(x);
    const ny = Number(y);
    if (Number.isFinite(nx) && Number.isFinite(ny)) {
      if (nx !== ny) return nx < ny ? -1 : 1;
    } else if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

export class FirmwareError extends Error {}

export class FirmwareStore {
  private readonly entries = new Map<string, FirmwareEntry>();
  private readonly indexFile: string;
  /** Index writes run one after another, each writing the list as it is then. */
  private saving: Promise<void> = Promise.resolve();

  constructor(private readonly dir: string) {
    this.indexFile = path.join(dir, 'index.json');
  }

  get directory(): string {
    return this.dir;
  }

  /**
   * Load the index; entries that are malformed or whose files are gone are dropped. Image paths
   * are resolved under this store's directory, so a moved user directory keeps working. Returns
   * a warning, if any.
   */
  load(): string | undefined {
    const result = loadJsonFile<IndexFile>(this.indexFile, (v) => {
      const f = v as Partial<IndexFile>;
      return f && f.version === 1 && Array.isArray(f.firmware) ? undefined : 'not a firmware index';
    });
    const image = (e: FirmwareEntry, name: 'user1.bin' | 'user2.bin', i: unknown): ImageInfo | undefined => {
      const v = i as Partial<ImageInfo> | undefined;
      if (!v || typeof v.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(v.sha256) || typeof v.size !== 'number') return undefined;
      const file = path.join(this.dir, e.model, e.version, name);
      return fs.existsSync(file) ? { name, file, size: v.size, sha256: v.sha256 } : undefined;
    };
    for (const e of result.data?.firmware ?? []) {
      if (!e || typeof e.model !== 'string' || typeof e.version !== 'string' || !SAFE.test(e.model) || !SAFE.test(e.version)) continue;
      const user1 = image(e, 'user1.bin', e.user1);
      const user2 = image(e, 'user2.bin', e.user2);
      if (user1 && user2) this.entries.set(key(e.model, e.version), { model: e.model, version: e.version, user1, user2, addedAt: String(e.addedAt ?? '') });
    }
    return result.corrupt ? `firmware index was unusable (${result.corrupt.reason}); moved aside to ${result.corrupt.movedTo}` : undefined;
  }

  /** Add (or replace) the image pair for a model and version. */
  async add(model: string, version: string, user1: Buffer, user2: Buffer): Promise<FirmwareEntry> {
    if (typeof model !== 'string' || !SAFE.test(model)) throw new FirmwareError(`model "${model}" is not a valid firmware model name`);
    if (typeof version !== 'string' || !SAFE.test(version)) throw new FirmwareError(`version "${version}" is not valid (digits, letters, dots)`);
    for (const [name, image] of [['user1', user1], ['user2', user2]] as const) {
      if (!Buffer.isBuffer(image) || image.length === 0) throw new FirmwareError(`${name} image is missing or empty`);
      if (image.length > MAX_IMAGE_BYTES) throw new FirmwareError(`${name} image is ${image.length} bytes; Sonoff OTA partitions hold at most ${MAX_IMAGE_BYTES}`);
      if (image[0] !== ESP_IMAGE_MAGIC) throw new FirmwareError(`${name} image does not start with the Espressif magic byte 0xEA: it would brick the device`);
    }
    const dir = path.join(this.dir, model, version);
    const info = async (name: 'user1.bin' | 'user2.bin', data: Buffer): Promise<ImageInfo> => {
      const file = path.join(dir, name);
      await atomicWriteFile(file, data, 0o644);
      return { name, file, size: data.length, sha256: createHash('sha256').update(data).digest('hex') };
    };
    const entry: FirmwareEntry = { model, version, user1: await info('user1.bin', user1), user2: await info('user2.bin', user2), addedAt: new Date().toISOString() };
    this.entries.set(key(model, version), entry);
    await this.save();
    return entry;
  }

  /** Add from a directory holding `user1*.bin` and `user2*.bin`. */
  async addFromDirectory(model: string, version: string, directory: string): Promise<FirmwareEntry> {
    let names: string[];
    try {
      names = fs.readdirSync(directory);
    } catch (err) {
      throw new FirmwareError(`cannot read firmware directory ${directory}: ${(err as Error).message}`);
    }
    const find = (prefix: string) => {
      const found = names.filter((n) => n.toLowerCase().startsWith(prefix) && n.toLowerCase().endsWith('.bin'));
      if (found.length !== 1) throw new FirmwareError(`${directory} must hold exactly one ${prefix}*.bin (found ${found.length})`);
      return path.join(directory, found[0]);
    };
    return this.addFromFiles(model, version, find('user1'), find('user2'));
  }

  async addFromFiles(model: string, version: string, user1Path: string, user2Path: string): Promise<FirmwareEntry> {
    const read = (p: string) => {
      try {
        return fs.readFileSync(p);
      } catch (err) {
        throw new FirmwareError(`cannot read ${p}: ${(err as Error).message}`);
      }
    };
    return this.add(model, version, read(user1Path), read(user2Path));
  }

  get(model: string, version: string): FirmwareEntry | undefined {
    return this.entries.get(key(model, version));
  }

  /** The newest image for a model. */
  latest(model: string): FirmwareEntry | undefined {
    let best: FirmwareEntry | undefined;
    for (const e of this.entries.values()) {
      if (e.model === model && (!best || compareVersions(e.version, best.version) > 0)) best = e;
    }
    return best;
  }

  list(): FirmwareEntry[] {
    return [...this.entries.values()];
  }

  async remove(model: string, version: string): Promise<boolean> {
    const e = this.entries.get(key(model, version));
    if (!e) return false;
    this.entries.delete(key(model, version));
    await this.save();
    fs.rmSync(path.dirname(e.user1.file), { recursive: true, force: true });
    return true;
  }

  private save(): Promise<void> {
    const run = this.saving.then(() => atomicWriteFile(this.indexFile, JSON.stringify({ version: 1, firmware: this.list() } satisfies IndexFile, null, 1), 0o644));
    this.saving = run.catch(() => undefined);
    return run;
  }
}

function key(model: string, version: string): string {
  return `${model}\u0000${version}`;
}
