import assert from 'node:assert/strict'
import * as cborg from 'cborg'
import { transcodeRow } from '../../src/backup/transcode.ts'
import { checkSegmentMessage, encodeMessage, toSegmentMessage } from '../../src/backup/schema.ts'
import type { StoredMessage } from '../../src/store/index.ts'
import { decodeRecord, encodeRecord, NOT_DECODED } from '../../src/util/cbor.ts'
import { buildBackup } from '../../src/backup/index.ts'
import type { BackupSource } from '../../src/backup/index.ts'
import { KEY, OWNER, attachmentCidFor, makeEnv, makeHistory, prng } from './helpers.ts'
import { openTempStore } from '../store/helpers.ts'

/** what the usual path gives for a row's bytes: the store's decoding, the check, the encoding (or an error) */
function usual (bytes: Uint8Array): { enc: Uint8Array, m: StoredMessage } | 'refused' {
  try {
    const d = decodeRecord(bytes)
    const m = (d === NOT_DECODED ? cborg.decode(bytes) : d) as StoredMessage
    const peer = typeof m?.conversation === 'string' ? m.conversation : ''
    return { enc: encodeMessage(checkSegmentMessage(toSegmentMessage(m), peer, {})), m }
  } catch {
    return 'refused'
  }
}

function same (bytes: Uint8Array, label: string): boolean {
  const t = transcodeRow(bytes)
  const u = usual(bytes)
  if (t === undefined) return false
  assert.notEqual(u, 'refused', `${label}: taken here, refused the usual way`)
  if (u === 'refused') return false
  assert.deepEqual(Buffer.from(t.enc), Buffer.from(u.enc), `${label}: the same encoding`)
  assert.equal(t.id, u.m.id, label)
  assert.equal(t.ts, u.m.ts, label)
  assert.equal(t.conversation, u.m.conversation, label)
  return true
}

