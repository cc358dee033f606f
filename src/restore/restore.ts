/**
 * Restore and verify: mnemonic → address + backup key → chain anchor → bundle (CAR or network) → every
 * check of docs/backup-format.md#reading-and-verifying → (restore only) import into a data dir.
 *
 * Nothing counts as written before the whole bundle has verified. Into an empty data dir the messages are
 * imported as their segments verify (each segment read, decrypted and decoded once), into a store that a
 * "staged" marker disowns until the last check passed: a damaged bundle's store is removed (the dir is left
 * as it was) and a rerun after a crash removes it and starts over. Otherwise (a rerun, --merge, a store
 * elsewhere, --salvage) the verify pass comes first and the import after it. The import is crash-safe: a
 * marker file (`DATA_DIR/restore.json`) is written first and removed last; it records how far the import
 * got, so a rerun after a crash (even SIGKILL) continues instead of refusing a non-empty dir, and since
 * messages are imported idempotently by id (one atomic batch per addMessages call) nothing is duplicated or
 * lost.
 */
import { readdir, readFile, rm, rmdir } from 'node:fs/promises'
import { join } from 'node:path'
import { LevelBlockstore } from 'blockstore-level'
import type { CID } from 'multiformats/cid'
import {
  checkSegment, fromSegmentMessage, openManifest, readBackup, readHeader, readManifestNode, segmentPlaces,
  verifyBackup, verifyBlock, walkDag, MAX_SEGMENT_BLOCK
} from '../backup/index.ts'
import type { BackupKeySource, BackupProblem, BlockGetter, OpenedManifest, RowsSegment, Segment, VerifyProgress } from '../backup/index.ts'
import type { KdfParams } from '../crypto/index.ts'
import { isTokenimError, TokenimError } from '../errors.ts'
import { createIdentity, deriveBackupKey, deriveKeys, identityExists, openIdentity, prepareKeystore, readIdentityPublic } from '../identity/index.ts'
import { messageRecord, openStore } from '../store/index.ts'
import type { Contact, MessageRecord, Store, StoredMessage } from '../store/index.ts'
import { ensurePrivateDir, exists, fsyncDir, writeFileAtomic } from '../util/fs.ts'
import { log } from '../util/log.ts'
import { resolveAnchor } from './anchor.ts'
import type { AnchorCheck, AnchorReader } from './anchor.ts'
import { RestoreErrorCode, restoreError } from './errors.ts'
import { IdFilter } from './id-filter.ts'
import { SegmentCache } from './segment-cache.ts'
import type { BlockSource } from './source.ts'

const logger = log('restore')

/** The marker of a restore in progress, in the target data dir. */
export const RESTORE_MARKER_FILE = 'restore.json'
/** Messages per atomic import batch (addMessages call); the marker is rewritten after each. */
export const DEFAULT_BATCH_SIZE = 2000
/** What an "empty" target data dir may already hold: the chain profile and the node config. */
const ALLOWED_IN_EMPTY_DIR = new Set(['chain.json', 'config.json'])
/** LevelDB's write buffer for the store a staged import writes (its default is 4 MiB) */
const IMPORT_WRITE_BUFFER = 16 * 1024 * 1024
/** Store meta key recording which backup the store was restored from. */
export const RESTORED_FROM_META = 'restoredFrom'

const KEY_PROBLEMS = new Set(['WRONG_PASSPHRASE', 'DECRYPT_FAILED', 'PASSPHRASE_REQUIRED'])

/** A problem found, with where it is (block, cid, conversation, segment, index) and, for anchors, versions. */
export interface RestoreProblem extends BackupProblem {
  version?: number
  latest?: number
  expected?: unknown
  actual?: unknown
  /** messages lost with this problem (salvage) */
  messages?: number
}

export interface RestoreProgress {
  phase: 'connect' | 'fetch' | 'verify' | 'import' | 'attachments'
  peers?: number
  blocks?: number
  totalBlocks?: number
  segments?: number
  totalSegments?: number
  messages?: number
  problems?: number
}

// ---------------------------------------------------------------------------------------------------------
// verify

export interface VerifyRestoreOptions {
  source: BlockSource
  /** the chain (undefined: no chain profile) */
  chain?: AnchorReader
  /** whose backup */
  owner: string
  version?: number
  /** the backup key, or a function of the root's KDF params; undefined: public mode (no keys) */
  backupKey?: BackupKeySource
  allowUnanchored?: boolean
  signal?: AbortSignal
  onProgress?: (p: RestoreProgress) => void
}

