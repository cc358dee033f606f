/**
 * Reading a bundle: header, manifest, and a stream of authenticated segments. Every block is hash-checked
 * against its CID (blocks.ts); every count and link is cross-checked against the decrypted manifest.
 */
import type { CID } from 'multiformats/cid'
import { sha256 } from '../crypto/index.ts'
import type { KdfParams } from '../crypto/index.ts'
import { isTokenimError } from '../errors.ts'
import type { Contact, StoredMessage } from '../store/index.ts'
import { isAddressLike } from './address.ts'
import { digestOfRoot, readBlock, toCid } from './blocks.ts'
import type { AbortOptions, BlockGetter } from './blocks.ts'
import { MAX_MANIFEST_BLOCK, MAX_MANIFEST_PLAINTEXT, MAX_ROOT_BLOCK, MAX_SEGMENT_BLOCK, MAX_SEGMENT_PLAINTEXT } from './constants.ts'
import { BackupErrorCode, backupError, invalidArgument, malformed } from './errors.ts'
import {
  checkTotals, compareMessages, decodeContacts, decodeHeader, decodeIndex, decodeManifest, decodeManifestNode, decodeSegment, decodeShard,
  decodeShardNode, decodeTopNode, encodeLinks, encodeTopLinks, fromSegmentMessage
} from './schema.ts'
import type { BackupHeader, Manifest, ManifestConversation, ManifestNode, Segment, ShardedNode } from './schema.ts'
import type { BoxKind } from './constants.ts'
import { open, sealKey } from './seal.ts'
import type { SealKey } from './seal.ts'
import { segmentRows } from './segment-rows.ts'
import type { SegmentRows } from './segment-rows.ts'

/** The backup key, or a function deriving it from the root's KDF parameters (null: no passphrase). */
export type BackupKeySource = Uint8Array | ((kdf: KdfParams | null) => Uint8Array | Promise<Uint8Array>)

export interface ReadHeaderOptions extends AbortOptions {
  root: CID | string
  blockstore: BlockGetter
  /** expected owner (any case): BACKUP_OWNER_MISMATCH otherwise */
  owner?: string
  /** expected version: BACKUP_VERSION_MISMATCH otherwise */
  version?: number
  /** expected anchored digest (0x-hex): BACKUP_TAMPERED otherwise */
  digest?: string
}

export interface ReadBackupOptions extends ReadHeaderOptions {
  backupKey: BackupKeySource
  /** how many segment blocks to fetch ahead while streaming (default 4) */
  prefetch?: number
}

export interface BackupHeaderInfo extends BackupHeader {
  root: CID
  digest: string
}

export interface ReadSegment {
  conversation: string
  /** index of the segment in its conversation */
  seq: number
  /** index in the manifest node's segments list */
  index: number
  cid: CID
  messages: StoredMessage[]
}

export interface BackupReader {
  root: CID
  digest: string
  header: BackupHeader
  manifest: Manifest
  /** the manifest node's plaintext links */
  links: { segments: CID[], attachments: CID[] }
  conversations: ManifestConversation[]
  contacts: Contact[]
  /** every segment, in manifest order, authenticated and checked against the manifest */
  segments (options?: AbortOptions): AsyncGenerator<ReadSegment>
  /** every message, conversation by conversation, each in (ts, id) order */
  messages (options?: AbortOptions): AsyncGenerator<StoredMessage>
}

export function checkRootOption (root: unknown): CID {
  const cid = toCid(root, 'root')
  if (cid.code !== 0x71 || cid.multihash.code !== 0x12) throw invalidArgument('root must be a dag-cbor sha2-256 CID', { cid: cid.toString() })
  return cid
}

/** Fetch, hash-check and validate the root (no keys needed), then check owner / version / digest. */
export async function readHeader (options: ReadHeaderOptions): Promise<BackupHeaderInfo> {
  const root = checkRootOption(options.root)
  const digest = digestOfRoot(root)
  if (options.digest !== undefined && options.digest.toLowerCase() !== digest) {
    throw backupError(BackupErrorCode.BACKUP_TAMPERED, `the root ${root.toString()} does not have the anchored digest`, { cid: root.toString(), expected: options.digest, actual: digest })
  }
  const bytes = await readBlock(options.blockstore, root, MAX_ROOT_BLOCK, { signal: options.signal, where: { block: 'root' } })
  const header = decodeHeader(bytes, { block: 'root', cid: root.toString() })
  checkExpectations(header, options)
  return { ...header, root, digest }
}

