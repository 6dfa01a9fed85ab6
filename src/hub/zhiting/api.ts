/**
 * The Zhiting (智汀 SmartAssistant) v1 WebSocket API over the hub session layer, in the shapes
 * of the seed (shared/seeds/002_*.txt):
 *
 *   request   {id, domain, service, identity, service_data}
 *   response  {id, type, result, success}  /  {id, type:"response", success:false, error, error_code}
 *   event     {type:"attribute_change", identity, instance_id, attr:{attribute, val, val_type}}
 *
 * Services: discover, get_attributes, set_attributes, check_update, ota. Every request gets an
 * answer (unknown service, unknown device or attribute, read-only attribute and malformed
 * requests included). Ids are echoed byte for byte, 19-digit int64 ids too. Top-level keys
 * match case-insensitively, as Go's decoder does in SmartAssistant. A bare `ping` text frame is
 * answered with `pong` (the SA web client's heartbeat).
 *
 * Devices come from the local cloud (Sonoff, see ./sonoff) and from the flow (./virtual).
 * Events are computed per device from the report that changed it (no scan of all devices) and
 * serialised once per change for all clients.
 */
import type { Capabilities } from '../../protocol/capabilities';
import type { Params } from '../../protocol/types';
import { CoolkitError } from '../../protocol/errors';
import { bounded, silentLogger, type Logger } from '../../cloud/log';
import type { ConnectionHandler } from '../session/types';
import type { HubConnection } from '../session/connection';
import { BigNumber, JsonError, parseJson } from './json';
import { attrKey, checkValue, describe, findAttribute, Permission, visibleAttributes, type AttributeValue, type DeviceModel } from './model';
import { INFO_INSTANCE, sonoffModel, writesToParams, type SonoffRecord, type Write } from './sonoff';
import { compareVersions, noFirmware, type FirmwareInfo, type FirmwareProvider } from './firmware';
import { fromCommandError, ZhitingCode, ZhitingError } from './errors';
import { checkIdentity, DefinitionError, parseDefinition, VirtualDevices } from './virtual';

/** The part of CoolkitCloud the hub uses (so tests and other sources can stand in). */
export interface DeviceSource {
  devices(): SonoffRecord[];
  device(deviceid: string): SonoffRecord | undefined;
  capabilities(deviceid: string): Capabilities | undefined;
  sendCommand(deviceid: string, params: Params, options: { coalesce?: boolean; offline?: 'fail' | 'queue' }): Promise<unknown>;
}

/** A device event as the cloud (or its router) delivers it. */
export interface SourceEvent {
  deviceid: string;
  params: Params;
  channel?: number;
}

export type SourceEventKind = 'update' | 'online' | 'offline' | 'trigger';

/** A set request for a flow-defined device, handed to the flow. */
export interface VirtualSetRequest {
  set_id: string;
  identity: string;
  attributes: Array<{ instance_id: number; attribute: string; val: unknown }>;
}

export interface ZhitingHubOptions {
  source?: DeviceSource;
  /** Firmware for check_update/ota, or a function asked at each request (so a store can be plugged in later). */
  firmware?: FirmwareProvider | (() => FirmwareProvider | undefined);
  /** A set request for a virtual device: the flow gets it (the node sends a message). */
  onVirtualSet?: (request: VirtualSetRequest) => void;
  /**
   * How long a virtual set waits for the flow's answer. Without an answer (or confirming
   * updates) by then, the request succeeds and the values are taken. 0: succeed at once.
   * Default 2000 ms.
   */
  virtualAnswerMs?: number;
  logger?: Logger;
}

export const SERVICES = ['discover', 'get_attributes', 'set_attributes', 'check_update', 'ota'] as const;
const MAX_WRITES = 64;
const INT64_MAX = 9223372036854775807n;
const INT64_MIN = -9223372036854775808n;

interface PendingSet {
  request: VirtualSetRequest;
  /** `instance/attribute` keys not yet confirmed by an update from the flow. */
  remaining: Map<string, unknown>;
  settle(error?: ZhitingError): void;
  timer?: NodeJS.Timeout;
}

interface Request {
  idRaw: string;
  service: string;
  identity: unknown;
  serviceData: unknown;
}

