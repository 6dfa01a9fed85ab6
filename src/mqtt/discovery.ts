/**
 * Home Assistant MQTT discovery (pure): the retained config messages that make Home Assistant
 * create entities for a device, from its capabilities (src/protocol/capabilities.ts):
 *
 * - `switch` per relay channel (1-channel: `switch`; 2..4 channels: `outlet_<n>`)
 * - `sensor` for temperature, humidity (TH10/TH16), power, voltage, current (POW, S31), rssi
 * - `climate` for the TH10/TH16 on-device thermostat (modes off/heat/cool)
 *
 * Topics: `<discoveryPrefix>/<component>/coolkit_<deviceid>/<object>/config`. Every entity reads
 * the device's retained `state` topic with a template, is available while its `online` topic
 * says so, and commands go to the device's `set` topic (see ./topics and ./commands).
 */
import type { Capabilities } from '../protocol/capabilities';
import type { Topics } from './topics';

export type HaComponent = 'switch' | 'sensor' | 'climate';

export interface DiscoveryDevice {
  deviceid: string;
  model: string;
  romVersion: string;
  name?: string;
  capabilities: Capabilities;
  /** Thermostat temperature range for the climate entity (the probe's), default 0..50 °C. */
  temperatureRange?: readonly [number, number];
}

export interface DiscoveryMessage {
  topic: string;
  /** The config object (JSON-encode to publish, retained). */
  config: Record<string, unknown>;
  component: HaComponent;
  objectId: string;
}

export const DEFAULT_DISCOVERY_PREFIX = 'homeassistant';

export interface DiscoveryOptions {
  discoveryPrefix?: string;
  /** Origin info HA shows for the integration. */
  swVersion?: string;
}

const SENSORS: ReadonlyArray<{ key: 'temperature' | 'humidity' | 'power' | 'voltage' | 'current'; cap: 'temperature' | 'humidity' | 'metering'; unit: string; deviceClass: string; name: string }> = [
  { key: 'temperature', cap: 'temperature', unit: '°C', deviceClass: 'temperature', name: 'Temperature' },
  { key: 'humidity', cap: 'humidity', unit: '%', deviceClass: 'humidity', name: 'Humidity' },
  { key: 'power', cap: 'metering', unit: 'W', deviceClass: 'power', name: 'Power' },
  { key: 'voltage', cap: 'metering', unit: 'V', deviceClass: 'voltage', name: 'Voltage' },
  { key: 'current', cap: 'metering', unit: 'A', deviceClass: 'current', name: 'Current' },
];

