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
  /**
   * For a device held by another instance (MQTT backbone) whose factory key this instance never
   * saw: `factoryKeyHash(deviceid, key)` as that instance published it, so a register here can
   * still be checked against the real key.
   */
  factoryKeyHash?: string;
}

interface StateFile {
  version: 1;
  devices: Array<Omit<DeviceRecord, 'online'>>;
}

const STATE_VERSION = 1;
/** Longest stretch of state-file serialisation between two turns of the event loop. */
const SERIALISE_SLICE_MS = 4;

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
  /** Bumped per record when a report adds a key, changes the outlet count or sends `cmd` (see shapeOf). */
  private readonly shapes = new WeakMap<DeviceRecord, number>();

  constructor(private readonly options: RegistryOptions = {}) {
    const file = options.file;
    if (file) {
      this.saver = new SaveScheduler(
        async () => atomicWriteFile(file, await this.serialise()),
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

  /**
   * A number that changes whenever a report may have changed what the params say about the
   * device (a key it never sent before, its outlets, an RF command), so what is derived from the
   * params (capabilities) can be cached until then.
   */
  shapeOf(record: DeviceRecord): number {
    return this.shapes.get(record) ?? 0;
  }

  /** A record was changed in place (not through a report): save it with the next coalesced write. */
  changed(): void {
    this.saver?.schedule();
  }

  setOnline(record: DeviceRecord, online: boolean): void {
    if (record.online === online) return;
    record.online = online;
    this.onlineCount += online ? 1 : -1;
  }

  /** Merge a report into the device's params. */
  applyReport(record: DeviceRecord, params: Params): void {
    const stored = record.params;
    let reshaped = false;
    for (const key in params) {
      if (key === 'cmd' || !Object.prototype.hasOwnProperty.call(stored, key)) {
        reshaped = true;
        break;
      }
    }
    const outletsBefore = Array.isArray(stored.switches) ? stored.switches.length : 0;
    mergeParams(stored, params);
    if (reshaped || (Array.isArray(stored.switches) ? stored.switches.length : 0) !== outletsBefore) {
      this.shapes.set(record, (this.shapes.get(record) ?? 0) + 1);
    }
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

  /**
   * The state file's text. Built one device at a time, giving the event loop back every few
   * milliseconds, so that writing 15 000 devices does not stall their acks and heartbeats.
   * Each device's entry is a consistent copy of its record at the moment it is taken.
   */
  private async serialise(): Promise<string> {
    const records = [...this.devices.values()];
    const parts: string[] = [];
    let sliceStart = Date.now();
    for (let i = 0; i < records.length; i++) {
      const { online: _online, ...rest } = records[i]!;
      parts.push(JSON.stringify(rest satisfies StateFile['devices'][number]));
      if ((i & 63) === 63 && Date.now() - sliceStart >= SERIALISE_SLICE_MS) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        sliceStart = Date.now();
      }
    }
    return `{"version":${STATE_VERSION},"devices":[${parts.join(',')}]}`;
  }
}

export function deviceInfo(record: DeviceRecord): DeviceInfo {
  return { deviceid: record.deviceid, model: record.model, romVersion: record.romVersion, online: record.online };
}