/** Look up a key case-insensitively (the exact key first). */
function field(obj: Record<string, unknown>, name: string): unknown {
  if (name in obj) return obj[name];
  for (const k of Object.keys(obj)) if (k.toLowerCase() === name) return obj[k];
  return undefined;
}

function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof BigNumber);
}

/** Serialise a response with the id text spliced in exactly as the client sent it. */
export function frame(idRaw: string | undefined, body: Record<string, unknown>): string {
  const rest = JSON.stringify(body);
  return `{"id":${idRaw ?? 'null'}${rest === '{}' ? '}' : `,${rest.slice(1)}`}`;
}

export function errorFrame(idRaw: string | undefined, err: ZhitingError): string {
  return frame(idRaw, { type: 'response', success: false, error: err.message, error_code: err.code });
}

export class ZhitingHub implements ConnectionHandler {
  readonly virtual = new VirtualDevices();
  private readonly source: DeviceSource | undefined;
  private readonly firmwareOption: FirmwareProvider | (() => FirmwareProvider | undefined) | undefined;
  private readonly logger: Logger;
  private readonly virtualAnswerMs: number;
  private readonly onVirtualSet: ((request: VirtualSetRequest) => void) | undefined;
  /** Last value sent in events, per device and `instance/attribute` (JSON text). */
  private readonly lastValues = new Map<string, Map<string, string>>();
  private readonly pending = new Map<string, PendingSet>();
  private readonly pendingByIdentity = new Map<string, Set<PendingSet>>();
  private nextSetId = 1;
  private broadcaster: ((text: string) => number) | undefined;
  private stopped = false;

  constructor(options: ZhitingHubOptions = {}) {
    this.source = options.source;
    this.firmwareOption = options.firmware;
    this.logger = options.logger ?? silentLogger;
    this.virtualAnswerMs = options.virtualAnswerMs ?? 2000;
    this.onVirtualSet = options.onVirtualSet;
    this.primeValues();
  }

  /** Where events go: normally `gateway.broadcast`. */
  setBroadcaster(broadcast: (text: string) => number): void {
    this.broadcaster = broadcast;
  }

  private get firmware(): FirmwareProvider {
    const f = this.firmwareOption;
    return (typeof f === 'function' ? f() : f) ?? noFirmware;
  }

  get otaSupport(): boolean {
    return typeof this.firmware.upgrade === 'function';
  }

  // ---- connection handler -------------------------------------------------------------------

  message(conn: HubConnection, text: string): void {
    if (text.length <= 8 && text.trim().toLowerCase() === 'ping') {
      conn.send('pong');
      return;
    }
    let req: Request;
    try {
      req = this.parseRequest(text);
    } catch (err) {
      const e = err as ZhitingError & { idRaw?: string };
      conn.send(errorFrame(e.idRaw, e));
      return;
    }
    this.dispatch(conn, req).catch((err: unknown) => {
      const e = err instanceof ZhitingError ? err : new ZhitingError(ZhitingCode.INTERNAL, `internal error: ${(err as Error)?.message ?? String(err)}`);
      if (e.code === ZhitingCode.INTERNAL) this.logger.error(`zhiting: ${req.service} failed: ${bounded(e.message)}`);
      conn.send(errorFrame(req.idRaw, e));
    });
  }

  limited(conn: HubConnection, text: string): void {
    // Only small frames are parsed for their id: a flood must not cost a full parse per frame.
    let idRaw: string | undefined;
    if (text.length <= 4096) {
      try {
        idRaw = parseJson(text).idRaw;
      } catch {
        idRaw = undefined;
      }
    }
    conn.send(errorFrame(validIdRaw(idRaw), new ZhitingError(ZhitingCode.RESOURCE_EXHAUSTED, 'rate limit exceeded: too many messages per second on this connection; the request was dropped')));
  }

