/**
 * ajv schemas for every inbound device message, and `parseDeviceFrame`, which turns one
 * WebSocket text frame into a typed, validated message (or a clear reason why not).
 *
 * Tolerant where real devices vary: numbers may arrive as strings (`ts`, `version`), unknown
 * fields are kept. Strict where a mistake would misroute or spoof: `deviceid`, `apikey`,
 * `action`, `sequence`, `error`.
 */
import Ajv, { type ValidateFunction } from 'ajv';
import type {
  AckMessage,
  DateMessage,
  DispatchRequest,
  ParsedDeviceFrame,
  QueryMessage,
  RegisterMessage,
  UpdateMessage,
} from './types';
import { ErrorCode } from './errors';

/** Sonoff device ids are ten hex digits, e.g. `100008db11`. */
export const DEVICEID_PATTERN = '^[0-9a-fA-F]{10}$';
/** Factory and issued apikeys are UUIDs. */
export const APIKEY_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
/** The server's sequences are ms-epoch strings; accept any short token a device echoes back. */
export const SEQUENCE_PATTERN = '^[0-9A-Za-z_.:-]{1,64}$';
/** Deepest nesting accepted in a device message (real params nest about five levels). */
export const MAX_DEPTH = 12;

const numberish = { type: ['number', 'string'], maxLength: 32 } as const;
const shortString = { type: 'string', maxLength: 64 } as const;

const deviceBase = {
  deviceid: { type: 'string', pattern: DEVICEID_PATTERN },
  apikey: { type: 'string', pattern: APIKEY_PATTERN },
  userAgent: shortString,
} as const;

export const dispatchSchema = {
  type: 'object',
  required: ['deviceid', 'apikey'],
  properties: {
    deviceid: deviceBase.deviceid,
    apikey: deviceBase.apikey,
    accept: shortString,
    version: numberish,
    ts: numberish,
    model: shortString,
    romVersion: shortString,
  },
} as const;

export const registerSchema = {
  type: 'object',
  required: ['action', 'deviceid', 'apikey'],
  properties: {
    ...deviceBase,
    action: { const: 'register' },
    version: numberish,
    ts: numberish,
    model: shortString,
    romVersion: shortString,
  },
} as const;

export const dateSchema = {
  type: 'object',
  required: ['action', 'deviceid', 'apikey'],
  properties: { ...deviceBase, action: { const: 'date' } },
} as const;

export const updateSchema = {
  type: 'object',
  required: ['action', 'deviceid', 'apikey', 'params'],
  properties: {
    ...deviceBase,
    action: { const: 'update' },
    params: { type: 'object', maxProperties: 256 },
  },
} as const;

export const querySchema = {
  type: 'object',
  required: ['action', 'deviceid', 'apikey', 'params'],
  properties: {
    ...deviceBase,
    action: { const: 'query' },
    params: { type: 'array', maxItems: 64, items: { type: 'string', maxLength: 64 } },
  },
} as const;

export const ackSchema = {
  type: 'object',
  required: ['error', 'sequence', 'deviceid'],
  properties: {
    ...deviceBase,
    error: { type: 'integer' },
    sequence: { type: 'string', pattern: SEQUENCE_PATTERN },
  },
} as const;

const ajv = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true });

export const validateDispatch = ajv.compile<DispatchRequest>(dispatchSchema);
const validators: Record<string, ValidateFunction> = {
  register: ajv.compile<RegisterMessage>(registerSchema),
  date: ajv.compile<DateMessage>(dateSchema),
  update: ajv.compile<UpdateMessage>(updateSchema),
  query: ajv.compile<QueryMessage>(querySchema),
};
const validateAck = ajv.compile<AckMessage>(ackSchema);

