/**
 * Section 5 (full scale only): peak RSS of a backup and of a restore of 1,000,000 messages, each in
 * its own child process (scripts/bench/rss-child.ts reports its `maxRSS`). The backup writes a CAR
 * file (not anchored); the restore reads it back (`--allow-unanchored`, no chain). Reference: the
 * child's RSS right after loading the modules its command loads, so the ratio shows what the pipeline
 * adds. The children run with the Node flags and the environment (glibc's malloc tunables) of the
 * `tokenim` command (bin/tokenim.js's `#!` line), so the figure is what the CLI gets. `--rss-messages N`
 * (or TOKENIM_BENCH_RSS_MESSAGES) runs it at any scale with N messages (100 per conversation).
 */
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { enableCompileCache } from '../../bin/compile-cache.js'
import { createIdentity } from '../../src/identity/index.ts'
import { TokenimNode } from '../../src/node/index.ts'
import { addHistory, newHistory } from './history.ts'
import type { Recorder } from './results.ts'
import type { Scale } from './scale.ts'
import { CHEAP_KDF, PASSWORD, REPO_ROOT, run } from './util.ts'

const SECTION = 'rss'
const MB = 1_000_000

/** `--rss-messages N` from the bench's arguments, else TOKENIM_BENCH_RSS_MESSAGES, else the scale's. */
export function rssMessages (argv: string[], scale: Scale): number {
  const i = argv.indexOf('--rss-messages')
  const eq = argv.find(a => a.startsWith('--rss-messages='))
  const raw = i >= 0 ? argv[i + 1] : eq !== undefined ? eq.slice('--rss-messages='.length) : process.env.TOKENIM_BENCH_RSS_MESSAGES
  if (raw === undefined) return scale.rssMessages
  const n = Number(raw)
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--rss-messages must be a positive integer (got "${raw}")`)
  return n
}

/**
 * How the `tokenim` command starts Node: bin/tokenim.js's `#!/usr/bin/env -S [NAME=value …] node [--flag …]`
 * line, its environment assignments (glibc's malloc tunables) and its Node flags.
 */
export function cliLaunch (line = readFileSync(join(REPO_ROOT, 'bin', 'tokenim.js'), 'utf8').split('\n', 1)[0]): { env: Record<string, string>, flags: string[] } {
  const m = /^#!\S*env\s+(?:-S\s+)?((?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*)node((?:\s+--\S+)*)\s*$/.exec(line)
  if (m === null) return { env: {}, flags: [] }
  const env: Record<string, string> = {}
  for (const a of m[1].trim().split(/\s+/).filter(a => a !== '')) env[a.slice(0, a.indexOf('='))] = a.slice(a.indexOf('=') + 1)
  return { env, flags: m[2].trim().split(/\s+/).filter(f => f !== '') }
}

export async function benchRss (scale: Scale, rec: Recorder): Promise<void> {
  const count = rssMessages(process.argv.slice(2), scale)
  if (!(count > 0)) {
    rec.skip(SECTION, 'peak RSS of backup and restore (1,000,000 messages)', `full scale only, or --rss-messages N (this run: ${scale.name})`)
    return
  }
  const root = await mkdtemp(join(tmpdir(), 'tokenim-bench-rss-'))
  try {
    const dataDir = join(root, 'owner')
    const created = await createIdentity(dataDir, { password: PASSWORD, scryptN: CHEAP_KDF })
    await writeFile(join(root, 'phrase.txt'), created.mnemonic ?? '', { mode: 0o600 })
    const node = await TokenimNode.open({ dataDir, password: PASSWORD })
    await node.start()
    try {
      const conversations = Math.max(1, Math.round(count / 100))
      const history = newHistory(node.address, conversations, 11)
      const all = Array.from({ length: conversations }, (_, i) => i)
      await addHistory(node.store, history, count, all, { batch: 10_000 })
    } finally {
      await node.stop()
    }
    const car = join(root, 'backup.car')
    // the children start as the `tokenim` command does: its Node flags, its environment (malloc tunables)
    // and its compile cache (bin/compile-cache.js; with it a child's modules take ~15 MB less), filled by a
    // child that only loads the modules, so the figures do not depend on whether the cache was warm
    const { env, flags } = cliLaunch()
    const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env }
    const cache = childEnv.NODE_COMPILE_CACHE !== undefined && childEnv.NODE_COMPILE_CACHE !== '' ? { directory: childEnv.NODE_COMPILE_CACHE } : enableCompileCache(childEnv)
    const child = async (args: string[]): Promise<{ maxRssBytes: number, baseRssBytes: number, ms: number, messages: number, peakHeapBytes: number, peakArrayBuffersBytes: number }> => {
      const res = await run(process.execPath, [...flags, join(REPO_ROOT, 'scripts', 'bench', 'rss-child.ts'), ...args], { env: childEnv, timeoutMs: 3_600_000 })
      if (res.code !== 0) throw new Error(`rss-child ${args[0]} exited ${String(res.code)}: ${res.stderr.trim().slice(-400)}`)
      return JSON.parse(res.stdout.trim().split('\n').pop() ?? '{}')
    }
    if ('directory' in cache) await child(['modules'])
    const b = await child(['backup', dataDir, car])
    const r = await child(['restore', join(root, 'restored'), car, join(root, 'phrase.txt')])
    for (const [what, m] of [['backup', b], ['restore', r]] as const) {
      rec.figure({
        section: SECTION,
        name: `peak RSS, ${what} of ${m.messages.toLocaleString('en-US')} msgs`,
        value: m.maxRssBytes / MB,
        unit: 'MB',
        reference: { name: 'same child after loading its modules', value: m.baseRssBytes / MB },
        targets: [{ of: 'value', op: '<=', limit: 400 }],
        note: `${what} took ${Math.round(m.ms)} ms in the child (${Object.entries(env).map(([k, v]) => `${k}=${v} `).join('')}node ${flags.join(' ') || 'without flags'}; compile cache ${'directory' in cache ? 'warm' : `off: ${cache.reason}`}); peak V8 heap ${Math.round(m.peakHeapBytes / MB)} MB, peak ArrayBuffers ${Math.round(m.peakArrayBuffersBytes / MB)} MB`
      })
    }
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}
