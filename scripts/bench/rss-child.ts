/**
 * Child process of the RSS bench: `backup DATA_DIR OUT.car` or `restore DATA_DIR IN.car PHRASE_FILE` (or
 * `modules`: load both modes' modules and exit, to fill the compile cache).
 * Prints one JSON line `{maxRssBytes, baseRssBytes, ms, messages, peakHeapBytes, peakArrayBuffersBytes}`
 * (maxRSS from getrusage; the peaks sampled every 250 ms). Each mode loads only the modules it needs, as
 * the CLI commands do (a restore from a CAR file never loads libp2p or Helia; a backup that asks no replica
 * opens the data dir without network, src/node/local.ts, and loads no libp2p); `baseRssBytes` is the RSS
 * after loading them, before any work. The restore writes its keystore with the default scrypt cost, as
 * `tokenim restore` does (with a cheap one its ~128 MiB went unmeasured: 343 vs 454 MB at 1,000,000 messages
 * when the keystore was made after the import).
 */
import { readFile } from 'node:fs/promises'
import { PASSWORD } from './util.ts'

const [mode, dataDir, car, phraseFile] = process.argv.slice(2)
if (mode !== 'backup' && mode !== 'restore' && mode !== 'modules') {
  console.error('usage: rss-child.ts backup DATA_DIR OUT.car | restore DATA_DIR IN.car PHRASE_FILE | modules')
  process.exit(2)
}
if (mode === 'modules') {
  // loads what both modes load, and nothing else: fills the compile cache (rss.ts) before the measured runs
  await Promise.all([import('../../src/backup/job/index.ts'), import('../../src/node/local.ts'), import('../../src/restore/index.ts')])
  process.stdout.write('{}\n')
  process.exit(0)
}
let peakHeapBytes = 0
let peakArrayBuffersBytes = 0
const sample = (): void => {
  const m = process.memoryUsage()
  peakHeapBytes = Math.max(peakHeapBytes, m.heapTotal)
  peakArrayBuffersBytes = Math.max(peakArrayBuffersBytes, m.arrayBuffers)
}
let messages = 0
let baseRssBytes = 0
let t0 = 0
const sampler = setInterval(sample, 250)
sampler.unref()
if (mode === 'backup') {
  // as `tokenim backup` without replicas to ask: the data dir's stores without network (src/node/local.ts)
  const [{ runBackup }, { openLocalNode }] = await Promise.all([import('../../src/backup/job/index.ts'), import('../../src/node/local.ts')])
  baseRssBytes = process.memoryUsage().rss
  t0 = performance.now()
  const node = await openLocalNode({ dataDir, password: PASSWORD })
  try {
    const r = await runBackup({ node, noAnchor: true, out: car })
    if (!('messages' in r)) throw new Error('backup did not run')
    messages = r.messages
  } finally {
    await node.stop()
  }
} else {
  const { openCarSource, restoreBackup } = await import('../../src/restore/index.ts')
  baseRssBytes = process.memoryUsage().rss
  t0 = performance.now()
  const phrase = (await readFile(phraseFile, 'utf8')).trim()
  const source = await openCarSource(car)
  try {
    // the new keystore with the CLI's default scrypt cost (~128 MiB while it runs): what `tokenim restore` pays
    const r = await restoreBackup({ dataDir, phrase, password: PASSWORD, source, allowUnanchored: true })
    if (!r.ok) throw new Error('restore did not complete')
    messages = r.messages
  } finally {
    await source.close()
  }
}
const ms = performance.now() - t0
sample()
clearInterval(sampler)
process.stdout.write(JSON.stringify({ maxRssBytes: process.resourceUsage().maxRSS * 1024, baseRssBytes, ms, messages, peakHeapBytes, peakArrayBuffersBytes }) + '\n')
process.exit(0)
