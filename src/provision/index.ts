/** Public surface of the pairing tool (library side; the coolkit-pair CLI lives in ./cli). */
export {
  pair,
  planPair,
  validatePairOptions,
  getDeviceInfo,
  postApSettings,
  buildApBody,
  registerDevice,
  registerDeviceWithRetry,
  obtainAdminToken,
  findServerNode,
  parseDeviceUrl,
  serverNameProblem,
  wifiProblem,
  onPairingNetwork,
  PairError,
  AdminApiError,
  APP_HEADERS,
  AP_BODY_VERSION,
  AP_WIFI_PASSWORD,
  DEFAULT_DEVICE_URL,
  DEFAULT_SERVER_PORT,
  DEFAULT_TIMEOUT_MS,
  DEFAULT_WAIT_MS,
  RETRY_INTERVAL_MS,
} from './pair';
export type {
  PairOptions,
  PairResult,
  PairPlan,
  PlannedRequest,
  PairErrorCode,
  PairStep,
  DeviceInfo,
  ApSettings,
  ApBody,
  AdminOptions,
  AdminFailureKind,
  RegisteredDevice,
  RetryOptions,
  LogLevel,
} from './pair';
export { addPendingDevice, readPendingDevices, writeFileAtomic, defaultImportFile, ImportFileError } from './import-file';
export type { PendingDevice, AddPendingResult } from './import-file';
export { httpRequest, HttpFailure } from './http';
export type { HttpFailureKind, HttpRequest, HttpResponse } from './http';
