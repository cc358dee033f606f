/**
 * The backup job behind `tokenim backup`: build the next version into Helia's blockstore, pin it,
 * record it (pending) in the store's backup index, optionally write a CAR file, anchor it on the chain,
 * ask replicas to pin it, apply local retention. Honest about partial failures:
 *
 *   outcome 'anchored'  everything asked for was done (replica failures are warnings);
 *   outcome 'pending'   the bundle is built, pinned and recorded, but the chain could not take the
 *                       anchor (unreachable, out of funds, …): `--anchor-pending` (or the next backup,
 *                       or the scheduler) anchors it later; the CLI exits with BACKUP_PENDING_EXIT;
 *   outcome 'local'     `--no-anchor`: a local backup that is never anchored (marked so everywhere).
 */
import { createHash } from 'node:crypto'
import { access, constants as fsConstants, stat } from 'node:fs/promises'
import { dirname, resolve as resolvePath } from 'node:path'
import type { GraphWalkerFactory } from '@helia/interface'
import type { CID } from 'multiformats/cid'
import type { RegistryClient } from '../../chain/index.ts'
import type { KdfParams } from '../../crypto/index.ts'
import { TokenimError, isTokenimError } from '../../errors.ts'
import { deriveBackupKey } from '../../identity/index.ts'
import type { LocalPins } from '../../p2p/index.ts'
import type { BackupRecord, ReplicaStatus, Store } from '../../store/index.ts'
import { exists } from '../../util/fs.ts'
import { log } from '../../util/log.ts'
import { releaseHeap } from '../../util/memory.ts'
import { rootCidFromDigest } from '../blocks.ts'
import type { BlockGetter, BlockStore } from '../blocks.ts'
import { buildBackup } from '../builder.ts'
import type { BuildBackupResult, BuildProgress } from '../builder.ts'
import { writeCar } from '../car.ts'
import type { SealCache } from '../seal-cache.ts'
import type { ConversationCache } from '../conversation-cache.ts'
import { requestReplicaPin, DEFAULT_PIN_TIMEOUT_MS } from '../replica/client.ts'
import type { ReplicaRequester } from '../replica/client.ts'
import { applyRetention, drain } from '../retention.ts'
import type { PinsLike } from '../retention.ts'
import { BackupJobErrorCode, jobError } from './errors.ts'
import { acquireBackupLock } from './lock.ts'
import { WrittenBlocks } from './written.ts'
import type { LocalBlockWriter } from './written.ts'

const logger = log('backup:job')

/** Exit code of `tokenim backup` when the backup was made locally but is waiting to be anchored. */
export const BACKUP_PENDING_EXIT = 10

/** meta keys in the store */
export const META_KDF = 'backup.kdf'
import { META_ANCHOR_ERRORS } from './health.ts'
export { META_ANCHOR_ERRORS }

/** the node's local key-value area that holds the seal cache (src/backup/seal-cache.ts) */
const SEAL_CACHE = 'seal-cache'
/** the node's local key-value area that holds the conversation cache (src/backup/conversation-cache.ts) */
const CONVERSATION_CACHE = 'conversation-cache'
export const META_FINGERPRINT = 'backup.fingerprint'

/**
 * Blocks in a version from which V8's heap is given back after the build and after the pin (src/util/memory.ts:
 * ~0.1–0.5 s each at 1,000,000 messages, ~36,000 blocks; a version of 100,000 messages has ~3,600).
 */
export const RELEASE_HEAP_BLOCKS = 10_000

/** Chain errors that leave a version pending (retry later) rather than failing the backup. */
const RETRYABLE_CHAIN = new Set(['CHAIN_UNREACHABLE', 'CHAIN_TIMEOUT', 'INSUFFICIENT_FUNDS', 'CHAIN_ERROR', 'WRONG_CHAIN_ID', 'NO_REGISTRY', 'CHAIN_ABORTED', 'NO_SIGNER'])

export interface HeliaLike {
  blockstore: BlockStore & BlockGetter
  pins: PinsLike & {
    add: (cid: CID, options?: { signal?: AbortSignal, metadata?: Record<string, string | number | boolean>, walker?: GraphWalkerFactory }) => AsyncGenerator<CID, void, undefined>
  }
}

export interface IdentityLike {
  address: string
  keys: { backupRootKey: Uint8Array }
}

