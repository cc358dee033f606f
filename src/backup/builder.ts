/**
 * The bundle builder: streams the store into segments, seals them, and writes blocks bottom-up (segments,
 * then the manifest — v2: shards, contacts, top node; v1: one manifest node — then the root) so that a
 * root never points at nothing.
 */
import type { KeyObject } from 'node:crypto'
import type { CID } from 'multiformats/cid'
import type { KdfParams } from '../crypto/index.ts'
import { hmacSha256, sha256 } from '../crypto/index.ts'
import { isTokenimError } from '../errors.ts'
import type { Contact, ConversationRevision, StoredMessage } from '../store/index.ts'
import { log } from '../util/log.ts'
import { checksumAddress, isAddressLike } from './address.ts'
import { dagCborCid, digestOfRoot, putBlock, rawCid, toCid } from './blocks.ts'
import type { BlockStore } from './blocks.ts'
import {
  DEFAULT_SEGMENT_BYTES, DEFAULT_SEGMENT_SIZE, DEFAULT_SHARD_SIZE, FORMAT_NAME, FORMAT_VERSION, MAX_ROOT_BLOCK, MAX_SEGMENT_BLOCK,
  MAX_MANIFEST_BLOCK, MAX_SEGMENT_BYTES, MAX_SEGMENT_PLAINTEXT, MAX_SEGMENT_SIZE, MAX_SHARD_SEGMENTS, MAX_SHARD_SIZE, MIN_SEGMENT_BYTES,
  SHA2_256, SHARD_CAP_FACTOR, TAIL_MIN
} from './constants.ts'
import { BackupErrorCode, backupError, invalidArgument, throwIfAborted } from './errors.ts'
import {
  checkSegmentMessage, compareMessages, encode, encodeContacts, encodeHeader, encodeIndex, encodeLinks, encodeManifest, encodeManifestNode,
  encodeMessage, encodeShard, encodeShardNode, encodeTopLinks, encodeTopNode, toSegmentMessage
} from './schema.ts'
import type { Manifest, ManifestConversation, SegmentMessage, ShardSummary } from './schema.ts'
import { seal, sealKey } from './seal.ts'
import { SegmentSealer, WORKER_MESSAGES } from './sealer.ts'
import { transcodeRow } from './transcode.ts'
import { decodeSealEntry, encodeSealEntry, sealCacheKey } from './seal-cache.ts'
import type { SealCache } from './seal-cache.ts'
import {
  conversationCacheKey, decodeConversationEntry, decodeShardEntry, encodeConversationEntry, encodeShardEntry, shardCacheKey, shardMembers
} from './conversation-cache.ts'
import type { CachedConversation, CachedSegment, ConversationCache } from './conversation-cache.ts'
import { validateKdfParams } from '../crypto/index.ts'

const logger = log('backup')

/** Options of BackupSource.allMessages. */
export interface AllMessagesOptions {
  /**
   * asked once per conversation at its first message; for `true` the source may pass over its messages,
   * for `{ after }` over those up to and including that (ts, id)
   */
  skip?: (conversation: string) => boolean | { after: { ts: number, id: string } }
}

/** What the builder reads from the store (a Store or a StoreSnapshot fits). */
export interface BackupSource {
  /** every message, conversation by conversation, each in ascending (ts, id) order */
  allMessages (options?: AllMessagesOptions): AsyncIterable<StoredMessage>
  contacts? (): Promise<Contact[]> | Contact[] | AsyncIterable<Contact>
  /**
   * when present, messages are read from one point-in-time snapshot; its `revisions` (the conversations'
   * change tokens, from the same snapshot) let the conversation cache skip unchanged conversations
   */
  snapshot? (): {
    allMessages (options?: AllMessagesOptions): AsyncIterable<StoredMessage>
    revisions? (): Promise<ConversationRevision[]>
    /** one conversation's messages (ts ≥ since), for a conversation built on its cached segments */
    messages? (conversation: string, q?: { since?: number }): AsyncIterable<StoredMessage>
    /** a message by id (a conversation is built on its cached segments only when the entry's newest row is still stored) */
    getMessage? (id: string): Promise<StoredMessage | undefined>
    /**
     * every message row's stored bytes, in allMessages' order, in batches, and a row's decoding (as
     * allMessages gives it): a build that takes nothing from the conversation cache reads these, and makes
     * the plain rows' segment messages from their bytes (transcode.ts)
     */
    messageRecords? (): AsyncIterable<Uint8Array[]>
    decodeMessageRecord? (bytes: Uint8Array): StoredMessage
    close (): Promise<void>
  }
}

export interface BuildProgress {
  phase: 'segments' | 'manifest' | 'done'
  messages: number
  segments: number
  /** bytes of blocks produced so far */
  bytes: number
  /** bytes of blocks that were not already in the blockstore */
  bytesNew: number
}

export interface BuildBackupOptions {
  store: BackupSource
  blockstore: BlockStore
  /** owner address (any case) */
  owner: string
  /** backup version, ≥ 1 */
  version: number
  /** the 32-byte backup key */
  backupKey: Uint8Array
  /** passphrase KDF parameters the key was derived with (stored in the root), or none */
  kdf?: KdfParams | null
  /** root of the previous version, recorded (encrypted) in the manifest */
  prevRoot?: CID | string
  /** version of prevRoot (default version - 1) */
  prevVersion?: number
  /** maximum messages per segment (default 256) */
  segmentSize?: number
  /** soft byte limit per segment (default 256 KiB) */
  segmentBytes?: number
  /** v2: target conversations per manifest shard (default DEFAULT_SHARD_SIZE, 2) */
  shardSize?: number
  /** format version to write (default FORMAT_VERSION, 2; 1 is kept for fixtures and tests) */
  formatVersion?: 1 | 2
  /** creation time (ms; default now) */
  created?: number
  /** segments sealed before, by plaintext (seal-cache.ts): an unchanged segment is not sealed again */
  sealCache?: SealCache
  /** segments sealed on the calling thread before a worker thread takes over (sealer.ts; default 512, Infinity: never) */
  sealWorkerAfter?: number
  /**
   * conversations built before, by change token (conversation-cache.ts): an unchanged conversation is
   * taken whole, its messages not read; used only with a source whose snapshot gives `revisions`
   */
  conversationCache?: ConversationCache
  onProgress?: (p: BuildProgress) => void
  signal?: AbortSignal
}