export function checkExpectations (header: BackupHeader, expect: { owner?: string, version?: number }): void {
  if (expect.owner !== undefined) {
    if (!isAddressLike(expect.owner)) throw invalidArgument('owner must be a 0x address')
    if (expect.owner.toLowerCase() !== header.owner.toLowerCase()) {
      throw backupError(BackupErrorCode.BACKUP_OWNER_MISMATCH, `the backup belongs to ${header.owner}, not ${expect.owner}`, { expected: expect.owner, actual: header.owner })
    }
  }
  if (expect.version !== undefined && expect.version !== header.version) {
    throw backupError(BackupErrorCode.BACKUP_VERSION_MISMATCH, `the backup is version ${header.version}, not ${expect.version}`, { expected: expect.version, actual: header.version })
  }
}

export async function resolveKey (source: BackupKeySource, kdf: KdfParams | null): Promise<Uint8Array> {
  const key = typeof source === 'function' ? await source(kdf) : source
  if (!(key instanceof Uint8Array) || key.length !== 32) throw invalidArgument('the backup key must be 32 bytes')
  return key
}

/**
 * Fetch the manifest's plaintext blocks (no key needed). v1: the manifest node. v2: the top node, every
 * shard node and the contacts box, presented as one list of segment and attachment links.
 */
export async function readManifestNode (bs: BlockGetter, header: BackupHeader, options: AbortOptions = {}): Promise<ManifestNode> {
  const where = { block: 'manifest', cid: header.manifest.toString() }
  const bytes = await readBlock(bs, header.manifest, MAX_MANIFEST_BLOCK, { signal: options.signal, where: { block: 'manifest' } })
  if (header.v === 1) return decodeManifestNode(bytes, where)
  const top = decodeTopNode(bytes, where)
  const shards: ShardedNode['shards'] = []
  const segments: CID[] = []
  const attachments = new Map<string, CID>()
  for (let i = 0; i < top.shards.length; i++) {
    const cid = top.shards[i]
    const shardWhere = { block: 'shard', shard: i }
    const node = decodeShardNode(await readBlock(bs, cid, MAX_MANIFEST_BLOCK, { signal: options.signal, where: shardWhere }), { ...shardWhere, cid: cid.toString() })
    shards.push({ ...node, cid })
    segments.push(...node.segments)
    for (const a of node.attachments) if (!attachments.has(a.toString())) attachments.set(a.toString(), a)
  }
  const contactsBox = await readBlock(bs, top.contacts, MAX_MANIFEST_BLOCK, { signal: options.signal, where: { block: 'contacts' } })
  return { sealed: top.sealed, segments, attachments: [...attachments.values()], sharded: { top, shards, contactsBox } }
}

/** Open the box that proves the key (v1 manifest, v2 index): failing to authenticate means a wrong key. */
function openKeyBox (key: SealKey, header: BackupHeader, kind: BoxKind, box: Uint8Array, where: Record<string, unknown>): Uint8Array {
  try {
    return open(key, kind, box, MAX_MANIFEST_PLAINTEXT, where)
  } catch (err) {
    if (isTokenimError(err, BackupErrorCode.DECRYPT_FAILED)) {
      if (header.kdf !== null) {
        throw backupError(BackupErrorCode.WRONG_PASSPHRASE, 'the backup does not open with this passphrase (or this mnemonic)', { ...where, kdf: true })
      }
      throw backupError(BackupErrorCode.DECRYPT_FAILED, 'the backup does not open with this key: it was made by another identity, or with a passphrase', { ...where, kdf: false })
    }
    throw err
  }
}

/** Open a box under a key already proven right: failing to authenticate is tampering. */
function openTrusted (key: SealKey, kind: BoxKind, box: Uint8Array, where: Record<string, unknown>): Uint8Array {
  try {
    return open(key, kind, box, MAX_MANIFEST_PLAINTEXT, where)
  } catch (err) {
    if (isTokenimError(err, BackupErrorCode.DECRYPT_FAILED)) {
      throw backupError(BackupErrorCode.BACKUP_TAMPERED, `the ${kind} block ${String(where.cid)} does not authenticate`, { ...where, reason: 'aead' })
    }
    throw err
  }
}

