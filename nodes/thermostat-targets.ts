/**
 * `thermostat-targets`: a thermostat for Sonoff relays.
 *
 * - Control `device` (default): configures the thermostat that runs ON a TH10/TH16 (UIID 15):
 *   `{"mode":"heat","setpoint":28}` becomes `deviceType`, `mainSwitch` and `targets` exactly as
 *   the eWeLink app sends them (seed 000), and the message completes when the device acks.
 * - Control `local`: for relays without an on-board thermostat. The node switches the chosen
 *   device from another device's readings, with hysteresis and a minimum on and off time, and
 *   keeps its setting and the time of the last switch in `<userDir>/coolkit/thermostat-<node id>.json`
 *   so a restart neither forgets the setpoint nor makes the relay chatter.
 *
 * Either way the output carries the thermostat's state and readings whenever they change.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow, NodeStatus } from 'node-red';
import type { DeviceEvent } from '../src/cloud/server';
import type { DeviceEventKind } from '../src/cloud/router';
import { atomicWriteFile, loadJsonFile, SaveScheduler } from '../src/cloud/store';
import { payloadToParams } from '../src/protocol/commands';
import { capabilitiesOf } from '../src/protocol/capabilities';
import { CoolkitError, ErrorCode } from '../src/protocol/errors';
import type { Params } from '../src/protocol/types';
import {
  decide,
  deviceThermostatView,
  parseThermostatPayload,
  readingsOf,
  settingView,
  statusText,
  thermostatParams,
  validateSetting,
  viewChanged,
  type LocalControlMemory,
  type ThermostatSetting,
  type ThermostatView,
} from '../src/protocol/thermostat';
import type { ServerUser } from './types';
import { deviceIdProblem, findServer, TypedValue, withDeviceId } from './shared';

interface ThermostatConfig extends NodeDef {
  server: string;
  /** The TH (device control) or the relay to switch (local control). */
  deviceid: string;
  /**
   * Where the device ID comes from: str (default, flows saved before typed inputs), msg, flow,
   * global or env. Local control needs a fixed relay: str or env only.
   */
  deviceidType?: string;
  control?: 'device' | 'local';
  /** Local control: the device whose readings count (empty = the relay device itself). */
  sensor?: string;
  /** Local control: the outlet of a multi-channel relay (empty = the whole device). */
  outlet?: string | number;
  /** Local control: band width around a setpoint (°C or %). */
  hysteresis?: string | number;
  /** Local control: minimum on / off time, seconds. */
  minOn?: string | number;
  minOff?: string | number;
}

type Done = (err?: Error) => void;

interface Memory extends LocalControlMemory {
  version: 1;
  setting?: ThermostatSetting;
}

const MAX_DELAY = 2 ** 31 - 1;
/** A failed switch is tried again after this long (or at the next reading). */
const RETRY_MS = 30_000;
/** A relay report within this long after our own switch is our switch, not a hand on the button. */
const OWN_SWITCH_WINDOW_MS = 15_000;

function toNumber(v: unknown, fallback: number): number {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  return typeof n === 'number' && Number.isFinite(n) && n >= 0 ? n : fallback;
}

function checkMemory(value: unknown): string | undefined {
  const v = value as Partial<Memory> | null;
  if (!v || typeof v !== 'object' || v.version !== 1) return 'not a thermostat file (version 1)';
  if (v.setting !== undefined && (typeof v.setting !== 'object' || v.setting === null || typeof v.setting.mode !== 'string')) return 'setting is malformed';
  return undefined;
}