export interface BuildBackupResult {
  root: CID
  /** 0x-hex sha2-256 of the root block: what the chain anchors */
  digest: string
  owner: string
  version: number
  messages: number
  conversations: number
  segments: number
  attachments: number
  /** format version written */
  formatVersion: number
  /** v2: manifest shards (0 for v1) */
  shards: number
  /** bytes of the bundle's own blocks (root, manifest blocks, segments; attachments not counted) */
  bytesTotal: number
  /** bytes of those blocks that the blockstore did not already hold */
  bytesNew: number
  /** the bundle's own blocks */
  blocks: number
  blocksNew: number
  /** segment plaintext bytes before compression and encryption */
  plaintextBytes: number
}

interface Checked { owner: string, kdf: KdfParams | null, segmentSize: number, segmentBytes: number, shardSize: number, formatVersion: 1 | 2, created: number, prev: Manifest['prev'] }

function checkOptions (o: BuildBackupOptions): Checked {
  if (o === null || typeof o !== 'object') throw invalidArgument('options must be an object')
  if (typeof o.store?.allMessages !== 'function') throw invalidArgument('store must provide allMessages()')
  if (typeof o.blockstore?.put !== 'function' || typeof o.blockstore?.has !== 'function') throw invalidArgument('blockstore must provide put() and has()')
  if (!isAddressLike(o.owner)) throw invalidArgument('owner must be a 0x address')
  if (!Number.isSafeInteger(o.version) || o.version < 1) throw invalidArgument('version must be a positive integer')
  if (!(o.backupKey instanceof Uint8Array) || o.backupKey.length !== 32) throw invalidArgument('backupKey must be 32 bytes')
  const segmentSize = o.segmentSize ?? DEFAULT_SEGMENT_SIZE
  if (!Number.isSafeInteger(segmentSize) || segmentSize < 1 || segmentSize > MAX_SEGMENT_SIZE) throw invalidArgument(`segmentSize must be 1..${MAX_SEGMENT_SIZE}`)
  const segmentBytes = o.segmentBytes ?? DEFAULT_SEGMENT_BYTES
  if (!Number.isSafeInteger(segmentBytes) || segmentBytes < MIN_SEGMENT_BYTES || segmentBytes > MAX_SEGMENT_BYTES) throw invalidArgument(`segmentBytes must be ${MIN_SEGMENT_BYTES}..${MAX_SEGMENT_BYTES}`)
  const shardSize = o.shardSize ?? DEFAULT_SHARD_SIZE
  if (!Number.isSafeInteger(shardSize) || shardSize < 1 || shardSize > MAX_SHARD_SIZE) throw invalidArgument(`shardSize must be 1..${MAX_SHARD_SIZE}`)
  const formatVersion = o.formatVersion ?? FORMAT_VERSION
  if (formatVersion !== 1 && formatVersion !== 2) throw invalidArgument('formatVersion must be 1 or 2')
  const created = o.created ?? Date.now()
  if (!Number.isSafeInteger(created) || created < 0) throw invalidArgument('created must be a non-negative integer (ms)')
  let kdf: KdfParams | null = null
  if (o.kdf !== undefined && o.kdf !== null) {
    try {
      kdf = validateKdfParams(o.kdf)
    } catch (err) {
      throw backupError(BackupErrorCode.INVALID_ARGUMENT, 'kdf is not valid KDF parameters', {}, err)
    }
  }
  let prev: Manifest['prev'] = null
  if (o.prevRoot !== undefined && o.prevRoot !== null) {
    const root = toCid(o.prevRoot, 'prevRoot')
    if (root.code !== 0x71 || root.multihash.code !== SHA2_256) throw invalidArgument('prevRoot must be a dag-cbor sha2-256 CID')
    const pv = o.prevVersion ?? o.version - 1
    if (!Number.isSafeInteger(pv) || pv < 1 || pv >= o.version) throw invalidArgument('prevVersion must be a positive integer below version')
    prev = { version: pv, root }
  }
  return { owner: checksumAddress(o.owner), kdf, segmentSize, segmentBytes, shardSize, formatVersion, created, prev }
}

function sourceInvalid (message: string, info: Record<string, unknown> = {}, cause?: unknown): Error {
  return backupError(BackupErrorCode.BACKUP_SOURCE_INVALID, message, info, cause)
}

async function readContacts (store: BackupSource): Promise<Contact[]> {
  if (typeof store.contacts !== 'function') return []
  const got = await store.contacts()
  const out: Contact[] = []
  for await (const c of got as AsyncIterable<Contact>) out.push(c)
  return out
}

/**
 * Build backup `version` of `owner` from the store into the blockstore. Streams: holds one segment of
 * messages at a time plus per-segment metadata. Returns the root CID and the anchored digest.
 */
export async function buildBackup (options: BuildBackupOptions): Promise<BuildBackupResult> {
  const o = checkOptions(options)
  const key = Uint8Array.from(options.backupKey)
  // segments and (a large build's) manifest shards are sealed on a worker thread once there are many (sealer.ts)
  const sealer = new SegmentSealer(key, { workerAfter: options.sealWorkerAfter })
  try {
    return await build(options, o, key, sealer)
  } finally {
    await sealer.close()
    key.fill(0)
  }
}

/** A conversation as built: its manifest entry plus its links. */
interface BuiltConversation {
  entry: ManifestConversation
  segments: CID[]
  /** distinct attachment links in order of first reference */
  attachments: Map<string, CID>
  /** the segment blocks' sizes, in segment order (for the conversation cache) */
  sizes: number[]
  /** segment plaintext bytes */
  plaintextBytes: number
  /** the store's change token this conversation was built for (a cache entry's, or its snapshot summary's when its rows agreed) */
  rev?: string
  /** taken from the conversation cache */
  cached?: boolean
  /** the store's append run then (for its entry) */
  run?: string
  /** per segment, what a later build needs to build on after it (conversation cache) */
  meta: Array<{ lastId: string, msgBytes: number, plain: number, full: boolean }>
  /**
   * built on cached segments: the rows up to `from` are those segments' (not read); its reused tail runs
   * (`pend`, pendN messages of pendB encoded bytes) count as if in the buffer until the tail is cut, and
   * are read back (the rows after `tailFrom`, the end of its full segments) if the cut turns out otherwise
   */
  from?: { ts: number, id: string }
  tailFrom?: { ts: number, id: string }
  pend?: CachedSegment[]
  pendN?: number
  pendB?: number
}

/** A segment block as written (or found): its CID and size. */
interface Sealed { cid: CID, size: number }

/** What the builder keeps of a message waiting for its segment (its encoding is kept beside it). */
type Row = Pick<SegmentMessage, 'id' | 'ts'>

