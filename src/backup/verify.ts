/**
 * The checker: walks a whole bundle and reports every problem it finds, each with where it is, instead of
 * stopping at the first. Without a key it checks what anybody can (public mode): the root, every block's
 * hash and size, and the framing of the manifest node and segment boxes.
 */
import type { CID } from 'multiformats/cid'
import { isTokenimError } from '../errors.ts'
import { attachmentCid } from './builder.ts'
import { readBlock } from './blocks.ts'
import type { AbortOptions, BlockGetter } from './blocks.ts'
import { MAX_OTHER_BLOCK, MAX_SEGMENT_BLOCK, MAX_SEGMENT_PLAINTEXT } from './constants.ts'
import { BackupErrorCode } from './errors.ts'
import { checkExpectations, checkRootOption, checkSegment, checkSegmentRows, openManifest, readHeader, readManifestNode, resolveKey, segmentPlaces } from './reader.ts'
import type { BackupKeySource, RowsSegment, SegmentPlace } from './reader.ts'
import { compareMessages } from './schema.ts'
import type { BackupHeader, Manifest, ManifestNode, Segment } from './schema.ts'
import { BoxOpener, OPENER_MIN_BOXES } from './opener.ts'
import { checkBoxFrame, sealKey } from './seal.ts'
import type { SealKey } from './seal.ts'

export interface BackupProblem {
  /** a stable error code: MISSING_BLOCK, BACKUP_TAMPERED, BACKUP_MALFORMED, COUNT_MISMATCH, WRONG_PASSPHRASE, … */
  code: string
  message: string
  /** which block: root, manifest, segment, attachment */
  block?: string
  cid?: string
  conversation?: string
  /** segment index within its conversation */
  segment?: number
  /** index in the manifest node's segment list */
  index?: number
  /** the message id, for problems inside a segment */
  id?: string
}

export interface VerifyProgress {
  segments: number
  totalSegments: number
  problems: number
}

export interface VerifyBackupOptions extends AbortOptions {
  root: CID | string
  blockstore: BlockGetter
  owner?: string
  version?: number
  digest?: string
  /** without a key: public mode (header, hashes, framing only) */
  backupKey?: BackupKeySource
  /** also check that each attachment's root block is present and intact (default false) */
  attachments?: boolean
  /**
   * Segment boxes opened on a worker thread while this one checks the ones before them (full mode): by
   * default a BoxOpener of its own from OPENER_MIN_BOXES segments (closed at the end), or this one (under
   * the same key; the caller closes it), or none (false). The same checks, results and problems either way.
   */
  opener?: BoxOpener | false
  onProgress?: (p: VerifyProgress) => void
  /**
   * Called with each segment that passed every check of this pass (full mode), by its index in the
   * manifest node's list: a caller that imports next (restore) can keep it instead of decrypting again,
   * or import it now. A promise it returns is awaited before the next segment is read (backpressure).
   */
  onSegment?: (index: number, segment: Segment | RowsSegment, boxBytes: number) => void | Promise<void>
  /**
   * Give onSegment a plain segment as its messages' store rows (`type: 'rows'`, reader.ts checkSegmentRows)
   * rather than decoded messages: the same checks and problems; for a restore that writes them as they are.
   */
  rows?: boolean
  /**
   * Called with the root, the manifest's plaintext blocks, the opened manifest and the key once they passed
   * every check (full mode): a caller that reads the segments next (restore) need not fetch, open and
   * check them again.
   */
  onManifest?: (opened: OpenedManifest) => void
}

export interface OpenedManifest {
  header: BackupHeader
  node: ManifestNode
  manifest: Manifest
  /** K (a KeyObject, for opening many boxes) */
  key: SealKey
}

export interface VerifyBackupResult {
  ok: boolean
  mode: 'full' | 'public'
  root: string
  digest?: string
  owner?: string
  version?: number
  created?: number
  /** messages read and checked (full mode) or announced by the manifest when it could not be read */
  messages?: number
  conversations?: number
  segments: number
  attachments: number
  /** bytes of the blocks that were read */
  bytes: number
  problems: BackupProblem[]
}

