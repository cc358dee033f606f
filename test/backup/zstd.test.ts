import assert from 'node:assert/strict'
import { createCipheriv, createHash, createHmac } from 'node:crypto'
import { constants as zc, createZstdCompress, createZstdDecompress, zstdDecompressSync } from 'node:zlib'
import type { ZstdCompress, ZstdDecompress } from 'node:zlib'
import * as dagCbor from '@ipld/dag-cbor'
import { decompress, open, seal } from '../../src/backup/seal.ts'
import { ReusedZstd, ReusedZstdDecompress, ZSTD_OPTIONS, compressBound, compressOnce } from '../../src/backup/zstd.ts'
import { BackupErrorCode } from '../../src/backup/errors.ts'
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

/** a real compressor (or decompressor) whose native handle is replaced by `handle` (a fault to inject) */
function engineWith<E extends ZstdCompress | ZstdDecompress> (handle: unknown, make: () => E): () => E {
  return () => {
    const e = make()
    const real = (e as unknown as { _handle: unknown })._handle
    ;(e as unknown as { _handle: unknown })._handle = typeof handle === 'function' ? handle(real) : handle
    return e
  }
}

const compressor = (): ZstdCompress => createZstdCompress(ZSTD_OPTIONS)
type Handle = { reset: () => void, writeSync: (...a: unknown[]) => void }

/** faults of a handle that compressors and decompressors share */
const throwsOnWrite = (real: Handle): Handle => ({ reset: () => { real.reset() }, writeSync () { throw new Error('injected') } })
const dropsLastInputByte = (real: Handle): Handle => ({
  reset: () => { real.reset() },
  writeSync: (flush: unknown, input: unknown, off: unknown, len: unknown, ...rest: unknown[]) => { real.writeSync(flush, input, off, Math.max(0, (len as number) - 1), ...rest) }
})

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
      ['writeSync throws', throwsOnWrite],
      ['throws once the probes passed', (real: Handle) => {
        // the two probes are the first two frames
        let frames = 0
        return { reset: () => { frames++; real.reset() }, writeSync: (...a: unknown[]) => { if (frames > 2) throw new Error('injected'); real.writeSync(...a) } }
      }],
      // drops the input's last byte: the probes' frames differ
      ['compresses less than it is given', dropsLastInputByte]
    ]
    for (const [name, handle] of faults) {
      const z = new ReusedZstd(engineWith(handle, compressor))
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

  it('never calls a handle node:zlib has closed (a closed native context would crash the process)', () => {
    let engine: ZstdCompress | undefined
    const z = new ReusedZstd(() => { engine = compressor(); return engine })
    const p = dagCbor.encode({ text: 'closed '.repeat(200) })
    assert.ok(same(z.compress(p), compressOnce(p)))
    assert.equal(z.reused, true)
    engine?.close() // as node does inside writeSync after a native error
    assert.ok(same(z.compress(p), compressOnce(p)))
    assert.equal(z.reused, false)
  })

  it('never calls a handle closed by its own reset (a native error there closes it as in writeSync)', () => {
    const p = dagCbor.encode({ text: 'reset '.repeat(200) })
    const z = compressOnce(p)
    const c = new ReusedZstd(resetClosesAfter(2, compressor))
    const d = new ReusedZstdDecompress(resetClosesAfter(2, () => createZstdDecompress()))
    // past the two probes, the next reset closes the engine: the call must not reach the handle after it
    for (let i = 0; i < 3; i++) {
      assert.ok(same(c.compress(p), z), `compress ${i}`)
      assert.equal(d.decompress(z, p.length), undefined, `decompress ${i}`)
    }
    assert.equal(c.reused, false)
    assert.equal(d.reused, false)
  })

  it('gives anything but a Uint8Array to the one-shot call (its native call would abort the process)', () => {
    const z = new ReusedZstd()
    const ab = new Uint8Array(dagCbor.encode({ text: 'ab '.repeat(100) })).buffer
    assert.ok(same(z.compress(ab as unknown as Uint8Array), compressOnce(ab as unknown as Uint8Array)))
    assert.equal(new ReusedZstdDecompress().decompress(ab as unknown as Uint8Array, 10), undefined)
  })
})

