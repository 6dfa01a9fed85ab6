/**
 * The device registry: every device that ever registered, with its keys, model, last known
 * params and liveness. Lookups are by deviceid (a Map), never a scan. Persisted to one JSON file
 * through `SaveScheduler` (atomic writes); new devices are written at once, param changes are
 * coalesced.
 */
import { randomUUID } from 'node:crypto';
import { loadJsonFile, atomicWriteFile, SaveScheduler } from './store';
import { mergeParams } from '../protocol/state';
import type { DeviceInfo, Params } from '../protocol/types';

export interface DeviceRecord {
  deviceid: string;
  /** The key the device was made with (sent in dispatch and register). */
  factoryApikey: string;
  /** The key this server issued at first register; the device uses it afterwards. */
  apikey: string;
  model: string;
  romVersion: string;
  /** Merged state from every report. */
  params: Params;
  online: boolean;
  /** ms epoch of the last frame (message or ping) from the device. */
  lastSeen: number;
  firstSeen: number;
  name?: string;
}

interface StateFile {
  version: 1;
  devices: Array<Omit<DeviceRecord, 'online'>>;
}

const STATE_VERSION = 1;

function checkStateFile(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object') return 'not an object';
  const v = value as Partial<StateFile>;
  if (v.version !== STATE_VERSION) return `unknown state version ${String(v.version)}`;
  if (!Array.isArray(v.devices)) return 'devices is not an array';
  for (const d of v.devices) {
    if (!d || typeof d.deviceid !== 'string' || typeof d.apikey !== 'string' || typeof d.params !== 'object' || d.params === null) {
      return 'a device entry is malformed';
    }
  }
  return undefined;
}

export interface RegistryOptions {
  /** Path of the JSON state file; undefined keeps the registry in memory only. */
  file?: string;
  /** Called when the state file was corrupt (moved aside) or a save failed. */
  onError?: (err: Error) => void;
  /**
   * How long param reports are coalesced before the file is rewritten (default 5 s). Keys and
   * devices (register, allow, rename, forget) are written at once; a crash can lose at most this
   * much of reported state, which devices send again when they reconnect.
   */
  saveDelayMs?: number;
}

export class DeviceRegistry {
  private readonly devices = new Map<string, DeviceRecord>();
  private readonly saver: SaveScheduler | undefined;
  private onlineCount = 0;

  constructor(private readonly options: RegistryOptions = {}) {
    const file = options.file;
    if (file) {
      this.saver = new SaveScheduler(
        () => atomicWriteFile(file, this.serialise()),
        (err) => this.options.onError?.(new Error(`cannot save device state to ${file}: ${err.message}; the previous file is kept`)),
        options.saveDelayMs ?? 5000,
      );
    }
  }

  /** Load the state file. A corrupt file is moved aside and reported; the registry starts empty. */
  load(): void {
    if (!this.options.file) return;
    const result = loadJsonFile<StateFile>(this.options.file, checkStateFile);
    if (result.corrupt) {
      this.options.onError?.(new Error(`state file ${this.options.file} is unusable (${result.corrupt.reason}); moved aside to ${result.corrupt.movedTo} and starting with no devices`));
    }
    for (const d of result.data?.devices ?? []) {
      this.devices.set(d.deviceid, { ...d, params: d.params ?? {}, online: false });
    }
  }

  get size(): number {
    return this.devices.size;
  }

  get online(): number {
    return this.onlineCount;
  }

  get(deviceid: string): DeviceRecord | undefined {
    return this.devices.get(deviceid);
  }

  all(): IterableIterator<DeviceRecord> {
    return this.devices.values();
  }

  /**
   * Record a (re-)registration. A new device gets a fresh issued apikey, stable from then on.
   * Returns the record and whether it is new (new records are saved at once by the caller's flush).
   */
  register(deviceid: string, factoryApikey: string, model: string | undefined, romVersion: string | undefined, now = Date.now()): { record: DeviceRecord; isNew: boolean } {
    let record = this.devices.get(deviceid);
    const isNew = record === undefined;
    if (!record) {
      let issued = randomUUID();
      while (issued === factoryApikey) issued = randomUUID();
      record = { deviceid, factoryApikey, apikey: issued, model: model ?? '', romVersion: romVersion ?? '', params: {}, online: false, lastSeen: now, firstSeen: now };
      this.devices.set(deviceid, record);
    } else {
      record.factoryApikey = factoryApikey;
      if (model) record.model = model;
      if (romVersion) record.romVersion = romVersion;
    }
    record.lastSeen = now;
    this.saver?.schedule();
    return { record, isNew };
  }

  setOnline(record: DeviceRecord, online: boolean): void {
    if (record.online === online) return;
    record.online = online;
    this.onlineCount += online ? 1 : -1;
  }

  /** Merge a report into the device's params. */
  applyReport(record: DeviceRecord, params: Params): void {
    mergeParams(record.params, params);
    this.saver?.schedule();
  }

  /**
   * Put a device on the allow-list before it connects (editor approval, `coolkit-pair`): a
   * record with its factory key and an issued key, so its first register is accepted.
   */
  allow(deviceid: string, factoryApikey: string | undefined, name?: string, now = Date.now()): DeviceRecord {
    let record = this.devices.get(deviceid);
    if (!record) {
      let issued = randomUUID();
      while (issued === factoryApikey) issued = randomUUID();
      record = { deviceid, factoryApikey: factoryApikey ?? '', apikey: issued, model: '', romVersion: '', params: {}, online: false, lastSeen: 0, firstSeen: now };
      this.devices.set(deviceid, record);
    } else if (factoryApikey) {
      record.factoryApikey = factoryApikey;
    }
    if (name !== undefined) record.name = name;
    void this.flushNow();
    return record;
  }

  rename(deviceid: string, name: string): boolean {
    const record = this.devices.get(deviceid);
    if (!record) return false;
    record.name = name;
    void this.flushNow();
    return true;
  }

  /** Remove a device (the editor's "forget"). */
  remove(deviceid: string): boolean {
    const record = this.devices.get(deviceid);
    if (!record) return false;
    if (record.online) this.onlineCount--;
    this.devices.delete(deviceid);
    void this.flushNow();
    return true;
  }

  /** Write at once (identity changes); errors are reported through onError, never thrown. */
  private flushNow(): Promise<void> {
    return this.saver ? this.saver.flush(true) : Promise.resolve();
  }

  /** Write now (used after a new device registers and on close). */
  flush(): Promise<void> {
    return this.saver ? this.saver.flush() : Promise.resolve();
  }

  close(): Promise<void> {
    const done = this.flush();
    return done.finally(() => this.saver?.cancel());
  }

  private serialise(): string {
    const devices: StateFile['devices'] = [];
    for (const d of this.devices.values()) {
      const { online: _online, ...rest } = d;
      devices.push(rest);
    }
    return JSON.stringify({ version: STATE_VERSION, devices } satisfies StateFile);
  }
}

export function deviceInfo(record: DeviceRecord): DeviceInfo {
  return { deviceid: record.deviceid, model: record.model, romVersion: record.romVersion, online: record.online };
}
