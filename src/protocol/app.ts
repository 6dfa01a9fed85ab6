/**
 * The app side of the CoolKit WebSocket (seed 000, coolkit-protocol.md §3.17): an app logs in
 * with `userOnline` (access token `at` + account `apikey`), then sends `update`/`query` for
 * devices and receives device reports and `sysmsg` online/offline notices. Heartbeat is the
 * text frame `ping`, answered with `pong`.
 */
import Ajv from 'ajv';
import { APIKEY_PATTERN, DEVICEID_PATTERN, SEQUENCE_PATTERN, describeErrors, parseJsonObject } from './schemas';
import { ErrorCode } from './errors';
import type { Params } from './types';

export interface UserOnlineMessage {
  action: 'userOnline';
  at: string;
  apikey: string;
  sequence?: string;
  [extra: string]: unknown;
}

export interface AppUpdateMessage {
  action: 'update';
  deviceid: string;
  apikey?: string;
  selfApikey?: string;
  params: Params;
  sequence: string;
  [extra: string]: unknown;
}

export interface AppQueryMessage {
  action: 'query';
  deviceid: string;
  apikey?: string;
  params: string[];
  sequence: string;
  [extra: string]: unknown;
}

export type ParsedAppFrame =
  | { kind: 'ping' }
  | { kind: 'userOnline'; msg: UserOnlineMessage }
  | { kind: 'update'; msg: AppUpdateMessage }
  | { kind: 'query'; msg: AppQueryMessage }
  | { kind: 'invalid'; code: number; reason: string; sequence?: string };

const sequence = { type: 'string', pattern: SEQUENCE_PATTERN } as const;
const ajv = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true });

const validateUserOnline = ajv.compile<UserOnlineMessage>({
  type: 'object',
  required: ['action', 'at', 'apikey'],
  properties: {
    action: { const: 'userOnline' },
    at: { type: 'string', minLength: 1, maxLength: 256 },
    apikey: { type: 'string', maxLength: 64 },
    sequence,
  },
});

const validateUpdate = ajv.compile<AppUpdateMessage>({
  type: 'object',
  required: ['action', 'deviceid', 'params', 'sequence'],
  properties: {
    action: { const: 'update' },
    deviceid: { type: 'string', pattern: DEVICEID_PATTERN },
    apikey: { type: 'string', pattern: APIKEY_PATTERN },
    selfApikey: { type: 'string', pattern: APIKEY_PATTERN },
    params: { type: 'object', minProperties: 1, maxProperties: 64 },
    sequence,
  },
});

const validateQuery = ajv.compile<AppQueryMessage>({
  type: 'object',
  required: ['action', 'deviceid', 'params', 'sequence'],
  properties: {
    action: { const: 'query' },
    deviceid: { type: 'string', pattern: DEVICEID_PATTERN },
    apikey: { type: 'string', pattern: APIKEY_PATTERN },
    params: { type: 'array', maxItems: 64, items: { type: 'string', maxLength: 64 } },
    sequence,
  },
});

/** Classify one text frame from an app. Never throws. */
export function parseAppFrame(text: string): ParsedAppFrame {
  if (text === 'ping') return { kind: 'ping' };
  const parsed = parseJsonObject(text);
  const seqOf = (o?: Record<string, unknown>) => (typeof o?.sequence === 'string' && o.sequence.length <= 64 ? o.sequence : undefined);
  if (!parsed.ok) return { kind: 'invalid', code: ErrorCode.BAD_REQUEST, reason: parsed.reason, sequence: seqOf(parsed.obj) };
  const obj = parsed.obj;
  const seq = seqOf(obj);
  switch (obj.action) {
    case 'userOnline':
      return validateUserOnline(obj) ? { kind: 'userOnline', msg: obj } : { kind: 'invalid', code: ErrorCode.BAD_REQUEST, reason: `userOnline: ${describeErrors(validateUserOnline)}`, sequence: seq };
    case 'update':
      return validateUpdate(obj) ? { kind: 'update', msg: obj } : { kind: 'invalid', code: ErrorCode.BAD_REQUEST, reason: `update: ${describeErrors(validateUpdate)}`, sequence: seq };
    case 'query':
      return validateQuery(obj) ? { kind: 'query', msg: obj } : { kind: 'invalid', code: ErrorCode.BAD_REQUEST, reason: `query: ${describeErrors(validateQuery)}`, sequence: seq };
    default: {
      const shown = typeof obj.action === 'string' ? obj.action.slice(0, 32) : typeof obj.action;
      return { kind: 'invalid', code: ErrorCode.BAD_REQUEST, reason: `unknown action "${shown}"`, sequence: seq };
    }
  }
}

/** Reply to `userOnline`, as the seed shows: error, apikey, config, sequence. */
export function buildUserOnlineReply(apikey: string, hbInterval: number, sequence?: string) {
  const reply: Record<string, unknown> = { error: 0, apikey, config: { hb: 1, hbInterval } };
  if (sequence !== undefined) reply.sequence = sequence;
  return reply;
}

/** The answer to an app `update` (and errors: 503 offline, 504 timeout, device codes). */
export function buildAppResult(code: number, deviceid: string, apikey: string, sequence: string, reason?: string) {
  const reply: Record<string, unknown> = { error: code, deviceid, apikey, sequence };
  if (code !== 0 && reason) reply.reason = reason;
  return reply;
}

/** The answer to an app `query`: stored values (an empty object when nothing is stored). */
export function buildAppQueryReply(deviceid: string, apikey: string, sequence: string, params: Params) {
  return { error: 0, deviceid, apikey, sequence, params };
}

/** A device report relayed to apps, field order as the seed shows. */
export function buildAppDeviceUpdate(deviceid: string, apikey: string, params: Params) {
  return { action: 'update', deviceid, apikey, userAgent: 'device', ts: 0, params, from: 'device' };
}

/** Online/offline notice for apps. */
export function buildSysmsg(deviceid: string, apikey: string, online: boolean, now: Date = new Date()) {
  return { action: 'sysmsg', deviceid, apikey, ts: Math.floor(now.getTime() / 1000), params: { online } };
}

/** `/dispatch/app` reply (CK-v2 shape). */
export function buildAppDispatchReply(ip: string, port: number) {
  return { port, IP: ip, reason: 'ok', domain: ip, error: 0 };
}
