import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile, readFile, stat, utimes } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { acquireDaemonLock, lockedBy } from '../../src/api/index.ts'

describe('daemon lock', () => {
  let dir: string
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'tokenim-lock-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('refuses a second holder while the first is alive', async () => {
    // hold the lock from another live process
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' })
    try {
      await writeFile(join(dir, 'daemon.lock'), String(child.pid))
      await assert.rejects(acquireDaemonLock(dir), { code: 'DAEMON_RUNNING' })
      assert.equal(await lockedBy(dir), child.pid)
    } finally {
      child.kill('SIGKILL')
    }
  })

  it('takes over a stale lock left by a crashed daemon', async () => {
    await writeFile(join(dir, 'daemon.lock'), '999999999')
    const lock = await acquireDaemonLock(dir)
    assert.equal((await readFile(lock.path, 'utf8')).trim(), String(process.pid))
    assert.equal((await stat(lock.path)).mode & 0o777, 0o600)
    await lock.release()
    assert.equal(await lockedBy(dir), undefined)
  })

  it('refuses while a fresh lock file has no pid yet (another daemon starting), takes it over once old (crash mid-write)', async () => {
    const path = join(dir, 'daemon.lock')
    await writeFile(path, '')
    await assert.rejects(acquireDaemonLock(dir), { code: 'DAEMON_RUNNING' })
    const minuteAgo = new Date(Date.now() - 60_000)
    await utimes(path, minuteAgo, minuteAgo)
    const lock = await acquireDaemonLock(dir)
    assert.equal((await readFile(lock.path, 'utf8')).trim(), String(process.pid))
    await lock.release()
  })
})
