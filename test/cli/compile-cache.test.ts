/**
 * bin/compile-cache.js: the `tokenim` command keeps Node's compiled code (the type-stripped sources) in a
 * directory of this user's alone, and hands it to its worker threads and child processes. Each case runs
 * in a fresh Node process: a process enables its compile cache once.
 */
import assert from 'node:assert/strict'
import { chmod, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { compileCacheDir } from '../../bin/compile-cache.js'
import { BIN, REPO, childEnv, output } from './helpers.ts'

const MODULE = pathToFileURL(join(REPO, 'bin', 'compile-cache.js')).href

/** the environment of a child with this compile cache setting (and none inherited from the test run) */
function envWith (setting: string | undefined, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = childEnv(extra)
  delete env.NODE_COMPILE_CACHE
  delete env.NODE_DISABLE_COMPILE_CACHE
  delete env.TOKENIM_COMPILE_CACHE
  if (setting !== undefined) env.TOKENIM_COMPILE_CACHE = setting
  return env
}

/** enableCompileCache() in a fresh process: its result, and what its worker thread sees in NODE_COMPILE_CACHE */
async function enableIn (env: NodeJS.ProcessEnv): Promise<{ result: { directory?: string, reason?: string }, worker: string | null }> {
  const script = `
    const { enableCompileCache } = await import(${JSON.stringify(MODULE)})
    const { Worker } = await import('node:worker_threads')
    const result = enableCompileCache()
    const w = new Worker('process.getBuiltinModule("node:worker_threads").parentPort.postMessage(process.env.NODE_COMPILE_CACHE ?? null)', { eval: true })
    const worker = await new Promise(resolve => w.once('message', resolve))
    await w.terminate()
    console.log(JSON.stringify({ result, worker }))`
  const r = await output(process.execPath, ['--input-type=module', '-e', script], env)
  assert.equal(r.code, 0, r.stderr)
  return JSON.parse(r.stdout) as { result: { directory?: string, reason?: string }, worker: string | null }
}

async function entries (dir: string): Promise<number> {
  let n = 0
  for (const sub of await readdir(dir, { withFileTypes: true })) n += sub.isDirectory() ? await entries(join(dir, sub.name)) : 1
  return n
}

describe('compile cache (bin/compile-cache.js)', function () {
  this.timeout(60_000)
  let root: string

  before(async () => { root = await mkdtemp(join(tmpdir(), 'tokenim-compile-cache-')) })
  after(async () => { await rm(root, { recursive: true, force: true }) })

  it('goes in TOKENIM_COMPILE_CACHE, else the XDG cache directory, else ~/.cache; off turns it off', () => {
    assert.equal(compileCacheDir({ TOKENIM_COMPILE_CACHE: '/x/y' }), '/x/y')
    assert.equal(compileCacheDir({ TOKENIM_COMPILE_CACHE: 'off' }), undefined)
    assert.equal(compileCacheDir({ TOKENIM_COMPILE_CACHE: '0' }), undefined)
    assert.equal(compileCacheDir({ XDG_CACHE_HOME: '/c' }), join('/c', 'tokenim', 'compile-cache'))
    assert.equal(compileCacheDir({ XDG_CACHE_HOME: '' }), join(homedir(), '.cache', 'tokenim', 'compile-cache'))
    assert.equal(compileCacheDir({}), join(homedir(), '.cache', 'tokenim', 'compile-cache'))
  })

  it('the command fills a private directory with compiled code and runs from it the next time; its workers get it too', async () => {
    const dir = join(root, 'own', 'cache')
    const first = await output(process.execPath, [BIN, '--help'], envWith(dir))
    assert.equal(first.code, 0, first.stderr)
    assert.equal((await stat(dir)).mode & 0o777, 0o700)
    const made = await entries(dir)
    assert.ok(made > 0, 'compiled code was written')
    // Node's own trace of its compile cache (stderr): the entry point's compiled code read back from `dir`
    const second = await output(process.execPath, [BIN, '--help'], envWith(dir, { NODE_DEBUG_NATIVE: 'COMPILE_CACHE' }))
    assert.equal(second.code, 0, second.stderr)
    assert.equal(second.stdout, first.stdout)
    assert.ok(second.stderr.split('\n').some(l => l.includes(`reading cache from ${dir}`) && l.includes('src/cli/main.ts') && l.includes('success')),
      `main.ts was read from the cache:\n${second.stderr.slice(0, 2000)}`)

    const { result, worker } = await enableIn(envWith(dir))
    assert.equal(result.directory, dir)
    assert.equal(worker, dir, 'a worker thread starts with the same cache')
  })

  it('is not used in a directory others can write to, in place of a file, or when turned off; the command runs all the same', async () => {
    const shared = join(root, 'shared')
    await mkdir(shared, { mode: 0o777 })
    await chmod(shared, 0o777) // whatever the umask
    const notDir = join(root, 'file')
    await writeFile(notDir, 'x')
    for (const [setting, reason] of [[shared, /writable by others/], [notDir, /EEXIST|not a directory/], ['off', /turned off/]] as const) {
      const { result, worker } = await enableIn(envWith(setting))
      assert.equal(result.directory, undefined, setting)
      assert.match(result.reason ?? '', reason)
      assert.equal(worker, null, 'nothing handed to workers')
      const help = await output(process.execPath, [BIN, '--help'], envWith(setting))
      assert.equal(help.code, 0, help.stderr)
    }
    assert.equal(await entries(shared), 0, 'nothing written to the shared directory')
  })

  it('is off when NODE_DISABLE_COMPILE_CACHE is set: nothing written, nothing handed on', async () => {
    const dir = join(root, 'disabled')
    const env = { ...envWith(dir), NODE_DISABLE_COMPILE_CACHE: '1' }
    const { result, worker } = await enableIn(env)
    assert.equal(result.directory, undefined)
    assert.match(result.reason ?? '', /NODE_DISABLE_COMPILE_CACHE/)
    assert.equal(worker, null)
    const help = await output(process.execPath, [BIN, '--help'], env)
    assert.equal(help.code, 0, help.stderr)
    await assert.rejects(stat(dir), { code: 'ENOENT' }, 'not even the directory is made')
  })

  it('leaves a NODE_COMPILE_CACHE the user set to Node', async () => {
    const theirs = join(root, 'theirs')
    const { result } = await enableIn({ ...envWith(join(root, 'ours')), NODE_COMPILE_CACHE: theirs })
    assert.equal(result.directory, undefined)
    assert.match(result.reason ?? '', /NODE_COMPILE_CACHE/)
  })
})
