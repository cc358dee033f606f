/**
 * Encoding and strict validation of every v1 structure (docs/backup-format.md#block-encodings).
 * Decoders take untrusted bytes and either return a clean, typed value or throw a TokenimError
 * (BACKUP_MALFORMED / BACKUP_FORMAT_UNSUPPORTED); they never throw anything else.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { validateKdfParams } from '../crypto/index.ts'
import type { KdfParams } from '../crypto/index.ts'
import type { Contact, StoredMessage } from '../store/index.ts'
import { isChecksummedAddress } from './address.ts'
import { BackupErrorCode, backupError, malformed } from './errors.ts'
import { FORMAT_NAME, MAX_LIST, MAX_SEGMENT_BYTES, MAX_SEGMENT_SIZE, MIN_SEGMENT_BYTES, RAW, SHA2_256, SUPPORTED_VERSIONS } from './constants.ts'

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

/** The manifest node: plaintext links plus the sealed manifest. */
export interface ManifestNode {
  sealed: Uint8Array
  segments: CID[]
  attachments: CID[]
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

export function encode (value: unknown): Uint8Array {
  return dagCbor.encode(value)
}

/** Decode dag-cbor strictly; with `canonical`, also require the bytes to be the canonical encoding. */
export function decode (bytes: Uint8Array, where: Where, canonical = false): unknown {
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch (err) {
    throw malformed('block is not valid dag-cbor', { ...where, reason: 'cbor' }, err)
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
    conversations: m.conversations.map(c => ({
      peer: c.peer,
      count: c.count,
      firstTs: c.firstTs,
      lastTs: c.lastTs,
      lastId: c.lastId,
      segments: c.segments.map(s => [s.count, s.firstTs, s.lastTs])
    })),
    contacts: m.contacts.map(c => c.name === undefined ? { address: c.address, addedAt: c.addedAt } : { address: c.address, addedAt: c.addedAt, name: c.name }),
    totals: m.totals
  })
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
  const owner = get(o, 'owner')
  if (!isChecksummedAddress(owner)) throw malformed('manifest.owner must be an EIP-55 checksummed address', { ...where, field: 'manifest.owner' })
  let prev: Manifest['prev'] = null
  if (get(o, 'prev') !== null) {
    const p = shape(get(o, 'prev'), 'manifest.prev', ['version', 'root'], [], where)
    prev = { version: uint(get(p, 'version'), 'manifest.prev.version', where, 1), root: cid(get(p, 'root'), 'manifest.prev.root', where) }
  }
  const segmentSize = uint(get(o, 'segmentSize'), 'manifest.segmentSize', where, 1, MAX_SEGMENT_SIZE)
  const t = shape(get(o, 'totals'), 'manifest.totals', ['messages', 'conversations', 'segments', 'attachments', 'bytes'], [], where)
  const totals: ManifestTotals = {
    messages: uint(get(t, 'messages'), 'totals.messages', where),
    conversations: uint(get(t, 'conversations'), 'totals.conversations', where),
    segments: uint(get(t, 'segments'), 'totals.segments', where),
    attachments: uint(get(t, 'attachments'), 'totals.attachments', where),
    bytes: uint(get(t, 'bytes'), 'totals.bytes', where)
  }
  const conversations = list(get(o, 'conversations'), 'manifest.conversations', where).map((c, i) => checkConversation(c, i, where, segmentSize))
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
  return {
    type: 'manifest',
    owner,
    version: uint(get(o, 'version'), 'manifest.version', where, 1),
    created: uint(get(o, 'created'), 'manifest.created', where),
    kdf: kdf(get(o, 'kdf'), 'manifest.kdf', where),
    prev,
    segmentSize,
    segmentBytes: uint(get(o, 'segmentBytes'), 'manifest.segmentBytes', where, MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES),
    links: bytes(get(o, 'links'), 'manifest.links', where, 32),
    conversations,
    contacts: list(get(o, 'contacts'), 'manifest.contacts', where).map((c, i) => checkContact(c, i, where)),
    totals
  }
}

// ---------------------------------------------------------------------------------------------------------
// segments

const MESSAGE_REQUIRED = ['id', 'from', 'to', 'ts', 'text', 'direction', 'status'] as const
const MESSAGE_OPTIONAL = ['attachment', 'receivedAt'] as const

/** Validate one message as a segment holds it (BACKUP_MALFORMED; the builder rewraps as BACKUP_SOURCE_INVALID). */
export function checkSegmentMessage (v: unknown, conv: string, where: Where): SegmentMessage {
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
