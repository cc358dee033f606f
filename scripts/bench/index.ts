/**
 * `npm run bench [-- --scale tiny|small|full] [--out FILE]` — tokenim's performance, every figure beside
 * a reference measured in the same run on the same machine (as a ratio), against the targets of
 * issue 7. Results go to bench/results.json (or --out) and a table to stdout; exit 0 when the bench
 * ran (a missed target is a finding, not a failure), 1 when a section failed, 2 on a bad flag.
 *
 * Sections: messaging (throughput, latency vs raw libp2p echo and ping), backup (full and +1% vs restic),
 * restore from a replica (vs restic restore), gas (first, subsequent, relayed), peak RSS of backup and
 * restore at 1,000,000 messages (full scale only), start-up (node start, daemon start → api.json).
 */
import { mkdir, rename, writeFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { Recorder, RESULTS_SCHEMA_ID, ResultsSchema, formatTable, machineInfo } from './results.ts'
import type { Results } from './results.ts'
import { SCALES, UsageError, parseOut, parseScale } from './scale.ts'
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
  try {
    scaleName = parseScale(argv)
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
  const startedAt = new Date()
  const t0 = performance.now()
  process.stderr.write(`tokenim bench, scale ${scale.name}\n`)
  for (const [name, load] of SECTIONS) {
    if (only !== undefined && !only.includes(name)) {
      rec.skip(name, 'all', '--only excluded this section')
      continue
    }
    const s0 = performance.now()
    process.stderr.write(`▸ ${name} …\n`)
    try {
      await (await load())(scale, rec)
    } catch (err) {
      rec.errors.push({ section: name, message: (err as Error)?.stack ?? String(err) })
      process.stderr.write(`  ${name} failed: ${(err as Error)?.message ?? String(err)}\n`)
    }
    process.stderr.write(`  ${name}: ${((performance.now() - s0) / 1000).toFixed(1)} s\n`)
  }
  const results: Results = ResultsSchema.parse({
    schema: RESULTS_SCHEMA_ID,
    scale: scale.name,
    startedAt: startedAt.toISOString(),
    durationMs: Math.round(performance.now() - t0),
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
  process.stdout.write(`tokenim bench — scale ${results.scale}, ${m.nproc} × ${m.cpu}, ${m.memoryGiB} GiB, Node ${m.node}, ${(results.durationMs / 1000).toFixed(1)} s\n\n`)
  process.stdout.write(formatTable(results) + '\n')
  process.stdout.write(`\nresults: ${out}\n`)
  return results.errors.length > 0 ? 1 : 0
}

process.exitCode = await main(process.argv.slice(2))
// libp2p leaves one-second timers after stop (see docs/ARCHITECTURE.md); do not wait for them
process.exit(process.exitCode)