async function build (options: BuildBackupOptions, o: Checked, key: Uint8Array, sealer: SegmentSealer): Promise<BuildBackupResult> {
  const { blockstore, signal } = options
  const onProgress = options.onProgress ?? (() => {})
  /** K for this build's HMACs and boxes (seal cache, shard boundaries, manifest boxes), imported once */
  const sk = sealKey(key)

  const segmentCids: CID[] = []
  const attachments = new Map<string, CID>()
  const conversations: ManifestConversation[] = []
  const built: BuiltConversation[] = []
  const seenPeers = new Set<string>()
  let messages = 0
  let bytesTotal = 0
  let bytesNew = 0
  let blocks = 0
  let blocksNew = 0
  let plaintextBytes = 0

  let conv: ManifestConversation | undefined
  let cur: BuiltConversation | undefined
  let buf: Row[] = []
  /** each message of buf, dag-cbor encoded once: its size counts toward segmentBytes, its bytes go into the segment */
  let bufEnc: Uint8Array[] = []
  let bufBytes = 0
  let last: { ts: number, id: string } | undefined

  const progress = (phase: BuildProgress['phase']): void => {
    try {
      onProgress({ phase, messages, segments: segmentCids.length, bytes: bytesTotal, bytesNew })
    } catch (err) {
      logger.error('progress callback failed: %s', err)
    }
  }

  const put = async (cid: CID, bytes: Uint8Array): Promise<void> => {
    const isNew = await putBlock(blockstore, cid, bytes, { signal })
    blocks++
    bytesTotal += bytes.length
    if (isNew) {
      blocksNew++
      bytesNew += bytes.length
    }
  }

  // segments are sealed (on a worker thread once there are many: sealer.ts) and written while the next
  // ones are built, at most PUT_WINDOW at once; their CIDs join the lists in segment order as they are
  // settled, and every one has been written before the first manifest block is, so a manifest never
  // points at nothing
  const inflight: Array<{ done: Promise<Sealed>, to: BuiltConversation | undefined }> = []
  const settlePuts = async (max: number): Promise<void> => {
    while (inflight.length > max) {
      const { done, to } = inflight.shift() as { done: Promise<Sealed>, to: BuiltConversation | undefined }
      const { cid, size } = await done
      segmentCids.push(cid)
      to?.segments.push(cid)
      to?.sizes.push(size)
    }
  }
  const cache = options.sealCache
  /**
   * new seal-cache entries, written in batches of SEAL_CACHE_BATCH as they come, one after the other (held
   * to the end they were ~0.5 KB of heap and malloc each, ~35,000 at 1,000,000 messages); an entry is used
   * only while its block is stored, so one written before its block (or for a build that then fails) costs
   * nothing, and a failed write only a speed-up
   */
  let cacheAdds: Array<[string, Uint8Array]> = []
  let cacheWrites = Promise.resolve()
  const writeCacheAdds = (): void => {
    const batch = cacheAdds
    cacheAdds = []
    if (cache === undefined || batch.length === 0) return
    cacheWrites = cacheWrites.then(async () => { await cache.putMany(batch) }).catch((err: Error) => { logger('seal cache not updated: %s', err.message) })
  }
  const sealAndPut = async (plain: Uint8Array, peer: string): Promise<Sealed> => {
    // with the worker sealing, the cache is not asked first (what a hit saves is the worker's, not this
    // thread's) and the worker makes the new entry: a plaintext hash and two HMACs less here per segment
    let cacheKey = cache === undefined || sealer.ready ? undefined : sealCacheKey(sk, 'segment', plain)
    if (cache !== undefined && cacheKey !== undefined) {
      const hit = decodeSealEntry(sk, cacheKey, await cache.get(cacheKey).catch(() => undefined))
      if (hit !== undefined && await blockstore.has(hit.cid)) {
        // the block sealing would give is stored: counted like a put that found it there
        blocks++
        bytesTotal += hit.size
        return hit
      }
    }
    const sealed = await sealer.seal(plain, 'segment', undefined, cache !== undefined && cacheKey === undefined)
    const { box, cid } = sealed
    if (box.length > MAX_SEGMENT_BLOCK) throw sourceInvalid('a sealed segment exceeds the format\'s size cap', { conversation: peer })
    await put(cid, box)
    if (sealed.cacheKey !== undefined && sealed.cacheEntry !== undefined) {
      cacheAdds.push([sealed.cacheKey, sealed.cacheEntry])
    } else if (cache !== undefined) {
      cacheKey ??= sealCacheKey(sk, 'segment', plain)
      cacheAdds.push([cacheKey, encodeSealEntry(sk, cacheKey, cid, box.length)])
    }
    if (cacheAdds.length >= SEAL_CACHE_BATCH) writeCacheAdds()
    return { cid, size: box.length }
  }

  const writeSegment = async (msgs: Row[], encoded: Uint8Array[], full: boolean): Promise<void> => {
    if (conv === undefined || msgs.length === 0) return
    cur?.meta.push({ lastId: msgs[msgs.length - 1].id, msgBytes: encoded.reduce((n, e) => n + e.length, 0), plain: 0, full })
    const plain = encodeSegmentOf(conv.peer, conv.segments.length, encoded)
    if (plain.length > MAX_SEGMENT_PLAINTEXT) throw sourceInvalid('a segment exceeds the format\'s size cap (a message is too large)', { conversation: conv.peer })
    const done = sealAndPut(plain, conv.peer)
    done.catch(() => {}) // handled: awaited in order by settlePuts (or settled in the finally below)
    inflight.push({ done, to: cur })
    await settlePuts(PUT_WINDOW)
    plaintextBytes += plain.length
    if (cur !== undefined) {
      cur.plaintextBytes += plain.length
      cur.meta[cur.meta.length - 1].plain = plain.length
    }
    conv.segments.push({ count: msgs.length, firstTs: msgs[0].ts, lastTs: msgs[msgs.length - 1].ts })
    progress('segments')
    throwIfAborted(signal)
  }

  /** a full segment: segmentSize messages, or segmentBytes reached */
  const flushFull = async (): Promise<void> => {
    await unpend()
    await writeSegment(buf, bufEnc, true)
    buf = []
    bufEnc = []
    bufBytes = 0
  }

  /** the end of a conversation: the tail is cut into power-of-two runs (see tailChunks) */
  const flushTail = async (): Promise<void> => {
    let off = 0
    let chunks = tailChunks(buf.length, o.segmentSize)
    const b = cur
    if (b?.pend !== undefined && b.pend.length > 0) {
      // reused tail runs stand when the whole tail is cut into them first, as a build from the rows would
      const all = tailChunks((b.pendN ?? 0) + buf.length, o.segmentSize)
      const pend = b.pend
      if (pend.every((seg, i) => all[i] === seg.count)) {
        for (const seg of pend) commitCached(seg)
        b.pend = []
        b.pendN = b.pendB = 0
        await settlePuts(PUT_WINDOW)
        chunks = all.slice(pend.length)
      } else {
        await unpend()
        chunks = tailChunks(buf.length, o.segmentSize)
      }
    }
    for (const n of chunks) {
      await writeSegment(buf.slice(off, off + n), bufEnc.slice(off, off + n), false)
      off += n
    }
    buf = []
    bufEnc = []
    bufBytes = 0
  }

  // The conversation cache (conversation-cache.ts): a conversation whose change token (read from the
  // snapshot the messages come from) has an entry whose segment blocks are all stored is put in the
  // bundle from that entry, in its place in conversation order, and its messages are not read (the
  // source seeks past them); one only appended to since its entry is built on the segments of the entry
  // that a build of all its rows would cut the same, from the rows after them (startPartial). Every other
  // conversation is built from its messages as before; the entries for those are written once the bundle
  // is. The bundle is the same byte for byte either way.
  const convCache = options.conversationCache
  const convParams = { formatVersion: o.formatVersion, segmentSize: o.segmentSize, segmentBytes: o.segmentBytes }
  /** K for the cache's HMACs (two per conversation), imported once */
  const macKey = convCache === undefined ? undefined : sk
  const hits = new Map<string, CachedConversation>()
  /** the snapshot's summary of each conversation built from its messages, for its new entry */
  const revs = new Map<string, ConversationRevision>()
  /** hits the source passed over, waiting for their place in the bundle */
  const passed: string[] = []
  const lookUp = async (revisions: ConversationRevision[], canRead: boolean, rowOf: ((id: string) => Promise<StoredMessage | undefined>) | undefined): Promise<void> => {
    const found: Array<[ConversationRevision, CachedConversation, number]> = []
    const appended: Array<[ConversationRevision, CachedConversation, number]> = []
    /** messages of the conversations looked up so far that are built whole: the seal worker starts once they are many */
    let whole = 0
    for (const r of revisions) {
      throwIfAborted(signal)
      if (typeof r.rev !== 'string') continue // written before the store had tokens
      const cacheKey = conversationCacheKey(macKey as KeyObject, r.peer, convParams)
      const c = decodeConversationEntry(macKey as KeyObject, cacheKey, await (convCache as ConversationCache).get(cacheKey).catch(() => undefined))
      revs.set(r.peer, r)
      if (c !== undefined && c.rev === r.rev && c.count === r.count && c.firstTs === r.firstTs && c.lastTs === r.lastTs && c.lastId === r.lastMessageId) {
        found.push([r, c, c.segments.length])
        continue
      }
      // only appended to since (the same append run): its rows then are the first c.count rows now
      const keep = c !== undefined && canRead && rowOf !== undefined && c.run !== undefined && c.run === r.run && r.count > c.count && c.firstTs === r.firstTs ? keptSegments(c, r.count - c.count) : 0
      if (c !== undefined && keep > 0) appended.push([r, c, keep])
      else if ((whole += r.count) >= WORKER_MESSAGES) {
        // a first backup (no entries) starts the worker here, while the rest is looked up, not after
        sealer.warm()
      }
    }
    // ... as long as the entry's newest row is still stored: the store's writes are not synced, so a power
    // cut can take back its last appends, and appends made after that keep the same run (the entry's kept
    // segments would hold rows the store no longer has, and the rows read after them would miss new ones)
    const newest = rowOf === undefined ? [] : await Promise.all(appended.map(async ([, c]) => await rowOf(c.lastId)))
    appended.forEach((a, i) => {
      const m = newest[i]
      if (m !== undefined && m.conversation === a[0].peer && m.ts === a[1].lastTs) found.push(a)
    })
    // used only when every segment block it names (or that is kept) is stored
    const stored = await hasAll(found.flatMap(([, c, keep]) => c.segments.slice(0, keep).map(seg => seg.cid)))
    let i = 0
    for (const [r, c, keep] of found) {
      let all = true
      for (let n = 0; n < keep; n++) all = stored[i++] && all
      if (!all) continue
      if (keep === c.segments.length && c.rev === r.rev) {
        hits.set(r.peer, c)
        revs.delete(r.peer)
      } else {
        partials.set(r.peer, { c, keep })
      }
    }
  }
  /**
   * How many of a conversation's cached segments a build of its rows plus `added` appended ones keeps:
   * its full segments (cut from its first rows, so the same), then the leading tail runs that the new
   * tail's cut (tailChunks) starts with. Whether the bytes would cut a full segment first is only known
   * when the new rows are read: flushFull then reads the kept tail runs' rows back (unpend).
   */
  const keptSegments = (c: CachedConversation, added: number): number => {
    let full = 0
    while (full < c.segments.length && c.segments[full].full) full++
    const tail = c.segments.slice(full)
    const n = tail.reduce((a, seg) => a + seg.count, 0) + added
    if (n >= o.segmentSize) return full
    const chunks = tailChunks(n, o.segmentSize)
    let j = 0
    while (j < tail.length && j < chunks.length - 1 && chunks[j] === tail[j].count) j++
    return full + j
  }
  const hasAll = async (cids: CID[]): Promise<boolean[]> => {
    if (typeof blockstore.hasMany === 'function') {
      // in parts read at once (each a LevelDB seek per key on the thread pool: ~20,000 keys at 1,000,000 messages)
      const parts: Array<Promise<boolean[]>> = []
      for (let i = 0; i < cids.length; i += HAS_PART) parts.push(blockstore.hasMany(cids.slice(i, i + HAS_PART), { signal }))
      return (await Promise.all(parts)).flat()
    }
    const out: boolean[] = []
    for (const cid of cids) out.push(await blockstore.has(cid, { signal }))
    return out
  }
  /** conversations only appended to since their entry: built on its kept segments, from the rows after them */
  const partials = new Map<string, { c: CachedConversation, keep: number }>()
  /** a cached segment put in the bundle as the current conversation's next: counted like one found stored */
  const commitCached = (seg: CachedSegment): void => {
    if (conv === undefined || cur === undefined) return
    blocks++
    bytesTotal += seg.size
    plaintextBytes += seg.plain
    cur.plaintextBytes += seg.plain
    conv.segments.push({ count: seg.count, firstTs: seg.firstTs, lastTs: seg.lastTs })
    cur.meta.push({ lastId: seg.lastId, msgBytes: seg.msgBytes, plain: seg.plain, full: seg.full })
    inflight.push({ done: Promise.resolve({ cid: seg.cid, size: seg.size }), to: cur })
  }
  /** start a conversation on its kept segments: the full ones go in now, the tail runs wait for the cut */
  const startPartial = async (peer: string): Promise<void> => {
    const { c, keep } = partials.get(peer) as { c: CachedConversation, keep: number }
    seenPeers.add(peer)
    const kept = c.segments.slice(0, keep)
    const end = kept[keep - 1]
    let full = 0
    while (full < keep && kept[full].full) full++
    const count = kept.reduce((a, seg) => a + seg.count, 0)
    conv = { peer, count, firstTs: c.firstTs, lastTs: end.lastTs, lastId: end.lastId, segments: [] }
    conversations.push(conv)
    const pend = kept.slice(full)
    cur = {
      entry: conv, segments: [], attachments: new Map(), sizes: [], plaintextBytes: 0, meta: [],
      from: { ts: end.lastTs, id: end.lastId },
      ...(full > 0 ? { tailFrom: { ts: kept[full - 1].lastTs, id: kept[full - 1].lastId } } : {}),
      pend, pendN: pend.reduce((a, seg) => a + seg.count, 0), pendB: pend.reduce((a, seg) => a + seg.msgBytes, 0)
    }
    built.push(cur)
    last = { ts: end.lastTs, id: end.lastId }
    messages += count
    // the cached rows' links in their order; rows read after them only add theirs after these
    for (const a of c.attachments) {
      const k = a.toString()
      if (!attachments.has(k)) attachments.set(k, a)
      if (!cur.attachments.has(k)) cur.attachments.set(k, a)
    }
    for (const seg of kept.slice(0, full)) commitCached(seg)
    await settlePuts(PUT_WINDOW)
  }
  /** the kept tail runs do not stand: their rows (after tailFrom, up to from) are read back into the buffer */
  const unpend = async (): Promise<void> => {
    const b = cur
    if (b?.pend === undefined || b.pend.length === 0 || conv === undefined || b.from === undefined) return
    const peer = conv.peer
    const rows: SegmentMessage[] = []
    const enc: Uint8Array[] = []
    let bytes = 0
    const read = (snapshot as { messages: (c: string, q?: { since?: number }) => AsyncIterable<StoredMessage> }).messages(peer, b.tailFrom !== undefined ? { since: b.tailFrom.ts } : {})
    for await (const raw of read) {
      const m = checked(raw, peer)
      if (b.tailFrom !== undefined && compareMessages(m, b.tailFrom) <= 0) continue
      if (compareMessages(m, b.from) > 0) break
      const e = encode(m)
      rows.push(m)
      enc.push(e)
      bytes += e.length
    }
    conv.count += rows.length - (b.pendN ?? 0)
    messages += rows.length - (b.pendN ?? 0)
    buf = [...rows, ...buf]
    bufEnc = [...enc, ...bufEnc]
    bufBytes += bytes
    b.pend = []
    b.pendN = b.pendB = 0
  }
  const checked = (raw: StoredMessage, peer: string): SegmentMessage => {
    try {
      return checkSegmentMessage(toSegmentMessage(raw), peer, { conversation: peer })
    } catch (err) {
      throw sourceInvalid(`the store holds an invalid message: ${(err as Error).message}`, isTokenimError(err) ? err.info : {}, err)
    }
  }
  /** a conversation from its cache entry: counted like one whose every segment was found stored */
  const takeHit = async (peer: string): Promise<void> => {
    const c = hits.get(peer) as CachedConversation
    seenPeers.add(peer)
    const entry: ManifestConversation = {
      peer, count: c.count, firstTs: c.firstTs, lastTs: c.lastTs, lastId: c.lastId,
      segments: c.segments.map(seg => ({ count: seg.count, firstTs: seg.firstTs, lastTs: seg.lastTs }))
    }
    const b: BuiltConversation = { entry, segments: [], attachments: new Map(), sizes: [], plaintextBytes: c.plaintextBytes, rev: c.rev, cached: true, meta: [] }
    conversations.push(entry)
    built.push(b)
    messages += c.count
    plaintextBytes += c.plaintextBytes
    for (const a of c.attachments) {
      const k = a.toString()
      if (!attachments.has(k)) attachments.set(k, a)
      if (!b.attachments.has(k)) b.attachments.set(k, a)
    }
    for (const seg of c.segments) {
      blocks++
      bytesTotal += seg.size
      inflight.push({ done: Promise.resolve({ cid: seg.cid, size: seg.size }), to: b })
    }
    await settlePuts(PUT_WINDOW)
    progress('segments')
  }
  /** the conversations the source passed over (whole, or up to their kept segments), in their place; `next`: the conversation of the row that came next */
  const takePassed = async (next: string | undefined): Promise<void> => {
    for (const peer of passed.splice(0)) {
      if (hits.has(peer)) {
        await takeHit(peer)
      } else {
        await startPartial(peer)
        if (peer !== next) await flushTail() // none of its rows came after the kept ones
      }
    }
  }
  const skip = (peer: string): boolean | { after: { ts: number, id: string } } => {
    if (seenPeers.has(peer) || passed.includes(peer)) return false
    if (hits.has(peer)) {
      passed.push(peer)
      return true
    }
    const p = partials.get(peer)
    if (p === undefined) return false
    passed.push(peer)
    const end = p.c.segments[p.keep - 1]
    return { after: { ts: end.lastTs, id: end.lastId } }
  }

  const snapshot = typeof options.store.snapshot === 'function' ? options.store.snapshot() : undefined
  try {
    throwIfAborted(signal)
    const source = snapshot ?? options.store
    if (convCache !== undefined && typeof snapshot?.revisions === 'function') {
      const t0 = performance.now()
      await lookUp(await snapshot.revisions(), typeof snapshot.messages === 'function', typeof snapshot.getMessage === 'function' ? async id => await (snapshot.getMessage as (id: string) => Promise<StoredMessage | undefined>)(id) : undefined)
      logger('conversation cache: %d conversations taken, %d built on cached segments, %d to build (%d ms)', hits.size, partials.size, revs.size - partials.size, Math.round(performance.now() - t0))
      // many messages to build (at most these): the seal worker starts now, not after 512 segments
      let toBuild = 0
      for (const r of revs.values()) toBuild += r.count
      if (toBuild >= WORKER_MESSAGES) sealer.warm()
    }
    /** a hit the source did not pass over: its messages are passed over here */
    let ignoring: string | undefined
    /** the next row is of another conversation than the current one: false when its rows are passed over */
    const enter = async (peer: string, id: unknown): Promise<boolean> => {
      await flushTail()
      await takePassed(peer)
      ignoring = undefined
      if (hits.has(peer) && !seenPeers.has(peer)) {
        await takeHit(peer)
        ignoring = peer
        conv = undefined
        cur = undefined
        return false
      }
      if (partials.has(peer) && !seenPeers.has(peer)) await startPartial(peer) // a source that did not skip
      if (conv === undefined || peer !== conv.peer) {
        if (seenPeers.has(peer)) throw sourceInvalid('the store did not stream messages grouped by conversation', { conversation: peer })
        if (!/^0x[0-9a-f]{40}$/.test(peer)) throw sourceInvalid('a message has an invalid conversation address', { id: typeof id === 'string' ? id.slice(0, 128) : undefined })
        seenPeers.add(peer)
        conv = { peer, count: 0, firstTs: 0, lastTs: 0, lastId: '', segments: [] }
        conversations.push(conv)
        cur = { entry: conv, segments: [], attachments: new Map(), sizes: [], plaintextBytes: 0, meta: [] }
        built.push(cur)
        last = undefined
      }
      return true
    }
    /** a checked message of the current conversation and its encoding into the buffer; true: a segment is full */
    const append = (m: Row & { attachment?: SegmentMessage['attachment'] }, enc: Uint8Array): boolean => {
      const c = conv as ManifestConversation
      if (last !== undefined && compareMessages(last, m) >= 0) {
        throw sourceInvalid('the store did not stream a conversation in strict (ts, id) order', { conversation: c.peer, id: m.id })
      }
      if (c.count === 0) c.firstTs = m.ts
      c.count++
      c.lastTs = m.ts
      c.lastId = m.id
      last = { ts: m.ts, id: m.id }
      messages++
      if (m.attachment !== undefined) {
        const a = attachmentCid(m.attachment.cid)
        if (a !== undefined && !attachments.has(a.toString())) attachments.set(a.toString(), a)
        if (a !== undefined && cur !== undefined && !cur.attachments.has(a.toString())) cur.attachments.set(a.toString(), a)
      }
      buf.push(m)
      bufEnc.push(enc)
      bufBytes += enc.length
      return buf.length + (cur?.pendN ?? 0) >= o.segmentSize || bufBytes + (cur?.pendB ?? 0) >= o.segmentBytes
    }
    const records = hits.size + partials.size === 0 && typeof snapshot?.messageRecords === 'function' && typeof snapshot.decodeMessageRecord === 'function'
      ? { rows: snapshot.messageRecords(), decode: snapshot.decodeMessageRecord.bind(snapshot) }
      : undefined
    if (records !== undefined) {
      // every row is built (nothing taken from the conversation cache): from the rows' stored bytes, each
      // plain row's segment message made straight from them (transcode.ts), any other decoded as below
      for await (const rows of records.rows) {
        throwIfAborted(signal)
        for (const bytes of rows) {
          const t = transcodeRow(bytes, conv?.peer)
          if (t !== undefined) {
            if ((conv === undefined || t.conversation !== conv.peer) && !(await enter(t.conversation, t.id))) continue
            if (append(t, t.enc)) await flushFull()
            continue
          }
          const raw = records.decode(bytes)
          const peer = typeof raw?.conversation === 'string' ? raw.conversation : ''
          if ((conv === undefined || peer !== conv.peer) && !(await enter(peer, raw?.id))) continue
          const m = checked(raw, peer)
          if (append(m, encodeMessage(m))) await flushFull()
        }
      }
    } else {
      for await (const raw of source.allMessages(hits.size + partials.size > 0 ? { skip } : undefined)) {
        throwIfAborted(signal)
        const peer = typeof raw?.conversation === 'string' ? raw.conversation : ''
        if (peer === ignoring) continue
        if ((conv === undefined || peer !== conv.peer) && !(await enter(peer, raw?.id))) continue
        const m = checked(raw, peer)
        if (cur?.from !== undefined && compareMessages(m, cur.from) <= 0) continue // a kept segment's (a source that did not skip)
        if (append(m, encodeMessage(m))) await flushFull()
      }
    }
    await flushTail()
    await takePassed(undefined)
    await settlePuts(0)
  } catch (err) {
    if (isTokenimError(err)) throw err
    throw sourceInvalid('reading the store failed', {}, err)
  } finally {
    await Promise.allSettled(inflight.map(f => f.done))
    await snapshot?.close().catch(() => {})
  }

  // a conversation built from its messages is cached under its snapshot token only when its rows agreed
  // with its summary (a consistent store) and every segment was settled
  for (const b of built) {
    const r = b.cached === true ? undefined : revs.get(b.entry.peer)
    const e = b.entry
    if (r?.rev !== undefined && e.count === r.count && e.firstTs === r.firstTs && e.lastTs === r.lastTs && e.lastId === r.lastMessageId && b.sizes.length === e.segments.length && b.meta.length === e.segments.length) {
      b.rev = r.rev
      b.run = r.run
    }
  }
  /** new conversation-cache entries (conversations and shards), written once the bundle is */
  const convAdds: Array<[string, Uint8Array]> = []

  progress('manifest')
  const contacts = (await readContacts(options.store)).map(c => c.name === undefined || c.name === null
    ? { address: c.address.toLowerCase(), addedAt: c.addedAt }
    : { address: c.address.toLowerCase(), name: c.name, addedAt: c.addedAt })
  const attachmentList = [...attachments.values()]
  const totals = { messages, conversations: conversations.length, segments: segmentCids.length, attachments: attachmentList.length, bytes: plaintextBytes }
  // what the v1 manifest and the v2 index both say of the bundle (checked against the root on reading)
  const head = { owner: o.owner, version: options.version, created: o.created, kdf: o.kdf, prev: o.prev, segmentSize: o.segmentSize, segmentBytes: o.segmentBytes }
  let manifestCid: CID
  let shardCount = 0
  if (o.formatVersion === 1) {
    const manifest: Manifest = {
      type: 'manifest',
      ...head,
      links: sha256(encodeLinks(segmentCids, attachmentList)),
      conversations,
      contacts,
      totals
    }
    const sealed = seal(sk, 'manifest', encodeManifest(manifest))
    const node = encodeManifestNode({ sealed, segments: segmentCids, attachments: attachmentList })
    if (node.length > MAX_MANIFEST_BLOCK) throw sourceInvalid('the manifest exceeds the format\'s size cap', { bytes: node.length })
    manifestCid = dagCborCid(node)
    await put(manifestCid, node)
  } else {
    // v2: shards (bottom-up, after their segments), then the contacts box, then the top node
    const shardCids: CID[] = []
    const summaries: ShardSummary[] = []
    const groups = shardGroups(sk, built, o.shardSize)
    // a shard whose conversations (and their tokens) are those a cached shard was made of is that block
    const shardParams = { ...convParams, shardSize: o.shardSize }
    const shardKeys = groups.map(g => convCache !== undefined && g.every(c => c.rev !== undefined) ? shardCacheKey(macKey as KeyObject, g[0].entry.peer, shardParams) : undefined)
    const members = groups.map((g, i) => shardKeys[i] === undefined ? undefined : shardMembers(g.map(c => ({ peer: c.entry.peer, rev: c.rev as string }))))
    const known: Array<Sealed | undefined> = []
    for (const [i, k] of shardKeys.entries()) {
      known.push(k === undefined ? undefined : decodeShardEntry(macKey as KeyObject, k, members[i] as Uint8Array, await (convCache as ConversationCache).get(k).catch(() => undefined)))
    }
    const stored = await hasAll(known.filter((s): s is Sealed => s !== undefined).map(s => s.cid))
    let si = 0
    for (let i = 0; i < known.length; i++) if (known[i] !== undefined && !stored[si++]) known[i] = undefined
    // each shard's plaintext is handed to the sealer's worker when it is running, up to SHARD_WINDOW ahead
    // of the node being written (the worker seals while the next are encoded), the nodes in shard order
    const part = (group: BuiltConversation[], i: number): { segs: CID[], attList: CID[], box: Promise<Uint8Array> | undefined } => {
      const segs = group.flatMap(c => c.segments)
      const atts = new Map<string, CID>()
      for (const c of group) for (const [k, v] of c.attachments) if (!atts.has(k)) atts.set(k, v)
      const attList = [...atts.values()]
      let box: Promise<Uint8Array> | undefined
      if (known[i] === undefined) {
        throwIfAborted(signal)
        const plain = encodeShard({ type: 'shard', links: sha256(encodeLinks(segs, attList)), conversations: group.map(c => c.entry) })
        box = sealer.ready ? sealer.seal(plain, 'shard', Infinity).then(s => s.box) : Promise.resolve(seal(sk, 'shard', plain))
        box.catch(() => {}) // handled: awaited in order below
      }
      return { segs, attList, box }
    }
    const parts: Array<ReturnType<typeof part> | undefined> = []
    for (const [i, group] of groups.entries()) {
      throwIfAborted(signal)
      while (parts.length < Math.min(groups.length, i + SHARD_WINDOW)) parts.push(part(groups[parts.length], parts.length))
      const { segs, attList, box } = parts[i] as ReturnType<typeof part>
      parts[i] = undefined
      let cid: CID
      const hit = known[i]
      if (hit !== undefined || box === undefined) {
        // the block this shard seals to is stored: counted like a put that found it there
        cid = (hit as Sealed).cid
        blocks++
        bytesTotal += (hit as Sealed).size
      } else {
        const node = encodeShardNode({ sealed: await box, segments: segs, attachments: attList })
        if (node.length > MAX_MANIFEST_BLOCK) throw sourceInvalid('a manifest shard exceeds the format\'s size cap', { bytes: node.length })
        cid = dagCborCid(node)
        await put(cid, node)
        const k = shardKeys[i]
        if (k !== undefined) convAdds.push([k, encodeShardEntry(macKey as KeyObject, k, members[i] as Uint8Array, cid, node.length)])
      }
      shardCids.push(cid)
      summaries.push({ conversations: group.length, segments: segs.length, messages: group.reduce((n, c) => n + c.entry.count, 0), attachments: attList.length })
    }
    shardCount = shardCids.length
    const contactsBox = seal(sk, 'contacts', encodeContacts(contacts))
    if (contactsBox.length > MAX_MANIFEST_BLOCK) throw sourceInvalid('the contacts exceed the format\'s size cap', { bytes: contactsBox.length })
    const contactsCid = rawCid(contactsBox)
    await put(contactsCid, contactsBox)
    const sealed = seal(sk, 'index', encodeIndex({
      type: 'index',
      ...head,
      shardSize: o.shardSize,
      links: sha256(encodeTopLinks(shardCids, contactsCid)),
      shards: summaries,
      totals
    }))
    const top = encodeTopNode({ sealed, shards: shardCids, contacts: contactsCid })
    if (top.length > MAX_MANIFEST_BLOCK) throw sourceInvalid('the manifest exceeds the format\'s size cap', { bytes: top.length })
    manifestCid = dagCborCid(top)
    await put(manifestCid, top)
  }

  const rootBytes = encodeHeader({ format: FORMAT_NAME, v: o.formatVersion, owner: o.owner, version: options.version, created: o.created, kdf: o.kdf, manifest: manifestCid })
  if (rootBytes.length > MAX_ROOT_BLOCK) throw invalidArgument('the root block exceeds its size cap (kdf parameters too large)')
  const root = dagCborCid(rootBytes)
  await put(root, rootBytes)
  writeCacheAdds()
  await cacheWrites
  if (convCache !== undefined) {
    for (const b of built) {
      if (b.cached === true || b.rev === undefined) continue
      const e = b.entry
      const cacheKey = conversationCacheKey(macKey as KeyObject, e.peer, convParams)
      convAdds.push([cacheKey, encodeConversationEntry(macKey as KeyObject, cacheKey, {
        rev: b.rev, ...(b.run !== undefined ? { run: b.run } : {}), count: e.count, firstTs: e.firstTs, lastTs: e.lastTs, lastId: e.lastId, plaintextBytes: b.plaintextBytes,
        segments: e.segments.map((seg, i) => ({ ...seg, size: b.sizes[i], cid: b.segments[i], ...b.meta[i] })),
        attachments: [...b.attachments.values()]
      })])
    }
    if (convAdds.length > 0) await convCache.putMany(convAdds).catch((err: Error) => { logger('conversation cache not updated: %s', err.message) })
  }
  progress('done')
  logger('built backup v%d (format %d): %d messages, %d segments, %d shards, %d/%d bytes new', options.version, o.formatVersion, messages, segmentCids.length, shardCount, bytesNew, bytesTotal)
  return {
    root,
    digest: digestOfRoot(root),
    owner: o.owner,
    version: options.version,
    messages,
    conversations: conversations.length,
    segments: segmentCids.length,
    attachments: attachmentList.length,
    formatVersion: o.formatVersion,
    shards: shardCount,
    bytesTotal,
    bytesNew,
    blocks,
    blocksNew,
    plaintextBytes
  }
}