/** What the job works on; a running TokenimNode fits (`node`), or the parts given one by one. */
export interface BackupDeps {
  dataDir: string
  store: Store
  helia: HeliaLike
  identity: IdentityLike
  /** to reach replicas (a running TokenimNode's resolver) */
  resolver?: ReplicaRequester['resolver']
  /** batched writes into helia's local blockstore (a running node's `p2p.localBlocks()`); else Helia's put per block */
  localBlocks?: LocalBlockWriter
  /** runs a stretch of work with Helia's datastore writes held and written as one batch (a running node's `p2p.datastoreBatch`) */
  datastoreBatch?: <T>(fn: () => Promise<T>) => Promise<T>
  /** segments sealed before (a running node's `p2p.localKv('seal-cache')`), so unchanged ones are not sealed again */
  sealCache?: SealCache
  /** conversations built before (a running node's `p2p.localKv('conversation-cache')`), so unchanged ones are not read again */
  conversationCache?: ConversationCache
  /** bulk pins in Helia's records (a running node's `p2p.localPins()`); else Helia's pins.add / pins.rm */
  localPins?: LocalPins
}

/** A running TokenimNode (structurally). */
export interface BackupNodeLike {
  dataDir: string
  store: Store
  p2p: { helia: unknown, localBlocks?: () => LocalBlockWriter, datastoreBatch?: <T>(fn: () => Promise<T>) => Promise<T>, localKv?: (name: string) => SealCache, localPins?: () => LocalPins | undefined }
  identity: IdentityLike
  resolver?: unknown
}

export interface JobProgress {
  phase: 'build' | 'pin' | 'car' | 'anchor' | 'replicas' | 'retention' | 'done'
  messages: number
  /** messages in the store when the build started */
  totalMessages: number
  segments: number
  bytes: number
  bytesNew: number
}

export interface RunBackupOptions {
  node?: BackupNodeLike
  deps?: BackupDeps
  /** the registry client, with the owner's wallet as signer; required unless noAnchor */
  chain?: RegistryClient
  passphrase?: string
  /** KDF parameters for a new passphrase (tests: cheap scrypt); default: those of the previous backup, else new ones */
  scryptCost?: { N?: number, r?: number, p?: number }
  /** write the bundle as a CARv1 file here */
  out?: string
  /** make a local, never-anchored backup */
  noAnchor?: boolean
  /** only anchor the pending versions (no new backup) */
  anchorPending?: boolean
  /** wallet addresses of replicas to ask */
  replicas?: string[]
  replicaTimeoutMs?: number
  /** unpin older local versions, keeping this many (and every pending one) */
  keepLast?: number
  /** segment tuning (tests) */
  segmentSize?: number
  onProgress?: (p: JobProgress) => void
  signal?: AbortSignal
}

export interface ReplicaOutcome {
  address: string
  ok: boolean
  peerId?: string
  error?: string
  /** REPLICA_REFUSED reason or error code */
  code?: string
}

export interface JobWarning {
  code: string
  message: string
}

export interface RunBackupResult {
  version: number
  cid: string
  digest: string
  txHash?: string
  messages: number
  bytesTotal: number
  bytesNew: number
  segments: number
  createdAt: number
  replicas: ReplicaOutcome[]
  file?: string
  anchored: boolean
  pending: boolean
  outcome: 'anchored' | 'pending' | 'local'
  /** older pending versions anchored on the way */
  anchoredPending: number[]
  /** versions unpinned by --keep-last */
  unpinned: number[]
  warnings: JobWarning[]
}

export interface AnchorPendingItem {
  version: number
  cid: string
  digest: string
  anchored: boolean
  txHash?: string
  error?: JobWarning
  replicas: ReplicaOutcome[]
}

export interface AnchorPendingResult {
  /** every version that was pending, in version order, with what happened */
  versions: AnchorPendingItem[]
  /** versions still pending afterwards */
  pending: number[]
  /** versions the chain anchors with ANOTHER digest (ANCHOR_CONFLICT): no longer pending, never anchorable */
  conflicts: number[]
  warnings: JobWarning[]
}

export interface AnchorError {
  code: string
  message: string
  at: number
}