export interface VerifyRestoreResult {
  ok: boolean
  mode: 'full' | 'public'
  owner: string
  /** the bundle's version (from the anchor, else from the bundle's root) */
  version?: number
  /** the chain's latest anchored version */
  latest?: number
  cid?: string
  digest?: string
  anchored: boolean
  messages?: number
  conversations?: number
  segments: number
  attachments: number
  problems: RestoreProblem[]
  warnings: string[]
}

/** Anchor-level outcomes that verify lists as problems (the others — chain down, no profile — are errors). */
const ANCHOR_PROBLEMS = new Set(['NO_BACKUP', 'ROLLBACK_REFUSED', 'DIGEST_MISMATCH', 'BACKUP_OWNER_MISMATCH'])

function problemOf (err: TokenimError): RestoreProblem {
  const p: RestoreProblem = { code: err.code, message: err.message }
  for (const k of ['block', 'cid', 'conversation', 'segment', 'index', 'id', 'version', 'latest', 'expected', 'actual'] as const) {
    if (err.info[k] !== undefined) (p as unknown as Record<string, unknown>)[k] = err.info[k]
  }
  return p
}

/**
 * Check a backup against the chain without importing anything, and list EVERY problem found (anchor:
 * missing, rollback, digest mismatch; bundle: missing / tampered blocks, segments that do not
 * authenticate, counts). Throws only when the check itself cannot run (chain down, no chain profile,
 * bad options, abort).
 */
export async function verifyRestoreSource (o: VerifyRestoreOptions): Promise<VerifyRestoreResult> {
  const onProgress = o.onProgress ?? (() => {})
  const problems: RestoreProblem[] = []
  const warnings: string[] = [...o.source.warnings]
  let anchor: AnchorCheck | undefined
  let anchorProblem: string | undefined
  try {
    anchor = await resolveAnchor({ chain: o.chain, owner: o.owner, version: o.version, carRoot: o.source.root, blockstore: o.source.blockstore, allowUnanchored: o.allowUnanchored, signal: o.signal })
    warnings.push(...anchor.warnings)
  } catch (err) {
    if (!isTokenimError(err) || !ANCHOR_PROBLEMS.has(err.code)) throw err
    anchorProblem = err.code
    problems.push(problemOf(err))
  }
  const result: VerifyRestoreResult = {
    ok: false,
    mode: o.backupKey === undefined ? 'public' : 'full',
    owner: anchor?.owner ?? o.owner,
    version: anchor?.version,
    latest: anchor?.latest ?? (problems[0]?.latest as number | undefined),
    anchored: anchor?.anchored ?? false,
    segments: 0,
    attachments: 0,
    problems,
    warnings
  }
  const root = anchor?.root ?? o.source.root
  if (root === undefined) return result
  result.cid = root.toString()
  await o.source.prefetch(root, { signal: o.signal })
  onProgress({ phase: 'verify', segments: 0 })
  const report = await verifyBackup({
    root,
    blockstore: o.source.blockstore,
    owner: anchorProblem === 'BACKUP_OWNER_MISMATCH' ? undefined : o.owner,
    version: anchor?.version,
    digest: anchor?.anchored === true ? anchor.digest : undefined,
    backupKey: o.backupKey,
    attachments: true,
    signal: o.signal,
    onProgress: (p: VerifyProgress) => { onProgress({ phase: 'verify', segments: p.segments, totalSegments: p.totalSegments, problems: p.problems }) }
  })
  problems.push(...report.problems)
  result.version ??= report.version
  result.digest = report.digest
  result.messages = report.messages
  result.conversations = report.conversations
  result.segments = report.segments
  result.attachments = report.attachments
  result.ok = problems.length === 0 && (anchor?.anchored === true || o.allowUnanchored === true)
  return result
}

// ---------------------------------------------------------------------------------------------------------
// restore

export interface RestoreOptions {
  /** the target data dir (empty, or a restore in progress, or anything with `merge`) */
  dataDir: string
  /** the store (default DATA_DIR/store) */
  storePath?: string
  /** where attachment blocks go (default DATA_DIR/blocks, the node's Helia blockstore) */
  blocksPath?: string
  /** the mnemonic */
  phrase: string
  /** the backup passphrase, when the backup was made with one */
  passphrase?: string
  /** the password for the new keystore (or the existing one, on a rerun / --merge) */
  password: string
  /** keystore scrypt cost (tests pass a cheap one) */
  scryptN?: number
  source: BlockSource
  chain?: AnchorReader
  version?: number
  allowUnanchored?: boolean
  /** import into a non-empty data dir (same identity), keeping what is there */
  merge?: boolean
  /** import every segment that verifies from a damaged backup, and list what was lost */
  salvage?: boolean
  batchSize?: number
  /**
   * When the import follows the verify pass (a rerun, `merge`, a `storePath` given, `salvage`; into an empty
   * data dir the segments are imported as they verify): bytes (estimated, in memory) of decrypted segments
   * the verify pass keeps for the import, so they are not decrypted twice (default 16 MiB, less with a small V8 heap: src/restore/segment-cache.ts; beyond it
   * a segment is decrypted again; 0 keeps none)
   */
  segmentCacheBytes?: number
  signal?: AbortSignal
  onProgress?: (p: RestoreProgress) => void
}

