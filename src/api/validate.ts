/**
 * Validation shared by the control API routes and the CLI, so a bad input gets the same error code
 * whether the command ran through the daemon or in process.
 */
import { isAbsolute } from 'node:path'
import { getAddress } from 'ethers'
import { ApiErrorCode, apiError } from './errors.ts'

/** Longest message text, in UTF-8 bytes. */
export const MAX_MESSAGE_BYTES = 64 * 1024
/** Longest contact name, in characters. */
export const MAX_CONTACT_NAME = 256
/** Largest --limit / ?limit= accepted. */
export const MAX_LIMIT = 1_000_000

const HEX_ADDRESS = /^0x[0-9a-fA-F]{40}$/

/**
 * A wallet address: `0x` and 40 hex digits, either all lowercase (or all uppercase) or EIP-55
 * checksummed. Returns the checksummed form. Anything else: INVALID_ADDRESS.
 */
export function parseAddress (value: unknown, field = 'address'): string {
  if (typeof value !== 'string' || !HEX_ADDRESS.test(value)) {
    throw apiError(ApiErrorCode.INVALID_ADDRESS, `${field} must be a wallet address: 0x and 40 hex digits`, { field })
  }
  try {
    return getAddress(value)
  } catch {
    throw apiError(ApiErrorCode.INVALID_ADDRESS, `${field} has a wrong EIP-55 checksum (mixed case); check it, or write it in lowercase`, { field })
  }
}

/** EIP-55 form of an address known to be valid (as the store keeps it, lowercase). */
export function displayAddress (address: string): string {
  try {
    return getAddress(address)
  } catch {
    return address
  }
}

/** A message text: a non-blank string of at most 64 KiB (UTF-8). Else INVALID_MESSAGE. */
export function parseMessageText (value: unknown, field = 'text'): string {
  if (typeof value !== 'string') throw apiError(ApiErrorCode.INVALID_MESSAGE, `${field} must be a string`, { field })
  if (value.trim() === '') throw apiError(ApiErrorCode.INVALID_MESSAGE, 'the message is empty', { field })
  const bytes = Buffer.byteLength(value, 'utf8')
  if (bytes > MAX_MESSAGE_BYTES) {
    throw apiError(ApiErrorCode.INVALID_MESSAGE, `the message is ${bytes} bytes; the limit is ${MAX_MESSAGE_BYTES} bytes (64 KiB)`, { field, bytes, max: MAX_MESSAGE_BYTES })
  }
  return value
}

/** A contact name: 1..256 characters, no control characters; surrounding spaces are dropped. */
export function parseContactName (value: unknown, field = 'name'): string {
  if (typeof value !== 'string') throw apiError(ApiErrorCode.INVALID_ARGUMENT, `${field} must be a string`, { field })
  const name = value.trim()
  if (name === '' || name.length > MAX_CONTACT_NAME) {
    throw apiError(ApiErrorCode.INVALID_ARGUMENT, `${field} must be 1 to ${MAX_CONTACT_NAME} characters`, { field })
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) throw apiError(ApiErrorCode.INVALID_ARGUMENT, `${field} must not contain control characters`, { field })
  return name
}

/** A point in time: ms since the epoch, as a number or a string of digits (the CLI parses human forms). */
export function parseTimestamp (value: unknown, field: string): number {
  const n = typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : value
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw apiError(ApiErrorCode.INVALID_ARGUMENT, `${field} must be a time in ms since the epoch; got ${JSON.stringify(value)}`, { field })
  }
  return n
}

/** A non-negative integer up to `max`. */
export function parseCount (value: unknown, field: string, max = MAX_LIMIT): number {
  const n = typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : value
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > max) {
    throw apiError(ApiErrorCode.INVALID_ARGUMENT, `${field} must be an integer between 0 and ${max}; got ${JSON.stringify(value)}`, { field })
  }
  return n
}

/** A JSON request body that must be an object. */
export function parseObject (value: unknown, what = 'request body'): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw apiError(ApiErrorCode.INVALID_ARGUMENT, `${what} must be a JSON object`)
  }
  return value as Record<string, unknown>
}

/** An absolute file path for the daemon to write (it does not share the caller's working directory). */
export function parseAbsolutePath (value: unknown, field: string): string {
  if (typeof value !== 'string' || value === '' || value.length > 4096 || value.includes('\0') || !isAbsolute(value)) {
    throw apiError(ApiErrorCode.INVALID_ARGUMENT, `${field} must be an absolute file path`, { field })
  }
  return value
}