  private parseRequest(text: string): Request {
    let parsed;
    try {
      parsed = parseJson(text);
    } catch (err) {
      throw new ZhitingError(ZhitingCode.INVALID_ARGUMENT, `malformed request: ${err instanceof JsonError ? err.message : 'not JSON'}`);
    }
    const value = parsed.value;
    const idRaw = validIdRaw(parsed.idRaw);
    const fail = (message: string) => Object.assign(new ZhitingError(ZhitingCode.INVALID_ARGUMENT, message), { idRaw });
    if (!isObj(value)) throw fail(`malformed request: a request is a JSON object, not ${describe(value)}`);
    const id = field(value, 'id');
    if (id === undefined || id === null) throw fail('malformed request: "id" is required');
    if (!isInt64(id)) throw fail(`malformed request: "id" must be an integer (64-bit), not ${describe(id)}`);
    const service = field(value, 'service');
    if (service === undefined || service === null || service === '') throw fail('malformed request: "service" is required');
    if (typeof service !== 'string') throw fail(`malformed request: "service" must be a string, not ${describe(service)}`);
    const domain = field(value, 'domain');
    if (domain !== undefined && domain !== null && typeof domain !== 'string') throw fail(`malformed request: "domain" must be a string, not ${describe(domain)}`);
    return { idRaw: idRaw as string, service, identity: field(value, 'identity'), serviceData: field(value, 'service_data') };
  }

  private async dispatch(conn: HubConnection, req: Request): Promise<void> {
    switch (req.service) {
      case 'discover':
        this.discover(conn, req);
        return;
      case 'get_attributes':
        conn.send(frame(req.idRaw, { type: 'response', result: this.getAttributes(req), success: true }));
        return;
      case 'set_attributes':
        await this.withSlot(conn, () => this.setAttributes(req));
        conn.send(frame(req.idRaw, { type: 'response', success: true }));
        return;
      case 'check_update': {
        const result = await this.withSlot(conn, () => this.checkUpdate(req));
        conn.send(frame(req.idRaw, { type: 'response', result, success: true }));
        return;
      }
      case 'ota':
        await this.withSlot(conn, () => this.ota(req));
        conn.send(frame(req.idRaw, { type: 'response', result: null, success: true }));
        return;
      default:
        throw new ZhitingError(ZhitingCode.UNIMPLEMENTED, `unknown service ${JSON.stringify(req.service).slice(0, 60)}: this hub offers ${SERVICES.join(', ')}`);
    }
  }

  private async withSlot<T>(conn: HubConnection, run: () => Promise<T>): Promise<T> {
    if (!conn.beginOp()) throw new ZhitingError(ZhitingCode.RESOURCE_EXHAUSTED, `too many requests in progress on this connection (at most ${conn.inFlight}): wait for the answers`);
    try {
      return await run();
    } finally {
      conn.endOp();
    }
  }

  // ---- services --------------------------------------------------------------------------------

  /** One response per device, all with the request's id (SA streams discover the same way). */
  private discover(conn: HubConnection, req: Request): void {
    let count = 0;
    const send = (m: DeviceModel) => {
      count++;
      conn.send(frame(req.idRaw, { type: '', result: { device: { name: m.name, identity: m.identity, model: m.model, manufacturer: m.manufacturer, plugin_id: m.plugin_id } }, success: true }));
    };
    if (this.source) for (const record of this.source.devices()) send(this.sonoffModelOf(record));
    for (const m of this.virtual.all()) send(m);
    // Nothing found: one answer all the same, so the client is not left waiting.
    if (count === 0) conn.send(frame(req.idRaw, { type: '', result: null, success: true }));
  }

  private identityOf(req: Request): string {
    const identity = req.identity;
    if (identity === undefined || identity === null || identity === '') throw new ZhitingError(ZhitingCode.INVALID_ARGUMENT, `"identity" is required for ${req.service}`);
    if (typeof identity !== 'string') throw new ZhitingError(ZhitingCode.INVALID_ARGUMENT, `"identity" must be a string, not ${describe(identity)}`);
    return identity;
  }

  /** The model of a device by identity, or a not-found error. */
  private modelOf(identity: string): { model: DeviceModel; record?: SonoffRecord } {
    const record = this.source?.device(identity);
    if (record) return { model: this.sonoffModelOf(record), record };
    const v = this.virtual.get(identity);
    if (v) return { model: v };
    throw new ZhitingError(ZhitingCode.NOT_FOUND, `device ${JSON.stringify(identity).slice(0, 80)} is not known to this hub`);
  }