/** an engine whose native handle, from its (n+1)th reset on, closes the engine as a native error would */
function resetClosesAfter<E extends ZstdCompress | ZstdDecompress> (n: number, make: () => E): () => E {
  return () => {
    const e = make()
    const real = (e as unknown as { _handle: Handle & { close: () => void } })._handle
    let resets = 0
    ;(e as unknown as { _handle: unknown })._handle = {
      reset: () => { real.reset(); if (++resets > n) e.close() },
      writeSync: (...a: unknown[]) => { real.writeSync(...a) },
      close: () => { real.close() }
    }
    return e
  }
}

describe('backup: zstd decompression with a kept context', function () {
  const contentSize = (p: Uint8Array): number => p.byteLength

  it('gives what the one-shot call gives, for frames of every size in any order, in memory of its own', () => {
    const u = new ReusedZstdDecompress()
    const all = payloads().map(p => ({ p, z: compressOnce(p) }))
    for (const order of [all, [...all].reverse()]) {
      for (const { p, z } of order) {
        const got = u.decompress(z, contentSize(p))
        assert.ok(got !== undefined, `${p.length} bytes decoded here`)
        assert.ok(same(got, p) && same(got, zstdDecompressSync(z)), `${p.length} bytes`)
        assert.equal(got.byteOffset, 0)
        assert.equal(got.buffer.byteLength, got.length, 'a buffer of its own: the box opener moves it whole')
      }
    }
    assert.equal(u.reused, true)
    u.close()
  })

  it('leaves to the one-shot call a frame of another size than said, or followed by more', () => {
    const u = new ReusedZstdDecompress()
    const p = dagCbor.encode({ text: 'size '.repeat(3000) })
    const z = compressOnce(p)
    assert.equal(u.decompress(z, p.length - 1), undefined, 'more than said')
    assert.equal(u.decompress(z, p.length + 1), undefined, 'less than said')
    assert.equal(u.decompress(Buffer.concat([z, compressOnce(Uint8Array.of(1))]), p.length), undefined, 'another frame after it')
    // none of those is an error of the handle's: it is still used, and still right
    assert.equal(u.reused, true)
    assert.ok(same(u.decompress(z, p.length) as Uint8Array, p))
  })

  for (const [what, damage] of [
    ['cut short', (z: Buffer) => z.subarray(0, z.length - 3)],
    ['corrupt', (z: Buffer) => { const bad = Buffer.from(z); bad[10] ^= 0x55; bad[bad.length >> 1] ^= 0xff; return bad }]
  ] as const) {
    it(`a frame ${what}: node:zlib closes the handle, which is then dropped (never called again); decompress reports it as before`, () => {
      const u = new ReusedZstdDecompress()
      const p = dagCbor.encode({ text: 'damaged '.repeat(3000) })
      const z = Buffer.from(compressOnce(p))
      assert.ok(u.decompress(z, p.length) !== undefined)
      const bad = damage(z)
      assert.equal(u.decompress(bad, p.length), undefined)
      assert.equal(u.reused, false)
      assert.equal(u.decompress(z, p.length), undefined, 'the one-shot call from now on')
      // seal.ts's decompress: the kept context's refusal leaves the answer to the one-shot call
      assert.throws(() => decompress(bad, 1 << 20), (err: { code?: string, info?: { reason?: string } }) => err.code === BackupErrorCode.BACKUP_MALFORMED && err.info?.reason === 'zstd')
      assert.ok(same(decompress(z, 1 << 20), p))
    })
  }

  it('falls back when the handle is missing, throws or decodes wrongly', () => {
    const decompressor = (): ZstdDecompress => createZstdDecompress()
    const p = dagCbor.encode({ text: 'fallback '.repeat(300) })
    const z = compressOnce(p)
    const faults: Array<[string, unknown]> = [
      ['no handle', null],
      ['no writeSync', { reset () {} }],
      ['writeSync throws', throwsOnWrite],
      ['decodes less than it is given', dropsLastInputByte]
    ]
    for (const [name, handle] of faults) {
      const u = new ReusedZstdDecompress(engineWith(handle, decompressor))
      for (let i = 0; i < 3; i++) assert.equal(u.decompress(z, p.length), undefined, name)
      assert.equal(u.reused, false, name)
      assert.ok(same(decompress(z, 1 << 20), p), name)
    }
  })
})
