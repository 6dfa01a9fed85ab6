/**
 * Payloads of the backbone's topics (pure): builders, and strict parsers for what arrives from
 * the broker (anything malformed is rejected with a reason, never thrown past the caller).
 */
import type { Capabilities } from '../protocol/capabilities';
import { payloadToParams } from '../protocol/commands';
import { CoolkitError, ErrorCode } from '../protocol/errors';
import type { Normalised } from '../protocol/normalise';
import { deviceThermostatView, parseThermostatPayload, thermostatParams, validateSetting } from '../protocol/thermostat';
import type { Params } from '../protocol/types';
import type { InstanceInfo } from './placement';

export interface StatePayload {
  /** The device's full merged state. */
  params: Params;
  /** The params of the report that caused this message. */
  report: Params;
  normalized: Normalised;
  /** TH10/TH16: the on-device thermostat as Home Assistant's climate entity reads it. */
  thermostat?: { mode: 'off' | 'heat' | 'cool'; setpoint: number | null };
  instance: string;
  ts: number;
}

export interface OnlinePayload {
  online: boolean;
  instance: string;
  reason?: string;
  ts: number;
}

export interface CapabilitiesPayload {
  model: string;
  romVersion: string;
  name?: string;
  /** sha256 of the device's factory key (`factoryKeyHash`), so another instance can check a register. */
  keyHash?: string;
  capabilities: Capabilities;
  instance: string;
  ts: number;
}

export interface InstancePayload {
  id: string;
  online: boolean;
  host?: string;
  port?: number;
  devices?: number;
  version?: string;
  reason?: string;
  ts: number;
}

/** A command from the `set` topic, after parsing. */
export interface SetRequest {
  /** What to do: any `sonoff-device-out` payload, or `{"thermostat":{mode, setpoint}}`. */
  payload: unknown;
  /** Correlation id, echoed in the result. */
  id?: string;
  /** Where to publish the result (default `<prefix>/<deviceid>/result`). */
  replyTo?: string;
  /** Ack timeout in ms (default the server's command timeout). */
  timeoutMs?: number;
  /** The instance that sent it, if an instance did. */
  from?: string;
}

export interface ResultPayload {
  id?: string;
  deviceid: string;
  ok: boolean;
  /** 0 on success, else the CoolKit error code (400, 503, 504, the device's own). */
  error: number;
  reason?: string;
  ms?: number;
  instance: string;
  ts: number;
}

export const MAX_SET_PAYLOAD = 16 * 1024;
const MAX_ID = 200;

export function thermostatSummary(params: Params): StatePayload['thermostat'] {
  const view = deviceThermostatView(params);
  const mode = view.paused ? 'off' : view.mode === 'heat' ? 'heat' : view.mode === 'cool' ? 'cool' : 'off';
  const setpoint = view.setpoint ?? (mode === 'heat' ? view.low : view.high) ?? view.low ?? view.high ?? null;
  return { mode, setpoint };
}