export = function register(RED: NodeAPI): void {
  function ThermostatTargets(this: Node, config: ThermostatConfig): void {
    RED.nodes.createNode(this, config);
    const node = this;
    const server = findServer(RED, node, config.server, 'thermostat-targets');
    if (!server) return;
    const cloud = server.cloud;
    const local = config.control === 'local';
    // Device: a plain ID (empty: msg.deviceid, device control only), msg/flow/global evaluated per
    // message (device control only), or env (resolved once, then like a plain ID).
    const device = new TypedValue(RED, node, config.deviceid, config.deviceidType);
    let problem = deviceIdProblem(RED, 'thermostat-targets', device);
    if (!problem && local && device.dynamic) problem = RED._('thermostat-targets.errors.local-needs-fixed', { source: device.source });
    const configured = problem || device.dynamic ? '' : device.type === 'env' ? String(device.fixed).trim().toLowerCase() : device.value.toLowerCase();
    const sensorId = local ? ((config.sensor ?? '').trim().toLowerCase() || configured) : configured;
    const outletText = String(config.outlet ?? '').trim();
    const outlet = outletText === '' ? undefined : Number(outletText);
    const hysteresis = toNumber(config.hysteresis, 0.5);
    const control = { minOnMs: toNumber(config.minOn, 60) * 1000, minOffMs: toNumber(config.minOff, 60) * 1000 };
    const userDir = (RED.settings as { userDir?: string }).userDir ?? path.join(os.homedir(), '.node-red');
    const memoryFile = path.join(userDir, 'coolkit', `thermostat-${node.id.replace(/[^0-9A-Za-z_-]/g, '_')}.json`);

    let serverHealthy = false;
    let serverStatus: NodeStatus = {};
    let lastError: NodeStatus | undefined = problem ? { fill: 'red', shape: 'ring', text: problem.slice(0, 80) } : undefined;
    /** The last view sent, per device. */
    const lastViews = new Map<string, ThermostatView>();
    /** The device the status shows. */
    let shown: string | undefined = configured || undefined;
    const unsubscribes: Array<() => void> = [];

    function send(deviceid: string, view: ThermostatView): void {
      if (!viewChanged(lastViews.get(deviceid), view)) return;
      lastViews.set(deviceid, view);
      node.send({ topic: deviceid, deviceid, payload: view } as unknown as NodeMessageInFlow);
    }

    function showStatus(): void {
      if (!serverHealthy) {
        node.status(serverStatus);
        return;
      }
      if (lastError) {
        node.status(lastError);
        return;
      }
      if (!shown) {
        node.status(serverStatus);
        return;
      }
      const view = local ? localView() : deviceView(shown);
      if (!view) {
        node.status({ fill: 'yellow', shape: 'ring', text: RED._('thermostat-targets.status.waiting', { deviceid: shown }) });
        return;
      }
      const relayOnline = cloud.device(shown)?.online === true;
      const sensorOnline = cloud.device(local ? sensorId : shown)?.online === true;
      let text = statusText(view);
      if (!relayOnline) text = RED._('thermostat-targets.status.offline', { text });
      else if (local && !sensorOnline) text = RED._('thermostat-targets.status.sensor-offline', { text });
      else if (local && waiting) text = RED._('thermostat-targets.status.waiting-min', { text, to: waiting.to });
      node.status({ fill: relayOnline && sensorOnline ? 'green' : 'grey', shape: view.relay ? 'dot' : 'ring', text });
    }

    function fail(err: Error, done: Done): void {
      lastError = { fill: 'red', shape: 'ring', text: err.message.slice(0, 80) };
      showStatus();
      done(err);
    }

    function succeeded(): void {
      lastError = undefined;
      showStatus();
    }

    const user: ServerUser = {
      id: node.id,
      onServerStatus(status, healthy) {
        serverHealthy = healthy;
        serverStatus = status;
        showStatus();
      },
    };

    // ---- device control -------------------------------------------------------------------

    function deviceView(deviceid: string): ThermostatView | undefined {
      const record = cloud.device(deviceid);
      return record ? deviceThermostatView(record.params) : undefined;
    }

    const watched = new Set<string>();
    function watchDevice(deviceid: string): void {
      if (watched.has(deviceid)) return;
      watched.add(deviceid);
      unsubscribes.push(server!.subscribe(deviceid, (_kind: DeviceEventKind, ev: DeviceEvent) => {
        send(deviceid, deviceThermostatView(ev.state));
        if (deviceid === shown) showStatus();
      }));
    }

    function deviceInput(msg: NodeMessageInFlow & { deviceid?: unknown }, done: Done): void {
      // A configured Device wins over msg.deviceid; an empty plain Device takes msg.deviceid.
      const fromMsg = () => (typeof msg.deviceid === 'string' ? msg.deviceid.trim().toLowerCase() : '');
      withDeviceId(RED, 'thermostat-targets', device, msg, fromMsg, (err, deviceid) => {
        if (err) fail(err, done);
        else if (!deviceid) fail(new CoolkitError(ErrorCode.BAD_REQUEST, RED._('thermostat-targets.errors.no-deviceid')), done);
        else deviceCommand(msg, done, deviceid);
      });
    }

    function deviceCommand(msg: NodeMessageInFlow, done: Done, deviceid: string): void {
      shown = deviceid;
      watchDevice(deviceid);
      let params: Params;
      try {
        const setting = parseThermostatPayload(msg.payload, 0);
        const record = cloud.device(deviceid);
        const caps = record ? capabilitiesOf(record.model, record.params) : undefined;
        if (caps && caps.family !== 'unknown' && !caps.thermostat) {
          throw new CoolkitError(ErrorCode.BAD_REQUEST, `device ${deviceid} has no on-board thermostat (it is not a TH10/TH16): set Control to "local" to switch it from another device's readings`);
        }
        validateSetting(setting, record?.params ?? {}, caps);
        params = thermostatParams(setting);
      } catch (err) {
        fail(err as Error, done);
        return;
      }
      node.status({ fill: 'yellow', shape: 'ring', text: RED._('thermostat-targets.status.sending', { deviceid }) });
      cloud.sendCommand(deviceid, params).then(
        () => {
          // The server keeps what the device acknowledged: the view already shows the new targets.
          const view = deviceView(deviceid);
          if (view) send(deviceid, view);
          succeeded();
          done();
        },
        (err: Error) => fail(err, done),
      );
    }

    // ---- local control --------------------------------------------------------------------

    let memory: Memory = { version: 1 };
    let timer: NodeJS.Timeout | undefined;
    let waiting: { to: 'on' | 'off'; until: number } | undefined;
    let inFlight = false;
    let ownSwitch: { to: 'on' | 'off'; at: number } | undefined;
    let lastRelay: boolean | null = null;
    let closed = false;

    function relayState(): boolean | null {
      const record = cloud.device(configured);
      if (!record) return null;
      const params = record.params;
      if (outlet !== undefined && Array.isArray(params.switches)) {
        const entry = (params.switches as Array<Record<string, unknown>>).find((s) => s && s.outlet === outlet);
        return entry?.switch === 'on' ? true : entry?.switch === 'off' ? false : null;
      }
      return params.switch === 'on' ? true : params.switch === 'off' ? false : null;
    }

    function sensorReadings(): { temperature: number | null; humidity: number | null; sensorType?: string } {
      const record = cloud.device(sensorId);
      if (!record || !record.online) return { temperature: null, humidity: null };
      return readingsOf(record.params);
    }

    function localView(): ThermostatView {
      return settingView(memory.setting, sensorReadings(), relayState());
    }

    // One write at a time, always of the latest memory: two overlapping writes could otherwise
    // land in the wrong order and leave the older state on disk.
    const saver = new SaveScheduler(
      () => atomicWriteFile(memoryFile, JSON.stringify(memory)),
      (err: Error) => node.error(RED._('thermostat-targets.errors.save', { file: memoryFile, error: err.message })),
      0,
    );
    function save(): void {
      saver.schedule();
    }

    function arm(ms: number): void {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        timer = undefined;
        evaluate();
      }, Math.min(Math.max(ms, 0), MAX_DELAY));
    }

    function switchRelay(to: 'on' | 'off'): Promise<void> {
      const record = cloud.device(configured);
      const caps = record ? capabilitiesOf(record.model, record.params) : undefined;
      const payload = outlet !== undefined ? { outlet, switch: to } : to;
      const params = payloadToParams(payload, record?.params ?? {}, caps);
      ownSwitch = { to, at: Date.now() };
      return cloud.sendCommand(configured, params).then(() => {
        memory.lastSwitchAt = Date.now();
        save();
      });
    }

    /** Run the decision function and act on it. */
    function evaluate(): void {
      if (closed || inFlight) return;
      const setting = memory.setting;
      const readings = sensorReadings();
      const reading = setting?.quantity ? readings[setting.quantity] : null;
      const decision = decide(control, setting, memory, reading, relayState(), Date.now());
      waiting = undefined;
      if (decision.action === 'wait') {
        waiting = { to: decision.to, until: decision.until };
        arm(decision.until - Date.now());
      } else if (decision.action === 'switch') {
        inFlight = true;
        switchRelay(decision.to).then(
          () => {
            inFlight = false;
            succeeded();
            evaluate();
          },
          (err: Error) => {
            inFlight = false;
            lastError = { fill: 'red', shape: 'ring', text: RED._('thermostat-targets.status.switch-failed', { to: decision.to, error: err.message.slice(0, 60) }) };
            showStatus();
            arm(RETRY_MS);
          },
        );
      }
      send(configured, localView());
      showStatus();
    }

    function onRelayEvent(): void {
      const relay = relayState();
      if (relay !== null && lastRelay !== null && relay !== lastRelay) {
        const mine = ownSwitch && Date.now() - ownSwitch.at < OWN_SWITCH_WINDOW_MS && (relay ? 'on' : 'off') === ownSwitch.to;
        if (!mine) {
          // Switched by hand (or by a device timer): that counts for the minimum on/off time too.
          memory.lastSwitchAt = Date.now();
          save();
        }
      }
      if (relay !== null) lastRelay = relay;
    }

    function localInput(msg: NodeMessageInFlow, done: Done): void {
      let setting: ThermostatSetting;
      try {
        setting = parseThermostatPayload(msg.payload, hysteresis);
        const sensor = cloud.device(sensorId);
        validateSetting(setting, sensor?.params ?? {}, sensor ? capabilitiesOf(sensor.model, sensor.params) : undefined);
      } catch (err) {
        fail(err as Error, done);
        return;
      }
      memory.setting = setting;
      save();
      // off switches the relay off; manual leaves it unless the payload says how.
      const direct = setting.mode === 'off' ? setting.switch ?? 'off' : setting.mode === 'manual' ? setting.switch : undefined;
      if (direct) {
        if (timer) clearTimeout(timer);
        timer = undefined;
        waiting = undefined;
        inFlight = true;
        switchRelay(direct).then(
          () => {
            inFlight = false;
            succeeded();
            send(configured, localView());
            done();
          },
          (err: Error) => {
            inFlight = false;
            send(configured, localView());
            fail(err, done);
          },
        );
        return;
      }
      succeeded();
      evaluate();
      done();
    }

    // ---- wiring ------------------------------------------------------------------------------

    if (problem) node.error(problem);
    if (local) {
      if (!configured) {
        const text = problem ?? RED._('thermostat-targets.errors.local-needs-device');
        if (!problem) node.error(text);
        node.status({ fill: 'red', shape: 'ring', text });
        node.on('input', (_msg: NodeMessageInFlow, _send: unknown, done: Done) => done(new CoolkitError(ErrorCode.BAD_REQUEST, text)));
        return;
      }
      const loaded = loadJsonFile<Memory>(memoryFile, checkMemory);
      if (loaded.corrupt) node.error(RED._('thermostat-targets.errors.corrupt', { file: memoryFile, reason: loaded.corrupt.reason, movedTo: loaded.corrupt.movedTo }));
      if (loaded.data) memory = loaded.data;
      lastRelay = relayState();
      unsubscribes.push(server.subscribe(configured, () => {
        onRelayEvent();
        evaluate();
      }));
      if (sensorId !== configured) unsubscribes.push(server.subscribe(sensorId, () => evaluate()));
      // After a restart the node carries on at once with what the devices last reported.
      setImmediate(() => {
        if (memory.setting && !closed) evaluate();
      });
    } else if (configured) {
      watchDevice(configured);
    }
    server.register(user);

    node.on('input', (msg: NodeMessageInFlow, _send: unknown, done: Done) => {
      if (local) localInput(msg, done);
      else deviceInput(msg, done);
    });

    node.on('close', (done: () => void) => {
      closed = true;
      if (timer) clearTimeout(timer);
      for (const u of unsubscribes) u();
      server.deregister(user);
      node.status({});
      saver.flush().then(() => {
        saver.cancel();
        done();
      });
    });
  }

  RED.nodes.registerType('thermostat-targets', ThermostatTargets as unknown as Parameters<NodeAPI['nodes']['registerType']>[1]);
};
