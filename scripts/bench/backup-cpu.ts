/**
 * Where a full backup's CPU goes, thread by thread (issue 7). One process runs `--runs N` full backups,
 * each of a fresh generated history (scripts/bench/history.ts, as the bench makes it) in a new node's
 * store, through the real job (`runBackup`: build, pin, anchor on a local devnet, backup index). For each
 * run it prints the wall time, the process's CPU time and, on Linux, the CPU time of each kind of thread
 * read from /proc/self/task: the main thread, the seal worker (`WorkerThread`), V8's helpers (`V8Worker`:
 * GC and the optimizing compiler) and libuv's pool (`libuv-worker`: LevelDB's reads and writes). The
 * threads are sampled every 20 ms, so a seal worker that exits before the run ends is still counted.
 *
 * It is not part of `npm run bench`. It tells whether a change removes work or only moves it from one
 * thread to another. On 2 cores only removing work shortens a backup (docs/PERFORMANCE.md, Session 9).
 * Compare runs of one process, alternating the variants, because this VM's speed drifts from minute to
 * minute. Run it with the `tokenim` command's V8 flags to measure what the command does:
 *
 *   node --max-semi-space-size=16 --heap-growing-percent=50 scripts/bench/backup-cpu.ts \
 *     [--runs N] [--messages N] [--conversations N] [--json]
 */
import { readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { enableCompileCache } from '../../bin/compile-cache.js'
import { runBackup } from '../../src/backup/job/index.ts'
import type { RunBackupResult } from '../../src/backup/job/index.ts'
import { RegistryClient, startDevnet } from '../../src/chain/index.ts'
import type { Devnet } from '../../src/chain/index.ts'
import { createIdentity } from '../../src/identity/index.ts'
import { TokenimNode } from '../../src/node/index.ts'
import { addHistory, newHistory } from './history.ts'
import { CHEAP_KDF, PASSWORD } from './util.ts'

interface Args { runs: number, messages: number, conversations: number, json: boolean }

function args (argv: string[]): Args {
  const num = (name: string, fallback: number): number => {
    const i = argv.indexOf(name)
    if (i < 0) return fallback
    const v = Number(argv[i + 1])
    if (!Number.isSafeInteger(v) || v < 1) throw new Error(`${name} needs a positive whole number`)
    return v
  }
  return { runs: num('--runs', 3), messages: num('--messages', 100_000), conversations: num('--conversations', 1000), json: argv.includes('--json') }
}

/** CPU ms of every thread of this process now, by thread id and name (empty where /proc is not there) */
function threadTimes (): Map<string, { name: string, ms: number }> {
  const out = new Map<string, { name: string, ms: number }>()
  let tasks: string[]
  try {
    tasks = readdirSync('/proc/self/task')
  } catch {
    return out
  }
  const tick = 1000 / 100 // USER_HZ is 100 on Linux
  for (const tid of tasks) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      // after the name: state is field 3; utime and stime are fields 14 and 15
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      out.set(tid, { name, ms: (Number(fields[11]) + Number(fields[12])) * tick })
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return out
}

/** CPU ms spent by each kind of thread (digits at the end of a name dropped) between two readings */
function byKind (before: Map<string, { name: string, ms: number }>, after: Map<string, { name: string, ms: number }>): Record<string, number> {
  const kinds: Record<string, number> = {}
  for (const [tid, t] of after) {
    const ms = t.ms - (before.get(tid)?.ms ?? 0)
    if (ms <= 0) continue
    const kind = t.name.replace(/[0-9]+$/, '')
    kinds[kind] = (kinds[kind] ?? 0) + ms
  }
  return kinds
}

export interface CpuRun { run: number, ms: number, cpuMs: number, threads: Record<string, number>, messages: number, segments: number }

async function main (): Promise<void> {
  const a = args(process.argv.slice(2))
  enableCompileCache()
  const root = await mkdtemp(join(tmpdir(), 'tokenim-backup-cpu-'))
  let devnet: Devnet | undefined
  const runs: CpuRun[] = []
  try {
    devnet = await startDevnet()
    for (let r = 0; r < a.runs; r++) {
      const dir = join(root, `node-${r}`)
      await createIdentity(dir, { password: PASSWORD, scryptN: CHEAP_KDF })
      const node = await TokenimNode.open({ dataDir: dir, password: PASSWORD })
      const chain = new RegistryClient(devnet.profile, node.identity.wallet)
      try {
        await node.start()
        const history = newHistory(node.address, a.conversations)
        const all = Array.from({ length: a.conversations }, (_, i) => i)
        await addHistory(node.store, history, a.messages, all)

        // the threads read every 20 ms: a thread that ends keeps its last reading
        const before = threadTimes()
        const last = new Map(before)
        const sampler = setInterval(() => { for (const [tid, t] of threadTimes()) last.set(tid, t) }, 20)
        const cpu0 = process.cpuUsage()
        const t0 = performance.now()
        let result: RunBackupResult
        try {
          result = await runBackup({ node, chain }) as RunBackupResult
        } finally {
          clearInterval(sampler)
        }
        const ms = performance.now() - t0
        const cpu = process.cpuUsage(cpu0)
        for (const [tid, t] of threadTimes()) last.set(tid, t)
        if (!result.anchored) throw new Error(`run ${r}: the backup was not anchored`)
        const run: CpuRun = { run: r, ms: Math.round(ms), cpuMs: Math.round((cpu.user + cpu.system) / 1000), threads: byKind(before, last), messages: result.messages, segments: result.segments }
        runs.push(run)
        if (!a.json) {
          const threads = Object.entries(run.threads).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${v}`).join(', ')
          console.log(`run ${r}: ${run.ms} ms, CPU ${run.cpuMs} ms (${threads || 'threads not readable here'}); ${run.messages} messages, ${run.segments} segments`)
        }
      } finally {
        chain.close()
        await node.stop()
      }
    }
    if (a.json) console.log(JSON.stringify({ node: process.version, execArgv: process.execArgv, messages: a.messages, conversations: a.conversations, runs }))
  } finally {
    await devnet?.stop().catch(() => {})
    await rm(root, { recursive: true, force: true })
  }
}

main().catch((err: Error) => {
  console.error(err.message)
  process.exitCode = 1
})
