/**
 * `npm run bench [-- --scale tiny|small|full] [--repeat N] [--out FILE]` — tokenim's performance, every figure beside
 * a reference measured in the same run on the same machine (as a ratio), against the targets of
 * issue 7. Results go to bench/results.json (or --out) and a table to stdout; exit 0 when the bench
 * ran (a missed target is a finding, not a failure), 1 when a section failed, 2 on a bad flag.
 *
 * Sections: messaging (throughput, latency vs raw libp2p echo and ping), backup (full and +1% vs restic),
 * restore from a replica (vs restic restore), gas (first, subsequent, relayed), peak RSS of backup and
 * restore at 1,000,000 messages (full scale only), start-up (node start, daemon start → api.json).
 *
 * Runs with Node's compile cache as the `tokenim` command does (bin/compile-cache.js: ~/.cache/tokenim,
 * TOKENIM_COMPILE_CACHE=DIR elsewhere, =off for none); the results' notes say which.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises'
import { getCompileCacheDir } from 'node:module'
import { dirname, resolve } from 'node:path'
import { enableCompileCache } from '../../bin/compile-cache.js'
import { Recorder, RESULTS_SCHEMA_ID, ResultsSchema, formatTable, machineInfo, mergeRuns } from './results.ts'
import type { Results } from './results.ts'
import { SCALES, UsageError, parseOut, parseRepeat, parseScale } from './scale.ts'
import type { Scale } from './scale.ts'
import { REPO_ROOT } from './util.ts'

// sections are loaded on use: a bad flag is refused without loading libp2p, Helia and Hardhat
type Section = (scale: Scale, rec: Recorder) => Promise<void>
const SECTIONS: Array<[string, () => Promise<Section>]> = [
  ['messaging', async () => (await import('./messaging.ts')).benchMessaging],
  ['backup', async () => (await import('./backup.ts')).benchBackup],
  ['gas', async () => (await import('./gas.ts')).benchGas],
  ['rss', async () => (await import('./rss.ts')).benchRss],
  ['startup', async () => (await import('./startup.ts')).benchStartup]
]

async function main (argv: string[]): Promise<number> {
  let scaleName
  let repeat: number
  try {
    scaleName = parseScale(argv)
    repeat = parseRepeat(argv)
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(err.message)
      return 2
    }
    throw err
  }
  const out = resolve(parseOut(argv, resolve(REPO_ROOT, 'bench', 'results.json')))
  const only = argv.includes('--only') ? argv[argv.indexOf('--only') + 1]?.split(',') : undefined
  const scale = SCALES[scaleName]
  const rec = new Recorder()
  // as the tokenim command does (bin/tokenim.js), and before the sections are loaded: the jobs measured
  // here in-process then start their worker threads (a backup's sealer, a restore's box opener) and the
  // child processes started here (nodes, the daemon, the RSS children) as the command's do, without
  // stripping the types of their modules again (the seal worker of a 100,000-message backup was ready
  // after 220–290 ms without the cache, 90–160 ms with it: docs/PERFORMANCE.md, Session 8)
  const cache = enableCompileCache()
  const cacheDir = getCompileCacheDir() // also set when NODE_COMPILE_CACHE had Node enable it already
  rec.note(cacheDir !== undefined
    ? `compile cache on, as the tokenim command keeps it (bin/compile-cache.js): ${cacheDir}`
    : `compile cache off (${'reason' in cache ? cache.reason : 'not enabled'}); the tokenim command keeps one (bin/compile-cache.js)`)
  const startedAt = new Date()
  const t0 = performance.now()
  process.stderr.write(`tokenim bench, scale ${scale.name}\n`)
  for (const [name, load] of SECTIONS) {
    if (only !== undefined && !only.includes(name)) {
      rec.skip(name, 'all', '--only excluded this section')
      continue
    }
    // with --repeat N the section runs N times in a row, each run with its own references; the figures
    // are then the runs' medians (results.ts mergeRuns)
    const runs: Recorder[] = []
    for (let run = 0; run < repeat; run++) {
      const runRec = new Recorder()
      runs.push(runRec)
      const s0 = performance.now()
      const label = repeat > 1 ? `${name} (run ${run + 1}/${repeat})` : name
      process.stderr.write(`▸ ${label} …\n`)
      try {
        await (await load())(scale, runRec)
      } catch (err) {
        runRec.errors.push({ section: name, message: (err as Error)?.stack ?? String(err) })
        process.stderr.write(`  ${label} failed: ${(err as Error)?.message ?? String(err)}\n`)
      }
      process.stderr.write(`  ${label}: ${((performance.now() - s0) / 1000).toFixed(1)} s\n`)
    }
    mergeRuns(runs, rec)
  }
  const results: Results = ResultsSchema.parse({
    schema: RESULTS_SCHEMA_ID,
    scale: scale.name,
    startedAt: startedAt.toISOString(),
    durationMs: Math.round(performance.now() - t0),
    ...(repeat > 1 ? { repeat } : {}),
    machine: machineInfo(),
    figures: rec.figures,
    skipped: rec.skipped,
    notes: rec.notes,
    errors: rec.errors
  })
  await mkdir(dirname(out), { recursive: true })
  const tmp = `${out}.${process.pid}.tmp`
  await writeFile(tmp, JSON.stringify(results, null, 2) + '\n')
  await rename(tmp, out)
  const m = results.machine
  const repeated = repeat > 1 ? `, each section ${repeat} times (medians; the ratio the median of the runs' own, which follow it)` : ''
  process.stdout.write(`tokenim bench — scale ${results.scale}, ${m.nproc} × ${m.cpu}, ${m.memoryGiB} GiB, Node ${m.node}, ${(results.durationMs / 1000).toFixed(1)} s${repeated}\n\n`)
  process.stdout.write(formatTable(results) + '\n')
  process.stdout.write(`\nresults: ${out}\n`)
  return results.errors.length > 0 ? 1 : 0
}

process.exitCode = await main(process.argv.slice(2))
// libp2p leaves one-second timers after stop (see docs/ARCHITECTURE.md); do not wait for them
process.exit(process.exitCode)
