import assert from 'node:assert/strict'
import * as dagCbor from '@ipld/dag-cbor'
import * as cborg from 'cborg'
import { segmentRows } from '../../src/backup/segment-rows.ts'
import { decodeSegment, encodeSegment, fromSegmentMessage, toSegmentMessage } from '../../src/backup/schema.ts'
import type { Segment } from '../../src/backup/schema.ts'
import type { StoredMessage } from '../../src/store/index.ts'
import { normalizeMessage } from '../../src/store/validate.ts'
import { encodeRecord } from '../../src/util/cbor.ts'
import { makeHistory, OWNER, prng } from './helpers.ts'

const MAX = 256

/** what the usual path gives for a segment's plaintext: its decoding and checks, each message as the store writes it */
function usual (plain: Uint8Array): { conv: string, seq: number, rows: Array<{ id: string, ts: number, bytes: Uint8Array }> } | 'refused' {
  try {
    const seg = decodeSegment(plain, {}, MAX)
    return {
      conv: seg.conv,
      seq: seg.seq,
      rows: seg.msgs.map(m => {
        const stored = normalizeMessage(fromSegmentMessage(seg.conv, m))
        return { id: stored.id, ts: stored.ts, bytes: encodeRecord(stored) as Uint8Array }
      })
    }
  } catch {
    return 'refused'
  }
}

/** segmentRows' answer agrees with the usual path's; true when segmentRows took it */
function same (plain: Uint8Array, label: string): boolean {
  const fast = segmentRows(plain, MAX)
  if (fast === undefined) return false
  const u = usual(plain)
  assert.notEqual(u, 'refused', `${label}: taken here, refused the usual way`)
  if (u === 'refused') return false
  assert.equal(fast.conv, u.conv, label)
  assert.equal(fast.seq, u.seq, label)
  assert.equal(fast.rows.length, u.rows.length, label)
  fast.rows.forEach((r, i) => {
    assert.equal(r.id, u.rows[i].id, label)
    assert.equal(r.conversation, u.conv, `${label}: a row is a store record (restore imports it as it is)`)
    assert.equal(r.ts, u.rows[i].ts, label)
    assert.deepEqual(Buffer.from(r.bytes), Buffer.from(u.rows[i].bytes), `${label}: row ${i}`)
  })
  return true
}

function segmentOf (msgs: StoredMessage[], seq = 0): Uint8Array {
  const conv = msgs[0].conversation
  return encodeSegment({ type: 'segment', conv, seq, msgs: msgs.map(toSegmentMessage) })
}