/**
 * Open the sealed manifest and cross-check it with the root and the plaintext links. A manifest (v2: the
 * index) that does not authenticate means the key is wrong: WRONG_PASSPHRASE with a passphrase,
 * DECRYPT_FAILED without. v2 shards and contacts are opened too and assembled into one Manifest.
 */
export function openManifest (key: SealKey, header: BackupHeader, node: ManifestNode): Manifest {
  const where = { block: 'manifest', cid: header.manifest.toString() }
  let m: Manifest
  if (header.v === 1) {
    if (node.sharded !== undefined) throw malformed('a v1 root links a v2 manifest', { ...where, reason: 'format' })
    m = decodeManifest(openKeyBox(key, header, 'manifest', node.sealed, where), where)
    if (Buffer.compare(sha256(encodeLinks(node.segments, node.attachments)), m.links) !== 0) {
      throw backupError(BackupErrorCode.BACKUP_TAMPERED, 'the manifest node\'s links are not the ones the manifest commits to', { ...where, reason: 'links' })
    }
  } else {
    if (node.sharded === undefined) throw malformed(`a v${header.v} root needs a sharded manifest`, { ...where, reason: 'format' })
    m = openSharded(key, header, node.sharded, where)
  }
  if (m.owner !== header.owner || m.version !== header.version || m.created !== header.created || !sameKdf(m.kdf, header.kdf)) {
    throw malformed('the manifest disagrees with the root (owner, version, created or kdf)', { ...where, reason: 'header-mismatch' })
  }
  if (m.totals.segments !== node.segments.length) {
    throw backupError(BackupErrorCode.COUNT_MISMATCH, `the manifest lists ${m.totals.segments} segments, the node links ${node.segments.length}`, { ...where, expected: m.totals.segments, actual: node.segments.length })
  }
  if (m.totals.attachments !== node.attachments.length) {
    throw backupError(BackupErrorCode.COUNT_MISMATCH, `the manifest counts ${m.totals.attachments} attachments, the node links ${node.attachments.length}`, { ...where, expected: m.totals.attachments, actual: node.attachments.length })
  }
  return m
}

function openSharded (key: SealKey, header: BackupHeader, sharded: ShardedNode, where: Record<string, unknown>): Manifest {
  const index = decodeIndex(openKeyBox(key, header, 'index', sharded.top.sealed, where), where)
  if (Buffer.compare(sha256(encodeTopLinks(sharded.top.shards, sharded.top.contacts)), index.links) !== 0) {
    throw backupError(BackupErrorCode.BACKUP_TAMPERED, 'the manifest node\'s links are not the ones the index commits to', { ...where, reason: 'links' })
  }
  if (index.shards.length !== sharded.shards.length) {
    throw backupError(BackupErrorCode.COUNT_MISMATCH, `the index lists ${index.shards.length} shards, the node links ${sharded.shards.length}`, { ...where, expected: index.shards.length, actual: sharded.shards.length })
  }
  const conversations: ManifestConversation[] = []
  for (let i = 0; i < sharded.shards.length; i++) {
    const s = sharded.shards[i]
    const w = { block: 'shard', cid: s.cid.toString(), shard: i }
    const shard = decodeShard(openTrusted(key, 'shard', s.sealed, w), w, index.segmentSize)
    if (Buffer.compare(sha256(encodeLinks(s.segments, s.attachments)), shard.links) !== 0) {
      throw backupError(BackupErrorCode.BACKUP_TAMPERED, `shard ${i}'s links are not the ones it commits to`, { ...w, reason: 'links' })
    }
    const sum = index.shards[i]
    const segs = shard.conversations.reduce((n, c) => n + c.segments.length, 0)
    const msgs = shard.conversations.reduce((n, c) => n + c.count, 0)
    if (sum.conversations !== shard.conversations.length || sum.segments !== segs || sum.segments !== s.segments.length ||
        sum.messages !== msgs || sum.attachments !== s.attachments.length) {
      throw backupError(BackupErrorCode.COUNT_MISMATCH, `shard ${i} disagrees with the index's summary of it`, { ...w, expected: sum, actual: { conversations: shard.conversations.length, segments: segs, messages: msgs, attachments: s.attachments.length } })
    }
    conversations.push(...shard.conversations)
  }
  checkTotals(conversations, index.totals, where)
  const cw = { block: 'contacts', cid: sharded.top.contacts.toString() }
  const contacts = decodeContacts(openTrusted(key, 'contacts', sharded.contactsBox, cw), cw)
  return {
    type: 'manifest',
    owner: index.owner,
    version: index.version,
    created: index.created,
    kdf: index.kdf,
    prev: index.prev,
    segmentSize: index.segmentSize,
    segmentBytes: index.segmentBytes,
    links: index.links,
    conversations,
    contacts,
    totals: index.totals,
    shardSize: index.shardSize,
    shards: index.shards
  }
}

