#!/usr/bin/env node
/**
 * coolkit-pair: pair a stock-firmware Sonoff in AP mode with the local CoolKit server and record
 * it in the coolkit-server allow-list (Node-RED admin API, or the pending-devices import file).
 */
import { parseArgs } from 'node:util';
import {
  AP_WIFI_PASSWORD,
  DEFAULT_DEVICE_URL,
  DEFAULT_SERVER_PORT,
  DEFAULT_TIMEOUT_MS,
  DEFAULT_WAIT_MS,
  PairError,
  pair,
  parseDeviceUrl,
  planPair,
  validatePairOptions,
  type PairOptions,
  type PairResult,
} from './pair';

export const USAGE = `Usage: coolkit-pair --ssid <wifi> --password <wifi-password> --server <ip|host> [options]

Pair a stock-firmware Sonoff with your own coolkit-server instead of the eWeLink cloud.
1. Hold the device's button ~5-7 s until the LED blinks fast (pairing / AP mode).
2. Join its Wi-Fi "ITEAD-<deviceid>" (password ${AP_WIFI_PASSWORD}) with this computer.
3. Run coolkit-pair. It reads the device id and factory apikey (GET /device), sends your
   Wi-Fi and server (POST /ap), then records the device in the coolkit-server allow-list:
   through the Node-RED admin API when --node-red is given and reachable (it retries for
   --wait seconds while this computer rejoins your network), else in an import file that
   the coolkit-server node reads when it starts.

Device and Wi-Fi:
  --ssid <name>            Wi-Fi network the device should join (required)
  --password <text>        its password (required; --password "" for an open network)
  --server <ip|host>       IP address or host name of the machine running Node-RED, as seen
                           from that network, e.g. 192.168.1.10 (required; no http://, no port)
  --port <n>               coolkit-server port (default ${DEFAULT_SERVER_PORT}); sent as a number
  --name <text>            name for the device in the allow-list
  --device <url>           device address (default ${DEFAULT_DEVICE_URL})
  --timeout <s>            per-request timeout in seconds (default ${DEFAULT_TIMEOUT_MS / 1000})

Recording the device:
  --node-red <url>         Node-RED URL incl. httpAdminRoot, e.g. http://192.168.1.10:1880
  --server-node <id>       id of the coolkit-server config node (default: the only one deployed)
  --token <bearer>         Node-RED adminAuth access token
  --user <name>            Node-RED adminAuth user, with --password-admin, to get a token
  --password-admin <text>  that user's password
  --insecure               accept a self-signed certificate from an https Node-RED
  --wait <s>               how long to retry an unreachable Node-RED (default ${DEFAULT_WAIT_MS / 1000})
  --import-file <path>     fallback file (default ~/.node-red/coolkit/pending-devices.json)

Output:
  --dry-run                print the requests (secrets masked) and send nothing
  --json                   print one JSON result object on stdout (progress goes to stderr)
  -h, --help               show this help

Exit status: 0 paired and recorded, 1 failure, 2 bad arguments.
`;

export class UsageError extends Error {
  override name = 'UsageError';
}

export interface CliConfig {
  pair: PairOptions;
  dryRun: boolean;
  json: boolean;
}

export interface CliIo {
  out: (text: string) => void;
  err: (text: string) => void;
}

const defaultIo: CliIo = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
};

function seconds(name: string, text: string | undefined, fallbackMs: number, allowZero: boolean): number {
  if (text === undefined) return fallbackMs;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n < 0 || (!allowZero && n === 0)) {
    throw new UsageError(`--${name} must be a ${allowZero ? 'non-negative' : 'positive'} number of seconds, got "${text}"`);
  }
  return Math.round(n * 1000);
}

function httpUrl(name: string, text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`--${name} is not a URL: "${text}" (e.g. http://192.168.1.10:1880)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--${name} must be http:// or https://, got "${text}"`);
  return text.replace(/\/+$/, '');
}

