import assert from 'node:assert/strict'
import { openStore, repairStore } from '../../src/store/index.ts'
import type { OutboxEntry, Store } from '../../src/store/index.ts'
import { collect, msg, openTempStore, peer, tamper } from './helpers.ts'

function entry (id: string, to: string): OutboxEntry {
  return { id, to, attempts: 0, nextAttemptAt: 1, envelope: Uint8Array.of(1, 2, 3) }
}

/**
 * ConversationRevision.rev, the change token the backup's conversation cache keys on: every write of a
 * conversation's message rows replaces it (in the same batch), writes that change no row keep it, and
 * other conversations' tokens are left alone.
 */
describe('store: the conversation change token (ConversationRevision.rev)', () => {
  let cleanup: () => Promise<void>
  let path: string
  let store: Store
  const A = peer(1)
  const B = peer(2)

  beforeEach(async () => {
    ({ store, path, cleanup } = await openTempStore())
  })

  afterEach(async () => {
    if (store.isOpen) await store.close()
    await cleanup()
  })

  const revs = async (): Promise<Record<string, string | undefined>> =>
    Object.fromEntries((await store.revisions()).map(c => [c.peer, c.rev]))

  /** runs a write and reports which conversations' tokens it replaced (and that every token is set) */
  const changedBy = async (write: () => Promise<unknown>): Promise<string[]> => {
    const before = await revs()
    await write()
    const after = await revs()
    for (const [p, r] of Object.entries(after)) assert.ok(typeof r === 'string' && r.length >= 16, `${p} has a token`)
    return Object.keys(after).filter(p => after[p] !== before[p]).sort()
  }

  it('adds, status updates, receipts and failures replace the token of the conversations they write, and only theirs', async () => {
    const outA = msg({ peer: A, direction: 'out' })
    const outA2 = msg({ peer: A, direction: 'out' })
    const outB = msg({ peer: B, direction: 'out' })
    assert.deepEqual(await changedBy(() => store.addMessages([msg({ peer: A }), msg({ peer: B })])), [A, B])
    assert.deepEqual(await changedBy(() => store.addMessages([msg({ peer: A })])), [A])
    assert.deepEqual(await changedBy(() => store.addOutgoing(outA, entry(outA.id, A))), [A])
    assert.deepEqual(await changedBy(() => store.addOutgoingMany([{ msg: outA2, entry: entry(outA2.id, A) }, { msg: outB, entry: entry(outB.id, B) }])), [A, B])
    assert.deepEqual(await changedBy(() => store.addIncoming([msg({ peer: B })])), [B])
    assert.deepEqual(await changedBy(() => store.updateMessageStatus(outA.id, 'sent')), [A])
    assert.deepEqual(await changedBy(() => store.markDelivered(outA.id)), [A])
    assert.deepEqual(await changedBy(() => store.markDeliveredMany([outB.id])), [B])
    assert.deepEqual(await changedBy(() => store.markFailed(outA2.id, 'gone')), [A])
    // writes that change no row keep every token
    assert.deepEqual(await changedBy(() => store.addMessages([msg({ peer: A, id: outA.id })])), [])
    assert.deepEqual(await changedBy(() => store.updateMessageStatus(outA.id, 'delivered')), [])
    assert.deepEqual(await changedBy(() => store.markDeliveredMany([outA.id, outB.id])), [])
    assert.deepEqual(await changedBy(() => store.setContact(A, 'alice')), [])
    assert.deepEqual(await store.checkConsistency(), [])
  })

  it('rebuildIndexes (and so a repair) gives every conversation a new token', async () => {
    await store.addMessages([msg({ peer: A }), msg({ peer: B })])
    const before = await revs()
    const fixes = await store.rebuildIndexes()
    assert.equal(fixes.conversations, 0, 'nothing was wrong')
    const after = await revs()
    assert.notEqual(after[A], before[A])
    assert.notEqual(after[B], before[B])
    await store.close()
    const repaired = await repairStore(path)
    store = repaired.store
    const again = await revs()
    assert.notEqual(again[A], after[A])
    assert.notEqual(again[B], after[B])
  })

  it('allMessages({ skip }) passes over the conversations skip names, asking once per conversation, from a snapshot too', async () => {
    const C = peer(3)
    await store.addMessages([A, B, C].flatMap(p => Array.from({ length: 5 }, () => msg({ peer: p }))))
    const asked: string[] = []
    const got = await collect(store.allMessages({ skip: p => { asked.push(p); return p !== B } }))
    assert.deepEqual(asked, [A, B, C])
    assert.deepEqual(got.map(m => m.id), (await collect(store.messages(B))).map(m => m.id))
    const snap = store.snapshot()
    try {
      await store.addMessages([msg({ peer: B })])
      const all = await collect(snap.allMessages({ skip: p => p === A }))
      assert.deepEqual(all.map(m => m.conversation), [...Array(5).fill(B), ...Array(5).fill(C)], 'the snapshot\'s rows only')
    } finally {
      await snap.close()
    }
  })

  it('a summary written without a token (an older store) gets one at open, kept by later opens', async () => {
    await store.addMessages([msg({ peer: A }), msg({ peer: B })])
    const kept = (await revs())[B]
    await store.close()
    // an older store: its summary has no token, and its meta no flag saying all have one
    await tamper(path, 'conv', A, v => { const { rev: _, ...old } = v as Record<string, unknown>; return old })
    await tamper(path, 'meta', 'conversationRevs', () => undefined)
    store = await openStore(path)
    const first = await revs()
    assert.ok(typeof first[A] === 'string' && first[A].length >= 16)
    assert.equal(first[B], kept, 'a token already there is left alone')
    await store.close()
    store = await openStore(path)
    assert.deepEqual(await revs(), first)
    // the scan is made once: with the flag set, later opens do not look for summaries without a token
    await store.close()
    await tamper(path, 'conv', B, v => { const { rev: _, ...old } = v as Record<string, unknown>; return old })
    store = await openStore(path)
    assert.equal((await revs())[B], undefined)
  })

  it('the append run (ConversationRevision.run) stays while rows are only added after the newest, and allMessages({ skip: { after } }) resumes after a row', async () => {
    const runOf = async (p: string): Promise<string | undefined> => (await store.revisions()).find(r => r.peer === p)?.run
    await store.addMessages([msg({ peer: A, ts: 100 }), msg({ peer: B, ts: 100 })])
    const r0 = await runOf(A)
    assert.ok(typeof r0 === 'string')
    await store.addMessages([msg({ peer: A, ts: 200 }), msg({ peer: A, ts: 300 })])
    assert.equal(await runOf(A), r0, 'appends keep it')
    await store.addMessages([msg({ peer: A, ts: 150 })])
    const r1 = await runOf(A)
    assert.notEqual(r1, r0, 'a row before the newest starts another')
    const [first] = await collect(store.messages(A))
    await store.updateMessageStatus(first.id, 'failed')
    assert.notEqual(await runOf(A), r1, 'a status update too')
    const rows = await collect(store.messages(A))
    const after = await collect(store.allMessages({ skip: p => p === A ? { after: { ts: rows[1].ts, id: rows[1].id } } : false }))
    assert.deepEqual(after.map(m => m.id), [...rows.slice(2), ...await collect(store.messages(B))].map(m => m.id))
  })
})
