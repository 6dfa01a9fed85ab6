/**
 * `sonoff-device-in`: one message per device report (and per online/offline change) for one
 * device or all devices of a `coolkit-server`.
 */
import type { Node, NodeAPI, NodeDef, NodeStatus } from 'node-red';
import type { DeviceEvent } from '../src/cloud/server';
import type { DeviceEventKind } from '../src/cloud/router';
import type { ServerUser } from './types';
import { findServer, messageIds } from './shared';
import { cloneJson } from '../src/protocol/state';

interface DeviceInConfig extends NodeDef {
  server: string;
  deviceid: string;
  events: 'all' | 'update' | 'status';
  /** Keep real-time power readings coming (POW/S31 need `uiActive` every ~50 s). Default true. */
  liveMetering?: boolean | string;
}

export = function register(RED: NodeAPI): void {
  function SonoffDeviceIn(this: Node, config: DeviceInConfig): void {
    RED.nodes.createNode(this, config);
    const node = this;
    const server = findServer(RED, node, config.server, 'sonoff-device-in');
    if (!server) return;
    const deviceid = (config.deviceid ?? '').trim().toLowerCase();
    const events = config.events === 'update' || config.events === 'status' ? config.events : 'all';
    let serverHealthy = false;
    const nextId = messageIds();

    function deviceStatus(): NodeStatus {
      const record = server!.cloud.device(deviceid);
      if (!record) return { fill: 'yellow', shape: 'ring', text: RED._('sonoff-device-in.status.waiting', { deviceid }) };
      return record.online
        ? { fill: 'green', shape: 'dot', text: RED._('sonoff-device-in.status.online') }
        : { fill: 'red', shape: 'ring', text: RED._('sonoff-device-in.status.offline') };
    }

    const user: ServerUser = {
      id: node.id,
      onServerStatus(status, healthy) {
        serverHealthy = healthy;
        node.status(deviceid && healthy ? deviceStatus() : status);
      },
    };

    const unsubscribe = server.subscribe(deviceid, (kind: DeviceEventKind, ev: DeviceEvent) => {
      if (deviceid && kind !== 'update' && serverHealthy) node.status(deviceStatus());
      const isStatus = kind === 'online' || kind === 'offline';
      if (events === 'update' && isStatus) return;
      if (events === 'status' && !isStatus) return;
      const msg: Record<string, unknown> = {
        topic: ev.deviceid,
        // copies, so a flow that changes its message changes neither the stored state nor
        // the message another node got for the same report
        payload: cloneJson(ev.params),
        state: cloneJson(ev.state),
        normalized: cloneJson(ev.normalized),
        event: kind,
        device: { ...ev.device },
      };
      if (ev.channel !== undefined) msg.channel = ev.channel;
      // last, where Node-RED itself puts it: the debug sidebar previews the first properties
      msg._msgid = nextId();
      node.send(msg);
    });
    server.register(user);
    const live = config.liveMetering !== false && config.liveMetering !== 'false';
    const stopMetering = live && events !== 'status' ? server.cloud.watchMetering(deviceid) : undefined;

    node.on('close', (done: () => void) => {
      unsubscribe();
      stopMetering?.();
      server.deregister(user);
      node.status({});
      done();
    });
  }

  RED.nodes.registerType('sonoff-device-in', SonoffDeviceIn as unknown as Parameters<NodeAPI['nodes']['registerType']>[1]);
};
