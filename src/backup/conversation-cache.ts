/**
 * The conversation cache: what the builder made of a conversation last time (its manifest entry, its
 * segment blocks and attachment links), so an incremental backup does not read, encode and hash the
 * messages of a conversation that has not changed since, only to find every segment already stored.
 *
 * Why this is sound: the builder's output for a conversation is a deterministic function of its
 * messages, the backup key, the segment parameters (segmentSize, segmentBytes) and the builder's own
 * layout rules (segments, tail runs, encoding, sealing). The store keeps a change token per
 * conversation (ConversationRevision.rev) that every write of the conversation's rows replaces in the
 * same batch, and the builder reads the tokens and the rows from one snapshot: an entry recorded for
 * token T describes exactly the rows that carry T. Entries are used only when every segment block they
 * name is still stored (as the seal cache), and their counts must agree with the snapshot's summary.
 * The store also keeps an append run per conversation (ConversationRevision.run), kept only by writes that
 * add rows after its newest: while the run an entry names is unchanged, the entry's rows are the first
 * `count` rows now, so the builder keeps the segments a build of all rows would cut the same (the full
 * ones, and the leading tail runs) and reads only the rows after them.
 *
 *   key   = hex HMAC(K, "tokenim-backup/v2/conversation-cache/key\0" ‖ peer ‖ 0 ‖ params)
 *   entry = tag (32) ‖ body,  tag = HMAC(K, "tokenim-backup/v2/conversation-cache/entry\0" ‖ key ‖ body)
 *   body  = CBOR [rev, run, count, firstTs, lastTs, lastId, plaintextBytes,
 *                 [[count, firstTs, lastTs, blockSize, CID bytes, lastId, msgBytes, plain, full], …],
 *                 [attachment CID bytes, …]]
 *
 * One entry per conversation (and parameters), overwritten when it changes: the cache stays ~150 bytes
 * per conversation plus ~60 per segment. Keys depend on K (another passphrase: no hit); the tag makes a
 * damaged or planted entry a miss. `params` carries the segment parameters and {@link LAYOUT}: change
 * LAYOUT whenever the builder would cut, encode or seal the same messages differently, so entries made
 * by an older builder are never taken for what the new one would build.
 */
import type { KeyObject } from 'node:crypto'
import * as cborg from 'cborg'
import { encodeRecord } from '../util/cbor.ts'
import { CID } from 'multiformats/cid'
import { constantTimeEqual, hmacSha256, sha256 } from '../crypto/index.ts'

/** Where the entries live (a running node's `p2p.localKv('conversation-cache')` fits). */
export interface ConversationCache {
  get: (key: string) => Promise<Uint8Array | undefined>
  putMany: (entries: Array<[string, Uint8Array]>) => Promise<void>
}

/** The builder's layout rules these entries were made under (see the file comment). */
export const LAYOUT = 1

/** What the builder needs of a conversation to put it in the bundle without reading its messages. */
export interface CachedConversation {
  /** the store's change token the entry was made for */
  rev: string
  /** the store's append run then (ConversationRevision.run): while it is the same, these rows are a prefix of the rows */
  run?: string
  count: number
  firstTs: number
  lastTs: number
  lastId: string
  /** segment plaintext bytes (the totals' `bytes`) */
  plaintextBytes: number
  /** in segment order */
  segments: CachedSegment[]
  /** distinct attachment links in order of first reference */
  attachments: CID[]
}

/** A segment as built: its manifest fields, its block, and what the builder needs to build on after it. */
export interface CachedSegment {
  count: number
  firstTs: number
  lastTs: number
  /** the block's size and CID */
  size: number
  cid: CID
  /** id of its last message (with lastTs, where the conversation's rows after it start) */
  lastId: string
  /** its messages' encoded bytes (what the builder's segmentBytes counts) and its plaintext's */
  msgBytes: number
  plain: number
  /** cut because it was full (segmentSize or segmentBytes), not a tail run */
  full: boolean
}

