/**
 * `sonoff-device-out`: sends `msg.payload` to a device and completes when the device acks
 * (`done()`), or fails with a coded error (`done(err)`: 503 offline, 504 timeout, 400 bad
 * payload, or the device's own code), so Complete and Catch nodes work.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow, NodeStatus } from 'node-red';
import { payloadToParams, summariseParams } from '../src/protocol/commands';
import { capabilitiesOf } from '../src/protocol/capabilities';
import { CoolkitError, ErrorCode } from '../src/protocol/errors';
import type { ServerUser } from './types';
import { deviceIdProblem, findServer, TypedValue, withDeviceId } from './shared';

interface DeviceOutConfig extends NodeDef {
  server: string;
  deviceid: string;
  /** Where the device ID comes from: str (default, flows saved before typed inputs), msg, flow, global or env. */
  deviceidType?: string;
  /** When the device is offline: `fail` at once (503, default) or `queue` until it is back. */
  offline?: 'fail' | 'queue';
  /** How long a queued command may wait, in seconds (default 600). */
  queueExpiry?: number | string;
}

type Done = (err?: Error) => void;

export = function register(RED: NodeAPI): void {
  function SonoffDeviceOut(this: Node, config: DeviceOutConfig): void {
    RED.nodes.createNode(this, config);
    const node = this;
    const found = findServer(RED, node, config.server, 'sonoff-device-out');
    if (!found) return;
    const server = found;
    // Device: a plain ID (empty: msg.deviceid), or msg/flow/global evaluated per message, or env.
    const device = new TypedValue(RED, node, config.deviceid, config.deviceidType);
    const offline = config.offline === 'queue' ? 'queue' : 'fail';
    const expirySeconds = Number(config.queueExpiry);
    const queueExpiryMs = (Number.isFinite(expirySeconds) && expirySeconds > 0 ? expirySeconds : 600) * 1000;
    /** Once a command ran, its result stays on the status until the server itself changes state. */
    let lastResult: NodeStatus | undefined;

    const user: ServerUser = {
      id: node.id,
      onServerStatus(status, healthy) {
        node.status(healthy && lastResult ? lastResult : status);
      },
    };
    server.register(user);

    function show(status: NodeStatus): void {
      lastResult = status;
      node.status(status);
    }

    const problem = deviceIdProblem(RED, 'sonoff-device-out', device);
    if (problem) {
      node.error(problem);
      show({ fill: 'red', shape: 'ring', text: problem.slice(0, 60) });
    }

    node.on('input', (msg: NodeMessageInFlow & { deviceid?: unknown }, _send: unknown, done: Done) => {
      // {"pairing": minutes} opens (0 closes) the server's pairing window: no device involved.
      const payload = msg.payload as Record<string, unknown> | undefined;
      if (payload && typeof payload === 'object' && !Array.isArray(payload) && Object.keys(payload).length === 1 && 'pairing' in payload) {
        const minutes = Number(payload.pairing);
        if (!Number.isFinite(minutes) || minutes < 0 || minutes > 1440) {
          done(new CoolkitError(ErrorCode.BAD_REQUEST, 'pairing must be a number of minutes, 0..1440'));
          return;
        }
        const until = server.cloud.openPairing(minutes);
        show({ fill: 'blue', shape: 'dot', text: RED._('sonoff-device-out.status.pairing', { until: until ? new Date(until).toLocaleTimeString() : '-' }) });
        done();
        return;
      }
      // A configured Device wins over msg.deviceid; an empty plain Device takes msg.deviceid.
      const fromMsg = () => (typeof msg.deviceid === 'string' ? msg.deviceid.trim().toLowerCase() : '');
      withDeviceId(RED, 'sonoff-device-out', device, msg, fromMsg, (resolveErr, deviceid) => {
        if (resolveErr) {
          show({ fill: 'red', shape: 'ring', text: RED._('sonoff-device-out.status.failed', { error: resolveErr.message.slice(0, 60) }) });
          done(resolveErr);
          return;
        }
        if (!deviceid) {
          const err = new CoolkitError(ErrorCode.BAD_REQUEST, RED._('sonoff-device-out.errors.no-deviceid'));
          show({ fill: 'red', shape: 'ring', text: err.message });
          done(err);
          return;
        }
        sendTo(deviceid, msg, done);
      });
    });

    function sendTo(deviceid: string, msg: NodeMessageInFlow, done: Done): void {
      let params;
      try {
        const record = server.cloud.device(deviceid);
        params = payloadToParams(msg.payload, record?.params ?? {}, capabilitiesOf(record?.model, record?.params ?? {}));
      } catch (err) {
        show({ fill: 'red', shape: 'ring', text: RED._('sonoff-device-out.status.failed', { error: (err as Error).message.slice(0, 60) }) });
        done(err as Error);
        return;
      }
      node.status({ fill: 'yellow', shape: 'ring', text: RED._('sonoff-device-out.status.sending', { deviceid }) });
      const queued = offline === 'queue' && server.cloud.device(deviceid)?.online === false;
      if (queued) node.status({ fill: 'yellow', shape: 'ring', text: RED._('sonoff-device-out.status.queued', { deviceid }) });
      server.cloud.sendCommand(deviceid, params, { coalesce: true, offline, queueExpiryMs }).then(
        (result) => {
          show({ fill: 'green', shape: 'dot', text: RED._('sonoff-device-out.status.acked', { summary: summariseParams(params), ms: result.ms }) });
          done();
        },
        (err: Error) => {
          show({ fill: 'red', shape: 'ring', text: RED._('sonoff-device-out.status.failed', { error: err.message.slice(0, 60) }) });
          done(err);
        },
      );
    }

    node.on('close', (done: () => void) => {
      server.deregister(user);
      node.status({});
      done();
    });
  }

  RED.nodes.registerType('sonoff-device-out', SonoffDeviceOut as unknown as Parameters<NodeAPI['nodes']['registerType']>[1]);
};