  private sonoffModelOf(record: SonoffRecord): DeviceModel {
    const caps = this.source?.capabilities(record.deviceid);
    return sonoffModel(record, caps ?? { family: 'unknown', channels: 0, metering: false, temperature: false, humidity: false, thermostat: false, rf: false, inching: false, powerOnState: false, led: false, source: 'none' }, this.otaSupport);
  }

  private getAttributes(req: Request): Record<string, unknown> {
    const identity = this.identityOf(req);
    const { model } = this.modelOf(identity);
    return {
      identity,
      device: {
        name: model.name,
        identity,
        instances: model.instances.map((i) => ({ type: i.type, instance_id: i.instance_id, attrs: visibleAttributes(i) })),
        ota_support: model.ota_support,
      },
    };
  }

  private async setAttributes(req: Request): Promise<void> {
    const identity = this.identityOf(req);
    const { model, record } = this.modelOf(identity);
    const data = req.serviceData;
    if (!isObj(data)) throw new ZhitingError(ZhitingCode.INVALID_ARGUMENT, `"service_data" must be an object with "attributes", not ${describe(data)}`);
    const list = field(data, 'attributes');
    if (!Array.isArray(list) || list.length === 0) throw new ZhitingError(ZhitingCode.INVALID_ARGUMENT, '"service_data.attributes" must be a non-empty array of {instance_id, attribute, val}');
    if (list.length > MAX_WRITES) throw new ZhitingError(ZhitingCode.INVALID_ARGUMENT, `at most ${MAX_WRITES} attributes per set_attributes request`);
    const writes: Write[] = [];
    list.forEach((item, i) => {
      const where = `attributes[${i}]`;
      if (!isObj(item)) throw new ZhitingError(ZhitingCode.INVALID_ARGUMENT, `${where} must be an object {instance_id, attribute, val}`);
      const instanceId = field(item, 'instance_id');
      const attribute = field(item, 'attribute');
      const val = field(item, 'val');
      if (typeof instanceId !== 'number' || !Number.isInteger(instanceId)) throw new ZhitingError(ZhitingCode.INVALID_ARGUMENT, `${where}.instance_id must be an integer, not ${describe(instanceId)}`);
      if (typeof attribute !== 'string' || attribute === '') throw new ZhitingError(ZhitingCode.INVALID_ARGUMENT, `${where}.attribute must be a non-empty string, not ${describe(attribute)}`);
      if (val === undefined) throw new ZhitingError(ZhitingCode.INVALID_ARGUMENT, `${where}.val is required`);
      const found = findAttribute(model, instanceId, attribute);
      if (!found.instance) throw new ZhitingError(ZhitingCode.NOT_FOUND, `device ${identity} has no instance ${instanceId}`);
      if (!found.attr || found.attr.permission === Permission.NONE) throw new ZhitingError(ZhitingCode.NOT_FOUND, `instance ${instanceId} (${found.instance.type}) of device ${identity} has no attribute ${JSON.stringify(attribute).slice(0, 60)}`);
      if (found.attr.permission !== Permission.CONTROL) throw new ZhitingError(ZhitingCode.PERMISSION_DENIED, `attribute "${attribute}" of instance ${instanceId} (${found.instance.type}) is read-only`);
      const checked = checkValue(found.attr, val);
      if (!checked.ok) throw new ZhitingError(ZhitingCode.INVALID_ARGUMENT, `${where}: ${checked.error}`);
      writes.push({ instance_id: instanceId, attribute, val: checked.val });
    });
    if (record) {
      const source = this.source as DeviceSource;
      let params: Params;
      try {
        params = writesToParams(writes, record.params, source.capabilities(identity) ?? { family: 'unknown', channels: 0, metering: false, temperature: false, humidity: false, thermostat: false, rf: false, inching: false, powerOnState: false, led: false, source: 'none' });
      } catch (err) {
        throw fromCommandError(err, identity);
      }
      try {
        await source.sendCommand(identity, params, { coalesce: true, offline: 'fail' });
      } catch (err) {
        throw fromCommandError(err, identity);
      }
      return;
    }
    await this.virtualSet(identity, writes);
  }

