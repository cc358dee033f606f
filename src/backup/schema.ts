/**
 * Encoding and strict validation of every v1 and v2 structure (docs/backup-format.md#block-encodings).
 * Decoders take untrusted bytes and either return a clean, typed value or throw a TokenimError
 * (BACKUP_MALFORMED / BACKUP_FORMAT_UNSUPPORTED); they never throw anything else.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { validateKdfParams } from '../crypto/index.ts'
import type { KdfParams } from '../crypto/index.ts'
import type { Contact, StoredMessage } from '../store/index.ts'
import { NOT_DECODED, decodeDagCbor, encodeDagCbor, encodeDagCborView } from '../util/cbor.ts'
import { isChecksummedAddress } from './address.ts'
import { BackupErrorCode, backupError, malformed } from './errors.ts'
import { DAG_CBOR, FORMAT_NAME, MAX_LIST, MAX_SEGMENT_BYTES, MAX_SEGMENT_SIZE, MAX_SHARD_SIZE, MIN_SEGMENT_BYTES, RAW, SHA2_256, SUPPORTED_VERSIONS } from './constants.ts'

type Where = Record<string, unknown>
type Obj = Record<string, unknown>

const LOWER_ADDRESS_RE = /^0x[0-9a-f]{40}$/
const ID_RE = /^[\x21-\x7e]{1,128}$/
const SHA256_HEX_RE = /^[0-9a-f]{64}$/
const STATUSES = ['queued', 'sent', 'delivered', 'received', 'failed']
const MAX_TEXT = 1_000_000
const MAX_NAME = 1024

/** The plaintext root block. */
export interface BackupHeader {
  format: typeof FORMAT_NAME
  v: number
  /** EIP-55 checksummed */
  owner: string
  version: number
  created: number
  kdf: KdfParams | null
  manifest: CID
}

/**
 * The manifest node: plaintext links plus the sealed manifest. For v2 bundles, readManifestNode fetches the
 * top node, every shard node and the contacts box, and presents their links as one list (`segments` in
 * manifest order, `attachments` distinct); `sharded` keeps the v2 pieces the manifest is opened from.
 */
export interface ManifestNode {
  sealed: Uint8Array
  segments: CID[]
  attachments: CID[]
  sharded?: ShardedNode
}

/** v2: the top manifest node, its shards and the contacts box, as read (hash-checked, not yet opened). */
export interface ShardedNode {
  top: TopNode
  shards: Array<ShardNode & { cid: CID }>
  contactsBox: Uint8Array
}

/** v2 top manifest node (plaintext): the sealed index, the shard links and the contacts box link. */
export interface TopNode {
  sealed: Uint8Array
  shards: CID[]
  /** raw CID of the sealed contacts box */
  contacts: CID
}

/** v2 shard node (plaintext): a sealed shard plus the links of its conversations' segments and attachments. */
export interface ShardNode {
  sealed: Uint8Array
  segments: CID[]
  attachments: CID[]
}

/** v2: what the index says about each shard (cross-checked against the opened shard). */
export interface ShardSummary {
  conversations: number
  segments: number
  messages: number
  attachments: number
}

/** v2 sealed index (kind "index"). */
export interface ManifestIndex {
  type: 'index'
  owner: string
  version: number
  created: number
  kdf: KdfParams | null
  prev: { version: number, root: CID } | null
  segmentSize: number
  segmentBytes: number
  shardSize: number
  /** SHA-256(dag-cbor({ shards, contacts })) of the top node's links */
  links: Uint8Array
  shards: ShardSummary[]
  totals: ManifestTotals
}

/** v2 sealed shard (kind "shard"). */
export interface ManifestShard {
  type: 'shard'
  /** SHA-256(dag-cbor({ segments, attachments })) of the shard node's links */
  links: Uint8Array
  conversations: ManifestConversation[]
}

export interface SegmentInfo {
  count: number
  firstTs: number
  lastTs: number
}

export interface ManifestConversation {
  peer: string
  count: number
  firstTs: number
  lastTs: number
  lastId: string
  segments: SegmentInfo[]
}

export interface ManifestTotals {
  messages: number
  conversations: number
  segments: number
  attachments: number
  /** segment plaintext bytes before compression */
  bytes: number
}

