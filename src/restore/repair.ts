/**
 * `tokenim repair`: fix a damaged message store in place, then (optionally) merge the latest verified
 * backup into it — without losing anything the store has that the backup does not (messages newer than
 * the backup, or never backed up).
 *
 *  1. inspect: open the store and run the full consistency check (what was wrong, for the report);
 *  2. LevelDB's own repair (salvages what it can from damaged table/log/manifest files), then the derived
 *     indexes are rebuilt from the message rows (conversation summaries, the id index): src/store repairStore;
 *  3. with a backup source: the chain's anchor picks the bundle (the latest, or `version`), every block,
 *     the digest, owner, version, segments and counts are verified BEFORE anything is written, then the
 *     messages are imported in atomic batches, idempotently by id (existing rows are never replaced, so
 *     nothing newer is lost and a rerun duplicates nothing), contacts the store lacks are added, and
 *     attachment blocks are copied into the node's blockstore;
 *  4. the full consistency check again: `ok` only when nothing is left.
 *  5. the store marker (src/store/marker.ts): after a backup was merged and the store is consistent, the
 *     marker is reset to this store, so a loss reported at start is cleared (the backup brought back what
 *     it had; without a backup the loss stays reported, unless `acceptLoss`).
 */
import type { CID } from 'multiformats/cid'
import { readBackup, verifyBackup, walkDag } from '../backup/index.ts'
import type { BackupKeySource, BlockStore } from '../backup/index.ts'
import { isTokenimError, TokenimError } from '../errors.ts'
import { openStore, repairStore, StoreErrorCode } from '../store/index.ts'
import type { ConsistencyProblem, RebuildResult, Store, StoredMessage } from '../store/index.ts'
import { log } from '../util/log.ts'
import { resolveAnchor } from './anchor.ts'
import type { AnchorReader } from './anchor.ts'
import { restoreError } from './errors.ts'
import { DEFAULT_BATCH_SIZE } from './restore.ts'
import type { RestoreProblem } from './restore.ts'
import type { BlockSource } from './source.ts'

const logger = log('restore:repair')

/** Store meta key recording the last repair: {at, fixes, version?, cid?, imported}. */
export const REPAIRED_META = 'lastRepair'

const KEY_PROBLEMS = new Set(['WRONG_PASSPHRASE', 'DECRYPT_FAILED', 'PASSPHRASE_REQUIRED'])

export interface RepairFix {
  /** leveldb | created | conversations | index-fixed | index-removed */
  kind: string
  count: number
  message: string
}

export interface RepairBackupOptions {
  /** whose backup (the data dir's identity) */
  owner: string
  backupKey: BackupKeySource
  source: BlockSource
  chain?: AnchorReader
  /** merge this anchored version instead of the latest */
  version?: number
  /** accept a bundle the chain cannot vouch for (CAR sources) */
  allowUnanchored?: boolean
  /** where attachment blocks are copied (the node's blockstore); undefined: not copied */
  attachments?: BlockStore
}

export interface RepairProgress {
  phase: 'inspect' | 'repair' | 'verify' | 'import' | 'attachments' | 'check'
  segments?: number
  totalSegments?: number
  messages?: number
}

export interface RepairOptions {
  /** the store (DATA_DIR/store) */
  storePath: string
  /** merge a backup after repairing the store */
  backup?: RepairBackupOptions
  batchSize?: number
  signal?: AbortSignal
  onProgress?: (p: RepairProgress) => void
  /** reset the store marker even without a merged backup (the person accepts the loss) */
  acceptLoss?: boolean
}

export interface RepairResult {
  /** true when the store is consistent now */
  ok: boolean
  /** what was fixed in the store */
  fixes: RepairFix[]
  /** problems the consistency check found before the repair (at most 100 listed) */
  found: ConsistencyProblem[]
  /** problems left after it (empty when ok) */
  remaining: ConsistencyProblem[]
  /** messages written from the backup */
  imported: number
  /** messages that were in the store (after the LevelDB repair) and were all kept, newer ones included */
  kept: number
  /** messages in the store now */
  messages: number
  /** messages the store had lost against its marker (`<dataDir>/store.json`) before the repair, 0 if none */
  lost?: number
  /** the marker was reset to this store (after a merged backup): the next start no longer reports the loss */
  markerReset?: boolean
  /** the merged backup's version / root / digest, and whether the chain vouched for it */
  version?: number
  cid?: string
  digest?: string
  anchored?: boolean
  contactsAdded: number
  attachments: number
  warnings: string[]
}

