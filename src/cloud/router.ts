/**
 * Routes device events to the flow nodes that want them: a Map from deviceid to listeners plus
 * a set for "all devices", so each event costs one lookup whatever the number of devices.
 */
import type { DeviceEvent } from './server';

export type DeviceEventKind = 'update' | 'online' | 'offline' | 'trigger';
export type DeviceListener = (kind: DeviceEventKind, ev: DeviceEvent) => void;

export class DeviceEventRouter {
  private readonly byDevice = new Map<string, Set<DeviceListener>>();
  private readonly everyDevice = new Set<DeviceListener>();

  /** Listen to one device (`deviceid`) or to all (`''`). Returns the unsubscribe function. */
  subscribe(deviceid: string, listener: DeviceListener): () => void {
    if (!deviceid) {
      this.everyDevice.add(listener);
      return () => this.everyDevice.delete(listener);
    }
    let set = this.byDevice.get(deviceid);
    if (!set) {
      set = new Set();
      this.byDevice.set(deviceid, set);
    }
    set.add(listener);
    return () => {
      const current = this.byDevice.get(deviceid);
      if (!current) return;
      current.delete(listener);
      if (current.size === 0) this.byDevice.delete(deviceid);
    };
  }

  get size(): number {
    let n = this.everyDevice.size;
    for (const set of this.byDevice.values()) n += set.size;
    return n;
  }

  /** Deliver an event; a listener that throws does not stop the others. */
  dispatch(kind: DeviceEventKind, ev: DeviceEvent, onError: (err: Error) => void): void {
    const specific = this.byDevice.get(ev.deviceid);
    if (specific) for (const listener of specific) safeCall(listener, kind, ev, onError);
    for (const listener of this.everyDevice) safeCall(listener, kind, ev, onError);
  }
}

function safeCall(listener: DeviceListener, kind: DeviceEventKind, ev: DeviceEvent, onError: (err: Error) => void): void {
  try {
    listener(kind, ev);
  } catch (err) {
    onError(err as Error);
  }
}
