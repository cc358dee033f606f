import assert from 'node:assert/strict'
import { join } from 'node:path'
import type { CID } from 'multiformats/cid'
import { rawCid } from '../../src/backup/blocks.ts'
import { buildBackup } from '../../src/backup/index.ts'
import { WrittenBlocks } from '../../src/backup/job/written.ts'
import { dagBlocks, dagLinks, getBlock } from '../../src/p2p/index.ts'
import type { P2PNode } from '../../src/p2p/index.ts'
import type { DagSource } from '../../src/p2p/local-pins.ts'
import { openStore } from '../../src/store/index.ts'
import type { Store } from '../../src/store/index.ts'
import { Harness } from '../p2p/helpers.ts'
import { KEY, OWNER, attachmentCidFor, makeHistory } from './helpers.ts'

/** Every block under `root`, read from the node's own blockstore only. */
async function dagOf (node: P2PNode, root: CID): Promise<CID[]> {
  const out: CID[] = []
  const seen = new Set<string>([root.toString()])
  const queue = [root]
  while (queue.length > 0) {
    const cid = queue.shift() as CID
    out.push(cid)
    const bytes = await getBlock(node.helia.blockstore, cid, { offline: true } as { signal?: AbortSignal })
    for (const l of dagLinks(cid, bytes)) {
      if (!seen.has(l.toString())) { seen.add(l.toString()); queue.push(l) }
    }
  }
  return out
}

async function drain (it: AsyncIterable<unknown>): Promise<number> {
  let n = 0
  for await (const _ of it) n++
  return n
}

