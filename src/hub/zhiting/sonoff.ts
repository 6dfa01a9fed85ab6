/**
 * Sonoff devices of the local cloud in the Zhiting thing model, per family, and the way back:
 * attribute writes turned into device params through the same path as `sonoff-device-out`
 * (`payloadToParams`, then `validateParams` on the merged result).
 *
 * Instances (instance_id):
 *   0   info      identity, model, manufacturer, version, name, online          (read only)
 *   switch (1CH)     1 switch    power "on"|"off" (set: also "toggle")
 *   multi (2..4CH)   1..N switch power, channel k = outlet k-1
 *   pow              1 outlet    power;  2 power_meter  power W, voltage V, current A (float32, read only)
 *   th (TH10/16)     1 switch    power;  2 temperature_and_humidity_sensor temperature °C, humidity % (float32, read only)
 *                    3 thermostat auto (bool), mode "normal"|"temperature"|"humidity",
 *                      target_high, high_reaction "on"|"off", target_low, low_reaction "on"|"off"
 *   rf (RF bridge)   c+1 rf_button for every learned channel c: transmit (bool, set true to send),
 *                      triggered_at (string, read only: time of the last received code)
 */
import type { Capabilities } from '../../protocol/capabilities';
import { payloadToParams, validateParams } from '../../protocol/commands';
import { CoolkitError, ErrorCode } from '../../protocol/errors';
import { normaliseState, RANGES } from '../../protocol/normalise';
import { mergeOutletArray, OUTLET_ARRAYS } from '../../protocol/state';
import type { Params } from '../../protocol/types';
import { Permission, type AttributeDef, type AttributeValue, type DeviceModel, type InstanceModel } from './model';

export const SONOFF_PLUGIN_ID = 'coolkit';
export const SONOFF_MANUFACTURER = 'SONOFF';
export const INFO_INSTANCE = 0;

/** What the hub needs to know of a device record. */
export interface SonoffRecord {
  deviceid: string;
  model: string;
  romVersion: string;
  params: Params;
  online: boolean;
  name?: string;
}

const RO = Permission.READ_ONLY;
const RW = Permission.CONTROL;
const ON_OFF = ['on', 'off'] as const;
const POWER: AttributeDef = { attribute: 'power', val_type: 'string', permission: RW, values: ['on', 'off', 'toggle'] };
const TEMP_LIMITS = { min: RANGES.temperature[0], max: RANGES.temperature[1] };

function attr(def: AttributeDef, val: unknown): AttributeValue {
  return { ...def, val: val === undefined ? null : val };
}

function onOff(v: boolean | null | undefined): string | null {
  return v === true ? 'on' : v === false ? 'off' : null;
}

function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function num(v: unknown): number | null {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  return typeof n === 'number' && Number.isFinite(n) ? n : null;
}

interface Targets {
  high: number | null;
  highReaction: string | null;
  low: number | null;
  lowReaction: string | null;
}

function readTargets(state: Params): Targets {
  const list = Array.isArray(state.targets) ? state.targets.filter(isObj) : [];
  const high = list.find((t) => 'targetHigh' in t);
  const low = list.find((t) => 'targetLow' in t);
  const reaction = (t: Record<string, unknown> | undefined) => {
    const r = t && isObj(t.reaction) ? t.reaction.switch : undefined;
    return r === 'on' || r === 'off' ? r : null;
  };
  return { high: num(high?.targetHigh), highReaction: reaction(high), low: num(low?.targetLow), lowReaction: reaction(low) };
}

/** Learned RF channels, ascending. */
export function learnedRfChannels(state: Params): number[] {
  if (!Array.isArray(state.rfList)) return [];
  const set = new Set<number>();
  for (const e of state.rfList) {
    const n = isObj(e) ? num(e.rfChl) : null;
    if (n !== null && Number.isInteger(n) && n >= 0 && n <= 63) set.add(n);
  }
  return [...set].sort((a, b) => a - b);
}

/** The running firmware: `fwVersion` from the last report, else the version given at register. */
export function firmwareVersion(record: SonoffRecord): string {
  const fw = record.params.fwVersion;
  return typeof fw === 'string' && fw !== '' ? fw : record.romVersion;
}

