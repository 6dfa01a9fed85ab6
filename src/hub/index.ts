/**
 * Hub APIs: WebSocket APIs that expose every device of the local cloud to other smart-home
 * software. `session` is the shared connection layer (auth before the upgrade, Origin
 * allow-list, limits, backpressure, heartbeat, serving on a port or on Node-RED's server);
 * `zhiting` is the Zhiting SmartAssistant v1 API on top of it.
 */
export * as session from './session';
export * as zhiting from './zhiting';
export * as telemetry from './telemetry';
export { HubGateway, OwnServer, UpgradeRouter, tokenAuthenticator, parseOrigins, joinPath } from './session';
export { ZhitingHub, noFirmware } from './zhiting';
export type { FirmwareProvider, FirmwareInfo, DeviceSource, VirtualSetRequest } from './zhiting';
