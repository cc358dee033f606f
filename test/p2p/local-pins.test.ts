import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import { base36 } from 'multiformats/bases/base36'
import { CID } from 'multiformats/cid'
import { identity } from 'multiformats/hashes/identity'
import { sha256 } from 'multiformats/hashes/sha2'
import { isTokenimError } from '../../src/errors.ts'
import { dagBlocks, getBlock } from '../../src/p2p/index.ts'
import type { LocalPins, P2PNode } from '../../src/p2p/index.ts'
import { base36Text } from '../../src/p2p/local-pins.ts'
import type { DagSource } from '../../src/p2p/local-pins.ts'
import { Harness } from './helpers.ts'

interface Block { cid: CID, bytes: Uint8Array }

async function raw (text: string): Promise<Block> {
  const bytes = new TextEncoder().encode(text)
  return { cid: CID.createV1(0x55, await sha256.digest(bytes)), bytes }
}

async function node (value: unknown): Promise<Block> {
  const bytes = dagCbor.encode(value)
  return { cid: CID.createV1(dagCbor.code, await sha256.digest(bytes)), bytes }
}

/**
 * Two versions sharing blocks: S (a node) and L3 in both, L3 linked twice in v1 (the same block under two
 * names), L6 twice in v2's node T, an identity-hash leaf in v1 (never stored), L4 only in v1, L5 only in v2.
 */
async function versions (): Promise<{ blocks: Block[], r1: CID, r2: CID, s: Block, only1: CID, only2: CID, shared: CID, twice2: CID }> {
  const [l1, l2, l3, l4, l5, l6] = await Promise.all([1, 2, 3, 4, 5, 6].map(async i => await raw(`leaf ${i}`)))
  const inline = CID.createV1(0x55, identity.digest(new TextEncoder().encode('inline')))
  const s = await node({ links: [l1.cid, l2.cid] })
  const t = await node({ x: l6.cid, y: l6.cid })
  const r1 = await node({ a: s.cid, b: [l3.cid, l4.cid], again: l3.cid, inline })
  const r2 = await node({ a: s.cid, b: [l3.cid, l5.cid], c: t.cid })
  return { blocks: [l1, l2, l3, l4, l5, l6, s, t, r1, r2], r1: r1.cid, r2: r2.cid, s, only1: l4.cid, only2: l5.cid, shared: l3.cid, twice2: l6.cid }
}

/** Helia's pin records as [key, hex], sorted */
async function records (n: P2PNode): Promise<Array<[string, string]>> {
  const out: Array<[string, string]> = []
  for await (const { key, value } of n.helia.datastore.query({ prefix: '/pin' })) out.push([key.toString(), Buffer.from(value).toString('hex')])
  return out.sort((a, b) => a[0] < b[0] ? -1 : 1)
}

async function drain (it: AsyncIterable<unknown>): Promise<number> {
  let n = 0
  for await (const _ of it) n++
  return n
}

async function listed (n: P2PNode): Promise<string[]> {
  const out: string[] = []
  for await (const p of n.helia.pins.ls()) out.push(p.cid.toString())
  return out.sort()
}

function pinsOf (n: P2PNode): LocalPins {
  const pins = n.localPins()
  assert.ok(pins !== undefined, 'level reads synchronously')
  return pins
}