/** The decrypted manifest. */
export interface Manifest {
  type: 'manifest'
  owner: string
  version: number
  created: number
  kdf: KdfParams | null
  prev: { version: number, root: CID } | null
  segmentSize: number
  segmentBytes: number
  links: Uint8Array
  conversations: ManifestConversation[]
  contacts: Contact[]
  totals: ManifestTotals
  /** v2 only: the target shard size and the per-shard summaries */
  shardSize?: number
  shards?: ShardSummary[]
}

/** A message as stored in a segment: StoredMessage without `conversation` (the segment's `conv`). */
export type SegmentMessage = Omit<StoredMessage, 'conversation'>

export interface Segment {
  type: 'segment'
  conv: string
  seq: number
  msgs: SegmentMessage[]
}

// ---------------------------------------------------------------------------------------------------------
// generic helpers

/**
 * dag-cbor bytes: plain data (every segment message, a segment's skeleton, a shard) through the shared fast
 * path (src/util/cbor.ts, byte for byte what @ipld/dag-cbor writes), anything else (CIDs) through
 * @ipld/dag-cbor. A segment message was encoded by dag-cbor's generic encoder at ~12 µs, a fifth of a
 * backup's CPU.
 */
export function encode (value: unknown): Uint8Array {
  return encodeDagCbor(value) ?? dagCbor.encode(value)
}

/**
 * A segment message's dag-cbor, as {@link encode} gives it, but (on the fast path) a view into shared
 * memory, not a copy of its own: for the builder, which keeps a segment's message encodings only until it
 * splices them into the segment (an allocation per message, ~0.1 s of a 100,000-message build).
 */
export function encodeMessage (m: SegmentMessage): Uint8Array {
  return encodeDagCborView(m) ?? dagCbor.encode(m)
}

/** Decode dag-cbor strictly; with `canonical`, also require the bytes to be the canonical encoding. */
export function decode (bytes: Uint8Array, where: Where, canonical = false): unknown {
  // plain data (a segment and its messages) through the shared fast path (src/util/cbor.ts: the value
  // @ipld/dag-cbor gives, ~4x faster); anything it does not read — CIDs, bytes, whatever dag-cbor refuses —
  // through @ipld/dag-cbor, which decodes or refuses it as before
  let value: unknown = decodeDagCbor(bytes)
  if (value === NOT_DECODED) {
    try {
      value = dagCbor.decode(bytes)
    } catch (err) {
      throw malformed('block is not valid dag-cbor', { ...where, reason: 'cbor' }, err)
    }
  }
  if (canonical) {
    let again: Uint8Array
    try {
      again = dagCbor.encode(value)
    } catch (err) {
      throw malformed('block is not canonical dag-cbor', { ...where, reason: 'cbor-canonical' }, err)
    }
    if (Buffer.compare(again, bytes) !== 0) throw malformed('block is not canonical dag-cbor', { ...where, reason: 'cbor-canonical' })
  }
  return value
}

function isObj (v: unknown): v is Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array || CID.asCID(v) !== null) return false
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

/** Require `v` to be a plain map whose own keys are all in `required` ∪ `optional` and include `required`. */
function shape (v: unknown, name: string, required: readonly string[], optional: readonly string[], where: Where): Obj {
  if (!isObj(v)) throw malformed(`${name} must be a map`, { ...where, field: name })
  const keys = Object.keys(v)
  for (const k of keys) {
    if (!required.includes(k) && !optional.includes(k)) throw malformed(`${name} has an unknown field`, { ...where, field: `${name}.${k.slice(0, 32)}` })
  }
  for (const k of required) {
    if (!Object.hasOwn(v, k)) throw malformed(`${name} lacks ${k}`, { ...where, field: `${name}.${k}` })
  }
  return v
}

function get (o: Obj, k: string): unknown {
  return Object.hasOwn(o, k) ? o[k] : undefined
}

function uint (v: unknown, field: string, where: Where, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw malformed(`${field} must be an integer in ${min}..${max}`, { ...where, field })
  }
  return v
}

function str (v: unknown, field: string, where: Where, max: number, min = 0): string {
  if (typeof v !== 'string' || v.length > max || v.length < min) {
    throw malformed(`${field} must be a string of ${min}..${max} characters`, { ...where, field })
  }
  return v
}

function address (v: unknown, field: string, where: Where): string {
  if (typeof v !== 'string' || !LOWER_ADDRESS_RE.test(v)) throw malformed(`${field} must be a lowercase 0x address`, { ...where, field })
  return v
}

