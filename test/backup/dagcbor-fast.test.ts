import assert from 'node:assert/strict'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { encode, encodeSegment, toSegmentMessage } from '../../src/backup/schema.ts'
import { encodeDagCbor } from '../../src/util/cbor.ts'
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
})