  private async checkUpdate(req: Request): Promise<Record<string, unknown>> {
    const identity = this.identityOf(req);
    const { model } = this.modelOf(identity);
    const current = model.version;
    const latest = await this.latestFor(model);
    const available = latest !== undefined && compareVersions(latest.version, current) > 0;
    return {
      current_version: current,
      latest_firmware: latest && available
        ? { version: latest.version, url: latest.url, info: latest.info ?? '' }
        : { version: current, url: '', info: 'no update available' },
      update_available: available,
    };
  }

  private async latestFor(model: DeviceModel): Promise<FirmwareInfo | undefined> {
    if (model.plugin_id !== 'coolkit') return undefined;
    try {
      return (await this.firmware.latest(model.model)) ?? undefined;
    } catch (err) {
      throw new ZhitingError(ZhitingCode.UNAVAILABLE, `the firmware store failed: ${(err as Error).message}`);
    }
  }

  private async ota(req: Request): Promise<void> {
    const identity = this.identityOf(req);
    const { model, record } = this.modelOf(identity);
    if (!record) throw new ZhitingError(ZhitingCode.UNIMPLEMENTED, `device ${identity} is defined by a flow: firmware updates are not available for it`);
    const firmware = this.firmware;
    if (!firmware.upgrade) throw new ZhitingError(ZhitingCode.UNIMPLEMENTED, 'firmware updates are not available on this server');
    const latest = await this.latestFor(model);
    if (!latest || compareVersions(latest.version, model.version) <= 0) {
      throw new ZhitingError(ZhitingCode.FAILED_PRECONDITION, `no update available: device ${identity} runs firmware ${model.version || '(unknown)'}, the newest known for ${model.model || 'its model'} is ${latest?.version ?? 'none'}`);
    }
    if (!record.online) throw new ZhitingError(ZhitingCode.UNAVAILABLE, `device ${identity} is offline`);
    try {
      await firmware.upgrade(identity, latest);
    } catch (err) {
      if (err instanceof CoolkitError) throw fromCommandError(err, identity);
      throw new ZhitingError(ZhitingCode.UNKNOWN, `firmware update of ${identity} failed: ${(err as Error)?.message ?? String(err)}`);
    }
  }

  // ---- events from the cloud ---------------------------------------------------------------------

  /** Remember the current values of every known device, so the first event after a deploy is a real change. */
  private primeValues(): void {
    if (!this.source) return;
    for (const record of this.source.devices()) {
      const m = this.sonoffModelOf(record);
      const values = new Map<string, string>();
      for (const i of m.instances) for (const a of i.attributes) values.set(attrKey(i.instance_id, a.attribute), JSON.stringify(a.val ?? null));
      this.lastValues.set(m.identity, values);
    }
  }

  /** A device event from the cloud: attribute_change for every attribute whose value it changed. */
  onDeviceEvent(kind: SourceEventKind, ev: SourceEvent): void {
    if (this.stopped || !this.source) return;
    const record = this.source.device(ev.deviceid);
    if (!record) return;
    const model = this.sonoffModelOf(record);
    if (kind === 'trigger') {
      // Every received RF code is an event, even two in the same second (same timestamp).
      const instance = model.instances.find((i) => i.type === 'rf_button' && i.instance_id === (ev.channel ?? -1) + 1);
      const a = instance?.attributes.find((x) => x.attribute === 'triggered_at');
      if (instance && a) {
        this.remember(model.identity, instance.instance_id, a);
        this.emitChange(model.identity, instance.instance_id, a);
      }
      return;
    }
    this.diffAndEmit(model);
  }

  private remember(identity: string, instanceId: number, a: AttributeValue): boolean {
    let values = this.lastValues.get(identity);
    if (!values) {
      values = new Map();
      this.lastValues.set(identity, values);
    }
    const key = attrKey(instanceId, a.attribute);
    const text = JSON.stringify(a.val ?? null);
    if (values.get(key) === text) return false;
    values.set(key, text);
    return true;
  }

