/**
 * Error codes used on the wire and reported to flows (CoolKit `error` field).
 * See coolkit-protocol.md §3.18.
 */
export const ErrorCode = {
  OK: 0,
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  AUTH_FAILED: 406,
  PAYLOAD_TOO_LARGE: 413,
  TOO_MANY_REQUESTS: 429,
  SERVER_ERROR: 500,
  OFFLINE: 503,
  TIMEOUT: 504,
} as const;

/** An error with a CoolKit error code, so flows can branch on `err.code`. */
export class CoolkitError extends Error {
  readonly code: number;
  readonly deviceid?: string;

  constructor(code: number, message: string, deviceid?: string) {
    super(message);
    this.name = 'CoolkitError';
    this.code = code;
    if (deviceid !== undefined) this.deviceid = deviceid;
  }
}
