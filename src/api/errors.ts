import { TokenimError } from '../errors.ts'

/** Stable error codes raised by src/api (part of the public contract: never rename one). */
export const ApiErrorCode = {
  /** not a 0x-prefixed 20-byte hex address, or a mixed-case one with a wrong EIP-55 checksum */
  INVALID_ADDRESS: 'INVALID_ADDRESS',
  /** a message text that is empty or over the size limit */
  INVALID_MESSAGE: 'INVALID_MESSAGE',
  /** any other bad request field (times, limits, names, JSON shape) */
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  /** missing or wrong bearer token */
  UNAUTHORIZED: 'UNAUTHORIZED',
  /** the daemon's api.json names a daemon that does not answer (or one still starting) */
  DAEMON_UNREACHABLE: 'DAEMON_UNREACHABLE',
  /** another daemon holds the data dir's lock */
  DAEMON_RUNNING: 'DAEMON_RUNNING'
} as const

export type ApiErrorCode = typeof ApiErrorCode[keyof typeof ApiErrorCode]

export function apiError (code: ApiErrorCode, message: string, info: Record<string, unknown> = {}): TokenimError {
  return new TokenimError(code, message, info)
}
