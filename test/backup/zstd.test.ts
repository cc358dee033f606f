import assert from 'node:assert/strict'
import { createCipheriv, createHash, createHmac } from 'node:crypto'
import { constants as zc, createZstdCompress } from 'node:zlib'
import type { ZstdCompress } from 'node:zlib'
import * as dagCbor from '@ipld/dag-cbor'
import { open, seal } from '../../src/backup/seal.ts'
import { ReusedZstd, ZSTD_OPTIONS, compressBound, compressOnce } from '../../src/backup/zstd.ts'
import { KEY, prng } from './helpers.ts'

/** payloads of many sizes and kinds: text-like, incompressible, all zero, empty, past the kept buffer */
function payloads (): Uint8Array[] {
  const rnd = prng(7)
  const words = ['hello', 'world', 'backup', 'segment', 'é', '🙂']
  const text = (n: number): Uint8Array => dagCbor.encode({ type: 'segment', text: Array.from({ length: n }, () => words[Math.floor(rnd() * words.length)]).join(' ') })
  const random = (n: number): Uint8Array => Uint8Array.from({ length: n }, () => Math.floor(rnd() * 256))
  return [
    new Uint8Array(0), Uint8Array.of(1), text(10), text(1000), text(70_000), text(600_000), random(5000), random(200_000),
    new Uint8Array(1 << 20), text(3), random(130_000), text(4000)
  ]
}

const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(a, b) === 0

/** a real compressor whose native handle is replaced by `handle` (a fault to inject) */
function engineWith (handle: unknown): () => ZstdCompress {
  return () => {
    const e = createZstdCompress(ZSTD_OPTIONS)
    const real = (e as unknown as { _handle: unknown })._handle
    ;(e as unknown as { _handle: unknown })._handle = typeof handle === 'function' ? handle(real) : handle
    return e
  }
}

describe('backup: zstd with a kept context', function () {
  it('gives the one-shot frames, byte for byte, for payloads of every size in any order', () => {
    const z = new ReusedZstd()
    const all = payloads()
    // twice, the second time in reverse: a frame does not depend on what the context compressed before
    for (const order of [all, [...all].reverse()]) {
      for (const p of order) {
        const frame = z.compress(p)
        assert.ok(same(frame, compressOnce(p)), `${p.length} bytes`)
        assert.ok(frame.length <= compressBound(p.length))
      }
    }
    assert.equal(z.reused, true, 'this Node has the handle: the context is kept')
    z.close()
  })

  it('gives frames of their own memory, not views of a buffer it reuses', () => {
    const z = new ReusedZstd()
    const [a, b] = [dagCbor.encode({ a: 'x'.repeat(5000) }), dagCbor.encode({ b: 'y'.repeat(5000) })]
    const fa = z.compress(a)
    const copy = Uint8Array.from(fa)
    z.compress(b)
    assert.ok(same(fa, copy))
    assert.equal(fa.byteOffset, 0)
    assert.equal(fa.buffer.byteLength, fa.length)
  })

  it('seals the boxes the format defines around the one-shot frames (docs/backup-format.md#sealed-boxes)', () => {
    // the construction written out here again with node:crypto, around compressOnce's frame
    const hmac = (key: Uint8Array, ...parts: Uint8Array[]): Buffer => createHmac('sha256', key).update(Buffer.concat(parts)).digest()
    const label = (what: string): Buffer => Buffer.from(`tokenim-backup/v1/segment/${what}\0`)
    for (const p of payloads()) {
      const z = compressOnce(p)
      const siv = hmac(KEY, label('siv'), createHash('sha256').update(z).digest())
      const cipher = createCipheriv('aes-256-gcm', hmac(KEY, label('key'), siv), Buffer.alloc(12))
      cipher.setAAD(Buffer.from('tokenim-backup/v1/segment'))
      const want = Buffer.concat([Buffer.of(1), siv, cipher.update(z), cipher.final(), cipher.getAuthTag()])
      const box = seal(KEY, 'segment', p)
      assert.ok(same(box, want), `${p.length} bytes`)
      assert.ok(same(open(KEY, 'segment', box, 4 << 20), p))
    }
  })

  it('falls back to the one-shot call when the handle is missing, throws or compresses wrongly', () => {
    const p = dagCbor.encode({ text: 'fallback '.repeat(300) })
    const want = compressOnce(p)
    const faults: Array<[string, unknown]> = [
      ['no handle', null],
      ['no reset', { writeSync () {} }],
      ['writeSync throws', (real: { reset: () => void }) => ({ reset: () => { real.reset() }, writeSync () { throw new Error('injected') } })],
      ['throws once the probes passed', (real: { reset: () => void, writeSync: (...a: unknown[]) => void }) => {
        // the two probes are the first two frames
        let frames = 0
        return { reset: () => { frames++; real.reset() }, writeSync: (...a: unknown[]) => { if (frames > 2) throw new Error('injected'); real.writeSync(...a) } }
      }],
      ['compresses less than it is given', (real: { reset: () => void, writeSync: (...a: unknown[]) => void }) => ({
        reset: () => { real.reset() },
        // drops the input's last byte: the probes' frames differ
        writeSync: (flush: number, input: Uint8Array, off: number, len: number, ...rest: unknown[]) => { real.writeSync(flush, input, off, Math.max(0, len - 1), ...rest) }
      })]
    ]
    for (const [name, handle] of faults) {
      const z = new ReusedZstd(engineWith(handle))
      for (let i = 0; i < 3; i++) assert.ok(same(z.compress(p), want), name)
      assert.equal(z.reused, false, name)
    }
  })

  it('falls back when a context gives frames that differ from the one-shot call (the probe)', () => {
    // a checksum at the frame's end: valid zstd, other bytes
    const z = new ReusedZstd(() => createZstdCompress({ params: { ...ZSTD_OPTIONS.params, [zc.ZSTD_c_checksumFlag]: 1 } }))
    const p = dagCbor.encode({ text: 'probe '.repeat(500) })
    assert.ok(same(z.compress(p), compressOnce(p)))
    assert.equal(z.reused, false)
  })
})
