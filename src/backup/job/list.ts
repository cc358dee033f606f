/**
 * `tokenim backups`: every version the chain knows (its BackupAnchored events) merged with the local
 * backup index, the local pins and the replicas' receipts.
 *
 * status of an entry:
 *   anchored    on chain (and, when known locally, with the same digest)
 *   pending     built and pinned locally, waiting to be anchored (`backup --anchor-pending`)
 *   local-only  made with --no-anchor: never anchored
 *   superseded  was pending, but the chain took another bundle for that version
 *   chain-only  anchored on chain, unknown to this data dir (made on another device, or before a restore)
 *   conflict    the chain anchors another digest for this version than the local index has
 */
import type { RegistryClient } from '../../chain/index.ts'
import { isTokenimError } from '../../errors.ts'
import type { Store } from '../../store/index.ts'
import { rootCidFromDigest, toCid } from '../blocks.ts'
import type { PinsLike } from '../retention.ts'
import { META_ANCHOR_ERRORS } from './run.ts'
import type { AnchorError, JobWarning } from './run.ts'

import { backupHealth, localStatus } from './health.ts'
import type { BackupHealth, BackupStatus } from './health.ts'
export { backupHealth }
export type { BackupHealth, BackupStatus }

export interface BackupListEntry {
  version: number
  cid: string
  digest: string
  txHash?: string
  anchored: boolean
  status: BackupStatus
  /** the bundle is pinned in this node's blockstore */
  pinned: boolean
  /** replicas that confirmed (receipts), and those that failed */
  replicas: Array<{ address: string, ok: boolean, at: number, error?: string }>
  createdAt?: number
  /** unix ms of the anchoring block */
  anchoredAt?: number
  messages?: number
  bytesTotal?: number
  bytesNew?: number
  file?: string
  /** why it is pending / superseded / in conflict */
  problem?: { code: string, message: string }
}

export interface ListBackupsResult {
  backups: BackupListEntry[]
  /** set when the chain could not be read (the list is then the local index only) */
  chainError?: JobWarning
}

export interface ListBackupsOptions {
  store: Pick<Store, 'backups' | 'getMeta'>
  pins?: Pick<PinsLike, 'isPinned'>
  owner: string
  chain?: RegistryClient
  signal?: AbortSignal
}

export async function listBackups (o: ListBackupsOptions): Promise<ListBackupsResult> {
  const records = await o.store.backups()
  const errors = (await o.store.getMeta<Record<string, AnchorError>>(META_ANCHOR_ERRORS)) ?? {}
  const byVersion = new Map<number, BackupListEntry>()
  for (const r of records) {
    const status = localStatus(r, errors)
    const err = errors[String(r.version)]
    byVersion.set(r.version, {
      version: r.version,
      cid: r.cid,
      digest: r.digest,
      ...(r.txHash !== undefined ? { txHash: r.txHash } : {}),
      anchored: r.anchored,
      status,
      pinned: false,
      replicas: r.replicas.map(x => ({ address: x.address, ok: x.ok, at: x.at, ...(x.error !== undefined ? { error: x.error } : {}) })),
      createdAt: r.createdAt,
      messages: r.messages,
      bytesTotal: r.bytesTotal,
      bytesNew: r.bytesNew,
      ...(r.file !== undefined ? { file: r.file } : {}),
      ...(err !== undefined && status !== 'anchored' ? { problem: { code: err.code, message: err.message } } : {})
    })
  }
  let chainError: JobWarning | undefined
  if (o.chain !== undefined) {
    try {
      for (const e of await o.chain.history(o.owner, { signal: o.signal })) {
        const local = byVersion.get(e.version)
        const cid = rootCidFromDigest(e.digest).toString()
        if (local === undefined) {
          byVersion.set(e.version, { version: e.version, cid, digest: e.digest, txHash: e.txHash, anchored: true, status: 'chain-only', pinned: false, replicas: [], anchoredAt: e.timestamp * 1000 })
        } else if (local.digest.toLowerCase() !== e.digest.toLowerCase()) {
          local.status = 'conflict'
          local.anchored = false
          local.problem = { code: 'DIGEST_MISMATCH', message: `the chain anchors ${e.digest} (${cid}) for version ${e.version}, not this local bundle` }
        } else {
          local.anchored = true
          local.status = 'anchored'
          local.txHash = e.txHash
          local.anchoredAt = e.timestamp * 1000
          delete local.problem
        }
      }
    } catch (err) {
      chainError = isTokenimError(err) ? { code: err.code, message: err.message } : { code: 'CHAIN_ERROR', message: (err as Error).message }
    }
  }
  const backups = [...byVersion.values()].sort((a, b) => a.version - b.version)
  if (o.pins !== undefined) {
    for (const b of backups) {
      try {
        b.pinned = await o.pins.isPinned(toCid(b.cid, 'cid'), { signal: o.signal })
      } catch {
        b.pinned = false
      }
    }
  }
  return { backups, ...(chainError !== undefined ? { chainError } : {}) }
}