export function buildState(params: Params, report: Params, normalized: Normalised, caps: Capabilities, instance: string, now = Date.now()): StatePayload {
  const out: StatePayload = { params, report, normalized, instance, ts: now };
  if (caps.thermostat) out.thermostat = thermostatSummary(params);
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function parseJson(buf: Buffer | string): unknown {
  const text = typeof buf === 'string' ? buf : buf.toString('utf8');
  return JSON.parse(text);
}

/**
 * Parse a `set` message. Accepted: plain `on`/`off`/`toggle`; any JSON a `sonoff-device-out`
 * accepts; or the envelope `{"payload": <command>, "id": "...", "replyTo": "topic", "timeout": ms}`.
 */
export function parseSetMessage(buf: Buffer | string): SetRequest | { error: string } {
  const size = typeof buf === 'string' ? Buffer.byteLength(buf) : buf.length;
  if (size === 0) return { error: 'empty command' };
  if (size > MAX_SET_PAYLOAD) return { error: `command larger than ${MAX_SET_PAYLOAD} bytes` };
  const text = (typeof buf === 'string' ? buf : buf.toString('utf8')).trim();
  if (/^(on|off|toggle)$/i.test(text)) return { payload: text.toLowerCase() };
  let value: unknown;
  try {
    value = parseJson(text);
  } catch {
    return { error: 'malformed JSON (send "on", "off", "toggle" or a JSON command)' };
  }
  if (!isObject(value) || !('payload' in value)) return { payload: value };
  const req: SetRequest = { payload: value.payload };
  if (value.id !== undefined) {
    if ((typeof value.id !== 'string' && typeof value.id !== 'number') || String(value.id).length > MAX_ID) return { error: '"id" must be a string or number (at most 200 characters)' };
    req.id = String(value.id);
  }
  if (value.replyTo !== undefined) {
    if (typeof value.replyTo !== 'string' || value.replyTo === '' || /[#+\u0000]/.test(value.replyTo) || value.replyTo.length > 512) return { error: '"replyTo" must be a topic name without wildcards', ...(req.id ? { id: req.id } : {}) };
    req.replyTo = value.replyTo;
  }
  if (value.timeout !== undefined) {
    if (typeof value.timeout !== 'number' || !Number.isFinite(value.timeout) || value.timeout < 100 || value.timeout > 600_000) return { error: '"timeout" must be a number of ms, 100..600000' };
    req.timeoutMs = value.timeout;
  }
  if (value.from !== undefined && typeof value.from === 'string') req.from = value.from.slice(0, 64);
  return req;
}

/** The params to send for a `set` payload (thermostat payloads are completed from the current state). */
export function setPayloadToParams(payload: unknown, state: Params, caps: Capabilities): Params {
  if (isObject(payload) && Object.keys(payload).length === 1 && 'thermostat' in payload) {
    if (!caps.thermostat) throw new CoolkitError(ErrorCode.BAD_REQUEST, 'this device has no thermostat');
    const t = payload.thermostat;
    if (!isObject(t)) throw new CoolkitError(ErrorCode.BAD_REQUEST, '"thermostat" must be an object such as {"mode":"heat","setpoint":21}');
    const current = thermostatSummary(state) ?? { mode: 'off', setpoint: null };
    const mode = typeof t.mode === 'string' ? t.mode : current.mode === 'off' ? 'heat' : current.mode;
    const setting = mode === 'off'
      ? parseThermostatPayload({ mode: 'off' })
      : parseThermostatPayload({ mode, setpoint: t.setpoint ?? current.setpoint ?? 20 });
    validateSetting(setting, state, caps);
    return thermostatParams(setting);
  }
  return payloadToParams(payload, state, caps);
}

export function parseOnline(buf: Buffer): OnlinePayload | undefined {
  try {
    const v = parseJson(buf);
    if (!isObject(v) || typeof v.online !== 'boolean' || typeof v.instance !== 'string') return undefined;
    return { online: v.online, instance: v.instance, reason: typeof v.reason === 'string' ? v.reason : undefined, ts: typeof v.ts === 'number' ? v.ts : 0 };
  } catch {
    return undefined;
  }
}

export function parseState(buf: Buffer): StatePayload | undefined {
  try {
    const v = parseJson(buf);
    if (!isObject(v) || !isObject(v.params) || typeof v.instance !== 'string') return undefined;
    return { params: v.params, report: isObject(v.report) ? v.report : {}, normalized: (isObject(v.normalized) ? v.normalized : {}) as Normalised, instance: v.instance, ts: typeof v.ts === 'number' ? v.ts : 0 };
  } catch {
    return undefined;
  }
}

export function parseCapabilities(buf: Buffer): CapabilitiesPayload | undefined {
  try {
    const v = parseJson(buf);
    if (!isObject(v) || typeof v.instance !== 'string' || !isObject(v.capabilities)) return undefined;
    const out: CapabilitiesPayload = {
      model: typeof v.model === 'string' ? v.model : '',
      romVersion: typeof v.romVersion === 'string' ? v.romVersion : '',
      capabilities: v.capabilities as unknown as Capabilities,
      instance: v.instance,
      ts: typeof v.ts === 'number' ? v.ts : 0,
    };
    if (typeof v.name === 'string') out.name = v.name;
    if (typeof v.keyHash === 'string' && /^[0-9a-f]{64}$/.test(v.keyHash)) out.keyHash = v.keyHash;
    return out;
  } catch {
    return undefined;
  }
}

export function parseInstance(buf: Buffer, id: string): InstanceInfo | undefined {
  if (buf.length === 0) return undefined;
  try {
    const v = parseJson(buf);
    if (!isObject(v) || typeof v.online !== 'boolean') return undefined;
    return {
      id,
      online: v.online,
      host: typeof v.host === 'string' ? v.host : '',
      port: typeof v.port === 'number' ? v.port : 0,
      devices: typeof v.devices === 'number' && v.devices >= 0 ? v.devices : 0,
      ts: typeof v.ts === 'number' ? v.ts : 0,
    };
  } catch {
    return undefined;
  }
}

export function parseResult(buf: Buffer): ResultPayload | undefined {
  try {
    const v = parseJson(buf);
    if (!isObject(v) || typeof v.ok !== 'boolean' || typeof v.error !== 'number') return undefined;
    return {
      id: typeof v.id === 'string' ? v.id : undefined,
      deviceid: typeof v.deviceid === 'string' ? v.deviceid : '',
      ok: v.ok,
      error: v.error,
      reason: typeof v.reason === 'string' ? v.reason : undefined,
      ms: typeof v.ms === 'number' ? v.ms : undefined,
      instance: typeof v.instance === 'string' ? v.instance : '',
      ts: typeof v.ts === 'number' ? v.ts : 0,
    };
  } catch {
    return undefined;
  }
}
