/**
 * Backup operations shared by the daemon's control API and the in-process CLI path:
 *
 *   POST /v1/backup   {out?, noAnchor?, anchorPending?, passphrase?, keepLast?, replicas?, chain?}
 *                     → RunBackupResult | AnchorPendingResult (see src/backup/job); with
 *                     `Accept: application/x-ndjson` streamed (server.ts): {"progress": JobProgress} lines first
 *   GET  /v1/backups  ?chain=                  → { backups: BackupListEntry[], chainError? }
 *   GET  /v1/backup/status                     → { health: BackupHealth, scheduler?: SchedulerStatus }
 *
 * Settings precedence: request fields (CLI flags) > environment (TOKENIM_CHAIN) > DATA_DIR/config.json
 * (`chain`, `replicas`, `keepLast`) > DATA_DIR/chain.json. Without a chain profile only `noAnchor`
 * works (NO_CHAIN_PROFILE).
 */
import { resolve as resolvePath } from 'node:path'
import { backupHealth, listBackups, runBackup, startBackupScheduler, BackupJobErrorCode } from '../backup/job/index.ts'
import { startReplicaService, PIN_PROTOCOL } from '../backup/replica/index.ts'
import type { ReplicaService } from '../backup/replica/index.ts'
import type { AnchorPendingResult, BackupNodeLike, BackupScheduler, JobProgress, ListBackupsResult, RunBackupResult } from '../backup/job/index.ts'
import { RegistryClient, loadChainProfile } from '../chain/index.ts'
import { loadConfig } from '../config/index.ts'
import { TokenimError } from '../errors.ts'
import type { TokenimNode } from '../node/index.ts'
import { chainProfilePath } from './chain-profile.ts'
import { apiError, ApiErrorCode } from './errors.ts'
import { progressRoute } from './server.ts'
import type { Routes } from './server.ts'
import { parseAddress, parseObject } from './validate.ts'

export interface BackupParams {
  out?: string
  noAnchor?: boolean
  anchorPending?: boolean
  passphrase?: string
  keepLast?: number
  replicas?: string[]
  /** chain profile path (--chain) */
  chain?: string
  replicaTimeoutMs?: number
}

/** The chain client for the node's wallet, or undefined when no profile applies. */
export async function backupChain (node: Pick<TokenimNode, 'dataDir' | 'identity'>, chainPath?: string, withSigner = true): Promise<RegistryClient | undefined> {
  const path = await chainProfilePath(node.dataDir, chainPath)
  if (path === undefined) return undefined
  const profile = await loadChainProfile(path)
  return new RegistryClient(profile, withSigner ? node.identity.wallet : undefined)
}

function noProfile (): TokenimError {
  return new TokenimError(BackupJobErrorCode.NO_CHAIN_PROFILE,
    'no chain profile: give --chain FILE, set TOKENIM_CHAIN, put "chain" in config.json or chain.json in the data dir, or use --no-anchor for a local-only backup')
}

/** The replicas a backup with these parameters asks: the request's, else config.json's "replicas". */
export async function backupReplicas (dataDir: string, p: Pick<BackupParams, 'replicas'>): Promise<string[]> {
  return p.replicas ?? (await loadConfig(dataDir)).replicas ?? []
}