function depsOf (o: { node?: BackupNodeLike, deps?: BackupDeps }): BackupDeps {
  if (o.deps !== undefined) return o.deps
  if (o.node === undefined) throw jobError(BackupJobErrorCode.INVALID_ARGUMENT, 'runBackup needs a node or deps')
  const n = o.node
  return {
    dataDir: n.dataDir,
    store: n.store,
    helia: n.p2p.helia as HeliaLike,
    identity: n.identity,
    resolver: n.resolver as ReplicaRequester['resolver'] | undefined,
    ...(typeof n.p2p.localKv === 'function' ? { conversationCache: n.p2p.localKv(CONVERSATION_CACHE) } : {}),
    ...(typeof n.p2p.localBlocks === 'function' ? { localBlocks: n.p2p.localBlocks() } : {}),
    ...(typeof n.p2p.datastoreBatch === 'function' ? { datastoreBatch: n.p2p.datastoreBatch.bind(n.p2p) } : {}),
    ...(typeof n.p2p.localKv === 'function' ? { sealCache: n.p2p.localKv(SEAL_CACHE) } : {}),
    ...(typeof n.p2p.localPins === 'function' ? { localPins: n.p2p.localPins() } : {})
  }
}

function warningOf (err: unknown): JobWarning {
  if (isTokenimError(err)) return { code: err.code, message: err.message }
  return { code: 'INTERNAL', message: (err as Error)?.message ?? String(err) }
}

/**
 * Blocks read for a CAR come from the local blockstore only (never a network wait): straight from level
 * when the node can (Helia's get costs a GC read lock, a queue job, a has and a get, and the promises
 * between them, for every block: at 1,000,000 messages ~1.6 GB of short-lived objects, which grew the
 * V8 heap by ~70 MB), else through Helia offline. Either way readBlock checks every block against its CID.
 */
function offline (helia: HeliaLike, local?: LocalBlockWriter): BlockGetter {
  const get = local?.get
  if (get === undefined) return { get: (cid, options) => (helia.blockstore.get as (c: CID, o: unknown) => ReturnType<BlockGetter['get']>)(cid, { ...options, offline: true }) }
  const found = (cid: CID, bytes: Uint8Array | undefined): Uint8Array => {
    if (bytes === undefined) throw Object.assign(new Error(`block ${cid.toString()} is not stored`), { name: 'NotFoundError' })
    return bytes
  }
  return {
    get: (cid) => {
      const got = get(cid)
      return got instanceof Promise ? got.then(b => found(cid, b)) : found(cid, got)
    }
  }
}