/** Parse argv (without node and script). Returns 'help' for --help; throws UsageError. */
export function parseCliArgs(argv: string[]): CliConfig | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        ssid: { type: 'string' },
        password: { type: 'string' },
        server: { type: 'string' },
        port: { type: 'string' },
        name: { type: 'string' },
        device: { type: 'string' },
        timeout: { type: 'string' },
        'node-red': { type: 'string' },
        'server-node': { type: 'string' },
        token: { type: 'string' },
        user: { type: 'string' },
        'password-admin': { type: 'string' },
        insecure: { type: 'boolean' },
        wait: { type: 'string' },
        'import-file': { type: 'string' },
        'dry-run': { type: 'boolean' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  if (values.help) return 'help';

  const missing = (['ssid', 'password', 'server'] as const).filter((k) => values[k] === undefined).map((k) => `--${k}`);
  if (missing.length) throw new UsageError(`missing ${missing.join(', ')}`);

  let serverPort = DEFAULT_SERVER_PORT;
  if (values.port !== undefined) {
    serverPort = Number(values.port);
    if (!/^\d+$/.test(values.port) || serverPort < 1 || serverPort > 65535) throw new UsageError(`--port must be 1-65535, got "${values.port}"`);
  }

  let deviceUrl = DEFAULT_DEVICE_URL;
  if (values.device !== undefined) {
    try {
      deviceUrl = parseDeviceUrl(values.device).origin;
    } catch (err) {
      throw new UsageError(`--device: ${err instanceof TypeError && !/Invalid URL/.test(err.message) ? err.message : `not an address: "${values.device}"`}`);
    }
  }

  const nodeRedUrl = values['node-red'] !== undefined ? httpUrl('node-red', values['node-red']) : undefined;
  if (!nodeRedUrl) {
    const needsNodeRed = (['server-node', 'token', 'user', 'password-admin', 'insecure'] as const).filter((k) => values[k] !== undefined);
    if (needsNodeRed.length) throw new UsageError(`${needsNodeRed.map((k) => `--${k}`).join(', ')} need(s) --node-red`);
  }
  if ((values.user === undefined) !== (values['password-admin'] === undefined)) throw new UsageError('--user and --password-admin go together');
  if (values.token !== undefined && values.user !== undefined) throw new UsageError('give either --token or --user/--password-admin, not both');
  if (values['server-node'] !== undefined && values['server-node'].trim() === '') throw new UsageError('--server-node is empty');

  const pairOpts: PairOptions = {
    deviceUrl,
    ssid: values.ssid!,
    password: values.password!,
    serverName: values.server!.trim(),
    serverPort,
    timeoutMs: seconds('timeout', values.timeout, DEFAULT_TIMEOUT_MS, false),
    waitMs: seconds('wait', values.wait, DEFAULT_WAIT_MS, true),
  };
  if (values.name) pairOpts.name = values.name;
  if (values['import-file']) pairOpts.importFile = values['import-file'];
  if (nodeRedUrl) {
    pairOpts.nodeRed = { nodeRedUrl };
    if (values['server-node']) pairOpts.nodeRed.serverNodeId = values['server-node'].trim();
    if (values.token) pairOpts.nodeRed.token = values.token;
    if (values.user !== undefined) {
      pairOpts.nodeRed.user = values.user;
      pairOpts.nodeRed.adminPassword = values['password-admin'];
    }
    if (values.insecure) pairOpts.nodeRed.rejectUnauthorized = false;
  }
  try {
    validatePairOptions(pairOpts);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return { pair: pairOpts, dryRun: values['dry-run'] ?? false, json: values.json ?? false };
}

function summary(r: PairResult): string {
  const lines = [
    `Paired ${r.deviceid}.`,
    `  factory apikey: ${r.apikey}`,
    `  Wi-Fi:          ${r.ssid}`,
    `  server:         https://${r.serverName}:${r.serverPort}`,
    r.recordedVia === 'admin-api'
      ? `  recorded:       allow-list of coolkit-server ${r.serverNodeId} (Node-RED ${r.nodeRed})`
      : `  recorded:       ${r.importFile} (imported when the coolkit-server node next starts)`,
  ];
  if (r.warnings.length) lines.push(`  warnings:       ${r.warnings.length} (see above)`);
  return `${lines.join('\n')}\n`;
}

function printPlan(cfg: CliConfig, io: CliIo): void {
  const plan = planPair(cfg.pair);
  if (cfg.json) {
    io.out(`${JSON.stringify({ ok: true, dryRun: true, ...plan }, null, 2)}\n`);
    return;
  }
  const parts = plan.requests.map((r, i) => {
    const head = [`# ${i + 1}. ${r.step}`, `${r.method} ${r.url}`, ...Object.entries(r.headers).map(([k, v]) => `${k}: ${v}`)];
    if (r.body !== undefined) head.push('', typeof r.body === 'string' ? r.body : JSON.stringify(r.body));
    return head.join('\n');
  });
  const fallback = cfg.pair.nodeRed
    ? `# If Node-RED cannot be used, the device is saved to ${plan.importFile}`
    : `# ${plan.requests.length + 1}. save the device to ${plan.importFile}`;
  io.out(`Dry run: nothing is sent (secrets masked).\n\n${parts.join('\n\n')}\n\n${fallback}\n`);
}

export async function main(argv: string[], io: CliIo = defaultIo): Promise<number> {
  let cfg: CliConfig | 'help';
  try {
    cfg = parseCliArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    if (argv.includes('--json')) io.out(`${JSON.stringify({ ok: false, error: { code: 'usage', message: err.message } })}\n`);
    io.err(`coolkit-pair: ${err.message}\nRun coolkit-pair --help for usage.\n`);
    return 2;
  }
  if (cfg === 'help') {
    io.out(USAGE);
    return 0;
  }
  if (cfg.dryRun) {
    printPlan(cfg, io);
    return 0;
  }

  const json = cfg.json;
  const log = (level: 'info' | 'warn', message: string): void => {
    if (level === 'warn') io.err(`warning: ${message}\n`);
    else if (json) io.err(`${message}\n`);
    else io.out(`${message}\n`);
  };
  try {
    const result = await pair({ ...cfg.pair, log });
    io.out(json ? `${JSON.stringify({ ok: true, ...result })}\n` : summary(result));
    return 0;
  } catch (err) {
    if (!(err instanceof PairError)) throw err;
    if (json) {
      const out: Record<string, unknown> = { ok: false, error: { code: err.code, step: err.step, message: err.message } };
      if (err.device) Object.assign(out, err.device);
      io.out(`${JSON.stringify(out)}\n`);
    }
    io.err(`coolkit-pair: ${err.message}\n`);
    if (err.device && !err.message.includes(err.device.apikey)) io.err(`(device ${err.device.deviceid}, factory apikey ${err.device.apikey})\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      console.error(`coolkit-pair: ${err instanceof Error ? err.stack : String(err)}`);
      process.exitCode = 1;
    },
  );
}
