import assert from 'node:assert/strict'
import { buildBackup } from '../../src/backup/index.ts'
import type { SealCache } from '../../src/backup/index.ts'
import { rawCid } from '../../src/backup/blocks.ts'
import { encodeSealEntry } from '../../src/backup/seal-cache.ts'
import { KEY, OTHER_KEY, OWNER, makeEnv, makeHistory } from './helpers.ts'
import type { Env } from './helpers.ts'

/** an in-memory seal cache that counts what the builder asks and finds */
function memoryCache (): SealCache & { map: Map<string, Uint8Array>, gets: number } {
  const map = new Map<string, Uint8Array>()
  const c = {
    map,
    gets: 0,
    get: async (k: string) => { c.gets++; return map.get(k) },
    putMany: async (entries: Array<[string, Uint8Array]>) => { for (const [k, v] of entries) map.set(k, v) }
  }
  return c
}

describe('backup: the seal cache (src/backup/seal-cache.ts)', function () {
  this.timeout(60_000)
  let env: Env
  beforeEach(async () => { env = await makeEnv() })
  afterEach(async () => { await env.cleanup() })

  const build = async (version: number, o: { cache?: SealCache, key?: Uint8Array } = {}): Promise<Awaited<ReturnType<typeof buildBackup>>> =>
    await buildBackup({ store: env.store, blockstore: env.blockstore, owner: OWNER, version, backupKey: o.key ?? KEY, segmentSize: 32, created: 1_700_000_000_000 + version, ...(o.cache !== undefined ? { sealCache: o.cache } : {}) })

  it('an unchanged segment is taken from the cache: the same bundle, byte for byte, as sealing it again', async () => {
    await env.store.addMessages(makeHistory({ conversations: 6, messages: 600, seed: 3 }))
    const cache = memoryCache()
    const v1 = await build(1, { cache })
    assert.equal(cache.map.size, v1.segments, 'one entry per sealed segment')
    await env.store.addMessages(makeHistory({ conversations: 6, messages: 12, seed: 4, start: 1_800_000_000_000 }))
    const before = cache.map.size
    const cached = await build(2, { cache })
    const plain = await build(2)
    assert.equal(cached.root.toString(), plain.root.toString())
    assert.equal(cached.bytesTotal, plain.bytesTotal)
    // only the segments that changed were sealed (and entered)
    const sealed = cache.map.size - before
    assert.ok(sealed > 0 && sealed < cached.segments / 2, `${sealed} of ${cached.segments} segments sealed again`)
  })

  it('a damaged entry, an entry whose block is gone, or another key: sealed as if there were no cache', async () => {
    await env.store.addMessages(makeHistory({ conversations: 3, messages: 200, seed: 5 }))
    const cache = memoryCache()
    const v1 = await build(1, { cache })
    const reference = (await build(2)).root.toString()
    // every entry's tag damaged: none is used
    for (const [k, v] of cache.map) { const d = Uint8Array.from(v); d[6] ^= 1; cache.map.set(k, d) }
    const entries = cache.map.size
    assert.equal((await build(2, { cache })).root.toString(), reference)
    assert.equal(cache.map.size, entries, 'the damaged entries were replaced, under the same keys')
    // well-made entries naming blocks the blockstore does not have are not used either
    const gone = memoryCache()
    for (const k of cache.map.keys()) gone.map.set(k, encodeSealEntry(KEY, k, rawCid(Uint8Array.of(1, 2, 3)), 3))
    assert.equal((await build(2, { cache: gone })).root.toString(), reference)
    // another backup key (a passphrase) finds nothing: its keys differ
    const other = memoryCache()
    for (const [k, v] of cache.map) other.map.set(k, v)
    const withOther = await build(2, { cache: other, key: OTHER_KEY })
    assert.equal(other.map.size, cache.map.size + withOther.segments, 'every segment sealed under the other key')
    assert.equal(v1.segments, withOther.segments)
  })
})