export interface ConversationParams { formatVersion: number, segmentSize: number, segmentBytes: number }

const KEY_LABEL = new TextEncoder().encode('tokenim-backup/v2/conversation-cache/key\0')
const ENTRY_LABEL = new TextEncoder().encode('tokenim-backup/v2/conversation-cache/entry\0')
const TAG = 32

/** `key`: the backup key K, raw or as a KeyObject made once (secretKey: an HMAC per conversation is then ~10× cheaper) */
export function conversationCacheKey (key: Uint8Array | KeyObject, peer: string, p: ConversationParams): string {
  const params = `layout ${LAYOUT} format ${p.formatVersion} size ${p.segmentSize} bytes ${p.segmentBytes}`
  const h = hmacSha256(key, Buffer.concat([KEY_LABEL, new TextEncoder().encode(peer), Uint8Array.of(0), new TextEncoder().encode(params)]))
  return Buffer.from(h).toString('hex')
}

function tagOf (key: Uint8Array | KeyObject, cacheKey: string, body: Uint8Array): Uint8Array {
  return hmacSha256(key, Buffer.concat([ENTRY_LABEL, Buffer.from(cacheKey, 'hex'), body]))
}

export function encodeConversationEntry (key: Uint8Array | KeyObject, cacheKey: string, c: CachedConversation): Uint8Array {
  const value = [
    c.rev, c.run ?? '', c.count, c.firstTs, c.lastTs, c.lastId, c.plaintextBytes,
    c.segments.map(s => [s.count, s.firstTs, s.lastTs, s.size, s.cid.bytes, s.lastId, s.msgBytes, s.plain, s.full ? 1 : 0]),
    c.attachments.map(a => a.bytes)
  ]
  // cborg's bytes through the shared fast path (src/util/cbor.ts; cborg's generic encoder was ~50 µs an entry)
  const body = encodeRecord(value) ?? cborg.encode(value)
  return new Uint8Array(Buffer.concat([tagOf(key, cacheKey, body), body]))
}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0

/** The entry, or undefined when it is missing, malformed or not made under this key. */
export function decodeConversationEntry (key: Uint8Array | KeyObject, cacheKey: string, entry: Uint8Array | undefined): CachedConversation | undefined {
  if (entry === undefined || entry.length <= TAG) return undefined
  const body = entry.subarray(TAG)
  if (!constantTimeEqual(entry.subarray(0, TAG), tagOf(key, cacheKey, body))) return undefined
  try {
    const v = cborg.decode(body) as unknown
    if (!Array.isArray(v) || v.length !== 9) return undefined
    const [rev, run, count, firstTs, lastTs, lastId, plaintextBytes, segs, atts] = v as unknown[]
    if (typeof rev !== 'string' || typeof run !== 'string' || typeof lastId !== 'string' || !isCount(count) || !isCount(firstTs) || !isCount(lastTs) || !isCount(plaintextBytes)) return undefined
    if (!Array.isArray(segs) || !Array.isArray(atts)) return undefined
    const segments: CachedConversation['segments'] = []
    let n = 0
    let fullOnes = true
    for (const s of segs as unknown[]) {
      if (!Array.isArray(s) || s.length !== 9 || !isCount(s[0]) || !isCount(s[1]) || !isCount(s[2]) || !isCount(s[3]) || !(s[4] instanceof Uint8Array)) return undefined
      if (typeof s[5] !== 'string' || !isCount(s[6]) || !isCount(s[7]) || (s[8] !== 0 && s[8] !== 1)) return undefined
      // the full segments come first, then the tail runs
      if (s[8] === 1 && !fullOnes) return undefined
      fullOnes = s[8] === 1
      segments.push({ count: s[0], firstTs: s[1], lastTs: s[2], size: s[3], cid: CID.decode(new Uint8Array(s[4])), lastId: s[5], msgBytes: s[6], plain: s[7], full: s[8] === 1 })
      n += s[0]
    }
    if (n !== count || segments.length === 0) return undefined
    const attachments: CID[] = []
    for (const a of atts as unknown[]) {
      if (!(a instanceof Uint8Array)) return undefined
      attachments.push(CID.decode(new Uint8Array(a)))
    }
    return { rev, ...(run !== '' ? { run } : {}), count, firstTs, lastTs, lastId, plaintextBytes, segments, attachments }
  } catch {
    return undefined
  }
}