/** Blocks asked about in one `hasMany` (the parts go to the thread pool at once). */
const HAS_PART = 2048

/** Segment blocks being written at once while the next segments are built. */
const PUT_WINDOW = 8
/** new seal-cache entries per write during a build (~150 bytes each) */
const SEAL_CACHE_BATCH = 2048

/** Manifest shards handed to the seal worker ahead of the one whose node is being written. */
const SHARD_WINDOW = 64

/** dag-cbor head of major type `major` with argument `n` (shortest form, as dag-cbor requires) */
function cborHead (major: number, n: number): number[] {
  const m = major << 5
  if (n < 24) return [m | n]
  if (n < 0x100) return [m | 24, n]
  if (n < 0x10000) return [m | 25, n >> 8, n & 0xff]
  if (n < 0x100000000) return [m | 26, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]
  const hi = Math.floor(n / 0x100000000)
  return [m | 27, hi >>> 24, (hi >> 16) & 0xff, (hi >> 8) & 0xff, hi & 0xff, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]
}

/** "seq", "conv", "msgs", "type": "segment" (dag-cbor's map key order: shorter keys first, then bytewise) */
const SEG_SEQ = Uint8Array.from([0xa4, 0x63, 0x73, 0x65, 0x71]) // map(4) "seq"
const SEG_CONV = Uint8Array.from([0x64, 0x63, 0x6f, 0x6e, 0x76]) // "conv"
const SEG_MSGS = Uint8Array.from([0x64, 0x6d, 0x73, 0x67, 0x73]) // "msgs"
const SEG_TYPE = Uint8Array.from([0x64, 0x74, 0x79, 0x70, 0x65, 0x67, 0x73, 0x65, 0x67, 0x6d, 0x65, 0x6e, 0x74]) // "type": "segment"

