import assert from 'node:assert/strict'
import { join } from 'node:path'
import { buildBackup, writeCar } from '../../src/backup/index.ts'
import { deriveBackupKey, deriveKeys, generateMnemonic } from '../../src/identity/index.ts'
import { openCarSource, restoreBackup } from '../../src/restore/index.ts'
import { IdFilter } from '../../src/restore/id-filter.ts'
import { openStore } from '../../src/store/index.ts'
import type { StoredMessage } from '../../src/store/index.ts'
import { makeEnv, makeHistory } from '../backup/helpers.ts'
import type { Env } from '../backup/helpers.ts'
import { Dirs, PASSWORD } from './helpers.ts'

describe('restore: the import into a store the restore made', function () {
  this.timeout(60_000)

  it('IdFilter: every id added is reported, ids never added mostly are not', () => {
    const f = new IdFilter(20_000)
    const ids = Array.from({ length: 20_000 }, (_, i) => `0190${i.toString(16).padStart(8, '0')}-${(i * 7919) % 10007}`)
    assert.equal(ids.filter(id => f.mayHave(id)).length, 0, 'nothing added yet')
    for (const id of ids) f.add(id)
    for (const id of ids) assert.equal(f.mayHave(id), true, id)
    let positives = 0
    for (let i = 0; i < 20_000; i++) if (f.mayHave(`other-${i}`)) positives++
    assert.ok(positives < 600, `${positives} false positives in 20,000`)
    // more ids than it was sized for: still no false negative
    const small = new IdFilter(10)
    for (const id of ids) small.add(id)
    for (const id of ids) assert.equal(small.mayHave(id), true, id)
    // add answers what mayHave said just before it
    const g = new IdFilter(1000)
    for (const id of ids.slice(0, 1000)) {
      const before = g.mayHave(id)
      assert.equal(g.add(id), before, id)
      assert.equal(g.add(id), true, `${id} again`)
    }
    assert.ok(ids.slice(0, 1000).filter(id => !new IdFilter(1000).add(id)).length === 1000, 'a new filter has seen nothing')
  })

  describe('a crafted bundle that repeats an id in two conversations', () => {
    const dirs = new Dirs()
    let env: Env
    let phrase: string
    let file: string
    let unique: StoredMessage[]
    let dupId: string

    before(async () => {
      phrase = generateMnemonic(12)
      const keys = deriveKeys(phrase)
      const { key } = await deriveBackupKey(keys.backupRootKey)
      env = await makeEnv()
      const history = makeHistory({ conversations: 3, messages: 300, seed: 5 })
      const byConv = new Map<string, StoredMessage[]>()
      for (const m of history) byConv.set(m.conversation, [...byConv.get(m.conversation) ?? [], m])
      const convs = [...byConv.keys()].sort()
      const [a, b] = [byConv.get(convs[0]) as StoredMessage[], byConv.get(convs[1]) as StoredMessage[]]
      // the middle message of the second conversation takes the id of the first conversation's first message:
      // the builder does not look at ids across conversations, and the restore meets it batches later
      dupId = a[0].id
      const copy = { ...b[Math.floor(b.length / 2)], id: dupId }
      const crafted = convs.flatMap(c => (byConv.get(c) as StoredMessage[]).map(m => m === b[Math.floor(b.length / 2)] ? copy : m))
      unique = crafted.filter(m => m !== copy)
      const res = await buildBackup({ store: { allMessages: async function * () { yield * crafted } }, blockstore: env.blockstore, owner: keys.address, version: 1, backupKey: key, kdf: null, segmentSize: 20 })
      file = join(env.dir, 'crafted.car')
      await writeCar(res.root, env.blockstore, file)
    })
    after(async () => {
      await env?.cleanup()
      await dirs.cleanup()
    })

    it('keeps the first message of the id (as a store read would) and leaves a consistent store', async () => {
      const dataDir = join(await dirs.make(), 'device')
      const source = await openCarSource(file)
      let res
      try {
        res = await restoreBackup({ dataDir, password: PASSWORD, scryptN: 1024, source, phrase, allowUnanchored: true, batchSize: 25 })
      } finally {
        await source.close()
      }
      assert.equal(res.messages, unique.length)
      assert.equal(res.imported, unique.length)
      const store = await openStore(join(dataDir, 'store'), { createIfMissing: false })
      try {
        assert.deepEqual(await store.checkConsistency(), [])
        assert.equal((await store.getMessage(dupId))?.conversation, unique.find(m => m.id === dupId)?.conversation)
        assert.equal(await store.countMessages(), unique.length)
      } finally {
        await store.close()
      }
    })
  })
})
