import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Wallet } from 'ethers'
import type { HDNodeWallet } from 'ethers'
import {
  decodeDeviceRecord, deviceRecordDhtValidator, deviceRecordKey, deviceRecordSigningBytes, encodeDeviceRecord
} from '../../src/identity/index.ts'
import type { DeviceRecord } from '../../src/identity/index.ts'
import { DeviceRecordPublisher, fetchPeerRecord, framed, RECORD_PROTOCOL, Resolver } from './imports.ts'
import type { P2PNode } from './imports.ts'
import { Harness, waitFor } from './helpers.ts'

const TEST_PROTOCOL = '/tokenim/test-hello/1.0.0'
/** DHT hooks that accept anything: an attacker's node, or a victim that trusts its DHT blindly. */
const PERMISSIVE = { validator: async () => {}, selector: () => 0 }

/** A record for `address` naming `peerId`, signed by `signer` (a different wallet: forged). */
async function forgeRecord (signer: HDNodeWallet, address: string, peerId: string, seq: number): Promise<Uint8Array> {
  const unsigned: Omit<DeviceRecord, 'signature'> = {
    v: 1, address, peerId, messagingKey: new Uint8Array(randomBytes(32)), multiaddrs: [], seq, time: Date.now()
  }
  const signature = await signer.signMessage(deviceRecordSigningBytes(unsigned))
  return encodeDeviceRecord({ ...unsigned, signature })
}

interface Person {
  wallet: HDNodeWallet
  messagingKey: Uint8Array
  node: P2PNode
  publisher?: DeviceRecordPublisher
  resolver?: Resolver
}