/**
 * The dag-cbor segment {type, conv, seq, msgs} built from its messages' own encodings (each message is
 * encoded once, for the segmentBytes count, and its bytes reused here). Byte for byte what
 * encodeSegment gives: a CBOR array is its length header followed by its items' encodings, and dag-cbor
 * encodes each item on its own; the map around it is written here in dag-cbor's key order (a test
 * compares with encodeSegment at every length boundary of seq, conv and msgs). One allocation of its
 * own: the plaintext is handed to the sealer (and copied to its worker) whole.
 */
export function encodeSegmentOf (conv: string, seq: number, encoded: Uint8Array[]): Uint8Array {
  if (!Number.isSafeInteger(seq) || seq < 0) throw invalidArgument('a segment\'s seq is a non-negative integer') // never: the builder counts from 0
  const seqHead = cborHead(0, seq)
  const convBytes = Buffer.from(conv, 'utf8')
  const convHead = cborHead(3, convBytes.length)
  const msgsHead = cborHead(4, encoded.length)
  let size = SEG_SEQ.length + seqHead.length + SEG_CONV.length + convHead.length + convBytes.length + SEG_MSGS.length + msgsHead.length + SEG_TYPE.length
  for (const e of encoded) size += e.length
  const out = new Uint8Array(size)
  let at = 0
  const put = (b: ArrayLike<number>): void => { out.set(b, at); at += b.length }
  put(SEG_SEQ)
  put(seqHead)
  put(SEG_CONV)
  put(convHead)
  put(convBytes)
  put(SEG_MSGS)
  put(msgsHead)
  for (const e of encoded) put(e)
  put(SEG_TYPE)
  return out
}

