/**
 * Envelope versions on the wire between real nodes on 127.0.0.1: a sender seals v2 envelopes (one sending
 * epoch per recipient key, a new number per message) for a listener of /tokenim/msg/1.1.0 and v1 envelopes
 * for one that speaks only /tokenim/msg/1.0.0; a receiver keeps the epoch keys of several senders' epochs
 * apart and is not misled by a tampered envelope of a known epoch.
 *
 * The listeners that watch the sender are minimal receivers (they read frames, record them and answer with
 * receipts made with the recipient's real keys): what is tested is the real sender's choice of envelopes.
 */
import assert from 'node:assert/strict'
import * as dagCbor from '@ipld/dag-cbor'
import type { Stream } from '@libp2p/interface'
import {
  createReceipt, decodeEnvelope, decodeReceipt, receiptIds, encodeFrame, MAX_FRAME_BYTES, MSG_PROTOCOL, MSG_PROTOCOL_V1, MSG_PROTOCOLS, openMessage,
  openSendEpoch, sealMessage, verifyReceipt
} from '../../src/messaging/index.ts'
import { x25519GenerateKeyPair } from '../../src/crypto/index.ts'
import type { Envelope } from '../../src/messaging/index.ts'
import type { TokenimNode } from '../../src/node/index.ts'
import { framed } from '../../src/p2p/index.ts'
import type { FramedStream, P2PNode } from '../../src/p2p/index.ts'
import { NodeHarness, waitFor, waitResolvable } from '../node/helpers.ts'

const unlimited = { messaging: { retryBaseMs: 200, retryMaxMs: 1_000, rateLimit: { capacity: 1e6, refillPerSecond: 1e6 } } }

/**
 * Replace `node`'s messaging listeners by a minimal receiver on `protocols`: every envelope is decoded,
 * opened with the node's keys (so it must be genuine) and recorded, and answered with a receipt (made with
 * `receiptKeys`, by default the node's own).
 */
async function tap (node: TokenimNode, sender: TokenimNode, protocols: string[], receiptKeys = node.identity.keys.messaging): Promise<Envelope[]> {
  const seen: Envelope[] = []
  for (const p of MSG_PROTOCOLS) await node.p2p.unhandle(p)
  const keys = node.identity.keys.messaging
  const senderKey = sender.identity.keys.messaging.publicKey
  for (const protocol of protocols) {
    await node.p2p.handle(protocol, (stream: Stream) => {
      const f = framed(stream, { maxFrameBytes: MAX_FRAME_BYTES })
      void (async () => {
        try {
          for (let bytes = await f.read(); bytes != null; bytes = await f.read()) {
            const envelope = decodeEnvelope(bytes)
            openMessage(envelope, { self: node.address, keys, senderKey })
            seen.push(envelope)
            await f.write(encodeFrame(createReceipt({ id: envelope.id, from: envelope.from, to: envelope.to }, { keys: receiptKeys, peerKey: senderKey })))
          }
          await f.close()
        } catch (err) {
          f.abort(err as Error)
        }
      })()
    }, { maxInboundStreams: 16 })
  }
  return seen
}

