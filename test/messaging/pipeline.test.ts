/**
 * The throughput pieces of messaging: group commit, the store's batched writes, and the long-lived
 * pipelined channel between two real nodes on 127.0.0.1 (many envelopes on one stream, receipts matched
 * by id, a dead channel replaced within the same attempt).
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isTokenimError } from '../../src/errors.ts'
import { GroupCommit, TurnBatch } from '../../src/messaging/batcher.ts'
import { MAX_FRAME_BYTES, MSG_PROTOCOL, newMessageId } from '../../src/messaging/index.ts'
import type { TokenimNode } from '../../src/node/index.ts'
import { framed } from '../../src/p2p/index.ts'
import { openStore } from '../../src/store/index.ts'
import type { StoredMessage } from '../../src/store/index.ts'
import { NodeHarness, waitResolvable } from '../node/helpers.ts'

describe('messaging: pipelining and group commit', function () {
  this.timeout(120_000)

  describe('GroupCommit', () => {
    it('writes concurrent items in one batch, each caller gets its own result, a bad item fails alone', async () => {
      const batches: number[][] = []
      const gc = new GroupCommit<number, number>(async (items) => {
        batches.push(items)
        if (items.includes(-1)) throw new Error('bad item')
        return items.map(i => i * 2)
      })
      const results = await Promise.all([1, 2, 3].map(async i => await gc.submit(i)))
      assert.deepEqual(results, [2, 4, 6])
      assert.deepEqual(batches, [[1, 2, 3]])

      batches.length = 0
      const mixed = await Promise.allSettled([4, -1, 5].map(async i => await gc.submit(i)))
      assert.deepEqual(mixed.map(r => r.status), ['fulfilled', 'rejected', 'fulfilled'])
      assert.deepEqual(batches, [[4, -1, 5], [4], [-1], [5]])
      await gc.idle()
    })
  })

  describe('TurnBatch', () => {
    it('hands back the jobs joined in one turn together, each with its own result; a later turn is not held', async () => {
      const tb = new TurnBatch()
      const order: string[] = []
      let finishSlow: (v: string) => void = () => {}
      const slow = new Promise<string>(resolve => { finishSlow = resolve })
      const a = tb.join(Promise.resolve('a')).then(v => { order.push(v) })
      const b = tb.join(slow).then(v => { order.push(v) })
      const c = tb.join(Promise.reject(new Error('c failed'))).catch((err: Error) => { order.push(err.message) })
      await new Promise(resolve => { setImmediate(resolve) })
      await new Promise(resolve => { setImmediate(resolve) })
      // a and c settled long ago, but their batch waits for b
      assert.deepEqual(order, [])
      // a job of a later turn is handed back without waiting for the earlier batch
      assert.equal(await tb.join(Promise.resolve('d')), 'd')
      assert.deepEqual(order, [])
      finishSlow('b')
      await Promise.all([a, b, c])
      assert.deepEqual(order, ['a', 'b', 'c failed'])
    })
  })

  describe('store batches', () => {
    let dir: string
    before(async () => { dir = await mkdtemp(join(tmpdir(), 'tokenim-pipeline-')) })
    after(async () => { await rm(dir, { recursive: true, force: true }) })

    it('addIncoming stores new ids and their seen marks in one call; markDeliveredMany finishes outbox entries', async () => {
      const store = await openStore(join(dir, 'store'))
      try {
        const peer = '0x' + 'ab'.repeat(20)
        const me = '0x' + 'cd'.repeat(20)
        const msg = (id: string, ts: number): StoredMessage => ({ id, conversation: peer, from: peer, to: me, ts, text: `m${ts}`, direction: 'in', status: 'received', receivedAt: ts })
        const [a, b, c] = [newMessageId(), newMessageId(), newMessageId()]
        assert.deepEqual(await store.addIncoming([msg(a, 1), msg(b, 2), msg(a, 1)]), [true, true, false])
        assert.ok(await store.hasSeen(a) && await store.hasSeen(b))
        // a replay (seen) and a new one in the same batch
        assert.deepEqual(await store.addIncoming([msg(b, 2), msg(c, 3)]), [false, true])
        assert.equal((await store.conversation(peer))?.count, 3)

        const out = (id: string, ts: number): StoredMessage => ({ id, conversation: peer, from: me, to: peer, ts, text: 'o', direction: 'out', status: 'queued' })
        const [x, y] = [newMessageId(), newMessageId()]
        for (const [id, ts] of [[x, 10], [y, 11]] as const) {
          await store.addOutgoing(out(id, ts), { id, to: peer, attempts: 0, nextAttemptAt: ts, envelope: new Uint8Array(0) })
        }
        assert.deepEqual(await store.markDeliveredMany([x, y, x]), [true, true, true])
        assert.deepEqual(await store.markDeliveredMany([x]), [false])
        assert.equal(await store.outboxSize(), 0)
        assert.equal((await store.getMessage(y))?.status, 'delivered')
      } finally {
        await store.close()
      }
    })
  })

  describe('between two nodes', () => {
    const h = new NodeHarness()
    let alice: TokenimNode
    let bob: TokenimNode
    const unlimited = { messaging: { retryBaseMs: 200, retryMaxMs: 1_000, rateLimit: { capacity: 1e6, refillPerSecond: 1e6 } } }
    before(async () => {
      [alice, bob] = await Promise.all([h.node(unlimited), h.node(unlimited)])
      await waitResolvable(alice, bob)
      await waitResolvable(bob, alice)
    })
    after(async () => { await h.cleanup() })

    const msgStreams = (node: TokenimNode): number =>
      node.p2p.libp2p.getConnections().flatMap(c => c.streams).filter(s => s.protocol === MSG_PROTOCOL).length

    it('pipelines 300 concurrent sends on one stream; every message stored once and delivered', async () => {
      const results = await Promise.all(Array.from({ length: 300 }, async (_, i) => await alice.send(bob.address, `pipelined ${i}`)))
      assert.ok(results.every(r => r.status === 'delivered'), results.filter(r => r.status !== 'delivered').length + ' not delivered')
      assert.equal(msgStreams(alice), 1, 'one outbound messaging stream')
      const stored = await bob.messages(alice.address)
      assert.equal(new Set(stored.map(m => m.id)).size, 300)
      const s = (await bob.status()).messaging
      assert.equal(s.received, 300)
      assert.equal(s.rejected, 0)
      assert.equal((await alice.messages(bob.address)).filter(m => m.status === 'delivered').length, 300)
    })

    it('replaces a channel the receiver reset, within the same send', async () => {
      assert.equal((await alice.send(bob.address, 'before')).status, 'delivered')
      for (const c of bob.p2p.libp2p.getConnections()) {
        for (const s of c.streams) if (s.protocol === MSG_PROTOCOL) s.abort(new Error('test reset'))
      }
      const r = await alice.send(bob.address, 'after the reset')
      assert.equal(r.status, 'delivered')
      assert.equal((await alice.status()).messaging.failedAttempts, 0)
    })

    it('refuses a send that stop() overtakes while its envelope is sealed (MESSAGING_NOT_STARTED); nothing is stored', async () => {
      const late = await h.node(unlimited)
      await waitResolvable(late, bob)
      const sending = late.messaging.send(bob.address, 'too late')
      await late.messaging.stop()
      await assert.rejects(sending, (err: unknown) => isTokenimError(err, 'MESSAGING_NOT_STARTED'))
      assert.equal(await late.store.outboxSize(), 0)
      assert.deepEqual(await late.messages(bob.address), [])
    })

    it('gives up on an envelope whose receipt does not come within the ack timeout (TimeoutError), the message stays queued', async () => {
      const quick = await h.node({ messaging: { retryBaseMs: 60_000, ackTimeoutMs: 300 } })
      const silent = await h.node(unlimited)
      await waitResolvable(quick, silent)
      // the recipient reads envelopes and never answers
      let read = 0
      await silent.p2p.unhandle(MSG_PROTOCOL)
      await silent.p2p.handle(MSG_PROTOCOL, (stream) => {
        const f = framed(stream, { maxFrameBytes: MAX_FRAME_BYTES })
        void (async () => { while (await f.read().catch(() => null) != null) read++ })()
      })
      const retries: string[] = []
      quick.messaging.on('retry', (e) => { retries.push(e.error) })
      const r = await quick.send(silent.address, 'no answer')
      assert.equal(r.status, 'queued')
      assert.equal(read, 1)
      assert.equal(retries.length, 1)
      assert.match(retries[0], /^TimeoutError: The operation was aborted due to timeout/)
      assert.equal((await quick.store.getOutbox(r.id))?.attempts, 1)
      assert.equal((await quick.store.getMessage(r.id))?.status, 'queued')
    })
  })
})
