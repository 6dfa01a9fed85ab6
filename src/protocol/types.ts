/**
 * Wire types of the CoolKit (eWeLink v2) device protocol, as seen in the 2017 cloud capture
 * (`shared/seeds/001_*.txt`) and the CoolKit docs. Only fields the server relies on are typed
 * strictly; devices add others freely and those are preserved.
 */

/** Device parameters. Transparent to the cloud: it stores and forwards them. */
export type Params = Record<string, unknown>;

/** Body of `POST /dispatch/device`. */
export interface DispatchRequest {
  accept?: string;
  version?: number;
  ts?: number;
  deviceid: string;
  apikey: string;
  model?: string;
  romVersion?: string;
  [extra: string]: unknown;
}

interface DeviceMessageBase {
  userAgent?: string;
  apikey: string;
  deviceid: string;
  [extra: string]: unknown;
}

export interface RegisterMessage extends DeviceMessageBase {
  action: 'register';
  version?: number;
  romVersion?: string;
  model?: string;
  ts?: number;
}

export interface DateMessage extends DeviceMessageBase {
  action: 'date';
}

export interface UpdateMessage extends DeviceMessageBase {
  action: 'update';
  params: Params;
}

export interface QueryMessage extends DeviceMessageBase {
  action: 'query';
  params: string[];
}

/** A device's answer to a server-pushed command: `error` + `sequence`, no `action`. */
export interface AckMessage extends DeviceMessageBase {
  error: number;
  sequence: string;
}

export type DeviceMessage = RegisterMessage | DateMessage | UpdateMessage | QueryMessage | AckMessage;

/** The result of classifying one inbound text frame from a device. */
export type ParsedDeviceFrame =
  | { kind: 'ping' }
  | { kind: 'register'; msg: RegisterMessage }
  | { kind: 'date'; msg: DateMessage }
  | { kind: 'update'; msg: UpdateMessage }
  | { kind: 'query'; msg: QueryMessage }
  | { kind: 'ack'; msg: AckMessage }
  | { kind: 'invalid'; code: number; reason: string; deviceid?: string };

/** What a device knows about itself, as the registry keeps it. */
export interface DeviceInfo {
  deviceid: string;
  model: string;
  romVersion: string;
  online: boolean;
}
