import assert from 'node:assert/strict'
import { join } from 'node:path'
import { startDevnet } from '../../src/chain/index.ts'
import type { Devnet } from '../../src/chain/index.ts'
import { isTokenimError } from '../../src/errors.ts'
import { assertStoreHealthy, checkStoreHealth, explainOpenError } from '../../src/node/index.ts'
import { backupKeySource, openCarSource, repairMessageStore } from '../../src/restore/index.ts'
import type { BlockSource } from '../../src/restore/index.ts'
import { openStore } from '../../src/store/index.ts'
import type { StoredMessage } from '../../src/store/index.ts'
import { deriveKeys } from '../../src/identity/index.ts'
import { makeHistory, peer } from '../backup/helpers.ts'
import { makeOwner } from '../restore/helpers.ts'
import type { Owner } from '../restore/helpers.ts'
import { Dirs } from '../restore/helpers.ts'
import { breakCount, corruptManifest, dropConversation } from './helpers.ts'

async function allIds (storePath: string): Promise<string[]> {
  const store = await openStore(storePath, { createIfMissing: false })
  try {
    const ids: string[] = []
    for await (const m of store.allMessages()) ids.push(m.id)
    return ids.sort()
  } finally {
    await store.close()
  }
}

describe('store health at start (src/node/health.ts)', function () {
  const dirs = new Dirs()
  after(async () => { await dirs.cleanup() })

  it('a broken conversation count is found by the full and by the bounded check, with the repair advice', async () => {
    const path = join(await dirs.make(), 'store')
    const store = await openStore(path)
    await store.addMessages(makeHistory({ conversations: 3, messages: 60, seed: 3 }))
    assert.equal((await checkStoreHealth(store)).ok, true)
    await store.close()
    await breakCount(path, peer(0), 1)

    const s2 = await openStore(path)
    try {
      const full = await checkStoreHealth(s2)
      assert.equal(full.mode, 'full')
      assert.deepEqual(full.problems.map(p => p.kind), ['count-mismatch'])
      const bounded = await checkStoreHealth(s2, { fullCheckUpTo: 0 })
      assert.equal(bounded.mode, 'bounded')
      assert.deepEqual(bounded.problems.map(p => p.kind), ['count-mismatch'])
      await assert.rejects(assertStoreHealthy(s2), (err: unknown) => {
        assert.ok(isTokenimError(err, 'STORE_CORRUPT'))
        assert.match(err.message, /summary count 1/)
        assert.match(err.message, /tokenim repair/)
        return true
      })
    } finally {
      await s2.close()
    }
  })

  it('a store whose CURRENT names a missing MANIFEST is reported as damaged, not as an I/O error', async () => {
    const io = Object.assign(new Error('x'), {})
    assert.equal(explainOpenError(io), io)
    const path = join(await dirs.make(), 'store')
    const store = await openStore(path)
    await store.close()
    const { writeFile } = await import('node:fs/promises')
    await writeFile(join(path, 'CURRENT'), 'MANIFEST-999999\n')
    const err = await openStore(path).then(async s => { await s.close(); return undefined }, (e: unknown) => e)
    assert.ok(isTokenimError(err, 'STORE_IO'), String(err))
    const explained = explainOpenError(err)
    assert.ok(isTokenimError(explained, 'STORE_CORRUPT'))
    assert.match(explained.message, /tokenim repair/)
  })
})

describe('repairMessageStore (src/restore/repair.ts)', function () {
  this.timeout(120_000)
  let devnet: Devnet
  let alice: Owner
  const dirs = new Dirs()
  let file: string
  let backedUp: string[]
  let newer: StoredMessage[]

  before(async () => {
    devnet = await startDevnet()
    alice = await makeOwner(devnet.profile, { messages: 300, conversations: 4, seed: 11 })
    backedUp = (await alice.messages()).map(m => m.id)
    file = (await alice.backup(1)).file
    // after the backup: messages in a conversation the backup has and in a new one
    const me = alice.address.toLowerCase()
    const later = Date.now()
    newer = [peer(0), peer(9)].flatMap((p, i) => [0, 1, 2].map(j => ({
      id: `newer-${i}-${j}`, conversation: p, from: me, to: p, ts: later + i * 10 + j, text: `after the backup ${i}/${j}`, direction: 'out' as const, status: 'delivered' as const
    })))
    await alice.env.store.addMessages(newer)
    await alice.env.store.close()
  })
  after(async () => {
    await alice?.cleanup()
    await devnet?.stop()
    await dirs.cleanup()
  })

  const opts = async (source: BlockSource): Promise<Parameters<typeof repairMessageStore>[0]> => ({
    storePath: join(alice.env.dir, 'store'),
    backup: { owner: alice.address, backupKey: backupKeySource(deriveKeys(alice.phrase).backupRootKey), source, chain: alice.client }
  })

  it('brings back a lost conversation from the latest backup and keeps the messages newer than it', async () => {
    const storePath = join(alice.env.dir, 'store')
    const lost = await dropConversation(storePath, peer(1))
    assert.ok(lost.length > 10)
    await breakCount(storePath, peer(0), 7)
    const before = await allIds(storePath)
    const source = await openCarSource(file)
    let res
    try {
      res = await repairMessageStore(await opts(source))
    } finally {
      await source.close()
    }
    assert.equal(res.ok, true, JSON.stringify(res.remaining))
    assert.deepEqual(res.found.map(p => p.kind), ['count-mismatch'])
    assert.deepEqual(res.fixes.map(f => f.kind), ['conversations'])
    assert.equal(res.version, 1)
    assert.equal(res.anchored, true)
    assert.equal(res.imported, lost.length)
    assert.equal(res.kept, before.length)
    const after = await allIds(storePath)
    assert.deepEqual(after, [...new Set([...backedUp, ...newer.map(m => m.id)])].sort())
    assert.equal(res.messages, after.length)
  })

  it('is idempotent: a second run finds nothing to fix and imports nothing', async () => {
    const source = await openCarSource(file)
    try {
      const res = await repairMessageStore(await opts(source))
      assert.equal(res.ok, true)
      assert.deepEqual(res.fixes, [])
      assert.deepEqual(res.found, [])
      assert.equal(res.imported, 0)
      assert.equal(res.kept, res.messages)
    } finally {
      await source.close()
    }
  })

  it('repairs damaged LevelDB files (a garbage MANIFEST) without a backup', async () => {
    const storePath = join(alice.env.dir, 'store')
    const before = await allIds(storePath)
    await corruptManifest(storePath)
    await assert.rejects(openStore(storePath), (err: unknown) => isTokenimError(err, 'STORE_CORRUPT'))
    const res = await repairMessageStore({ storePath })
    assert.equal(res.ok, true)
    assert.deepEqual(res.fixes.map(f => f.kind), ['leveldb'])
    assert.deepEqual(await allIds(storePath), before)
  })

  it('a wrong key is refused before anything is written', async () => {
    const storePath = join(alice.env.dir, 'store')
    await dropConversation(storePath, peer(2))
    const before = await allIds(storePath)
    const source = await openCarSource(file)
    try {
      const o = await opts(source)
      o.backup = { ...o.backup!, backupKey: new Uint8Array(32).fill(7) }
      await assert.rejects(repairMessageStore(o), (err: unknown) => isTokenimError(err, 'DECRYPT_FAILED'))
    } finally {
      await source.close()
    }
    assert.deepEqual(await allIds(storePath), before)
  })
})