function sameKdf (a: KdfParams | null, b: KdfParams | null): boolean {
  if (a === null || b === null) return a === b
  return a.algorithm === b.algorithm && a.N === b.N && a.r === b.r && a.p === b.p && a.salt === b.salt
}

/** Where each segment of the node's list belongs: conversation index and seq. */
export interface SegmentPlace {
  index: number
  conversation: ManifestConversation
  seq: number
}

export function segmentPlaces (m: Manifest): SegmentPlace[] {
  const out: SegmentPlace[] = []
  for (const c of m.conversations) {
    for (let seq = 0; seq < c.segments.length; seq++) out.push({ index: out.length, conversation: c, seq })
  }
  return out
}

/**
 * Open one segment block (already hash-checked) and check it against its place in the manifest. A segment
 * that fails to authenticate under the key that opened the manifest is BACKUP_TAMPERED. `opened`: the
 * box's plaintext as seal.ts `open` gave it under this key (a BoxOpener's worker), not opened again.
 */
export function checkSegment (key: SealKey, manifest: Manifest, place: SegmentPlace, cid: CID, box: Uint8Array, opened?: Uint8Array): Segment {
  try {
    return checkSegmentAt(key, manifest, place, cid, box, opened) as Segment
  } catch (err) {
    // the CID's text only for an error: cid.toString() caches a ~1.7 KB rope on the CID, and a reader keeps
    // its segment CIDs for a whole restore (~40 MB at 1,000,000 messages)
    if (isTokenimError(err) && err.info.cid === undefined) err.info.cid = cid.toString()
    throw err
  }
}

/**
 * {@link checkSegment}, giving a plain segment (see segment-rows.ts) as its messages' store rows instead of
 * objects (a segment that path does not take comes as checkSegment gives it): the same checks, problems and
 * errors. For a restore, which writes the rows as they are.
 */
export function checkSegmentRows (key: SealKey, manifest: Manifest, place: SegmentPlace, cid: CID, box: Uint8Array, opened?: Uint8Array): Segment | RowsSegment {
  try {
    return checkSegmentAt(key, manifest, place, cid, box, opened, true)
  } catch (err) {
    if (isTokenimError(err) && err.info.cid === undefined) err.info.cid = cid.toString()
    throw err
  }
}

/** A segment checked and read as its messages' store rows (checkSegmentRows) */
export interface RowsSegment extends SegmentRows {
  type: 'rows'
}

