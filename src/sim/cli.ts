#!/usr/bin/env node
/**
 * coolkit-sim: run a fleet of simulated Sonoff devices against a CoolKit-compatible server.
 *
 * Device ids are `prefix` + a hex counter (from 1) and factory apikeys are derived from the id,
 * so restarting the CLI presents the same devices to the server.
 */
import { parseArgs } from 'node:util';
import { SimulatedDevice } from './device';
import { deviceIdFor, factoryApikeyFor, maxDevicesForPrefix } from './ids';
import { DEFAULT_PROFILE, PROFILES, resolveProfile } from './models';
import { FleetTicker } from './scheduler';

const profileHelp = Object.values(PROFILES)
  .map((p) => `    ${p.name.padEnd(13)} ${p.model.padEnd(14)} ${p.romVersion.padEnd(6)} ${p.description}`)
  .join('\n');

export const USAGE = `Usage: coolkit-sim --server <url> [options]

Simulate stock-firmware Sonoff devices speaking the device side of the CoolKit
(eWeLink) protocol: dispatch, WebSocket register, date, update, query, acks.

Options:
  --server <url>            server base URL, e.g. https://127.0.0.1:8443 (required)
  --count <n>               number of devices (default 1)
  --model <profile>         device family to play (default ${DEFAULT_PROFILE}), one of the
                            profiles below or the model string of one of them;
                            any other string is reported as a raw model string
                            with the basic behaviour
  --rom-version <version>   firmware version to report (default: the profile's)
  --prefix <hex>            device id prefix (default 1000aa); ids are the prefix
                            plus a counter from 1, 10 hex chars in total
  --report-interval <s>     send the full state every <s> seconds (default off)
  --rf-trigger-interval <s> rfbridge: report a received code of a random learned
                            channel about every <s> seconds per device (default off)
  --connect-host <host>     connect the WebSocket here instead of the dispatch IP
  --connect-port <port>     connect the WebSocket to this port instead
  --quiet                   no per-device log lines
  -h, --help                show this help

Profiles (name, model string, romVersion); SIM-* are stand-ins for models our
references do not name, so a server must classify them by their params:
${profileHelp}

SIGINT/SIGTERM stop all devices and exit 0. Bad arguments exit 2.
`;

export interface CliConfig {
  server: string;
  count: number;
  /** Profile name, model string of a profile, or a raw model string (basic behaviour). */
  model: string;
  /** Undefined: the profile's. */
  romVersion?: string;
  prefix: string;
  reportIntervalMs: number;
  /** rfbridge random triggers; 0 = off. */
  rfTriggerIntervalMs: number;
  connectHost?: string;
  connectPort?: number;
  quiet: boolean;
}

/** Invalid command line; main() prints it and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

function positiveInt(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1) throw new UsageError(`--${name} must be a positive integer, got "${text}"`);
  return n;
}

/** A positive number of seconds as ms; 0 when the option is absent. */
function seconds(name: string, text: string | undefined): number {
  if (text === undefined) return 0;
  const s = Number(text);
  if (text.trim() === '' || !Number.isFinite(s) || s <= 0) throw new UsageError(`--${name} must be a positive number of seconds, got "${text}"`);
  return Math.round(s * 1000);
}

/** Parse argv (without node and script). Returns 'help' for --help; throws UsageError on bad input. */
export function parseCliArgs(argv: string[]): CliConfig | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        server: { type: 'string' },
        count: { type: 'string' },
        model: { type: 'string' },
        'rom-version': { type: 'string' },
        prefix: { type: 'string' },
        'report-interval': { type: 'string' },
        'rf-trigger-interval': { type: 'string' },
        'connect-host': { type: 'string' },
        'connect-port': { type: 'string' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  if (values.help) return 'help';

  const server = values.server;
  if (!server) throw new UsageError('--server is required');
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new UsageError(`--server is not a URL: "${server}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--server must be http:// or https://, got "${server}"`);

  const prefix = (values.prefix ?? '1000aa').toLowerCase();
  if (!/^[0-9a-f]{0,9}$/.test(prefix)) throw new UsageError(`--prefix must be 0-9 hex chars, got "${values.prefix}"`);
  const count = positiveInt('count', values.count, 1);
  if (count > maxDevicesForPrefix(prefix)) {
    throw new UsageError(`--count ${count} does not fit after prefix "${prefix}" (max ${maxDevicesForPrefix(prefix)})`);
  }

  const reportIntervalMs = seconds('report-interval', values['report-interval']);
  const rfTriggerIntervalMs = seconds('rf-trigger-interval', values['rf-trigger-interval']);
  if (values.model !== undefined && values.model.trim() === '') throw new UsageError('--model must not be empty');

  let connectPort: number | undefined;
  if (values['connect-port'] !== undefined) {
    connectPort = positiveInt('connect-port', values['connect-port'], 0);
    if (connectPort > 65535) throw new UsageError(`--connect-port must be 1-65535, got "${values['connect-port']}"`);
  }

  return {
    server,
    count,
    model: values.model ?? DEFAULT_PROFILE,
    romVersion: values['rom-version'],
    prefix,
    reportIntervalMs,
    rfTriggerIntervalMs,
    connectHost: values['connect-host'],
    connectPort,
    quiet: values.quiet ?? false,
  };
}