  private diffAndEmit(model: DeviceModel): void {
    for (const instance of model.instances) {
      for (const a of instance.attributes) {
        if (a.permission === Permission.NONE) continue;
        if (instance.type === 'rf_button' && a.attribute === 'triggered_at') continue; // sent on the trigger event
        if (this.remember(model.identity, instance.instance_id, a)) this.emitChange(model.identity, instance.instance_id, a);
      }
    }
  }

  private emitChange(identity: string, instanceId: number, a: AttributeValue): void {
    if (!this.broadcaster || a.permission === Permission.NONE) return;
    this.broadcaster(JSON.stringify({ type: 'attribute_change', identity, instance_id: instanceId, attr: { attribute: a.attribute, val: a.val ?? null, val_type: a.val_type } }));
  }

  // ---- virtual devices ---------------------------------------------------------------------------

  /** Define (or redefine) a flow device. Emits its values as changes. Throws DefinitionError. */
  defineVirtual(def: unknown): DeviceModel {
    const model = parseDefinition(def);
    if (this.source?.device(model.identity)) throw new DefinitionError(`identity ${model.identity} is a device of the coolkit server: choose another identity`);
    const previous = this.virtual.get(model.identity);
    this.virtual.set(model);
    if (previous) this.failPending(model.identity, 'the device was redefined by the flow');
    this.diffAndEmit(model);
    return model;
  }

  /** Remove a flow device; pending set requests for it fail. */
  removeVirtual(identity: unknown): boolean {
    const id = checkIdentity(identity);
    const removed = this.virtual.delete(id);
    if (removed) {
      this.lastValues.delete(id);
      this.failPending(id, 'the device was removed by the flow');
    }
    return removed;
  }

  /**
   * New values from the flow. Emits attribute_change for each value that changed, and confirms
   * pending set requests that asked for exactly these values. Throws DefinitionError.
   */
  updateVirtual(identity: unknown, updates: Array<{ instance_id: unknown; attribute: unknown; val: unknown }>): number {
    const id = checkIdentity(identity);
    const model = this.virtual.get(id);
    if (!model) throw new DefinitionError(`no virtual device ${id}: define it first`);
    const checked: Array<{ a: AttributeValue; instanceId: number; val: unknown }> = [];
    for (const u of updates) {
      const instanceId = u.instance_id;
      if (typeof instanceId !== 'number' || !Number.isInteger(instanceId)) throw new DefinitionError(`instance_id must be an integer, not ${describe(instanceId)}`);
      if (typeof u.attribute !== 'string') throw new DefinitionError(`attribute must be a string, not ${describe(u.attribute)}`);
      const found = findAttribute(model, instanceId, u.attribute);
      if (!found.instance) throw new DefinitionError(`device ${id} has no instance ${instanceId}`);
      if (!found.attr) throw new DefinitionError(`instance ${instanceId} of device ${id} has no attribute "${u.attribute}"`);
      if (u.val === null) {
        checked.push({ a: found.attr, instanceId, val: null });
        continue;
      }
      const c = checkValue({ ...found.attr, values: undefined, min: undefined, max: undefined }, u.val);
      if (!c.ok) throw new DefinitionError(`device ${id}, instance ${instanceId}: ${c.error}`);
      checked.push({ a: found.attr, instanceId, val: c.val });
    }
    let changed = 0;
    for (const { a, instanceId, val } of checked) {
      a.val = val;
      if (this.remember(id, instanceId, a)) {
        changed++;
        this.emitChange(id, instanceId, a);
      }
      this.confirmPending(id, attrKey(instanceId, a.attribute), val);
    }
    return changed;
  }