function checkSegmentAt (key: SealKey, manifest: Manifest, place: SegmentPlace, cid: CID, box: Uint8Array, opened?: Uint8Array, asRows = false): Segment | RowsSegment {
  const info = place.conversation.segments[place.seq]
  const where = { block: 'segment', conversation: place.conversation.peer, segment: place.seq, index: place.index }
  let plain: Uint8Array
  try {
    plain = opened ?? open(key, 'segment', box, MAX_SEGMENT_PLAINTEXT, where)
  } catch (err) {
    if (isTokenimError(err, BackupErrorCode.DECRYPT_FAILED)) {
      throw backupError(BackupErrorCode.BACKUP_TAMPERED, `segment ${place.seq} of conversation ${place.conversation.peer} (${cid.toString()}) does not authenticate`, { ...where, reason: 'aead' })
    }
    throw err
  }
  const rows = asRows ? segmentRows(plain, manifest.segmentSize) : undefined
  const seg: Segment | RowsSegment = rows !== undefined ? { type: 'rows', ...rows } : decodeSegment(plain, where, manifest.segmentSize)
  const msgs: ReadonlyArray<{ ts: number, id: string }> = seg.type === 'rows' ? seg.rows : seg.msgs
  if (seg.conv !== place.conversation.peer || seg.seq !== place.seq) {
    throw malformed(`segment ${cid.toString()} belongs to segment ${seg.seq} of another place than the manifest says`, { ...where, reason: 'place' })
  }
  if (msgs.length !== info.count) {
    throw backupError(BackupErrorCode.COUNT_MISMATCH,
      `segment ${place.seq} of conversation ${place.conversation.peer} holds ${msgs.length} messages, the manifest says ${info.count}`,
      { ...where, expected: info.count, actual: msgs.length })
  }
  if (msgs[0].ts !== info.firstTs || msgs[msgs.length - 1].ts !== info.lastTs) {
    throw malformed(`segment ${place.seq} of conversation ${place.conversation.peer} has another time range than the manifest says`, { ...where, reason: 'time-range' })
  }
  if (place.seq === place.conversation.segments.length - 1 && msgs[msgs.length - 1].id !== place.conversation.lastId) {
    throw malformed(`the last message of conversation ${place.conversation.peer} is not the one the manifest names`, { ...where, reason: 'last-id' })
  }
  return seg
}

/**
 * Open a bundle for reading: verifies the root (and owner / version / digest when given), fetches and
 * opens the manifest, cross-checks it. Messages are then streamed with `messages()` / `segments()`, each
 * segment authenticated and counted as it is read.
 */
export async function readBackup (options: ReadBackupOptions): Promise<BackupReader> {
  const bs = options.blockstore
  const header = await readHeader(options)
  const node = await readManifestNode(bs, header, options)
  // K as a KeyObject once: node:crypto's per-call checks of raw key bytes cost ~30 µs per HMAC, two a box
  const key = sealKey(await resolveKey(options.backupKey, header.kdf))
  const manifest = openManifest(key, header, node)
  const places = segmentPlaces(manifest)
  const prefetch = Math.max(1, Math.min(64, options.prefetch ?? 4))

  async function * segments (opts: AbortOptions = {}): AsyncGenerator<ReadSegment> {
    const signal = opts.signal ?? options.signal
    const pending: Array<Promise<Uint8Array>> = []
    const fetch = (i: number): Promise<Uint8Array> => {
      const p = places[i]
      const promise = readBlock(bs, node.segments[i], MAX_SEGMENT_BLOCK, {
        signal,
        where: { block: 'segment', conversation: p.conversation.peer, segment: p.seq, index: i }
      })
      promise.catch(() => {})
      return promise
    }
    let next = 0
    let prev: { ts: number, id: string, conv: string } | undefined
    for (let i = 0; i < places.length; i++) {
      while (next < places.length && next < i + prefetch) pending.push(fetch(next++))
      const box = await pending.shift() as Uint8Array
      const place = places[i]
      const seg = checkSegment(key, manifest, place, node.segments[i], box)
      if (prev !== undefined && prev.conv === seg.conv && compareMessages(prev, seg.msgs[0]) >= 0) {
        throw malformed(`segment ${place.seq} of conversation ${seg.conv} is out of order with the one before`, { block: 'segment', cid: node.segments[i].toString(), conversation: seg.conv, segment: place.seq })
      }
      const lastMsg = seg.msgs[seg.msgs.length - 1]
      prev = { ts: lastMsg.ts, id: lastMsg.id, conv: seg.conv }
      yield { conversation: seg.conv, seq: seg.seq, index: i, cid: node.segments[i], messages: seg.msgs.map(m => fromSegmentMessage(seg.conv, m)) }
    }
  }

  async function * messages (opts: AbortOptions = {}): AsyncGenerator<StoredMessage> {
    for await (const seg of segments(opts)) yield * seg.messages
  }

  return {
    root: header.root,
    digest: header.digest,
    header: { format: header.format, v: header.v, owner: header.owner, version: header.version, created: header.created, kdf: header.kdf, manifest: header.manifest },
    manifest,
    links: { segments: node.segments, attachments: node.attachments },
    conversations: manifest.conversations,
    contacts: manifest.contacts,
    segments,
    messages
  }
}
