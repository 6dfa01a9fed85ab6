/**
 * Devices defined by a flow ("virtual devices": a Zigbee lamp driven by other nodes, a sensor
 * read over MQTT, ...), served through the same thing model as the Sonoff devices. The flow
 * defines them, updates their values, and answers the set requests the hub hands it.
 */
import { checkValue, describe, VAL_TYPES, type AttributeValue, type DeviceModel, type InstanceModel, type PermissionValue, type ValType } from './model';

export const VIRTUAL_PLUGIN_ID = 'node-red';
export const VIRTUAL_LIMITS = { devices: 10_000, instances: 64, attributes: 64, identityLength: 64, textLength: 100 };

export class DefinitionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DefinitionError';
  }
}

function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function text(v: unknown, what: string, fallback?: string): string {
  if (v === undefined || v === null || v === '') {
    if (fallback !== undefined) return fallback;
    throw new DefinitionError(`${what} is required`);
  }
  if (typeof v !== 'string') throw new DefinitionError(`${what} must be a string, not ${describe(v)}`);
  if (v.length > VIRTUAL_LIMITS.textLength) throw new DefinitionError(`${what} is longer than ${VIRTUAL_LIMITS.textLength} characters`);
  return v;
}

/** Check an identity given by a flow. */
export function checkIdentity(v: unknown): string {
  if (typeof v !== 'string' || v.trim() === '') throw new DefinitionError(`identity must be a non-empty string, not ${describe(v)}`);
  if (v.length > VIRTUAL_LIMITS.identityLength) throw new DefinitionError(`identity is longer than ${VIRTUAL_LIMITS.identityLength} characters`);
  if (/[\u0000-\u001f]/.test(v)) throw new DefinitionError('identity must not contain control characters');
  return v;
}

/** Validate a flow's device description and build its model. Throws DefinitionError with the first problem. */
export function parseDefinition(def: unknown): DeviceModel {
  if (!isObj(def)) throw new DefinitionError(`device must be an object, not ${describe(def)}`);
  const identity = checkIdentity(def.identity);
  if (!Array.isArray(def.instances) || def.instances.length === 0) throw new DefinitionError(`device ${identity}: instances must be a non-empty array`);
  if (def.instances.length > VIRTUAL_LIMITS.instances) throw new DefinitionError(`device ${identity}: more than ${VIRTUAL_LIMITS.instances} instances`);
  const ids = new Set<number>();
  const instances: InstanceModel[] = def.instances.map((raw, i): InstanceModel => {
    const where = `device ${identity}, instances[${i}]`;
    if (!isObj(raw)) throw new DefinitionError(`${where} must be an object`);
    const id = raw.instance_id;
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > 65535) throw new DefinitionError(`${where}: instance_id must be an integer 0..65535, not ${describe(id)}`);
    if (ids.has(id)) throw new DefinitionError(`${where}: instance_id ${id} is used twice`);
    ids.add(id);
    const type = text(raw.type, `${where}.type`);
    const attrsIn = raw.attributes ?? raw.attrs;
    if (!Array.isArray(attrsIn) || attrsIn.length === 0) throw new DefinitionError(`${where}: attributes must be a non-empty array`);
    if (attrsIn.length > VIRTUAL_LIMITS.attributes) throw new DefinitionError(`${where}: more than ${VIRTUAL_LIMITS.attributes} attributes`);
    const names = new Set<string>();
    const attributes = attrsIn.map((a, j): AttributeValue => {
      const w = `${where}.attributes[${j}]`;
      if (!isObj(a)) throw new DefinitionError(`${w} must be an object`);
      const attribute = text(a.attribute, `${w}.attribute`);
      if (names.has(attribute)) throw new DefinitionError(`${w}: attribute "${attribute}" is defined twice in instance ${id}`);
      names.add(attribute);
      const valType = a.val_type;
      if (typeof valType !== 'string' || !VAL_TYPES.includes(valType as ValType)) {
        throw new DefinitionError(`${w}: val_type must be one of ${VAL_TYPES.join(', ')}, not ${describe(valType)}`);
      }
      const permission = a.permission ?? 1;
      if (permission !== 0 && permission !== 1 && permission !== 2) throw new DefinitionError(`${w}: permission must be 0 (read and control), 1 (read only) or 2 (hidden), not ${describe(permission)}`);
      const out: AttributeValue = { attribute, val_type: valType as ValType, permission: permission as PermissionValue, val: null };
      for (const k of ['min', 'max'] as const) {
        if (a[k] === undefined) continue;
        if (typeof a[k] !== 'number' || !Number.isFinite(a[k])) throw new DefinitionError(`${w}: ${k} must be a number`);
        out[k] = a[k] as number;
      }
      if (a.values !== undefined) {
        if (!Array.isArray(a.values) || a.values.length === 0 || !a.values.every((v) => typeof v === 'string' || typeof v === 'number')) {
          throw new DefinitionError(`${w}: values must be a non-empty array of strings or numbers`);
        }
        out.values = a.values as Array<string | number>;
      }
      if (a.val !== undefined && a.val !== null) {
        const checked = checkValue(out, a.val);
        if (!checked.ok) throw new DefinitionError(`${w}: ${checked.error}`);
        out.val = checked.val;
      }
      return out;
    });
    return { instance_id: id, type, attributes };
  });
  return {
    identity,
    name: text(def.name, 'name', identity),
    model: text(def.model, 'model', 'virtual'),
    manufacturer: text(def.manufacturer, 'manufacturer', 'Node-RED'),
    plugin_id: text(def.plugin_id, 'plugin_id', VIRTUAL_PLUGIN_ID),
    version: text(def.version, 'version', ''),
    instances,
    ota_support: false,
  };
}

/** The virtual devices of one hub, by identity. */
export class VirtualDevices {
  private readonly devices = new Map<string, DeviceModel>();

  get size(): number {
    return this.devices.size;
  }

  get(identity: string): DeviceModel | undefined {
    return this.devices.get(identity);
  }

  all(): IterableIterator<DeviceModel> {
    return this.devices.values();
  }

  /** Add or replace a device. */
  set(model: DeviceModel): void {
    if (!this.devices.has(model.identity) && this.devices.size >= VIRTUAL_LIMITS.devices) {
      throw new DefinitionError(`too many virtual devices (limit ${VIRTUAL_LIMITS.devices})`);
    }
    this.devices.set(model.identity, model);
  }

  delete(identity: string): boolean {
    return this.devices.delete(identity);
  }

  clear(): void {
    this.devices.clear();
  }
}
