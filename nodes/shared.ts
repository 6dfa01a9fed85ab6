/**
 * Small pieces every node file needs the same way: finding its coolkit-server (and failing
 * visibly, never crashing, when there is none) and reading numeric properties.
 */
import type { Node, NodeAPI, NodeMessageInFlow } from 'node-red';
import type { CoolkitServerNode } from './types';

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

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