const SHARD_LABEL = new TextEncoder().encode('tokenim-backup/v2/shard-boundary\0')

/**
 * v2 shard boundaries (docs/backup-format.md#manifest-shards): conversations stay in build order; a new
 * shard starts before a conversation whose keyed hash HMAC(K, label ‖ peer) read as a big-endian uint32 is
 * 0 mod shardSize, or when the current shard already holds SHARD_CAP_FACTOR·shardSize conversations or
 * MAX_SHARD_SEGMENTS segments. A boundary depends only on the conversation itself (and, for the caps, on
 * its run), so adding a conversation or messages rewrites one shard, not its neighbours.
 */
export function shardGroups<T extends { entry: { peer: string }, segments: unknown[] }> (key: Uint8Array | KeyObject, convs: T[], shardSize: number): T[][] {
  const out: T[][] = []
  let group: T[] = []
  let segs = 0
  for (const c of convs) {
    if (group.length > 0 && (group.length >= SHARD_CAP_FACTOR * shardSize || segs >= MAX_SHARD_SEGMENTS || isShardStart(key, c.entry.peer, shardSize))) {
      out.push(group)
      group = []
      segs = 0
    }
    group.push(c)
    segs += c.segments.length
  }
  if (group.length > 0) out.push(group)
  return out
}