describe('backup job: batched block writes and the pin walk', function () {
  this.timeout(60_000)
  const h = new Harness()
  let store: Store | undefined
  afterEach(async () => {
    await store?.close()
    store = undefined
    await h.cleanup()
  })

  it('localBlocks().putBatch writes blocks that Helia reads back', async () => {
    const node = await h.node()
    const blocks = [1, 2, 3].map(i => { const bytes = new TextEncoder().encode(`block ${i}`); return { cid: rawCid(bytes), bytes } })
    const local = node.localBlocks()
    assert.equal(await local.has(blocks[0].cid), false)
    await local.putBatch(blocks)
    for (const b of blocks) {
      assert.equal(await local.has(b.cid), true)
      assert.equal(await node.helia.blockstore.has(b.cid), true)
      assert.deepEqual(await getBlock(node.helia.blockstore, b.cid, { offline: true } as { signal?: AbortSignal }), b.bytes)
    }
    // hasMany: stored, absent, and (through WrittenBlocks) queued but not written yet
    const absent = rawCid(Uint8Array.of(7, 7))
    const queued = rawCid(Uint8Array.of(8, 8))
    assert.deepEqual(await local.hasMany([blocks[0].cid, absent, blocks[2].cid]), [true, false, true])
    const written = new WrittenBlocks(node.helia.blockstore, { local })
    await written.put(queued, Uint8Array.of(8, 8))
    assert.deepEqual(await written.hasMany([absent, queued, blocks[1].cid]), [false, true, true])
    written.clear()
  })

  it('batched puts count new bytes like Helia\'s put; the pin covers the whole DAG (attachments too), is listed and survives GC', async () => {
    const node = await h.node()
    store = await openStore(join(await h.dir(), 'store'))
    const history = makeHistory({ conversations: 12, messages: 600, attachments: 0.05 })
    for (const m of history) {
      if (m.attachment === undefined) continue
      const bytes = new TextEncoder().encode(`encrypted attachment of ${m.id}`)
      const cid = await attachmentCidFor(bytes)
      await node.helia.blockstore.put(cid, bytes)
      m.attachment.cid = cid.toString()
    }
    await store.addMessages(history)

    // a small budget: the walk takes some blocks from memory and reads the others back
    const written = new WrittenBlocks(node.helia.blockstore, { local: node.localBlocks(), budgetBytes: 4096 })
    const v1 = await buildBackup({ store, blockstore: written, owner: OWNER, version: 1, backupKey: KEY, segmentSize: 16 })
    assert.ok(v1.blocks > 20 && v1.attachments > 0)
    assert.equal(v1.bytesNew, v1.bytesTotal, 'every block of a first version is new')
    await written.flush()
    const pinned = await drain(node.helia.pins.add(v1.root, { metadata: { tokenimBackupVersion: 1 }, walker: written.walker() }))
    written.clear()

    const dag = await dagOf(node, v1.root)
    assert.equal(dag.length, v1.blocks + v1.attachments)
    assert.equal(pinned, dag.length, 'each block recorded once')
    for (const cid of dag) assert.equal(await node.helia.pins.isPinned(cid), true, `${cid.toString()} pinned`)
    const pins = []
    for await (const p of node.helia.pins.ls()) pins.push(p)
    assert.deepEqual(pins.map(p => [p.cid.toString(), p.depth, p.metadata.tokenimBackupVersion]), [[v1.root.toString(), Infinity, 1]])

    // blocks nothing pins go; the version stays whole
    const stray = new TextEncoder().encode('unpinned')
    await node.localBlocks().putBatch([{ cid: rawCid(stray), bytes: stray }])
    await node.helia.gc()
    assert.equal(await node.helia.blockstore.has(rawCid(stray)), false)
    assert.equal((await dagOf(node, v1.root)).length, dag.length)

    // the next version of the same store: its unchanged blocks are duplicates, as with Helia's put
    const again = new WrittenBlocks(node.helia.blockstore, { local: node.localBlocks() })
    const v2 = await buildBackup({ store, blockstore: again, owner: OWNER, version: 2, backupKey: KEY, segmentSize: 16, prevRoot: v1.root })
    await again.flush()
    assert.ok(v2.blocksNew <= v2.blocks - v1.segments, `${v2.blocksNew} new of ${v2.blocks}`)
    assert.ok(v2.bytesNew < v2.bytesTotal / 4)

    // pinned with the pin records held and written as one batch: the same records as above
    await node.datastoreBatch(async () => { await drain(node.helia.pins.add(v2.root, { walker: again.walker() })) })
    const dag2 = await dagOf(node, v2.root)
    for (const cid of dag2) assert.equal(await node.helia.pins.isPinned(cid), true, `${cid.toString()} pinned`)
    for await (const _ of node.helia.pins.rm(v1.root)) { /* drain */ }
    await node.helia.gc()
    assert.equal((await dagOf(node, v2.root)).length, dag2.length)
    const listed = []
    for await (const p of node.helia.pins.ls()) listed.push(p.cid.toString())
    assert.deepEqual(listed, [v2.root.toString()])
  })

  it('the next version\'s bulk pin takes every manifest node from memory (new or found stored), reads no segment and asks level for none', async () => {
    const node = await h.node()
    store = await openStore(join(await h.dir(), 'store'))
    await store.addMessages(makeHistory({ conversations: 12, messages: 600 }))
    const first = new WrittenBlocks(node.helia.blockstore, { local: node.localBlocks() })
    const v1 = await buildBackup({ store, blockstore: first, owner: OWNER, version: 1, backupKey: KEY, segmentSize: 16 })
    await first.flush()
    const pins = node.localPins()
    assert.ok(pins !== undefined)
    await pins.add(v1.root, { metadata: { tokenimBackupVersion: 1 }, known: first.known() })
    first.clear()

    await store.addMessages(makeHistory({ conversations: 2, messages: 20, seed: 7, start: 1_900_000_000_000 }))
    const again = new WrittenBlocks(node.helia.blockstore, { local: node.localBlocks() })
    const v2 = await buildBackup({ store, blockstore: again, owner: OWNER, version: 2, backupKey: KEY, segmentSize: 16, prevRoot: v1.root })
    await again.flush()
    const reads: CID[] = []
    const source: DagSource = {
      getMany: async (cids) => { reads.push(...cids); return cids.map(() => undefined) },
      hasMany: async (cids) => { reads.push(...cids); return await Promise.all(cids.map(async c => await node.helia.blockstore.has(c))) },
      get: async (cid) => { reads.push(cid); throw new Error('not stored?') },
      getCodec: async (code) => await node.helia.getCodec(code)
    }
    const walked = await dagBlocks(v2.root, source, { known: again.known(), checkLeaves: true })
    assert.deepEqual(reads, [], 'nothing read back, nothing asked for: the job wrote or found every block')
    assert.deepEqual(walked.map(String).sort(), (await dagOf(node, v2.root)).map(String).sort())
    assert.ok(v2.blocksNew < walked.length / 2, 'most of the version was stored before')

    assert.ok(again.known().bytes(v2.root) !== undefined, 'the root is kept for the pin walk')
    await pins.add(v2.root, { metadata: { tokenimBackupVersion: 2 }, known: again.known() })
    // the pin dropped them once its walk was done (not held while it wrote its records)
    assert.equal(again.known().bytes(v2.root), undefined)
    assert.equal(again.known().has?.(v2.root), false)
    await pins.rm(v1.root)
    await node.helia.gc()
    assert.equal((await dagOf(node, v2.root)).length, walked.length)
    for (const cid of walked) assert.equal(await node.helia.pins.isPinned(cid), true)
  })

  it('datastoreBatch holds pin records until its end (reads see them), other keys go through', async () => {
    const node = await h.node()
    const ds = node.helia.datastore as unknown as { put: (k: unknown, v: Uint8Array) => Promise<unknown>, get: (k: unknown) => Promise<Uint8Array>, has: (k: unknown) => Promise<boolean>, delete: (k: unknown) => Promise<void>, db: { get: (k: string) => Promise<Uint8Array | undefined> } }
    // a datastore key is used through its toString()
    const key = (k: string): { toString: () => string } => ({ toString: () => k })
    const raw = async (k: string): Promise<number[] | undefined> => { const v = await ds.db.get(k); return v === undefined ? undefined : [...v] }
    const pinKey = key('/pinned-block/TEST')
    const other = key('/peers/TEST')
    await node.datastoreBatch(async () => {
      await ds.put(pinKey, Uint8Array.of(1))
      await ds.put(other, Uint8Array.of(2))
      assert.deepEqual([...await ds.get(pinKey)], [1])
      assert.equal(await ds.has(pinKey), true)
      assert.equal(await raw(pinKey.toString()), undefined, 'held')
      assert.deepEqual(await raw(other.toString()), [2], 'written at once')
      await ds.delete(pinKey)
      assert.equal(await ds.has(pinKey), false)
      await ds.put(pinKey, Uint8Array.of(3))
    })
    assert.deepEqual(await raw(pinKey.toString()), [3])
    await assert.rejects(node.datastoreBatch(async () => { await ds.put(key('/pin/X'), Uint8Array.of(4)); throw new Error('boom') }), /boom/)
    assert.deepEqual(await raw('/pin/X'), [4], 'written also when the work failed')
  })

  it('datastoreBatch: a held delete hides the record already on disk (unpin and pin again inside one stretch)', async () => {
    const node = await h.node()
    const bytes = new TextEncoder().encode('pinned before the stretch')
    const cid = rawCid(bytes)
    await node.localBlocks().putBatch([{ cid, bytes }])
    await drain(node.helia.pins.add(cid))
    await node.datastoreBatch(async () => {
      await drain(node.helia.pins.rm(cid))
      assert.equal(await node.helia.pins.isPinned(cid), false, 'unpinned in the stretch')
      // Helia refuses to pin what it believes is pinned (it asks has() of the pin record)
      await drain(node.helia.pins.add(cid, { metadata: { again: true } }))
    })
    const pins = []
    for await (const p of node.helia.pins.ls()) pins.push([p.cid.toString(), p.metadata.again])
    assert.deepEqual(pins, [[cid.toString(), true]])
    assert.equal(await node.helia.pins.isPinned(cid), true)
  })

  it('a failed batch fails the put or the flush, and nothing vouches for its blocks', async () => {
    const node = await h.node()
    const broken = { has: async () => false, putBatch: async () => { throw new Error('ENOSPC: no space left on device') } }
    const written = new WrittenBlocks(node.helia.blockstore, { local: broken })
    const bytes = new TextEncoder().encode('never written')
    await written.put(rawCid(bytes), bytes)
    await assert.rejects(written.flush(), (err: Error & { code?: string }) => err.code === 'DISK_FULL')
    await assert.rejects(written.flush(), (err: Error & { code?: string }) => err.code === 'DISK_FULL')
    assert.equal(await node.helia.blockstore.has(rawCid(bytes)), false)
    // the wrapper no longer answers for it either (a has() is what makes a later put skip a block)
    assert.equal(await written.has(rawCid(bytes)), false)
    assert.equal(written.written(rawCid(bytes)), undefined)
  })
})