export interface RestoreResult {
  /** true when everything in the backup is now in the data dir */
  ok: boolean
  owner: string
  version: number
  cid: string
  digest: string
  anchored: boolean
  /** messages in the store after the restore */
  messages: number
  /** messages written by this run (the rest were there already: rerun, --merge) */
  imported: number
  conversations: number
  contacts: number
  attachments: number
  /** true when this run continued an interrupted restore */
  resumed: boolean
  warnings: string[]
  /** what could not be recovered (--salvage) */
  problems: RestoreProblem[]
  lost?: { segments: number, messages: number }
}

interface Marker {
  v: 1
  owner: string
  cid: string
  version: number
  started: number
  /** segments before this index are imported */
  nextSegment: number
  imported: number
  /**
   * the store is being written while the bundle is verified (a restore into an empty data dir): nothing in
   * it counts yet; a rerun removes it and starts over
   */
  staged?: boolean
}

type TargetState = { kind: 'empty' } | { kind: 'resume', marker: Marker } | { kind: 'occupied', entries: string[] }

async function inspectTarget (dataDir: string): Promise<TargetState> {
  let entries: string[]
  try {
    entries = await readdir(dataDir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException)?.code === 'ENOENT') return { kind: 'empty' }
    throw err
  }
  const marker = await readMarker(dataDir)
  if (marker !== undefined) return { kind: 'resume', marker }
  const other = entries.filter(e => !ALLOWED_IN_EMPTY_DIR.has(e) && !(e.startsWith(`.${RESTORE_MARKER_FILE}.`) && e.endsWith('.tmp')))
  return other.length === 0 ? { kind: 'empty' } : { kind: 'occupied', entries: other }
}

async function readMarker (dataDir: string): Promise<Marker | undefined> {
  const path = join(dataDir, RESTORE_MARKER_FILE)
  if (!await exists(path)) return undefined
  try {
    const m = JSON.parse(await readFile(path, 'utf8')) as Marker
    if (m?.v !== 1 || typeof m.owner !== 'string' || typeof m.nextSegment !== 'number') throw new Error('shape')
    return m
  } catch {
    throw restoreError(RestoreErrorCode.TARGET_NOT_EMPTY, `${path} is damaged: remove the data dir ${dataDir} and restore again`, { dataDir })
  }
}

async function writeMarker (dataDir: string, m: Marker): Promise<void> {
  await writeFileAtomic(join(dataDir, RESTORE_MARKER_FILE), JSON.stringify(m) + '\n')
}

/** The backup key source for a mnemonic (+ passphrase), derived once per KDF parameter set. */
export function backupKeySource (backupRootKey: Uint8Array, passphrase?: string): (kdf: KdfParams | null) => Promise<Uint8Array> {
  const cache = new Map<string, Uint8Array>()
  return async (kdf) => {
    const id = JSON.stringify(kdf)
    const hit = cache.get(id)
    if (hit !== undefined) return hit
    const { key } = kdf === null
      ? await deriveBackupKey(backupRootKey)
      : await deriveBackupKey(backupRootKey, { passphrase, kdf })
    cache.set(id, key)
    return key
  }
}

/**
 * Restore a data dir from a backup: verify everything first (nothing is left written if the backup is
 * damaged, unless `salvage`; into an empty dir the messages are staged as they verify), then write the
 * identity (keystore + a NEW device key), import the messages in atomic batches, the contacts and the
 * attachments' blocks. The device record is published when the node next
 * starts (`tokenim daemon`).
 */
