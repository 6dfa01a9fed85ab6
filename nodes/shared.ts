/**
 * Small pieces every node file needs the same way: finding its coolkit-server (and failing
 * visibly, never crashing, when there is none) and reading numeric properties.
 */
import { randomBytes } from 'node:crypto';
import type { Node, NodeAPI, NodeMessageInFlow } from 'node-red';
import type { CoolkitServerNode } from './types';
import { CoolkitError, ErrorCode } from '../src/protocol/errors';

/**
 * The node's coolkit-server, or undefined after showing the problem: an error in the log, a red
 * status, and an input handler that fails every message (so Catch nodes see it).
 * `type` is the node type, whose catalog holds `<type>.errors.missing-server`.
 */
export function findServer(RED: NodeAPI, node: Node, serverId: string, type: string): CoolkitServerNode | undefined {
  const server = RED.nodes.getNode(serverId) as CoolkitServerNode | null;
  if (server && typeof server.subscribe === 'function') return server;
  const text = RED._(`${type}.errors.missing-server`);
  node.error(text);
  node.status({ fill: 'red', shape: 'ring', text });
  node.on('input', (_msg: NodeMessageInFlow, _send: unknown, done: (err?: Error) => void) => done(new Error(text)));
  return undefined;
}

/** A number property within [min, max], or the fallback (editor values may arrive as strings). */
export function numberIn(value: unknown, fallback: number, min: number, max: number): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  return typeof n === 'number' && Number.isFinite(n) && n >= min && n <= max ? n : fallback;
}

/**
 * Message ids for a node that emits a message per device report. Node-RED gives a message
 * without `_msgid` a fresh random id (16 hex digits built from 8 random bytes, ~17 short strings
 * per message); at thousands of reports a second that shows in the profile. These ids have the
 * same form: a random prefix per node and a counter, unique within and across nodes.
 */
export function messageIds(): () => string {
  const prefix = randomBytes(4).toString('hex');
  let counter = 0;
  return () => {
    counter = (counter + 1) >>> 0;
    return prefix + counter.toString(16).padStart(8, '0');
  };
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** The typed-input types a per-message value of these nodes may have. */
export const VALUE_TYPES = ['str', 'msg', 'flow', 'global', 'env'] as const;
export type ValueType = (typeof VALUE_TYPES)[number];

const DEVICE_ID = /^[0-9a-f]{10}$/;

/**
 * A property the editor shows as a typed input (`<field>` and `<field>Type`): a plain string
 * (`str`, the default, so flows saved before the type existed behave as before), or a value read
 * from the message, flow or global context, or an environment variable.
 *
 * - `str`: the trimmed text as configured (may be empty: the node's own fallback applies).
 * - `env`: resolved once, when the node starts (`fixed`).
 * - `msg`/`flow`/`global`: evaluated for every message with `RED.util.evaluateNodeProperty`
 *   (callback form, so asynchronous context stores work).
 */
export class TypedValue {
  readonly type: ValueType;
  readonly value: string;
  /** An unknown `<field>Type` in the flow. */
  readonly typeError: string | undefined;
  /** For `env`: the resolved value (undefined when unset or empty). */
  readonly fixed: unknown;

  constructor(
    private readonly RED: NodeAPI,
    private readonly node: Node,
    value: unknown,
    type: unknown,
  ) {
    this.value = typeof value === 'string' ? value.trim() : value === undefined || value === null ? '' : String(value);
    const t = type === undefined || type === null || type === '' ? 'str' : String(type);
    this.type = (VALUE_TYPES as readonly string[]).includes(t) ? (t as ValueType) : 'str';
    this.typeError = this.type === t ? undefined : `unsupported value type "${t.slice(0, 20)}": use str, msg, flow, global or env`;
    let fixed: unknown;
    if (this.type === 'env') {
      try {
        fixed = RED.util.evaluateNodeProperty(this.value, 'env', node, {} as never);
      } catch {
        fixed = undefined;
      }
    }
    this.fixed = fixed === '' || fixed === null ? undefined : fixed;
  }

  logError(err: Error): void {
    this.node.error(err.message);
  }

  /** msg, flow or global: the value changes from message to message. */
  get dynamic(): boolean {
    return this.type === 'msg' || this.type === 'flow' || this.type === 'global';
  }

  /** Where the value comes from, for messages: `msg.target`, `flow.device`, `env DEVICE`. */
  get source(): string {
    return this.type === 'env' ? `env ${this.value}` : `${this.type}.${this.value}`;
  }

  /** The value for one message: the configured text (str), the env value, or the evaluated property. */
  evaluate(msg: NodeMessageInFlow | Record<string, unknown>): Promise<unknown> {
    if (this.typeError) return Promise.reject(new Error(this.typeError));
    if (this.type === 'str') return Promise.resolve(this.value);
    if (this.type === 'env') return Promise.resolve(this.fixed);
    return new Promise((resolve, reject) => {
      try {
        this.RED.util.evaluateNodeProperty(this.value, this.type, this.node, msg as never, (err: Error | null, result: unknown) => {
          if (err) reject(err);
          else resolve(result);
        });
      } catch (err) {
        reject(err as Error);
      }
    });
  }
}

/**
 * A device ID from a value a typed input produced: a string (or number) of 10 hexadecimal
 * characters, lower-cased. An empty or missing value, or anything else, is a CoolkitError 400
 * whose message names the source, from `<type>.errors.deviceid-empty` / `deviceid-invalid`.
 */
export function deviceIdFrom(RED: NodeAPI, nodeType: string, typed: TypedValue, value: unknown): string {
  if (value === undefined || value === null || (typeof value === 'string' && value.trim() === '')) {
    throw new CoolkitError(ErrorCode.BAD_REQUEST, RED._(`${nodeType}.errors.deviceid-empty`, { source: typed.source }));
  }
  const text = typeof value === 'string' ? value.trim().toLowerCase() : typeof value === 'number' && Number.isInteger(value) ? String(value) : undefined;
  if (text === undefined || !DEVICE_ID.test(text)) {
    let shown: string;
    try {
      shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 40)) : (JSON.stringify(value) ?? typeof value).slice(0, 40);
    } catch {
      shown = typeof value;
    }
    throw new CoolkitError(ErrorCode.BAD_REQUEST, RED._(`${nodeType}.errors.deviceid-invalid`, { source: typed.source, value: shown }));
  }
  return text;
}

