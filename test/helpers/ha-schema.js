'use strict';
// JSON schemas for Home Assistant MQTT discovery payloads, written from Home Assistant's documented
// options (https://www.home-assistant.io/integrations/switch.mqtt/, sensor.mqtt/, climate.mqtt/,
// and the shared availability/device/origin blocks of https://www.home-assistant.io/integrations/mqtt/).
// Only documented keys are allowed (no abbreviations: we publish full names), required keys are
// required, and every value has the documented type.
const Ajv = require('ajv');

const template = { type: 'string', minLength: 1 };
const topic = { type: 'string', minLength: 1, not: { pattern: '[#+]' } };
const availability = {
  type: 'array',
  minItems: 1,
  items: {
    type: 'object',
    additionalProperties: false,
    required: ['topic'],
    properties: { topic, payload_available: { type: 'string' }, payload_not_available: { type: 'string' }, value_template: template },
  },
};
const device = {
  type: 'object',
  additionalProperties: false,
  anyOf: [{ required: ['identifiers'] }, { required: ['connections'] }],
  properties: {
    identifiers: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, minItems: 1 }] },
    connections: { type: 'array', items: { type: 'array', items: { type: 'string' }, minItems: 2, maxItems: 2 } },
    name: { type: 'string' }, manufacturer: { type: 'string' }, model: { type: 'string' }, model_id: { type: 'string' },
    sw_version: { type: 'string' }, hw_version: { type: 'string' }, serial_number: { type: 'string' },
    suggested_area: { type: 'string' }, configuration_url: { type: 'string' }, via_device: { type: 'string' },
  },
};
const origin = {
  type: 'object', additionalProperties: false, required: ['name'],
  properties: { name: { type: 'string' }, sw_version: { type: 'string' }, support_url: { type: 'string' } },
};
const common = {
  availability, availability_mode: { enum: ['all', 'any', 'latest'] }, availability_template: template, availability_topic: topic,
  payload_available: { type: 'string' }, payload_not_available: { type: 'string' },
  device, origin, name: { type: ['string', 'null'] }, unique_id: { type: 'string', minLength: 1 }, object_id: { type: 'string' },
  default_entity_id: { type: 'string' }, icon: { type: 'string' }, entity_category: { enum: ['config', 'diagnostic'] },
  enabled_by_default: { type: 'boolean' }, encoding: { type: 'string' }, qos: { enum: [0, 1, 2] },
  json_attributes_topic: topic, json_attributes_template: template, entity_picture: { type: 'string' },
};

const schemas = {
  switch: {
    type: 'object', additionalProperties: false, required: ['command_topic', 'unique_id', 'device'],
    properties: {
      ...common,
      command_topic: topic, command_template: template, state_topic: topic, value_template: template,
      state_on: { type: 'string' }, state_off: { type: 'string' }, payload_on: { type: 'string' }, payload_off: { type: 'string' },
      optimistic: { type: 'boolean' }, retain: { type: 'boolean' }, device_class: { enum: ['outlet', 'switch'] },
    },
  },
  sensor: {
    type: 'object', additionalProperties: false, required: ['state_topic', 'unique_id', 'device'],
    properties: {
      ...common,
      state_topic: topic, value_template: template, unit_of_measurement: { type: 'string' },
      device_class: { enum: ['temperature', 'humidity', 'power', 'voltage', 'current', 'signal_strength', 'energy'] },
      state_class: { enum: ['measurement', 'total', 'total_increasing', 'measurement_angle'] },
      expire_after: { type: 'integer', minimum: 0 }, force_update: { type: 'boolean' },
      last_reset_value_template: template, suggested_display_precision: { type: 'integer', minimum: 0 }, options: { type: 'array' },
    },
  },
  climate: {
    type: 'object', additionalProperties: false, required: ['unique_id', 'device'],
    properties: {
      ...common,
      action_template: template, action_topic: topic,
      current_humidity_template: template, current_humidity_topic: topic,
      current_temperature_template: template, current_temperature_topic: topic,
      fan_modes: { type: 'array', items: { type: 'string' } },
      max_temp: { type: 'number' }, min_temp: { type: 'number' }, max_humidity: { type: 'number' }, min_humidity: { type: 'number' },
      mode_command_template: template, mode_command_topic: topic, mode_state_template: template, mode_state_topic: topic,
      modes: { type: 'array', minItems: 1, uniqueItems: true, items: { enum: ['auto', 'off', 'cool', 'heat', 'dry', 'fan_only'] } },
      optimistic: { type: 'boolean' }, payload_off: { type: 'string' }, payload_on: { type: 'string' },
      power_command_template: template, power_command_topic: topic, precision: { enum: [0.1, 0.5, 1.0] }, retain: { type: 'boolean' },
      temperature_command_template: template, temperature_command_topic: topic,
      temperature_high_command_template: template, temperature_high_command_topic: topic, temperature_high_state_template: template, temperature_high_state_topic: topic,
      temperature_low_command_template: template, temperature_low_command_topic: topic, temperature_low_state_template: template, temperature_low_state_topic: topic,
      temperature_state_template: template, temperature_state_topic: topic, temperature_unit: { enum: ['C', 'F'] },
      temp_step: { type: 'number', exclusiveMinimum: 0 }, initial: { type: 'number' },
      target_humidity_command_template: template, target_humidity_command_topic: topic, target_humidity_state_template: template, target_humidity_state_topic: topic,
    },
    // A command topic without its state topic (or the reverse) is allowed by HA, but a climate
    // entity that can be commanded needs the mode list.
    dependentRequired: { mode_command_topic: ['modes'] },
  },
};

const ajv = new Ajv({ allErrors: true, strict: false });
const validators = Object.fromEntries(Object.entries(schemas).map(([k, s]) => [k, ajv.compile(s)]));

/** Topic must be `<prefix>/<component>/[<node_id>/]<object_id>/config` with ids of [a-zA-Z0-9_-]. */
const TOPIC = /^(.+)\/(switch|sensor|climate)\/(?:([a-zA-Z0-9_-]+)\/)?([a-zA-Z0-9_-]+)\/config$/;

/** Problems with one discovery message (topic string, payload object); empty when valid. */
function validateDiscovery(topicName, config) {
  const m = TOPIC.exec(topicName);
  if (!m) return [`topic ${topicName} is not <prefix>/<component>/[<node_id>/]<object_id>/config`];
  const validate = validators[m[2]];
  if (validate(config)) return [];
  return validate.errors.map((e) => `${m[2]} ${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`);
}

module.exports = { schemas, validateDiscovery };