export async function restoreBackup (o: RestoreOptions): Promise<RestoreResult> {
  const onProgress = o.onProgress ?? (() => {})
  const signal = o.signal
  const batchSize = o.batchSize ?? DEFAULT_BATCH_SIZE
  const keys = deriveKeys(o.phrase)
  const owner = keys.address
  const storePath = o.storePath ?? join(o.dataDir, 'store')
  const blocksPath = o.blocksPath ?? join(o.dataDir, 'blocks')

  // 1. the target, checked before any network or chain work (nothing is written yet)
  let target = await inspectTarget(o.dataDir)
  if (target.kind === 'occupied' && o.merge !== true) {
    throw restoreError(RestoreErrorCode.TARGET_NOT_EMPTY,
      `the data dir ${o.dataDir} is not empty (${target.entries.slice(0, 3).join(', ')}${target.entries.length > 3 ? ', …' : ''}): restore into an empty dir, or pass --merge to add the backup to this one`,
      { dataDir: o.dataDir })
  }
  if (target.kind === 'resume' && target.marker.owner.toLowerCase() !== owner.toLowerCase()) {
    throw restoreError(RestoreErrorCode.TARGET_NOT_EMPTY, `the data dir ${o.dataDir} holds an unfinished restore of ${target.marker.owner}, not ${owner}`, { dataDir: o.dataDir })
  }
  if (target.kind === 'occupied' && await identityExists(o.dataDir)) {
    const current = await readIdentityPublic(o.dataDir)
    if (current.address.toLowerCase() !== owner.toLowerCase()) {
      throw restoreError(RestoreErrorCode.IDENTITY_MISMATCH, `the data dir belongs to ${current.address}; the mnemonic is ${owner}'s: --merge only adds a backup to the same identity`, { dataDir: o.dataDir })
    }
  }

  // a restore that wrote its store while it verified (staged) and stopped before the whole bundle had
  // verified: what it wrote counts for nothing (the marker says so), so it is removed and the restore starts over
  if (target.kind === 'resume' && target.marker.staged === true) {
    await removeStaged(o.dataDir)
    target = { kind: 'empty' }
  }
  // into an empty data dir, with the store in its usual place, the messages are imported as their segments
  // verify (one pass: each segment read, decrypted and decoded once) into a store that counts only once the
  // whole bundle has verified; a damaged bundle's store is removed and the dir left as it was. A rerun, a
  // merge, a store elsewhere and a salvage verify first and import after (the verify pass keeps what it can)
  const staged = target.kind === 'empty' && o.storePath === undefined && o.merge !== true && o.salvage !== true

  // a rerun of the same import starts at the marker's segment: the verify pass keeps only what is left
  const startSegment = target.kind === 'resume' ? target.marker.nextSegment : 0

  // 2. which bundle: the chain's word
  const anchor = await resolveAnchor({ chain: o.chain, owner, version: o.version, carRoot: o.source.root, blockstore: o.source.blockstore, allowUnanchored: o.allowUnanchored, signal })
  const warnings = [...o.source.warnings, ...anchor.warnings]
  const root = anchor.root

  // a new identity's keystore is encrypted now (once the chain has named a bundle to restore), written once
  // the bundle has verified: its scrypt takes ~128 MiB for ~1 s at the default cost, which on top of the
  // import's memory was the restore's peak (1,000,000 messages: 454 MB, against 343 MB with a cheap KDF)
  const keystore = await identityExists(o.dataDir) ? undefined : await prepareKeystore({ phrase: o.phrase, password: o.password, scryptN: o.scryptN })

  // 3. fetch and verify everything before anything counts as written
  await o.source.prefetch(root, { signal })
  const backupKey = backupKeySource(keys.backupRootKey, o.passphrase)
  const kept = new SegmentCache(staged ? 0 : o.segmentCacheBytes)
  const resumed = target.kind === 'resume'
  let marker: Marker = target.kind === 'resume' && target.marker.cid === root.toString()
    ? target.marker
    : { v: 1, owner, cid: root.toString(), version: anchor.version ?? 0, started: Date.now(), nextSegment: 0, imported: 0 }
  let store: Store | undefined
  let importer: Importer | undefined
  let importFailed: { err: unknown } | undefined
  let createdDir = false
  if (staged) {
    createdDir = !await exists(o.dataDir)
    marker = { ...marker, staged: true }
    try {
      await ensurePrivateDir(o.dataDir)
      await writeMarker(o.dataDir, marker)
      // a larger memtable for the bulk import: LevelDB flushes and compacts it less often (its CPU at
      // 100,000 messages ~0.55 -> ~0.4 s), for up to two of them in memory
      store = await openStore(storePath, { writeBufferBytes: IMPORT_WRITE_BUFFER })
    } catch (err) {
      await dropStaged(o.dataDir, createdDir)
      throw err
    }
  }
  onProgress({ phase: 'verify', segments: 0 })
  let opened: OpenedManifest | undefined
  let problemsSeen = false
  let report: Awaited<ReturnType<typeof verifyBackup>>
  try {
    report = await verifyBackup({
      onManifest: m => {
        opened = m
        // the store was empty: an id this restore never handed it is not stored (its uniqueness read is
        // skipped); sized for the manifest's messages, at most what its segments can hold
        if (store !== undefined) importer = startImport({ store, batchSize, handed: new IdFilter(Math.min(m.manifest.totals.messages, m.node.segments.length * m.manifest.segmentSize)) })
      },
      // staged: a plain segment comes as its messages' store rows, written as they are (segment-rows.ts)
      rows: staged,
      onSegment: staged
        ? async (index, seg) => {
          // nothing more once the bundle has a problem (the store is removed) or a write failed
          if (importer === undefined || problemsSeen || importFailed !== undefined) return
          try {
            await importer.add(recordsOf(seg), index + 1)
          } catch (err) {
            // the store's failure, not the bundle's: not a problem of the report
            importFailed = { err }
          }
        }
        : (index, seg) => { if (index >= startSegment && seg.type === 'segment') kept.keep(index, seg.msgs.map(m => fromSegmentMessage(seg.conv, m))) },
      root,
      blockstore: o.source.blockstore,
      owner,
      version: anchor.version,
      digest: anchor.anchored ? anchor.digest : undefined,
      backupKey,
      attachments: true,
      signal,
      onProgress: p => {
        if (p.problems > 0) problemsSeen = true
        onProgress({ phase: 'verify', segments: p.segments, totalSegments: p.totalSegments, problems: p.problems })
      }
    })
  } catch (err) {
    if (staged) await dropStaged(o.dataDir, createdDir, store, importer)
    throw err
  }
  const keyProblem = report.problems.find(p => KEY_PROBLEMS.has(p.code))
  const manifestOpened = report.conversations !== undefined
  if (keyProblem !== undefined || (report.problems.length > 0 && (o.salvage !== true || !manifestOpened)) || importFailed !== undefined) {
    if (staged) await dropStaged(o.dataDir, createdDir, store, importer)
    if (importFailed !== undefined) throw importFailed.err
    if (keyProblem !== undefined) throw restoreError(keyProblem.code, keyProblem.message, { owner })
    const first = report.problems[0]
    const more = report.problems.length > 1 ? ` (and ${report.problems.length - 1} more problem${report.problems.length > 2 ? 's' : ''})` : ''
    throw restoreError(first.code,
      `the backup is damaged, nothing was restored: ${first.message}${more}${o.salvage !== true && manifestOpened ? '; `restore --salvage` imports what is intact' : ''}`,
      { problems: report.problems, cid: root.toString() })
  }
  const version = report.version as number
  const digest = report.digest as string

  // 4. write: marker first, then identity, store, attachments; marker removed last
  if (staged) {
    // the whole bundle verified: its last batch written and synced, then the marker no longer says staged
    // (a rerun from here on finishes the restore instead of starting over)
    try {
      const imp = importer as Importer
      await imp.flush(report.segments)
      await imp.done()
      await (store as Store).sync()
      marker = { v: 1, owner, cid: marker.cid, version, started: marker.started, nextSegment: report.segments, imported: imp.imported }
      await writeMarker(o.dataDir, marker)
    } catch (err) {
      await dropStaged(o.dataDir, createdDir, store, importer)
      throw err
    }
  } else {
    marker.version = version
    await ensurePrivateDir(o.dataDir)
    await writeMarker(o.dataDir, marker)
  }

  // a data dir that has an identity must be the owner's before anything is imported; a new one is
  // written while the messages are imported (its keystore KDF and fsyncs overlap the store's writes;
  // the marker makes a rerun finish either) — after a staged import, only once the bundle has verified
  let identityDone: Promise<unknown> = Promise.resolve()
  try {
    if (await identityExists(o.dataDir)) {
      const opened = await openIdentity(o.dataDir, o.password)
      if (opened.address !== owner) {
        throw restoreError(RestoreErrorCode.IDENTITY_MISMATCH, `the data dir belongs to ${opened.address}, the mnemonic to ${owner}`, { dataDir: o.dataDir })
      }
    } else {
      identityDone = createIdentity(o.dataDir, { phrase: o.phrase, password: o.password, scryptN: o.scryptN, keystore })
      identityDone.catch(() => {}) // awaited below
    }
  } catch (err) {
    await store?.close().catch(() => {})
    throw err
  }

  // a store that cannot be opened fails the restore once the identity write above is over (nothing left running)
  const st = store ?? await openStore(storePath).catch(async (err: unknown) => { await identityDone.catch(() => {}); throw err })
  let imported = importer?.imported ?? 0
  let lost: { segments: number, messages: number } | undefined
  const problems: RestoreProblem[] = []
  let contacts: Contact[] = []
  let attachmentRoots: CID[] = []
  let messages = 0
  let conversations = 0
  // a store this restore made (the data dir had none) holds only ids this run handed it: one the filter has
  // never seen is not stored, and its uniqueness read is skipped (a rerun or --merge reads them all)
  const handed = target.kind === 'empty' && o.storePath === undefined ? new IdFilter(report.messages ?? 0) : undefined
  const imp = staged ? undefined : startImport({ store: st, batchSize, handed, marker: { dataDir: o.dataDir, state: marker }, onBatch: (nextSegment, n) => { onProgress({ phase: 'import', segments: nextSegment, totalSegments: report.segments, messages: n }) } })
  try {
    const start = marker.nextSegment
    if (imp === undefined) {
      // staged: every message is in, the marker says so
      contacts = (opened as OpenedManifest).manifest.contacts
      attachmentRoots = (opened as OpenedManifest).node.attachments
      onProgress({ phase: 'import', segments: report.segments, totalSegments: report.segments, messages: imported })
    } else if (o.salvage !== true || report.problems.length === 0) {
      // the root, manifest and key the verify pass checked (the same checks readBackup makes: digest, owner,
      // version, every manifest block), else read again
      const m = opened ?? await (async () => {
        const reader = await readBackup({ root, blockstore: o.source.blockstore, owner, version, digest, backupKey, signal })
        return { header: reader.header, manifest: reader.manifest, node: { segments: reader.links.segments, attachments: reader.links.attachments }, key: await backupKey(reader.header.kdf) }
      })()
      contacts = m.manifest.contacts
      attachmentRoots = m.node.attachments
      // the segments the verify pass kept are imported as they are; the others (over the cache budget)
      // are read and checked again (hash, AEAD, place, count) — their order was checked by the verify pass
      const places = segmentPlaces(m.manifest)
      const segmentKey = m.key
      const segs = m.node.segments
      for (let i = start; i < segs.length; i++) {
        let msgs = kept.take(i)
        if (msgs === undefined) {
          const box = await readChecked(o.source.blockstore, segs[i], MAX_SEGMENT_BLOCK, signal)
          const seg = checkSegment(segmentKey, m.manifest, places[i], segs[i], box)
          msgs = seg.msgs.map(m => fromSegmentMessage(seg.conv, m))
        }
        await imp.add(msgs.map(messageRecord), i + 1)
      }
      await imp.flush(segs.length)
      await imp.written()
    } else {
      const s = await salvageSegments({ root, blockstore: o.source.blockstore, key: backupKey, start, signal, digest }, async (index, msgs) => {
        await imp.add(msgs.map(messageRecord), index + 1)
      })
      await imp.flush(s.total)
      await imp.written()
      contacts = s.contacts
      attachmentRoots = s.attachments
      problems.push(...report.problems.map(p => ({ ...p, messages: p.index !== undefined && s.lostSegments.has(p.index) ? s.lostSegments.get(p.index) : undefined })))
      let lostMessages = 0
      for (const n of s.lostSegments.values()) lostMessages += n
      lost = { segments: s.lostSegments.size, messages: lostMessages }
    }
    if (imp !== undefined) imported = imp.imported

    // contacts: keep what the user has (merge), add what the backup knows
    for (const c of contacts) {
      const existing = await st.getContact(c.address)
      if (existing === undefined || (existing.name === undefined && c.name !== undefined)) await st.setContact(c.address, c.name)
    }
    await st.setMeta(RESTORED_FROM_META, { version, cid: root.toString(), digest, anchored: anchor.anchored, at: Date.now() })
    messages = await st.countMessages()
    conversations = (await st.conversations()).length
    await imp?.done()
  } finally {
    kept.clear()
    await imp?.settle() // a batch in flight when something failed: settled before the store closes
    await st.close().catch(() => {})
    await identityDone.catch(() => {}) // nothing left running when this throws
  }
  await identityDone

  // attachments' blocks into the node's blockstore, so the restored messages' attachments open offline
  let attachments = 0
  if (attachmentRoots.length > 0) {
    const bs = new LevelBlockstore(blocksPath)
    await bs.open()
    try {
      for (const a of attachmentRoots) {
        try {
          for await (const { cid, bytes } of walkDag(o.source.blockstore, a, { signal })) {
            if (!await bs.has(cid)) await bs.put(cid, bytes)
          }
          attachments++
        } catch (err) {
          if (signal?.aborted === true) throw err
          const msg = `attachment ${a.toString()} could not be restored: ${(err as Error).message}`
          if (o.salvage === true) problems.push({ code: isTokenimError(err) ? err.code : 'MISSING_BLOCK', message: msg, block: 'attachment', cid: a.toString() })
          else warnings.push(msg)
        }
        onProgress({ phase: 'attachments', blocks: attachments })
      }
    } finally {
      await bs.close().catch(() => {})
    }
  }

  await rm(join(o.dataDir, RESTORE_MARKER_FILE), { force: true })
  await fsyncDir(o.dataDir)
  logger('restored %s version %d: %d messages (%d new)', owner, version, messages, imported)
  return {
    ok: problems.length === 0,
    owner,
    version,
    cid: root.toString(),
    digest,
    anchored: anchor.anchored,
    messages,
    imported,
    conversations,
    contacts: contacts.length,
    attachments,
    resumed,
    warnings,
    problems,
    ...(lost !== undefined ? { lost } : {})
  }
}