function list (v: unknown, field: string, where: Where, max = MAX_LIST): unknown[] {
  if (!Array.isArray(v) || v.length > max) throw malformed(`${field} must be a list of at most ${max} items`, { ...where, field })
  return v
}

function cid (v: unknown, field: string, where: Where): CID {
  const c = CID.asCID(v)
  if (c === null) throw malformed(`${field} must be a CID link`, { ...where, field })
  if (c.multihash.code !== SHA2_256 || c.multihash.digest.length !== 32) throw malformed(`${field} must be a sha2-256 CID`, { ...where, field })
  return c
}

function bytes (v: unknown, field: string, where: Where, length?: number): Uint8Array {
  if (!(v instanceof Uint8Array) || (length !== undefined && v.length !== length)) {
    throw malformed(`${field} must be ${length === undefined ? '' : `${length} `}bytes`, { ...where, field })
  }
  return v
}

function kdf (v: unknown, field: string, where: Where): KdfParams | null {
  if (v === null) return null
  try {
    return validateKdfParams(v)
  } catch (err) {
    throw malformed(`${field} is not valid KDF parameters`, { ...where, field }, err)
  }
}

// ---------------------------------------------------------------------------------------------------------
// root

export function encodeHeader (h: BackupHeader): Uint8Array {
  return encode({ format: h.format, v: h.v, owner: h.owner, version: h.version, created: h.created, kdf: h.kdf, manifest: h.manifest })
}

/** Validate a decoded root. An unknown `format` or `v` is BACKUP_FORMAT_UNSUPPORTED. */
export function checkHeader (value: unknown, where: Where): BackupHeader {
  if (!isObj(value)) throw malformed('the root is not a map', { ...where, field: 'root' })
  if (get(value, 'format') !== FORMAT_NAME) {
    throw backupError(BackupErrorCode.BACKUP_FORMAT_UNSUPPORTED, 'the root is not a tokenim backup', { ...where, reason: 'format' })
  }
  const v = get(value, 'v')
  if (typeof v !== 'number' || !SUPPORTED_VERSIONS.includes(v)) {
    throw backupError(BackupErrorCode.BACKUP_FORMAT_UNSUPPORTED,
      `backup format version ${typeof v === 'number' ? v : '?'} is not supported by this tokenim (it reads ${SUPPORTED_VERSIONS.join(', ')}): upgrade tokenim`,
      { ...where, reason: 'version', found: typeof v === 'number' ? v : null, supported: [...SUPPORTED_VERSIONS] })
  }
  const o = shape(value, 'root', ['format', 'v', 'owner', 'version', 'created', 'kdf', 'manifest'], [], where)
  const owner = get(o, 'owner')
  if (!isChecksummedAddress(owner)) throw malformed('root.owner must be an EIP-55 checksummed address', { ...where, field: 'root.owner' })
  const manifest = cid(get(o, 'manifest'), 'root.manifest', where)
  if (manifest.code !== 0x71) throw malformed('root.manifest must be a dag-cbor CID', { ...where, field: 'root.manifest' })
  return {
    format: FORMAT_NAME,
    v,
    owner,
    version: uint(get(o, 'version'), 'root.version', where, 1),
    created: uint(get(o, 'created'), 'root.created', where),
    kdf: kdf(get(o, 'kdf'), 'root.kdf', where),
    manifest
  }
}

export function decodeHeader (block: Uint8Array, where: Where): BackupHeader {
  return checkHeader(decode(block, where, true), where)
}

// ---------------------------------------------------------------------------------------------------------
// manifest node

export function encodeManifestNode (n: ManifestNode): Uint8Array {
  return encode({ sealed: n.sealed, segments: n.segments, attachments: n.attachments })
}

/** The `links` commitment: SHA-256 input of the two plaintext lists. */
export function encodeLinks (segments: CID[], attachments: CID[]): Uint8Array {
  return encode({ segments, attachments })
}