/** Refuse an --out target before building anything: FILE_EXISTS, NO_SUCH_DIRECTORY, PERMISSION_DENIED. */
export async function checkOutTarget (path: string): Promise<string> {
  const full = resolvePath(path)
  if (await exists(full)) throw new TokenimError('FILE_EXISTS', `refusing to overwrite ${full}`, { path: full })
  const dir = dirname(full)
  try {
    if (!(await stat(dir)).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' })
  } catch (err) {
    throw new TokenimError('NO_SUCH_DIRECTORY', `directory ${dir} does not exist for ${full}`, { path: full }, { cause: err })
  }
  try {
    await access(dir, fsConstants.W_OK)
  } catch (err) {
    throw new TokenimError('PERMISSION_DENIED', `cannot write to ${dir} (permission denied)`, { path: full }, { cause: err })
  }
  return full
}

async function recordAnchorError (store: Store, version: number, err: JobWarning | undefined): Promise<void> {
  const all = (await store.getMeta<Record<string, AnchorError>>(META_ANCHOR_ERRORS)) ?? {}
  if (err === undefined) delete all[String(version)]
  else all[String(version)] = { ...err, at: Date.now() }
  await store.setMeta(META_ANCHOR_ERRORS, Object.keys(all).length === 0 ? undefined : all)
}

/** Anchor one recorded version. Updates the record. Throws the chain error (the record stays pending). */
async function anchorRecord (deps: BackupDeps, chain: RegistryClient, rec: BackupRecord, signal?: AbortSignal): Promise<BackupRecord> {
  const owner = deps.identity.address
  // what an anchor needs to know, asked at once (each is a round trip to the RPC; ensureFunds only reads,
  // or tops a dev chain wallet up); the first failure in this order is the one reported
  const [digestR, latestR, fundsR] = await Promise.allSettled([
    chain.digestOf(owner, rec.version, { signal }),
    chain.latest(owner, { signal }),
    chain.ensureFunds(owner, { signal })
  ])
  if (digestR.status === 'rejected') throw digestR.reason
  const onChain = digestR.value
  let txHash: string | undefined
  if (onChain !== undefined) {
    if (onChain.toLowerCase() !== rec.digest.toLowerCase()) {
      // only a holder of this wallet's key can anchor for it: never a relayer's doing (the signature covers the digest)
      throw jobError(BackupJobErrorCode.ANCHOR_CONFLICT,
        `the chain anchors another bundle (${onChain}) as version ${rec.version} of ${owner}, not the one made here (${rec.digest}): ` +
        'only a holder of this wallet\'s key can do that (another device restored from the same mnemonic, or a leaked key); ' +
        'this local version can never be anchored: check `tokenim backups`, then make a new backup', { version: rec.version, local: rec.digest, chain: onChain })
    }
    // anchored earlier (a send that timed out but was mined, or a relayer's anchorWithSig): find its transaction
    txHash = (await chain.history(owner, { signal }).catch(() => [])).find(e => e.version === rec.version)?.txHash
  } else {
    if (latestR.status === 'rejected') throw latestR.reason
    const latest = latestR.value
    if (latest.version >= rec.version) {
      throw jobError(BackupJobErrorCode.ANCHOR_SUPERSEDED,
        `the chain already has version ${latest.version} for this owner; local version ${rec.version} can no longer be anchored`, { version: rec.version, latest: latest.version })
    }
    if (fundsR.status === 'rejected') throw fundsR.reason
    txHash = (await chain.anchor(rec.version, rec.digest, { signal })).txHash
  }
  const next: BackupRecord = { ...rec, anchored: true, pending: false, ...(txHash !== undefined ? { txHash } : {}) }
  await deps.store.putBackup(next)
  await recordAnchorError(deps.store, rec.version, undefined)
  logger('anchored version %d (%s) tx %s', rec.version, rec.digest, txHash)
  return next
}

async function askReplicas (deps: BackupDeps, rec: BackupRecord, replicas: string[], timeoutMs: number, signal?: AbortSignal): Promise<ReplicaOutcome[]> {
  const resolver = deps.resolver
  const outcomes = await Promise.all(replicas.map(async (address): Promise<ReplicaOutcome> => {
    if (resolver === undefined) return { address, ok: false, code: 'NO_NETWORK', error: 'the node is not running: replicas cannot be asked' }
    try {
      const receipt = await requestReplicaPin({ resolver }, address, { owner: deps.identity.address, version: rec.version, cid: rec.cid }, { signal, timeout: timeoutMs })
      return { address, ok: true, peerId: receipt.peerId }
    } catch (err) {
      const w = warningOf(err)
      const reason = isTokenimError(err) && typeof err.info.reason === 'string' ? err.info.reason : w.code
      return { address, ok: false, code: reason, error: w.message }
    }
  }))
  const now = Date.now()
  const statuses: ReplicaStatus[] = outcomes.map(o => ({ address: o.address, ok: o.ok, at: now, ...(o.peerId !== undefined ? { peerId: o.peerId } : {}), ...(o.error !== undefined ? { error: o.error.slice(0, 500) } : {}) }))
  const current = (await deps.store.getBackup(rec.version)) ?? rec
  const asked = new Set(replicas.map(a => a.toLowerCase()))
  const merged = [...current.replicas.filter(r => !asked.has(r.address.toLowerCase())), ...statuses]
  await deps.store.putBackup({ ...current, replicas: merged })
  return outcomes
}

function replicaWarnings (outcomes: ReplicaOutcome[]): JobWarning[] {
  const failed = outcomes.filter(o => !o.ok)
  if (failed.length === 0) return []
  return [{ code: 'REPLICA_FAILED', message: `not confirmed by replica${failed.length > 1 ? 's' : ''} ${failed.map(f => `${f.address} (${f.code ?? 'error'})`).join(', ')}; the backup is kept locally` }]
}

/**
 * Anchor every pending version, oldest first (`backup --anchor-pending`). Stops at the first chain
 * failure that would also fail the next ones (unreachable, funds); a superseded version is marked
 * as no longer pending and the others go on. Replicas are asked for the versions anchored now.
 */
export async function anchorPendingBackups (deps: BackupDeps, chain: RegistryClient, options: { replicas?: string[], replicaTimeoutMs?: number, signal?: AbortSignal, onAnchored?: (v: number) => void } = {}): Promise<AnchorPendingResult> {
  const pending = (await deps.store.backups()).filter(r => r.pending === true).sort((a, b) => a.version - b.version)
  const result: AnchorPendingResult = { versions: [], pending: [], conflicts: [], warnings: [] }
  let blocked: JobWarning | undefined
  for (const rec of pending) {
    const item: AnchorPendingItem = { version: rec.version, cid: rec.cid, digest: rec.digest, anchored: false, replicas: [] }
    result.versions.push(item)
    if (blocked !== undefined) {
      item.error = blocked
      continue
    }
    try {
      const done = await anchorRecord(deps, chain, rec, options.signal)
      item.anchored = true
      if (done.txHash !== undefined) item.txHash = done.txHash
      options.onAnchored?.(rec.version)
      if ((options.replicas ?? []).length > 0) {
        item.replicas = await askReplicas(deps, done, options.replicas ?? [], options.replicaTimeoutMs ?? DEFAULT_PIN_TIMEOUT_MS, options.signal)
        result.warnings.push(...replicaWarnings(item.replicas).map(w => ({ ...w, message: `version ${rec.version}: ${w.message}` })))
      }
    } catch (err) {
      const w = warningOf(err)
      item.error = w
      if (isTokenimError(err, BackupJobErrorCode.ANCHOR_SUPERSEDED) || isTokenimError(err, BackupJobErrorCode.ANCHOR_CONFLICT)) {
        if (err.code === BackupJobErrorCode.ANCHOR_CONFLICT) result.conflicts.push(rec.version)
        await deps.store.putBackup({ ...rec, pending: false })
        await recordAnchorError(deps.store, rec.version, w)
        result.warnings.push(w)
        continue
      }
      await recordAnchorError(deps.store, rec.version, w)
      result.warnings.push({ code: w.code, message: `version ${rec.version} stays pending: ${w.message}${w.code === 'INSUFFICIENT_FUNDS' ? ' (fund the wallet, or have it relayed: `tokenim anchor-request --out FILE` here, `tokenim relay FILE` on a funded node)' : ''}` })
      blocked = w
    }
  }
  result.pending = (await deps.store.backups()).filter(r => r.pending === true).map(r => r.version)
  return result
}

function pendingWarning (version: number, e: JobWarning): JobWarning {
  return {
    code: 'ANCHOR_PENDING',
    message: `backup version ${version} is stored and pinned locally but NOT anchored (${e.code}: ${e.message}); ` +
      (e.code === 'INSUFFICIENT_FUNDS' ? 'fund the wallet, or have it relayed (`tokenim anchor-request --out FILE` here, `tokenim relay FILE` on a funded node), then ' : '') +
      'run `tokenim backup --anchor-pending`'
  }
}

/**
 * A cheap fingerprint of what a backup would contain (per conversation: count and newest message;
 * contacts), so the scheduler can tell whether anything changed since the last version.
 */
export async function storeFingerprint (store: Pick<Store, 'conversations' | 'contacts'>): Promise<string> {
  const h = createHash('sha256')
  for (const c of await store.conversations()) h.update(`${c.peer}|${c.count}|${c.lastTs}|${c.lastMessageId}\n`)
  for (const c of await store.contacts()) h.update(`c|${c.address}|${c.name ?? ''}|${c.addedAt}\n`)
  return h.digest('hex')
}

async function chooseKdf (store: Store, passphrase: string | undefined, cost?: { N?: number, r?: number, p?: number }): Promise<{ kdf?: KdfParams, cost?: { N?: number, r?: number, p?: number } }> {
  // reuse the previous parameters so the key (and so the segment blocks) stay the same across versions
  const previous = await store.getMeta<KdfParams>(META_KDF)
  if (passphrase === undefined) {
    // never silently drop the second factor a user chose for earlier versions
    if (previous !== undefined) throw new TokenimError('PASSPHRASE_REQUIRED', 'earlier backups of this data dir use a backup passphrase; give it with --passphrase-file')
    return {}
  }
  return previous !== undefined ? { kdf: previous } : { cost }
}

/**
 * Make the next backup version (or, with `anchorPending`, only anchor pending versions — then the
 * result is an AnchorPendingResult). See the file comment for the outcomes.
 */
export async function runBackup (options: RunBackupOptions & { anchorPending: true }): Promise<AnchorPendingResult>
export async function runBackup (options: RunBackupOptions): Promise<RunBackupResult>
export async function runBackup (options: RunBackupOptions): Promise<RunBackupResult | AnchorPendingResult> {
  const deps = depsOf(options)
  const { store, helia, identity } = deps
  const { chain, signal } = options
  const onProgress = options.onProgress ?? (() => {})
  if (options.keepLast !== undefined && (!Number.isSafeInteger(options.keepLast) || options.keepLast < 1)) {
    throw jobError(BackupJobErrorCode.INVALID_ARGUMENT, '--keep-last must be a positive integer')
  }
  if (options.anchorPending === true && options.noAnchor === true) throw jobError(BackupJobErrorCode.INVALID_ARGUMENT, '--anchor-pending and --no-anchor cannot be combined')
  if (options.noAnchor !== true && chain === undefined) {
    throw jobError(BackupJobErrorCode.NO_CHAIN_PROFILE, 'no chain profile: give --chain FILE, set TOKENIM_CHAIN, put chain.json in the data dir, or use --no-anchor for a local backup')
  }
  const out = options.out !== undefined && options.anchorPending !== true ? await checkOutTarget(options.out) : undefined

  const lock = await acquireBackupLock(deps.dataDir)
  try {
    if (options.anchorPending === true) {
      return await anchorPendingBackups(deps, chain as RegistryClient, { replicas: options.replicas, replicaTimeoutMs: options.replicaTimeoutMs, signal })
    }
    const warnings: JobWarning[] = []
    const owner = identity.address

    // next version = max(chain latest, local latest) + 1
    const localLatest = await store.latestBackup()
    let chainLatest: { version: number, digest: string } | undefined
    let chainDown: JobWarning | undefined
    if (chain !== undefined) {
      try {
        chainLatest = await chain.latest(owner, { signal })
      } catch (err) {
        chainDown = warningOf(err)
        if (!RETRYABLE_CHAIN.has(chainDown.code)) throw err
        logger('chain latest unavailable: %s', chainDown.message)
      }
    }
    const version = Math.max(chainLatest?.version ?? 0, localLatest?.version ?? 0) + 1
    let prevRoot: string | undefined
    let prevVersion: number | undefined
    if (chainLatest !== undefined && chainLatest.version > 0 && chainLatest.version >= (localLatest?.version ?? 0)) {
      prevVersion = chainLatest.version
      prevRoot = rootCidFromDigest(chainLatest.digest).toString()
    } else if (localLatest !== undefined) {
      prevVersion = localLatest.version
      prevRoot = localLatest.cid
    }

    const { kdf: prevKdf, cost } = await chooseKdf(store, options.passphrase, options.scryptCost)
    const key = await deriveBackupKey(identity.keys.backupRootKey, { passphrase: options.passphrase, kdf: prevKdf, scryptCost: cost })
    const kdf = key.kdf ?? null
    const totalMessages = await store.countMessages()
    const fingerprint = await storeFingerprint(store)
    const progress = (phase: JobProgress['phase'], p?: BuildProgress): void => {
      try {
        onProgress({ phase, totalMessages, messages: p?.messages ?? totalMessages, segments: p?.segments ?? 0, bytes: p?.bytes ?? 0, bytesNew: p?.bytesNew ?? 0 })
      } catch (err) {
        logger.error('progress callback failed: %s', (err as Error).message)
      }
    }
    let lastBuild: BuildProgress | undefined
    // blocks are written in level batches, and kept (up to a budget) so the pin walks them without
    // reading them back (written.ts)
    const written = new WrittenBlocks(helia.blockstore, { local: deps.localBlocks })
    let built: BuildBackupResult
    try {
      built = await buildBackup({
        store,
        blockstore: written,
        ...(deps.sealCache !== undefined ? { sealCache: deps.sealCache } : {}),
        ...(deps.conversationCache !== undefined ? { conversationCache: deps.conversationCache } : {}),
        owner,
        version,
        backupKey: key.key,
        kdf,
        ...(prevRoot !== undefined ? { prevRoot, prevVersion } : {}),
        ...(options.segmentSize !== undefined ? { segmentSize: options.segmentSize } : {}),
        onProgress: (p) => { lastBuild = p; progress('build', p) },
        signal
      })
      // every block on disk before anything points at the root
      await written.flush()
      key.key.fill(0)
      if (kdf !== null) await store.setMeta(META_KDF, kdf)
      // a large build leaves V8's heap grown (~150 MB at 1,000,000 messages, ~45 MB live), and the pin of a
      // large DAG grows it again: their pages are given back before the next phase (src/util/memory.ts)
      if (built.blocks >= RELEASE_HEAP_BLOCKS) releaseHeap()
      progress('pin', lastBuild)
      const root = built.root
      const metadata = { tokenimBackupVersion: version }
      if (deps.localPins !== undefined) {
        // Helia's records in one synced batch; the manifest nodes from memory, the segments not read
        await deps.localPins.add(root, { signal, metadata, known: written.known() })
      } else {
        const pin = async (): Promise<void> => { await drain(helia.pins.add(root, { signal, metadata, walker: written.walker() })) }
        // Helia reads and writes a pin record per block: those writes go to level as one batch
        await (deps.datastoreBatch !== undefined ? deps.datastoreBatch(pin) : pin())
      }
    } finally {
      key.key.fill(0)
      written.clear()
    }
    const createdAt = Date.now()
    let rec: BackupRecord = {
      version,
      cid: built.root.toString(),
      digest: built.digest,
      anchored: false,
      pending: options.noAnchor !== true,
      createdAt,
      messages: built.messages,
      bytesTotal: built.bytesTotal,
      bytesNew: built.bytesNew,
      replicas: []
    }
    await store.putBackup(rec)

    if (out !== undefined) {
      if (built.blocks >= RELEASE_HEAP_BLOCKS) releaseHeap()
      progress('car', lastBuild)
      try {
        await writeCar(built.root, offline(helia, deps.localBlocks), out, { signal })
      } catch (err) {
        // nothing was anchored or announced yet: take the version back so the failure leaves nothing behind
        await store.deleteBackup(version).catch(() => {})
        await (deps.localPins !== undefined ? deps.localPins.rm(built.root) : drain(helia.pins.rm(built.root))).catch(() => {})
        throw err
      }
      rec = { ...rec, file: out }
      await store.putBackup(rec)
    }

    const result: RunBackupResult = {
      version,
      cid: rec.cid,
      digest: rec.digest,
      messages: built.messages,
      bytesTotal: built.bytesTotal,
      bytesNew: built.bytesNew,
      segments: built.segments,
      createdAt,
      replicas: [],
      ...(out !== undefined ? { file: out } : {}),
      anchored: false,
      pending: rec.pending === true,
      outcome: options.noAnchor === true ? 'local' : 'pending',
      anchoredPending: [],
      unpinned: [],
      warnings
    }

    if (options.noAnchor !== true && chain !== undefined && chainDown !== undefined) {
      await recordAnchorError(store, version, chainDown)
      warnings.push(pendingWarning(version, chainDown))
    } else if (options.noAnchor !== true && chain !== undefined) {
      progress('anchor', lastBuild)
      const earlier = await anchorPendingBackups(deps, chain, { signal, onAnchored: v => { if (v !== version) result.anchoredPending.push(v) } })
      warnings.push(...earlier.warnings.filter(w => !w.message.startsWith(`version ${version} `)))
      const mine = earlier.versions.find(v => v.version === version)
      if (mine?.anchored === true) {
        result.anchored = true
        result.pending = false
        result.outcome = 'anchored'
        if (mine.txHash !== undefined) result.txHash = mine.txHash
      } else {
        warnings.push(pendingWarning(version, mine?.error ?? { code: 'CHAIN_ERROR', message: 'not anchored' }))
      }
    }

    const replicas = options.replicas ?? []
    if (replicas.length > 0) {
      if (result.anchored) {
        progress('replicas', lastBuild)
        result.replicas = await askReplicas(deps, rec, replicas, options.replicaTimeoutMs ?? DEFAULT_PIN_TIMEOUT_MS, signal)
        warnings.push(...replicaWarnings(result.replicas))
      } else {
        result.replicas = replicas.map(address => ({ address, ok: false, code: 'NOT_ANCHORED', error: 'not asked: replicas only keep anchored versions' }))
      }
    }

    if (options.keepLast !== undefined) {
      progress('retention', lastBuild)
      result.unpinned = (await applyRetention(store, helia.pins, options.keepLast, { signal, ...(deps.localPins !== undefined ? { unpin: deps.localPins.rm } : {}) })).unpinned
    }
    await store.setMeta(META_FINGERPRINT, fingerprint)
    progress('done', lastBuild)
    return result
  } finally {
    await lock.release()
  }
}