export function isShardStart (key: Uint8Array | KeyObject, peer: string, shardSize: number): boolean {
  const h = hmacSha256(key, Buffer.concat([SHARD_LABEL, new TextEncoder().encode(peer)]))
  return ((h[0] << 24 >>> 0) + (h[1] << 16) + (h[2] << 8) + h[3]) % shardSize === 0
}

/**
 * How the tail of a conversation (the messages after its last full segment, fewer than `segmentSize`) is
 * cut: into runs of decreasing powers of two (largest below segmentSize first) of at least TAIL_MIN
 * messages, then the remainder. Appending to a conversation then leaves the larger runs untouched and
 * rewrites only the small ones (a binary counter: amortised, each message is rewritten once per level),
 * instead of rewriting a tail of up to segmentSize - 1 messages at every version.
 */
export function tailChunks (n: number, segmentSize: number): number[] {
  const out: number[] = []
  let left = n
  let p = 1
  while (p * 2 < segmentSize) p *= 2
  for (; p >= TAIL_MIN; p /= 2) {
    if (left >= p) {
      out.push(p)
      left -= p
    }
  }
  if (left > 0) out.push(left)
  return out
}

/** The link for an attachment's CID text, when it is a sha2-256 CID (others stay in the message, unlinked). */
export function attachmentCid (text: string): CID | undefined {
  try {
    const c = toCid(text, 'attachment.cid')
    return c.multihash.code === SHA2_256 && c.multihash.digest.length === 32 ? c : undefined
  } catch {
    return undefined
  }
}
