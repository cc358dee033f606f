/**
 * Section 4: gas of the anchoring paths, by running scripts/gas.ts (the same measurement as `npm run
 * gas`) in a child process. Gas is deterministic, so the reference is the target of the foundation
 * issue; the relayed first anchor is recorded beside the direct one.
 */
import { join } from 'node:path'
import type { Recorder } from './results.ts'
import type { Scale } from './scale.ts'
import { REPO_ROOT, run } from './util.ts'

const SECTION = 'gas'
const TARGETS: Record<string, number> = { 'first anchor': 70_000, 'subsequent anchor': 55_000, 'relayed anchor': 65_000 }

export async function benchGas (_scale: Scale, rec: Recorder): Promise<void> {
  const res = await run(process.execPath, [join(REPO_ROOT, 'scripts', 'gas.ts')], { cwd: REPO_ROOT, timeoutMs: 300_000 })
  const measured = new Map<string, number>()
  for (const m of (res.stdout + '\n' + res.stderr).matchAll(/^\(?(first anchor|subsequent anchor|relayed anchor|relayed first anchor): (\d+) gas/gm)) {
    measured.set(m[1], Number(m[2]))
  }
  if (measured.size === 0) throw new Error(`scripts/gas.ts printed no figures (exit ${String(res.code)}): ${res.stderr.trim().slice(-300)}`)
  for (const [name, target] of Object.entries(TARGETS)) {
    const gas = measured.get(name)
    if (gas === undefined) {
      rec.skip(SECTION, name, 'not printed by scripts/gas.ts')
      continue
    }
    rec.figure({
      section: SECTION,
      name: name === 'relayed anchor' ? 'relayed subsequent anchor (anchorWithSig)' : name,
      value: gas,
      unit: 'gas',
      reference: { name: 'target', value: target },
      targets: [{ of: 'value', op: '<=', limit: target }]
    })
  }
  const relayedFirst = measured.get('relayed first anchor')
  const first = measured.get('first anchor')
  if (relayedFirst !== undefined) {
    rec.figure({
      section: SECTION,
      name: 'relayed first anchor',
      value: relayedFirst,
      unit: 'gas',
      ...(first !== undefined ? { reference: { name: 'direct first anchor', value: first } } : {})
    })
  }
}
