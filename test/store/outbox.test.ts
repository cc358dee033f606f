import assert from 'node:assert/strict'
import { openStore } from '../../src/store/index.ts'
import { isTokenimError } from '../../src/errors.ts'
import type { OutboxEntry, Store } from '../../src/store/index.ts'
import { msg, openTempStore, peer, tamper } from './helpers.ts'
import { Level } from 'level'

async function collectAll<T> (it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

/** the store key of message `id` (read behind the store's back; the store must be closed) */
async function keyOf (path: string, id: string): Promise<string> {
  const db = new Level<string, string>(path, { keyEncoding: 'utf8', valueEncoding: 'utf8' })
  await db.open()
  try {
    return await db.sublevel<string, string>('msg-id', { keyEncoding: 'utf8', valueEncoding: 'utf8' }).get(id) as string
  } finally {
    await db.close()
  }
}

function entry (id: string, nextAttemptAt: number, over: Partial<OutboxEntry> = {}): OutboxEntry {
  return { id, to: peer(1), attempts: 0, nextAttemptAt, envelope: new Uint8Array([1, 2, 3, id.length]), ...over }
}

describe('store: outbox and seen', () => {
  let cleanup: () => Promise<void>
  let path: string
  let store: Store

  beforeEach(async () => {
    ({ store, path, cleanup } = await openTempStore())
  })

  afterEach(async () => {
    if (store.isOpen) await store.close()
    await cleanup()
  })

  it('addOutgoing writes message and outbox entry together, once', async () => {
    const m = msg({ direction: 'out', peer: peer(1) })
    assert.deepEqual(await store.addOutgoing(m, entry(m.id, 100)), { added: true })
    assert.deepEqual(await store.addOutgoing(m, entry(m.id, 999)), { added: false })
    assert.equal(await store.outboxSize(), 1)
    assert.equal((await store.getOutbox(m.id))?.nextAttemptAt, 100)
    assert.equal(await store.countMessages(peer(1)), 1)
    // invalid entry → nothing written
    const m2 = msg({ direction: 'out', peer: peer(1) })
    await assert.rejects(store.addOutgoing(m2, entry('other', 1)), (e: unknown) => isTokenimError(e, 'INVALID_ARGUMENT'))
    await assert.rejects(store.addOutgoing(m2, { ...entry(m2.id, 1), envelope: 'nope' as unknown as Uint8Array }), (e: unknown) => isTokenimError(e, 'INVALID_ARGUMENT'))
    assert.equal(await store.getMessage(m2.id), undefined)
    assert.equal(await store.outboxSize(), 1)
  })

  it('addOutgoingMany writes several sends in one call; repeated and stored ids are not added; one invalid item writes nothing', async () => {
    const [a, b, c] = [1, 2, 3].map(() => msg({ direction: 'out', peer: peer(1) }))
    assert.deepEqual(await store.addOutgoingMany([{ msg: a, entry: entry(a.id, 10) }]), [true])
    assert.deepEqual(await store.addOutgoingMany([
      { msg: b, entry: entry(b.id, 20) },
      { msg: a, entry: entry(a.id, 99) },
      { msg: c, entry: entry(c.id, 30) },
      { msg: b, entry: entry(b.id, 98) }
    ]), [true, false, true, false])
    assert.deepEqual((await store.outbox()).map(e => [e.id, e.nextAttemptAt]), [[a.id, 10], [b.id, 20], [c.id, 30]])
    assert.equal((await store.conversation(peer(1)))?.count, 3)
    const d = msg({ direction: 'out', peer: peer(1) })
    await assert.rejects(store.addOutgoingMany([{ msg: d, entry: entry(d.id, 1) }, { msg: { ...d, direction: 'in' }, entry: entry(d.id, 1) }]),
      (e: unknown) => isTokenimError(e, 'INVALID_MESSAGE'))
    assert.equal(await store.getMessage(d.id), undefined)
    assert.deepEqual(await store.addOutgoingMany([]), [])
  })

  it('markDeliveredMany sets delivered on outgoing rows and keeps every other field; incoming, delivered and unknown ones are left', async () => {
    const attachment = { cid: 'bafkreidummy', key: 'k'.repeat(43), name: 'a.png', mime: 'image/png', size: 12, sha256: 'ab'.repeat(32) }
    const outs = [msg({ direction: 'out', text: 'plain' }), msg({ direction: 'out', text: '日本語 🙂'.repeat(200), attachment }), msg({ direction: 'out', text: 'odd row' })]
    for (const m of outs) await store.addOutgoing(m, entry(m.id, 100))
    const incoming = msg({ direction: 'in' })
    await store.addMessage(incoming)
    // a row written behind the store's back with a status that is not a text: decoded and updated as before
    await store.close()
    await tamper(path, 'msg', (await keyOf(path, outs[2].id)), (v) => ({ ...(v as object), status: ['queued'] }))
    store = await openStore(path)
    assert.deepEqual(await store.markDeliveredMany([outs[0].id, outs[1].id, outs[2].id, incoming.id, 'unknown-id']), [true, true, true, false, false])
    for (const m of outs.slice(0, 2)) assert.deepEqual(await store.getMessage(m.id), { ...m, status: 'delivered' })
    assert.equal((await store.getMessage(outs[2].id))?.status, 'delivered')
    assert.deepEqual(await store.getMessage(incoming.id), incoming)
    assert.equal(await store.outboxSize(), 0)
    assert.deepEqual(await store.markDeliveredMany([outs[0].id]), [false])
  })

  it('messagesWithAttachments gives the messages with an attachment, in store order, and only those', async () => {
    const attachment = { cid: 'bafkreidummy', key: 'k'.repeat(43), name: 'a.png', mime: 'image/png', size: 12, sha256: 'ab'.repeat(32) }
    const ms = Array.from({ length: 40 }, (_, i) => msg({ peer: peer(1 + (i % 3)), text: i % 2 === 0 ? 'x'.repeat(i * 50) : '日本 🙂', ...(i % 7 === 0 ? { attachment } : {}) }))
    await store.addMessages(ms)
    // rewritten behind the store's back (in cborg's key order): one with an attachment and a float field the
    // byte reader skips, one whose attachment is null (no attachment)
    const withOne = ms.find(m => m.attachment !== undefined) as typeof ms[number]
    const without = ms.find(m => m.attachment === undefined) as typeof ms[number]
    await store.close()
    await tamper(path, 'msg', await keyOf(path, withOne.id), (v) => ({ ...(v as object), extra: 1.5 }))
    await tamper(path, 'msg', await keyOf(path, without.id), (v) => ({ ...(v as object), attachment: null }))
    store = await openStore(path)
    const want = (await collectAll(store.allMessages())).filter(m => m.attachment !== undefined && m.attachment !== null)
    const got = await collectAll(store.messagesWithAttachments())
    assert.equal(got.length, 6)
    assert.deepEqual(got, want)
  })

  it('dueOutbox by nextAttemptAt, reschedule, markDelivered', async () => {
    const ms = [msg({ direction: 'out' }), msg({ direction: 'out' }), msg({ direction: 'out' })]
    await store.addOutgoing(ms[0], entry(ms[0].id, 300))
    await store.addOutgoing(ms[1], entry(ms[1].id, 100))
    await store.addOutgoing(ms[2], entry(ms[2].id, 200))
    assert.deepEqual((await store.dueOutbox(50)).map(e => e.id), [])
    assert.deepEqual((await store.dueOutbox(200)).map(e => e.id), [ms[1].id, ms[2].id])
    assert.deepEqual((await store.dueOutbox(1000, 1)).map(e => e.id), [ms[1].id])
    assert.deepEqual((await store.outbox()).map(e => e.id), [ms[1].id, ms[2].id, ms[0].id])
    const got = (await store.dueOutbox(100))[0]
    assert.deepEqual(got.envelope, new Uint8Array([1, 2, 3, ms[1].id.length]))
    assert.equal(Object.getPrototypeOf(got.envelope), Uint8Array.prototype)

    const r = await store.rescheduleOutbox(ms[1].id, 500, 'peer unreachable')
    assert.equal(r?.attempts, 1)
    assert.equal(r?.lastError, 'peer unreachable')
    assert.deepEqual((await store.dueOutbox(300)).map(e => e.id), [ms[2].id, ms[0].id])
    assert.deepEqual((await store.dueOutbox(500)).map(e => e.id), [ms[2].id, ms[0].id, ms[1].id])
    assert.equal((await store.rescheduleOutbox(ms[1].id, 600))?.attempts, 2)
    assert.equal(await store.rescheduleOutbox('unknown', 600), undefined)

    assert.equal(await store.markDelivered(ms[2].id), true)
    assert.equal((await store.getMessage(ms[2].id))?.status, 'delivered')
    assert.equal(await store.getOutbox(ms[2].id), undefined)
    assert.equal(await store.markDelivered(ms[2].id), false)
    assert.deepEqual((await store.dueOutbox(10_000)).map(e => e.id), [ms[0].id, ms[1].id])

    assert.equal(await store.markFailed(ms[0].id, 'gave up'), true)
    assert.equal((await store.getMessage(ms[0].id))?.status, 'failed')
    assert.equal(await store.outboxSize(), 1)
  })

  it('enqueue replaces an entry and its due time; the outbox survives a reopen', async () => {
    await store.enqueue(entry('e1', 100))
    await store.enqueue(entry('e1', 900, { attempts: 3 }))
    assert.equal(await store.outboxSize(), 1)
    assert.deepEqual(await store.dueOutbox(500), [])
    await store.close()
    store = await openStore(path)
    const [e] = await store.dueOutbox(900)
    assert.equal(e.id, 'e1')
    assert.equal(e.attempts, 3)
  })

  it('markSeen is true once per id; pruneSeen forgets old ids', async () => {
    assert.equal(await store.markSeen('env-1', 1000), true)
    assert.equal(await store.markSeen('env-1', 1000), false)
    assert.equal(await store.markSeen('env-1', 5000), false)
    assert.equal(await store.markSeen('env-2', 2000), true)
    assert.equal(await store.markSeen('env-3', 3000), true)
    const concurrent = await Promise.all([store.markSeen('env-4', 4000), store.markSeen('env-4', 4000)])
    assert.deepEqual(concurrent.sort(), [false, true])
    assert.equal(await store.pruneSeen(2500), 2)
    assert.equal(await store.hasSeen('env-1'), false)
    assert.equal(await store.hasSeen('env-3'), true)
    assert.equal(await store.markSeen('env-1', 6000), true)
    await assert.rejects(store.markSeen('', 1), (e: unknown) => isTokenimError(e, 'INVALID_ARGUMENT'))
  })
})
