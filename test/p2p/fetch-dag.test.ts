import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import * as dagPb from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { isTokenimError } from '../../src/errors.ts'
import { dagLinks, fetchDag, getBlock } from '../../src/p2p/index.ts'
import type { FetchedBlock, P2PNode } from '../../src/p2p/index.ts'
import { Harness } from './helpers.ts'

async function put (node: P2PNode, code: number, bytes: Uint8Array): Promise<CID> {
  const cid = CID.createV1(code, await sha256.digest(bytes))
  await node.helia.blockstore.put(cid, bytes)
  return cid
}

/** Count the provider lookups that reach content routing (i.e. pass the fetchDag gate). */
function spyLookups (node: P2PNode): string[] {
  const asked: string[] = []
  const routing = node.helia.routing
  const inner = routing.findProviders
  routing.findProviders = async function * (cid, options) {
    asked.push(cid.toString())
    yield * inner.call(routing, cid, options)
  }
  return asked
}

describe('p2p fetchDag: whole DAGs over bitswap', function () {
  this.timeout(60_000)
  const h = new Harness()
  let a: P2PNode
  let b: P2PNode
  let lookups: string[]

  before(async () => {
    a = await h.node()
    b = await h.node({ bootstrap: [a.multiaddrs()[0].toString()] })
    await b.dial(a.multiaddrs()[0])
    lookups = spyLookups(b)
  })
  after(async () => { await h.cleanup() })

  it('fetches every block breadth-first from the connected peer, root first, with no DHT provider lookup', async () => {
    // root → 3 dag-cbor nodes → 40 raw leaves each (one leaf shared by two nodes)
    const leaves: CID[] = []
    for (let i = 0; i < 120; i++) leaves.push(await put(a, raw.code, randomBytes(2000 + i)))
    const mids: CID[] = []
    for (let i = 0; i < 3; i++) mids.push(await put(a, dagCbor.code, dagCbor.encode({ i, leaves: [...leaves.slice(i * 40, i * 40 + 40), leaves[0]] })))
    const root = await put(a, dagCbor.code, dagCbor.encode({ v: 1, mids }))

    const seen: FetchedBlock[] = []
    const progress: number[] = []
    const got = await fetchDag(b.helia.blockstore, root, {
      routing: b.helia.routing,
      concurrency: 16,
      onBlock: blk => { seen.push(blk) },
      onProgress: p => { progress.push(p.blocks) }
    })
    assert.equal(got.blocks, 1 + 3 + 120)
    assert.deepEqual(got.missing, [])
    assert.equal(got.localBlocks, 0)
    assert.ok(seen[0].cid.equals(root))
    assert.deepEqual(new Set(seen.slice(1, 4).map(s => s.cid.toString())), new Set(mids.map(String)), 'the level below the root comes next')
    assert.equal(new Set(seen.map(s => s.cid.toString())).size, seen.length, 'each block once')
    assert.equal(progress.at(-1), 124)
    assert.deepEqual(lookups, [], 'the connected peer delivered: no provider lookup')
    // everything is local now
    for (const s of seen) assert.deepEqual(await getBlock(b.helia.blockstore, s.cid, { offline: true }), s.bytes)
    // a second walk finds every block local
    const again = await fetchDag(b.helia.blockstore, root, { routing: b.helia.routing })
    assert.equal(again.localBlocks, 124)
  })

  it('looks providers up only for a block nobody connected delivers, then lists it missing or fails', async () => {
    const gone = CID.createV1(raw.code, await sha256.digest(randomBytes(64)))
    const have = await put(a, raw.code, randomBytes(500))
    const root = await put(a, dagCbor.code, dagCbor.encode({ links: [have, gone] }))
    lookups.length = 0
    const t0 = Date.now()
    const got = await fetchDag(b.helia.blockstore, root, { routing: b.helia.routing, lookupAfterMs: 200, blockTimeoutMs: 1_500, failFast: false })
    assert.equal(got.blocks, 2)
    assert.deepEqual(got.missing.map(m => m.cid.toString()), [gone.toString()])
    assert.ok(Date.now() - t0 < 10_000)
    assert.deepEqual(lookups, [gone.toString()], 'one lookup, for the block that did not come')

    await assert.rejects(fetchDag(b.helia.blockstore, root, { routing: b.helia.routing, lookupAfterMs: 100, blockTimeoutMs: 800 }),
      (err: unknown) => isTokenimError(err, 'BLOCK_UNAVAILABLE') && err.info.cid === gone.toString())
  })

  it('stops with the error onBlock throws, and on abort', async () => {
    const leaf = await put(a, raw.code, randomBytes(100))
    const root = await put(a, dagCbor.code, dagCbor.encode({ leaf }))
    await assert.rejects(fetchDag(b.helia.blockstore, root, { onBlock: () => { throw new Error('refused') } }), /refused/)
    const gone = CID.createV1(raw.code, await sha256.digest(randomBytes(64)))
    const stuck = await put(a, dagCbor.code, dagCbor.encode({ gone }))
    const controller = new AbortController()
    const walk = fetchDag(b.helia.blockstore, stuck, { routing: b.helia.routing, signal: controller.signal, blockTimeoutMs: 30_000 })
    setTimeout(() => { controller.abort() }, 300)
    const t0 = Date.now()
    await assert.rejects(walk)
    assert.ok(Date.now() - t0 < 5_000, 'an abort ends the walk promptly')
  })

  it('takes blocks the caller holds (peek) as they are, and fetches only the others', async () => {
    const held = new Map<string, Uint8Array>()
    const leaves: CID[] = []
    for (let i = 0; i < 20; i++) {
      const bytes = randomBytes(100 + i)
      const cid = CID.createV1(raw.code, await sha256.digest(bytes))
      leaves.push(cid)
      held.set(cid.toString(), bytes)
    }
    const fetched = await put(a, raw.code, randomBytes(300)) // only the peer has this one
    const rootBytes = dagCbor.encode({ leaves, fetched })
    const root = CID.createV1(dagCbor.code, await sha256.digest(rootBytes))
    held.set(root.toString(), rootBytes)
    const seen: FetchedBlock[] = []
    const got = await fetchDag(b.helia.blockstore, root, { routing: b.helia.routing, peek: cid => held.get(cid.toString()), onBlock: blk => { seen.push(blk) } })
    assert.equal(got.blocks, 22)
    assert.equal(got.localBlocks, 21)
    assert.deepEqual(seen.filter(x => x.local !== true).map(x => x.cid.toString()), [fetched.toString()])
  })

  it('dagLinks follows dag-cbor and dag-pb links, none for raw or undecodable bytes', async () => {
    const x = CID.createV1(raw.code, await sha256.digest(new Uint8Array([1])))
    const y = CID.createV1(raw.code, await sha256.digest(new Uint8Array([2])))
    const cbor = dagCbor.encode({ a: [x, { b: y }], n: 3 })
    assert.deepEqual(dagLinks(CID.createV1(dagCbor.code, await sha256.digest(cbor)), cbor).map(String), [x, y].map(String))
    const pb = dagPb.encode(dagPb.prepare({ Data: new Uint8Array([8, 1]), Links: [{ Hash: x, Name: 'x', Tsize: 1 }, { Hash: y, Name: 'y', Tsize: 1 }] }))
    assert.deepEqual(dagLinks(CID.createV1(dagPb.code, await sha256.digest(pb)), pb).map(String), [x, y].map(String))
    assert.deepEqual(dagLinks(x, new Uint8Array([1])), [])
    assert.deepEqual(dagLinks(CID.createV1(dagCbor.code, await sha256.digest(new Uint8Array([0xff]))), new Uint8Array([0xff])), [])
  })
})
