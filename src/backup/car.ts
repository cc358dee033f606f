/**
 * CAR files of a bundle (docs/backup-format.md#car-files): CARv1 with one root, blocks in depth-first
 * pre-order from the root, streamed to a temporary file that is fsynced and renamed into place (0600).
 * Reading builds an index of the file, checks every block against its CID, and serves blocks from the file
 * (checked again on every read).
 */
import { open as openFile } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { createReadStream } from 'node:fs'
import { CarIndexer, CarWriter } from '@ipld/car'
import * as dagCbor from '@ipld/dag-cbor'
import * as dagPb from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import { isTokenimError, TokenimError } from '../errors.ts'
import { exists, PRIVATE_FILE_MODE, toFsError, writeFileAtomic } from '../util/fs.ts'
import { blockKey, cborLinks } from '../util/ipld.ts'
import { log } from '../util/log.ts'
import { readBlock, verifyBlock } from './blocks.ts'
import type { AbortOptions, BlockGetter } from './blocks.ts'
import { DAG_CBOR, DAG_PB, MAX_CAR_BLOCK, RAW } from './constants.ts'
import { BackupErrorCode, backupError, malformed, throwIfAborted } from './errors.ts'
import { checkRootOption, readHeader, readManifestNode } from './reader.ts'

export { blockKey }

const logger = log('backup:car')

/** Block links in the order they appear in the block (dag-cbor: canonical key order, list order). */
export function linksOf (cid: CID, bytes: Uint8Array): CID[] {
  try {
    if (cid.code === RAW) return []
    if (cid.code === DAG_PB) return dagPb.decode(bytes).Links.map(l => l.Hash)
    if (cid.code === DAG_CBOR) return cborLinks(dagCbor.decode(bytes))
  } catch (err) {
    throw malformed(`block ${cid.toString()} does not decode as its codec`, { cid: cid.toString(), reason: 'codec' }, err)
  }
  logger('block %s has codec 0x%s: not following its links', cid, cid.code.toString(16))
  return []
}

export interface WalkOptions extends AbortOptions {
  /** CIDs (as strings) whose subtrees are left out */
  skip?: Set<string>
}

/** Every block reachable from `root`, each once, in depth-first pre-order; every block hash-checked. */
export async function * walkDag (bs: BlockGetter, root: CID, options: WalkOptions = {}): AsyncGenerator<{ cid: CID, bytes: Uint8Array }> {
  const seen = new Set<string>()
  const stack: CID[] = [root]
  while (stack.length > 0) {
    throwIfAborted(options.signal)
    const cid = stack.pop() as CID
    if (options.skip !== undefined && options.skip.size > 0 && options.skip.has(cid.toString())) continue
    const key = blockKey(cid) // not cid.toString(): a ~1.7 KB rope per block for the whole walk
    if (seen.has(key)) continue
    seen.add(key)
    const bytes = await readBlock(bs, cid, MAX_CAR_BLOCK, { signal: options.signal })
    yield { cid, bytes }
    const links = linksOf(cid, bytes)
    for (let i = links.length - 1; i >= 0; i--) stack.push(links[i])
  }
}

export interface WriteCarOptions extends AbortOptions {
  /** replace an existing file (default false: FILE_EXISTS) */
  overwrite?: boolean
  /** include the attachments' DAGs (default true; their blocks must then be present) */
  attachments?: boolean
  onProgress?: (p: { blocks: number, bytes: number }) => void
}

export interface WriteCarResult {
  path: string
  root: CID
  blocks: number
  /** bytes of block data written (not counting CAR framing) */
  bytes: number
}

/**
 * Write the bundle under `root` as a CARv1 file at `path`: streamed, atomically (tmp + fsync + rename),
 * mode 0600. Never leaves a partial file: FILE_EXISTS, PERMISSION_DENIED, DISK_FULL, NO_SUCH_DIRECTORY,
 * MISSING_BLOCK, BACKUP_TAMPERED, … leave the target untouched.
 */
export async function writeCar (rootIn: CID | string, bs: BlockGetter, path: string, options: WriteCarOptions = {}): Promise<WriteCarResult> {
  const root = checkRootOption(rootIn)
  const signal = options.signal
  const onProgress = options.onProgress ?? (() => {})
  if (options.overwrite !== true && await exists(path)) {
    throw new TokenimError('FILE_EXISTS', `refusing to overwrite ${path}`, { path })
  }
  // a clear error for a root that is not a backup, before anything is written
  const header = await readHeader({ root, blockstore: bs, signal })
  const skip = new Set<string>()
  if (options.attachments === false) {
    for (const a of (await readManifestNode(bs, header, { signal })).attachments) skip.add(a.toString())
  }

  const result: WriteCarResult = { path, root, blocks: 0, bytes: 0 }
  const { writer, out } = CarWriter.create([root])
  const it = out[Symbol.asyncIterator]()
  let cancelled = false
  let producer: Promise<void> | undefined
  const produce = async (): Promise<void> => {
    try {
      for await (const block of walkDag(bs, root, { signal, skip })) {
        if (cancelled) break
        await writer.put(block)
        result.blocks++
        result.bytes += block.bytes.length
        onProgress({ blocks: result.blocks, bytes: result.bytes })
      }
    } finally {
      await writer.close().catch(() => {})
    }
  }
  async function * stream (): AsyncGenerator<Uint8Array> {
    producer = produce()
    producer.catch(() => {})
    let done = false
    try {
      while (true) {
        const next = await it.next()
        if (next.done === true) break
        yield next.value
      }
      done = true
      await producer
    } finally {
      if (!done) {
        // the file write failed: stop the walk and drain the channel so nothing waits forever
        cancelled = true
        void (async () => { while ((await it.next()).done !== true) { /* drain */ } })().catch(() => {})
      }
    }
  }
  try {
    await writeFileAtomic(path, stream(), { mode: PRIVATE_FILE_MODE, exclusive: options.overwrite !== true })
  } catch (err) {
    throw toFsError(err, path)
  }
  logger('wrote %s: %d blocks, %d bytes', path, result.blocks, result.bytes)
  return result
}