/*
 * Manifest shards (format v2) are cached the same way: a shard's node is a deterministic function of its
 * conversations' built results (and K), so a shard whose conversations and their change tokens are those
 * it was made of is the same block. One entry per shard start (a shard's first conversation), overwritten:
 *
 *   key     = hex HMAC(K, "tokenim-backup/v2/conversation-cache/shard-key\0" ‖ first peer ‖ 0 ‖ params)
 *   members = SHA-256 of (peer ‖ 0 ‖ rev ‖ 0) for each of its conversations, in order
 *   entry   = tag (32) ‖ members (32) ‖ size (u32 BE) ‖ CID bytes,  tag = HMAC(K, "…/shard-entry\0" ‖ key ‖ rest)
 */
const SHARD_KEY_LABEL = new TextEncoder().encode('tokenim-backup/v2/conversation-cache/shard-key\0')
const SHARD_ENTRY_LABEL = new TextEncoder().encode('tokenim-backup/v2/conversation-cache/shard-entry\0')

export function shardCacheKey (key: Uint8Array | KeyObject, firstPeer: string, p: ConversationParams & { shardSize: number }): string {
  const params = `layout ${LAYOUT} format ${p.formatVersion} size ${p.segmentSize} bytes ${p.segmentBytes} shard ${p.shardSize}`
  const h = hmacSha256(key, Buffer.concat([SHARD_KEY_LABEL, new TextEncoder().encode(firstPeer), Uint8Array.of(0), new TextEncoder().encode(params)]))
  return Buffer.from(h).toString('hex')
}

/** What a shard is made of: its conversations and their change tokens, in order. */
export function shardMembers (members: Array<{ peer: string, rev: string }>): Uint8Array {
  return sha256(members.map(m => `${m.peer}\0${m.rev}\0`).join(''))
}

function shardTag (key: Uint8Array | KeyObject, cacheKey: string, rest: Uint8Array): Uint8Array {
  return hmacSha256(key, Buffer.concat([SHARD_ENTRY_LABEL, Buffer.from(cacheKey, 'hex'), rest]))
}

export function encodeShardEntry (key: Uint8Array | KeyObject, cacheKey: string, members: Uint8Array, cid: CID, size: number): Uint8Array {
  const size4 = new Uint8Array(4)
  new DataView(size4.buffer).setUint32(0, size)
  const rest = Buffer.concat([members, size4, cid.bytes])
  return new Uint8Array(Buffer.concat([shardTag(key, cacheKey, rest), rest]))
}

/** The entry's block, when the entry is well made under this key and names exactly these members. */
export function decodeShardEntry (key: Uint8Array | KeyObject, cacheKey: string, members: Uint8Array, entry: Uint8Array | undefined): { cid: CID, size: number } | undefined {
  if (entry === undefined || entry.length < TAG + 32 + 4 + 4) return undefined
  const rest = entry.subarray(TAG)
  if (!constantTimeEqual(entry.subarray(0, TAG), shardTag(key, cacheKey, rest))) return undefined
  if (!constantTimeEqual(rest.subarray(0, 32), members)) return undefined
  try {
    return { cid: CID.decode(new Uint8Array(rest.subarray(36))), size: new DataView(rest.buffer, rest.byteOffset + 32, 4).getUint32(0) }
  } catch {
    return undefined
  }
}