/** `tokenim backup` on a running node (or, when it asks no replica, one without network: src/node/local.ts). */
export async function doBackup (node: BackupNodeLike & Pick<TokenimNode, 'dataDir' | 'identity'>, p: BackupParams, opts: { signal?: AbortSignal, onProgress?: (p: JobProgress) => void } = {}): Promise<RunBackupResult | AnchorPendingResult> {
  const config = await loadConfig(node.dataDir)
  const chain = await backupChain(node, p.chain)
  if (chain === undefined && p.noAnchor !== true) throw noProfile()
  try {
    const replicas = p.replicas ?? config.replicas ?? []
    const keepLast = p.keepLast ?? config.keepLast
    return await runBackup({
      node,
      ...(chain !== undefined && p.noAnchor !== true ? { chain } : {}),
      ...(p.out !== undefined ? { out: resolvePath(p.out) } : {}),
      ...(p.noAnchor === true ? { noAnchor: true } : {}),
      ...(p.anchorPending === true ? { anchorPending: true } : {}),
      ...(p.passphrase !== undefined ? { passphrase: p.passphrase } : {}),
      ...(keepLast !== undefined ? { keepLast } : {}),
      ...(p.replicaTimeoutMs !== undefined ? { replicaTimeoutMs: p.replicaTimeoutMs } : {}),
      replicas,
      signal: opts.signal,
      onProgress: opts.onProgress
    })
  } finally {
    chain?.close()
  }
}

/** `tokenim backups` on a running node: the chain's history merged with the local index and pins. */
export async function doListBackups (node: TokenimNode, p: { chain?: string } = {}, opts: { signal?: AbortSignal } = {}): Promise<ListBackupsResult> {
  const chain = await backupChain(node, p.chain, false)
  try {
    return await listBackups({ store: node.store, pins: node.p2p.helia.pins, owner: node.address, ...(chain !== undefined ? { chain } : {}), signal: opts.signal })
  } finally {
    chain?.close()
  }
}

function optBool (v: unknown, field: string): boolean | undefined {
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'boolean') throw apiError(ApiErrorCode.INVALID_ARGUMENT, `${field} must be a boolean`, { field })
  return v
}

function optString (v: unknown, field: string, max = 4096): string | undefined {
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string' || v.length === 0 || v.length > max) throw apiError(ApiErrorCode.INVALID_ARGUMENT, `${field} must be a non-empty string`, { field })
  return v
}

/** Validate a POST /v1/backup body. */
export function parseBackupParams (body: unknown): BackupParams {
  const b = parseObject(body ?? {})
  const known = new Set(['out', 'noAnchor', 'anchorPending', 'passphrase', 'keepLast', 'replicas', 'chain'])
  for (const k of Object.keys(b)) if (!known.has(k)) throw apiError(ApiErrorCode.INVALID_ARGUMENT, `unknown field ${k}`, { field: k })
  const p: BackupParams = {}
  const out = optString(b.out, 'out')
  if (out !== undefined) p.out = out
  const noAnchor = optBool(b.noAnchor, 'noAnchor')
  if (noAnchor !== undefined) p.noAnchor = noAnchor
  const anchorPending = optBool(b.anchorPending, 'anchorPending')
  if (anchorPending !== undefined) p.anchorPending = anchorPending
  const passphrase = optString(b.passphrase, 'passphrase', 1024)
  if (passphrase !== undefined) p.passphrase = passphrase
  const chain = optString(b.chain, 'chain')
  if (chain !== undefined) p.chain = chain
  if (b.keepLast !== undefined && b.keepLast !== null) {
    if (typeof b.keepLast !== 'number' || !Number.isSafeInteger(b.keepLast) || b.keepLast < 1) throw apiError(ApiErrorCode.INVALID_ARGUMENT, 'keepLast must be a positive integer', { field: 'keepLast' })
    p.keepLast = b.keepLast
  }
  if (b.replicas !== undefined && b.replicas !== null) {
    if (!Array.isArray(b.replicas) || b.replicas.length > 32) throw apiError(ApiErrorCode.INVALID_ARGUMENT, 'replicas must be a list of at most 32 addresses', { field: 'replicas' })
    p.replicas = b.replicas.map(a => parseAddress(a, 'replicas'))
  }
  if (p.anchorPending === true && p.noAnchor === true) throw apiError(ApiErrorCode.INVALID_ARGUMENT, 'anchorPending and noAnchor cannot be combined')
  return p
}

export interface BackupRoutesInit {
  scheduler?: BackupScheduler
}