export function decodeManifestNode (block: Uint8Array, where: Where): ManifestNode {
  const o = shape(decode(block, where, true), 'manifest node', ['sealed', 'segments', 'attachments'], [], where)
  const segments = list(get(o, 'segments'), 'segments', where).map((c, i) => {
    const s = cid(c, `segments[${i}]`, where)
    if (s.code !== RAW) throw malformed(`segments[${i}] must be a raw CID`, { ...where, field: `segments[${i}]` })
    return s
  })
  const attachments = list(get(o, 'attachments'), 'attachments', where).map((c, i) => cid(c, `attachments[${i}]`, where))
  return { sealed: bytes(get(o, 'sealed'), 'sealed', where), segments, attachments }
}

// ---------------------------------------------------------------------------------------------------------
// manifest

export function encodeManifest (m: Manifest): Uint8Array {
  return encode({
    type: m.type,
    owner: m.owner,
    version: m.version,
    created: m.created,
    kdf: m.kdf,
    prev: m.prev === null ? null : { version: m.prev.version, root: m.prev.root },
    segmentSize: m.segmentSize,
    segmentBytes: m.segmentBytes,
    links: m.links,
    conversations: m.conversations.map(encodableConversation),
    contacts: m.contacts.map(encodableContact),
    totals: m.totals
  })
}

function encodableConversation (c: ManifestConversation): Obj {
  return { peer: c.peer, count: c.count, firstTs: c.firstTs, lastTs: c.lastTs, lastId: c.lastId, segments: c.segments.map(s => [s.count, s.firstTs, s.lastTs]) }
}

function encodableContact (c: Contact): Obj {
  return c.name === undefined || c.name === null ? { address: c.address, addedAt: c.addedAt } : { address: c.address, addedAt: c.addedAt, name: c.name }
}

function checkContact (v: unknown, i: number, where: Where): Contact {
  const o = shape(v, `contacts[${i}]`, ['address', 'addedAt'], ['name'], where)
  const c: Contact = { address: address(get(o, 'address'), `contacts[${i}].address`, where), addedAt: uint(get(o, 'addedAt'), `contacts[${i}].addedAt`, where) }
  if (Object.hasOwn(o, 'name')) c.name = str(get(o, 'name'), `contacts[${i}].name`, where, MAX_NAME)
  return c
}

function checkConversation (v: unknown, i: number, where: Where, segmentSize: number): ManifestConversation {
  const f = `conversations[${i}]`
  const o = shape(v, f, ['peer', 'count', 'firstTs', 'lastTs', 'lastId', 'segments'], [], where)
  const peer = address(get(o, 'peer'), `${f}.peer`, where)
  const w = { ...where, conversation: peer }
  const conv: ManifestConversation = {
    peer,
    count: uint(get(o, 'count'), `${f}.count`, w, 1),
    firstTs: uint(get(o, 'firstTs'), `${f}.firstTs`, w),
    lastTs: uint(get(o, 'lastTs'), `${f}.lastTs`, w),
    lastId: str(get(o, 'lastId'), `${f}.lastId`, w, 128, 1),
    segments: list(get(o, 'segments'), `${f}.segments`, w).map((s, j) => {
      const t = list(s, `${f}.segments[${j}]`, w, 3)
      if (t.length !== 3) throw malformed(`${f}.segments[${j}] must be [count, firstTs, lastTs]`, { ...w, field: `${f}.segments[${j}]` })
      const seg = {
        count: uint(t[0], `${f}.segments[${j}][0]`, w, 1, segmentSize),
        firstTs: uint(t[1], `${f}.segments[${j}][1]`, w),
        lastTs: uint(t[2], `${f}.segments[${j}][2]`, w)
      }
      if (seg.firstTs > seg.lastTs) throw malformed(`${f}.segments[${j}] has firstTs > lastTs`, { ...w, field: `${f}.segments[${j}]` })
      return seg
    })
  }
  if (conv.segments.length === 0) throw malformed(`${f} has no segments`, { ...w, field: `${f}.segments` })
  let sum = 0
  let prevLast = -1
  for (const s of conv.segments) {
    sum += s.count
    if (s.firstTs < prevLast) throw malformed(`${f} segments are not in time order`, { ...w, field: `${f}.segments` })
    prevLast = s.lastTs
  }
  if (sum !== conv.count) {
    throw backupError(BackupErrorCode.COUNT_MISMATCH, `conversation ${peer}: segments hold ${sum} messages, the manifest says ${conv.count}`, { ...w, expected: conv.count, actual: sum })
  }
  if (conv.firstTs !== conv.segments[0].firstTs || conv.lastTs !== conv.segments[conv.segments.length - 1].lastTs) {
    throw malformed(`${f} time range disagrees with its segments`, { ...w, field: f })
  }
  return conv
}

