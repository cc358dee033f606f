import { TokenimError } from '../errors.ts'

/**
 * Error codes the store raises. They are part of the public contract (the CLI prints them).
 *
 * - STORE_SCHEMA_UNKNOWN: the database was written by a newer (or unknown) tokenim schema.
 * - STORE_CORRUPT: LevelDB reports corruption, or the data has no schema version.
 * - STORE_LOCKED: another process (or another Store in this process) has the database open.
 * - STORE_NOT_FOUND: `createIfMissing: false` and there is no database at the path.
 * - STORE_CLOSED: the store was used after `close()`.
 * - STORE_IO: any other LevelDB failure (permissions, I/O).
 * - INVALID_MESSAGE: a message given to addMessage/addMessages/addOutgoing is malformed.
 * - INVALID_ARGUMENT: any other malformed input (contact, outbox entry, backup record, options).
 * - MESSAGE_NOT_FOUND: updateMessageStatus on an id the store does not have.
 */
export const StoreErrorCode = {
  SCHEMA_UNKNOWN: 'STORE_SCHEMA_UNKNOWN',
  CORRUPT: 'STORE_CORRUPT',
  LOCKED: 'STORE_LOCKED',
  NOT_FOUND: 'STORE_NOT_FOUND',
  CLOSED: 'STORE_CLOSED',
  IO: 'STORE_IO',
  INVALID_MESSAGE: 'INVALID_MESSAGE',
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  MESSAGE_NOT_FOUND: 'MESSAGE_NOT_FOUND'
} as const

export type StoreErrorCode = typeof StoreErrorCode[keyof typeof StoreErrorCode]

export function invalidMessage (message: string, info: Record<string, unknown> = {}): TokenimError {
  return new TokenimError(StoreErrorCode.INVALID_MESSAGE, `invalid message: ${message}`, info)
}

export function invalidArgument (message: string, info: Record<string, unknown> = {}): TokenimError {
  return new TokenimError(StoreErrorCode.INVALID_ARGUMENT, message, info)
}

function levelCode (err: unknown): string | undefined {
  const e = err as { code?: unknown, cause?: { code?: unknown } } | undefined
  const cause = e?.cause?.code
  if (typeof cause === 'string' && cause.startsWith('LEVEL_')) return cause
  return typeof e?.code === 'string' ? e.code : undefined
}

function levelMessage (err: unknown): string {
  const e = err as { message?: unknown, cause?: { message?: unknown } } | undefined
  const m = e?.cause?.message ?? e?.message
  return typeof m === 'string' ? m : String(err)
}

/** Translate an error from `db.open()` into a TokenimError that says what to do. */
export function toOpenError (err: unknown, path: string): TokenimError {
  if (err instanceof TokenimError) return err
  const code = levelCode(err)
  const detail = levelMessage(err)
  if (code === 'LEVEL_LOCKED') {
    return new TokenimError(StoreErrorCode.LOCKED,
      `the message store at ${path} is locked: another tokenim process uses this data dir (stop it, or use its daemon)`,
      { path, detail }, { cause: err })
  }
  if (code === 'LEVEL_CORRUPTION') {
    return new TokenimError(StoreErrorCode.CORRUPT,
      `the message store at ${path} is corrupt: run \`tokenim repair\` (or restore from a backup)`,
      { path, detail }, { cause: err })
  }
  if (/does not exist/.test(detail)) {
    return new TokenimError(StoreErrorCode.NOT_FOUND, `no message store at ${path}`, { path }, { cause: err })
  }
  if (/lock/i.test(detail) && /(held|unavailable|temporarily)/i.test(detail)) {
    return new TokenimError(StoreErrorCode.LOCKED,
      `the message store at ${path} is locked: another tokenim process uses this data dir (stop it, or use its daemon)`,
      { path, detail }, { cause: err })
  }
  return new TokenimError(StoreErrorCode.IO, `cannot open the message store at ${path}: ${detail}`, { path, detail }, { cause: err })
}

/** Translate an error from a read or write on an open database. */
export function toStoreError (err: unknown, path: string): unknown {
  if (err instanceof TokenimError) return err
  const code = levelCode(err)
  const detail = levelMessage(err)
  if (code === 'LEVEL_DATABASE_NOT_OPEN' || code === 'LEVEL_ITERATOR_NOT_OPEN' || code === 'LEVEL_BATCH_NOT_OPEN') {
    return new TokenimError(StoreErrorCode.CLOSED, 'the message store is closed', { path }, { cause: err })
  }
  if (code === 'LEVEL_CORRUPTION') {
    return new TokenimError(StoreErrorCode.CORRUPT,
      `the message store at ${path} is corrupt: run \`tokenim repair\` (or restore from a backup)`,
      { path, detail }, { cause: err })
  }
  if (/no space left/i.test(detail)) {
    return new TokenimError('DISK_FULL', `no space left on the device writing the message store at ${path}`, { path }, { cause: err })
  }
  if (code === 'LEVEL_IO_ERROR' || code === 'LEVEL_ENCODING_NOT_SUPPORTED' || code === 'LEVEL_DECODE_ERROR' || code === 'LEVEL_ENCODE_ERROR') {
    return new TokenimError(StoreErrorCode.IO, `message store error at ${path}: ${detail}`, { path, detail }, { cause: err })
  }
  return err
}
