import assert from 'node:assert/strict'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { createP2PNode, encodeVarint, framed, getBlock, isP2PNotStarted } from './imports.ts'
import { loadOrCreateDeviceKey } from '../../src/identity/index.ts'
import { Harness, waitFor } from './helpers.ts'

async function rawBlock (text: string): Promise<{ cid: CID, bytes: Uint8Array }> {
  const bytes = new TextEncoder().encode(text)
  return { cid: CID.createV1(raw.code, await sha256.digest(bytes)), bytes }
}

describe('p2p node', function () {
  this.timeout(60_000)
  const h = new Harness()
  afterEach(async () => { await h.cleanup() })

  it('starts on loopback, stops idempotently and refuses to start again', async () => {
    const node = await h.node()
    const addrs = node.multiaddrs().map(String)
    assert.ok(addrs.length > 0)
    assert.ok(addrs.every(a => a.startsWith('/ip4/127.0.0.1/tcp/') && a.endsWith(`/p2p/${node.peerId.toString()}`)), addrs.join())
    for (const dir of ['blocks', 'datastore']) assert.equal((await stat(join(node.dataDir, dir))).mode & 0o777, 0o700, `${dir} is private`)
    await Promise.all([node.stop(), node.stop()])
    await node.stop()
    assert.equal(node.status, 'stopped')
    assert.throws(() => node.libp2p, isP2PNotStarted)
    await assert.rejects(node.start(), { code: 'P2P_START_FAILED' })
  })

  it('starts and stops cleanly with mDNS on', async () => {
    const node = await h.node({ mdns: true })
    assert.equal(node.status, 'started')
    await node.stop()
  })

  it('rejects a bootstrap address without a peer id', async () => {
    const dataDir = await h.dir()
    const privateKey = await loadOrCreateDeviceKey(dataDir)
    await assert.rejects(createP2PNode({ privateKey, dataDir, bootstrap: ['/ip4/127.0.0.1/tcp/1'] }), { code: 'INVALID_P2P_ARGUMENT' })
  })

  it('connects through a bootstrap peer and exchanges length-prefixed frames on a custom protocol', async () => {
    const a = await h.node()
    const proto = '/tokenim/test-echo/1.0.0'
    await a.handle(proto, async (stream) => {
      const f = framed(stream, { maxFrameBytes: 1024 })
      const signal = AbortSignal.timeout(5_000)
      for (let frame = await f.read({ signal }); frame != null; frame = await f.read({ signal })) {
        await f.write(frame.slice().reverse(), { signal })
      }
      await f.close({ signal })
    })
    const b = await h.node({ bootstrap: [a.multiaddrs()[0].toString()] })
    await waitFor(() => b.connectedPeers().some(p => p.equals(a.peerId)), 'b connected to a')

    const f = framed(await b.dialProtocol(a.peerId, proto), { maxFrameBytes: 1024 })
    const signal = AbortSignal.timeout(5_000)
    await f.write(Uint8Array.from([1, 2, 3]), { signal })
    assert.deepEqual(await f.read({ signal }), Uint8Array.from([3, 2, 1]))
    await f.write(new Uint8Array(0), { signal })
    assert.deepEqual(await f.read({ signal }), new Uint8Array(0))
    await f.close({ signal })
    assert.equal(await f.read({ signal }), null)

    // over-long frames are refused on both sides
    const g = framed(await b.dialProtocol(a.peerId, proto), { maxFrameBytes: 4096 })
    await assert.rejects(framed(g.stream, { maxFrameBytes: 10 }).write(new Uint8Array(11)), { code: 'MESSAGE_TOO_LARGE' })
    await g.write(new Uint8Array(2000), { signal })
    await assert.rejects(g.read({ signal }))

    await assert.rejects(b.dialProtocol(a.peerId, '/tokenim/nothing/1.0.0'), { code: 'DIAL_FAILED' })

    // the connection monitor's ping may overlap a slow earlier one: that must not fail (and abort the
    // connection) for lack of a second outbound ping stream — libp2p's default allows one
    const pings = await Promise.all([1, 2, 3].map(async () => await b.libp2p.services.ping.ping(a.peerId)))
    assert.ok(pings.every(ms => ms >= 0), String(pings))
    assert.ok(b.connectedPeers().some(p => p.equals(a.peerId)))
  })

  it('reads frames that arrive together, one by one, and frames split across chunks; refuses a long prefix or frame', async () => {
    const a = await h.node()
    const proto = '/tokenim/test-frames/1.0.0'
    const got: Array<Uint8Array | string> = []
    let done: () => void = () => {}
    const finished = new Promise<void>(resolve => { done = resolve })
    await a.handle(proto, async (stream) => {
      const f = framed(stream, { maxFrameBytes: 1000 })
      try {
        for (let frame = await f.read(); frame != null; frame = await f.read()) got.push(frame)
        got.push('end')
      } catch (err) {
        got.push((err as { code?: string }).code ?? String(err))
      }
      done()
    })
    const b = await h.node({ bootstrap: [a.multiaddrs()[0].toString()] })
    await waitFor(() => b.connectedPeers().some(p => p.equals(a.peerId)), 'b connected to a')
    const frame = (n: number, fill: number): Uint8Array => Uint8Array.from([...encodeVarint(n), ...new Uint8Array(n).fill(fill)])
    // 20 frames in one send (read from the buffer), then one whose prefix and body come in three sends
    const s1 = await b.dialProtocol(a.peerId, proto)
    s1.send(Uint8Array.from(Array.from({ length: 20 }, (_, i) => [...frame(i * 40, i)]).flat()))
    const split = frame(900, 7)
    // apart in time so that they likely arrive as separate chunks (coalesced, they are read from the buffer: also right)
    s1.send(split.subarray(0, 1))
    await new Promise(resolve => setTimeout(resolve, 20))
    s1.send(split.subarray(1, 500))
    await new Promise(resolve => setTimeout(resolve, 20))
    s1.send(split.subarray(500))
    await s1.close()
    await finished
    assert.equal(got.length, 22)
    for (let i = 0; i < 20; i++) assert.deepEqual(got[i], new Uint8Array(i * 40).fill(i))
    assert.deepEqual(got[20], new Uint8Array(900).fill(7))
    assert.equal(got[21], 'end')
    // buffered behind a good frame: a frame over the cap, and a prefix of six bytes
    for (const bad of [frame(1001, 1), Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x80, 0x01)]) {
      got.length = 0
      const ended = new Promise<void>(resolve => { done = resolve })
      const s = await b.dialProtocol(a.peerId, proto)
      s.send(Uint8Array.from([...frame(3, 9), ...bad]))
      await ended
      assert.deepEqual(got, [Uint8Array.of(9, 9, 9), 'MESSAGE_TOO_LARGE'])
      s.abort(new Error('done'))
    }
  })

  it('fetches a block over bitswap, pins it, and keeps blocks and peer id across a restart', async () => {
    const a = await h.node()
    const dirB = await h.dir()
    const b = await h.node({ dataDir: dirB, bootstrap: [a.multiaddrs()[0].toString()] })
    await waitFor(() => b.connectedPeers().some(p => p.equals(a.peerId)), 'b connected to a')

    const { cid, bytes } = await rawBlock(`hello tokenim ${Date.now()}`)
    await a.helia.blockstore.put(cid, bytes)
    const got = await getBlock(b.helia.blockstore, cid, { signal: AbortSignal.timeout(15_000) })
    assert.deepEqual(got, bytes)

    for await (const _ of b.helia.pins.add(cid, { signal: AbortSignal.timeout(15_000) })) { /* drain */ }
    assert.equal(await b.helia.pins.isPinned(cid), true)

    const peerId = b.peerId.toString()
    await b.stop()
    await a.stop()
    const again = await h.node({ dataDir: dirB })
    assert.equal(again.peerId.toString(), peerId)
    assert.equal(await again.helia.blockstore.has(cid), true)
    assert.deepEqual(await getBlock(again.helia.blockstore, cid, { offline: true }), bytes)
    assert.equal(await again.helia.pins.isPinned(cid), true)
  })

  it('runs without network (network: false): blocks and pins on disk, no libp2p; a node with network sees them', async () => {
    const dataDir = await h.dir()
    const local = await h.node({ dataDir, network: false })
    assert.equal(local.status, 'started')
    assert.throws(() => local.libp2p, isP2PNotStarted)
    assert.deepEqual(local.multiaddrs(), [])
    assert.deepEqual(local.connectedPeers(), [])
    assert.equal(local.routingTableSize(), 0)
    await assert.rejects(local.dial('/ip4/127.0.0.1/tcp/1'), isP2PNotStarted)
    await local.handle('/tokenim/test-offline/1.0.0', () => {})

    const { cid, bytes } = await rawBlock(`offline ${Date.now()}`)
    await local.localBlocks().putBatch([{ cid, bytes }])
    for await (const _ of local.helia.pins.add(cid)) { /* drain */ }
    assert.equal(await local.helia.pins.isPinned(cid), true)
    assert.deepEqual(await getBlock(local.helia.blockstore, cid, { offline: true }), bytes)
    await local.stop()

    const online = await h.node({ dataDir })
    assert.ok(online.multiaddrs().length > 0)
    assert.equal(await online.helia.pins.isPinned(cid), true)
    assert.deepEqual(await getBlock(online.helia.blockstore, cid, { offline: true }), bytes)
  })

  it('refuses a second node on the same data dir while the first runs', async () => {
    const dataDir = await h.dir()
    await h.node({ dataDir })
    const privateKey = await loadOrCreateDeviceKey(dataDir)
    const second = await createP2PNode({ privateKey, dataDir })
    await assert.rejects(second.start(), { code: 'P2P_START_FAILED' })
    await second.stop()
  })
})