/** Validate a decrypted manifest (shape and internal sums; cross-checks with the root/node are the caller's). */
export function decodeManifest (plain: Uint8Array, where: Where): Manifest {
  const o = shape(decode(plain, where), 'manifest',
    ['type', 'owner', 'version', 'created', 'kdf', 'prev', 'segmentSize', 'segmentBytes', 'links', 'conversations', 'contacts', 'totals'], [], where)
  if (get(o, 'type') !== 'manifest') throw malformed('manifest.type must be "manifest"', { ...where, field: 'manifest.type' })
  const common = checkCommon(o, 'manifest', where)
  const conversations = list(get(o, 'conversations'), 'manifest.conversations', where).map((c, i) => checkConversation(c, i, where, common.segmentSize))
  checkTotals(conversations, common.totals, where)
  return {
    type: 'manifest',
    ...common,
    conversations,
    contacts: checkContacts(get(o, 'contacts'), 'manifest.contacts', where)
  }
}

/** The fields the v1 manifest and the v2 index share. */
function checkCommon (o: Obj, name: string, where: Where): Omit<Manifest, 'type' | 'conversations' | 'contacts' | 'shardSize' | 'shards'> {
  const owner = get(o, 'owner')
  if (!isChecksummedAddress(owner)) throw malformed(`${name}.owner must be an EIP-55 checksummed address`, { ...where, field: `${name}.owner` })
  let prev: Manifest['prev'] = null
  if (get(o, 'prev') !== null) {
    const p = shape(get(o, 'prev'), `${name}.prev`, ['version', 'root'], [], where)
    prev = { version: uint(get(p, 'version'), `${name}.prev.version`, where, 1), root: cid(get(p, 'root'), `${name}.prev.root`, where) }
  }
  const t = shape(get(o, 'totals'), `${name}.totals`, ['messages', 'conversations', 'segments', 'attachments', 'bytes'], [], where)
  return {
    owner,
    version: uint(get(o, 'version'), `${name}.version`, where, 1),
    created: uint(get(o, 'created'), `${name}.created`, where),
    kdf: kdf(get(o, 'kdf'), `${name}.kdf`, where),
    prev,
    segmentSize: uint(get(o, 'segmentSize'), `${name}.segmentSize`, where, 1, MAX_SEGMENT_SIZE),
    segmentBytes: uint(get(o, 'segmentBytes'), `${name}.segmentBytes`, where, MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES),
    links: bytes(get(o, 'links'), `${name}.links`, where, 32),
    totals: {
      messages: uint(get(t, 'messages'), 'totals.messages', where),
      conversations: uint(get(t, 'conversations'), 'totals.conversations', where),
      segments: uint(get(t, 'segments'), 'totals.segments', where),
      attachments: uint(get(t, 'attachments'), 'totals.attachments', where),
      bytes: uint(get(t, 'bytes'), 'totals.bytes', where)
    }
  }
}

function checkContacts (v: unknown, field: string, where: Where): Contact[] {
  return list(v, field, where).map((c, i) => checkContact(c, i, where))
}

/** Conversations appear once each, and their counts add up to the totals. */
export function checkTotals (conversations: ManifestConversation[], totals: ManifestTotals, where: Where): void {
  const peers = new Set<string>()
  let messages = 0
  let segments = 0
  for (const c of conversations) {
    if (peers.has(c.peer)) throw malformed(`conversation ${c.peer} appears twice in the manifest`, { ...where, conversation: c.peer, field: 'manifest.conversations' })
    peers.add(c.peer)
    messages += c.count
    segments += c.segments.length
  }
  if (messages !== totals.messages) {
    throw backupError(BackupErrorCode.COUNT_MISMATCH, `the manifest's conversations hold ${messages} messages, its totals say ${totals.messages}`, { ...where, expected: totals.messages, actual: messages })
  }
  if (conversations.length !== totals.conversations || segments !== totals.segments) {
    throw backupError(BackupErrorCode.COUNT_MISMATCH, 'the manifest totals disagree with its conversations', { ...where, field: 'manifest.totals' })
  }
}

// ---------------------------------------------------------------------------------------------------------
// v2: top node, shard nodes, index, shards, contacts

