/**
 * `npm run bench` at --scale tiny, once, in a child process: it completes and writes results that match
 * the schema, with every section present (measured, or skipped with its reason). No timing assertions.
 */
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { CpuRun } from '../scripts/bench/backup-cpu.ts'
import { ResultsSchema } from '../scripts/bench/results.ts'
import { REPO_ROOT, run } from '../scripts/bench/util.ts'

describe('npm run bench (tiny scale)', function () {
  this.timeout(180_000)
  let dir: string

  before(async () => { dir = await mkdtemp(join(tmpdir(), 'tokenim-bench-test-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('runs every section and writes valid results', async () => {
    const out = join(dir, 'results.json')
    const res = await run(process.execPath, [join(REPO_ROOT, 'scripts', 'bench', 'index.ts'), '--scale', 'tiny', '--out', out], { cwd: REPO_ROOT, timeoutMs: 170_000 })
    assert.equal(res.timedOut, false, 'the bench did not finish in time')
    const results = ResultsSchema.parse(JSON.parse(await readFile(out, 'utf8')))
    assert.deepEqual(results.errors, [], 'no section failed')
    assert.equal(res.code, 0, res.stderr)
    assert.equal(results.scale, 'tiny')
    const sections = new Set([...results.figures.map(f => f.section), ...results.skipped.map(s => s.section)])
    for (const s of ['messaging', 'backup', 'restore', 'gas', 'rss', 'startup']) assert.ok(sections.has(s), `section ${s} measured or skipped`)
    for (const f of results.figures) {
      assert.ok(Number.isFinite(f.value), `${f.name} is a number`)
      if (f.reference !== undefined) assert.ok(f.ratio === undefined || Number.isFinite(f.ratio), `${f.name} has a finite ratio`)
    }
    assert.ok(results.figures.some(f => f.section === 'messaging' && f.reference !== undefined), 'messaging figures have references')
    assert.ok(results.skipped.some(s => s.section === 'rss'), 'peak RSS is skipped below full scale, with a reason')
    // restic: measured beside the backup, or skipped with a reason
    const backupFigure = results.figures.find(f => f.section === 'backup' && f.name.startsWith('full backup time'))
    assert.ok(backupFigure !== undefined)
    if (backupFigure.reference === undefined) assert.ok(results.skipped.some(s => s.section === 'backup'), 'restic skipped with a reason')
    assert.match(res.stdout, /ratio/)
    // the bench keeps the compile cache as the tokenim command does (its worker threads and children too)
    // and says so; the test hooks point TOKENIM_COMPILE_CACHE at a temp dir, which it inherits, unless
    // the caller turned the cache off
    const off = ['off', '0'].includes(process.env.TOKENIM_COMPILE_CACHE ?? '') || (process.env.NODE_DISABLE_COMPILE_CACHE ?? '') !== ''
    const said = off ? /^compile cache off \(/ : /^compile cache on, as the tokenim command keeps it \(bin\/compile-cache\.js\): /
    assert.ok(results.notes.some(n => said.test(n)), results.notes.join('\n'))
  })

  it('runs without the compile cache when it is turned off, and says so', async () => {
    const out = join(dir, 'results-off.json')
    const env: NodeJS.ProcessEnv = { ...process.env, TOKENIM_COMPILE_CACHE: 'off' }
    delete env.NODE_COMPILE_CACHE
    const res = await run(process.execPath, [join(REPO_ROOT, 'scripts', 'bench', 'index.ts'), '--scale', 'tiny', '--only', 'gas', '--out', out], { cwd: REPO_ROOT, env, timeoutMs: 60_000 })
    assert.equal(res.code, 0, res.stderr)
    const results = ResultsSchema.parse(JSON.parse(await readFile(out, 'utf8')))
    assert.ok(results.notes.includes('compile cache off (turned off (TOKENIM_COMPILE_CACHE)); the tokenim command keeps one (bin/compile-cache.js)'), results.notes.join('\n'))
    assert.ok(!results.notes.some(n => n.startsWith('compile cache on')))
  })

  it('refuses an unknown scale with exit 2', async () => {
    const res = await run(process.execPath, [join(REPO_ROOT, 'scripts', 'bench', 'index.ts'), '--scale', 'huge'], { cwd: REPO_ROOT, timeoutMs: 60_000 })
    assert.equal(res.code, 2)
    assert.match(res.stderr, /--scale must be/)
  })
})

describe('scripts/bench/backup-cpu.ts (backups timed thread by thread)', function () {
  this.timeout(120_000)
  const tool = join(REPO_ROOT, 'scripts', 'bench', 'backup-cpu.ts')

  it('runs real backups of fresh histories and reports each run\'s time and CPU, by kind of thread on Linux', async () => {
    const res = await run(process.execPath, [tool, '--runs', '2', '--messages', '300', '--conversations', '5', '--json'], { cwd: REPO_ROOT, timeoutMs: 110_000 })
    assert.equal(res.code, 0, res.stderr)
    const out = JSON.parse(res.stdout.trim().split('\n').at(-1) ?? '') as { messages: number, runs: CpuRun[] }
    assert.equal(out.messages, 300)
    assert.deepEqual(out.runs.map(r => r.run), [0, 1])
    for (const r of out.runs) {
      assert.equal(r.messages, 300, 'every message of the history backed up')
      assert.ok(r.segments >= 5, 'at least a segment per conversation')
      assert.ok(r.ms > 0 && r.cpuMs > 0, 'wall and CPU time measured')
      if (process.platform === 'linux') assert.ok(Object.values(r.threads).some(ms => ms > 0), 'threads read from /proc')
    }
  })

  it('refuses a count that is not a positive whole number', async () => {
    const res = await run(process.execPath, [tool, '--runs', '0'], { cwd: REPO_ROOT, timeoutMs: 60_000 })
    assert.equal(res.code, 1)
    assert.match(res.stderr, /--runs needs a positive whole number/)
  })
})
