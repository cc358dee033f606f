import assert from 'node:assert/strict'
import { encodeSegmentOf } from '../../src/backup/builder.ts'
import { encode, encodeSegment } from '../../src/backup/schema.ts'
import type { SegmentMessage } from '../../src/backup/schema.ts'

describe('backup builder: a segment assembled from its messages\' own encodings', () => {
  it('is byte for byte what encodeSegment gives, at every array-length boundary', () => {
    const conv = '0x' + 'd'.repeat(38) + '6d'
    for (const n of [1, 2, 23, 24, 255, 256, 1000, 4096]) {
      const msgs = Array.from({ length: n }, (_, i) => ({
        id: `id-${i}`, from: conv, to: '0x' + 'a'.repeat(40), ts: 1_700_000_000_000 + i, text: i % 7 === 0 ? 'msgs' : `text ${i} ${'x'.repeat(i % 50)}`, direction: i % 2 === 0 ? 'in' : 'out', status: 'sent'
      })) as unknown as SegmentMessage[]
      for (const seq of [0, 23, 24, 255, 256, 65_535, 65_536, 70_000, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 3]) {
        const want = encodeSegment({ type: 'segment', conv, seq, msgs })
        const got = encodeSegmentOf(conv, seq, msgs.map(m => encode(m)))
        assert.equal(Buffer.compare(got, want), 0, `n=${n} seq=${seq}`)
      }
    }
  })

  it('is byte for byte what encodeSegment gives for conversation strings of every length class', () => {
    const msgs = [{ id: 'id-1', from: '0x' + 'a'.repeat(40), to: '0x' + 'b'.repeat(40), ts: 1_700_000_000_000, text: 'hi', direction: 'in', status: 'sent' }] as unknown as SegmentMessage[]
    for (const conv of ['', 'x', 'y'.repeat(23), 'z'.repeat(24), 'é'.repeat(12), 'w'.repeat(255), 'v'.repeat(256), 'u'.repeat(70_000)]) {
      const want = encodeSegment({ type: 'segment', conv, seq: 5, msgs })
      const got = encodeSegmentOf(conv, 5, msgs.map(m => encode(m)))
      assert.equal(Buffer.compare(got, want), 0, `conv of ${conv.length}`)
    }
  })
})