/** One line saying what is wrong with a value, from ajv's first error. */
export function describeErrors(validate: ValidateFunction): string {
  const err = validate.errors?.[0];
  if (!err) return 'invalid message';
  const where = err.instancePath ? err.instancePath.slice(1).replace(/\//g, '.') : 'message';
  return `${where} ${err.message ?? 'is invalid'}`;
}

/**
 * Nesting depth of a parsed JSON value, counted up to `limit` and no further: the recursion is
 * bounded by the limit (so hostile input cannot blow the stack) and allocates nothing, since it
 * runs on every frame.
 */
export function jsonDepth(value: unknown, limit = MAX_DEPTH + 1): number {
  return depthUpTo(value, 1, limit);
}

function depthUpTo(v: unknown, d: number, limit: number): number {
  if (v === null || typeof v !== 'object') return d - 1;
  if (d >= limit) return d;
  let max = d;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const c = v[i] as unknown;
      if (c !== null && typeof c === 'object') {
        const cd = depthUpTo(c, d + 1, limit);
        if (cd > max) max = cd;
        if (max >= limit) return max;
      }
    }
    return max;
  }
  for (const key in v as Record<string, unknown>) {
    if (!Object.prototype.hasOwnProperty.call(v, key)) continue;
    const c = (v as Record<string, unknown>)[key];
    if (c !== null && typeof c === 'object') {
      const cd = depthUpTo(c, d + 1, limit);
      if (cd > max) max = cd;
      if (max >= limit) return max;
    }
  }
  return max;
}

function deviceidOf(value: unknown): string | undefined {
  const id = (value as { deviceid?: unknown } | null)?.deviceid;
  return typeof id === 'string' && new RegExp(DEVICEID_PATTERN).test(id) ? id : undefined;
}

/**
 * Parse a frame that must be a JSON object of bounded depth. Never throws; the reason says
 * what is wrong in words a log reader understands.
 */
export function parseJsonObject(text: string): { ok: true; obj: Record<string, unknown> } | { ok: false; reason: string; obj?: Record<string, unknown> } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'malformed JSON' };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { ok: false, reason: 'message is not a JSON object' };
  const obj = value as Record<string, unknown>;
  if (jsonDepth(obj) > MAX_DEPTH) return { ok: false, reason: `message nests deeper than ${MAX_DEPTH} levels`, obj };
  return { ok: true, obj };
}

/**
 * Classify and validate one text frame from a device. Never throws.
 * A bare `ping` text frame (some firmware and all apps send it) is its own kind.
 */
export function parseDeviceFrame(text: string): ParsedDeviceFrame {
  if (text === 'ping') return { kind: 'ping' };
  const parsed = parseJsonObject(text);
  if (!parsed.ok) return { kind: 'invalid', code: ErrorCode.BAD_REQUEST, reason: parsed.reason, deviceid: deviceidOf(parsed.obj) };
  const obj = parsed.obj;
  if ('action' in obj) {
    const action = obj.action;
    const validate = typeof action === 'string' ? validators[action] : undefined;
    if (!validate) {
      const shown = typeof action === 'string' ? action.slice(0, 32) : typeof action;
      return { kind: 'invalid', code: ErrorCode.BAD_REQUEST, reason: `unknown action "${shown}"`, deviceid: deviceidOf(obj) };
    }
    if (!validate(obj)) {
      return { kind: 'invalid', code: ErrorCode.BAD_REQUEST, reason: `${action}: ${describeErrors(validate)}`, deviceid: deviceidOf(obj) };
    }
    return { kind: action, msg: obj } as ParsedDeviceFrame;
  }
  if ('sequence' in obj && 'error' in obj) {
    if (!validateAck(obj)) {
      return { kind: 'invalid', code: ErrorCode.BAD_REQUEST, reason: `ack: ${describeErrors(validateAck)}`, deviceid: deviceidOf(obj) };
    }
    return { kind: 'ack', msg: obj as unknown as AckMessage };
  }
  return { kind: 'invalid', code: ErrorCode.BAD_REQUEST, reason: 'message has neither an action nor an error+sequence', deviceid: deviceidOf(obj) };
}

/** Validate a dispatch request body (already parsed). */
export function checkDispatch(value: unknown): { ok: true; body: DispatchRequest } | { ok: false; reason: string } {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { ok: false, reason: 'body is not a JSON object' };
  if (jsonDepth(value) > MAX_DEPTH) return { ok: false, reason: 'body nests too deeply' };
  if (!validateDispatch(value)) return { ok: false, reason: describeErrors(validateDispatch) };
  return { ok: true, body: value };
}