// ---------------------------------------------------------------------------------------------------------
// import

/** A checked segment's messages as the store's records: its rows as they are, or its decoded messages encoded. */
function recordsOf (seg: Segment | RowsSegment): MessageRecord[] {
  if (seg.type === 'rows') return seg.rows // each row is a record already
  return seg.msgs.map(m => messageRecord(fromSegmentMessage(seg.conv, m)))
}

interface Importer {
  /** messages the store took so far (the others were stored already) */
  readonly imported: number
  /** a segment's messages; `nextSegment` is the index after it (what the marker records once they are written) */
  add: (msgs: MessageRecord[], nextSegment: number) => Promise<void>
  /** write what is buffered as one batch (returns once the batch before it is written) */
  flush: (nextSegment: number) => Promise<void>
  /** every batch written (throws a batch's failure) */
  written: () => Promise<void>
  /** every batch written and the marker rewritten after the last (throws either's failure) */
  done: () => Promise<void>
  /** whatever is in flight settled, failures ignored (before the store closes) */
  settle: () => Promise<void>
}

interface ImportOptions {
  store: Store
  batchSize: number
  /** the ids handed to a store that was empty (their uniqueness reads are skipped) */
  handed?: IdFilter
  /** the marker to rewrite after the batches (none: a staged import, whose marker changes once at the end) */
  marker?: { dataDir: string, state: Marker }
  onBatch?: (nextSegment: number, imported: number) => void
}