/** A discovery prefix usable as topic levels; else the default. */
export function normaliseDiscoveryPrefix(prefix: string | undefined): string {
  const p = (prefix ?? '').trim().replace(/^\/+|\/+$/g, '');
  if (!p || /[#+\u0000]/.test(p) || p.split('/').some((l) => l === '')) return DEFAULT_DISCOVERY_PREFIX;
  return p;
}

/** Every discovery config for a device (empty for devices with nothing HA can show, e.g. an RF bridge). */
export function discoveryMessages(device: DiscoveryDevice, topics: Topics, options: DiscoveryOptions = {}): DiscoveryMessage[] {
  const prefix = normaliseDiscoveryPrefix(options.discoveryPrefix);
  const id = device.deviceid;
  const caps = device.capabilities;
  const nodeId = `coolkit_${id}`;
  const stateTopic = topics.state(id);
  const setTopic = topics.set(id);
  const common = {
    availability: [{ topic: topics.online(id), value_template: "{{ 'online' if value_json.online else 'offline' }}", payload_available: 'online', payload_not_available: 'offline' }],
    device: {
      identifiers: [nodeId],
      name: device.name || `Sonoff ${id}`,
      manufacturer: 'ITEAD',
      model: device.model || 'Sonoff',
      sw_version: device.romVersion || undefined,
    },
    origin: { name: 'node-red-contrib-coolkit', sw_version: options.swVersion, support_url: 'https://github.com/node-red-contrib-coolkit/node-red-contrib-coolkit' },
  };
  const out: DiscoveryMessage[] = [];
  const add = (component: HaComponent, objectId: string, config: Record<string, unknown>) => {
    out.push({ component, objectId, topic: `${prefix}/${component}/${nodeId}/${objectId}/config`, config: dropUndefined({ ...config, unique_id: `${nodeId}_${objectId}`, ...common }) });
  };

  if (caps.channels === 1 && caps.family !== 'multi') {
    add('switch', 'switch', {
      name: 'Switch',
      state_topic: stateTopic,
      value_template: '{{ value_json.params.switch }}',
      state_on: 'on',
      state_off: 'off',
      command_topic: setTopic,
      payload_on: 'on',
      payload_off: 'off',
      device_class: 'switch',
      qos: 1,
    });
  } else if (caps.channels > 1) {
    for (let outlet = 0; outlet < caps.channels; outlet++) {
      add('switch', `outlet_${outlet + 1}`, {
        name: `Outlet ${outlet + 1}`,
        state_topic: stateTopic,
        value_template: `{{ 'on' if value_json.normalized.outlets[${outlet}] else 'off' }}`,
        state_on: 'on',
        state_off: 'off',
        command_topic: setTopic,
        payload_on: JSON.stringify({ outlet, switch: 'on' }),
        payload_off: JSON.stringify({ outlet, switch: 'off' }),
        device_class: 'outlet',
        qos: 1,
      });
    }
  }
  for (const s of SENSORS) {
    if (!caps[s.cap]) continue;
    add('sensor', s.key, {
      name: s.name,
      state_topic: stateTopic,
      value_template: `{{ value_json.normalized.${s.key} }}`,
      unit_of_measurement: s.unit,
      device_class: s.deviceClass,
      state_class: 'measurement',
    });
  }
  if (caps.family !== 'unknown') {
    add('sensor', 'rssi', {
      name: 'Signal strength',
      state_topic: stateTopic,
      value_template: '{{ value_json.normalized.rssi }}',
      unit_of_measurement: 'dBm',
      device_class: 'signal_strength',
      state_class: 'measurement',
      entity_category: 'diagnostic',
      enabled_by_default: false,
    });
  }
  if (caps.thermostat) {
    const [min, max] = device.temperatureRange ?? [0, 50];
    add('climate', 'thermostat', {
      name: 'Thermostat',
      modes: ['off', 'heat', 'cool'],
      mode_state_topic: stateTopic,
      mode_state_template: "{{ value_json.thermostat.mode if value_json.thermostat is defined else 'off' }}",
      mode_command_topic: setTopic,
      mode_command_template: '{"thermostat":{"mode":"{{ value }}"}}',
      temperature_state_topic: stateTopic,
      temperature_state_template: '{{ value_json.thermostat.setpoint if value_json.thermostat is defined else None }}',
      temperature_command_topic: setTopic,
      temperature_command_template: '{"thermostat":{"setpoint":{{ value }}}}',
      current_temperature_topic: stateTopic,
      current_temperature_template: '{{ value_json.normalized.temperature }}',
      current_humidity_topic: caps.humidity ? stateTopic : undefined,
      current_humidity_template: caps.humidity ? '{{ value_json.normalized.humidity }}' : undefined,
      action_topic: stateTopic,
      action_template: "{% set t = value_json.thermostat | default({}) %}{% if t.mode | default('off') == 'off' %}off{% elif value_json.params.switch == 'on' %}{{ 'heating' if t.mode == 'heat' else 'cooling' }}{% else %}idle{% endif %}",
      min_temp: min,
      max_temp: max,
      temp_step: 0.5,
      precision: 0.1,
      temperature_unit: 'C',
      qos: 1,
    });
  }
  return out;
}

/** Empty retained payloads remove the entities (a forgotten device). */
export function discoveryRemovals(device: DiscoveryDevice, topics: Topics, options: DiscoveryOptions = {}): string[] {
  return discoveryMessages(device, topics, options).map((m) => m.topic);
}

function dropUndefined<T extends Record<string, unknown>>(obj: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v === undefined) continue;
    out[k] = v !== null && typeof v === 'object' && !Array.isArray(v) ? dropUndefined(v as Record<string, unknown>) : v;
  }
  return out as T;
}
