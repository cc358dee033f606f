import { TokenimError } from '../errors.ts'

/**
 * Stable error codes raised by src/backup (part of the public contract: the CLI prints them, `verify`
 * lists them as problems). Messages and info never contain keys or message content.
 */
export const BackupErrorCode = {
  /** a block the bundle links to is not in the blockstore / CAR file (info.cid) */
  MISSING_BLOCK: 'MISSING_BLOCK',
  /** a block's bytes do not hash to its CID, or a block with a correct hash fails to authenticate (info.cid) */
  BACKUP_TAMPERED: 'BACKUP_TAMPERED',
  /** a block is well hashed but not what the format allows: size, shape, order, cross-checks (info.cid, info.reason) */
  BACKUP_MALFORMED: 'BACKUP_MALFORMED',
  /** the root is not a tokenim backup, or one of a format version this tokenim does not know */
  BACKUP_FORMAT_UNSUPPORTED: 'BACKUP_FORMAT_UNSUPPORTED',
  /** the bundle belongs to another owner than the one expected */
  BACKUP_OWNER_MISMATCH: 'BACKUP_OWNER_MISMATCH',
  /** the bundle has another version than the one expected */
  BACKUP_VERSION_MISMATCH: 'BACKUP_VERSION_MISMATCH',
  /** a segment holds another number of messages than the manifest says */
  COUNT_MISMATCH: 'COUNT_MISMATCH',
  /** the manifest does not open with this key, and the bundle was made with a passphrase */
  WRONG_PASSPHRASE: 'WRONG_PASSPHRASE',
  /** the manifest does not open with this key (no passphrase: wrong mnemonic/identity) */
  DECRYPT_FAILED: 'DECRYPT_FAILED',
  /** the store handed the builder messages that are invalid, out of order, or not grouped by conversation */
  BACKUP_SOURCE_INVALID: 'BACKUP_SOURCE_INVALID',
  /** the CAR file is not a CARv1/v2 with exactly one root, or a block in it exceeds the caps */
  CAR_INVALID: 'CAR_INVALID',
  /** a file to read does not exist */
  FILE_NOT_FOUND: 'FILE_NOT_FOUND',
  /** the blockstore failed for another reason than a missing block */
  BLOCKSTORE_ERROR: 'BLOCKSTORE_ERROR',
  /** the operation was aborted through its signal */
  ABORTED: 'ABORTED',
  /** a caller passed malformed options (programming error) */
  INVALID_ARGUMENT: 'INVALID_ARGUMENT'
} as const

export type BackupErrorCode = typeof BackupErrorCode[keyof typeof BackupErrorCode]

export function backupError (code: BackupErrorCode, message: string, info: Record<string, unknown> = {}, cause?: unknown): TokenimError {
  return new TokenimError(code, message, info, cause === undefined ? undefined : { cause })
}

export function malformed (message: string, info: Record<string, unknown> = {}, cause?: unknown): TokenimError {
  return backupError(BackupErrorCode.BACKUP_MALFORMED, message, info, cause)
}

export function invalidArgument (message: string, info: Record<string, unknown> = {}): TokenimError {
  return backupError(BackupErrorCode.INVALID_ARGUMENT, message, info)
}

export function aborted (signal: AbortSignal | undefined): TokenimError {
  return backupError(BackupErrorCode.ABORTED, 'the backup operation was aborted', {}, signal?.reason)
}

export function throwIfAborted (signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw aborted(signal)
}
