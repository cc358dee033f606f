/**
 * A lock file holding its owner's pid (`daemon.lock`, `backup.lock`): one holder per data dir, and a
 * crashed holder never leaves the data dir stuck.
 *
 * - The pid is written and synced to `<lock>.<pid>.<random>.tmp` first and the lock appears by `link`,
 *   which fails if it exists: a lock is never seen without its pid, whatever point a kill hits.
 * - A lock whose pid no longer runs is stale and is taken over. Taking over is "check, then remove", so
 *   two processes that both found the same stale lock could otherwise both remove it, the second removing
 *   the lock the first had just taken. Each takeover is therefore done under a second lock of the same
 *   kind, `<lock>.takeover`, and removes the lock only if it still holds the stale content it was judged
 *   by. (A takeover lock left by a process killed inside that millisecond is itself removed as stale; two
 *   processes doing that at the same moment remain a, much narrower, race.)
 * - A pid equal to ours is ours only if this process holds the lock; otherwise it was left by an earlier
 *   process that had our pid (a container restart), and is stale.
 * - Temporaries of dead pids (killed between write and link) are removed.
 */
import { randomBytes } from 'node:crypto'
import { link, open, readdir, readFile, rm } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { youngerThan } from './fs.ts'
import { processAlive } from './process.ts'

export interface PidLock {
  path: string
  /** Remove the lock (only if it is still ours). */
  release: () => Promise<void>
}

/** Who holds a lock that could not be taken: a live pid, or none yet (a lock file without a pid). */
export interface PidLockOwner {
  pid?: number
}

/** A lock file without a pid younger than this belongs to an older version still writing it in place. */
const PIDLESS_STARTING_MS = 10_000
/** How often a busy takeover is waited for (it takes milliseconds) before giving up. */
const ATTEMPTS = 20
const TAKEOVER_WAIT_MS = 10

/** Locks this process holds: a lock holding our pid that is not here was left by an earlier process. */
const held = new Set<string>()

export interface PidLockOptions {
  /** Called after a lock was judged stale, before it is taken over (tests use it to interleave another process). */
  onStale?: () => Promise<void>
}

/**
 * Take the lock at `path`, or throw `busy(owner)` when a live process holds it. Resolves with a handle
 * whose `release()` removes it.
 */
export async function acquirePidLock (lockPath: string, busy: (owner: PidLockOwner) => Error, options: PidLockOptions = {}): Promise<PidLock> {
  const path = resolve(lockPath) // one key in `held` however the data dir was named
  await removeDeadTemporaries(path)
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    if (await publish(path)) return holding(path)
    const stale = await judge(path)
    if (stale === 'gone') continue // released meanwhile: try again
    if (stale.live) throw busy(stale.owner)
    await options.onStale?.()
    const guard = `${path}.takeover`
    if (!await publish(guard)) {
      const other = await judge(guard)
      if (other !== 'gone' && !other.live) await rm(guard, { force: true }) // left by a killed takeover
      else await new Promise(resolve => setTimeout(resolve, TAKEOVER_WAIT_MS)) // another process is taking over
      continue
    }
    try {
      // still the content it was judged stale by: nobody took it over meanwhile
      if (await readText(path) === stale.text) await rm(path, { force: true })
    } finally {
      held.delete(guard)
      await rm(guard, { force: true })
    }
  }
  throw busy({})
}

/** The live pid holding the lock at `path`, if any. */
export async function pidLockOwner (path: string): Promise<number | undefined> {
  const state = await judge(resolve(path))
  return state !== 'gone' && state.live ? state.owner.pid : undefined
}

function holding (path: string): PidLock {
  let released = false
  return {
    path,
    release: async () => {
      if (released) return
      released = true
      held.delete(path)
      if (parsePid(await readText(path)) === process.pid) await rm(path, { force: true })
    }
  }
}

type Judged = 'gone' | { text: string, owner: PidLockOwner, live: boolean }

async function judge (path: string): Promise<Judged> {
  const text = await readText(path)
  if (text === undefined) return 'gone'
  const pid = parsePid(text)
  if (pid === undefined) return { text, owner: {}, live: await youngerThan(path, PIDLESS_STARTING_MS) }
  const live = pid === process.pid ? held.has(path) : processAlive(pid)
  return { text, owner: { pid }, live }
}

/** Write our pid to a synced temporary and link it to `path`; false if `path` exists. */
async function publish (path: string): Promise<boolean> {
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
  try {
    const fh = await open(tmp, 'wx', 0o600)
    try {
      await fh.writeFile(`${process.pid}\n`)
      await fh.sync()
    } finally {
      await fh.close()
    }
    await link(tmp, path)
    // in the same turn as the link's completion: a caller of this process reading the file sees it held
    held.add(path)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw err
  } finally {
    await rm(tmp, { force: true })
  }
}

async function readText (path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

function parsePid (text: string | undefined): number | undefined {
  const m = /^(\d+)\s*$/.exec(text ?? '')
  const pid = m === null ? undefined : Number(m[1])
  return pid !== undefined && Number.isSafeInteger(pid) && pid > 0 ? pid : undefined
}

/** `<lock>.<pid>.<random>.tmp` and `<lock>.takeover.<pid>.<random>.tmp` files of processes that no longer run */
async function removeDeadTemporaries (path: string): Promise<void> {
  const dir = dirname(path)
  const base = basename(path)
  let names: string[]
  try {
    names = await readdir(dir)
  } catch {
    return // no directory: taking the lock reports it
  }
  for (const name of names) {
    if (!name.startsWith(`${base}.`)) continue
    const m = /^(?:takeover\.)?(\d+)\.[0-9a-f]+\.tmp$/.exec(name.slice(base.length + 1))
    if (m !== null && Number(m[1]) !== process.pid && !processAlive(Number(m[1]))) await rm(join(dir, name), { force: true })
  }
}
