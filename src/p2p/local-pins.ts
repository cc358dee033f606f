/**
 * Pinning and unpinning a whole DAG in Helia's own pin records, in one level batch, without Helia's
 * per-block walk.
 *
 * Helia (helia/src/pins.ts) keeps a pin as `/pin/<root, base36>` → cborg `{ depth, metadata }` and, for
 * every block of the pinned DAG, `/pinned-block/<multihash, base36>` → cborg `{ pinCount, pinnedBy }`
 * (the roots that pin it, as CID bytes). `helia.pins.ls` lists the first, `isPinned` and `helia.gc()`
 * ask for the second. Its `pins.add`/`pins.rm` walk the DAG one block at a time through the networked
 * blockstore (a read lock, a `has` and a `get` per block, an async queue job) and read, decode, encode
 * and write one record per visit. A backup version shares almost all of its blocks with the version
 * before, so an incremental backup's pin read back every unchanged block (~3,700 at 100,000 messages)
 * only to find its links, and the retention's unpin did the same for the old version.
 *
 * Here the DAG is walked level by level: the blocks that have links (dag-cbor, dag-pb) come from the
 * caller's memory ({@link KnownBlocks}, e.g. the blocks a backup just built) or one level read per level;
 * raw blocks have no links and are never read (for a pin, one `hasMany` per level checks that they are
 * stored; a block that is not is got as Helia's walk would, from its blockstore, which may ask the
 * network). Then every record is read, updated and written synchronously (no other pin work can
 * interleave) into the datastore's held writes, which go to level as one synced batch with the pin
 * record — the same records, byte for byte, as `helia.pins.add` writes (tested), so Helia lists the pin,
 * answers `isPinned` and keeps the blocks through `gc()` as before.
 *
 * Deliberate differences from Helia: each block is visited once (Helia's walker visits a block linked
 * twice twice, and its `rm` then decrements the block's count twice — a block another pin still needs
 * could lose its record); `rm` removes the root from `pinnedBy` (Helia's filter keeps only that root,
 * which can make a later pin of the same root skip the block); and `add` counts every block, also one
 * whose record still names the root (left so by Helia's `rm`: the root is not pinned, so its count does
 * not include it). The counts are what decide: a block is pinned while its record exists, and the record
 * goes when the count reaches 0.
 */
import type { AbortOptions } from '@libp2p/interface'
import * as cborg from 'cborg'
import { base36 } from 'multiformats/bases/base36'
import { createUnsafe } from 'multiformats/block'
import type { CID } from 'multiformats/cid'
import type { BlockCodec } from 'multiformats/codecs/interface'
import { encodeRecord } from '../util/cbor.ts'
import { blockKey } from '../util/ipld.ts'
import { P2PError, P2PErrorCode } from './errors.ts'

/** multicodec of raw blocks (no links) */
const RAW = 0x55
/** multihash code of identity "hashes" (the bytes inline in the CID; never stored) */
const IDENTITY_HASH = 0x00
/** Helia's key prefixes (helia/src/pins.ts) */
export const PIN_PREFIX = '/pin/'
export const PINNED_BLOCK_PREFIX = '/pinned-block/'

/** What the caller knows of the blocks (e.g. those a backup just wrote or found stored). */
export interface KnownBlocks {
  /** a block's bytes held in memory; undefined: read it from the blockstore */
  bytes: (cid: CID) => Uint8Array | undefined
  /** true for a block the caller wrote or found stored (a pin does not ask the blockstore again) */
  has?: (cid: CID) => boolean
  /** called once the walk is done with them (before the records are written): the caller may drop them */
  done?: () => void
}

/** Where the walk finds blocks. */
export interface DagSource {
  /** stored blocks, in order (undefined: not stored); one level read */
  getMany: (cids: CID[]) => Promise<Array<Uint8Array | undefined>>
  /** whether each is stored; one level read */
  hasMany: (cids: CID[]) => Promise<boolean[]>
  /** a block that is not stored, got as Helia's own walk gets it (its blockstore, which may ask the network) */
  get: (cid: CID, options?: AbortOptions) => Promise<Uint8Array>
  getCodec: (code: number) => Promise<BlockCodec<number, unknown>>
}