/**
 * Messages into the store in atomic batches of `batchSize`: one batch is written (LevelDB's write runs off
 * the main thread) while the next is read and decoded; the batches are written in order, each atomic, and
 * a failed one fails the next flush or the end.
 */
function startImport (o: ImportOptions): Importer {
  const { store, handed } = o
  let buf: MessageRecord[] = []
  let imported = 0
  let writing: Promise<void> = Promise.resolve()
  // marker rewrites, each after the batches it counts are written, in the background: the next batches are
  // imported meanwhile, so the marker may lag the store (a rerun imports those again, idempotently by id)
  // but never runs ahead of it. While one is being written only the newest state waits: each is a synced
  // store write (which holds back the batches behind it) and an fsynced file, one per batch cost the import
  // its disk's latency ~50 times
  let markerNext: Marker | undefined
  let markerBusy = false
  let markerFailed: { err: unknown } | undefined
  let markerWrite: Promise<void> = Promise.resolve()
  const saveMarker = (m: { dataDir: string, state: Marker }): void => {
    markerNext = { ...m.state }
    if (markerBusy || markerFailed !== undefined) return
    markerBusy = true
    markerWrite = (async () => {
      try {
        while (markerNext !== undefined) {
          const state = markerNext
          markerNext = undefined
          // the store synced first: restore.json never claims a batch that a power cut could take back
          await store.sync()
          await writeMarker(m.dataDir, state)
        }
      } catch (err) {
        markerFailed = { err }
      } finally {
        markerBusy = false
      }
    })()
  }
  const flush = async (nextSegment: number): Promise<void> => {
    const batch = buf
    buf = []
    let absent: ((id: string) => boolean) | undefined
    if (handed !== undefined) {
      const unseen = new Set<string>()
      for (const m of batch) if (!handed.add(m.id)) unseen.add(m.id)
      absent = id => unseen.has(id)
    }
    const previous = writing
    writing = (async () => {
      await previous
      if (batch.length > 0) {
        const r = await store.addMessageRecords(batch, { absent })
        imported += r.added
        if (o.marker !== undefined) o.marker.state.imported += r.added
      }
      if (o.marker !== undefined) {
        o.marker.state.nextSegment = nextSegment
        saveMarker(o.marker)
      }
      o.onBatch?.(nextSegment, imported)
    })()
    writing.catch(() => {}) // awaited by the next flush or at the end
    await previous
  }
  return {
    get imported () { return imported },
    add: async (msgs, nextSegment) => {
      for (const m of msgs) buf.push(m)
      if (buf.length >= o.batchSize) await flush(nextSegment)
    },
    flush,
    written: async () => { await writing },
    done: async () => {
      await writing
      await markerWrite
      if (markerFailed !== undefined) throw markerFailed.err
    },
    settle: async () => {
      await writing.catch(() => {})
      await markerWrite
    }
  }
}