describe('p2p: finding people by wallet address', function () {
  this.timeout(90_000)
  const h = new Harness()
  const started: Array<{ stop: () => Promise<void> | void }> = []
  let a: P2PNode
  let b: Person
  let c: Person
  let mallory: P2PNode
  let gullible: P2PNode

  const person = async (node: P2PNode, opts: { learnFromPeers?: boolean } = {}): Promise<Person> => {
    const wallet = Wallet.createRandom()
    const messagingKey = new Uint8Array(randomBytes(32))
    const publisher = new DeviceRecordPublisher(node, { address: wallet.address, messagingKey, signer: wallet, republishIntervalMs: 60_000 })
    await publisher.start()
    const resolver = new Resolver(node, { learnFromPeers: opts.learnFromPeers })
    resolver.start()
    started.push(resolver, publisher)
    return { wallet, messagingKey, node, publisher, resolver }
  }

  before(async () => {
    a = await h.node()
    const bootstrap = [a.multiaddrs()[0].toString()]
    // B learns nothing from connected peers: whatever it resolves comes from the DHT
    b = await person(await h.node({ bootstrap }), { learnFromPeers: false })
    c = await person(await h.node({ bootstrap }))
    await c.node.handle(TEST_PROTOCOL, async (stream) => {
      const f = framed(stream, { maxFrameBytes: 1024 })
      await f.write(new TextEncoder().encode('hello from C'))
      await f.close()
    })
    mallory = await h.node({ bootstrap, dhtRecord: PERMISSIVE })
    gullible = await h.node({ bootstrap, dhtRecord: PERMISSIVE })
    const nodes = [a, b.node, c.node, mallory, gullible]
    await waitFor(() => a.routingTableSize() >= nodes.length - 1 && nodes.every(n => n.routingTableSize() >= 1), 'DHT routing tables')
  })

  after(async () => {
    for (const s of started.splice(0).reverse()) await s.stop()
    await h.cleanup()
  })

  it('publishes B and C, and B resolves C through the DHT, dials it and talks on a protocol', async () => {
    const publishedC = await waitFor(async () => await c.publisher!.publish().catch(() => undefined), 'C published')
    assert.ok(publishedC.peers >= 1)
    await waitFor(async () => await b.publisher!.publish().catch(() => undefined), 'B published')

    // B has no connection to C and no addresses for it: only the DHT answer can get it there
    if (b.node.connectedPeers().some(p => p.equals(c.node.peerId))) await b.node.libp2p.hangUp(c.node.peerId)
    await b.node.libp2p.peerStore.delete(c.node.peerId)

    const found = await b.resolver!.resolve(c.wallet.address.toLowerCase())
    assert.equal(found.source, 'dht')
    assert.equal(found.address, c.wallet.address)
    assert.ok(found.peerId.equals(c.node.peerId))
    assert.deepEqual(found.messagingKey, c.messagingKey)
    assert.deepEqual(found.multiaddrs.map(String).sort(), c.node.multiaddrs().map(m => m.decapsulate(`/p2p/${c.node.peerId.toString()}`).toString()).sort())
    assert.equal(found.record.seq, c.publisher!.current()!.seq)

    const f = framed(await b.node.dialProtocol(found.peerId, TEST_PROTOCOL), { maxFrameBytes: 1024 })
    assert.equal(new TextDecoder().decode((await f.read())!), 'hello from C')
    assert.equal(await f.read(), null)

    // a second resolve is served from the cache; the resolver's dialProtocol works end to end
    assert.equal((await b.resolver!.resolve(c.wallet.address)).source, 'cache')
    const { stream, peer } = await b.resolver!.dialProtocol(c.wallet.address, TEST_PROTOCOL)
    assert.ok(peer.peerId.equals(c.node.peerId))
    assert.equal(new TextDecoder().decode((await framed(stream).read())!), 'hello from C')
  })

  it('learns records from connected peers over /tokenim/record/1.0.0', async () => {
    const direct = await fetchPeerRecord(b.node, c.node.peerId)
    assert.equal(direct?.address, c.wallet.address)
    // C learns B's record as soon as they are connected (identify → record exchange)
    await c.node.dial(b.node.peerId)
    await waitFor(() => c.resolver!.cached(b.wallet.address), 'C learned B from the connection')
    const found = await c.resolver!.resolve(b.wallet.address)
    assert.equal(found.source, 'peer')
    assert.ok(found.peerId.equals(b.node.peerId))
  })

  it('republishes with a higher seq and the resolver prefers it', async () => {
    const before = c.publisher!.current()!
    const { record } = await c.publisher!.publish()
    assert.ok(record.seq > before.seq)
    const found = await b.resolver!.resolve(c.wallet.address, { fresh: true })
    assert.equal(found.record.seq, record.seq)
  })

  it('rejects a record for C signed by another wallet: in the DHT validator, on every node, and in resolve', async () => {
    const attacker = Wallet.createRandom()
    const key = deviceRecordKey(c.wallet.address)
    const forged = await forgeRecord(attacker, c.wallet.address, mallory.peerId.toString(), Date.now() + 1_000_000)
    assert.equal(decodeDeviceRecord(forged).address, c.wallet.address)
    await assert.rejects(deviceRecordDhtValidator(key, forged), { code: 'FORGED_DEVICE_RECORD' })
    // a genuine record of B is not valid under C's key either
    await assert.rejects(deviceRecordDhtValidator(key, encodeDeviceRecord(b.publisher!.current()!)), { code: 'INVALID_DEVICE_RECORD' })

    // Mallory pushes it into the DHT: honest nodes refuse it, only the gullible node stores it
    let accepted = 0
    for await (const event of mallory.libp2p.services.dht.put(key, forged, { signal: AbortSignal.timeout(20_000) })) {
      if (event.name === 'PEER_RESPONSE' && event.messageName === 'PUT_VALUE' && event.record != null) {
        assert.ok(event.from.equals(gullible.peerId), `accepted by ${event.from.toString()}`)
        accepted++
      }
    }
    assert.ok(accepted <= 1)

    const found = await b.resolver!.resolve(c.wallet.address, { fresh: true })
    assert.ok(found.peerId.equals(c.node.peerId), 'the genuine record wins')

    // a node whose DHT accepts anything still never resolves to the forged record
    const victim = Wallet.createRandom()
    const forgedVictim = await forgeRecord(attacker, victim.address, mallory.peerId.toString(), 1)
    for await (const _ of mallory.libp2p.services.dht.put(deviceRecordKey(victim.address), forgedVictim, { signal: AbortSignal.timeout(20_000) })) { /* drain */ }
    const gullibleResolver = new Resolver(gullible, { learnFromPeers: false })
    gullibleResolver.start()
    started.push(gullibleResolver)
    let sawForged = false
    for await (const event of gullible.libp2p.services.dht.get(deviceRecordKey(victim.address), { signal: AbortSignal.timeout(20_000) })) {
      if (event.name === 'VALUE') sawForged = true
    }
    assert.ok(sawForged, 'the gullible DHT does hand out the forged record')
    await assert.rejects(gullibleResolver.resolve(victim.address), { code: 'PEER_NOT_FOUND' })
  })

  it('rejects a forged record offered on the record exchange', async () => {
    const attacker = Wallet.createRandom()
    const forged = await forgeRecord(attacker, c.wallet.address, mallory.peerId.toString(), Date.now() + 1_000_000)
    await mallory.handle(RECORD_PROTOCOL, async (stream) => {
      const f = framed(stream)
      await f.write(forged)
      await f.close()
    })
    await assert.rejects(fetchPeerRecord(b.node, mallory.peerId), (err: Error & { code?: string, cause?: { code?: string } }) => {
      return err.code === 'INVALID_PEER_RECORD' && err.cause?.code === 'FORGED_DEVICE_RECORD'
    })
    // a genuine record of someone else is refused too: it must name the peer that serves it
    const cRecord = encodeDeviceRecord(c.publisher!.current()!)
    await mallory.unhandle(RECORD_PROTOCOL)
    await mallory.handle(RECORD_PROTOCOL, async (stream) => {
      const f = framed(stream)
      await f.write(cRecord)
      await f.close()
    })
    await assert.rejects(fetchPeerRecord(b.node, mallory.peerId), { code: 'INVALID_PEER_RECORD' })
    await mallory.unhandle(RECORD_PROTOCOL)
  })

  it('says PEER_NOT_FOUND for an unknown address and INVALID_P2P_ARGUMENT for a malformed one', async () => {
    await assert.rejects(b.resolver!.resolve(Wallet.createRandom().address, { timeoutMs: 20_000 }), { code: 'PEER_NOT_FOUND' })
    await assert.rejects(b.resolver!.resolve('0x1234'), { code: 'INVALID_P2P_ARGUMENT' })
    // a mixed-case address is checked against its EIP-55 checksum, also once a good one was seen
    const good = Wallet.createRandom().address
    const flipped = good.slice(0, 2) + [...good.slice(2)].map(c => c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()).join('')
    assert.equal(b.resolver!.cached(good), undefined)
    assert.throws(() => b.resolver!.cached(flipped), { code: 'INVALID_P2P_ARGUMENT' })
    assert.equal(b.resolver!.cached(good.toLowerCase()), undefined)
    assert.throws(() => b.resolver!.cached('0x' + 'g'.repeat(40)), { code: 'INVALID_P2P_ARGUMENT' })
  })
})
