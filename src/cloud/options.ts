/**
 * Options of the local cloud (`CoolkitCloud`), with their defaults. The `coolkit-server`
 * config node fills these from its properties.
 */
import * as os from 'node:os';
import type { Logger } from './log';
import type { AdmissionMode } from './admission';

export type TlsMode = 'auto' | 'files' | 'off';

export interface CloudOptions {
  /** Address to listen on. Default `0.0.0.0`. */
  bind: string;
  /** Port for dispatch and the device WebSocket. Default 8443; 0 picks a free port (tests). */
  port: number;
  /** IP put in the dispatch reply; default the bind address, or the first non-internal IPv4. */
  advertiseHost: string;
  /** `auto`: generated self-signed cert; `files`: certFile + keyFile; `off`: plain HTTP/WS. */
  tls: TlsMode;
  certFile: string;
  keyFile: string;
  /** Allow TLS 1.0 and legacy ciphers for old ESP8266 firmware. Default true. */
  legacyTls: boolean;
  /** Heartbeat interval (s) told to devices in the register reply. Default 145. */
  hbInterval: number;
  /** How long a command waits for the device's ack. Default 10 s. */
  commandTimeoutMs: number;
  /** Directory for the device state file and the generated certificate. */
  stateDir: string;
  /** Name of the state file inside `stateDir`. */
  stateFile: string;
  /** A device is offline when silent for this long. Default (hbInterval + 7) s + 30 s. */
  offlineAfterMs: number;
  /** How often the single liveness sweep runs. Default 5 s. */
  sweepIntervalMs: number;
  /** A socket that has not registered within this time is closed. Default 30 s. */
  registerDeadlineMs: number;
  /** Largest accepted WebSocket frame / dispatch body. */
  maxPayload: number;
  maxDispatchBody: number;
  /** Per-socket flood limit: burst size and refill per second. */
  rateBurst: number;
  ratePerSecond: number;
  /** Re-send `uiActive` to watched power meters this often; 0 turns live metering off. Default 50 s. */
  uiActiveIntervalMs: number;
  /** The `uiActive` window asked for, in seconds. Default 60. */
  uiActiveSeconds: number;
  /** Per-outlet commands to one device within this window are sent as one message. Default 100 ms. */
  coalesceWindowMs: number;
  /** Who may connect: `auto` (default), `open` or `allowlist`. See admission.ts. */
  admission: AdmissionMode;
  /** The app account: the apikey apps log in with and the access token (`at`) they present. Empty = app side off. */
  appApikey: string;
  appToken: string;
  /** Devices recorded by `coolkit-pair` while Node-RED was unreachable; imported at start and then renamed. */
  pendingDevicesFile: string;
  logger: Logger;
}

/** First non-internal IPv4 address of this machine, or 127.0.0.1. */
export function defaultAdvertiseHost(): string {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const addr of list ?? []) {
      if (addr.family === 'IPv4' && !addr.internal) return addr.address;
    }
  }
  return '127.0.0.1';
}

export function resolveOptions(partial: Partial<CloudOptions> & { stateDir: string; logger: Logger }): CloudOptions {
  const hbInterval = partial.hbInterval ?? 145;
  const bind = partial.bind || '0.0.0.0';
  const advertiseHost = partial.advertiseHost || (bind !== '0.0.0.0' && bind !== '::' ? bind : defaultAdvertiseHost());
  return {
    bind,
    port: partial.port ?? 8443,
    advertiseHost,
    tls: partial.tls ?? 'auto',
    certFile: partial.certFile ?? '',
    keyFile: partial.keyFile ?? '',
    legacyTls: partial.legacyTls ?? true,
    hbInterval,
    commandTimeoutMs: partial.commandTimeoutMs ?? 10_000,
    stateDir: partial.stateDir,
    stateFile: partial.stateFile ?? 'devices.json',
    offlineAfterMs: partial.offlineAfterMs ?? (hbInterval + 7) * 1000 + 30_000,
    sweepIntervalMs: partial.sweepIntervalMs ?? 5000,
    registerDeadlineMs: partial.registerDeadlineMs ?? 30_000,
    maxPayload: partial.maxPayload ?? 64 * 1024,
    maxDispatchBody: partial.maxDispatchBody ?? 4096,
    rateBurst: partial.rateBurst ?? 100,
    ratePerSecond: partial.ratePerSecond ?? 20,
    uiActiveIntervalMs: partial.uiActiveIntervalMs ?? 50_000,
    uiActiveSeconds: partial.uiActiveSeconds ?? 60,
    coalesceWindowMs: partial.coalesceWindowMs ?? 100,
    admission: partial.admission ?? 'auto',
    appApikey: partial.appApikey ?? '',
    appToken: partial.appToken ?? '',
    pendingDevicesFile: partial.pendingDevicesFile ?? 'pending-devices.json',
    logger: partial.logger,
  };
}