export function encodeTopNode (n: TopNode): Uint8Array {
  return encode({ sealed: n.sealed, shards: n.shards, contacts: n.contacts })
}

/** The v2 index's `links` commitment: SHA-256 input of the top node's plaintext links. */
export function encodeTopLinks (shards: CID[], contacts: CID): Uint8Array {
  return encode({ shards, contacts })
}

export function decodeTopNode (block: Uint8Array, where: Where): TopNode {
  const o = shape(decode(block, where, true), 'manifest node', ['sealed', 'shards', 'contacts'], [], where)
  const shards = list(get(o, 'shards'), 'shards', where).map((c, i) => {
    const s = cid(c, `shards[${i}]`, where)
    if (s.code !== DAG_CBOR) throw malformed(`shards[${i}] must be a dag-cbor CID`, { ...where, field: `shards[${i}]` })
    return s
  })
  const contacts = cid(get(o, 'contacts'), 'contacts', where)
  if (contacts.code !== RAW) throw malformed('contacts must be a raw CID', { ...where, field: 'contacts' })
  return { sealed: bytes(get(o, 'sealed'), 'sealed', where), shards, contacts }
}

export function encodeShardNode (n: ShardNode): Uint8Array {
  return encodeManifestNode(n)
}

/** A shard node has the v1 manifest node's shape: { sealed, segments, attachments }. */
export function decodeShardNode (block: Uint8Array, where: Where): ShardNode {
  return decodeManifestNode(block, where)
}

export function encodeIndex (m: ManifestIndex): Uint8Array {
  return encode({
    type: m.type,
    owner: m.owner,
    version: m.version,
    created: m.created,
    kdf: m.kdf,
    prev: m.prev === null ? null : { version: m.prev.version, root: m.prev.root },
    segmentSize: m.segmentSize,
    segmentBytes: m.segmentBytes,
    shardSize: m.shardSize,
    links: m.links,
    shards: m.shards.map(s => [s.conversations, s.segments, s.messages, s.attachments]),
    totals: m.totals
  })
}

export function decodeIndex (plain: Uint8Array, where: Where): ManifestIndex {
  const o = shape(decode(plain, where), 'index',
    ['type', 'owner', 'version', 'created', 'kdf', 'prev', 'segmentSize', 'segmentBytes', 'shardSize', 'links', 'shards', 'totals'], [], where)
  if (get(o, 'type') !== 'index') throw malformed('index.type must be "index"', { ...where, field: 'index.type' })
  const common = checkCommon(o, 'index', where)
  const shards = list(get(o, 'shards'), 'index.shards', where).map((v, i): ShardSummary => {
    const t = list(v, `index.shards[${i}]`, where, 4)
    if (t.length !== 4) throw malformed(`index.shards[${i}] must be [conversations, segments, messages, attachments]`, { ...where, field: `index.shards[${i}]` })
    const f = `index.shards[${i}]`
    return { conversations: uint(t[0], `${f}[0]`, where, 1), segments: uint(t[1], `${f}[1]`, where, 1), messages: uint(t[2], `${f}[2]`, where, 1), attachments: uint(t[3], `${f}[3]`, where) }
  })
  let conversations = 0
  let segments = 0
  let messages = 0
  for (const s of shards) {
    conversations += s.conversations
    segments += s.segments
    messages += s.messages
  }
  if (conversations !== common.totals.conversations || segments !== common.totals.segments || messages !== common.totals.messages) {
    throw backupError(BackupErrorCode.COUNT_MISMATCH, 'the index\'s shard summaries disagree with its totals', { ...where, field: 'index.shards' })
  }
  return { type: 'index', ...common, shardSize: uint(get(o, 'shardSize'), 'index.shardSize', where, 1, MAX_SHARD_SIZE), shards }
}

export function encodeShard (s: ManifestShard): Uint8Array {
  return encode({ type: s.type, links: s.links, conversations: s.conversations.map(encodableConversation) })
}

export function decodeShard (plain: Uint8Array, where: Where, segmentSize: number): ManifestShard {
  const o = shape(decode(plain, where), 'shard', ['type', 'links', 'conversations'], [], where)
  if (get(o, 'type') !== 'shard') throw malformed('shard.type must be "shard"', { ...where, field: 'shard.type' })
  const conversations = list(get(o, 'conversations'), 'shard.conversations', where).map((c, i) => checkConversation(c, i, where, segmentSize))
  if (conversations.length === 0) throw malformed('a shard has no conversations', { ...where, field: 'shard.conversations' })
  return { type: 'shard', links: bytes(get(o, 'links'), 'shard.links', where, 32), conversations }
}

