/**
 * The Zhiting v1 thing model as this hub serves it: a device is a list of instances, each with
 * typed attributes. `val_type` is one of int | bool | string | float32 (numbers with decimals:
 * temperature, power, ...; SA v1 knew only int, which would truncate 23.5 °C). `permission`
 * follows SA v1: 0 = read and control, 1 = read only, 2 = neither (not shown, not settable).
 */

export type ValType = 'int' | 'bool' | 'string' | 'float32';
export const VAL_TYPES: readonly ValType[] = ['int', 'bool', 'string', 'float32'];

export const Permission = { CONTROL: 0, READ_ONLY: 1, NONE: 2 } as const;
export type PermissionValue = 0 | 1 | 2;

export interface AttributeDef {
  attribute: string;
  val_type: ValType;
  permission: PermissionValue;
  min?: number;
  max?: number;
  /** Allowed values (string or int attributes). */
  values?: ReadonlyArray<string | number>;
}

export interface AttributeValue extends AttributeDef {
  /** Current value; null when unknown or unavailable. */
  val: unknown;
}

export interface InstanceModel {
  instance_id: number;
  type: string;
  attributes: AttributeValue[];
}

export interface DeviceSummary {
  identity: string;
  name: string;
  model: string;
  manufacturer: string;
  plugin_id: string;
}

export interface DeviceModel extends DeviceSummary {
  version: string;
  instances: InstanceModel[];
  ota_support: boolean;
}

/** `instance_id/attribute`: the key of one attribute of a device. */
export function attrKey(instanceId: number, attribute: string): string {
  return `${instanceId}/${attribute}`;
}

/** Find an attribute in a model. */
export function findAttribute(model: DeviceModel, instanceId: number, attribute: string): { instance?: InstanceModel; attr?: AttributeValue } {
  const instance = model.instances.find((i) => i.instance_id === instanceId);
  if (!instance) return {};
  return { instance, attr: instance.attributes.find((a) => a.attribute === attribute) };
}

/**
 * Check a value against an attribute's type and limits. Returns the value to use (numbers
 * are kept as numbers) or an error text.
 */
export function checkValue(def: AttributeDef, val: unknown): { ok: true; val: unknown } | { ok: false; error: string } {
  const name = `"${def.attribute}"`;
  switch (def.val_type) {
    case 'bool':
      if (typeof val !== 'boolean') return { ok: false, error: `${name} is a bool: use true or false, not ${describe(val)}` };
      break;
    case 'string':
      if (typeof val !== 'string') return { ok: false, error: `${name} is a string, not ${describe(val)}` };
      if (val.length > 1024) return { ok: false, error: `${name} is longer than 1024 characters` };
      break;
    case 'int':
      if (typeof val !== 'number' || !Number.isSafeInteger(val)) return { ok: false, error: `${name} is an int, not ${describe(val)}` };
      break;
    case 'float32':
      if (typeof val !== 'number' || !Number.isFinite(val)) return { ok: false, error: `${name} is a number, not ${describe(val)}` };
      break;
  }
  if (def.values && !def.values.includes(val as string | number)) {
    return { ok: false, error: `${name} must be one of ${def.values.map((v) => JSON.stringify(v)).join(', ')}, not ${describe(val)}` };
  }
  if (typeof val === 'number') {
    if (def.min !== undefined && val < def.min) return { ok: false, error: `${name} must be at least ${def.min}, not ${val}` };
    if (def.max !== undefined && val > def.max) return { ok: false, error: `${name} must be at most ${def.max}, not ${val}` };
  }
  return { ok: true, val };
}

export function describe(val: unknown): string {
  if (val === null) return 'null';
  if (val === undefined) return 'nothing';
  if (Array.isArray(val)) return 'an array';
  if (typeof val === 'object') return val.constructor?.name === 'BigNumber' ? `the integer ${String(val)} (out of range)` : 'an object';
  const text = JSON.stringify(val);
  return `${typeof val} ${text.length > 40 ? `${text.slice(0, 40)}…` : text}`;
}

/** The attribute list as get_attributes shows it: permission 2 (neither) attributes are hidden. */
export function visibleAttributes(instance: InstanceModel): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const a of instance.attributes) {
    if (a.permission === Permission.NONE) continue;
    const entry: Record<string, unknown> = { attribute: a.attribute, val: a.val ?? null, val_type: a.val_type, permission: a.permission };
    if (a.min !== undefined) entry.min = a.min;
    if (a.max !== undefined) entry.max = a.max;
    out.push(entry);
  }
  return out;
}
