import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { startDevnet } from '../../src/chain/index.ts'
import type { Devnet } from '../../src/chain/index.ts'
import { waitFor } from '../node/helpers.ts'
import { Dirs, PASSWORD, makeOwner, restoredMessages, writeCarWithout } from './helpers.ts'
import type { Owner } from './helpers.ts'
import { readBackup } from '../../src/backup/index.ts'

const REPO = resolve(import.meta.dirname, '../..')
const BIN = join(REPO, 'bin/tokenim.js')

interface Run { code: number | null, stdout: string, stderr: string }

function start (args: string[]): { child: ChildProcess, done: Promise<Run> } {
  const env: NodeJS.ProcessEnv = { ...process.env, TOKENIM_INSECURE_FAST_KDF: '1', TOKENIM_PASSWORD: PASSWORD }
  for (const k of ['TOKENIM_HOME', 'TOKENIM_BOOTSTRAP', 'TOKENIM_CHAIN', 'DEBUG']) delete env[k]
  const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (d: string) => { stdout += d })
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const done = new Promise<Run>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', code => { resolve({ code, stdout, stderr }) })
  })
  return { child, done }
}

async function run (args: string[]): Promise<Run & { json: Record<string, unknown> }> {
  const r = await start(args).done
  let json: Record<string, unknown>
  try {
    json = JSON.parse(r.stdout) as Record<string, unknown>
  } catch {
    throw new Error(`stdout is not one JSON document (exit ${r.code}):\n${r.stdout}\nstderr:\n${r.stderr}`)
  }
  return { ...r, json }
}

describe('restore / verify commands (child processes)', function () {
  this.timeout(120_000)
  let devnet: Devnet
  let alice: Owner
  let chainFile: string
  let mnemonicFile: string
  const dirs = new Dirs()
  let work: string

  before(async () => {
    devnet = await startDevnet()
    work = await dirs.make()
    chainFile = join(work, 'chain.json')
    await writeFile(chainFile, JSON.stringify(devnet.profile))
    alice = await makeOwner(devnet.profile, { messages: 12_000, conversations: 6, seed: 21 })
    mnemonicFile = join(work, 'words.txt')
    await writeFile(mnemonicFile, alice.phrase + '\n')
  })
  after(async () => {
    await alice?.cleanup()
    await dirs.cleanup()
    await devnet?.stop()
  })

  it('SIGKILL after the first batch, rerun: complete, no duplicates', async () => {
    const v1 = await alice.backup(1)
    const dataDir = join(work, 'killed')
    const args = ['--data-dir', dataDir, '--chain', chainFile, '--json', 'restore', '--mnemonic-file', mnemonicFile, '--file', v1.file]
    const first = start(args)
    const marker = join(dataDir, 'restore.json')
    const seen = await waitFor(async () => {
      try {
        const m = JSON.parse(await readFile(marker, 'utf8')) as { imported: number, nextSegment: number }
        return m.imported > 0 ? m : undefined
      } catch {
        return undefined
      }
    }, 'the first import batch', 60_000, 5)
    first.child.kill('SIGKILL')
    const killed = await first.done
    assert.equal(killed.code, null)
    assert.ok(seen.imported < 12_000)

    // a plain rerun continues the interrupted restore (the dir is not "non-empty" for it)
    const again = await run(args)
    assert.equal(again.code, 0, again.stderr)
    assert.equal(again.json.ok, true)
    assert.equal(again.json.messages, 12_000)
    assert.equal(again.json.resumed, true)
    assert.equal(again.json.version, 1)
    const got = await restoredMessages(dataDir)
    assert.equal(new Set(got.map(m => m.id)).size, 12_000)
    assert.deepEqual(got, await alice.messages())
  })

  it('restore and verify --json: shapes, codes and exit statuses', async () => {
    const v1 = await alice.backup(2)
    // verify an intact CAR with the mnemonic: exit 0
    const ok = await run(['--chain', chainFile, '--data-dir', join(work, 'none'), '--json', 'verify', '--file', v1.file, '--mnemonic-file', mnemonicFile])
    assert.equal(ok.code, 0, ok.stderr)
    assert.equal(ok.json.ok, true)
    assert.equal(ok.json.version, 2)
    assert.equal(ok.json.messages, 12_000)
    assert.deepEqual(ok.json.problems, [])
    // verify a CAR missing two blocks: every problem listed, exit 3
    const reader = await readBackup({ root: v1.root, blockstore: alice.env.blockstore, backupKey: alice.backupKey })
    const holes = join(work, 'holes.car')
    const drop = [reader.links.segments[0], reader.links.segments[5]]
    await writeCarWithout(v1.root, alice.env.blockstore, holes, drop)
    const bad = await run(['--chain', chainFile, '--data-dir', join(work, 'none'), '--json', 'verify', '--file', holes, '--public', '--owner', alice.address])
    assert.equal(bad.code, 3)
    assert.equal(bad.json.ok, false)
    assert.deepEqual((bad.json.problems as Array<{ code: string, cid: string }>).map(p => [p.code, p.cid]), drop.map(c => ['MISSING_BLOCK', c.toString()]))
    // restore of that CAR: refused with the problems in the error document, nothing written
    const target = join(work, 'target')
    const refused = await run(['--data-dir', target, '--chain', chainFile, '--json', 'restore', '--mnemonic-file', mnemonicFile, '--file', holes])
    assert.equal(refused.code, 3)
    const error = refused.json.error as { code: string, problems: unknown[] }
    assert.equal(error.code, 'MISSING_BLOCK')
    assert.equal(error.problems.length, 2)
    // the older CAR (v1) is now a rollback
    const rollback = await run(['--data-dir', target, '--chain', chainFile, '--json', 'restore', '--mnemonic-file', mnemonicFile, '--file', join(alice.env.dir, 'v1.car')])
    assert.equal(rollback.code, 3)
    assert.equal((rollback.json.error as { code: string }).code, 'ROLLBACK_REFUSED')
    // a mnemonic with no anchors
    const other = join(work, 'other.txt')
    await writeFile(other, 'abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about\n')
    const none = await run(['--data-dir', target, '--chain', chainFile, '--json', 'restore', '--mnemonic-file', other, '--file', v1.file])
    assert.equal((none.json.error as { code: string }).code, 'NO_BACKUP')
    assert.equal(none.code, 6)
  })
})
