/**
 * Pair a stock-firmware Sonoff with our local CoolKit server (protocol §3.1), from a computer
 * joined to the device's `ITEAD-<deviceid>` Wi-Fi (password 12345678):
 *
 *   1. GET  http://10.10.7.1/device  → deviceid + factory apikey
 *   2. POST http://10.10.7.1/ap      ← home Wi-Fi + our server; the device reboots and joins it
 *   3. record the device in the coolkit-server allow-list:
 *      a. through the Node-RED admin API, `POST <node-red>/coolkit/<serverNodeId>/devices`,
 *         retried for a while because the computer is still on the device's Wi-Fi right after
 *         step 2 and needs time to rejoin the home network;
 *      b. otherwise in the pending-devices import file that the server reads when it starts.
 *
 * The `/ap` body carries `port` as a JSON NUMBER (the firmware answers `{"error":400}` to a
 * string port) and both `ssid` and `SSID` keys (the app capture uses `SSID`, the CoolKit docs and
 * community tools `ssid`), plus `version: 4`, sent with the eWeLink app's headers because
 * firmware 3.5.0 only accepts app-looking requests (itead/Sonoff_Devices_DIY_Tools#125).
 */
import * as os from 'node:os';
import { HttpFailure, httpRequest, type HttpResponse } from './http';
import { addPendingDevice, defaultImportFile, type AddPendingResult } from './import-file';

export const DEFAULT_DEVICE_URL = 'http://10.10.7.1';
/** Password of every stock `ITEAD-<deviceid>` pairing network. */
export const AP_WIFI_PASSWORD = '12345678';
/** Same default as the coolkit-server node. */
export const DEFAULT_SERVER_PORT = 8443;
export const DEFAULT_TIMEOUT_MS = 5000;
export const DEFAULT_WAIT_MS = 60_000;
export const RETRY_INTERVAL_MS = 2000;
export const AP_BODY_VERSION = 4;

/** Headers of the eWeLink Android app's `/ap` request (DIY#125), minus Host/Content-Length. */
export const APP_HEADERS: Readonly<Record<string, string>> = {
  Accept: 'application/json',
  'package-name': 'com.coolkit',
  'Cache-Control': 'no-store',
  'Content-Type': 'application/json;charset=UTF-8',
  Connection: 'Keep-Alive',
  'Accept-Encoding': 'gzip',
  'User-Agent': 'okhttp/3.12.12',
};