const KEYS = ['block', 'cid', 'conversation', 'segment', 'index', 'id'] as const

function toProblem (err: unknown, extra: Partial<BackupProblem> = {}): BackupProblem {
  if (isTokenimError(err)) {
    const p: BackupProblem = { code: err.code, message: err.message }
    for (const k of KEYS) {
      const v = err.info[k] ?? extra[k]
      if (v !== undefined) (p as unknown as Record<string, unknown>)[k] = v
    }
    return p
  }
  return { code: 'INTERNAL', message: String((err as Error)?.message ?? err), ...extra }
}

/** A segment block read (and, with a worker, its ticket there), or why it could not be. */
type SegmentRead = { box: Uint8Array, ticket: number } | { err: unknown }

/**
 * Segments read and handed to the box opener's worker ahead of the one being checked: enough of a head
 * start that its answers are there when they are taken on a loaded machine (8 left ~half of them late at
 * load ~6, 32 a fifth). The builder's boxes are ~11 KB here and at most ~2 MiB.
 */
const READ_AHEAD = 32

function isFatal (err: unknown): boolean {
  return isTokenimError(err, BackupErrorCode.ABORTED) || isTokenimError(err, BackupErrorCode.INVALID_ARGUMENT)
}

/**
 * Check a bundle and list every problem. Never throws for a problem of the bundle (only for bad options
 * or an abort); `ok` is true when nothing was found.
 */
