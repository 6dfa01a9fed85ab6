/**
 * Builders for every server-to-device message. Field order follows the 2017 cloud capture
 * (`shared/seeds/001_*.txt`) so a side-by-side comparison with the trace reads the same.
 */
import type { Params } from './types';

export const DEFAULT_HB_INTERVAL = 145;

export interface DispatchReply {
  error: 0;
  reason: 'ok';
  IP: string;
  port: number;
}

export function buildDispatchReply(ip: string, port: number): DispatchReply {
  return { error: 0, reason: 'ok', IP: ip, port };
}

/** The empty storage settings the real cloud sends in `config.devConfig`. */
function emptyDevConfig(): Record<string, string | number> {
  return {
    storeAppsecret: '',
    bucketName: '',
    lengthOfVideo: 0,
    deleteAfterDays: 0,
    persistentPipeline: '',
    storeAppid: '',
    uploadLimit: 0,
    statusReportUrl: '',
    storetype: 0,
    callbackHost: '',
    persistentNotifyUrl: '',
    callbackUrl: '',
    persistentOps: '',
    captureNumber: 0,
    callbackBody: '',
  };
}

/** Reply to `register`: the issued (user) apikey, which the device uses from now on. */
export function buildRegisterReply(deviceid: string, issuedApikey: string, hbInterval: number = DEFAULT_HB_INTERVAL) {
  return {
    error: 0,
    deviceid,
    apikey: issuedApikey,
    config: { devConfig: emptyDevConfig(), hb: 1, hbInterval },
  };
}

/** Reply to `date`: real UTC, which the device's timers depend on. */
export function buildDateReply(deviceid: string, apikey: string, now: Date = new Date()) {
  return { error: 0, deviceid, apikey, date: now.toISOString() };
}

/** Acknowledgement of a device `update` report. */
export function buildUpdateAck(deviceid: string, apikey: string) {
  return { error: 0, deviceid, apikey };
}

/** Reply to a device `query`: the stored values, or `0` when nothing is stored (as the real cloud does). */
export function buildQueryReply(deviceid: string, apikey: string, params: Params | 0) {
  return { error: 0, deviceid, apikey, params };
}

/** An error reply; `reason` is ours (the real cloud sends bare codes), devices ignore it. */
export function buildErrorReply(code: number, reason: string, deviceid?: string, apikey?: string) {
  const reply: Record<string, unknown> = { error: code, reason };
  if (deviceid !== undefined) reply.deviceid = deviceid;
  if (apikey !== undefined) reply.apikey = apikey;
  return reply;
}

/** A server-pushed command, exactly in the capture's shape. */
export function buildServerUpdate(deviceid: string, apikey: string, sequence: string, params: Params) {
  return {
    action: 'update' as const,
    deviceid,
    apikey,
    userAgent: 'app' as const,
    sequence,
    ts: 0,
    params,
    from: 'app' as const,
  };
}

/** Pick stored values for a device `query`: all of them for an empty key list. */
export function selectQueryParams(state: Params, keys: readonly string[]): Params | 0 {
  if (keys.length === 0) return Object.keys(state).length > 0 ? { ...state } : 0;
  const out: Params = {};
  let found = false;
  for (const key of keys) {
    if (Object.prototype.hasOwnProperty.call(state, key) && state[key] !== undefined) {
      out[key] = state[key];
      found = true;
    }
  }
  return found ? out : 0;
}

/**
 * Unique command sequences: ms-epoch strings like the cloud's, bumped by one when two
 * commands fall in the same millisecond, so acks always correlate to one command.
 */
export class SequenceGenerator {
  private last = 0;

  next(now: number = Date.now()): string {
    this.last = now > this.last ? now : this.last + 1;
    return String(this.last);
  }
}
