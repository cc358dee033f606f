/**
 * Backup health for `status`: the last success and any pending problem, read from the store alone (the
 * backup index, the anchoring errors, the scheduler's persisted status). Deliberately light: it imports no
 * chain, p2p or builder code, so `tokenim status` does not pay for loading them.
 */
import type { BackupRecord, Store } from '../../store/index.ts'
import type { SchedulerStatus } from '../scheduler.ts'

/** store meta key: version → the last anchoring error of a pending version */
export const META_ANCHOR_ERRORS = 'backup.anchorErrors'
/** store meta key: the scheduler's status, persisted after every run */
export const META_SCHEDULER = 'backup.scheduler'

export type BackupStatus = 'anchored' | 'pending' | 'local-only' | 'superseded' | 'chain-only' | 'conflict'

export interface AnchorErrorRecord { code: string, message: string, at: number }

export function localStatus (r: BackupRecord, errors: Record<string, AnchorErrorRecord>): BackupStatus {
  if (r.anchored) return 'anchored'
  if (r.pending === true) return 'pending'
  if (errors[String(r.version)]?.code === 'ANCHOR_SUPERSEDED') return 'superseded'
  if (errors[String(r.version)]?.code === 'ANCHOR_CONFLICT') return 'conflict'
  return 'local-only'
}

/** What `status` can show about backups: the last success and any pending problem. */
export interface BackupHealth {
  last?: { version: number, cid: string, createdAt: number, anchored: boolean, status: BackupStatus }
  lastAnchored?: { version: number, createdAt: number, txHash?: string }
  /** versions waiting to be anchored */
  pending: number[]
  /** the most recent anchoring problem of a pending version */
  problem?: { version: number, code: string, message: string, at: number }
}

export async function backupHealth (store: Pick<Store, 'backups' | 'getMeta'>): Promise<BackupHealth> {
  const records = await store.backups()
  const errors = (await store.getMeta<Record<string, AnchorErrorRecord>>(META_ANCHOR_ERRORS)) ?? {}
  const last = records[records.length - 1]
  const lastAnchored = [...records].reverse().find(r => r.anchored)
  const pending = records.filter(r => r.pending === true).map(r => r.version)
  const problems = pending.map(v => ({ version: v, ...errors[String(v)] })).filter((p): p is { version: number } & AnchorErrorRecord => p.code !== undefined)
  const problem = problems.sort((a, b) => b.at - a.at)[0]
  return {
    ...(last !== undefined ? { last: { version: last.version, cid: last.cid, createdAt: last.createdAt, anchored: last.anchored, status: localStatus(last, errors) } } : {}),
    ...(lastAnchored !== undefined ? { lastAnchored: { version: lastAnchored.version, createdAt: lastAnchored.createdAt, ...(lastAnchored.txHash !== undefined ? { txHash: lastAnchored.txHash } : {}) } } : {}),
    pending,
    ...(problem !== undefined ? { problem } : {})
  }
}

/** `status`'s backup field: health plus the scheduler's last known state (when a daemon scheduled backups). */
export interface BackupStatusView extends BackupHealth {
  scheduler?: SchedulerStatus
}

export async function backupStatus (store: Pick<Store, 'backups' | 'getMeta'>): Promise<BackupStatusView> {
  const health = await backupHealth(store)
  const scheduler = await store.getMeta<SchedulerStatus>(META_SCHEDULER)
  return { ...health, ...(scheduler !== undefined && scheduler !== null ? { scheduler } : {}) }
}