describe('backup: segment messages made from stored rows (src/backup/transcode.ts)', () => {
  it('gives the usual path\'s encoding for generated rows (texts of every length, non-ASCII, receivedAt, null fields)', () => {
    const rnd = prng(3)
    const rows = makeHistory({ conversations: 5, messages: 600, seed: 9 })
    let taken = 0
    for (const [i, m] of rows.entries()) {
      const v: StoredMessage = { ...m }
      if (i % 7 === 0) v.text = 'é'.repeat(i % 40) + v.text + '😀'
      if (i % 11 === 0) v.text = 'x'.repeat(20 + Math.floor(rnd() * 70_000))
      if (i % 5 === 0) v.receivedAt = Math.floor(rnd() * 2 ** 52)
      if (i % 13 === 0) (v as unknown as Record<string, unknown>).receivedAt = null
      if (i % 17 === 0) (v as unknown as Record<string, unknown>).attachment = null
      if (i % 19 === 0) v.ts = [0, 23, 24, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1][i % 10]
      if (i % 3 === 0) v.text = ''
      const bytes = encodeRecord(v) as Uint8Array
      if (same(bytes, `row ${i}`)) taken++
      // keys in another order: the same message
      const reordered = Object.fromEntries(Object.entries(v).reverse())
      same(encodeRecord(reordered) as Uint8Array, `row ${i} reordered`)
    }
    assert.ok(taken > 500, `most rows taken (${taken})`)
  })

  it('leaves every damaged or unusual row to the usual path (which then refuses it or reads it the same)', () => {
    const base = makeHistory({ conversations: 2, messages: 1, seed: 4 })[0]
    const variants: Array<[string, unknown]> = [
      ['attachment', { ...base, attachment: { cid: 'x', key: 'k', name: 'n', mime: 'm', size: 1, sha256: 's' } }],
      ['extra field', { ...base, extra: 1 }],
      ['no text', { ...base, text: undefined }],
      ['no conversation', { ...base, conversation: undefined }],
      ['text a number', { ...base, text: 5 }],
      ['ts negative', { ...base, ts: -1 }],
      ['ts float', { ...base, ts: 1.5 }],
      ['ts a string', { ...base, ts: '1' }],
      ['receivedAt negative', { ...base, receivedAt: -5 }],
      ['receivedAt a string', { ...base, receivedAt: 'x' }],
      ['id empty', { ...base, id: '' }],
      ['id with a space', { ...base, id: 'a b' }],
      ['id too long', { ...base, id: 'i'.repeat(129) }],
      ['id non-ASCII', { ...base, id: 'é' }],
      ['from upper case', { ...base, from: base.from.toUpperCase().replace('0X', '0x') }],
      ['to short', { ...base, to: base.to.slice(0, 41) }],
      ['to NUL bytes', { ...base, to: '\0'.repeat(42), from: base.from }],
      ['from NUL bytes', { ...base, from: '\0'.repeat(42) }],
      ['conversation and peer NUL bytes', { ...base, conversation: '\0'.repeat(42), from: '\0'.repeat(42), to: '\0'.repeat(42) }],
      ['direction other', { ...base, direction: 'sideways' }],
      ['status other', { ...base, status: 'lost' }],
      ['conversation not the peer', { ...base, conversation: '0x' + '9'.repeat(40) }],
      ['text too long', { ...base, text: 'y'.repeat(1_000_001) }],
      ['a map', { a: 1 }],
      ['an array', [1, 2]]
    ]
    for (const [label, v] of variants) {
      const bytes = encodeRecord(v) ?? cborg.encode(v)
      assert.equal(transcodeRow(bytes), undefined, label)
    }
    // byte-level damage: invalid UTF-8, a leading byte-order mark, non-minimal heads, trailing bytes, floats, tags
    const good = encodeRecord(base) as Uint8Array
    assert.ok(same(good, 'good'))
    const textAt = Buffer.from(good).indexOf(Buffer.from(base.text))
    const bad = Uint8Array.from(good)
    bad[textAt] = 0xff
    assert.equal(transcodeRow(bad), undefined, 'invalid UTF-8')
    const bom = encodeRecord({ ...base, text: '\ufeffhello' }) as Uint8Array
    assert.equal(transcodeRow(bom), undefined, 'a leading byte-order mark')
    assert.equal(transcodeRow(Uint8Array.from([...good, 0])), undefined, 'trailing bytes')
    assert.equal(transcodeRow(good.subarray(0, good.length - 1)), undefined, 'truncated')
    assert.equal(transcodeRow(new Uint8Array(0)), undefined, 'empty')
    // every single-byte change: either left to the usual path or the usual path's very encoding
    const rnd = prng(8)
    for (let i = 0; i < 3000; i++) {
      const d = Uint8Array.from(good)
      d[Math.floor(rnd() * d.length)] = Math.floor(rnd() * 256)
      if (rnd() < 0.3) d[Math.floor(rnd() * d.length)] = Math.floor(rnd() * 256)
      same(d, `mutation ${i}`)
    }
  })

  it('a store snapshot\'s rows as stored bytes, in batches: decoded, what allMessages gives, in its order', async () => {
    const { store, cleanup } = await openTempStore()
    try {
      await store.addMessages(makeHistory({ conversations: 7, messages: 2500, seed: 6, attachments: 0.1 }))
      const snap = store.snapshot()
      try {
        const want: StoredMessage[] = []
        for await (const m of snap.allMessages()) want.push(m)
        const got: StoredMessage[] = []
        let batches = 0
        for await (const rows of snap.messageRecords()) {
          batches++
          assert.ok(rows.length > 0 && rows.length <= 1000)
          for (const r of rows) got.push(snap.decodeMessageRecord(r))
        }
        assert.deepEqual(got, want)
        assert.ok(batches >= 3, `${batches} batches`)
        // a row's bytes the store cannot decode: the store's error, as its iterator gives it
        assert.throws(() => snap.decodeMessageRecord(Uint8Array.of(0xff, 0x00)), (e: Error & { code?: string }) => e.code === 'STORE_IO')
      } finally {
        await snap.close()
      }
    } finally {
      await cleanup()
    }
  })

  it('a build from the rows\' stored bytes is the bundle a build from decoded rows gives, byte for byte', async () => {
    const env = await makeEnv()
    try {
      const msgs = makeHistory({ conversations: 9, messages: 3000, seed: 12, attachments: 0.05 })
      for (const [i, m] of msgs.entries()) {
        if (m.attachment !== undefined) m.attachment.cid = (await attachmentCidFor(Uint8Array.of(i % 3))).toString()
        if (i % 9 === 0) m.receivedAt = m.ts + 5
        if (i % 10 === 0) m.text = 'ünïcödé ' + m.text
      }
      await env.store.addMessages(msgs)
      // the same store seen only through allMessages (no stored bytes): every row decoded, checked, encoded
      const decodedOnly: BackupSource = {
        allMessages: (o) => env.store.allMessages(o),
        contacts: () => env.store.contacts(),
        snapshot: () => {
          const snap = env.store.snapshot()
          return { allMessages: (o) => snap.allMessages(o), close: async () => { await snap.close() } }
        }
      }
      const build = async (store: BackupSource): Promise<string> =>
        (await buildBackup({ store, blockstore: env.blockstore, owner: OWNER, version: 1, backupKey: KEY, segmentSize: 64, created: 1_700_000_000_000 })).root.toString()
      assert.equal(await build(env.store), await build(decodedOnly))
    } finally {
      await env.cleanup()
    }
  })
})