describe('backup: a segment\'s store rows from its plaintext (src/backup/segment-rows.ts)', () => {
  it('gives the usual path\'s rows for generated segments (texts of every length, non-ASCII, receivedAt, every head size)', () => {
    const rnd = prng(12)
    const history = makeHistory({ conversations: 6, messages: 1800, seed: 21 })
    const byConv = new Map<string, StoredMessage[]>()
    for (const m of history) {
      const list = byConv.get(m.conversation) ?? []
      list.push(m)
      byConv.set(m.conversation, list)
    }
    let taken = 0
    let n = 0
    for (const msgs of byConv.values()) {
      for (let at = 0; at < msgs.length; n++) {
        const size = 1 + Math.floor(rnd() * 70)
        const part = msgs.slice(at, at + size).map((m, i) => {
          const v: StoredMessage = { ...m }
          if (i % 7 === 0) v.text = 'é'.repeat(i % 40) + v.text + '😀'
          if (i % 23 === 0) v.text = 'x'.repeat(20 + Math.floor(rnd() * 70_000))
          if (i % 3 === 0) v.text = ''
          if (i % 5 === 0 && v.receivedAt !== undefined) v.receivedAt = [0, 23, 24, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1][i % 10]
          return v
        })
        at += size
        if (same(segmentOf(part, [0, 23, 24, 255, 256, 65_536][n % 6]), `segment ${n}`)) taken++
      }
    }
    assert.ok(taken === n, `every generated segment taken (${taken} of ${n})`)
  })

  it('leaves every unusual or damaged segment to the usual path (which refuses it or reads it the same)', () => {
    const msgs = makeHistory({ conversations: 1, messages: 12, seed: 5 })
    const good = segmentOf(msgs)
    assert.ok(same(good, 'good'))
    const seg = decodeSegment(good, {}, MAX)
    const re = (change: (s: Record<string, unknown>) => void, label: string): void => {
      const s = structuredClone(seg) as unknown as Record<string, unknown>
      change(s)
      let bytes: Uint8Array
      try { bytes = dagCbor.encode(s) } catch { bytes = cborg.encode(s) }
      assert.equal(segmentRows(bytes, MAX), undefined, label)
    }
    const m0 = (s: Record<string, unknown>): Record<string, unknown> => (s.msgs as Array<Record<string, unknown>>)[0]
    re(s => { m0(s).attachment = { cid: 'c', key: 'k', name: 'n', mime: 'm', size: 1, sha256: 'ab'.repeat(32) } }, 'an attachment')
    re(s => { m0(s).extra = 1 }, 'an extra field')
    re(s => { s.extra = 1 }, 'an extra segment field')
    re(s => { s.type = 'shard' }, 'another type')
    re(s => { s.conv = (s.conv as string).toUpperCase().replace('0X', '0x') }, 'conv upper case')
    re(s => { s.msgs = [] }, 'no messages')
    re(s => { s.msgs = [...(s.msgs as unknown[]), ...(s.msgs as unknown[])] }, 'out of order (repeated)')
    re(s => { (s.msgs as unknown[]).reverse() }, 'out of order')
    re(s => { m0(s).id = 'a b' }, 'id with a space')
    re(s => { m0(s).id = 'i'.repeat(129) }, 'id too long')
    re(s => { m0(s).status = 'lost' }, 'status other')
    re(s => { m0(s).direction = 'up' }, 'direction other')
    re(s => { m0(s).from = OWNER; m0(s).to = OWNER }, 'no side is the conversation')
    re(s => { m0(s).ts = -1 }, 'ts negative')
    re(s => { m0(s).ts = 1.5 }, 'ts float')
    re(s => { m0(s).receivedAt = 'x' }, 'receivedAt a string')
    re(s => { m0(s).text = 'y'.repeat(1_000_001) }, 'text too long')
    re(s => { s.seq = -1 }, 'seq negative')
    assert.equal(segmentRows(good, msgs.length - 1), undefined, 'more messages than a segment may hold')
    // keys in another order (cborg with insertion order): the usual path reads it the same; not taken here
    const reordered = cborg.encode({ type: 'segment', conv: seg.conv, seq: seg.seq, msgs: seg.msgs }, { mapSorter: undefined })
    assert.equal(segmentRows(reordered, MAX), undefined, 'another key order')
    assert.notEqual(usual(reordered), 'refused')
    assert.equal(segmentRows(Uint8Array.from([...good, 0]), MAX), undefined, 'trailing byte')
    assert.equal(segmentRows(good.subarray(0, good.length - 1), MAX), undefined, 'truncated')
    assert.equal(segmentRows(new Uint8Array(0), MAX), undefined, 'empty')
    // every byte-level change: left to the usual path, or the usual path's very rows
    const rnd = prng(13)
    for (let i = 0; i < 5000; i++) {
      const d = Uint8Array.from(good)
      d[Math.floor(rnd() * d.length)] = Math.floor(rnd() * 256)
      if (rnd() < 0.3) d[Math.floor(rnd() * d.length)] = Math.floor(rnd() * 256)
      same(rnd() < 0.1 ? d.subarray(0, Math.floor(rnd() * d.length)) : d, `mutation ${i}`)
    }
  })

  it('the rows of a segment whose other side changes from message to message are checked each time', () => {
    const msgs = makeHistory({ conversations: 1, messages: 8, seed: 6 })
    const out = msgs.map((m, i) => i === 5 ? { ...m, direction: 'out' as const, from: '0x' + 'Z'.repeat(40), to: m.conversation } : m)
    // a message whose other side is not an address, after others that were: refused here and by the usual path
    const plain = encodeSegment({ type: 'segment', conv: msgs[0].conversation, seq: 0, msgs: out.map(toSegmentMessage) } as Segment)
    assert.equal(segmentRows(plain, MAX), undefined)
    assert.equal(usual(plain), 'refused')
  })
})