/** 60000 → '60 s', 400 → '0.4 s'. */
function secondsText(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

const HOLD_BUTTON = 'hold the button ~5-7 s until the LED blinks fast';

export interface DeviceInfo {
  deviceid: string;
  /** The factory apikey (protocol §5: store it and check it at register). */
  apikey: string;
  chipid?: string;
}

export interface ApSettings {
  ssid: string;
  password: string;
  serverName: string;
  port: number;
}

/** Exactly what is POSTed to `/ap`, in this key order. */
export interface ApBody {
  version: number;
  ssid: string;
  SSID: string;
  password: string;
  serverName: string;
  port: number;
}

export type PairStep = 'device' | 'ap' | 'record';
export type PairErrorCode =
  | 'device-unreachable'
  | 'device-timeout'
  | 'device-closed'
  | 'device-bad-reply'
  | 'ap-rejected'
  | 'record-failed';

/** A failure that ends pairing; `message` is written for the user. */
export class PairError extends Error {
  constructor(
    message: string,
    readonly code: PairErrorCode,
    readonly step: PairStep,
    /** Known once step 1 succeeded, so the caller can still show it. */
    readonly device?: DeviceInfo,
  ) {
    super(message);
    this.name = 'PairError';
  }
}

// ---------------------------------------------------------------------------------------------
// Input checks

/** Normalise `--device`: 'http://10.10.7.1', '10.10.7.1' or 'http://127.0.0.1:4000' → URL of the origin. */
export function parseDeviceUrl(text: string): URL {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  const url = new URL(withScheme);
  if (url.protocol !== 'http:') throw new TypeError(`the device only speaks plain http, got "${text}"`);
  return new URL(url.origin);
}

/**
 * Why `serverName` cannot be given to a device, or undefined. The device resolves and connects
 * to it from the home network, so loopback, 0.0.0.0 and the pairing network 10.10.7.x are
 * always mistakes, and it must be a bare host (no scheme, port or path).
 */
export function serverNameProblem(serverName: string): string | undefined {
  const s = serverName.trim();
  if (s === '') return 'is empty';
  if (/^[a-z]+:\/\//i.test(s)) return 'must be a bare IP address or host name, without http(s)://';
  if (/[/\s:@?#]/.test(s)) return 'must be a bare IPv4 address or host name (no port, path or IPv6; use --port for the port)';
  if (s.length > 64) return 'is longer than 64 characters';
  const lower = s.toLowerCase();
  if (lower === 'localhost' || lower.endsWith('.localhost') || /^127\./.test(s)) {
    return 'is a loopback address: the device would connect to itself. Use this computer\'s LAN IP address';
  }
  if (s === '0.0.0.0') return 'is 0.0.0.0: give the LAN IP address of the machine running Node-RED';
  if (/^10\.10\.7\.\d+$/.test(s)) return 'is on the device\'s pairing network (10.10.7.x): give the home-network IP address of the machine running Node-RED';
  return undefined;
}

/** Why the Wi-Fi settings are unusable, or undefined. */
export function wifiProblem(ssid: string, password: string): string | undefined {
  const ssidBytes = Buffer.byteLength(ssid);
  if (ssidBytes < 1 || ssidBytes > 32) return `--ssid must be 1-32 bytes, got ${ssidBytes}`;
  if (Buffer.byteLength(password) > 64) return '--password must be at most 64 bytes';
  return undefined;
}

/** True when some local interface has an address in 10.10.7.0/24 (i.e. we are on a device's AP). */
export function onPairingNetwork(interfaces: ReturnType<typeof os.networkInterfaces> = os.networkInterfaces()): boolean {
  for (const list of Object.values(interfaces)) {
    for (const addr of list ?? []) {
      if (addr.family === 'IPv4' && addr.address.startsWith('10.10.7.')) return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Steps 1 and 2: the device

export function buildApBody(s: ApSettings): ApBody {
  return { version: AP_BODY_VERSION, ssid: s.ssid, SSID: s.ssid, password: s.password, serverName: s.serverName, port: s.port };
}

export interface DeviceRequestOptions {
  timeoutMs?: number;
  /** For the "not on its Wi-Fi" hint; default os.networkInterfaces(). */
  interfaces?: ReturnType<typeof os.networkInterfaces>;
}

function hostOf(url: URL): string {
  return url.port ? url.host : url.hostname;
}

function parseJsonObject(res: HttpResponse): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(res.text);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function snippet(text: string): string {
  const t = text.replace(/\s+/g, ' ').trim();
  return t === '' ? '(empty)' : JSON.stringify(t.length > 80 ? `${t.slice(0, 80)}…` : t);
}

/** Step 1: `GET /device`. */
export async function getDeviceInfo(deviceUrl: URL | string, opts: DeviceRequestOptions = {}): Promise<DeviceInfo> {
  const base = typeof deviceUrl === 'string' ? parseDeviceUrl(deviceUrl) : deviceUrl;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const host = hostOf(base);
  let res: HttpResponse;
  try {
    res = await httpRequest({
      method: 'GET',
      url: new URL('/device', base),
      headers: { Accept: APP_HEADERS.Accept, 'package-name': APP_HEADERS['package-name'], 'User-Agent': APP_HEADERS['User-Agent'] },
      timeoutMs,
    });
  } catch (err) {
    if (!(err instanceof HttpFailure)) throw err;
    if (err.kind === 'unreachable') {
      let hint = '';
      if (base.hostname.startsWith('10.10.7.') && !onPairingNetwork(opts.interfaces)) {
        hint = ' (This computer has no 10.10.7.x address, so it is not on a pairing network now.)';
      }
      throw new PairError(
        `Cannot reach the device at ${host} (${err.message}): join its ITEAD-xxxx Wi-Fi (password ${AP_WIFI_PASSWORD}) and ${HOLD_BUTTON}.${hint}`,
        'device-unreachable',
        'device',
      );
    }
    if (err.kind === 'timeout') {
      throw new PairError(
        `The device at ${host} accepted the connection but did not answer GET /device (${err.message}). ` +
          `Put it back in pairing mode (${HOLD_BUTTON}) and retry, or allow more time with --timeout.`,
        'device-timeout',
        'device',
      );
    }
    throw new PairError(
      `The device at ${host} closed the connection without answering GET /device (${err.message}). ` +
        `It may have left pairing mode: ${HOLD_BUTTON}, rejoin its ITEAD-xxxx Wi-Fi and retry.`,
      'device-closed',
      'device',
    );
  }
  const json = parseJsonObject(res);
  const notSonoff = `does not look like a Sonoff in pairing mode. Is this computer on the device's ITEAD-xxxx Wi-Fi, and is ${host} the device?`;
  if (res.status !== 200 || !json) {
    throw new PairError(
      `The device at ${host} answered GET /device with HTTP ${res.status} ${json ? 'JSON' : `and no JSON: ${snippet(res.text)}`}; that ${notSonoff}`,
      'device-bad-reply',
      'device',
    );
  }
  const { deviceid, apikey, chipid } = json;
  if (typeof deviceid !== 'string' || deviceid === '' || typeof apikey !== 'string' || apikey === '') {
    throw new PairError(`The reply of ${host}/device has no deviceid/apikey (${snippet(res.text)}); it ${notSonoff}`, 'device-bad-reply', 'device');
  }
  const info: DeviceInfo = { deviceid, apikey };
  if (typeof chipid === 'string' && chipid !== '') info.chipid = chipid;
  return info;
}

/** Step 2: `POST /ap`. Resolves on `{"error":0}`; `device` is only used for error messages. */
export async function postApSettings(
  deviceUrl: URL | string,
  body: ApBody,
  opts: DeviceRequestOptions & { device?: DeviceInfo } = {},
): Promise<void> {
  const base = typeof deviceUrl === 'string' ? parseDeviceUrl(deviceUrl) : deviceUrl;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const host = hostOf(base);
  const dev = opts.device;
  const wifi = dev ? `ITEAD-${dev.deviceid}` : 'ITEAD-xxxx';
  let res: HttpResponse;
  try {
    res = await httpRequest({ method: 'POST', url: new URL('/ap', base), headers: { ...APP_HEADERS }, body: JSON.stringify(body), timeoutMs });
  } catch (err) {
    if (!(err instanceof HttpFailure)) throw err;
    if (err.kind === 'unreachable') {
      throw new PairError(
        `Lost the device at ${host} before it took the Wi-Fi settings (${err.message}). This computer may have dropped off ` +
          `its ${wifi} Wi-Fi, or pairing mode timed out: ${HOLD_BUTTON}, rejoin ${wifi} (password ${AP_WIFI_PASSWORD}) and retry.`,
        'device-unreachable',
        'ap',
        dev,
      );
    }
    const what =
      err.kind === 'timeout'
        ? `did not answer POST /ap (${err.message})`
        : `closed the connection without answering POST /ap (${err.message})`;
    throw new PairError(
      `The device at ${host} ${what}. The settings may or may not have been applied: if the device stops blinking fast ` +
        `and joins "${body.ssid}", it only needs adding to the coolkit-server allow-list (deviceid ${dev?.deviceid ?? '?'}, ` +
        `apikey ${dev?.apikey ?? '?'}); otherwise ${HOLD_BUTTON} and retry` +
        (err.kind === 'timeout' ? ' (or allow more time with --timeout).' : '.'),
      err.kind === 'timeout' ? 'device-timeout' : 'device-closed',
      'ap',
      dev,
    );
  }
  const json = parseJsonObject(res);
  if (res.status !== 200 || !json || typeof json.error !== 'number') {
    throw new PairError(
      `The device at ${host} answered POST /ap with HTTP ${res.status} ${snippet(res.text)}, not {"error":0}.`,
      'device-bad-reply',
      'ap',
      dev,
    );
  }
  if (json.error !== 0) {
    throw new PairError(
      `The device rejected the Wi-Fi settings: POST /ap answered ${res.text.replace(/\s+/g, '').slice(0, 80)}. Stock firmware answers this ` +
        `when "port" is sent as a string ("${body.port}") instead of a number; this tool sends the number ${body.port}, so the ` +
        `other known cause is firmware 3.5.0+, which only accepts requests that look like the eWeLink app (sent: ` +
        `User-Agent ${APP_HEADERS['User-Agent']}, Content-Type ${APP_HEADERS['Content-Type']}). Also check --ssid and --password, then retry.`,
      'ap-rejected',
      'ap',
      dev,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Step 3a: the Node-RED admin API

export interface AdminOptions {
  /** Node-RED base URL including httpAdminRoot, e.g. 'http://127.0.0.1:1880' or 'https://pi:1880/admin'. */
  nodeRedUrl: string;
  /** id of the coolkit-server config node; default: the only one in the deployed flows. */
  serverNodeId?: string;
  /** Bearer token (adminAuth). */
  token?: string;
  /** adminAuth user/password, exchanged for a token at `POST /auth/token`. */
  user?: string;
  adminPassword?: string;
  timeoutMs?: number;
  /** https only; default true. False accepts a self-signed Node-RED certificate. */
  rejectUnauthorized?: boolean;
}

export type AdminFailureKind =
  | 'unreachable'
  | 'timeout'
  | 'unauthorized'
  | 'bad-credentials'
  | 'not-found'
  | 'no-endpoint'
  | 'no-server-node'
  | 'rejected'
  | 'server-error';

export class AdminApiError extends Error {
  constructor(
    message: string,
    readonly kind: AdminFailureKind,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'AdminApiError';
  }

  /** Worth retrying while the computer rejoins the home network. */
  get retryable(): boolean {
    return this.kind === 'unreachable' || this.kind === 'timeout' || (this.kind === 'server-error' && this.status !== 500);
  }
}

export interface RegisteredDevice {
  deviceid: string;
  apikey: string;
  name?: string;
}

function adminUrl(base: string, path: string): URL {
  return new URL(`${base.replace(/\/+$/, '')}${path}`);
}

function adminRequest(
  o: AdminOptions,
  method: 'GET' | 'POST',
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<HttpResponse> {
  return httpRequest({
    method,
    url: adminUrl(o.nodeRedUrl, path),
    headers,
    body,
    timeoutMs: o.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    rejectUnauthorized: o.rejectUnauthorized,
  }).catch((err: unknown) => {
    if (err instanceof HttpFailure) {
      throw new AdminApiError(`Node-RED at ${o.nodeRedUrl} is not reachable (${err.message})`, err.kind === 'timeout' ? 'timeout' : 'unreachable');
    }
    throw err;
  });
}

function authHeader(token: string | undefined): Record<string, string> {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function statusError(o: AdminOptions, what: string, res: HttpResponse): AdminApiError {
  const s = res.status;
  if (s === 401 || s === 403) {
    return new AdminApiError(
      `Node-RED at ${o.nodeRedUrl} refused ${what} (HTTP ${s}): ${o.token || o.user ? 'the token is wrong, expired or lacks permission' : 'it requires a login (adminAuth)'}; ` +
        'pass --token <bearer>, or --user and --password-admin',
      'unauthorized',
      s,
    );
  }
  if (s >= 500) return new AdminApiError(`Node-RED at ${o.nodeRedUrl} failed ${what} (HTTP ${s} ${snippet(res.text)})`, 'server-error', s);
  return new AdminApiError(`Node-RED at ${o.nodeRedUrl} rejected ${what} (HTTP ${s} ${snippet(res.text)})`, 'rejected', s);
}

/**
 * Exchange adminAuth credentials for a bearer token (`POST /auth/token`, the flow
 * node-red-admin uses). Resolves undefined when Node-RED has no adminAuth (404).
 */
export async function obtainAdminToken(o: AdminOptions & { user: string; adminPassword: string }): Promise<string | undefined> {
  const form = new URLSearchParams({
    client_id: 'node-red-admin',
    grant_type: 'password',
    scope: '*',
    username: o.user,
    password: o.adminPassword,
  }).toString();
  const res = await adminRequest(o, 'POST', '/auth/token', { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' }, form);
  if (res.status === 404) return undefined;
  if (res.status === 401 || res.status === 403) {
    throw new AdminApiError(`Node-RED at ${o.nodeRedUrl} did not accept --user "${o.user}" and --password-admin (HTTP ${res.status})`, 'bad-credentials', res.status);
  }
  if (res.status !== 200) throw statusError(o, 'the login', res);
  const json = parseJsonObject(res);
  const token = json?.access_token;
  if (typeof token !== 'string' || token === '') {
    throw new AdminApiError(`Node-RED at ${o.nodeRedUrl} answered the login without an access_token (${snippet(res.text)})`, 'rejected', res.status);
  }
  return token;
}

/** The id of the only deployed coolkit-server node (`GET /flows`). */
export async function findServerNode(o: AdminOptions): Promise<string> {
  const res = await adminRequest(o, 'GET', '/flows', { Accept: 'application/json', 'Node-RED-API-Version': 'v1', ...authHeader(o.token) });
  if (res.status !== 200) throw statusError(o, 'reading the flows to find the coolkit-server node', res);
  let data: unknown;
  try {
    data = JSON.parse(res.text);
  } catch {
    data = undefined;
  }
  const flows = Array.isArray(data) ? data : (data as { flows?: unknown } | undefined)?.flows;
  if (!Array.isArray(flows)) throw new AdminApiError(`Node-RED at ${o.nodeRedUrl} answered GET /flows with something that is not a flow list`, 'rejected', res.status);
  const servers = flows.filter((n): n is { id: string; name?: string } => n?.type === 'coolkit-server' && typeof n.id === 'string');
  if (servers.length === 1) return servers[0].id;
  if (servers.length === 0) {
    throw new AdminApiError(`Node-RED at ${o.nodeRedUrl} has no coolkit-server node deployed: add one, deploy, and pass its id with --server-node`, 'no-server-node');
  }
  const list = servers.map((n) => (n.name ? `${n.id} ("${n.name}")` : n.id)).join(', ');
  throw new AdminApiError(`Node-RED at ${o.nodeRedUrl} has several coolkit-server nodes (${list}): pick one with --server-node`, 'no-server-node');
}

/**
 * Add one device to a coolkit-server allow-list: obtain a token if user/password were given,
 * find the server node if no id was given, then
 * `POST <node-red>/coolkit/<id>/devices` `{"deviceid","apikey","name"?}`; any 2xx is success.
 * Resolves with the server node id used.
 */
export async function registerDevice(o: AdminOptions, device: RegisteredDevice): Promise<string> {
  let opts = o;
  if (!o.token && o.user !== undefined && o.adminPassword !== undefined) {
    const token = await obtainAdminToken({ ...o, user: o.user, adminPassword: o.adminPassword });
    opts = { ...o, token };
  }
  const id = opts.serverNodeId ?? (await findServerNode(opts));
  const body: RegisteredDevice = { deviceid: device.deviceid, apikey: device.apikey };
  if (device.name) body.name = device.name;
  const res = await adminRequest(
    opts,
    'POST',
    `/coolkit/${encodeURIComponent(id)}/devices`,
    { 'Content-Type': 'application/json', Accept: 'application/json', ...authHeader(opts.token) },
    JSON.stringify(body),
  );
  if (res.status >= 200 && res.status < 300) return id;
  if (res.status === 404) {
    const json = parseJsonObject(res);
    if (json) {
      throw new AdminApiError(
        `Node-RED at ${o.nodeRedUrl} has no deployed coolkit-server node "${id}" (HTTP 404): check --server-node ` +
          '(the config node\'s id, shown in the editor\'s Information sidebar) and deploy the flow',
        'not-found',
        404,
      );
    }
    throw new AdminApiError(
      `Node-RED at ${o.nodeRedUrl} has no /coolkit/<id>/devices endpoint (HTTP 404): is node-red-contrib-coolkit installed and up to date, and is the URL its admin root?`,
      'no-endpoint',
      404,
    );
  }
  throw statusError(o, `adding device ${device.deviceid}`, res);
}

export interface RetryOptions {
  /** Keep retrying unreachable/timeout failures for this long. Default 60 s; 0 = one attempt. */
  waitMs?: number;
  retryIntervalMs?: number;
  /** Called once, on the first retryable failure, before waiting. */
  onWaiting?: (err: AdminApiError, waitMs: number) => void;
}

/** registerDevice(), retried while Node-RED is unreachable, within `waitMs`. */
export async function registerDeviceWithRetry(o: AdminOptions, device: RegisteredDevice, r: RetryOptions = {}): Promise<string> {
  const waitMs = r.waitMs ?? DEFAULT_WAIT_MS;
  const interval = r.retryIntervalMs ?? RETRY_INTERVAL_MS;
  const deadline = Date.now() + waitMs;
  let announced = false;
  for (;;) {
    try {
      return await registerDevice(o, device);
    } catch (err) {
      if (!(err instanceof AdminApiError) || !err.retryable) throw err;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new AdminApiError(
          waitMs > 0 ? `${err.message}, and still not after waiting ${secondsText(waitMs)}` : err.message,
          err.kind,
          err.status,
        );
      }
      if (!announced) {
        announced = true;
        r.onWaiting?.(err, waitMs);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(interval, left)));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The whole procedure

export type LogLevel = 'info' | 'warn';

export interface PairOptions {
  /** Default http://10.10.7.1. */
  deviceUrl?: string;
  ssid: string;
  password: string;
  /** IP or host name of the machine running the coolkit-server node, as the device will see it. */
  serverName: string;
  /** Default 8443. */
  serverPort?: number;
  /** Name for the allow-list entry. */
  name?: string;
  /** Use the admin API first; without it the import file is used directly. */
  nodeRed?: AdminOptions;
  /** Default ~/.node-red/coolkit/pending-devices.json. */
  importFile?: string;
  /** Per request. Default 5 s. */
  timeoutMs?: number;
  /** How long to wait for Node-RED to become reachable after /ap. Default 60 s. */
  waitMs?: number;
  retryIntervalMs?: number;
  log?: (level: LogLevel, message: string) => void;
  interfaces?: ReturnType<typeof os.networkInterfaces>;
  now?: () => Date;
}

export interface PairResult {
  deviceid: string;
  apikey: string;
  chipid?: string;
  ssid: string;
  serverName: string;
  serverPort: number;
  recordedVia: 'admin-api' | 'import-file';
  /** With recordedVia 'admin-api'. */
  serverNodeId?: string;
  nodeRed?: string;
  /** With recordedVia 'import-file'. */
  importFile?: string;
  /** Non-fatal problems, e.g. why the admin API was not used. */
  warnings: string[];
}

/** The checks pair() applies before touching the network; throws TypeError. */
export function validatePairOptions(o: PairOptions): void {
  const server = serverNameProblem(o.serverName);
  if (server) throw new TypeError(`--server ${server}`);
  const port = o.serverPort ?? DEFAULT_SERVER_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`--port must be 1-65535, got ${port}`);
  const wifi = wifiProblem(o.ssid, o.password);
  if (wifi) throw new TypeError(wifi);
}

export async function pair(o: PairOptions): Promise<PairResult> {
  validatePairOptions(o);
  const log = o.log ?? (() => undefined);
  const deviceUrl = parseDeviceUrl(o.deviceUrl ?? DEFAULT_DEVICE_URL);
  const serverPort = o.serverPort ?? DEFAULT_SERVER_PORT;
  const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const warnings: string[] = [];
  const warn = (m: string): void => {
    warnings.push(m);
    log('warn', m);
  };

  log('info', `Asking the device at ${hostOf(deviceUrl)} who it is (GET /device)...`);
  const info = await getDeviceInfo(deviceUrl, { timeoutMs, interfaces: o.interfaces });
  log('info', `Found device ${info.deviceid}${info.chipid ? ` (chip ${info.chipid})` : ''}.`);

  log('info', `Sending Wi-Fi "${o.ssid}" and server ${o.serverName}:${serverPort} (POST /ap)...`);
  await postApSettings(deviceUrl, buildApBody({ ssid: o.ssid, password: o.password, serverName: o.serverName, port: serverPort }), {
    timeoutMs,
    device: info,
  });
  log('info', `The device accepted the settings; it now restarts, joins "${o.ssid}" and dispatches to https://${o.serverName}:${serverPort}.`);

  const base = { deviceid: info.deviceid, apikey: info.apikey, ssid: o.ssid, serverName: o.serverName, serverPort, warnings };
  const withChip = info.chipid ? { chipid: info.chipid } : {};
  const device: RegisteredDevice = { deviceid: info.deviceid, apikey: info.apikey };
  if (o.name) device.name = o.name;

  if (o.nodeRed) {
    const nr = { timeoutMs, ...o.nodeRed };
    try {
      const id = await registerDeviceWithRetry(nr, device, {
        waitMs: o.waitMs ?? DEFAULT_WAIT_MS,
        retryIntervalMs: o.retryIntervalMs,
        onWaiting: (_err, waitMs) =>
          log('info', `Node-RED at ${nr.nodeRedUrl} is not reachable yet (this computer is probably still on the device's Wi-Fi); retrying for up to ${secondsText(waitMs)}...`),
      });
      log('info', `Added ${info.deviceid} to the allow-list of coolkit-server ${id} via Node-RED at ${nr.nodeRedUrl}.`);
      return { ...base, ...withChip, recordedVia: 'admin-api', serverNodeId: id, nodeRed: nr.nodeRedUrl };
    } catch (err) {
      if (!(err instanceof AdminApiError)) throw err;
      warn(`${err.message}${/[.?!]$/.test(err.message) ? '' : '.'} Saving the device to the import file instead.`);
    }
  }

  const file = o.importFile ?? defaultImportFile();
  let saved: AddPendingResult;
  try {
    saved = await addPendingDevice(file, device, o.now?.());
  } catch (err) {
    throw new PairError(
      `The device is set up, but recording it failed: ${(err as Error).message}. Add it to the coolkit-server allow-list by hand: ` +
        `deviceid ${info.deviceid}, apikey ${info.apikey}.`,
      'record-failed',
      'record',
      info,
    );
  }
  if (saved.movedAside) warn(`${file} was unreadable; moved it aside to ${saved.movedAside}.`);
  log(
    'info',
    `${saved.replaced ? 'Updated' : 'Saved'} ${info.deviceid} in ${file}; the coolkit-server node adds it to its allow-list the next time it starts.`,
  );
  return { ...base, ...withChip, recordedVia: 'import-file', importFile: file };
}

// ---------------------------------------------------------------------------------------------
// --dry-run

export interface PlannedRequest {
  step: string;
  method: 'GET' | 'POST';
  url: string;
  headers: Record<string, string>;
  body?: unknown;
}

export interface PairPlan {
  requests: PlannedRequest[];
  /** Where the device is saved when the admin API is not used or fails. */
  importFile: string;
}

const MASK = '********';

/**
 * The requests pair() would send, with secrets masked and the values only GET /device can
 * tell shown as placeholders. Sends nothing.
 */
export function planPair(o: PairOptions): PairPlan {
  validatePairOptions(o);
  const deviceUrl = parseDeviceUrl(o.deviceUrl ?? DEFAULT_DEVICE_URL);
  const port = o.serverPort ?? DEFAULT_SERVER_PORT;
  const requests: PlannedRequest[] = [
    {
      step: 'learn the device id and factory apikey',
      method: 'GET',
      url: new URL('/device', deviceUrl).href,
      headers: { Accept: APP_HEADERS.Accept, 'package-name': APP_HEADERS['package-name'], 'User-Agent': APP_HEADERS['User-Agent'] },
    },
    {
      step: 'send the home Wi-Fi and our server',
      method: 'POST',
      url: new URL('/ap', deviceUrl).href,
      headers: { ...APP_HEADERS },
      body: { ...buildApBody({ ssid: o.ssid, password: o.password, serverName: o.serverName, port }), password: o.password ? MASK : '' },
    },
  ];
  const nr = o.nodeRed;
  if (nr) {
    let auth: Record<string, string> = nr.token ? { Authorization: `Bearer ${MASK}` } : {};
    if (!nr.token && nr.user !== undefined && nr.adminPassword !== undefined) {
      requests.push({
        step: 'log in to Node-RED (adminAuth)',
        method: 'POST',
        url: adminUrl(nr.nodeRedUrl, '/auth/token').href,
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
        body: `client_id=node-red-admin&grant_type=password&scope=*&username=${encodeURIComponent(nr.user)}&password=${MASK}`,
      });
      auth = { Authorization: 'Bearer <access_token from /auth/token>' };
    }
    if (!nr.serverNodeId) {
      requests.push({
        step: 'find the coolkit-server node',
        method: 'GET',
        url: adminUrl(nr.nodeRedUrl, '/flows').href,
        headers: { Accept: 'application/json', 'Node-RED-API-Version': 'v1', ...auth },
      });
    }
    const body: Record<string, string> = { deviceid: '<deviceid from GET /device>', apikey: '<apikey from GET /device>' };
    if (o.name) body.name = o.name;
    requests.push({
      step: `add the device to the allow-list (retried for up to ${secondsText(o.waitMs ?? DEFAULT_WAIT_MS)})`,
      method: 'POST',
      url: nr.serverNodeId
        ? adminUrl(nr.nodeRedUrl, `/coolkit/${encodeURIComponent(nr.serverNodeId)}/devices`).href
        : `${nr.nodeRedUrl.replace(/\/+$/, '')}/coolkit/<coolkit-server id from GET /flows>/devices`,
      headers: { 'Content-Type': 'application/json', Accept: 'application/json', ...auth },
      body,
    });
  }
  return { requests, importFile: o.importFile ?? defaultImportFile() };
}