export function encodeContacts (contacts: Contact[]): Uint8Array {
  return encode({ type: 'contacts', contacts: contacts.map(encodableContact) })
}

export function decodeContacts (plain: Uint8Array, where: Where): Contact[] {
  const o = shape(decode(plain, where), 'contacts', ['type', 'contacts'], [], where)
  if (get(o, 'type') !== 'contacts') throw malformed('contacts.type must be "contacts"', { ...where, field: 'contacts.type' })
  return checkContacts(get(o, 'contacts'), 'contacts.contacts', where)
}

// ---------------------------------------------------------------------------------------------------------
// segments

const MESSAGE_REQUIRED = ['id', 'from', 'to', 'ts', 'text', 'direction', 'status'] as const
const MESSAGE_OPTIONAL = ['attachment', 'receivedAt'] as const

/** Validate one message as a segment holds it (BACKUP_MALFORMED; the builder rewraps as BACKUP_SOURCE_INVALID). */
export function checkSegmentMessage (v: unknown, conv: string, where: Where): SegmentMessage {
  return plainSegmentMessage(v, conv) ?? checkSegmentMessageFully(v, conv, where)
}

/**
 * The common case of {@link checkSegmentMessage} — a message without an attachment that passes every
 * check — without building the context its errors would carry (an object per message and per field
 * check): the same checks, and undefined for anything else, which the full check then returns or refuses
 * with its precise error. A test holds the two to the same answers.
 */
function plainSegmentMessage (v: unknown, conv: string): SegmentMessage | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) return undefined
  const proto = Object.getPrototypeOf(v)
  if ((proto !== Object.prototype && proto !== null) || CID.asCID(v) !== null) return undefined
  const o = v as Obj
  const keys = Object.keys(o)
  const received = Object.hasOwn(o, 'receivedAt')
  // with the count, every required field is there (own keys are distinct)
  if (keys.length !== (received ? 8 : 7)) return undefined
  for (const k of keys) {
    if (k !== 'id' && k !== 'from' && k !== 'to' && k !== 'ts' && k !== 'text' && k !== 'direction' && k !== 'status' && k !== 'receivedAt') return undefined
  }
  const { id, from, to, ts, text, direction, status } = o
  if (typeof id !== 'string' || !ID_RE.test(id)) return undefined
  if (direction !== 'in' && direction !== 'out') return undefined
  if (typeof from !== 'string' || !LOWER_ADDRESS_RE.test(from) || typeof to !== 'string' || !LOWER_ADDRESS_RE.test(to)) return undefined
  if (direction === 'in' ? from !== conv : to !== conv) return undefined
  if (typeof status !== 'string' || !STATUSES.includes(status)) return undefined
  if (typeof ts !== 'number' || !Number.isSafeInteger(ts) || ts < 0) return undefined
  if (typeof text !== 'string' || text.length > MAX_TEXT) return undefined
  const m: SegmentMessage = { id, from, to, ts, text, direction, status: status as SegmentMessage['status'] }
  if (received) {
    const r = o.receivedAt
    if (typeof r !== 'number' || !Number.isSafeInteger(r) || r < 0) return undefined
    m.receivedAt = r
  }
  return m
}