/**
 * Build the fleet described by `cfg` (not started). All devices share `ticker` for their behaviour
 * timers (inching, metering, sensor and RF ticks): one interval for the whole fleet, running only
 * while some device has something scheduled.
 */
export function createFleet(cfg: CliConfig, ticker: FleetTicker = new FleetTicker()): SimulatedDevice[] {
  const profile = resolveProfile(cfg.model);
  const devices: SimulatedDevice[] = [];
  for (let n = 1; n <= cfg.count; n++) {
    const deviceid = deviceIdFor(cfg.prefix, n);
    devices.push(
      new SimulatedDevice({
        server: cfg.server,
        deviceid,
        apikey: factoryApikeyFor(deviceid),
        profile,
        romVersion: cfg.romVersion,
        reportIntervalMs: cfg.reportIntervalMs,
        rfTriggerIntervalMs: cfg.rfTriggerIntervalMs,
        ticker,
        connectHost: cfg.connectHost,
        connectPort: cfg.connectPort,
      }),
    );
  }
  return devices;
}

function attachLogging(dev: SimulatedDevice, quiet: boolean, onRegistered: () => void): void {
  const line = (text: string): void => console.log(`${new Date().toISOString()} ${dev.deviceid} ${text}`);
  dev.on('registered', () => {
    if (!quiet) line(`registered apikey=${dev.issuedApikey}`);
    onRegistered();
  });
  // Listening to 'error' also opts in to error events; without a listener they are dropped.
  dev.on('error', (err) => {
    if (!quiet) console.error(`${new Date().toISOString()} ${dev.deviceid} error: ${err.message}`);
  });
  if (quiet) return;
  dev.on('command', (params, msg) => line(`command seq=${String(msg.sequence)} ${JSON.stringify(params)}`));
  dev.on('disconnected', (code, reason) => line(`disconnected code=${code}${reason ? ` reason=${reason}` : ''}`));
}

export async function main(argv: string[]): Promise<number> {
  let cfg: CliConfig | 'help';
  try {
    cfg = parseCliArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`coolkit-sim: ${err.message}\nRun coolkit-sim --help for usage.`);
    return 2;
  }
  if (cfg === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }

  const { quiet, count } = cfg;
  const ticker = new FleetTicker();
  const devices = createFleet(cfg, ticker);
  const registeredOnce = new Set<string>();
  for (const dev of devices) {
    attachLogging(dev, quiet, () => {
      if (registeredOnce.has(dev.deviceid)) return;
      registeredOnce.add(dev.deviceid);
      if (registeredOnce.size === count && !quiet) console.log(`${new Date().toISOString()} all ${count} device(s) registered`);
    });
  }

  return new Promise<number>((resolve) => {
    let stopping = false;
    const shutdown = (): void => {
      if (stopping) return;
      stopping = true;
      void Promise.allSettled(devices.map((d) => d.stop())).then(() => {
        ticker.stop();
        resolve(0);
      });
    };
    process.once('SIGINT', shutdown);
    process.once('SIGTERM', shutdown);
    // start() rejects only when stopped before registering; devices retry on their own.
    for (const dev of devices) dev.start().catch(() => undefined);
  });
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(`coolkit-sim: ${err instanceof Error ? err.stack : String(err)}`);
      process.exit(1);
    },
  );
}
