/**
 * The bench's results: runs of a section merged (--repeat N) into medians, the ratio the median of the
 * runs' paired ratios, targets checked on the merged figures; the --repeat flag's parsing.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { Recorder, ResultsSchema, formatTable, median, mergeRuns } from '../scripts/bench/results.ts'
import { MAX_REPEAT, UsageError, parseRepeat } from '../scripts/bench/scale.ts'
import { REPO_ROOT, run } from '../scripts/bench/util.ts'

/** a run of a made-up section: a timed figure beside its reference, one without, a note, a skip */
function runOf (value: number, reference: number | undefined, note: string): Recorder {
  const r = new Recorder()
  r.figure({
    section: 'backup',
    name: 'full backup time',
    value,
    unit: 'ms',
    ...(reference !== undefined ? { reference: { name: 'restic backup', value: reference } } : {}),
    targets: [{ of: 'ratio', op: '<=', limit: 1.0 }],
    note: 'runBackup'
  })
  r.figure({ section: 'backup', name: 'stored bytes', value: 1000 + value, unit: 'B', targets: [{ of: 'value', op: '<=', limit: 2000 }] })
  r.note('restic 0.14.0')
  r.note(note)
  r.skip('rss', 'peak RSS', 'full scale only')
  return r
}

describe('bench results: runs merged (--repeat)', () => {
  it('median: the middle value, or the mean of the middle two', () => {
    assert.equal(median([3, 1, 2]), 2)
    assert.equal(median([4, 1, 3, 2]), 2.5)
    assert.equal(median([7]), 7)
    assert.ok(Number.isNaN(median([])))
  })

  it('takes the medians of value and reference, and the median of the paired ratios; checks targets on them', () => {
    // ratios 0.9, 1.5, 0.95: the median ratio (0.95) is not the ratio of the medians (1,000 / 1,000)
    const runs = [runOf(900, 1000, 'fixed cost 700 ms'), runOf(1500, 1000, 'fixed cost 710 ms'), runOf(1000, 1052.63, 'fixed cost 700 ms')]
    const into = new Recorder()
    mergeRuns(runs, into)
    const [timed, bytes] = into.figures
    assert.equal(timed.value, 1000)
    assert.equal(timed.reference?.value, 1000)
    assert.ok(Math.abs((timed.ratio as number) - 1000 / 1052.63) < 1e-9)
    assert.deepEqual(timed.targets.map(t => t.met), [true], 'the merged ratio meets the target')
    assert.equal(timed.runs?.length, 3)
    assert.deepEqual(timed.runs?.map(x => x.value), [900, 1500, 1000])
    assert.deepEqual(timed.runs?.map(x => x.reference), [1000, 1000, 1052.63])
    assert.equal(timed.note, 'runBackup')
    assert.equal(bytes.value, 2000)
    assert.deepEqual(bytes.targets.map(t => t.met), [true])
    // alike in every run: once; else each with its run
    assert.deepEqual(into.notes, ['restic 0.14.0', 'run 1/3: fixed cost 700 ms', 'run 2/3: fixed cost 710 ms', 'run 3/3: fixed cost 700 ms'])
    assert.deepEqual(into.skipped, [{ section: 'rss', item: 'peak RSS', reason: 'full scale only' }])
    const results = ResultsSchema.parse({ schema: 'tokenim-bench/v1', scale: 'tiny', startedAt: new Date().toISOString(), durationMs: 1, repeat: 3, machine: { nproc: 2, cpu: 'x', memoryGiB: 1, node: 'v24', platform: 'linux-x64' }, figures: into.figures, skipped: into.skipped, notes: into.notes, errors: into.errors })
    assert.match(formatTable(results), /0\.95x \(0\.90\/1\.50\/0\.95\)/)
  })

  it('merges a figure from the runs that have it, and a reference from the runs that measured one', () => {
    const a = runOf(1200, 1000, 'n')
    const b = runOf(1000, undefined, 'n') // restic skipped in this run
    const c = new Recorder()
    c.errors.push({ section: 'backup', message: 'boom' })
    const into = new Recorder()
    mergeRuns([a, b, c], into)
    const timed = into.figures[0]
    assert.equal(timed.value, 1100)
    assert.equal(timed.reference?.value, 1000)
    assert.equal(timed.ratio, 1.2, 'the one paired run')
    assert.deepEqual(timed.targets.map(t => t.met), [false])
    assert.equal(timed.runs?.length, 2)
    assert.deepEqual(into.errors, [{ section: 'backup', message: 'run 3/3: boom' }])
    // said by two runs of three: each with its run
    assert.deepEqual(into.notes, ['run 1/3: restic 0.14.0', 'run 1/3: n', 'run 2/3: restic 0.14.0', 'run 2/3: n'])
  })

  it('one run: its figures as they are, no runs list', () => {
    const into = new Recorder()
    mergeRuns([runOf(900, 1000, 'n')], into)
    assert.equal(into.figures[0].value, 900)
    assert.equal(into.figures[0].ratio, 0.9)
    assert.equal(into.figures[0].runs, undefined)
    assert.deepEqual(into.notes, ['restic 0.14.0', 'n'])
  })

  it('--repeat: 1 when absent, a whole number up to the limit, else a usage error; the bench exits 2 on it', async () => {
    assert.equal(parseRepeat(['--scale', 'full']), 1)
    assert.equal(parseRepeat(['--repeat', '3']), 3)
    assert.equal(parseRepeat(['--repeat=5']), 5)
    for (const bad of ['0', '-1', '2.5', 'x', '', String(MAX_REPEAT + 1)]) assert.throws(() => parseRepeat(['--repeat', bad]), UsageError, bad)
    const res = await run(process.execPath, [join(REPO_ROOT, 'scripts', 'bench', 'index.ts'), '--repeat', '0'], { cwd: REPO_ROOT, timeoutMs: 60_000 })
    assert.equal(res.code, 2)
    assert.match(res.stderr, /--repeat must be/)
  })
})