/**
 * Undo a staged import whose bundle did not verify (or that failed): the store closed and removed, then the
 * marker, then the data dir when this restore made it. Never throws (the restore's own error is what counts);
 * what it could not remove is left with the staged marker, which a rerun finds and removes.
 */
async function dropStaged (dataDir: string, createdDir: boolean, store?: Store, importer?: Importer): Promise<void> {
  try {
    await importer?.settle()
    await store?.close().catch(() => {})
    await removeStaged(dataDir)
    if (createdDir) await rmdir(dataDir).catch(() => {})
  } catch (err) {
    logger('could not remove the staged import in %s: %s', dataDir, (err as Error).message)
  }
}

/** The files of a staged import (the store, its marker and their temporaries), the restore marker last. */
async function removeStaged (dataDir: string): Promise<void> {
  for (const e of await readdir(dataDir)) {
    if (e === 'store' || e === 'store.json' || (e.startsWith('.store.json.') && e.endsWith('.tmp'))) await rm(join(dataDir, e), { recursive: true, force: true })
  }
  await fsyncDir(dataDir)
  await rm(join(dataDir, RESTORE_MARKER_FILE), { force: true })
  await fsyncDir(dataDir)
}

// ---------------------------------------------------------------------------------------------------------
// salvage

interface SalvageOptions {
  root: CID
  blockstore: BlockGetter
  key: BackupKeySource
  digest?: string
  start: number
  signal?: AbortSignal
}

