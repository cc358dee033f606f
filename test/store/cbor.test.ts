import assert from 'node:assert/strict'
import * as cborg from 'cborg'
import { NOT_DECODED, decodeRecord, encodeRecord } from '../../src/store/cbor.ts'
import { rowHasAttachment, rowStatus, withStatus } from '../../src/store/row.ts'
import { message, makeHistory } from '../backup/helpers.ts'
import { prng } from '../support/prng.ts'

const cborgBytes = (v: unknown): number[] => [...cborg.encode(v, { mapSorter: undefined })]

describe('store: the CBOR fast path', function () {
  it('gives cborg\'s bytes for messages, attachments, summaries, outbox entries and backup records', () => {
    const records: unknown[] = makeHistory({ conversations: 20, messages: 2000, attachments: 0.2 })
    const rnd = prng(5)
    const unicode = ['', 'é', '日本語のテキスト', '🙂👍🏽', 'a'.repeat(23), 'b'.repeat(24), 'c'.repeat(255), 'd'.repeat(256), 'e'.repeat(65535), 'f'.repeat(65536), 'x'.repeat(70000) + '🙂']
    for (const t of unicode) records.push({ ...message(rnd, '0x' + '12'.repeat(20), 1_700_000_000_000), text: t })
    const ints = [0, 1, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, -1, -24, -25, -256, -257, -65536, -65537, -(2 ** 32), -(2 ** 32) - 1, -(2 ** 53) + 1]
    for (const n of ints) records.push({ n, list: [n, [n], { n }] })
    records.push({ peer: '0x' + 'ab'.repeat(20), count: 3, firstTs: 1, lastTs: 2, lastId: 'x' })
    records.push({ id: 'o1', to: '0x' + 'cd'.repeat(20), envelope: Uint8Array.from({ length: 300 }, (_, i) => i & 0xff), attempts: 0, nextAt: Date.now(), empty: new Uint8Array(0) })
    records.push({ version: 3, cid: 'bafy', anchored: true, pending: false, replicas: [{ address: '0x1', ok: true, at: 5 }, { address: '0x2', ok: false, error: 'e' }], nothing: null })
    records.push({ '2': 'numeric-looking keys', '1': 'come first', b: 1, a: 2 }, [], {}, 'plain', 42, true, null)
    const big = { nested: {} as Record<string, unknown> }
    let cur = big.nested
    for (let i = 0; i < 20; i++) { cur.next = {}; cur = cur.next as Record<string, unknown> }
    records.push(big)
    for (const r of records) {
      const mine = encodeRecord(r)
      assert.ok(mine !== undefined, JSON.stringify(r).slice(0, 80))
      assert.deepEqual([...mine], cborgBytes(r), JSON.stringify(r).slice(0, 80))
      assert.equal(mine.constructor, Uint8Array)
      // and read back as cborg reads it (same values, same key order; byte strings as copies of their own)
      const back = decodeRecord(mine)
      assert.deepEqual(back, cborg.decode(mine))
      assert.equal(JSON.stringify(back), JSON.stringify(cborg.decode(mine)))
      if (JSON.stringify(r).includes('envelope')) {
        const env = (back as { envelope: Uint8Array }).envelope
        assert.equal(Object.getPrototypeOf(env), Uint8Array.prototype)
        assert.equal(env.byteOffset, 0)
        assert.equal(env.buffer.byteLength, env.length, 'a copy of its own, not a view of the record')
      }
    }
  })

  it('reads back only what it can read as cborg does, and leaves the rest to cborg', () => {
    const cases: Array<[string, Uint8Array]> = [
      ['float', cborg.encode({ a: 1.5 })],
      ['undefined', Uint8Array.of(0xa1, 0x61, 0x61, 0xf7)],
      ['trailing byte', Uint8Array.of(0x01, 0x02)],
      ['truncated', Uint8Array.of(0x63, 0x61, 0x62)],
      ['indefinite array', Uint8Array.of(0x9f, 0x01, 0xff)],
      ['tag', Uint8Array.of(0xc1, 0x01)],
      ['non-string key', Uint8Array.of(0xa1, 0x01, 0x02)],
      ['__proto__ key', cborg.encode(JSON.parse('{"__proto__": {"x": 1}}'))],
      ['invalid utf-8', Uint8Array.of(0x62, 0xc3, 0x28)],
      ['leading BOM', Uint8Array.of(0x64, 0xef, 0xbb, 0xbf, 0x61)],
      ['2^53', Uint8Array.of(0x1b, 0x00, 0x20, 0, 0, 0, 0, 0, 0)],
      ['empty', new Uint8Array(0)]
    ]
    for (const [name, bytes] of cases) assert.equal(decodeRecord(bytes), NOT_DECODED, name)
    // non-minimal lengths and integers read as cborg reads them
    for (const bytes of [Uint8Array.of(0x18, 0x05), Uint8Array.of(0x1b, 0, 0, 0, 0, 0, 0, 1, 0), Uint8Array.of(0x78, 0x02, 0x68, 0x69), Uint8Array.of(0x39, 0x01, 0x00)]) {
      assert.deepEqual(decodeRecord(bytes), cborg.decode(bytes))
    }
    // a Buffer view into a larger buffer
    const inner = cborg.encode({ id: 'x', n: 300 })
    const big = Buffer.alloc(inner.length + 10, 0xff)
    big.set(inner, 5)
    assert.deepEqual(decodeRecord(big.subarray(5, 5 + inner.length)), { id: 'x', n: 300 })
  })

  it('leaves everything else to cborg', () => {
    for (const v of [1.5, -0, Number.MAX_SAFE_INTEGER + 1, NaN, Infinity, undefined, 10n, new Map(), new Date(0), { a: 1.25 }, { a: undefined }, [1, 2.5], 'lone \ud800 surrogate', { ['\udc00']: 1 }]) {
      assert.equal(encodeRecord(v), undefined, String(v))
    }
    // and is whole again after a refusal midway
    assert.deepEqual([...encodeRecord({ a: 'x' }) as Uint8Array], cborgBytes({ a: 'x' }))
  })
})

