/**
 * src/restore — get a history back from a backup, or check one: mnemonic → address + backup key → the
 * chain's anchor → the bundle (CAR file or network peers) → every block, digest, version, segment and
 * count checked → (restore) import into a data dir, crash-safe and idempotent; --salvage for damaged backups.
 *
 * @example
 * ```ts
 * const source = await openCarSource('backup.car')   // or openNetworkSource({ bootstrap: [ma] })
 * try {
 *   const res = await restoreBackup({ dataDir, phrase, password, source, chain: new RegistryClient(profile) })
 * } finally { await source.close() }
 * const report = await verifyRestoreSource({ source, chain, owner, backupKey })   // every problem listed
 * ```
 */
export { RestoreErrorCode } from './errors.ts'
export { resolveAnchor, isChainDown } from './anchor.ts'
export type { AnchorCheck, AnchorReader, ResolveAnchorOptions } from './anchor.ts'
export { openCarSource, openNetworkSource, DEFAULT_BLOCK_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS } from './source.ts'
export type { BlockSource, FetchProgress, NetworkSourceOptions } from './source.ts'
export {
  restoreBackup, verifyRestoreSource, backupKeySource, RESTORE_MARKER_FILE, RESTORED_FROM_META, DEFAULT_BATCH_SIZE
} from './restore.ts'
export type { RestoreOptions, RestoreResult, RestoreProblem, RestoreProgress, VerifyRestoreOptions, VerifyRestoreResult } from './restore.ts'
export { repairMessageStore, REPAIRED_META } from './repair.ts'
export type { RepairBackupOptions, RepairFix, RepairOptions, RepairProgress, RepairResult } from './repair.ts'
