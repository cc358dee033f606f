import assert from 'node:assert/strict'
import { join } from 'node:path'
import { RegistryClient, startDevnet } from '../../src/chain/index.ts'
import type { Devnet } from '../../src/chain/index.ts'
import { openCarSource, restoreBackup } from '../../src/restore/index.ts'
import { DEFAULT_SEGMENT_CACHE_BYTES, SegmentCache, defaultSegmentCacheBytes, estimateMessagesBytes } from '../../src/restore/segment-cache.ts'
import { DEFAULT_CACHE_BYTES, defaultCacheBytes } from '../../src/restore/source.ts'
import type { StoredMessage } from '../../src/store/index.ts'
import { Dirs, PASSWORD, makeOwner, restoredMessages } from './helpers.ts'
import type { Owner } from './helpers.ts'

function msg (i: number, text = 'hello'): StoredMessage {
  return { id: `m${i}`, conversation: '0x' + '1'.repeat(40), from: '0x' + '1'.repeat(40), to: '0x' + '2'.repeat(40), ts: i, text, direction: 'in', status: 'received' } as StoredMessage
}

describe('restore: segments kept from the verify pass (byte budget, spill = decrypt again)', function () {
  this.timeout(60_000)

  it('keeps segments within the budget, spills the rest, and frees what is taken', () => {
    const a = [msg(1), msg(2)]
    const b = [msg(3, 'x'.repeat(1000))]
    const cache = new SegmentCache(estimateMessagesBytes(a) + 10)
    assert.equal(cache.keep(0, a), true)
    assert.equal(cache.keep(1, b), false)
    assert.equal(cache.spilled, 1)
    assert.equal(cache.take(1), undefined)
    assert.deepEqual(cache.take(0), a)
    assert.equal(cache.usedBytes, 0)
    assert.equal(cache.take(0), undefined)
    assert.equal(new SegmentCache(0).keep(0, a), false)
  })

  it('estimates a kept message by its id and text, 1 byte a character when ASCII and 2 otherwise', () => {
    const base = estimateMessagesBytes([msg(1, '')])
    assert.equal(estimateMessagesBytes([msg(1, 'a'.repeat(100))]) - base, 100)
    assert.equal(estimateMessagesBytes([msg(1, 'é'.repeat(100))]) - base, 200)
    assert.equal(estimateMessagesBytes([msg(1, 'a'.repeat(99) + '🙂')]) - base, 2 * 101)
    assert.equal(estimateMessagesBytes([msg(1, 'x'), msg(2, 'x')]), 2 * estimateMessagesBytes([msg(1, 'x')]))
  })

  it('sizes the default budgets from the V8 heap limit: a 32nd of it, at most the defaults', () => {
    assert.equal(defaultSegmentCacheBytes(4096 * 2 ** 20), DEFAULT_SEGMENT_CACHE_BYTES)
    assert.equal(defaultSegmentCacheBytes(256 * 2 ** 20), 8 * 2 ** 20)
    assert.equal(defaultCacheBytes(4096 * 2 ** 20), DEFAULT_CACHE_BYTES)
    assert.equal(defaultCacheBytes(256 * 2 ** 20), 8 * 2 ** 20)
    assert.ok(new SegmentCache().budget <= DEFAULT_SEGMENT_CACHE_BYTES)
  })

  describe('with a real bundle', () => {
    let devnet: Devnet
    let chain: RegistryClient
    let alice: Owner
    let file: string
    const dirs = new Dirs()
    before(async () => {
      devnet = await startDevnet()
      chain = new RegistryClient(devnet.profile)
      alice = await makeOwner(devnet.profile, { messages: 900, conversations: 4, seed: 31 })
      file = (await alice.backup(1)).file
    })
    after(async () => {
      chain?.close()
      await alice?.cleanup()
      await dirs.cleanup()
      await devnet?.stop()
    })

    for (const [name, budget] of [['nothing kept (every segment decrypted again)', 0], ['a budget smaller than the bundle (some kept, some spilled)', 60_000], ['the default budget (all kept)', undefined]] as const) {
      it(`restores the same history with ${name}`, async () => {
        const expected = await alice.messages()
        const dataDir = join(await dirs.make(), 'device')
        const source = await openCarSource(file)
        try {
          // a store path given: the import follows the verify pass (into an empty dir with the store in its
          // usual place the segments are imported as they verify, and nothing is kept)
          const res = await restoreBackup({ dataDir, storePath: join(dataDir, 'store'), password: PASSWORD, scryptN: 1024, source, chain, phrase: alice.phrase, batchSize: 100, ...(budget !== undefined ? { segmentCacheBytes: budget } : {}) })
          assert.equal(res.ok, true)
          assert.equal(res.messages, 900)
          assert.equal(res.imported, 900)
        } finally {
          await source.close()
        }
        assert.deepEqual(await restoredMessages(dataDir), expected)
      })
    }
  })
})
