/**
 * One backup at a time per data dir: `<dataDir>/backup.lock` created exclusively, holding the pid of
 * its owner. A lock whose pid no longer runs is stale and taken over. Inside one process a second
 * caller is refused by the same file (it holds our own, live pid).
 */
import { open, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { youngerThan } from '../../util/fs.ts'
import { log } from '../../util/log.ts'
import { processAlive } from '../../util/process.ts'
import { BackupJobErrorCode, jobError } from './errors.ts'

const logger = log('backup:lock')

export const BACKUP_LOCK_FILE = 'backup.lock'

export interface BackupLock {
  path: string
  release: () => Promise<void>
}

/** Take the backup lock of `dataDir` or throw BACKUP_IN_PROGRESS (info.pid). */
export async function acquireBackupLock (dataDir: string): Promise<BackupLock> {
  const path = join(dataDir, BACKUP_LOCK_FILE)
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(path, 'wx', 0o600)
      try {
        await fh.writeFile(`${process.pid}\n`)
        await fh.sync()
      } finally {
        await fh.close()
      }
      let released = false
      return {
        path,
        release: async () => {
          if (released) return
          released = true
          await rm(path, { force: true })
        }
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    let pid: number | undefined
    try {
      const text = (await readFile(path, 'utf8')).trim()
      pid = /^\d+$/.test(text) ? Number(text) : undefined
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue // released meanwhile: try again
      throw err
    }
    if (pid === undefined && await youngerThan(path, 10_000)) {
      throw jobError(BackupJobErrorCode.BACKUP_IN_PROGRESS, 'another backup of this data dir is starting; wait for it to finish', {})
    }
    if (pid !== undefined && processAlive(pid)) {
      throw jobError(BackupJobErrorCode.BACKUP_IN_PROGRESS,
        `another backup of this data dir is running (pid ${pid}); wait for it to finish`, { pid })
    }
    // stale (dead pid) or half-written (no pid yet, from a crash between create and write)
    logger('taking over stale backup lock %s (pid %s)', path, pid)
    await rm(path, { force: true })
  }
  throw jobError(BackupJobErrorCode.BACKUP_IN_PROGRESS, 'could not take the backup lock; another backup may be starting', {})
}
