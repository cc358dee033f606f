import { open, readFile, rm } from 'node:fs/promises'
import { constants } from 'node:fs'
import { join } from 'node:path'
import { TokenimError } from '../errors.ts'
import { youngerThan } from '../util/fs.ts'
import { processAlive } from '../util/process.ts'

/**
 * One daemon per data dir. The lock is a file created exclusively (O_EXCL) holding the owner's pid;
 * a lock whose pid no longer runs was left by a crash and is taken over, so a crashed daemon never
 * leaves the data dir stuck.
 */
export interface DaemonLock {
  path: string
  release: () => Promise<void>
}

/** A lock file without a pid that is younger than this belongs to a daemon still starting. */
const STARTING_MS = 10_000

export async function acquireDaemonLock (dataDir: string): Promise<DaemonLock> {
  const path = join(dataDir, 'daemon.lock')
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600)
      await handle.writeFile(String(process.pid))
      await handle.sync()
      await handle.close()
      return {
        path,
        release: async () => {
          const owner = await readPid(path)
          if (owner === process.pid) await rm(path, { force: true })
        }
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const pid = await readPid(path)
      if (pid !== undefined && pid !== process.pid && processAlive(pid)) {
        throw new TokenimError('DAEMON_RUNNING', `a tokenim daemon (pid ${pid}) already runs on ${dataDir}; stop it first or use another --data-dir`, { pid, dataDir })
      }
      // no pid yet in a fresh file: another daemon is between creating it and writing its pid
      if (pid === undefined && await youngerThan(path, STARTING_MS)) {
        throw new TokenimError('DAEMON_RUNNING', `a tokenim daemon is starting on ${dataDir}; stop it first or use another --data-dir`, { dataDir })
      }
      // stale lock from a crashed daemon (or an old empty file from a crash mid-write): take it over
      await rm(path, { force: true })
    }
  }
  throw new TokenimError('DAEMON_RUNNING', `could not take the daemon lock ${path}`, { dataDir })
}

/** The pid of the daemon holding the lock, if it is alive. */
export async function lockedBy (dataDir: string): Promise<number | undefined> {
  const pid = await readPid(join(dataDir, 'daemon.lock'))
  return pid !== undefined && processAlive(pid) ? pid : undefined
}

async function readPid (path: string): Promise<number | undefined> {
  try {
    const n = Number.parseInt((await readFile(path, 'utf8')).trim(), 10)
    return Number.isInteger(n) && n > 0 ? n : undefined
  } catch {
    return undefined
  }
}