describe('messaging: envelope versions between nodes', function () {
  this.timeout(120_000)
  const h = new NodeHarness()
  after(async () => { await h.cleanup() })

  it('a 1.1.0 listener is sent v2 envelopes: one epoch key for many concurrent sends, each number once', async () => {
    const [alice, bob] = await Promise.all([h.node(unlimited), h.node(unlimited)])
    await waitResolvable(alice, bob)
    const seen = await tap(bob, alice, [MSG_PROTOCOL])
    const results = await Promise.all(Array.from({ length: 200 }, async (_, i) => await alice.send(bob.address, `v2 ${i}`)))
    assert.ok(results.every(r => r.status === 'delivered'))
    assert.equal(seen.length, 200)
    assert.ok(seen.every(e => e.v === 2))
    const epochs = new Set(seen.map(e => Buffer.from(e.epk).toString('hex')))
    assert.equal(epochs.size, 1, 'one sending epoch')
    const numbers = seen.map(e => e.v === 2 ? e.n : -1)
    assert.equal(new Set(numbers).size, 200, 'no number twice under one epoch key')
    assert.deepEqual([...numbers].sort((a, b) => a - b), Array.from({ length: 200 }, (_, i) => i))
    assert.equal((await alice.messages(bob.address)).filter(m => m.status === 'delivered').length, 200)
  })

  it('a listener that speaks only 1.0.0 is sent v1 envelopes, also for a message sealed as v2 before that was known', async () => {
    const [alice, carol] = await Promise.all([h.node(unlimited), h.node(unlimited)])
    await waitResolvable(alice, carol)
    const seen = await tap(carol, alice, [MSG_PROTOCOL_V1])
    // alice does not know carol's listener yet: this one is sealed v2, then sealed again as v1 from the store
    const first = await alice.send(carol.address, 'first')
    const later = await Promise.all(Array.from({ length: 20 }, async (_, i) => await alice.send(carol.address, `later ${i}`)))
    assert.equal(first.status, 'delivered')
    assert.ok(later.every(r => r.status === 'delivered'))
    assert.equal(seen.length, 21)
    assert.ok(seen.every(e => e.v === 1), seen.map(e => e.v).join(','))
    assert.equal(new Set(seen.map(e => Buffer.from(e.epk).toString('hex'))).size, 21, 'a fresh ephemeral key per v1 envelope')
    assert.equal(seen[0].id, first.id)
    assert.equal((await alice.store.getMessage(first.id))?.status, 'delivered')
    assert.equal((await alice.store.getMessage(first.id))?.text, 'first')
  })

  it('a receipt that does not authenticate is refused: the message stays queued (FORGED_RECEIPT) and the stream is reset', async () => {
    const [alice, erin] = await Promise.all([h.node({ messaging: { ...unlimited.messaging, retryBaseMs: 60_000 } }), h.node(unlimited)])
    await waitResolvable(alice, erin)
    const retries: string[] = []
    alice.messaging.on('retry', (e) => { retries.push(e.error) })
    // erin's listener answers with receipts made under another key
    await tap(erin, alice, [MSG_PROTOCOL], x25519GenerateKeyPair())
    const r = await alice.send(erin.address, 'forged receipt')
    assert.equal(r.status, 'queued')
    assert.equal(retries.length, 1)
    assert.match(retries[0], /^FORGED_RECEIPT/)
    assert.equal((await alice.store.getMessage(r.id))?.status, 'queued')
    assert.equal((await alice.store.getOutbox(r.id))?.attempts, 1)
    const erinPeer = erin.p2p.peerId.toString()
    await waitFor(() => alice.p2p.libp2p.getConnections().filter(c => c.remotePeer.toString() === erinPeer)
      .flatMap(c => c.streams).every(st => st.protocol !== MSG_PROTOCOL), 'the channel with the forged receipt reset')
  })

  describe('a receiver', () => {
    let alice: TokenimNode
    let dave: TokenimNode
    let mallory: P2PNode
    before(async () => {
      [alice, dave] = await Promise.all([h.node(unlimited), h.node(unlimited)])
      mallory = await h.rawNode([await h.bootstrapAddr()])
      await waitResolvable(dave, alice)
    })

    async function stream (): Promise<FramedStream> {
      return framed(await mallory.dialProtocol(dave.multiaddrs()[0], MSG_PROTOCOL, { signal: AbortSignal.timeout(10_000) }), { maxFrameBytes: MAX_FRAME_BYTES })
    }

    it('answers a 1.1.0 stream with v2 receipts (the messages stored together in one), a 1.0.0 stream with v1 ones', async () => {
      const keys = alice.identity.keys.messaging
      const to = dave.identity.keys.messaging.publicKey
      const epoch = await openSendEpoch(keys, to)
      for (const [protocol, version] of [[MSG_PROTOCOL, 2], [MSG_PROTOCOL_V1, 1]] as const) {
        const sealed = Array.from({ length: 20 }, (_, i) => sealMessage({ from: alice.address, to: dave.address, body: { text: `${protocol} ${i}` } }, keys, to, {}, version === 2 ? epoch : undefined))
        const f = framed(await mallory.dialProtocol(dave.multiaddrs()[0], protocol, { signal: AbortSignal.timeout(10_000) }), { maxFrameBytes: MAX_FRAME_BYTES })
        for (const x of sealed) await f.write(x.bytes)
        const ids = new Set<string>()
        let frames = 0
        while (ids.size < sealed.length) {
          const receipt = decodeReceipt((await f.read({ signal: AbortSignal.timeout(10_000) }))!)
          assert.equal(receipt.v, version)
          verifyReceipt(receipt, { from: alice.address, to: dave.address }, { keys, peerKey: to })
          for (const id of receiptIds(receipt)) ids.add(id)
          frames++
        }
        await f.close()
        assert.deepEqual(ids, new Set(sealed.map(x => x.envelope.id)))
        if (version === 1) assert.equal(frames, 20)
        else assert.ok(frames < 20, `${frames} v2 receipts for 20 messages`)
      }
    })

    it('opens interleaved envelopes of several epochs of one sender, and stores each message once', async () => {
      const keys = alice.identity.keys.messaging
      const to = dave.identity.keys.messaging.publicKey
      const epochs = await Promise.all([0, 1, 2].map(async () => await openSendEpoch(keys, to)))
      const sealed = Array.from({ length: 30 }, (_, i) => sealMessage({ from: alice.address, to: dave.address, body: { text: `epoch ${i % 3} #${i}` } }, keys, to, {}, epochs[i % 3]))
      const f = await stream()
      for (const s of sealed) await f.write(s.bytes)
      const ids = new Set<string>()
      while (ids.size < sealed.length) for (const id of receiptIds(decodeReceipt((await f.read({ signal: AbortSignal.timeout(10_000) }))!))) ids.add(id)
      await f.close()
      assert.deepEqual(ids, new Set(sealed.map(s => s.envelope.id)))
      const stored = await dave.messages(alice.address)
      for (const s of sealed) assert.equal(stored.filter(m => m.id === s.envelope.id).length, 1)
      assert.equal(stored.find(m => m.id === sealed[29].envelope.id)?.text, 'epoch 2 #29')
    })

    it('refuses an envelope of a known epoch whose number or ciphertext was changed, and still opens the epoch\'s genuine ones', async () => {
      const keys = alice.identity.keys.messaging
      const to = dave.identity.keys.messaging.publicKey
      const epoch = await openSendEpoch(keys, to)
      const genuine = sealMessage({ from: alice.address, to: dave.address, body: { text: 'genuine' } }, keys, to, {}, epoch)
      const f = await stream()
      await f.write(genuine.bytes)
      assert.ok(await f.read({ signal: AbortSignal.timeout(10_000) }))
      const rejected: string[] = []
      dave.messaging.on('rejected', (r) => { rejected.push(r.code) })
      // the same epoch (its key kept by dave), another message with its number changed
      const next = sealMessage({ from: alice.address, to: dave.address, body: { text: 'renumbered' } }, keys, to, {}, epoch)
      const m = dagCbor.decode(next.bytes) as Record<string, unknown>
      await f.write(dagCbor.encode({ ...m, n: 0 }))
      await waitFor(() => rejected.includes('DECRYPT_FAILED'), 'the renumbered envelope refused')
      assert.equal((await dave.messages(alice.address)).some(x => x.text === 'renumbered'), false)
      // the epoch's key was not lost or spoiled: its next genuine message opens on a new stream
      const g = await stream()
      await g.write(next.bytes)
      assert.ok(await g.read({ signal: AbortSignal.timeout(10_000) }))
      await g.close()
      assert.equal((await dave.messages(alice.address)).filter(x => x.text === 'renumbered').length, 1)
    })
  })
})
