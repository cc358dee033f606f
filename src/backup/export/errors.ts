import { TokenimError } from '../../errors.ts'

/**
 * Error codes `exportHistory` raises (part of the public contract: the CLI prints them).
 *
 * - USAGE: unknown format, since after until, `out` is a directory, malformed options.
 * - FILE_EXISTS: the export file (or its `<out>.files` folder) exists and `force` is not set.
 * - PERMISSION_DENIED / DISK_FULL / NO_SUCH_DIRECTORY: writing failed (src/util/fs.ts toFsError);
 *   nothing is left behind: no partial export file, no attachment folder.
 * - INVALID_ADDRESS: `self` or `conversation` is not an address.
 * Errors from the store (STORE_*) and the abort reason of `signal` pass through unchanged.
 */
export const ExportErrorCode = {
  USAGE: 'USAGE',
  FILE_EXISTS: 'FILE_EXISTS',
  PERMISSION_DENIED: 'PERMISSION_DENIED',
  DISK_FULL: 'DISK_FULL',
  NO_SUCH_DIRECTORY: 'NO_SUCH_DIRECTORY',
  INVALID_ADDRESS: 'INVALID_ADDRESS'
} as const

export type ExportErrorCode = typeof ExportErrorCode[keyof typeof ExportErrorCode]

export function usage (message: string, info: Record<string, unknown> = {}): TokenimError {
  return new TokenimError(ExportErrorCode.USAGE, message, info)
}
