import assert from 'node:assert/strict'
import { on } from 'node:events'
import { Worker } from 'node:worker_threads'
import { buildBackup } from '../../src/backup/index.ts'
import { rawCid } from '../../src/backup/blocks.ts'
import { seal } from '../../src/backup/seal.ts'
import { RawCids, SegmentSealer } from '../../src/backup/sealer.ts'
import { sharedSecret } from '../../src/util/worker-secret.ts'
import { sha256 } from '../../src/crypto/index.ts'
import { encodeSealEntry, sealCacheKey } from '../../src/backup/seal-cache.ts'
import type { SealedSegment } from '../../src/backup/sealer.ts'
import { KEY, OWNER, makeEnv, makeHistory, prng } from './helpers.ts'

/** plaintexts from a few bytes to 300 KB, text-like (compressible) and random */
function plaintexts (): Uint8Array[] {
  const rnd = prng(11)
  const out: Uint8Array[] = []
  for (const size of [1, 700, 5000, 11_000, 40_000, 300_000]) {
    const text = new Uint8Array(size)
    for (let i = 0; i < size; i++) text[i] = 0x61 + Math.floor(rnd() * 6)
    const noise = new Uint8Array(size)
    for (let i = 0; i < size; i++) noise[i] = Math.floor(rnd() * 256)
    out.push(text, noise)
  }
  return out
}

function assertSealed (got: SealedSegment[], plains: Uint8Array[]): void {
  for (let i = 0; i < plains.length; i++) {
    const box = seal(KEY, 'segment', plains[i])
    assert.deepEqual(Buffer.from(got[i].box), Buffer.from(box), `box ${i}`)
    assert.ok(got[i].cid.equals(rawCid(box)), `cid ${i}`)
  }
}

