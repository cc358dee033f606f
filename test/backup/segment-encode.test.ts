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
      for (const seq of [0, 23, 24, 70_000]) {
        const want = encodeSegment({ type: 'segment', conv, seq, msgs })
        const got = encodeSegmentOf(conv, seq, msgs, msgs.map(m => encode(m)))
        assert.equal(Buffer.compare(got, want), 0, `n=${n} seq=${seq}`)
      }
    }
  })
})
