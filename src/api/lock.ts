import { join } from 'node:path'
import { TokenimError } from '../errors.ts'
import { acquirePidLock, pidLockOwner } from '../util/pid-lock.ts'
import type { PidLock } from '../util/pid-lock.ts'

/**
 * One daemon per data dir: `<dataDir>/daemon.lock` holds the owner's pid (src/util/pid-lock.ts: it
 * appears whole, and a lock left by a crashed daemon is taken over, so a crash never leaves the data dir
 * stuck).
 */
export type DaemonLock = PidLock

const DAEMON_LOCK_FILE = 'daemon.lock'

export async function acquireDaemonLock (dataDir: string): Promise<DaemonLock> {
  return await acquirePidLock(join(dataDir, DAEMON_LOCK_FILE), ({ pid }) => pid !== undefined
    ? new TokenimError('DAEMON_RUNNING', `a tokenim daemon (pid ${pid}) already runs on ${dataDir}; stop it first or use another --data-dir`, { pid, dataDir })
    : new TokenimError('DAEMON_RUNNING', `a tokenim daemon is starting on ${dataDir}; stop it first or use another --data-dir`, { dataDir }))
}

/** The pid of the daemon holding the lock, if it is alive. */
export async function lockedBy (dataDir: string): Promise<number | undefined> {
  return await pidLockOwner(join(dataDir, DAEMON_LOCK_FILE))
}