/** {@link checkSegmentMessage} with every check spelled out (and its precise errors); exported for a test. */
export function checkSegmentMessageFully (v: unknown, conv: string, where: Where): SegmentMessage {
  const o = shape(v, 'message', MESSAGE_REQUIRED, MESSAGE_OPTIONAL, where)
  const idv = get(o, 'id')
  if (typeof idv !== 'string' || !ID_RE.test(idv)) throw malformed('message.id must be 1..128 printable ASCII characters', { ...where, field: 'id' })
  const w = { ...where, id: idv }
  const direction = get(o, 'direction')
  if (direction !== 'in' && direction !== 'out') throw malformed('message.direction must be "in" or "out"', { ...w, field: 'direction' })
  const from = address(get(o, 'from'), 'from', w)
  const to = address(get(o, 'to'), 'to', w)
  if (direction === 'in' && from !== conv) throw malformed('an incoming message must come from its conversation', { ...w, field: 'from' })
  if (direction === 'out' && to !== conv) throw malformed('an outgoing message must go to its conversation', { ...w, field: 'to' })
  const status = get(o, 'status')
  if (typeof status !== 'string' || !STATUSES.includes(status)) throw malformed('message.status is not a known status', { ...w, field: 'status' })
  const m: SegmentMessage = {
    id: idv,
    from,
    to,
    ts: uint(get(o, 'ts'), 'ts', w),
    text: str(get(o, 'text'), 'text', w, MAX_TEXT),
    direction,
    status: status as SegmentMessage['status']
  }
  if (Object.hasOwn(o, 'attachment')) {
    const a = shape(get(o, 'attachment'), 'attachment', ['cid', 'key', 'name', 'mime', 'size', 'sha256'], [], w)
    const sha = get(a, 'sha256')
    if (typeof sha !== 'string' || !SHA256_HEX_RE.test(sha)) throw malformed('attachment.sha256 must be 64 lowercase hex characters', { ...w, field: 'attachment.sha256' })
    m.attachment = {
      cid: str(get(a, 'cid'), 'attachment.cid', w, 512, 1),
      key: str(get(a, 'key'), 'attachment.key', w, 512, 1),
      name: str(get(a, 'name'), 'attachment.name', w, MAX_NAME),
      mime: str(get(a, 'mime'), 'attachment.mime', w, 255),
      size: uint(get(a, 'size'), 'attachment.size', w),
      sha256: sha
    }
  }
  if (Object.hasOwn(o, 'receivedAt')) m.receivedAt = uint(get(o, 'receivedAt'), 'receivedAt', w)
  return m
}

/** The segment form of a store message (fields in a fixed order, `conversation` dropped, optional fields omitted). */
export function toSegmentMessage (m: StoredMessage): SegmentMessage {
  const out: SegmentMessage = { id: m.id, from: m.from, to: m.to, ts: m.ts, text: m.text, direction: m.direction, status: m.status }
  if (m.attachment !== undefined && m.attachment !== null) {
    const a = m.attachment
    out.attachment = { cid: a.cid, key: a.key, name: a.name, mime: a.mime, size: a.size, sha256: a.sha256 }
  }
  if (m.receivedAt !== undefined && m.receivedAt !== null) out.receivedAt = m.receivedAt
  return out
}

export function fromSegmentMessage (conv: string, m: SegmentMessage): StoredMessage {
  const out: StoredMessage = { id: m.id, conversation: conv, from: m.from, to: m.to, ts: m.ts, text: m.text, direction: m.direction, status: m.status }
  if (m.attachment !== undefined) out.attachment = { ...m.attachment }
  if (m.receivedAt !== undefined) out.receivedAt = m.receivedAt
  return out
}

export function encodeSegment (s: Segment): Uint8Array {
  return encode({ type: s.type, conv: s.conv, seq: s.seq, msgs: s.msgs })
}

/** (ts, id) order: negative when a sorts before b. Ids compare as byte strings (they are ASCII). */
export function compareMessages (a: { ts: number, id: string }, b: { ts: number, id: string }): number {
  if (a.ts !== b.ts) return a.ts - b.ts
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}

export function decodeSegment (plain: Uint8Array, where: Where, maxMessages: number): Segment {
  const o = shape(decode(plain, where), 'segment', ['type', 'conv', 'seq', 'msgs'], [], where)
  if (get(o, 'type') !== 'segment') throw malformed('segment.type must be "segment"', { ...where, field: 'segment.type' })
  const conv = address(get(o, 'conv'), 'segment.conv', where)
  const seq = uint(get(o, 'seq'), 'segment.seq', where)
  const raw = list(get(o, 'msgs'), 'segment.msgs', where, maxMessages)
  if (raw.length === 0) throw malformed('segment has no messages', { ...where, field: 'segment.msgs' })
  const msgs = raw.map(m => checkSegmentMessage(m, conv, where))
  for (let i = 1; i < msgs.length; i++) {
    if (compareMessages(msgs[i - 1], msgs[i]) >= 0) throw malformed('segment messages are not in strict (ts, id) order', { ...where, field: 'segment.msgs', id: msgs[i].id })
  }
  return { type: 'segment', conv, seq, msgs }
}