/** The backup routes, for createRoutes(node, { extend: backupRoutes(node) }). */
export function backupRoutes (node: TokenimNode, init: BackupRoutesInit = {}): Routes {
  return {
    'POST /v1/backup': progressRoute(async ({ body, signal, progress }) => await doBackup(node, parseBackupParams(body), { signal, onProgress: progress })),
    'GET /v1/backups': async ({ query, signal }) => await doListBackups(node, { chain: query.get('chain') ?? undefined }, { signal }),
    'GET /v1/backup/status': async () => ({
      health: await backupHealth(node.store),
      ...(init.scheduler !== undefined ? { scheduler: init.scheduler.status() } : {})
    })
  }
}

export interface BackupServicesInit {
  /** owners whose backups this node keeps (daemon --replica-for) */
  replicaFor?: string[]
  /** replicas asked after scheduled backups (daemon --replica / config "replicas") */
  replicas?: string[]
  /** scheduled backups (daemon --backup-every) */
  backupEveryMs?: number
  /** chain profile path (--chain) */
  chain?: string
  /** backup passphrase for scheduled backups (daemon --passphrase-file); memory only, never logged */
  passphrase?: string
  /** a line for the daemon's log */
  info?: (line: string) => void
}

export interface BackupServices {
  routes: Routes
  replica?: ReplicaService
  scheduler?: BackupScheduler
  stop: () => Promise<void>
}

/**
 * What the daemon runs for backups: the replica service (`--replica-for`), the scheduler
 * (`--backup-every`) and the backup routes. A replica needs a chain profile (it checks anchors):
 * NO_CHAIN_PROFILE otherwise. The scheduler without a profile makes local-only backups.
 */
export async function startBackupServices (node: TokenimNode, init: BackupServicesInit = {}): Promise<BackupServices> {
  const config = await loadConfig(node.dataDir)
  const info = init.info ?? (() => {})
  const clients: RegistryClient[] = []
  let replica: ReplicaService | undefined
  let scheduler: BackupScheduler | undefined
  const stop = async (): Promise<void> => {
    await scheduler?.stop()
    await replica?.stop()
    for (const c of clients) c.close()
  }
  try {
    if ((init.replicaFor ?? []).length > 0) {
      const reader = await backupChain(node, init.chain, false)
      if (reader === undefined) throw noProfile()
      clients.push(reader)
      replica = await startReplicaService(node, {
        owners: init.replicaFor ?? [],
        chain: reader,
        ...(config.replicaKeep !== undefined ? { keep: config.replicaKeep } : {}),
        ...(config.replicaQuotaBytes !== undefined ? { quotaBytes: config.replicaQuotaBytes } : {})
      })
      info(`keeping the backups of ${replica.owners.join(', ')} (${PIN_PROTOCOL})`)
    }
    if (init.backupEveryMs !== undefined) {
      const chain = await backupChain(node, init.chain)
      if (chain !== undefined) clients.push(chain)
      const replicas = init.replicas ?? config.replicas ?? []
      scheduler = startBackupScheduler({
        deps: { dataDir: node.dataDir, store: node.store, helia: node.p2p.helia, identity: node.identity, resolver: node.resolver },
        everyMs: init.backupEveryMs,
        backup: {
          ...(chain !== undefined ? { chain } : { noAnchor: true }),
          replicas,
          ...(init.passphrase !== undefined ? { passphrase: init.passphrase } : {}),
          ...(config.keepLast !== undefined ? { keepLast: config.keepLast } : {})
        }
      })
      info(`backing up every ${Math.round(init.backupEveryMs / 60_000)} min when something changed${chain === undefined ? ' (no chain profile: local-only backups)' : ''}`)
    }
  } catch (err) {
    await stop()
    throw err
  }
  return { routes: backupRoutes(node, { ...(scheduler !== undefined ? { scheduler } : {}) }), ...(replica !== undefined ? { replica } : {}), ...(scheduler !== undefined ? { scheduler } : {}), stop }
}
