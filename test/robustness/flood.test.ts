/**
 * A hostile peer floods /tokenim/msg/1.0.0 with 1,000 garbage frames and oversized frames over raw
 * libp2p streams. The node keeps serving others (a third node's messages are delivered during and after
 * the flood) and its live heap stays bounded.
 */
import assert from 'node:assert/strict'
import { MAX_FRAME_BYTES, MSG_PROTOCOL } from '../../src/messaging/index.ts'
import type { TokenimNode } from '../../src/node/index.ts'
import { framed } from '../../src/p2p/index.ts'
import type { P2PNode } from '../../src/p2p/index.ts'
import { NodeHarness, waitFor, waitResolvable } from '../node/helpers.ts'
import { int, liveHeap, prng, randomBytes } from './mutate.ts'

const GARBAGE = 1000
const OVERSIZED = 50
/** garbage streams open at once */
const PARALLEL = 16

describe('robustness: a peer flooding garbage and oversized frames', function () {
  this.timeout(120_000)
  const h = new NodeHarness()
  let bob: TokenimNode
  let carol: TokenimNode
  let mallory: P2PNode
  after(async () => { await h.cleanup() })

  before(async () => {
    [bob, carol] = await Promise.all([h.node(), h.node()])
    mallory = await h.rawNode([await h.bootstrapAddr()])
    await waitResolvable(carol, bob)
  })

  /** One stream: write `frames` length-prefixed frames (stop at the first failure), then let it go. */
  async function attack (frames: Uint8Array[], maxFrameBytes: number): Promise<void> {
    let stream
    try {
      stream = await mallory.dialProtocol(bob.multiaddrs()[0], MSG_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
    } catch {
      return // bob may refuse new streams for a while: that is his right
    }
    const f = framed(stream, { maxFrameBytes })
    try {
      for (const frame of frames) await f.write(frame, { signal: AbortSignal.timeout(10_000) })
      await f.read({ signal: AbortSignal.timeout(5_000) }).catch(() => null)
    } catch {
      // reset by bob
    } finally {
      f.abort(new Error('done'))
    }
  }

  /** A length prefix announcing `size` bytes, then 64 KiB of them, on a raw stream. */
  async function prefixOnly (size: number): Promise<void> {
    let stream
    try {
      stream = await mallory.dialProtocol(bob.multiaddrs()[0], MSG_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
    } catch {
      return
    }
    const prefix: number[] = []
    let v = size
    while (v >= 0x80) { prefix.push((v % 0x80) | 0x80); v = Math.floor(v / 0x80) }
    prefix.push(v)
    try {
      stream.send(Uint8Array.from(prefix))
      stream.send(new Uint8Array(64 * 1024))
      await framed(stream).read({ signal: AbortSignal.timeout(5_000) }).catch(() => null)
    } catch {
      // reset by bob
    } finally {
      stream.abort(new Error('done'))
    }
  }

  it('keeps delivering a third node\'s messages, with bounded memory', async function () {
    const rnd = prng(Number(process.env.TOKENIM_FUZZ_SEED ?? 777))
    const rejected = { count: 0 }
    bob.messaging.on('rejected', () => { rejected.count++ })
    // warm up the paths measured, then take the baseline
    assert.equal((await carol.send(bob.address, 'before')).status, 'delivered')
    const base = liveHeap()

    // 1,000 garbage frames: random bytes, truncated CBOR maps and valid CBOR of the wrong shape, several per stream
    const jobs: Array<() => Promise<void>> = []
    let made = 0
    while (made < GARBAGE) {
      const n = Math.min(GARBAGE - made, 1 + int(rnd, 8))
      const frames = Array.from({ length: n }, () => {
        const kind = int(rnd, 3)
        if (kind === 0) return randomBytes(rnd, 1 + int(rnd, 2000))
        if (kind === 1) return Uint8Array.of(0xa9, 0x61, 0x76, 0x01, ...randomBytes(rnd, int(rnd, 100)))
        return Uint8Array.of(0x82, 0x01, 0x02)
      })
      made += n
      jobs.push(async () => { await attack(frames, MAX_FRAME_BYTES) })
    }
    // oversized: a whole frame one byte over the cap, and length prefixes of 4 MiB to 4 GiB followed by
    // 64 KiB of payload (bob must refuse from the prefix; sending whole 4 MiB payloads would only measure
    // the attacker's own send buffers, which live in this process too)
    for (let i = 0; i < OVERSIZED; i++) {
      if (i % 2 === 0) jobs.push(async () => { await attack([new Uint8Array(MAX_FRAME_BYTES + 1)], 2 * MAX_FRAME_BYTES) })
      else jobs.push(async () => { await prefixOnly(2 ** (22 + int(rnd, 10))) })
    }
    // shuffle so oversized and garbage interleave
    for (let i = jobs.length - 1; i > 0; i--) { const j = int(rnd, i + 1); [jobs[i], jobs[j]] = [jobs[j], jobs[i]] }

    // carol keeps talking to bob while the flood runs
    const delivered: string[] = []
    let flooding = true
    const honest = (async () => {
      let k = 0
      while (flooding) {
        const r = await carol.send(bob.address, `during ${k++}`)
        if (r.status === 'delivered') delivered.push(r.id)
      }
    })()
    let peak = 0
    const t0 = Date.now()
    let next = 0
    await Promise.all(Array.from({ length: PARALLEL }, async () => {
      while (next < jobs.length) {
        await jobs[next++]()
        if (next % 100 === 0) peak = Math.max(peak, liveHeap() - base)
      }
    }))
    const floodMs = Date.now() - t0
    flooding = false
    await honest

    // after the flood: carol's messages (and a fresh one) are delivered and stored once
    const after = await carol.send(bob.address, 'after')
    assert.equal(after.status, 'delivered')
    const during = (await carol.messages(bob.address)).filter(m => m.text.startsWith('during '))
    await waitFor(async () => (await carol.messages(bob.address)).every(m => m.status === 'delivered'), 'carol\'s outbox delivered', 60_000)
    const atBob = new Set((await bob.messages(carol.address)).map(m => m.id))
    for (const m of during) assert.ok(atBob.has(m.id), `message ${m.text} reached bob`)
    assert.ok(during.length > 0 && delivered.length > 0, 'carol sent during the flood')
    assert.ok(rejected.count >= Math.min(100, GARBAGE / 10), `bob rejected ${rejected.count} streams`)

    const retained = liveHeap() - base
    peak = Math.max(peak, retained)
    assert.ok(peak < 64 * 1024 * 1024 && retained < 32 * 1024 * 1024, `live heap grew by ${(peak / 1048576).toFixed(1)} MiB at most, ${(retained / 1048576).toFixed(1)} MiB retained`)
    this.test!.title += ` (${GARBAGE} garbage + ${OVERSIZED} oversized frames in ${(floodMs / 1000).toFixed(1)} s, ${delivered.length} honest messages delivered during it, ${rejected.count} rejections, heap +${(peak / 1048576).toFixed(1)} MiB)`
  })
})