export async function verifyBackup (options: VerifyBackupOptions): Promise<VerifyBackupResult> {
  const bs = options.blockstore
  const signal = options.signal
  const root = checkRootOption(options.root)
  const problems: BackupProblem[] = []
  const onProgress = options.onProgress ?? (() => {})
  const result: VerifyBackupResult = { ok: false, mode: options.backupKey === undefined ? 'public' : 'full', root: root.toString(), segments: 0, attachments: 0, bytes: 0, problems }
  const fail = (err: unknown, extra: Partial<BackupProblem> = {}): void => {
    if (isFatal(err)) throw err
    problems.push(toProblem(err, extra))
  }

  // 1. the root; without it nothing else can be found
  let header: BackupHeader
  try {
    const h = await readHeader({ root, blockstore: bs, signal, digest: options.digest })
    header = h
    result.digest = h.digest
    result.owner = h.owner
    result.version = h.version
    result.created = h.created
  } catch (err) {
    fail(err, { block: 'root', cid: root.toString() })
    return finish(result)
  }
  try {
    checkExpectations(header, options)
  } catch (err) {
    fail(err, { block: 'root', cid: root.toString() })
  }

  // 2. the manifest node; without it the segments cannot be found
  let node: ManifestNode
  try {
    node = await readManifestNode(bs, header, { signal })
  } catch (err) {
    fail(err, { block: 'manifest', cid: header.manifest.toString() })
    return finish(result)
  }
  result.segments = node.segments.length
  result.attachments = node.attachments.length

  // 3. the manifest (full mode)
  let key: SealKey | undefined
  let rawKey: Uint8Array | undefined
  let manifest: Manifest | undefined
  if (options.backupKey !== undefined) {
    try {
      rawKey = await resolveKey(options.backupKey, header.kdf)
      // K as a KeyObject once: node:crypto's per-call checks of raw key bytes cost ~30 µs per HMAC, two a box
      key = sealKey(rawKey)
      manifest = openManifest(key, header, node)
      result.conversations = manifest.conversations.length
      if (problems.length === 0) options.onManifest?.({ header, node, manifest, key })
    } catch (err) {
      fail(err, { block: 'manifest', cid: header.manifest.toString() })
    }
  }
  const places = manifest !== undefined ? segmentPlaces(manifest) : undefined
  const placesOk = places !== undefined && places.length === node.segments.length
  // with a worker opening the boxes, up to READ_AHEAD segments are read and handed to it ahead of the one
  // being checked; each is still checked, and its problems reported, in the manifest's order
  const ownOpener = options.opener === undefined && placesOk && rawKey !== undefined && node.segments.length >= OPENER_MIN_BOXES
    ? new BoxOpener(rawKey)
    : undefined
  const opener = placesOk && key !== undefined ? ownOpener ?? (options.opener !== false ? options.opener : undefined) : undefined
  const ahead = opener !== undefined ? READ_AHEAD : 1
  const reads = new Map<number, Promise<SegmentRead>>()
  let nextRead = 0
  const read = (i: number, where: Record<string, unknown>): void => {
    reads.set(i, readBlock(bs, node.segments[i], MAX_SEGMENT_BLOCK, { signal, where }).then(
      box => ({ box, ticket: opener?.submit('segment', box, MAX_SEGMENT_PLAINTEXT) ?? 0 }),
      (err: unknown) => ({ err })))
  }
  const whereOf = (i: number): Record<string, unknown> => {
    const place: SegmentPlace | undefined = placesOk ? places[i] : undefined
    return place !== undefined
      ? { block: 'segment', conversation: place.conversation.peer, segment: place.seq, index: i }
      : { block: 'segment', index: i }
  }

  // 4. every segment
  const linked = new Set(node.attachments.map(c => c.toString()))
  let messages = 0
  let prev: { ts: number, id: string, conv: string } | undefined
  try {
    for (let i = 0; i < node.segments.length; i++) {
      const cid = node.segments[i]
      const place: SegmentPlace | undefined = placesOk ? places[i] : undefined
      const where = whereOf(i)
      for (; nextRead < node.segments.length && nextRead < i + ahead; nextRead++) read(nextRead, whereOf(nextRead))
      try {
        const got = await (reads.get(i) as Promise<SegmentRead>)
        reads.delete(i)
        if ('err' in got) throw got.err
        const box = got.box
        result.bytes += box.length
        if (key !== undefined && manifest !== undefined && place !== undefined) {
          // the worker's plaintext of this box if it is there, else (not taken, not answered yet, not opened
          // there) opened here
          const plain = opener?.take(got.ticket)
          const seg = options.rows === true ? checkSegmentRows(key, manifest, place, cid, box, plain) : checkSegment(key, manifest, place, cid, box, plain)
          const msgs: ReadonlyArray<{ ts: number, id: string }> = seg.type === 'rows' ? seg.rows : seg.msgs
          messages += msgs.length
          const before = problems.length
          if (prev !== undefined && prev.conv === seg.conv && compareMessages(prev, msgs[0]) >= 0) {
            problems.push({ code: BackupErrorCode.BACKUP_MALFORMED, message: `segment ${place.seq} of conversation ${seg.conv} is out of order with the one before`, ...where, cid: cid.toString() })
          }
          const last = msgs[msgs.length - 1]
          prev = { ts: last.ts, id: last.id, conv: seg.conv }
          // (a segment read as rows has no attachments: those are left to the decoded path)
          for (const m of seg.type === 'rows' ? [] : seg.msgs) {
            if (m.attachment === undefined) continue
            const a = attachmentCid(m.attachment.cid)
            if (a !== undefined && !linked.has(a.toString())) {
              problems.push({ code: BackupErrorCode.BACKUP_MALFORMED, message: `message ${m.id} has an attachment the manifest does not link`, ...where, cid: cid.toString(), id: m.id })
            }
          }
          if (problems.length === before) await options.onSegment?.(i, seg, box.length)
        } else {
          checkBoxFrame(box, { ...where, cid: cid.toString() })
        }
      } catch (err) {
        fail(err, { ...where, cid: cid.toString() })
      }
      onProgress({ segments: i + 1, totalSegments: node.segments.length, problems: problems.length })
    }
  } finally {
    await ownOpener?.close()
  }
  if (manifest !== undefined) result.messages = key !== undefined ? messages : manifest.totals.messages

  // 5. attachment roots (optional)
  if (options.attachments === true) {
    for (const cid of node.attachments) {
      try {
        const bytes = await readBlock(bs, cid, MAX_OTHER_BLOCK, { signal, where: { block: 'attachment' } })
        result.bytes += bytes.length
      } catch (err) {
        fail(err, { block: 'attachment', cid: cid.toString() })
      }
    }
  }
  return finish(result)
}

function finish (r: VerifyBackupResult): VerifyBackupResult {
  r.ok = r.problems.length === 0
  return r
}
