/**
 * Error codes in Zhiting responses (`error_code`), the gRPC status numbers SmartAssistant puts in
 * its own error objects, so existing SA clients and docs make sense of them.
 */
import { CoolkitError, ErrorCode } from '../../protocol/errors';

export const ZhitingCode = {
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** An error to answer a request with: `{success:false, error: message, error_code: code}`. */
export class ZhitingError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
    this.name = 'ZhitingError';
  }
}

/** Map a command failure (CoolkitError from the cloud, or anything else) to a response error. */
export function fromCommandError(err: unknown, deviceid: string): ZhitingError {
  if (err instanceof ZhitingError) return err;
  if (err instanceof CoolkitError) {
    switch (err.code) {
      case ErrorCode.BAD_REQUEST: return new ZhitingError(ZhitingCode.INVALID_ARGUMENT, err.message);
      case ErrorCode.OFFLINE: return new ZhitingError(ZhitingCode.UNAVAILABLE, err.message);
      case ErrorCode.TIMEOUT: return new ZhitingError(ZhitingCode.DEADLINE_EXCEEDED, err.message);
      case ErrorCode.NOT_FOUND: return new ZhitingError(ZhitingCode.NOT_FOUND, err.message);
      default: return new ZhitingError(ZhitingCode.UNKNOWN, err.message);
    }
  }
  return new ZhitingError(ZhitingCode.INTERNAL, `command to ${deviceid} failed: ${(err as Error)?.message ?? String(err)}`);
}
