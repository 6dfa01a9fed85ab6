/** Public surface of the device simulator (library side; the CLI lives in ./cli). */
export {
  SimulatedDevice,
  SimDeviceError,
  backoffDelay,
  pingIntervalFromReply,
  DEFAULT_MODEL,
  DEFAULT_ROM_VERSION,
  DEFAULT_RECONNECT,
} from './device';
export type { SimDeviceOptions, SimDeviceEvents, CommandVerdict, ReconnectPolicy, JsonObject, Params } from './device';
export { postDispatch, parseDispatchReply, dispatchUrl, DispatchError } from './dispatch';
export type { DispatchBody, DispatchTarget, DispatchOptions } from './dispatch';
export { deviceIdFor, factoryApikeyFor, staMacFor, isDeviceId, maxDevicesForPrefix, DEVICE_ID_LENGTH } from './ids';
export { mergeParams, mergeByOutlet } from './state';
export {
  PROFILES,
  DEFAULT_PROFILE,
  profileNames,
  resolveProfile,
  initialParams,
  encodeHundredDaysKwh,
  decodeHundredDaysKwh,
  hundredDaysKwhFor,
  seededRandom,
} from './models';
export type { DeviceProfile, ProfileKind } from './models';
export { FleetTicker, BehaviourScheduler } from './scheduler';
export { METERING_THRESHOLDS, validateCommonParams } from './behaviour';
export type { RfTransmission, SensorReading } from './behaviour';
export { downloadImage, parseUpgrade, pickImage, sha256Hex, DownloadError, DEFAULT_REBOOT_DELAY_MS, ESP_IMAGE_MAGIC } from './ota';
export type { SimOtaOptions, SimOtaEvent, SimOtaPhase, OtaFailure, OtaImage, BinListEntry } from './ota';
export { SimulatedAccessPoint, apBodyProblem, appHeaderProblem, type SimAccessPointOptions, type ApProvisioning, type ApRequestRecord, type ApPath } from './ap';
export { attachTimerRunner, FakeClock } from './timers';