/** Helia's pin records, read and written synchronously inside one held stretch of the datastore. */
export interface PinRecords {
  /**
   * Run `fn` with synchronous reads (held writes first, then level) and held writes (null: delete) of
   * pin records; what it wrote goes to level in one synced batch before this resolves.
   */
  update: (fn: (read: (key: string) => Uint8Array | undefined, write: (key: string, value: Uint8Array | null) => void) => void) => Promise<void>
}

export interface LocalPinOptions extends AbortOptions {
  metadata?: Record<string, string | number | boolean>
  /** blocks held in memory, used before the blockstore */
  known?: KnownBlocks
}

/** Bulk pins of whole DAGs in Helia's records (P2PNode.localPins()). */
export interface LocalPins {
  /** pin `root` and every block under it, like `helia.pins.add(root)`; resolves with the number of blocks. ALREADY_PINNED if it is */
  add: (root: CID, options?: LocalPinOptions) => Promise<number>
  /** unpin `root`, like `helia.pins.rm(root)`; resolves with the number of blocks walked. NOT_PINNED if it is not */
  rm: (root: CID, options?: AbortOptions) => Promise<number>
}

interface PinnedBlock {
  pinCount: number
  pinnedBy: Uint8Array[]
}

/** Helia's `/pin/` key of a root (a v0 CID as its v1) */
export function pinKey (cid: CID): string {
  return `${PIN_PREFIX}${(cid.version === 0 ? cid.toV1() : cid).toString(base36)}`
}

/** Helia's `/pinned-block/` key of a block */
export function pinnedBlockKey (cid: CID): string {
  return `${PINNED_BLOCK_PREFIX}${base36Text(cid.multihash.bytes)}`
}

/**
 * `base36.encode(bytes)` (multiformats: 'k', then a '0' per leading zero byte, then the rest as a base-36
 * number in 0-9a-z), through BigInt's native toString(36): ~1 µs where base-x's quadratic loop took ~10
 * (a key per block of every pin). A test compares it with multiformats.
 */
export function base36Text (bytes: Uint8Array): string {
  let zeros = 0
  while (zeros < bytes.length && bytes[zeros] === 0) zeros++
  const rest = zeros === bytes.length ? '' : BigInt(`0x${Buffer.from(bytes.buffer, bytes.byteOffset + zeros, bytes.length - zeros).toString('hex')}`).toString(36)
  return `${base36.prefix}${'0'.repeat(zeros)}${rest}`
}

/** a record's bytes as Helia's cborg writes them (keys sorted: pinCount before pinnedBy), through the store's fast path */
function encodePinnedBlock (rec: PinnedBlock): Uint8Array {
  const v = { pinCount: rec.pinCount, pinnedBy: rec.pinnedBy }
  return encodeRecord(v) ?? cborg.encode(v)
}

function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0
}

/**
 * Every block of the DAG under `root`, each once: the root, then level by level in link order. Raw
 * blocks are not read; with `checkLeaves` those `known` does not vouch for are asked for (one `hasMany`
 * per level) and one that is not stored is got through `source.get`.
 */
export async function dagBlocks (root: CID, source: DagSource, options: { known?: KnownBlocks, checkLeaves?: boolean, signal?: AbortSignal } = {}): Promise<CID[]> {
  const { known, signal } = options
  const out: CID[] = [root]
  const seen = new Set<string>([blockKey(root)])
  let level: CID[] = [root]
  while (level.length > 0) {
    signal?.throwIfAborted()
    const nodes = level.filter(c => c.code !== RAW)
    const bytes = nodes.map(c => c.multihash.code === IDENTITY_HASH ? c.multihash.digest : known?.bytes(c))
    const unread = bytes.flatMap((b, i) => b === undefined ? [i] : [])
    if (unread.length > 0) {
      const got = await source.getMany(unread.map(i => nodes[i]))
      for (let j = 0; j < unread.length; j++) bytes[unread[j]] = got[j] ?? await source.get(nodes[unread[j]], { signal })
    }
    if (options.checkLeaves === true) {
      const leaves = level.filter(c => c.code === RAW && c.multihash.code !== IDENTITY_HASH && known?.has?.(c) !== true)
      const stored = leaves.length > 0 ? await source.hasMany(leaves) : []
      for (let j = 0; j < leaves.length; j++) if (!stored[j]) await source.get(leaves[j], { signal })
    }
    const next: CID[] = []
    for (let i = 0; i < nodes.length; i++) {
      const block = createUnsafe({ cid: nodes[i], bytes: bytes[i] as Uint8Array, codec: await source.getCodec(nodes[i].code) })
      for (const [, link] of block.links()) {
        const key = blockKey(link)
        if (seen.has(key)) continue
        seen.add(key)
        out.push(link)
        next.push(link)
      }
    }
    level = next
  }
  return out
}