interface Entry { offset: number, length: number, ok: boolean }

/**
 * `bytes` itself when it owns its whole buffer, else a copy that does: a kept view keeps its whole buffer
 * alive (a small Buffer or a dag-cbor encoding is a view into a 64 KiB slab, a streamed block a view into
 * its frame), so a cache of views holds far more memory than it counts.
 */
export function ownBytes (bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice()
}

function cidOfKey (key: string): CID {
  const bytes = new Uint8Array(key.length)
  for (let i = 0; i < key.length; i++) bytes[i] = key.charCodeAt(i)
  return CID.decode(bytes)
}

/** A read-only, verifying blockstore over a CAR file. */
export interface CarBlockstore extends BlockGetter {
  get (cid: CID, options?: AbortOptions): Promise<Uint8Array>
  has (cid: CID): Promise<boolean>
  /** CIDs of the blocks in the file */
  cids (): CID[]
  close (): Promise<void>
}

export interface ReadCarResult {
  root: CID
  blockstore: CarBlockstore
  /** number of distinct blocks in the file */
  blocks: number
  /** CIDs of blocks whose bytes do not match their CID (reading them gives BACKUP_TAMPERED) */
  tampered: string[]
}

function carInvalid (path: string, message: string, cause?: unknown): TokenimError {
  return backupError(BackupErrorCode.CAR_INVALID, `${path} is not a valid backup CAR file: ${message}`, { path }, cause)
}

/**
 * Open a CAR file: index it, check every block against its CID (a mismatch is recorded in `tampered` and
 * served as BACKUP_TAMPERED), and return the root and a verifying blockstore view. Close the view when done.
 */
export async function readCar (path: string, options: AbortOptions = {}): Promise<ReadCarResult> {
  let fh: FileHandle
  try {
    fh = await openFile(path, 'r')
  } catch (err) {
    if ((err as NodeJS.ErrnoException)?.code === 'ENOENT') throw backupError(BackupErrorCode.FILE_NOT_FOUND, `no such file: ${path}`, { path })
    throw toFsError(err, path)
  }
  const index = new Map<string, Entry>()
  /** the index's keys in file order */
  const order: string[] = []
  const tampered: string[] = []
  let root: CID
  const rs = createReadStream(path)
  try {
    let indexer: CarIndexer
    try {
      indexer = await CarIndexer.fromIterable(rs)
    } catch (err) {
      throw carInvalid(path, 'bad header', err)
    }
    const roots = await indexer.getRoots()
    if (roots.length !== 1) throw carInvalid(path, `it has ${roots.length} roots, a backup has exactly one`)
    try {
      root = checkRootOption(roots[0])
    } catch (err) {
      throw carInvalid(path, 'its root is not a dag-cbor sha2-256 CID', err)
    }
    try {
      for await (const entry of indexer) {
        throwIfAborted(options.signal)
        if (entry.blockLength > MAX_CAR_BLOCK) throw carInvalid(path, `block ${entry.cid.toString()} is larger than ${MAX_CAR_BLOCK} bytes`)
        const key = blockKey(entry.cid)
        const known = index.get(key)
        if (known?.ok === true) continue
        const bytes = await readAt(fh, entry.blockOffset, entry.blockLength)
        let ok = true
        try {
          verifyBlock(entry.cid, bytes)
        } catch (err) {
          if (!isTokenimError(err)) throw err
          ok = false
        }
        // no CID of the indexer is kept: each is a view into a 64 KiB read chunk and would keep it alive
        if (known === undefined) order.push(key)
        index.set(key, { offset: entry.blockOffset, length: entry.blockLength, ok })
      }
    } catch (err) {
      if (isTokenimError(err)) throw err
      throw carInvalid(path, 'truncated or corrupt block section', err)
    }
  } catch (err) {
    await fh.close().catch(() => {})
    throw err
  } finally {
    rs.destroy()
  }
  for (const [k, e] of index) if (!e.ok) tampered.push(cidOfKey(k).toString())

  const blockstore: CarBlockstore = {
    async get (cid: CID): Promise<Uint8Array> {
      const e = index.get(blockKey(cid))
      if (e === undefined) throw backupError(BackupErrorCode.MISSING_BLOCK, `block ${cid.toString()} is not in ${path}`, { cid: cid.toString(), path })
      const bytes = await readAt(fh, e.offset, e.length)
      verifyBlock(cid, bytes, { path })
      return bytes
    },
    async has (cid: CID): Promise<boolean> {
      return index.has(blockKey(cid))
    },
    cids: () => order.map(cidOfKey),
    async close (): Promise<void> {
      await fh.close().catch(() => {})
    }
  }
  return { root, blockstore, blocks: index.size, tampered }
}

async function readAt (fh: FileHandle, offset: number, length: number): Promise<Uint8Array> {
  const buf = Buffer.alloc(length)
  let done = 0
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, offset + done)
    if (bytesRead === 0) throw new Error('unexpected end of file')
    done += bytesRead
  }
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength)
}
