import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { x25519GenerateKeyPair } from '../../src/crypto/index.ts'
import { decodeReceipt, encodeFrame, MAX_FRAME_BYTES, MSG_PROTOCOL, sealMessage, verifyReceipt, createReceipt } from '../../src/messaging/index.ts'
import type { TokenimNode } from '../../src/node/index.ts'
import { framed } from '../../src/p2p/index.ts'
import type { FramedStream, P2PNode } from '../../src/p2p/index.ts'
import { NodeHarness, waitFor, waitResolvable } from './helpers.ts'

/** Open a raw `/tokenim/msg/1.1.0` stream from `from` to `to`. */
async function rawStream (from: P2PNode, to: TokenimNode): Promise<FramedStream> {
  const stream = await from.dialProtocol(to.multiaddrs()[0], MSG_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
  return framed(stream, { maxFrameBytes: 2 * MAX_FRAME_BYTES })
}

/** Resolves once the stream is closed or reset by the remote (reading yields null or throws). */
async function remoteClosed (f: FramedStream): Promise<boolean> {
  try {
    return await f.read({ signal: AbortSignal.timeout(10_000) }) == null
  } catch (err) {
    return (err as Error).name !== 'TimeoutError' && (err as Error).name !== 'AbortError'
  }
}

describe('node: hostile peers on /tokenim/msg/1.1.0', function () {
  this.timeout(120_000)
  const h = new NodeHarness()
  let alice: TokenimNode
  let bob: TokenimNode
  let mallory: P2PNode

  before(async () => {
    [alice, bob] = await Promise.all([h.node(), h.node()])
    mallory = await h.rawNode([await h.bootstrapAddr()])
    await waitResolvable(bob, alice)
    await waitResolvable(alice, bob)
  })
  after(async () => { await h.cleanup() })

  function sealFromAlice (text: string): { id: string, bytes: Uint8Array } {
    const sealed = sealMessage({ from: alice.address, to: bob.address, body: { text } }, alice.identity.keys.messaging, bob.identity.keys.messaging.publicKey)
    return { id: sealed.envelope.id, bytes: sealed.bytes }
  }

  it('stores a replayed envelope once and acknowledges every copy', async () => {
    const { id, bytes } = sealFromAlice('replay me')
    const before = (await bob.status()).messaging
    const seen: string[] = []
    bob.on('message', (m) => { seen.push(m.id) })

    // the same frame twice on one stream, then once more on another stream
    const f = await rawStream(mallory, bob)
    for (let i = 0; i < 2; i++) {
      await f.write(bytes)
      const receipt = decodeReceipt((await f.read({ signal: AbortSignal.timeout(10_000) }))!)
      verifyReceipt(receipt, { id, from: alice.address, to: bob.address }, { keys: alice.identity.keys.messaging, peerKey: bob.identity.keys.messaging.publicKey })
    }
    await f.close()
    const g = await rawStream(mallory, bob)
    await g.write(bytes)
    assert.ok(await g.read({ signal: AbortSignal.timeout(10_000) }))
    await g.close()

    const stored = (await bob.messages(alice.address)).filter(m => m.id === id)
    assert.equal(stored.length, 1)
    assert.equal(stored[0].text, 'replay me')
    assert.deepEqual(seen, [id])
    const after = (await bob.status()).messaging
    assert.equal(after.received - before.received, 1)
    assert.equal(after.duplicates - before.duplicates, 2)
  })

  it('rejects an oversized frame, garbage and forgeries, stream by stream, and keeps serving others', async () => {
    const rejected: string[] = []
    bob.messaging.on('rejected', (r) => { rejected.push(r.code) })
    const count = async (): Promise<number> => (await bob.messages(alice.address)).length
    const stored = await count()

    // 1. a length prefix above the 256 KiB cap (the payload is never buffered)
    const big = await rawStream(mallory, bob)
    await big.write(new Uint8Array(MAX_FRAME_BYTES + 1))
    assert.ok(await remoteClosed(big), 'oversized frame closes the stream')

    // 2. random bytes inside a well-formed frame
    const junk = await rawStream(mallory, bob)
    await junk.write(randomBytes(200))
    assert.ok(await remoteClosed(junk), 'garbage closes the stream')

    // 3. raw garbage that is not even a frame (a huge varint)
    const raw = await mallory.dialProtocol(bob.multiaddrs()[0], MSG_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
    raw.send(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]))
    assert.ok(await remoteClosed(framed(raw)), 'bad varint closes the stream')

    // 4. Mallory claims to be Alice, sealing with her own key
    const mkey = x25519GenerateKeyPair()
    const forged = sealMessage({ from: alice.address, to: bob.address, body: { text: 'send me your keys' } }, mkey, bob.identity.keys.messaging.publicKey)
    const fs = await rawStream(mallory, bob)
    await fs.write(forged.bytes)
    assert.ok(await remoteClosed(fs), 'forged sender closes the stream')

    // 5. a message for someone else
    const other = sealMessage({ from: alice.address, to: '0x' + '11'.repeat(20), body: { text: 'not for bob' } }, alice.identity.keys.messaging, bob.identity.keys.messaging.publicKey)
    const ws = await rawStream(mallory, bob)
    await ws.write(other.bytes)
    assert.ok(await remoteClosed(ws), 'wrong recipient closes the stream')

    // 6. a receipt where an envelope is expected
    const rc = await rawStream(mallory, bob)
    await rc.write(encodeFrame(createReceipt({ id: forged.envelope.id, from: alice.address, to: bob.address }, { keys: mkey, peerKey: bob.identity.keys.messaging.publicKey })))
    assert.ok(await remoteClosed(rc), 'unexpected frame type closes the stream')

    await waitFor(() => rejected.length >= 6, 'six rejections')
    assert.ok(rejected.includes('FORGED_SENDER'), rejected.join(','))
    assert.ok(rejected.includes('WRONG_RECIPIENT'), rejected.join(','))
    assert.ok(rejected.includes('MALFORMED_FRAME'), rejected.join(','))
    assert.ok(rejected.includes('MESSAGE_TOO_LARGE'), rejected.join(','))
    assert.equal(await count(), stored, 'nothing was stored')

    // the node still serves honest peers, and Mallory's connection was not what broke it
    const ok = await alice.send(bob.address, 'still there?')
    assert.equal(ok.status, 'delivered')
    const back = await bob.send(alice.address, 'yes')
    assert.equal(back.status, 'delivered')
    assert.ok(bob.p2p.connectedPeers().length >= 1)
  })

  it('rate-limits a peer that floods frames', async () => {
    const limited = await h.node({ messaging: { rateLimit: { capacity: 3, refillPerSecond: 0.001 } } })
    await waitResolvable(limited, alice)
    const f = await rawStream(mallory, limited)
    let receipts = 0
    let closed = false
    for (let i = 0; i < 6 && !closed; i++) {
      const sealed = sealMessage({ from: alice.address, to: limited.address, body: { text: `flood ${i}` } }, alice.identity.keys.messaging, limited.identity.keys.messaging.publicKey)
      try {
        await f.write(sealed.bytes)
        const reply = await f.read({ signal: AbortSignal.timeout(10_000) })
        if (reply == null) closed = true
        else receipts++
      } catch {
        closed = true
      }
    }
    assert.equal(receipts, 3)
    assert.ok(closed)
    assert.equal((await limited.messages(alice.address)).length, 3)
    // another peer (alice herself) is not affected by mallory's budget
    assert.equal((await alice.send(limited.address, 'hi')).status, 'delivered')
  })
})
