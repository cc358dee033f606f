// The daemon refuses a damaged store with STORE_CORRUPT and the advice (no stack trace, no api.json left),
// and `tokenim repair` fixes it: the LevelDB files, the indexes, and messages lost from the store come back
// from the anchored backup (a CAR file) while messages newer than the backup are kept.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startDevnet } from '../../src/chain/index.ts'
import type { Devnet } from '../../src/chain/index.ts'
import { createIdentity } from '../../src/identity/index.ts'
import { openStore } from '../../src/store/index.ts'
import type { StoredMessage } from '../../src/store/index.ts'
import { peer } from '../backup/helpers.ts'
import { json, killAll, PASSWORD, run, TempDirs } from '../cli/helpers.ts'
import { exists } from '../../src/util/fs.ts'
import { makeOwner } from '../restore/helpers.ts'
import type { Owner } from '../restore/helpers.ts'
import { breakCount, corruptCurrent, dropConversation } from './helpers.ts'

async function ids (dir: string): Promise<string[]> {
  const store = await openStore(join(dir, 'store'), { createIfMissing: false })
  try {
    const out: string[] = []
    for await (const m of store.allMessages()) out.push(m.id)
    return out.sort()
  } finally {
    await store.close()
  }
}

describe('damaged store: daemon refuses it, tokenim repair fixes it (child processes)', function () {
  this.timeout(120_000)
  const dirs = new TempDirs()
  let devnet: Devnet
  let alice: Owner
  let dir: string
  let car: string
  let expected: string[]
  let lost: string[]

  before(async () => {
    devnet = await startDevnet()
    alice = await makeOwner(devnet.profile, { messages: 200, conversations: 3, seed: 17 })
    car = (await alice.backup(1)).file
    const history = await alice.messages()
    await alice.env.store.close()
    // a device of alice's whose store has everything up to the backup, and messages after it
    dir = await dirs.make('tokenim-repair-cli-')
    await createIdentity(dir, { phrase: alice.phrase, password: PASSWORD, scryptN: 1024 })
    await writeFile(join(dir, 'chain.json'), JSON.stringify(devnet.profile), { mode: 0o600 })
    const me = alice.address.toLowerCase()
    const newer: StoredMessage[] = [0, 1, 2, 3].map(j => ({
      id: `after-backup-${j}`, conversation: peer(1), from: me, to: peer(1), ts: Date.now() + j, text: `newer ${j}`, direction: 'out', status: 'delivered'
    }))
    const store = await openStore(join(dir, 'store'))
    await store.addMessages([...history, ...newer])
    await store.close()
    expected = [...history, ...newer].map(m => m.id).sort()
    // then the damage: a conversation gone, another's count wrong
    lost = await dropConversation(join(dir, 'store'), peer(0))
    await breakCount(join(dir, 'store'), peer(1), 2)
  })
  after(async () => {
    await killAll()
    await alice?.cleanup()
    await devnet?.stop()
    await dirs.cleanup()
  })

  it('the daemon exits 6 with STORE_CORRUPT and the advice, leaving no api.json', async () => {
    const r = await run(['daemon', '--data-dir', dir, '--json'])
    assert.equal(r.code, 6, r.stderr)
    const err = json<{ error: { code: string, message: string } }>(r).error
    assert.equal(err.code, 'STORE_CORRUPT')
    assert.match(err.message, /summary count 2/)
    assert.match(err.message, /tokenim repair/)
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace')
    assert.equal(await exists(join(dir, 'api.json')), false)
    assert.equal(await exists(join(dir, 'daemon.lock')), false)
  })

  it('repair --file merges the anchored backup: the lost conversation is back, newer messages kept', async () => {
    const before = await ids(dir)
    const r = await run(['repair', '--data-dir', dir, '--file', car, '--json'])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    const res = json<{ ok: boolean, fixes: Array<{ kind: string }>, imported: number, kept: number, messages: number, version: number, anchored: boolean }>(r)
    assert.equal(res.ok, true)
    assert.deepEqual(res.fixes.map(f => f.kind), ['conversations'])
    assert.equal(res.version, 1)
    assert.equal(res.anchored, true)
    assert.equal(res.imported, lost.length)
    assert.equal(res.kept, before.length)
    assert.deepEqual(await ids(dir), expected)
    assert.equal(res.messages, expected.length)
  })

  it('a store whose LevelDB files are damaged: the daemon refuses it, repair --no-backup fixes it', async () => {
    await corruptCurrent(join(dir, 'store'))
    const d = await run(['daemon', '--data-dir', dir, '--json'])
    assert.equal(d.code, 6)
    const err = json<{ error: { code: string, message: string } }>(d).error
    assert.equal(err.code, 'STORE_CORRUPT')
    assert.match(err.message, /tokenim repair/)
    const r = await run(['repair', '--data-dir', dir, '--no-backup', '--json'])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    const res = json<{ ok: boolean, fixes: Array<{ kind: string }>, imported: number }>(r)
    assert.equal(res.ok, true)
    assert.deepEqual(res.fixes.map(f => f.kind), ['leveldb'])
    assert.equal(res.imported, 0)
    assert.deepEqual(await ids(dir), expected)
  })
})
