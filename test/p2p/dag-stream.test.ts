import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import * as dagPb from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { isTokenimError } from '../../src/errors.ts'
import { DAG_PROTOCOL, encodeVarint, fetchDagStream, framed } from '../../src/p2p/index.ts'
import type { P2PNode } from '../../src/p2p/index.ts'
import { Harness } from './helpers.ts'

async function cidOf (code: number, bytes: Uint8Array): Promise<CID> {
  return CID.createV1(code, await sha256.digest(bytes))
}

async function put (node: P2PNode, code: number, bytes: Uint8Array): Promise<CID> {
  const cid = await cidOf(code, bytes)
  await node.helia.blockstore.put(cid, bytes)
  return cid
}

/** A peer that answers a DAG request with these entries (CID ‖ bytes), all in one frame. */
async function lyingPeer (node: P2PNode, entries: Array<{ cid: CID, bytes: Uint8Array }>): Promise<void> {
  await node.unhandle(DAG_PROTOCOL)
  await node.handle(DAG_PROTOCOL, async (stream) => {
    const f = framed(stream, { maxFrameBytes: 4 * 1024 * 1024 })
    await f.read()
    const parts: Uint8Array[] = []
    for (const e of entries) parts.push(encodeVarint(e.cid.bytes.length + e.bytes.length), e.cid.bytes, e.bytes)
    await f.write(Buffer.concat(parts))
    await f.close()
  })
}

