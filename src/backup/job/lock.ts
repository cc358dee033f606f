/**
 * One backup at a time per data dir: `<dataDir>/backup.lock`, holding the pid of its owner
 * (src/util/pid-lock.ts: it appears whole, a lock whose pid no longer runs is taken over, and two
 * processes taking over the same stale lock cannot both win). Inside one process a second caller is
 * refused by the same file.
 */
import { join } from 'node:path'
import { acquirePidLock } from '../../util/pid-lock.ts'
import type { PidLock } from '../../util/pid-lock.ts'
import { BackupJobErrorCode, jobError } from './errors.ts'

export const BACKUP_LOCK_FILE = 'backup.lock'

export type BackupLock = PidLock

/** Take the backup lock of `dataDir` or throw BACKUP_IN_PROGRESS (info.pid). */
export async function acquireBackupLock (dataDir: string): Promise<BackupLock> {
  return await acquirePidLock(join(dataDir, BACKUP_LOCK_FILE), ({ pid }) => pid !== undefined
    ? jobError(BackupJobErrorCode.BACKUP_IN_PROGRESS, `another backup of this data dir is running (pid ${pid}); wait for it to finish`, { pid })
    : jobError(BackupJobErrorCode.BACKUP_IN_PROGRESS, 'another backup of this data dir is starting; wait for it to finish', {}))
}
