/**
 * Child process of the RSS bench: `backup DATA_DIR OUT.car` or `restore DATA_DIR IN.car PHRASE_FILE`.
 * Prints one JSON line `{maxRssBytes, baseRssBytes, ms, messages}` (maxRSS from getrusage).
 */
import { readFile } from 'node:fs/promises'
import { runBackup } from '../../src/backup/job/index.ts'
import type { RunBackupResult } from '../../src/backup/job/index.ts'
import { TokenimNode } from '../../src/node/index.ts'
import { openCarSource, restoreBackup } from '../../src/restore/index.ts'
import { CHEAP_KDF, PASSWORD } from './util.ts'

const [mode, dataDir, car, phraseFile] = process.argv.slice(2)
const baseRssBytes = process.memoryUsage().rss
const t0 = performance.now()
let messages = 0
if (mode === 'backup') {
  const node = await TokenimNode.open({ dataDir, password: PASSWORD })
  await node.start()
  try {
    const r = await runBackup({ node, noAnchor: true, out: car }) as RunBackupResult
    messages = r.messages
  } finally {
    await node.stop()
  }
} else if (mode === 'restore') {
  const phrase = (await readFile(phraseFile, 'utf8')).trim()
  const source = await openCarSource(car)
  try {
    const r = await restoreBackup({ dataDir, phrase, password: PASSWORD, scryptN: CHEAP_KDF, source, allowUnanchored: true })
    if (!r.ok) throw new Error('restore did not complete')
    messages = r.messages
  } finally {
    await source.close()
  }
} else {
  console.error('usage: rss-child.ts backup DATA_DIR OUT.car | restore DATA_DIR IN.car PHRASE_FILE')
  process.exit(2)
}
const ms = performance.now() - t0
process.stdout.write(JSON.stringify({ maxRssBytes: process.resourceUsage().maxRSS * 1024, baseRssBytes, ms, messages }) + '\n')
process.exit(0)