describe('store: a message row\'s status on its bytes (row.ts)', () => {
  it('reads direction and status, and writes the bytes encodeRecord gives the row with the new status', () => {
    const rows: Array<Record<string, unknown>> = makeHistory({ conversations: 10, messages: 500, attachments: 0.2 }) as unknown as Array<Record<string, unknown>>
    rows.push({ ...rows[0], receivedAt: 12 }, { ...rows[1], text: '🙂'.repeat(3000) }, { ...rows[2], status: 'delivered' })
    for (const r of rows) {
      const bytes = encodeRecord(r) as Uint8Array
      const rs = rowStatus(bytes)
      assert.ok(rs !== undefined)
      assert.equal(rs.direction, r.direction)
      assert.equal(rs.status, r.status)
      for (const status of ['delivered', 'failed', 'sent']) {
        assert.deepEqual([...withStatus(bytes, rs, status)], [...encodeRecord({ ...r, status }) as Uint8Array])
      }
    }
  })

  it('tells whether a row has an attachment, or leaves it to the decoder', () => {
    const r = { id: 'm1', conversation: '0x' + 'ab'.repeat(20), direction: 'in', status: 'received', text: 'x'.repeat(300) }
    const attachment = { cid: 'c', key: 'k', name: 'n', mime: 'm', size: 1, sha256: 'ab'.repeat(32) }
    assert.equal(rowHasAttachment(encodeRecord(r) as Uint8Array), false)
    assert.equal(rowHasAttachment(encodeRecord({ ...r, attachment }) as Uint8Array), true)
    assert.equal(rowHasAttachment(encodeRecord({ ...r, attachment: null }) as Uint8Array), false)
    assert.equal(rowHasAttachment(cborg.encode({ ...r, attachment, f: 1.5 })), true)
    assert.equal(rowHasAttachment(Uint8Array.of(0xa1, 0x61, 0x61, 0x7f, 0x61, 0x61, 0xff)), undefined, 'indefinite length')
    assert.equal(rowHasAttachment(Uint8Array.from([...(encodeRecord(r) as Uint8Array), 0])), undefined, 'trailing byte')
    assert.equal(rowHasAttachment(cborg.encode([1])), undefined, 'not a map')
  })

  it('leaves to the decoder what it does not take', () => {
    const r = { id: 'm1', conversation: '0x' + 'ab'.repeat(20), direction: 'out', status: 'queued', text: 'x' }
    const cases: Array<[string, unknown]> = [
      ['no status', { id: 'm1', direction: 'out' }],
      ['no direction', { id: 'm1', status: 'queued' }],
      ['status not text', { ...r, status: 1 }],
      ['status not ASCII', { ...r, status: 'quéued' }],
      ['status too long', { ...r, status: 'q'.repeat(24) }],
      ['not a map', ['status', 'queued']]
    ]
    for (const [name, v] of cases) assert.equal(rowStatus(cborg.encode(v, { mapSorter: undefined })), undefined, name)
    const good = encodeRecord(r) as Uint8Array
    assert.ok(rowStatus(good) !== undefined)
    assert.equal(rowStatus(Uint8Array.from([...good, 0])), undefined, 'trailing byte')
    assert.equal(rowStatus(good.subarray(0, good.length - 1)), undefined, 'truncated')
    // a key twice
    const twice = Uint8Array.from([0xa3, ...cborg.encode('status'), ...cborg.encode('queued'), ...cborg.encode('direction'), ...cborg.encode('out'), ...cborg.encode('status'), ...cborg.encode('sent')])
    assert.equal(rowStatus(twice), undefined, 'status twice')
    // an indefinite-length text elsewhere in the row
    assert.equal(rowStatus(Uint8Array.from([0xa3, ...cborg.encode('status'), ...cborg.encode('queued'), ...cborg.encode('direction'), ...cborg.encode('out'), ...cborg.encode('text'), 0x7f, 0x61, 0x61, 0xff])), undefined, 'indefinite')
    // random damage never throws
    const rnd = prng(9)
    for (let i = 0; i < 3000; i++) {
      const b = new Uint8Array(good)
      b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256)
      const cut = rnd() < 0.3 ? b.subarray(0, Math.floor(rnd() * b.length)) : b
      const rs = rowStatus(cut)
      if (rs !== undefined) assert.ok(rs.at < rs.end && rs.end <= cut.length)
    }
  })
})