/**
 * The device a message is for, from a typed Device property, keeping what the nodes did before
 * typed inputs:
 *   - `str` (and flows without `deviceidType`): the configured ID when set, else `fallback`
 *     (msg.deviceid), else '' (the caller reports "no device");
 *   - `env`, `msg`, `flow`, `global`: the evaluated value, which must be a device ID; an empty or
 *     invalid value rejects with a CoolkitError 400 naming the source.
 */
export function resolveDeviceId(RED: NodeAPI, nodeType: string, typed: TypedValue, msg: NodeMessageInFlow | Record<string, unknown>, fallback: () => string): Promise<string> {
  if (typed.typeError) return Promise.reject(new CoolkitError(ErrorCode.BAD_REQUEST, typed.typeError));
  if (typed.type === 'str') return Promise.resolve(typed.value.toLowerCase() || fallback());
  return typed.evaluate(msg).then(
    (value) => deviceIdFrom(RED, nodeType, typed, value),
    (err: Error) => {
      throw new CoolkitError(ErrorCode.BAD_REQUEST, RED._(`${nodeType}.errors.deviceid-eval`, { source: typed.source, error: err.message }));
    },
  );
}

/**
 * Like resolveDeviceId, but calls back at once (synchronously) for a plain string, so a node
 * configured as before typed inputs handles each message exactly as it did.
 */
export function withDeviceId(
  RED: NodeAPI,
  nodeType: string,
  typed: TypedValue,
  msg: NodeMessageInFlow | Record<string, unknown>,
  fallback: () => string,
  callback: (err: Error | null, deviceid: string) => void,
): void {
  if (typed.type === 'str' && !typed.typeError) {
    callback(null, typed.value.toLowerCase() || fallback());
    return;
  }
  resolveDeviceId(RED, nodeType, typed, msg, fallback)
    .then(
      (id) => callback(null, id),
      (err: Error) => callback(err, ''),
    )
    // The node's own handler failed: log it rather than leave an unhandled rejection.
    .catch((err: Error) => typed.logError(err));
}

/**
 * What is wrong with a typed Device property before any message arrives: an unknown type, or an
 * environment variable that is unset or not a device ID. Undefined when nothing is.
 */
export function deviceIdProblem(RED: NodeAPI, nodeType: string, typed: TypedValue): string | undefined {
  if (typed.typeError) return typed.typeError;
  if (typed.type !== 'env') return undefined;
  try {
    deviceIdFrom(RED, nodeType, typed, typed.fixed);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