  /** The flow's answer to a set request. Returns false when no such request is waiting. */
  answerVirtual(setId: unknown, success: boolean, error?: unknown, code?: unknown): boolean {
    const p = this.pending.get(String(setId));
    if (!p) return false;
    if (success) {
      this.applyRequested(p);
      p.settle();
    } else {
      const message = typeof error === 'string' && error !== '' ? error : 'the flow refused the request';
      const c = typeof code === 'number' && Number.isInteger(code) && code > 0 ? code : ZhitingCode.UNKNOWN;
      p.settle(new ZhitingError(c, bounded(message, 200)));
    }
    return true;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  private virtualSet(identity: string, writes: Write[]): Promise<void> {
    const setId = String(this.nextSetId++);
    const request: VirtualSetRequest = { set_id: setId, identity, attributes: writes.map((w) => ({ instance_id: w.instance_id, attribute: w.attribute, val: w.val })) };
    return new Promise<void>((resolve, reject) => {
      const remaining = new Map<string, unknown>();
      for (const w of writes) remaining.set(attrKey(w.instance_id, w.attribute), w.val);
      const p: PendingSet = {
        request,
        remaining,
        settle: (error?: ZhitingError) => {
          if (!this.pending.delete(setId)) return;
          if (p.timer) clearTimeout(p.timer);
          const set = this.pendingByIdentity.get(identity);
          set?.delete(p);
          if (set && set.size === 0) this.pendingByIdentity.delete(identity);
          if (error) reject(error);
          else resolve();
        },
      };
      this.pending.set(setId, p);
      let set = this.pendingByIdentity.get(identity);
      if (!set) {
        set = new Set();
        this.pendingByIdentity.set(identity, set);
      }
      set.add(p);
      try {
        this.onVirtualSet?.(request);
      } catch (err) {
        p.settle(new ZhitingError(ZhitingCode.INTERNAL, `the flow could not take the request: ${(err as Error).message}`));
        return;
      }
      if (!this.pending.has(setId)) return; // answered synchronously
      if (this.virtualAnswerMs <= 0) {
        this.applyRequested(p);
        p.settle();
        return;
      }
      p.timer = setTimeout(() => {
        // No answer: the flow is fire-and-forget. Take the values and answer success.
        this.applyRequested(p);
        p.settle();
      }, this.virtualAnswerMs);
      p.timer.unref?.();
    });
  }

  /** Take the requested values into the device (after success), emitting changes. */
  private applyRequested(p: PendingSet): void {
    const model = this.virtual.get(p.request.identity);
    if (!model) return;
    for (const [key, val] of p.remaining) {
      const [inst, ...rest] = key.split('/');
      const instanceId = Number(inst);
      const { attr } = findAttribute(model, instanceId, rest.join('/'));
      if (!attr) continue;
      // "toggle"-like values are the flow's to interpret: only values of the attribute's own kind are stored.
      if (attr.values && !attr.values.includes(val as string | number)) continue;
      if (val === 'toggle' && attr.attribute === 'power') continue;
      attr.val = val;
      if (this.remember(model.identity, instanceId, attr)) this.emitChange(model.identity, instanceId, attr);
    }
    p.remaining.clear();
  }

  private confirmPending(identity: string, key: string, val: unknown): void {
    const set = this.pendingByIdentity.get(identity);
    if (!set) return;
    for (const p of [...set]) {
      if (p.remaining.has(key) && JSON.stringify(p.remaining.get(key)) === JSON.stringify(val)) {
        p.remaining.delete(key);
        if (p.remaining.size === 0) p.settle();
      }
    }
  }

  private failPending(identity: string, why: string): void {
    const set = this.pendingByIdentity.get(identity);
    if (!set) return;
    for (const p of [...set]) p.settle(new ZhitingError(ZhitingCode.UNAVAILABLE, `set request for ${identity} failed: ${why}`));
  }

  /** Stop: fail pending requests, stop emitting. */
  stop(): void {
    this.stopped = true;
    for (const p of [...this.pending.values()]) p.settle(new ZhitingError(ZhitingCode.UNAVAILABLE, 'the hub is shutting down'));
  }
}

/** The id text to echo: only a JSON number or string literal (anything else is not echoed). */
function validIdRaw(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  if (/^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/.test(raw)) return raw;
  if (raw.startsWith('"') && raw.length <= 130) return raw;
  return undefined;
}

function isInt64(v: unknown): boolean {
  if (typeof v === 'number') return Number.isSafeInteger(v);
  if (v instanceof BigNumber) {
    if (!/^-?\d+$/.test(v.raw)) return false;
    const b = BigInt(v.raw);
    return b <= INT64_MAX && b >= INT64_MIN;
  }
  return false;
}

export { INFO_INSTANCE };