describe('backup: segments sealed on a worker thread (src/backup/sealer.ts)', function () {
  this.timeout(60_000)

  it('the worker gives the same boxes and CIDs as seal() on this thread', async () => {
    const plains = plaintexts()
    const sealer = new SegmentSealer(KEY, { workerAfter: 0, maxQueued: 64 })
    try {
      // sealed here until the worker is ready (polled, with a deadline), then by it; a segment sealed
      // here is sealed at once, so the loop gives the event loop a turn to hear the worker's 'ready'
      const deadline = Date.now() + 30_000
      while (sealer.byWorker === 0) {
        assert.ok(Date.now() < deadline, 'the worker sealed nothing within 30 s')
        assertSealed(await Promise.all(plains.map(p => sealer.seal(p))), plains)
        await new Promise(resolve => setTimeout(resolve, 5))
      }
      assert.equal(sealer.ready, true)
      const before = sealer.byWorker
      assertSealed(await Promise.all(plains.map(p => sealer.seal(p))), plains)
      assert.equal(sealer.byWorker - before, plains.length, 'all of them by the worker')
    } finally {
      await sealer.close()
    }
    assert.equal(sealer.ready, false)
    await assert.rejects(sealer.seal(plains[0]))
  })

  it('raw CIDs are rawCid()\'s, their bytes, multihash and digest views of slabs shared by many', () => {
    const cids = new RawCids()
    const made = []
    for (let i = 0; i < 2100; i++) { // past two slabs
      const block = Uint8Array.of(i & 0xff, i >> 8, 7)
      const cid = cids.of(sha256(block))
      const want = rawCid(block)
      assert.ok(cid.equals(want), `cid ${i}`)
      assert.equal(cid.toString(), want.toString())
      assert.deepEqual(Buffer.from(cid.multihash.bytes), Buffer.from(want.multihash.bytes))
      assert.deepEqual(Buffer.from(cid.multihash.digest), Buffer.from(want.multihash.digest))
      assert.equal(cid.multihash.bytes.buffer, cid.bytes.buffer)
      assert.equal(cid.multihash.digest.buffer, cid.bytes.buffer)
      made.push(cid)
    }
    assert.equal(made[0].bytes.buffer, made[1000].bytes.buffer, 'one slab for many CIDs')
    assert.ok(made[0].bytes.buffer.byteLength >= 36 * 1000)
    assert.notEqual(made[0].bytes.buffer, made[2099].bytes.buffer)
    assert.ok(made[0].equals(rawCid(Uint8Array.of(0, 0, 7))), 'earlier CIDs unchanged by later ones')
    assert.throws(() => cids.of(new Uint8Array(31)))
  })

  it('warm() starts the worker before the first segment; never with workerAfter Infinity', async () => {
    const plains = plaintexts()
    const warm = new SegmentSealer(KEY)
    const never = new SegmentSealer(KEY, { workerAfter: Infinity })
    try {
      warm.warm()
      never.warm()
      const deadline = Date.now() + 30_000
      while (!warm.ready) {
        assert.ok(Date.now() < deadline, 'the worker was not ready within 30 s')
        await new Promise(resolve => setTimeout(resolve, 5))
      }
      assertSealed(await Promise.all(plains.slice(0, 4).map(p => warm.seal(p))), plains.slice(0, 4))
      assert.equal(warm.byWorker, 4)
      assertSealed(await Promise.all(plains.map(p => never.seal(p))), plains)
      assert.equal(never.ready, false)
      assert.equal(never.byWorker, 0)
    } finally {
      await warm.close()
      await never.close()
    }
  })

  it('the worker wipes the shared copy of the key once it has imported it, and still seals with it', async () => {
    const key = sharedSecret(KEY)
    const worker = new Worker(new URL('../../src/backup/seal-worker.ts', import.meta.url), { workerData: { key } })
    try {
      const replies = on(worker, 'message')
      assert.deepEqual((await replies.next()).value, [{ ready: true }])
      assert.ok(key.every(b => b === 0), 'wiped')
      const plain = new TextEncoder().encode('a segment')
      worker.postMessage({ id: 1, plain })
      const [reply] = (await replies.next()).value as [{ box: Uint8Array }]
      assert.deepEqual(Buffer.from(reply.box), Buffer.from(seal(KEY, 'segment', plain)))
    } finally {
      await worker.terminate()
    }
  })

  it('a worker that cannot start costs only speed: everything is sealed here, the same', async () => {
    const plains = plaintexts()
    const sealer = new SegmentSealer(KEY, { workerAfter: 0, workerUrl: new URL('./no-such-worker.ts', import.meta.url) })
    try {
      for (let round = 0; round < 3; round++) assertSealed(await Promise.all(plains.map(p => sealer.seal(p))), plains)
      assert.equal(sealer.byWorker, 0)
    } finally {
      await sealer.close()
    }
  })

  it('asked for, the worker also makes the seal-cache key and entry (those made here); it seals manifest shards too', async () => {
    const plains = plaintexts()
    const sealer = new SegmentSealer(KEY, { workerAfter: 0, maxQueued: 64 })
    try {
      sealer.warm()
      const deadline = Date.now() + 30_000
      while (!sealer.ready) {
        assert.ok(Date.now() < deadline, 'the worker was not ready within 30 s')
        await new Promise(resolve => setTimeout(resolve, 5))
      }
      const got = await Promise.all(plains.map(p => sealer.seal(p, 'segment', undefined, true)))
      assertSealed(got, plains)
      assert.equal(sealer.byWorker, plains.length)
      for (const [i, g] of got.entries()) {
        const k = sealCacheKey(KEY, 'segment', plains[i])
        assert.equal(g.cacheKey, k, `key ${i}`)
        assert.deepEqual(Buffer.from(g.cacheEntry as Uint8Array), Buffer.from(encodeSealEntry(KEY, k, g.cid, g.box.length)), `entry ${i}`)
      }
      // not asked for: none
      assert.equal((await sealer.seal(plains[0])).cacheKey, undefined)
      const shards = await Promise.all(plains.map(p => sealer.seal(p, 'shard', Infinity)))
      for (const [i, g] of shards.entries()) assert.deepEqual(Buffer.from(g.box), Buffer.from(seal(KEY, 'shard', plains[i])), `shard ${i}`)
    } finally {
      await sealer.close()
    }
  })

  it('a build with its segments sealed on a worker thread fills the seal cache as one on this thread', async () => {
    const env = await makeEnv()
    try {
      await env.store.addMessages(makeHistory({ conversations: 8, messages: 2400, seed: 5 }))
      const cacheOf = (): { map: Map<string, Uint8Array>, get: (k: string) => Promise<Uint8Array | undefined>, putMany: (e: Array<[string, Uint8Array]>) => Promise<void> } => {
        const map = new Map<string, Uint8Array>()
        return { map, get: async k => map.get(k), putMany: async e => { for (const [k, v] of e) map.set(k, v) } }
      }
      const here = cacheOf()
      const worker = cacheOf()
      const build = async (sealWorkerAfter: number, sealCache: ReturnType<typeof cacheOf>): Promise<Awaited<ReturnType<typeof buildBackup>>> =>
        await buildBackup({ store: env.store, blockstore: env.blockstore, owner: OWNER, version: 1, backupKey: KEY, segmentSize: 16, created: 1_700_000_000_000, sealWorkerAfter, sealCache })
      const a = await build(Infinity, here)
      const b = await build(0, worker)
      assert.equal(b.root.toString(), a.root.toString())
      assert.equal(worker.map.size, here.map.size)
      assert.ok(here.map.size >= a.segments - 1)
      for (const [k, v] of here.map) assert.deepEqual(Buffer.from(worker.map.get(k) ?? []), Buffer.from(v), k)
    } finally {
      await env.cleanup()
    }
  })

  it('a build with its segments sealed on a worker thread is the same bundle, byte for byte', async () => {
    const env = await makeEnv()
    try {
      await env.store.addMessages(makeHistory({ conversations: 8, messages: 2400, seed: 5 }))
      const build = async (sealWorkerAfter: number): Promise<Awaited<ReturnType<typeof buildBackup>>> =>
        await buildBackup({ store: env.store, blockstore: env.blockstore, owner: OWNER, version: 1, backupKey: KEY, segmentSize: 16, created: 1_700_000_000_000, sealWorkerAfter })
      const here = await build(Infinity)
      const worker = await build(0)
      assert.equal(worker.root.toString(), here.root.toString())
      assert.equal(worker.bytesTotal, here.bytesTotal)
      assert.equal(worker.segments, here.segments)
    } finally {
      await env.cleanup()
    }
  })
})
