import assert from 'node:assert/strict'
import { openStore } from '../../src/store/index.ts'
import { isTokenimError } from '../../src/errors.ts'
import type { Store, StoredMessage } from '../../src/store/index.ts'
import { ME, collect, deleteKey, msg, openTempStore, peer, tamper } from './helpers.ts'

describe('store: messages', () => {
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

  it('orders a conversation by (ts, id), including messages with the same ts', async () => {
    const p = peer(7)
    const input = [
      msg({ peer: p, id: 'c', ts: 2000 }),
      msg({ peer: p, id: 'b', ts: 1000 }),
      msg({ peer: p, id: 'a', ts: 2000 }),
      msg({ peer: p, id: 'z', ts: 999 }),
      msg({ peer: p, id: 'B', ts: 2000 }),
      msg({ peer: p, id: 'x', ts: 10_000_000_000_000 })
    ]
    for (const m of input) assert.deepEqual(await store.addMessage(m), { added: true })
    const ids = (await collect(store.messages(p))).map(m => m.id)
    assert.deepEqual(ids, ['z', 'b', 'B', 'a', 'c', 'x'])
    const rev = (await collect(store.messages(p, { reverse: true }))).map(m => m.id)
    assert.deepEqual(rev, ['x', 'c', 'a', 'B', 'b', 'z'])
    assert.deepEqual((await collect(store.messages(p, { since: 1000, until: 2000 }))).map(m => m.id), ['b', 'B', 'a', 'c'])
    assert.deepEqual((await collect(store.messages(p, { since: 1001, limit: 2 }))).map(m => m.id), ['B', 'a'])
    assert.deepEqual((await collect(store.messages(p, { until: 1999, reverse: true, limit: 1 }))).map(m => m.id), ['b'])
    const sum = await store.conversation(p)
    assert.deepEqual(sum, { peer: p, count: 6, firstTs: 999, lastTs: 10_000_000_000_000, lastMessageId: 'x' })
  })

  it('stores addresses lowercase and returns a clean copy', async () => {
    const upper = '0x' + 'AB'.repeat(20)
    const m = { ...msg({ peer: upper.toLowerCase() }), conversation: upper, from: upper, extra: 'dropped' } as StoredMessage
    await store.addMessage(m)
    const got = await store.getMessage(m.id)
    assert.ok(got)
    assert.equal(got.conversation, upper.toLowerCase())
    assert.equal(got.from, upper.toLowerCase())
    assert.equal((got as unknown as Record<string, unknown>).extra, undefined)
    assert.deepEqual(Object.keys(got), ['id', 'conversation', 'from', 'to', 'ts', 'text', 'direction', 'status'])
    // lookup with a mixed-case address works
    assert.equal((await collect(store.messages(upper))).length, 1)
  })

  it('keeps attachments and receivedAt', async () => {
    const m = msg({
      receivedAt: 1_700_000_000_999,
      attachment: { cid: 'bafyfoo', key: 'a2V5', name: 'cat.png', mime: 'image/png', size: 1234, sha256: 'ab'.repeat(32) }
    })
    await store.addMessage(m)
    assert.deepEqual(await store.getMessage(m.id), m)
  })

  it('addMessage is idempotent by id', async () => {
    const m = msg()
    assert.deepEqual(await store.addMessage(m), { added: true })
    assert.deepEqual(await store.addMessage({ ...m, text: 'changed', ts: m.ts + 5 }), { added: false })
    assert.equal(await store.countMessages(), 1)
    assert.equal((await store.getMessage(m.id))?.text, m.text)
    assert.deepEqual(await store.checkConsistency(), [])
  })

  it('addMessages is idempotent: a rerun adds nothing and counts stay right', async () => {
    const batch: StoredMessage[] = []
    for (let i = 0; i < 300; i++) batch.push(msg({ peer: peer(1 + (i % 3)), ts: 5000 + i }))
    const withDupes = [...batch, batch[0], batch[10]]
    assert.deepEqual(await store.addMessages(withDupes), { added: 300, skipped: 2 })
    assert.deepEqual(await store.addMessages(batch), { added: 0, skipped: 300 })
    // a partial rerun overlapping new ones
    const more = [msg({ peer: peer(1), ts: 1 }), ...batch.slice(0, 50)]
    assert.deepEqual(await store.addMessages(more), { added: 1, skipped: 50 })
    assert.equal(await store.countMessages(), 301)
    assert.equal(await store.countMessages(peer(1)), 101)
    assert.equal(await store.countMessages(peer(2)), 100)
    assert.equal((await store.conversation(peer(1)))?.firstTs, 1)
    assert.equal((await collect(store.allMessages())).length, 301)
    assert.deepEqual(await store.checkConsistency(), [])
  })

  it('concurrent adds of the same id give one row', async () => {
    const m = msg()
    const results = await Promise.all([store.addMessage(m), store.addMessage(m), store.addMessages([m, m])])
    assert.equal(results.filter(r => 'added' in r && r.added === true).length + results.filter(r => (r as { added: unknown }).added === 1).length, 1)
    assert.equal(await store.countMessages(), 1)
    assert.deepEqual(await store.checkConsistency(), [])
  })

  it('a batch with one invalid message writes nothing', async () => {
    const good = [msg(), msg(), msg()]
    const bad = { ...msg(), ts: Number.NaN }
    await assert.rejects(store.addMessages([...good, bad, msg()]), (err: unknown) => {
      assert.ok(isTokenimError(err, 'INVALID_MESSAGE'))
      assert.equal(err.info.index, 3)
      assert.equal(err.info.field, 'ts')
      return true
    })
    assert.equal(await store.countMessages(), 0)
    assert.deepEqual(await collect(store.allMessages()), [])
    for (const m of good) assert.equal(await store.getMessage(m.id), undefined)
  })

  it('validates messages → INVALID_MESSAGE', async () => {
    const cases: Array<Partial<Record<keyof StoredMessage, unknown>>> = [
      { id: '' },
      { id: 'x'.repeat(129) },
      { id: 'has space' },
      { id: 42 },
      { ts: Infinity },
      { ts: -1 },
      { ts: 1.5 },
      { conversation: 'bob' },
      { from: '0x1234' },
      { direction: 'sideways' },
      { status: 'lost' },
      { text: 7 },
      { attachment: { cid: 'c', key: 'k', name: 'n', mime: 'm', size: 1, sha256: 'nothex' } },
      { from: peer(99) } // incoming message must come from the conversation's peer
    ]
    for (const c of cases) {
      await assert.rejects(store.addMessage({ ...msg(), ...c } as StoredMessage), (err: unknown) => isTokenimError(err, 'INVALID_MESSAGE'), JSON.stringify(c))
    }
    assert.equal(await store.countMessages(), 0)
    assert.ok((await store.addMessage(msg({ id: 'x'.repeat(128) }))).added)
  })

  it('updateMessageStatus', async () => {
    const m = msg({ direction: 'out' })
    await store.addMessage(m)
    const u = await store.updateMessageStatus(m.id, 'sent')
    assert.equal(u.status, 'sent')
    assert.equal((await store.getMessage(m.id))?.status, 'sent')
    await assert.rejects(store.updateMessageStatus('nope', 'sent'), (err: unknown) => isTokenimError(err, 'MESSAGE_NOT_FOUND'))
    await assert.rejects(store.updateMessageStatus(m.id, 'bogus' as 'sent'), (err: unknown) => isTokenimError(err, 'INVALID_ARGUMENT'))
    assert.equal(await store.countMessages(), 1)
  })

  it('streams ~5,000 messages in 20 conversations, each in time order', async function () {
    this.timeout(60_000)
    const perConv = 250
    const all: StoredMessage[] = []
    for (let c = 0; c < 20; c++) {
      for (let i = 0; i < perConv; i++) {
        // shuffled timestamps with ties
        all.push(msg({ peer: peer(1000 + c), ts: 1_000_000 + ((i * 7919) % perConv) * 10 + (i % 2), direction: i % 3 === 0 ? 'out' : 'in' }))
      }
    }
    // insert in several chunks, out of order
    all.reverse()
    for (let i = 0; i < all.length; i += 1000) await store.addMessages(all.slice(i, i + 1000))
    assert.equal(await store.countMessages(), 5000)

    let n = 0
    let prev: StoredMessage | undefined
    const convsSeen: string[] = []
    for await (const m of store.allMessages()) {
      n++
      if (prev === undefined || prev.conversation !== m.conversation) {
        assert.ok(!convsSeen.includes(m.conversation), 'conversations are contiguous')
        convsSeen.push(m.conversation)
      } else {
        assert.ok(prev.ts < m.ts || (prev.ts === m.ts && prev.id < m.id), `order ${prev.id}@${prev.ts} then ${m.id}@${m.ts}`)
      }
      prev = m
    }
    assert.equal(n, 5000)
    assert.equal(convsSeen.length, 20)
    assert.deepEqual(convsSeen, [...convsSeen].sort())

    const convs = await store.conversations()
    assert.equal(convs.length, 20)
    for (const c of convs) assert.equal(c.count, perConv)

    // the stream is lazy: stopping early is fine and cheap
    let k = 0
    for await (const _ of store.allMessages()) { if (++k === 3) break }
    assert.equal(k, 3)

    // since/until across conversations filters on ts
    const window = await collect(store.messages(undefined, { since: 1_000_000, until: 1_000_011 }))
    assert.equal(window.length, 20 * 2)
    assert.ok(window.every(m => m.ts >= 1_000_000 && m.ts <= 1_000_011))

    assert.deepEqual(await store.checkConsistency(), [])
  })

  it('a scan read in chunks (1,000 rows, 1 MiB per read, the next one read ahead) gives every row once, in order, at any limit', async function () {
    this.timeout(60_000)
    const p = peer(77)
    // 2,500 rows of ~600 bytes: reads cut by their row count and by their byte size
    const input = Array.from({ length: 2500 }, (_, i) => msg({ peer: p, id: `k-${String(i).padStart(5, '0')}`, ts: 5_000 + i, text: 'x'.repeat(500 + (i % 97)) }))
    for (let i = 0; i < input.length; i += 500) await store.addMessages(input.slice(i, i + 500))
    const ids = input.map(m => m.id)
    assert.deepEqual((await collect(store.messages(p))).map(m => m.id), ids)
    assert.deepEqual((await collect(store.allMessages())).map(m => m.id), ids)
    for (const limit of [1, 999, 1000, 1001, 2000, 2499, 2500, 2501]) {
      assert.deepEqual((await collect(store.messages(p, { limit }))).map(m => m.id), ids.slice(0, limit), `limit ${limit}`)
      assert.deepEqual((await collect(store.messages(p, { limit, reverse: true }))).map(m => m.id), [...ids].reverse().slice(0, limit), `reverse, limit ${limit}`)
    }
    // across conversations, a time window (filtered row by row) with a limit
    assert.deepEqual((await collect(store.messages(undefined, { since: 5_000 + 995, until: 5_000 + 2100, limit: 1050 }))).map(m => m.id), ids.slice(995, 995 + 1050))
    // a reader that stops while the next read is under way leaves nothing open
    for await (const m of store.allMessages()) if (m.id === ids[1000]) break
    await store.close()
  })

  it('a snapshot sees a fixed state while writes continue', async () => {
    await store.addMessages([msg(), msg()])
    const snap = store.snapshot()
    try {
      await store.addMessage(msg())
      assert.equal(await snap.countMessages(), 2)
      assert.equal((await collect(snap.allMessages())).length, 2)
      assert.equal(await store.countMessages(), 3)
    } finally {
      await snap.close()
    }
  })

  it('checkConsistency detects a broken count and rebuildIndexes fixes it', async () => {
    const p = peer(5)
    await store.addMessages([msg({ peer: p, ts: 10 }), msg({ peer: p, ts: 20 }), msg({ peer: peer(6), ts: 30 })])
    assert.deepEqual(await store.checkConsistency(), [])
    await store.close()
    await tamper(path, 'conv', p, v => ({ ...(v as object), count: 5 }))
    await tamper(path, 'conv', peer(8), () => ({ peer: peer(8), count: 1, firstTs: 1, lastTs: 1, lastMessageId: 'ghost' }))
    store = await openStore(path)
    const problems = await store.checkConsistency()
    assert.deepEqual(problems.map(p => p.kind).sort(), ['count-mismatch', 'empty-conversation'])
    const cm = problems.find(x => x.kind === 'count-mismatch')
    assert.equal(cm?.conversation, p)
    assert.equal(cm?.expected, 2)
    assert.equal(cm?.actual, 5)

    const fixes = await store.rebuildIndexes()
    assert.equal(fixes.conversations, 2)
    assert.deepEqual(await store.checkConsistency(), [])
    assert.equal(await store.countMessages(), 3)
  })

  it('checkConsistency detects a broken id index', async () => {
    const a = msg()
    await store.addMessage(a)
    await store.close()
    await deleteKey(path, 'msg-id', a.id)
    store = await openStore(path)
    assert.deepEqual((await store.checkConsistency()).map(p => p.kind), ['index-missing'])
    assert.equal((await store.rebuildIndexes()).indexFixed, 1)
    assert.deepEqual(await store.checkConsistency(), [])
    assert.equal((await store.getMessage(a.id))?.id, a.id)
  })

  it('uses ME as the other side of a conversation', async () => {
    const out = msg({ direction: 'out', peer: peer(3) })
    await store.addMessage(out)
    const got = await store.getMessage(out.id)
    assert.equal(got?.from, ME)
    assert.equal(got?.to, peer(3))
  })
})