/** The thing model of a Sonoff device with its current values. */
export function sonoffModel(record: SonoffRecord, caps: Capabilities, otaSupport: boolean): DeviceModel {
  const state = record.params;
  const n = normaliseState(state, caps);
  const instances: InstanceModel[] = [
    {
      instance_id: INFO_INSTANCE,
      type: 'info',
      attributes: [
        attr({ attribute: 'identity', val_type: 'string', permission: RO }, record.deviceid),
        attr({ attribute: 'model', val_type: 'string', permission: RO }, record.model),
        attr({ attribute: 'manufacturer', val_type: 'string', permission: RO }, SONOFF_MANUFACTURER),
        attr({ attribute: 'version', val_type: 'string', permission: RO }, firmwareVersion(record)),
        attr({ attribute: 'name', val_type: 'string', permission: RO }, record.name ?? ''),
        attr({ attribute: 'online', val_type: 'bool', permission: RO }, record.online),
      ],
    },
  ];
  switch (caps.family) {
    case 'switch':
      instances.push({ instance_id: 1, type: 'switch', attributes: [attr(POWER, onOff(n.switch))] });
      break;
    case 'multi': {
      const channels = Math.max(caps.channels, n.outlets?.length ?? 0);
      for (let k = 0; k < channels; k++) instances.push({ instance_id: k + 1, type: 'switch', attributes: [attr(POWER, onOff(n.outlets?.[k]))] });
      break;
    }
    case 'pow':
      instances.push({ instance_id: 1, type: 'outlet', attributes: [attr(POWER, onOff(n.switch))] });
      instances.push({
        instance_id: 2,
        type: 'power_meter',
        attributes: [
          attr({ attribute: 'power', val_type: 'float32', permission: RO }, n.power),
          attr({ attribute: 'voltage', val_type: 'float32', permission: RO }, n.voltage),
          attr({ attribute: 'current', val_type: 'float32', permission: RO }, n.current),
        ],
      });
      break;
    case 'th': {
      instances.push({ instance_id: 1, type: 'switch', attributes: [attr(POWER, onOff(n.switch))] });
      instances.push({
        instance_id: 2,
        type: 'temperature_and_humidity_sensor',
        attributes: [
          attr({ attribute: 'temperature', val_type: 'float32', permission: RO }, n.temperature),
          attr({ attribute: 'humidity', val_type: 'float32', permission: RO }, n.humidity),
        ],
      });
      const t = readTargets(state);
      const deviceType = state.deviceType;
      instances.push({
        instance_id: 3,
        type: 'thermostat',
        attributes: [
          attr({ attribute: 'auto', val_type: 'bool', permission: RW }, state.mainSwitch === 'on' ? true : state.mainSwitch === 'off' ? false : null),
          attr({ attribute: 'mode', val_type: 'string', permission: RW, values: ['normal', 'temperature', 'humidity'] }, deviceType === 'normal' || deviceType === 'temperature' || deviceType === 'humidity' ? deviceType : null),
          attr({ attribute: 'target_high', val_type: 'float32', permission: RW, ...TEMP_LIMITS }, t.high),
          attr({ attribute: 'high_reaction', val_type: 'string', permission: RW, values: ON_OFF }, t.highReaction),
          attr({ attribute: 'target_low', val_type: 'float32', permission: RW, ...TEMP_LIMITS }, t.low),
          attr({ attribute: 'low_reaction', val_type: 'string', permission: RW, values: ON_OFF }, t.lowReaction),
        ],
      });
      break;
    }
    case 'rf':
      for (const ch of learnedRfChannels(state)) {
        const at = state[`rfTrig${ch}`];
        instances.push({
          instance_id: ch + 1,
          type: 'rf_button',
          attributes: [
            attr({ attribute: 'transmit', val_type: 'bool', permission: RW }, false),
            attr({ attribute: 'triggered_at', val_type: 'string', permission: RO }, typeof at === 'string' ? at : null),
          ],
        });
      }
      break;
    default:
      break;
  }
  return {
    identity: record.deviceid,
    name: record.name || record.deviceid,
    model: record.model,
    manufacturer: SONOFF_MANUFACTURER,
    plugin_id: SONOFF_PLUGIN_ID,
    version: firmwareVersion(record),
    instances,
    ota_support: otaSupport,
  };
}

/** One attribute write, already checked against the model (instance, attribute, permission, type). */
export interface Write {
  instance_id: number;
  attribute: string;
  val: unknown;
}

function bad(message: string): CoolkitError {
  return new CoolkitError(ErrorCode.BAD_REQUEST, message);
}

function mergeInto(target: Params, params: Params): void {
  for (const [key, value] of Object.entries(params)) {
    target[key] = OUTLET_ARRAYS.has(key) && Array.isArray(value) && Array.isArray(target[key]) ? mergeOutletArray(target[key], value) : value;
  }
}

/**
 * The device params for a set of writes to one Sonoff device. Throws a CoolkitError (400) for
 * writes the device cannot take. Several writes become one message.
 */
export function writesToParams(writes: Write[], state: Params, caps: Capabilities): Params {
  const out: Params = {};
  let targets: Targets | undefined;
  for (const w of writes) {
    let piece: Params;
    if (w.attribute === 'power') {
      const payload = caps.family === 'multi' ? { outlet: w.instance_id - 1, switch: w.val } : w.val;
      piece = payloadToParams(payload, state, caps);
    } else if (caps.family === 'th' && w.instance_id === 3) {
      switch (w.attribute) {
        case 'auto': piece = { mainSwitch: w.val === true ? 'on' : 'off' }; break;
        case 'mode': piece = { deviceType: w.val }; break;
        default:
          targets ??= readTargets(state);
          if (w.attribute === 'target_high') targets.high = w.val as number;
          else if (w.attribute === 'target_low') targets.low = w.val as number;
          else if (w.attribute === 'high_reaction') targets.highReaction = w.val as string;
          else if (w.attribute === 'low_reaction') targets.lowReaction = w.val as string;
          piece = {};
      }
    } else if (caps.family === 'rf' && w.attribute === 'transmit') {
      if (w.val !== true) throw bad('"transmit" sends the learned code when set to true; false does nothing');
      piece = payloadToParams({ transmit: w.instance_id - 1 }, state, caps);
    } else {
      throw bad(`attribute "${w.attribute}" of instance ${w.instance_id} cannot be set`);
    }
    mergeInto(out, piece);
  }
  if (targets) {
    if (targets.high !== null && targets.low !== null && targets.high <= targets.low) {
      throw bad(`target_high (${targets.high}) must be above target_low (${targets.low})`);
    }
    const list: Params[] = [];
    if (targets.high !== null) list.push({ targetHigh: String(targets.high), reaction: { switch: targets.highReaction ?? 'off' } });
    if (targets.low !== null) list.push({ targetLow: String(targets.low), reaction: { switch: targets.lowReaction ?? 'on' } });
    if (list.length === 0) throw bad('set target_high or target_low before their reactions');
    out.targets = list;
  }
  validateParams(out, caps);
  return out;
}
