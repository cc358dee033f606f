/**
 * Block access for the backup engine: every block read from anywhere is checked against its CID, with a
 * size cap, and library errors become TokenimErrors that name the block.
 */
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from '../crypto/index.ts'
import { isTokenimError, TokenimError } from '../errors.ts'
import { BackupErrorCode, backupError, aborted, malformed } from './errors.ts'
import { DAG_CBOR, IDENTITY_HASH, RAW, SHA2_256 } from './constants.ts'

export interface AbortOptions { signal?: AbortSignal }

/**
 * What the reader needs from a blockstore: `get`. Accepts both the interface-blockstore 7 shape (a
 * generator of chunks) and the older one (a promise of bytes).
 */
export interface BlockGetter {
  get (cid: CID, options?: AbortOptions): Uint8Array | Promise<Uint8Array> | Iterable<Uint8Array> | AsyncIterable<Uint8Array>
}

/** What the builder needs from a blockstore: `get`, `put` and `has` (a Helia or level blockstore fits). */
export interface BlockStore extends BlockGetter {
  put (cid: CID, bytes: Uint8Array, options?: AbortOptions): unknown
  has (cid: CID, options?: AbortOptions): boolean | Promise<boolean>
  /** whether each block is stored, in one read when the store can (optional: else `has` per block) */
  hasMany? (cids: CID[], options?: AbortOptions): Promise<boolean[]>
}

export function cidOf (code: number, bytes: Uint8Array): CID {
  return CID.createV1(code, Digest.create(SHA2_256, sha256(bytes)))
}

export function dagCborCid (bytes: Uint8Array): CID { return cidOf(DAG_CBOR, bytes) }
export function rawCid (bytes: Uint8Array): CID { return cidOf(RAW, bytes) }

/** The CID the chain derives from an anchored root digest (32 bytes or 0x-hex). */
export function rootCidFromDigest (digest: Uint8Array | string): CID {
  const bytes = typeof digest === 'string' ? hexToBytes(digest) : digest
  if (bytes.length !== 32) throw backupError(BackupErrorCode.INVALID_ARGUMENT, 'a root digest must be 32 bytes')
  return CID.createV1(DAG_CBOR, Digest.create(SHA2_256, bytes))
}

/** The 0x-hex sha2-256 digest of a root CID (what the chain anchors). */
export function digestOfRoot (root: CID): string {
  if (root.multihash.code !== SHA2_256 || root.code !== DAG_CBOR) {
    throw backupError(BackupErrorCode.INVALID_ARGUMENT, 'a backup root must be a dag-cbor sha2-256 CID', { cid: root.toString() })
  }
  return '0x' + Buffer.from(root.multihash.digest).toString('hex')
}

function hexToBytes (hex: string): Uint8Array {
  const h = hex.startsWith('0x') ? hex.slice(2) : hex
  if (!/^[0-9a-fA-F]*$/.test(h) || h.length % 2 !== 0) throw backupError(BackupErrorCode.INVALID_ARGUMENT, 'digest must be hex')
  return Uint8Array.from(Buffer.from(h, 'hex'))
}

/** Coerce a CID-like value (CID instance, string) into a CID, or throw INVALID_ARGUMENT. */
export function toCid (value: unknown, field: string): CID {
  if (typeof value === 'string') {
    try {
      return CID.parse(value)
    } catch {
      throw backupError(BackupErrorCode.INVALID_ARGUMENT, `${field} is not a CID`, { field })
    }
  }
  const cid = CID.asCID(value)
  if (cid === null) throw backupError(BackupErrorCode.INVALID_ARGUMENT, `${field} is not a CID`, { field })
  return cid
}

/**
 * Check bytes against a CID's multihash. Returns normally on a match, throws BACKUP_TAMPERED on a
 * mismatch and BACKUP_MALFORMED for a hash function we cannot check (never accept unchecked bytes).
 */
export function verifyBlock (cid: CID, bytes: Uint8Array, where: Record<string, unknown> = {}): void {
  const mh = cid.multihash
  let ok: boolean
  if (mh.code === SHA2_256) {
    ok = mh.digest.length === 32 && Buffer.compare(sha256(bytes), mh.digest) === 0
  } else if (mh.code === IDENTITY_HASH) {
    ok = Buffer.compare(bytes, mh.digest) === 0
  } else {
    throw malformed(`block ${cid.toString()} uses a hash function tokenim cannot check (0x${mh.code.toString(16)})`, { ...where, cid: cid.toString(), reason: 'unsupported-hash' })
  }
  if (!ok) {
    throw backupError(BackupErrorCode.BACKUP_TAMPERED, `block ${cid.toString()} does not match its hash`, { ...where, cid: cid.toString(), reason: 'hash-mismatch' })
  }
}

function isNotFound (err: unknown): boolean {
  const e = err as { name?: unknown, code?: unknown } | undefined
  return e?.name === 'NotFoundError' || e?.code === 'ERR_NOT_FOUND'
}

