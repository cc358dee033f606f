/**
 * Section 5 (full scale only): peak RSS of a backup and of a restore of 1,000,000 messages, each in
 * its own child process (scripts/bench/rss-child.ts reports its `maxRSS`). The backup writes a CAR
 * file (not anchored); the restore reads it back (`--allow-unanchored`, no chain). Reference: the
 * child's RSS right after loading the same modules, so the ratio shows what the pipeline adds.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createIdentity } from '../../src/identity/index.ts'
import { TokenimNode } from '../../src/node/index.ts'
import { moreMessages, newHistory } from './history.ts'
import type { Recorder } from './results.ts'
import type { Scale } from './scale.ts'
import { CHEAP_KDF, PASSWORD, REPO_ROOT, run } from './util.ts'

const SECTION = 'rss'
const MB = 1_000_000

export async function benchRss (scale: Scale, rec: Recorder): Promise<void> {
  const count = Number(process.env.TOKENIM_BENCH_RSS_MESSAGES ?? scale.rssMessages)
  if (!(count > 0)) {
    rec.skip(SECTION, 'peak RSS of backup and restore (1,000,000 messages)', `full scale only (this run: ${scale.name})`)
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
      for (let left = count; left > 0;) {
        const batch = moreMessages(history, Math.min(10_000, left), all)
        await node.store.addMessages(batch)
        left -= batch.length
      }
    } finally {
      await node.stop()
    }
    const car = join(root, 'backup.car')
    const child = async (args: string[]): Promise<{ maxRssBytes: number, baseRssBytes: number, ms: number, messages: number }> => {
      const res = await run(process.execPath, [join(REPO_ROOT, 'scripts', 'bench', 'rss-child.ts'), ...args], { timeoutMs: 3_600_000 })
      if (res.code !== 0) throw new Error(`rss-child ${args[0]} exited ${String(res.code)}: ${res.stderr.trim().slice(-400)}`)
      return JSON.parse(res.stdout.trim().split('\n').pop() ?? '{}')
    }
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
        note: `${what} took ${Math.round(m.ms)} ms in the child`
      })
    }
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}