interface SalvageResult {
  total: number
  /** manifest index → messages the manifest says the segment held */
  lostSegments: Map<number, number>
  contacts: Contact[]
  attachments: CID[]
}

/**
 * Read every segment that verifies (hash, AEAD, place, count), skipping the others; the manifest must
 * open (without it nothing can be placed or trusted).
 */
async function salvageSegments (o: SalvageOptions, onSegment: (index: number, msgs: StoredMessage[]) => Promise<void>): Promise<SalvageResult> {
  const header = await readHeader({ root: o.root, blockstore: o.blockstore, digest: o.digest, signal: o.signal })
  const node = await readManifestNode(o.blockstore, header, { signal: o.signal })
  const key = typeof o.key === 'function' ? await o.key(header.kdf) : o.key
  const manifest = openManifest(key, header, node)
  const places = segmentPlaces(manifest)
  const lostSegments = new Map<number, number>()
  for (let i = 0; i < places.length; i++) {
    const place = places[i]
    const cid = node.segments[i]
    try {
      const box = await readChecked(o.blockstore, cid, MAX_SEGMENT_BLOCK, o.signal)
      const seg = checkSegment(key, manifest, place, cid, box)
      if (i >= o.start) await onSegment(i, seg.msgs.map(m => fromSegmentMessage(seg.conv, m)))
    } catch (err) {
      if (o.signal?.aborted === true || !isTokenimError(err)) throw err
      lostSegments.set(i, place.conversation.segments[place.seq].count)
    }
  }
  return { total: places.length, lostSegments, contacts: manifest.contacts, attachments: node.attachments }
}

async function readChecked (bs: BlockGetter, cid: CID, max: number, signal?: AbortSignal): Promise<Uint8Array> {
  let got: Uint8Array
  try {
    const r = bs.get(cid, { signal })
    if (r instanceof Uint8Array) got = r
    else if (typeof (r as Promise<Uint8Array>).then === 'function') got = await (r as Promise<Uint8Array>)
    else {
      const chunks: Uint8Array[] = []
      for await (const c of r as AsyncIterable<Uint8Array>) chunks.push(c)
      got = Buffer.concat(chunks)
    }
  } catch (err) {
    if (isTokenimError(err)) throw err
    throw restoreError('MISSING_BLOCK', `block ${cid.toString()} is missing`, { cid: cid.toString() }, err)
  }
  if (got.length > max) throw restoreError('BACKUP_MALFORMED', `block ${cid.toString()} is too large`, { cid: cid.toString() })
  verifyBlock(cid, got)
  return got
}
