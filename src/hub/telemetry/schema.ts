/**
 * Inbound messages of the telemetry API, validated with ajv: `auth`, `subscribe`,
 * `unsubscribe`, `ping`, `batch` (the seed's), plus `get_devices` and `get_alerts`. Every
 * refusal comes back as an API error code and one readable line.
 *
 * Size rule (seed: "Maximum 1KB message size", "Batch messages limited to 50 items"): 1 KiB per
 * message, and per item inside a batch; a batch frame itself may hold 50 such items.
 */
import Ajv, { type ValidateFunction } from 'ajv';
import { describeErrors, jsonDepth } from '../../protocol/schemas';
import { CHANNELS, FILTER_KEYS } from './filters';

export const MAX_MESSAGE_BYTES = 1024;
export const MAX_BATCH_ITEMS = 50;
export const MAX_DEPTH = 8;

const id = { type: ['string', 'integer'], maxLength: 64 } as const;
const deviceIdItem = { type: ['integer', 'string'], maxLength: 16 } as const;
const stringOrList = (maxItems: number, maxLength = 32) => ({
  anyOf: [
    { type: 'string', maxLength },
    { type: 'array', maxItems, items: { type: 'string', maxLength } },
  ],
});

const filterProps = {
  device_id: { anyOf: [{ type: 'null' }, deviceIdItem, { type: 'array', maxItems: 50, items: deviceIdItem }] },
  metrics: stringOrList(10),
  frequency: { type: ['string', 'number'], maxLength: 16 },
  severity: stringOrList(10),
  alert_type: stringOrList(20, 64),
  status_types: stringOrList(10),
} as const;

const schemas = {
  auth: {
    type: 'object',
    required: ['type', 'token'],
    additionalProperties: false,
    properties: { type: { const: 'auth' }, id, token: { type: 'string', minLength: 1, maxLength: 900 } },
  },
  ping: {
    type: 'object',
    required: ['type'],
    additionalProperties: false,
    properties: { type: { const: 'ping' }, id, timestamp: { type: ['string', 'number'], maxLength: 64 } },
  },
  subscribe: {
    type: 'object',
    required: ['type'],
    additionalProperties: false,
    properties: {
      type: { const: 'subscribe' },
      id,
      channel: { type: 'string', maxLength: 32 },
      ...filterProps,
      filters: { type: 'object', additionalProperties: false, properties: filterProps },
    },
  },
  unsubscribe: {
    type: 'object',
    required: ['type'],
    additionalProperties: false,
    properties: {
      type: { const: 'unsubscribe' },
      id,
      channel: { type: 'string', maxLength: 32 },
      device_id: filterProps.device_id,
      subscription_id: { type: 'integer', minimum: 1 },
      filters: { type: 'object', additionalProperties: false, properties: { device_id: filterProps.device_id } },
    },
  },
  batch: {
    type: 'object',
    required: ['type', 'messages'],
    additionalProperties: false,
    properties: { type: { const: 'batch' }, id, messages: { type: 'array', minItems: 1 } },
  },
  get_devices: {
    type: 'object',
    required: ['type'],
    additionalProperties: false,
    properties: { type: { const: 'get_devices' }, id },
  },
  get_alerts: {
    type: 'object',
    required: ['type'],
    additionalProperties: false,
    properties: { type: { const: 'get_alerts' }, id },
  },
} as const;

export type ClientMessageType = keyof typeof schemas;
export const CLIENT_MESSAGE_TYPES = Object.keys(schemas) as ClientMessageType[];

const ajv = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true });
const validators = Object.fromEntries(Object.entries(schemas).map(([k, s]) => [k, ajv.compile(s)])) as Record<ClientMessageType, ValidateFunction>;

export interface ClientMessage {
  type: ClientMessageType;
  id?: string | number;
  [key: string]: unknown;
}

export type Checked = { ok: true; msg: ClientMessage } | { ok: false; error: string; message: string; type?: string; id?: string | number };

function idOf(obj: Record<string, unknown>): string | number | undefined {
  const v = obj.id;
  if (typeof v === 'string' && v.length <= 64) return v;
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  return undefined;
}

/** Validate one parsed message (a frame or a batch item). `bytes` is its encoded size. */
export function checkMessage(value: unknown, bytes: number, inBatch = false): Checked {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { ok: false, error: 'invalid_message', message: 'a message must be a JSON object with a "type"' };
  }
  const obj = value as Record<string, unknown>;
  const type = typeof obj.type === 'string' ? obj.type.slice(0, 32) : undefined;
  const ref = { type, id: idOf(obj) };
  if (type === 'batch' && Array.isArray(obj.messages) && obj.messages.length > MAX_BATCH_ITEMS) {
    return { ok: false, error: 'batch_too_large', message: `a batch holds at most ${MAX_BATCH_ITEMS} messages (got ${obj.messages.length})`, ...ref };
  }
  if (type !== 'batch' && bytes > MAX_MESSAGE_BYTES) {
    return { ok: false, error: 'message_too_large', message: `messages are limited to ${MAX_MESSAGE_BYTES} bytes${inBatch ? ' per batch item' : ''} (got ${bytes})`, ...ref };
  }
  if (jsonDepth(obj, MAX_DEPTH + 1) > MAX_DEPTH) {
    return { ok: false, error: 'invalid_message', message: `message nests deeper than ${MAX_DEPTH} levels`, ...ref };
  }
  if (type === undefined) return { ok: false, error: 'invalid_message', message: 'the message has no "type"', ...ref };
  if (type === 'batch' && inBatch) return { ok: false, error: 'invalid_message', message: 'a batch cannot contain a batch', ...ref };
  const validate = validators[type as ClientMessageType];
  if (!validate) {
    return { ok: false, error: 'unknown_message_type', message: `unknown message type "${type}": use ${CLIENT_MESSAGE_TYPES.join(', ')}`, ...ref };
  }
  if (!validate(obj)) return { ok: false, error: 'invalid_message', message: `${type}: ${explain(validate)}`, ...ref };
  if (type === 'subscribe' || type === 'unsubscribe') {
    const ch = obj.channel;
    if (ch !== undefined && !(CHANNELS as readonly string[]).includes(ch as string)) {
      return { ok: false, error: 'unknown_channel', message: `unknown channel ${JSON.stringify(ch)}: use ${CHANNELS.join(', ')}`, ...ref };
    }
  }
  return { ok: true, msg: obj as ClientMessage };
}

/** ajv's first error in words, naming an unexpected property. */
function explain(validate: ValidateFunction): string {
  const err = validate.errors?.[0];
  if (err?.keyword === 'additionalProperties') {
    const extra = String((err.params as { additionalProperty?: string }).additionalProperty ?? '');
    const where = err.instancePath ? `${err.instancePath.slice(1).replace(/\//g, '.')}.` : '';
    const known = where === 'filters.' ? ` (filters are ${FILTER_KEYS.join(', ')})` : '';
    return `unexpected property "${where}${extra.slice(0, 32)}"${known}`;
  }
  return describeErrors(validate);
}

/** Parse a text frame; a malformed one is `invalid_json`. */
export function parseFrame(text: string): { ok: true; value: unknown } | { ok: false; error: string; message: string } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false, error: 'invalid_json', message: 'the message is not valid JSON' };
  }
}
