import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { acquirePidLock, pidLockOwner } from '../../src/util/pid-lock.ts'

const PID_LOCK = new URL('../../src/util/pid-lock.ts', import.meta.url).href
const DEAD_PID = '999999999\n'

const busy = ({ pid }: { pid?: number }): Error => Object.assign(new Error(`busy ${pid ?? '-'}`), { code: 'BUSY', pid })

/**
 * A child process that takes part in a race for the lock: it prints `ready`, tries to take the lock when
 * told `go`, prints `won` or `busy`, and a winner holds the lock until told `check`, then prints whether
 * the file still names it (`kept`) or someone removed or replaced its lock meanwhile (`stolen`).
 */
class Contender {
  readonly child: ChildProcess
  private out = ''
  private readonly waiters: Array<() => void> = []

  constructor (path: string) {
    const script = `
      const { acquirePidLock } = await import(${JSON.stringify(PID_LOCK)})
      const { readFile } = await import('node:fs/promises')
      const lines = (await import('node:readline')).createInterface({ input: process.stdin })[Symbol.asyncIterator]()
      process.stdout.write('ready ')
      await lines.next()
      let lock
      try {
        lock = await acquirePidLock(${JSON.stringify(path)}, () => Object.assign(new Error('busy'), { code: 'BUSY' }))
        process.stdout.write('won ')
      } catch (err) {
        process.stdout.write(err.code === 'BUSY' ? 'busy ' : 'error:' + err.message + ' ')
      }
      await lines.next()
      if (lock) {
        const text = await readFile(${JSON.stringify(path)}, 'utf8').catch(() => '')
        process.stdout.write(text.trim() === String(process.pid) ? 'kept ' : 'stolen ')
        await lock.release()
      }
      process.exit(0)`
    this.child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] })
    this.child.stdout?.on('data', (d: Buffer) => {
      this.out += d.toString()
      for (const w of this.waiters.splice(0)) w()
    })
  }

  /** Resolves with the words printed so far once there are `n`. */
  async words (n: number): Promise<string[]> {
    while (this.out.trim().split(' ').filter(w => w !== '').length < n) {
      if (this.child.exitCode !== null) break
      await new Promise<void>(resolve => { this.waiters.push(resolve); setTimeout(resolve, 200) })
    }
    return this.out.trim().split(' ')
  }

  tell (line: string): void {
    this.child.stdin?.write(`${line}\n`)
  }
}

describe('pid lock (daemon.lock, backup.lock)', function () {
  this.timeout(60_000)
  let dir: string
  let path: string
  const children: ChildProcess[] = []
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tokenim-pidlock-'))
    path = join(dir, 'x.lock')
  })
  afterEach(async () => {
    for (const c of children.splice(0)) c.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
  })

  it('processes racing to take over one stale lock: exactly one wins, and nobody loses a lock it took', async () => {
    for (let round = 0; round < 2; round++) {
      await writeFile(path, DEAD_PID)
      const racers = Array.from({ length: 6 }, () => new Contender(path))
      children.push(...racers.map(r => r.child))
      await Promise.all(racers.map(async r => await r.words(1)))
      for (const r of racers) r.tell('go')
      const tried = await Promise.all(racers.map(async r => (await r.words(2))[1]))
      for (const r of racers) r.tell('check')
      const checked = await Promise.all(racers.map(async r => (await r.words(tried[racers.indexOf(r)] === 'won' ? 3 : 2)).slice(1).join(' ')))
      await Promise.all(racers.map(async r => { if (r.child.exitCode === null) await new Promise(resolve => r.child.once('exit', resolve)) }))
      assert.deepEqual(checked.filter(r => r !== 'busy'), ['won kept'], `round ${round}: ${checked.join(', ')}`)
      assert.deepEqual(await readdir(dir), [], 'no lock, guard or temporary is left')
    }
  })

  it('a stale lock taken over by another process after we judged it stale is not removed: we report busy', async () => {
    await writeFile(path, DEAD_PID)
    const other = new Contender(path)
    children.push(other.child)
    await other.words(1)
    let otherTried: string | undefined
    const attempt = acquirePidLock(path, busy, {
      onStale: async () => {
        if (otherTried !== undefined) return
        other.tell('go') // the other process takes the stale lock over between our judging and our takeover
        otherTried = (await other.words(2))[1]
      }
    })
    await assert.rejects(attempt, { code: 'BUSY', pid: other.child.pid })
    assert.equal(otherTried, 'won')
    other.tell('check')
    assert.deepEqual(await other.words(3), ['ready', 'won', 'kept'], 'the other process kept the lock it took')
  })

  it('a lock holding our own pid is ours only while this process holds it (an earlier process with our pid left it)', async () => {
    await writeFile(path, `${process.pid}\n`)
    const lock = await acquirePidLock(path, busy)
    assert.equal(await pidLockOwner(path), process.pid)
    await assert.rejects(acquirePidLock(path, busy), { code: 'BUSY', pid: process.pid })
    await lock.release()
    assert.equal(await pidLockOwner(path), undefined)
    assert.deepEqual(await readdir(dir), [])
  })

  it('waits for a live takeover and then reports busy; removes a takeover guard left by a dead process', async () => {
    const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' })
    children.push(sleeper)
    await writeFile(path, DEAD_PID)
    await writeFile(`${path}.takeover`, `${sleeper.pid}\n`)
    await assert.rejects(acquirePidLock(path, busy), { code: 'BUSY' })
    assert.equal(await readFile(path, 'utf8'), DEAD_PID, 'the stale lock is left to the live takeover')

    await writeFile(`${path}.takeover`, DEAD_PID)
    const lock = await acquirePidLock(path, busy)
    assert.equal((await readFile(path, 'utf8')).trim(), String(process.pid))
    await lock.release()
    assert.deepEqual(await readdir(dir), [])
  })

  it('release leaves a lock that is no longer ours', async () => {
    const lock = await acquirePidLock(path, busy)
    await writeFile(path, '12345\n') // replaced by hand
    await lock.release()
    assert.equal(await readFile(path, 'utf8'), '12345\n')
  })
})
