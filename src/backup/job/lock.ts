/**
 * One backup at a time per data dir: `<dataDir>/backup.lock`, holding the pid of its owner. The pid is
 * written and synced to `backup.lock.<pid>.<random>.tmp` first and the lock appears by `link` (which fails if it
 * exists), so a lock is never seen without its pid, even after a kill at any point. A lock whose pid no
 * longer runs is stale and taken over; so are the temporary files of dead pids. Inside one process a
 * second caller is refused by the same file (it holds our own, live pid).
 */
import { randomBytes } from 'node:crypto'
import { link, open, readdir, readFile, rm } from 'node:fs/promises'
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
  await removeDeadTemporaries(dataDir)
  // one name per call: two callers in this process must not share a temporary
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(tmp, 'w', 0o600)
      try {
        await fh.writeFile(`${process.pid}\n`)
        await fh.sync()
      } finally {
        await fh.close()
      }
      try {
        await link(tmp, path)
      } finally {
        await rm(tmp, { force: true })
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
    // no pid: a lock left by a version that wrote it in place, or being written by one right now
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

/** `backup.lock.<pid>.<random>.tmp` files of processes that no longer run (killed between writing and linking) */
async function removeDeadTemporaries (dataDir: string): Promise<void> {
  let names: string[]
  try {
    names = await readdir(dataDir)
  } catch {
    return // no data dir: open() reports it
  }
  for (const name of names) {
    const m = /^backup\.lock\.(\d+)\.[0-9a-f]+\.tmp$/.exec(name)
    if (m !== null && Number(m[1]) !== process.pid && !processAlive(Number(m[1]))) await rm(join(dataDir, name), { force: true })
  }
}