interface Inspection {
  found: ConsistencyProblem[]
  openError?: TokenimError
  missing: boolean
}

async function inspect (path: string): Promise<Inspection> {
  let store: Store
  try {
    store = await openStore(path, { createIfMissing: false })
  } catch (err) {
    if (isTokenimError(err, StoreErrorCode.NOT_FOUND)) return { found: [], missing: true }
    // someone else has it open, or a newer tokenim wrote it: repairing would make things worse
    if (isTokenimError(err, StoreErrorCode.LOCKED) || isTokenimError(err, StoreErrorCode.SCHEMA_UNKNOWN)) throw err
    if (isTokenimError(err)) return { found: [], openError: err, missing: false }
    throw err
  }
  try {
    return { found: await store.checkConsistency({ limit: 100 }), missing: false }
  } catch (err) {
    if (!isTokenimError(err, StoreErrorCode.CORRUPT) && !isTokenimError(err, StoreErrorCode.IO)) throw err
    return { found: [], openError: err, missing: false }
  } finally {
    await store.close().catch(() => {})
  }
}

function fixesOf (rb: RebuildResult, openError?: TokenimError): RepairFix[] {
  const fixes: RepairFix[] = []
  if (openError !== undefined) {
    const detail = typeof openError.info.detail === 'string' ? openError.info.detail : openError.message
    fixes.push({ kind: 'leveldb', count: 1, message: `LevelDB repaired the damaged database files (${openError.code}: ${detail})` })
  }
  if (rb.conversations > 0) fixes.push({ kind: 'conversations', count: rb.conversations, message: `${rb.conversations} conversation summar${rb.conversations === 1 ? 'y' : 'ies'} recomputed from the messages` })
  if (rb.indexFixed > 0) fixes.push({ kind: 'index-fixed', count: rb.indexFixed, message: `${rb.indexFixed} message id index entr${rb.indexFixed === 1 ? 'y' : 'ies'} added or corrected` })
  if (rb.indexRemoved > 0) fixes.push({ kind: 'index-removed', count: rb.indexRemoved, message: `${rb.indexRemoved} message id index entr${rb.indexRemoved === 1 ? 'y' : 'ies'} pointing to no message removed` })
  return fixes
}

/** Repair the store at `o.storePath` and, with `o.backup`, merge the verified backup into it. */
export async function repairMessageStore (o: RepairOptions): Promise<RepairResult> {
  const onProgress = o.onProgress ?? (() => {})
  const signal = o.signal
  onProgress({ phase: 'inspect' })
  const ins = await inspect(o.storePath)
  signal?.throwIfAborted()

  onProgress({ phase: 'repair' })
  let store: Store
  let fixes: RepairFix[]
  if (ins.missing) {
    store = await openStore(o.storePath)
    fixes = [{ kind: 'created', count: 1, message: `there was no message store at ${o.storePath}: an empty one was created` }]
  } else {
    let repaired: Awaited<ReturnType<typeof repairStore>>
    try {
      repaired = await repairStore(o.storePath)
    } catch (err) {
      if (!(err instanceof TokenimError) || err.code === StoreErrorCode.LOCKED) throw err
      throw new TokenimError(StoreErrorCode.CORRUPT,
        `the message store at ${o.storePath} is damaged beyond LevelDB's repair (${err.message}): move it aside and restore from a backup (tokenim restore --merge --mnemonic-file F)`,
        { path: o.storePath }, { cause: err })
    }
    store = repaired.store
    fixes = fixesOf(repaired.fixes, ins.openError)
  }

  const result: RepairResult = {
    ok: false, fixes, found: ins.found, remaining: [], imported: 0, kept: 0, messages: 0, contactsAdded: 0, attachments: 0, warnings: []
  }
  try {
    result.kept = await store.countMessages()
    result.lost = store.markerStatus()?.lost ?? 0
    if (o.backup !== undefined) await mergeBackup(store, o.backup, result, o)
    onProgress({ phase: 'check' })
    result.remaining = await store.checkConsistency({ limit: 100 })
    result.messages = await store.countMessages()
    result.ok = result.remaining.length === 0
    if (result.ok && (result.version !== undefined || o.acceptLoss === true)) {
      await store.resetMarker()
      result.markerReset = true
    }
    await store.setMeta(REPAIRED_META, {
      at: Date.now(),
      fixes: fixes.map(f => f.kind),
      imported: result.imported,
      ...(result.version !== undefined ? { version: result.version, cid: result.cid } : {})
    })
  } finally {
    await store.close().catch(() => {})
  }
  logger('repaired %s: %d fixes, %d imported, %d kept, %d problems left', o.storePath, fixes.length, result.imported, result.kept, result.remaining.length)
  return result
}