describe('p2p DAG stream: a whole DAG in one stream', function () {
  this.timeout(60_000)
  const h = new Harness()
  let a: P2PNode
  let b: P2PNode

  before(async () => {
    a = await h.node()
    b = await h.node()
    await b.dial(a.multiaddrs()[0])
  })
  after(async () => { await h.cleanup() })

  it('sends every block under the root once, parent before child, over dag-cbor and dag-pb links; what the peer lacks is not sent', async () => {
    // root → 2 dag-cbor nodes → 300 raw leaves (one shared) + a dag-pb node → 2 raw chunks (one absent)
    const leaves: CID[] = []
    for (let i = 0; i < 300; i++) leaves.push(await put(a, raw.code, randomBytes(1500 + i)))
    const chunk = await put(a, raw.code, randomBytes(3000))
    const absent = await cidOf(raw.code, randomBytes(100))
    const file = await put(a, dagPb.code, dagPb.encode(dagPb.prepare({ Data: new Uint8Array([8, 2]), Links: [{ Hash: chunk }, { Hash: absent }] })))
    const mids = [
      await put(a, dagCbor.code, dagCbor.encode({ leaves: leaves.slice(0, 150), file })),
      await put(a, dagCbor.code, dagCbor.encode({ leaves: [...leaves.slice(150), leaves[0]] }))
    ]
    const root = await put(a, dagCbor.code, dagCbor.encode({ v: 1, mids }))

    const got: string[] = []
    const r = await fetchDagStream(b, a.peerId, root, { onBlock: ({ cid, bytes }) => { got.push(cid.toString()); assert.equal(bytes.byteOffset, 0) } })
    assert.equal(r.blocks, 1 + 2 + 300 + 2)
    assert.equal(r.complete, false, 'a block the peer lacks: not complete')
    assert.equal(new Set(got).size, got.length, 'each block once')
    assert.equal(got[0], root.toString())
    assert.ok(got.indexOf(file.toString()) < got.indexOf(chunk.toString()))
    assert.ok(!got.includes(absent.toString()))
    // nothing was written on our side: the caller keeps the blocks
    assert.equal(await b.helia.blockstore.has(root), false)
    // a subtree the peer has whole
    const whole = await fetchDagStream(b, a.peerId, mids[1], { onBlock: () => {} })
    assert.deepEqual([whole.blocks, whole.complete], [1 + 151, true])
  })

  it('a root the peer lacks gives nothing; a peer without the protocol is DIAL_FAILED', async () => {
    const r = await fetchDagStream(b, a.peerId, await cidOf(raw.code, randomBytes(32)), { onBlock: () => { assert.fail('no block') } })
    assert.equal(r.blocks, 0)
    assert.equal(r.complete, false)
    const c = await h.node()
    await b.dial(c.multiaddrs()[0])
    await c.unhandle(DAG_PROTOCOL)
    await assert.rejects(fetchDagStream(b, c.peerId, await cidOf(raw.code, randomBytes(32)), { onBlock: () => {} }), (err: unknown) => isTokenimError(err, 'DIAL_FAILED'))
  })

  it('a block not asked for, or bytes that do not match their CID, end the exchange with PROTOCOL_VIOLATION (blocks accepted before stay)', async () => {
    const c = await h.node()
    await b.dial(c.multiaddrs()[0])
    const leaf = randomBytes(64)
    const leafCid = await cidOf(raw.code, leaf)
    const rootBytes = dagCbor.encode({ leaf: leafCid })
    const root = await cidOf(dagCbor.code, rootBytes)
    const other = randomBytes(64)

    await lyingPeer(c, [{ cid: root, bytes: rootBytes }, { cid: await cidOf(raw.code, other), bytes: other }])
    const accepted: string[] = []
    await assert.rejects(fetchDagStream(b, c.peerId, root, { onBlock: ({ cid }) => { accepted.push(cid.toString()) } }),
      (err: unknown) => isTokenimError(err, 'PROTOCOL_VIOLATION') && /not asked for/.test((err as Error).message))
    assert.deepEqual(accepted, [root.toString()])

    await lyingPeer(c, [{ cid: root, bytes: rootBytes }, { cid: leafCid, bytes: randomBytes(64) }])
    await assert.rejects(fetchDagStream(b, c.peerId, root, { onBlock: () => {} }),
      (err: unknown) => isTokenimError(err, 'PROTOCOL_VIOLATION') && /does not match its hash/.test((err as Error).message))

    await lyingPeer(c, [{ cid: leafCid, bytes: leaf }])
    await assert.rejects(fetchDagStream(b, c.peerId, root, { onBlock: () => {} }), (err: unknown) => isTokenimError(err, 'PROTOCOL_VIOLATION'))
  })

  it('gives up on a peer that stops sending (idle timeout): DIAL_FAILED, blocks accepted before stay', async () => {
    const c = await h.node()
    await b.dial(c.multiaddrs()[0])
    const leaf = randomBytes(64)
    const rootBytes = dagCbor.encode({ leaf: await cidOf(raw.code, leaf) })
    const root = await cidOf(dagCbor.code, rootBytes)
    let release = (): void => {}
    const held = new Promise<void>(resolve => { release = resolve })
    await c.unhandle(DAG_PROTOCOL)
    await c.handle(DAG_PROTOCOL, async (stream) => {
      const f = framed(stream, { maxFrameBytes: 4 * 1024 * 1024 })
      await f.read()
      await f.write(Buffer.concat([encodeVarint(root.bytes.length + rootBytes.length), root.bytes, rootBytes]))
      await held // then nothing more
      stream.abort(new Error('done'))
    })
    const accepted: string[] = []
    try {
      await assert.rejects(fetchDagStream(b, c.peerId, root, { idleTimeoutMs: 300, onBlock: ({ cid }) => { accepted.push(cid.toString()) } }),
        (err: unknown) => isTokenimError(err, 'DIAL_FAILED'))
      assert.deepEqual(accepted, [root.toString()])
    } finally {
      release()
    }
  })

  it('passes on what onBlock throws, and stops on abort', async () => {
    const root = await put(a, dagCbor.code, dagCbor.encode({ leaf: await put(a, raw.code, randomBytes(10)) }))
    const mine = new Error('mine')
    await assert.rejects(fetchDagStream(b, a.peerId, root, { onBlock: () => { throw mine } }), (err: unknown) => err === mine)
    const ac = new AbortController()
    ac.abort()
    await assert.rejects(fetchDagStream(b, a.peerId, root, { signal: ac.signal, onBlock: () => {} }))
  })
})
