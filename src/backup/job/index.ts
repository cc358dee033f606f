/**
 * The backup job (`tokenim backup`, `backups`, `daemon --backup-every`): run, list, anchor pending
 * versions, retention, scheduling. Built on the bundle engine (src/backup), the chain client and the
 * replica protocol (src/backup/replica).
 *
 * @example
 * ```ts
 * const chain = new RegistryClient(profile, node.identity.wallet)
 * const r = await runBackup({ node, chain, replicas: ['0xreplica…'], keepLast: 5, onProgress })
 * if (r.outcome === 'pending') console.warn(r.warnings)
 * const { backups } = await listBackups({ store: node.store, pins: node.p2p.helia.pins, owner: node.address, chain })
 * ```
 */
export { BackupJobErrorCode } from './errors.ts'
export { acquireBackupLock, BACKUP_LOCK_FILE } from './lock.ts'
export type { BackupLock } from './lock.ts'
export {
  runBackup, anchorPendingBackups, checkOutTarget, storeFingerprint, BACKUP_PENDING_EXIT, META_KDF, META_ANCHOR_ERRORS, META_FINGERPRINT
} from './run.ts'
export type {
  AnchorPendingItem, AnchorPendingResult, BackupDeps, BackupNodeLike, HeliaLike, IdentityLike, JobProgress, JobWarning,
  ReplicaOutcome, RunBackupOptions, RunBackupResult
} from './run.ts'
export { listBackups } from './list.ts'
export type { BackupListEntry, ListBackupsOptions, ListBackupsResult } from './list.ts'
export { backupHealth, backupStatus } from './health.ts'
export type { BackupHealth, BackupStatus, BackupStatusView } from './health.ts'
export { applyRetention, versionsToKeep } from '../retention.ts'
export type { RetentionResult } from '../retention.ts'
export { startBackupScheduler, META_SCHEDULER } from '../scheduler.ts'
export type { BackupScheduler, BackupSchedulerOptions, SchedulerStatus } from '../scheduler.ts'