async function mergeBackup (store: Store, b: RepairBackupOptions, result: RepairResult, o: RepairOptions): Promise<void> {
  const onProgress = o.onProgress ?? (() => {})
  const signal = o.signal
  const batchSize = o.batchSize ?? DEFAULT_BATCH_SIZE
  const anchor = await resolveAnchor({ chain: b.chain, owner: b.owner, version: b.version, carRoot: b.source.root, blockstore: b.source.blockstore, allowUnanchored: b.allowUnanchored, signal })
  result.warnings.push(...b.source.warnings, ...anchor.warnings)
  const root = anchor.root
  await b.source.prefetch(root, { signal })

  // verify everything before writing anything
  onProgress({ phase: 'verify', segments: 0 })
  const report = await verifyBackup({
    root,
    blockstore: b.source.blockstore,
    owner: b.owner,
    version: anchor.version,
    digest: anchor.anchored ? anchor.digest : undefined,
    backupKey: b.backupKey,
    attachments: b.attachments !== undefined,
    signal,
    onProgress: p => { onProgress({ phase: 'verify', segments: p.segments, totalSegments: p.totalSegments }) }
  })
  const keyProblem = report.problems.find(p => KEY_PROBLEMS.has(p.code))
  if (keyProblem !== undefined) throw restoreError(keyProblem.code, keyProblem.message, { owner: b.owner })
  if (report.problems.length > 0) {
    const first = report.problems[0]
    const more = report.problems.length > 1 ? ` (and ${report.problems.length - 1} more)` : ''
    const done = result.fixes.length > 0 ? `the store itself was repaired (${result.fixes.map(f => f.kind).join(', ')}), but ` : ''
    throw restoreError(first.code,
      `${done}the backup is damaged, nothing was merged from it: ${first.message}${more}; try another source (--file, --bootstrap) or \`tokenim restore --merge --salvage\``,
      { problems: report.problems as RestoreProblem[], cid: root.toString() })
  }
  result.version = report.version
  result.cid = root.toString()
  result.digest = report.digest
  result.anchored = anchor.anchored

  // import: idempotent by id, one atomic batch per addMessages call
  const reader = await readBackup({ root, blockstore: b.source.blockstore, owner: b.owner, version: report.version, digest: report.digest, backupKey: b.backupKey, signal })
  let buf: StoredMessage[] = []
  const flush = async (segments: number): Promise<void> => {
    if (buf.length > 0) result.imported += (await store.addMessages(buf)).added
    buf = []
    onProgress({ phase: 'import', segments, totalSegments: reader.links.segments.length, messages: result.imported })
  }
  for await (const seg of reader.segments({ signal })) {
    buf.push(...seg.messages)
    if (buf.length >= batchSize) await flush(seg.index + 1)
  }
  await flush(reader.links.segments.length)

  // contacts: what the user has wins; the backup fills in what is missing
  for (const c of reader.contacts) {
    const existing = await store.getContact(c.address)
    if (existing === undefined || (existing.name === undefined && c.name !== undefined)) {
      await store.setContact(c.address, existing?.name ?? c.name)
      result.contactsAdded++
    }
  }

  if (b.attachments !== undefined) await copyAttachments(reader.links.attachments, b, result, o)
}

async function copyAttachments (roots: CID[], b: RepairBackupOptions, result: RepairResult, o: RepairOptions): Promise<void> {
  const target = b.attachments as BlockStore
  for (const a of roots) {
    try {
      for await (const { cid, bytes } of walkDag(b.source.blockstore, a, { signal: o.signal })) {
        if (!await target.has(cid)) await target.put(cid, bytes)
      }
      result.attachments++
    } catch (err) {
      if (o.signal?.aborted === true) throw err
      result.warnings.push(`attachment ${a.toString()} could not be copied: ${(err as Error).message}`)
    }
    o.onProgress?.({ phase: 'attachments', messages: result.attachments })
  }
}