/** the blocks' record keys, each once (a record is per multihash: two CIDs of the same bytes share it) */
function recordKeys (cids: CID[]): string[] {
  return [...new Set(cids.map(pinnedBlockKey))]
}

/**
 * The record keys of the DAG's blocks and how many blocks it has. The CIDs are not kept past this: a
 * backup of 1,000,000 messages pins ~36,000 blocks, and its records are then read and written with all
 * their keys and values held at once for the one batch (the pin phase set the backup's peak RSS).
 */
async function pinnedKeys (root: CID, source: DagSource, options: LocalPinOptions): Promise<{ keys: string[], count: number }> {
  const cids = await dagBlocks(root, source, { known: options.known, checkLeaves: true, signal: options.signal })
  return { keys: recordKeys(cids), count: cids.length }
}

function decodeRecord (bytes: Uint8Array | undefined): PinnedBlock | undefined {
  return bytes === undefined ? undefined : cborg.decode(bytes) as PinnedBlock
}

/** {@link LocalPins} over a block source, the records and Helia's own `rm` (for pins of a bounded depth). */
export function localPins (source: DagSource, records: PinRecords, heliaRm: (root: CID, options?: AbortOptions) => Promise<number>): LocalPins {
  return {
    add: async (root, options = {}) => {
      const { keys, count } = await pinnedKeys(root, source, options)
      options.known?.done?.()
      options.signal?.throwIfAborted()
      const key = pinKey(root)
      const by = root.bytes
      await records.update((read, write) => {
        if (read(key) !== undefined) throw new P2PError(P2PErrorCode.ALREADY_PINNED, `${root.toString()} is already pinned`, { cid: root.toString() })
        for (const k of keys) {
          const rec = decodeRecord(read(k)) ?? { pinCount: 0, pinnedBy: [] }
          // the root is not pinned (checked above), so a record that names it is stale — Helia's rm keeps
          // only the removed root in pinnedBy — and its count no longer includes it: counted again
          // (Helia's add skips it, and the other pin's unpin could then drop a block this pin needs). A
          // record left by a Helia add that never finished is counted twice: that only keeps the block
          rec.pinCount++
          if (!rec.pinnedBy.some(c => sameBytes(c, by))) rec.pinnedBy.push(by)
          write(k, encodePinnedBlock(rec))
        }
        write(key, cborg.encode({ depth: Infinity, metadata: options.metadata ?? {} }))
      })
      return count
    },
    rm: async (root, options = {}) => {
      const key = pinKey(root)
      let depth: number | undefined
      await records.update((read) => { depth = (decodeRecord(read(key)) as { depth?: number } | undefined)?.depth })
      if (depth === undefined) throw new P2PError(P2PErrorCode.NOT_PINNED, `${root.toString()} is not pinned`, { cid: root.toString() })
      // a pin of a bounded depth (not made here) is Helia's to walk
      if (depth !== Infinity) return await heliaRm(root, options)
      const cids = await dagBlocks(root, source, { signal: options.signal })
      options.signal?.throwIfAborted()
      const keys = recordKeys(cids)
      const by = root.bytes
      await records.update((read, write) => {
        if (read(key) === undefined) throw new P2PError(P2PErrorCode.NOT_PINNED, `${root.toString()} is not pinned`, { cid: root.toString() })
        write(key, null)
        for (const k of keys) {
          const rec = decodeRecord(read(k))
          if (rec === undefined) continue
          rec.pinCount--
          rec.pinnedBy = rec.pinnedBy.filter(c => !sameBytes(c, by))
          write(k, rec.pinCount > 0 ? encodePinnedBlock(rec) : null)
        }
      })
      return cids.length
    }
  }
}
