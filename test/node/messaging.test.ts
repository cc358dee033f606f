import assert from 'node:assert/strict'
import { NodeHarness, waitFor, waitResolvable } from './helpers.ts'
import type { StoredMessage } from '../../src/store/index.ts'

describe('node: messaging between TokenimNodes', function () {
  this.timeout(120_000)
  const h = new NodeHarness()
  after(async () => { await h.cleanup() })

  it('three nodes that know only a bootstrap peer find each other by address (DHT) and talk both ways', async () => {
    const [a, b, c] = await Promise.all([h.node(), h.node(), h.node()])
    const inbox = new Map<string, StoredMessage[]>()
    for (const n of [a, b, c]) {
      inbox.set(n.address, [])
      n.on('message', (m) => { inbox.get(n.address)?.push(m) })
    }
    await waitResolvable(a, b)
    await waitResolvable(b, c)
    await waitResolvable(c, a)

    const ab = await a.send(b.address, 'hello bob')
    assert.equal(ab.status, 'delivered')
    const ba = await b.send(a.address.toLowerCase(), 'hi alice')
    assert.equal(ba.status, 'delivered')
    const ca = await c.send(a.address, 'carol here')
    const bc = await b.send(c.address, 'bob to carol')
    assert.equal(ca.status, 'delivered')
    assert.equal(bc.status, 'delivered')

    await waitFor(() => inbox.get(a.address)?.length === 2, 'a to receive two messages')
    const fromB = (await a.messages(b.address))
    assert.deepEqual(fromB.map(m => [m.text, m.direction, m.status]), [['hello bob', 'out', 'delivered'], ['hi alice', 'in', 'received']])
    const atB = await b.messages(a.address)
    assert.deepEqual(atB.map(m => m.id), [ab.id, ba.id])
    assert.equal(atB[0].from, a.address.toLowerCase())
    assert.equal(atB[0].to, b.address.toLowerCase())
    assert.equal(typeof atB[0].receivedAt, 'number')
    assert.deepEqual((await c.messages(b.address)).map(m => m.text), ['bob to carol'])
    assert.deepEqual((await a.conversations()).map(s => s.peer).sort(), [b.address, c.address].map(x => x.toLowerCase()).sort())
    const all = await a.messages()
    assert.equal(all.length, 3)
    assert.deepEqual(all.map(m => m.ts), [...all.map(m => m.ts)].sort((x, y) => x - y))
    assert.deepEqual((await a.messages(undefined, { limit: 2 })).map(m => m.id), all.slice(0, 2).map(m => m.id))
    const status = await a.status()
    assert.equal(status.outbox, 0)
    assert.ok(status.peers >= 1)
    assert.equal(status.messaging.received, 2)
    assert.ok((status.recordSeq ?? 0) >= 1)

    // history survives a restart (same object, and a new node on the same data dir)
    await b.stop()
    await b.stop()
    await b.start()
    assert.deepEqual((await b.messages(a.address)).map(m => m.id), [ab.id, ba.id])
    await b.stop()
    const b2 = await h.node({ dataDir: b.dataDir })
    assert.equal(b2.address, b.address)
    assert.deepEqual((await b2.messages(a.address)).map(m => [m.id, m.status]), [[ab.id, 'received'], [ba.id, 'delivered']])
    const again = await a.send(b2.address, 'after restart')
    assert.equal(again.status, 'delivered')
  })

  it('queues messages for an offline node and delivers them when it is back, also after the sender restarts', async () => {
    const [a, c] = await Promise.all([h.node(), h.node()])
    await waitResolvable(a, c)
    assert.equal((await a.send(c.address, 'warm-up')).status, 'delivered')

    await c.stop()
    const first = await a.send(c.address, 'while you were away 1')
    assert.equal(first.status, 'queued')
    const second = await a.send(c.address, 'while you were away 2')
    assert.equal(second.status, 'queued')
    assert.equal((await a.status()).outbox, 2)
    assert.deepEqual((await a.messages(c.address)).slice(1).map(m => m.status), ['queued', 'queued'])

    // the sender restarts while the recipient is still offline: the outbox is on disk
    await a.stop()
    await a.start()
    assert.equal((await a.status()).outbox, 2)

    // the recipient comes back (new port): the sender's retries find its new record and deliver
    await c.start()
    await waitFor(async () => (await a.status()).outbox === 0, 'outbox to drain', 60_000)
    const atC = await c.messages(a.address)
    assert.deepEqual(atC.map(m => m.text), ['warm-up', 'while you were away 1', 'while you were away 2'])
    assert.deepEqual((await a.messages(c.address)).map(m => m.status), ['delivered', 'delivered', 'delivered'])
  })
})