function isAbort (err: unknown, signal?: AbortSignal): boolean {
  const e = err as { name?: unknown } | undefined
  return signal?.aborted === true || e?.name === 'AbortError' || e?.name === 'TimeoutError'
}

/**
 * Read one block, at most `maxBytes` long, and check it against its CID.
 * Throws MISSING_BLOCK, BACKUP_TAMPERED, BACKUP_MALFORMED (too large / unsupported hash), ABORTED or
 * BLOCKSTORE_ERROR, each with info.cid (and the `where` fields).
 */
export async function readBlock (bs: BlockGetter, cid: CID, maxBytes: number, options: AbortOptions & { where?: Record<string, unknown> } = {}): Promise<Uint8Array> {
  const where = options.where ?? {}
  // made only for an error: cid.toString() on every read would cache a ~1.7 KB rope on every CID read (util/ipld.ts)
  const info = (): Record<string, unknown> => ({ ...where, cid: cid.toString() })
  if (options.signal?.aborted === true) throw aborted(options.signal)
  let bytes: Uint8Array
  try {
    const got = bs.get(cid, { signal: options.signal })
    if (got instanceof Uint8Array) {
      bytes = got
    } else if (isPromise(got)) {
      bytes = await got
    } else {
      const chunks: Uint8Array[] = []
      let total = 0
      for await (const chunk of got as AsyncIterable<Uint8Array>) {
        total += chunk.length
        if (total > maxBytes) throw tooLarge(cid, maxBytes, where)
        chunks.push(chunk)
      }
      bytes = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)
    }
  } catch (err) {
    if (isTokenimError(err) && (err.code === BackupErrorCode.BACKUP_MALFORMED || err.code === BackupErrorCode.BACKUP_TAMPERED || err.code === BackupErrorCode.MISSING_BLOCK)) throw err
    if (isNotFound(err)) throw backupError(BackupErrorCode.MISSING_BLOCK, `block ${cid.toString()} is missing`, info())
    if (isAbort(err, options.signal)) throw aborted(options.signal)
    if (isTokenimError(err)) throw err
    throw backupError(BackupErrorCode.BLOCKSTORE_ERROR, `the blockstore failed reading ${cid.toString()}`, info(), err)
  }
  if (!(bytes instanceof Uint8Array)) throw backupError(BackupErrorCode.BLOCKSTORE_ERROR, `the blockstore returned no bytes for ${cid.toString()}`, info())
  if (bytes.length > maxBytes) throw tooLarge(cid, maxBytes, where)
  verifyBlock(cid, bytes, where)
  return bytes
}

function tooLarge (cid: CID, maxBytes: number, where: Record<string, unknown>): Error {
  return malformed(`block ${cid.toString()} is larger than the ${maxBytes} bytes allowed here`, { ...where, cid: cid.toString(), reason: 'too-large', max: maxBytes })
}

function isPromise (v: unknown): v is Promise<Uint8Array> {
  return typeof (v as { then?: unknown } | null)?.then === 'function'
}

/**
 * Blockstores seen to say on put whether they already had the block (Helia's reports a
 * `blocks:put:duplicate` or a `blocks:put:blockstore:put` progress event): for those, the has() before
 * the put is skipped (Helia's put does its own).
 */
const reportsPuts = new WeakSet<object>()

/** Put a block unless the store has it; returns true when it was new. */
export async function putBlock (bs: BlockStore, cid: CID, bytes: Uint8Array, options: AbortOptions = {}): Promise<boolean> {
  try {
    let said: 'duplicate' | 'new' | undefined
    const onProgress = (evt: { type?: unknown }): void => {
      if (evt?.type === 'blocks:put:duplicate') said = 'duplicate'
      else if (evt?.type === 'blocks:put:blockstore:put') said = 'new'
    }
    if (reportsPuts.has(bs)) {
      await bs.put(cid, bytes, { ...options, onProgress } as AbortOptions)
      if (said === undefined) reportsPuts.delete(bs)
      return said !== 'duplicate'
    }
    if (await bs.has(cid, options)) return false
    await bs.put(cid, bytes, { ...options, onProgress } as AbortOptions)
    if (said !== undefined) reportsPuts.add(bs)
    return true
  } catch (err) {
    throw blockWriteError(err, cid, options.signal)
  }
}

/**
 * A failed block write as a TokenimError: ABORTED, DISK_FULL (no space left), a TokenimError as it is,
 * else BLOCKSTORE_ERROR naming the block.
 */
export function blockWriteError (err: unknown, cid: CID, signal?: AbortSignal): Error {
  if (isAbort(err, signal)) return aborted(signal)
  if (isTokenimError(err)) return err
  if (/no space left|ENOSPC/i.test(String((err as Error)?.message ?? err))) {
    return new TokenimError('DISK_FULL', 'no space left on the device writing a backup block', { cid: cid.toString() }, { cause: err })
  }
  return backupError(BackupErrorCode.BLOCKSTORE_ERROR, `the blockstore failed writing ${cid.toString()}`, { cid: cid.toString() }, err)
}
