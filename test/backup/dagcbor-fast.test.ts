import assert from 'node:assert/strict'
import * as dagCbor from '@ipld/dag-cbor'
import * as cborg from 'cborg'
import { CID } from 'multiformats/cid'
import { decode, encode, encodeMessage, encodeSegment, toSegmentMessage } from '../../src/backup/schema.ts'
import { NOT_DECODED, decodeDagCbor, encodeDagCbor, encodeDagCborView, encodeRecord } from '../../src/util/cbor.ts'
import { makeHistory, message, prng } from './helpers.ts'

const same = (v: unknown, what: string): void => {
  const mine = encodeDagCbor(v)
  assert.ok(mine !== undefined, `fast path declined ${what}`)
  assert.equal(Buffer.compare(mine, dagCbor.encode(v)), 0, what)
  assert.equal(Buffer.compare(encode(v), dagCbor.encode(v)), 0, what)
}

describe('backup: dag-cbor through the shared CBOR fast path', () => {
  it('gives @ipld/dag-cbor\'s bytes for generated segment messages, segments and edge cases', () => {
    const history = makeHistory({ conversations: 10, messages: 1500, attachments: 0.3 })
    const msgs = history.map(toSegmentMessage)
    assert.ok(msgs.some(m => m.attachment !== undefined) && msgs.some(m => m.receivedAt !== undefined))
    for (const m of msgs) same(m, m.id)
    same({ type: 'segment', conv: history[0].conversation, seq: 3, msgs: msgs.slice(0, 300) }, 'segment')
    same(history[0], 'a store message with its conversation')

    const rnd = prng(11)
    const texts = ['', 'é', '日本語のテキスト', '🙂👍🏽', 'a'.repeat(23), 'b'.repeat(24), 'c'.repeat(255), 'd'.repeat(256), 'e'.repeat(65535), 'f'.repeat(65536), 'x'.repeat(600) + 'é']
    for (const text of texts) same(toSegmentMessage({ ...message(rnd, '0x' + '12'.repeat(20), 1_700_000_000_000, 1), text }), `text of ${text.length}`)
    const ints = [0, 1, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, -1, -24, -25, -256, -257, -65537, -(2 ** 32) - 1, -(2 ** 53) + 1]
    for (const n of ints) same({ n, list: [n, [n], { n }] }, `int ${n}`)
    // dag-cbor's key order: shorter keys first, then bytewise (upper case before lower, digits first)
    same({ bb: 1, a: 2, B: 3, aa: 4, '1': 5, '': 6, z: { yy: true, x: false, ww: null } }, 'key order')
    same({ bytes: Uint8Array.from({ length: 300 }, (_, i) => i & 0xff), empty: new Uint8Array(0), buf: Buffer.from('abc'), list: [], map: {} }, 'bytes')
    same([[], {}, 'plain', 42, true, null], 'top-level array')
  })

  it('map shapes met before (their key order and encoded keys are kept): each map still in its own order', () => {
    // the same keys inserted in different orders: one dag-cbor order, each record its own insertion order
    const keys = ['text', 'id', 'to', 'ts', 'from', 'status', 'direction', 'receivedAt', 'k'.repeat(24), 'l'.repeat(300)]
    const rnd = prng(5)
    for (let round = 0; round < 40; round++) {
      const order = [...keys].sort(() => rnd() - 0.5).slice(0, 1 + Math.floor(rnd() * keys.length))
      const v = Object.fromEntries(order.map((k, i) => [k, i % 3 === 0 ? i : `v${i}`]))
      same(v, `shape ${order.join(',')}`)
      same({ outer: v, list: [v, { ...v }] }, 'nested')
      const rec = encodeRecord(v)
      assert.ok(rec !== undefined)
      assert.equal(Buffer.compare(rec, cborg.encode(v, { mapSorter: undefined } as unknown as cborg.EncodeOptions)), 0, `record ${order.join(',')}`)
    }
    // more shapes of one size than are kept, and a non-ASCII key (dag-cbor's then; a record's through UTF-8)
    for (let i = 0; i < 40; i++) same({ [`a${i}`]: i, [`b${i}`]: i }, `shape ${i}`)
    assert.equal(encodeDagCbor({ é: 1, a: 2 }), undefined)
    const rec = encodeRecord({ é: 1, a: 2 })
    assert.ok(rec !== undefined && Buffer.compare(rec, cborg.encode({ é: 1, a: 2 }, { mapSorter: undefined } as unknown as cborg.EncodeOptions)) === 0)
  })

  it('views into shared memory (encodeDagCborView) stay what they were as later values fill new chunks', () => {
    const rnd = prng(9)
    const values = makeHistory({ conversations: 3, messages: 900, seed: 8 }).map(toSegmentMessage)
    // a value larger than a chunk, and values declined or copied in between
    values.splice(300, 0, { ...values[300], text: 'y'.repeat(70_000) })
    const views: Array<[unknown, Uint8Array]> = []
    for (const v of values) {
      const view = encodeDagCborView(v)
      assert.ok(view !== undefined)
      views.push([v, view])
      if (rnd() < 0.1) assert.equal(encodeDagCborView({ f: 1.5, s: 'x'.repeat(100) }), undefined)
      if (rnd() < 0.1) encodeDagCbor({ other: 'encodings in between', n: 1 })
    }
    for (const [v, view] of views) assert.equal(Buffer.compare(view, dagCbor.encode(v)), 0)
    assert.equal(Buffer.compare(encodeMessage(values[0]), dagCbor.encode(values[0])), 0)
  })

  it('leaves what is outside its subset to @ipld/dag-cbor, which encodes or refuses it as before', async () => {
    const cid = CID.parse('bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy')
    const outside: unknown[] = [
      { link: cid }, [cid], { f: 1.5 }, { n: -0 }, { big: 2 ** 53 }, { é: 1 }, { nested: { ключ: 'v' } },
      Object.assign(Object.create(null) as object, { a: 1 }), { s: 'lone \ud800 surrogate' }, new Map([['a', 1]])
    ]
    for (const v of outside) {
      assert.equal(encodeDagCbor(v), undefined)
      let want: Uint8Array | Error
      try { want = dagCbor.encode(v) } catch (err) { want = err as Error }
      if (want instanceof Error) assert.throws(() => encode(v))
      else assert.equal(Buffer.compare(encode(v), want), 0)
    }
    for (const v of [{ u: undefined }, { n: Number.NaN }, { i: Infinity }]) {
      assert.equal(encodeDagCbor(v), undefined)
      assert.throws(() => dagCbor.encode(v))
      assert.throws(() => encode(v))
    }
    // a segment with a link falls back as a whole and still matches
    const seg = { type: 'segment' as const, conv: '0x' + 'ab'.repeat(20), seq: 0, msgs: [] }
    assert.equal(Buffer.compare(encodeSegment(seg), dagCbor.encode(seg)), 0)
  })

  it('reads back what @ipld/dag-cbor reads (same values, same key order), or leaves it to dag-cbor', () => {
    const history = makeHistory({ conversations: 4, messages: 600, attachments: 0.3 })
    const seg = { type: 'segment' as const, conv: history[0].conversation, seq: 2, msgs: history.filter(m => m.conversation === history[0].conversation).map(toSegmentMessage) }
    const values: unknown[] = [seg, ...seg.msgs, { n: [0, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, -1, -24, -25, -256, -257, -(2 ** 32) - 1, -(2 ** 53) + 1] }]
    for (const text of ['', 'é', '日本語のテキスト', '🙂👍🏽', 'x'.repeat(31), 'y'.repeat(32), 'c'.repeat(255), 'd'.repeat(70000)]) values.push({ text, [text.slice(0, 3)]: 1 })
    for (const v of values) {
      const bytes = dagCbor.encode(v)
      const fast = decodeDagCbor(bytes)
      assert.notEqual(fast, NOT_DECODED)
      assert.deepEqual(fast, dagCbor.decode(bytes))
      assert.equal(JSON.stringify(fast), JSON.stringify(dagCbor.decode(bytes)))
    }
    // what dag-cbor refuses or reads otherwise: left to it
    const outside: Array<[string, Uint8Array]> = [
      ['non-minimal uint8', Uint8Array.of(0x18, 0x05)],
      ['non-minimal uint16', Uint8Array.of(0x19, 0x00, 0xff)],
      ['non-minimal uint32', Uint8Array.of(0x1a, 0x00, 0x00, 0xff, 0xff)],
      ['non-minimal uint64', Uint8Array.of(0x1b, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff)],
      ['non-minimal negative', Uint8Array.of(0x38, 0x01)],
      ['non-minimal string length', Uint8Array.of(0x78, 0x02, 0x68, 0x69)],
      ['non-minimal array length', Uint8Array.of(0x98, 0x01, 0x01)],
      ['non-minimal map length', Uint8Array.of(0xb8, 0x01, 0x61, 0x61, 0x01)],
      ['repeated key', Uint8Array.of(0xa2, 0x61, 0x61, 0x01, 0x61, 0x61, 0x02)],
      ['-2^53', Uint8Array.of(0x3b, 0x00, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)],
      ['2^53', Uint8Array.of(0x1b, 0x00, 0x20, 0, 0, 0, 0, 0, 0)],
      ['undefined', Uint8Array.of(0xa1, 0x61, 0x61, 0xf7)],
      ['float', dagCbor.encode({ a: 1.5 })],
      ['bytes', dagCbor.encode({ a: Uint8Array.of(1) })],
      ['link', dagCbor.encode({ a: CID.parse('bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy') })],
      ['indefinite', Uint8Array.of(0x9f, 0x01, 0xff)],
      ['trailing', Uint8Array.of(0x01, 0x02)],
      ['truncated', Uint8Array.of(0x63, 0x61, 0x62)],
      ['invalid utf-8', Uint8Array.of(0x62, 0xc3, 0x28)],
      ['leading BOM', Uint8Array.of(0x64, 0xef, 0xbb, 0xbf, 0x61)],
      ['__proto__', Uint8Array.of(0xa1, 0x69, ...Buffer.from('__proto__'), 0x01)]
    ]
    for (const [name, bytes] of outside) assert.equal(decodeDagCbor(bytes), NOT_DECODED, name)
    // -(2^53 - 1) is a number for both
    const minSafe = Uint8Array.of(0x3b, 0x00, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe)
    assert.equal(decodeDagCbor(minSafe), dagCbor.decode(minSafe))
  })

  it('damaged segments: the schema decoder accepts and rejects exactly what it did with @ipld/dag-cbor alone', () => {
    const history = makeHistory({ conversations: 1, messages: 12, attachments: 0.3 })
    const seg = { type: 'segment' as const, conv: history[0].conversation, seq: 0, msgs: history.map(toSegmentMessage) }
    const good = encodeSegment(seg)
    const rnd = prng(23)
    const where = { block: 'segment' }
    const outcome = (f: () => unknown): string => { try { return 'ok ' + JSON.stringify(f()) } catch (err) { return `error ${(err as { code?: string }).code ?? ''} ${(err as Error).message}` } }
    const viaDagCbor = (bytes: Uint8Array): unknown => {
      let v: unknown
      try { v = dagCbor.decode(bytes) } catch { throw Object.assign(new Error('block is not valid dag-cbor'), { code: 'BACKUP_MALFORMED' }) }
      return v
    }
    let fast = 0
    for (let n = 0; n < 1000; n++) {
      const bytes = Uint8Array.from(good)
      const edits = 1 + Math.floor(rnd() * 3)
      for (let e = 0; e < edits; e++) bytes[Math.floor(rnd() * bytes.length)] = rnd() < 0.5 ? Math.floor(rnd() * 256) : bytes[Math.floor(rnd() * bytes.length)]
      const cut = rnd() < 0.1 ? bytes.subarray(0, Math.floor(rnd() * bytes.length)) : bytes
      const mine = decodeDagCbor(cut)
      if (mine !== NOT_DECODED) {
        fast++
        assert.equal(JSON.stringify(mine), JSON.stringify(dagCbor.decode(cut)))
      }
      // the value the schema decoder reads is dag-cbor's (or both refuse it), so the segment checks (decodeSegment) see the same
      assert.equal(outcome(() => decode(cut, where)).replace(/^error BACKUP_MALFORMED .*/, 'refused'), outcome(() => viaDagCbor(cut)).replace(/^error BACKUP_MALFORMED .*/, 'refused'))
    }
    assert.ok(fast > 50, `only ${fast} mutations read by the fast path`)
  })
})
