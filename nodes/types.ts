/**
 * Types shared by the node files: what a flow node sees of its `coolkit-server` config node.
 */
import type { Node, NodeStatus } from 'node-red';
import type { CoolkitCloud } from '../src/cloud/server';
import type { DeviceListener } from '../src/cloud/router';
import type { FirmwareProvider } from '../src/hub/zhiting/firmware';

/** A flow node that uses the server: it is told the server's status whenever it changes. */
export interface ServerUser {
  id: string;
  onServerStatus(status: NodeStatus, healthy: boolean): void;
}

export interface CoolkitServerNode extends Node {
  cloud: CoolkitCloud;
  /** Register a user node; it gets the current status at once. */
  register(user: ServerUser): void;
  deregister(user: ServerUser): void;
  /** Listen to one device (or all with ''), returns the unsubscribe function. */
  subscribe(deviceid: string, listener: DeviceListener): () => void;
  /** Set by a `sonoff-ota` node: its firmware store, for the hub APIs' update services. */
  firmware?: FirmwareProvider;
}