describe('p2p: bulk pins in Helia\'s records (localPins)', function () {
  this.timeout(60_000)
  const h = new Harness()
  afterEach(async () => { await h.cleanup() })

  it('writes the same records, byte for byte, as helia.pins.add', async () => {
    const { blocks, r1, r2 } = await versions()
    const [a, b] = await Promise.all([h.node(), h.node()])
    for (const n of [a, b]) await n.localBlocks().putBatch(blocks)
    await drain(a.helia.pins.add(r1, { metadata: { tokenimBackupVersion: 1 } }))
    await drain(a.helia.pins.add(r2, { metadata: { tokenimBackupVersion: 2, note: 'x', ok: true } }))
    const pins = pinsOf(b)
    assert.equal(await pins.add(r1, { metadata: { tokenimBackupVersion: 1 } }), 7, 'r1, S, L3, L4, inline, L1, L2, each once')
    await pins.add(r2, { metadata: { tokenimBackupVersion: 2, note: 'x', ok: true } })
    const helia = await records(a)
    assert.ok(helia.length > 10)
    assert.deepEqual(await records(b), helia)
    const ls = []
    for await (const p of b.helia.pins.ls()) ls.push([p.cid.toString(), p.depth, p.metadata.tokenimBackupVersion])
    assert.deepEqual(ls.sort(), [[r1.toString(), Infinity, 1], [r2.toString(), Infinity, 2]].sort())
  })

  it('tells the caller once when its known blocks are no longer needed, after the walk and before the records', async () => {
    const { blocks, r1 } = await versions()
    const n = await h.node()
    await n.localBlocks().putBatch(blocks)
    const pins = pinsOf(n)
    const byKey = new Map(blocks.map(b => [b.cid.toString(), b.bytes]))
    const events: string[] = []
    const known = {
      bytes: (cid: CID) => { events.push('bytes'); return byKey.get(cid.toString()) },
      done: () => { events.push('done') }
    }
    assert.equal(await pins.add(r1, { known }), 7)
    assert.equal(events.filter(e => e === 'done').length, 1)
    assert.equal(events[events.length - 1], 'done', 'no block asked for after it')
    assert.equal(await n.helia.pins.isPinned(r1), true)
  })

  it('walks each block once; takes the linked blocks from memory, else one read per level; reads no raw block, asks in bulk whether they are stored', async () => {
    const { blocks, r1, s } = await versions()
    const n = await h.node()
    await n.localBlocks().putBatch(blocks)
    const asked: { getMany: string[][], hasMany: string[][], get: string[] } = { getMany: [], hasMany: [], get: [] }
    const source: DagSource = {
      getMany: async (cids) => {
        asked.getMany.push(cids.map(String))
        return await Promise.all(cids.map(async c => await getBlock(n.helia.blockstore, c, { offline: true } as { signal?: AbortSignal })))
      },
      hasMany: async (cids) => { asked.hasMany.push(cids.map(String)); return await Promise.all(cids.map(async c => await n.helia.blockstore.has(c))) },
      get: async (cid) => { asked.get.push(cid.toString()); throw new Error('not asked for stored blocks') },
      getCodec: async (code) => await n.helia.getCodec(code)
    }
    const inline = CID.createV1(0x55, identity.digest(new TextEncoder().encode('inline')))
    const [l1, l2, l3, l4] = blocks.map(b => b.cid.toString())
    const expected = [r1.toString(), s.cid.toString(), l3, l4, inline.toString(), l1, l2]
    const walked = await dagBlocks(r1, source, { checkLeaves: true })
    assert.deepEqual(walked.map(String), expected)
    assert.deepEqual(asked, { getMany: [[r1.toString()], [s.cid.toString()]], hasMany: [[l3, l4], [l1, l2]], get: [] })

    // the nodes known: no read at all; without checkLeaves (an unpin) not even the leaves are asked for
    asked.getMany = []
    asked.hasMany = []
    const nodes = new Map(blocks.filter(b => b.cid.code !== 0x55).map(b => [b.cid.toString(), b.bytes]))
    assert.deepEqual((await dagBlocks(r1, source, { known: { bytes: (cid) => nodes.get(cid.toString()) } })).map(String), expected)
    assert.deepEqual(asked, { getMany: [], hasMany: [], get: [] })
    // leaves the caller vouches for are not asked for either
    const vouched = new Set([l1, l3, l4])
    await dagBlocks(r1, source, { checkLeaves: true, known: { bytes: (cid) => nodes.get(cid.toString()), has: (cid) => vouched.has(cid.toString()) } })
    assert.deepEqual(asked, { getMany: [], hasMany: [[l2]], get: [] })
  })

  it('unpins in one batch: the blocks another version pins stay pinned (also one the old version linked twice) and survive GC', async () => {
    const { blocks, r1, r2, s, only1, only2, shared, twice2 } = await versions()
    const n = await h.node()
    await n.localBlocks().putBatch(blocks)
    const pins = pinsOf(n)
    await pins.add(r1)
    await pins.add(r2)
    assert.equal(await pins.rm(r1), 7)
    assert.deepEqual(await listed(n), [r2.toString()])
    for (const cid of [r2, s.cid, shared, only2, twice2]) assert.equal(await n.helia.pins.isPinned(cid), true, cid.toString())
    for (const cid of [r1, only1]) assert.equal(await n.helia.pins.isPinned(cid), false, cid.toString())
    await n.helia.gc()
    for (const cid of [r2, s.cid, shared, only2, twice2]) assert.ok(await getBlock(n.helia.blockstore, cid, { offline: true } as { signal?: AbortSignal }), cid.toString())
    for (const cid of [r1, only1]) assert.equal(await n.helia.blockstore.has(cid), false, `${cid.toString()} collected`)
    // the last pin gone: no record is left
    await pins.rm(r2)
    assert.deepEqual(await records(n), [])
  })

  it('a record is per multihash: two CIDs of the same bytes in one DAG count once', async () => {
    const n = await h.node()
    const bytes = dagCbor.encode({ x: 1 })
    const digest = await sha256.digest(bytes)
    const asRaw = CID.createV1(0x55, digest)
    const asCbor = CID.createV1(dagCbor.code, digest)
    const both = await node({ a: asRaw, b: asCbor })
    const one = await node({ c: asRaw })
    await n.localBlocks().putBatch([{ cid: asRaw, bytes }, both, one])
    const pins = pinsOf(n)
    await pins.add(both.cid)
    await pins.add(one.cid)
    await pins.rm(both.cid)
    assert.equal(await n.helia.pins.isPinned(asRaw), true, 'still pinned by the other root')
    await pins.rm(one.cid)
    assert.deepEqual(await records(n), [])
  })

  it('works with Helia\'s own pins: Helia unpins a bulk pin and the other way round, leaving no record', async () => {
    const { blocks, s } = await versions()
    const n = await h.node()
    await n.localBlocks().putBatch(blocks)
    const pins = pinsOf(n)
    await pins.add(s.cid)
    assert.equal(await drain(n.helia.pins.rm(s.cid)), 3)
    assert.deepEqual(await records(n), [])
    await drain(n.helia.pins.add(s.cid, { metadata: { by: 'helia' } }))
    await pins.rm(s.cid)
    assert.deepEqual(await records(n), [])
    assert.deepEqual(await listed(n), [])
  })

  it('a root pinned again after Helia unpinned it counts on every block (Helia\'s rm leaves it in pinnedBy): the other pin\'s unpin keeps them', async () => {
    // (not L3: r1 links it twice, and Helia's rm then takes both versions' counts off it)
    const { blocks, r1, r2, s } = await versions()
    const leaf = (dagCbor.decode(s.bytes) as { links: CID[] }).links[0]
    const n = await h.node()
    await n.localBlocks().putBatch(blocks)
    const pins = pinsOf(n)
    await pins.add(r1)
    await pins.add(r2)
    // Helia's own rm (the fallback without bulk pins, and every unpin before them) leaves [r1] as pinnedBy
    await drain(n.helia.pins.rm(r1))
    await pins.add(r1)
    await pins.rm(r2)
    for (const cid of [r1, s.cid, leaf]) assert.equal(await n.helia.pins.isPinned(cid), true, cid.toString())
    await n.helia.gc()
    for (const cid of [r1, s.cid, leaf]) assert.ok(await getBlock(n.helia.blockstore, cid, { offline: true } as { signal?: AbortSignal }), cid.toString())
    await pins.rm(r1)
    assert.deepEqual(await records(n), [])
  })

  it('ALREADY_PINNED and NOT_PINNED; a pin whose block is missing fails and records nothing', async () => {
    const { blocks, s } = await versions()
    const n = await h.node()
    const pins = pinsOf(n)
    await assert.rejects(pins.rm(s.cid), (err: unknown) => isTokenimError(err, 'NOT_PINNED'))
    // S's second leaf is not stored: asked of Helia's blockstore as its own walk would, with nobody to ask
    await n.localBlocks().putBatch(blocks.filter(b => !b.cid.equals(blocks[1].cid)))
    await assert.rejects(pins.add(s.cid, { signal: AbortSignal.timeout(300) }))
    assert.deepEqual(await records(n), [])
    // a record that does not decode: the pin fails as a whole, nothing of it is written
    const { pinnedBlockKey } = await import('../../src/p2p/index.ts')
    const ds = n.helia.datastore
    await ds.put({ toString: () => pinnedBlockKey(blocks[3].cid) } as unknown as Parameters<typeof ds.put>[0], Uint8Array.of(0xff))
    const before = await records(n)
    await assert.rejects(pins.add(blocks[3].cid))
    const u = await node({ p: blocks[2].cid, q: blocks[3].cid, r: blocks[4].cid })
    await n.localBlocks().putBatch([u])
    await assert.rejects(pins.add(u.cid))
    assert.deepEqual(await records(n), before)
    const l3 = blocks[2].cid
    assert.equal(await pins.add(l3), 1)
    await assert.rejects(pins.add(l3), (err: unknown) => isTokenimError(err, 'ALREADY_PINNED'))
  })

  it('keys: base36Text is multiformats\' base36.encode (leading zeros, empty, random multihashes)', () => {
    const inputs = [new Uint8Array(0), Uint8Array.of(0), Uint8Array.of(0, 0, 1), Uint8Array.of(0, 0x12, 0x20, 0), Uint8Array.of(255, 0)]
    for (let i = 0; i < 500; i++) inputs.push(Uint8Array.from(randomBytes(1 + (i % 40)), (b, j) => j < i % 3 ? 0 : b))
    for (const b of inputs) assert.equal(base36Text(b), base36.encode(b), Buffer.from(b).toString('hex'))
  })

  it('held pin records stay readable while their batch is written, and a later write lands after it', async () => {
    const n = await h.node()
    const ds = n.helia.datastore
    const key = { toString: () => '/pinned-block/TEST' } as unknown as Parameters<typeof ds.put>[0]
    for (let round = 0; round < 20; round++) {
      let inside = false
      const stretch = n.datastoreBatch(async () => { await ds.put(key, Uint8Array.of(1, round)); inside = true })
      // once the stretch's work is done its batch is being written: the record must never vanish meanwhile
      while (!inside) await Promise.resolve()
      const after = ds.put(key, Uint8Array.of(2, round))
      let settled = false
      void stretch.finally(() => { settled = true })
      while (!settled) {
        assert.equal(await ds.has(key), true, 'visible during the write')
        await new Promise(resolve => setImmediate(resolve))
      }
      await after
      assert.deepEqual([...await ds.get(key)], [2, round], 'the later put is not overwritten by the batch')
    }
  })
})
