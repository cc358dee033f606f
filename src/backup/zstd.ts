/**
 * zstd frames for sealed boxes, with one compression context per thread kept from box to box.
 *
 * node:zlib's zstdCompressSync makes a new native context for each call (ZSTD_createCCtx, its tables
 * allocated and zeroed, reported to V8 as external memory) and tears it down afterwards: for a backup's
 * ~9 KB segments that is about half of what compressing one costs, and the external memory it reports
 * makes the seal worker's heap collect (~half of its mark-compacts, docs/PERFORMANCE.md). Here one
 * compressor's native handle is reset and given each payload whole with ZSTD_e_end, which is what the
 * one-shot call does too: the same frame, byte for byte (sealing is deterministic; a test compares).
 *
 * The handle is node:zlib's internal `_handle` (`reset`, `writeSync`, `_writeState`), not a documented
 * API. It is checked when first used — its methods there and a probe compressed to the one-shot bytes —
 * and any surprise then or later (a missing method, an error, input left over) falls back to
 * zstdCompressSync for good, so a Node without it only loses speed.
 */
import { constants as zc, createZstdCompress, zstdCompressSync } from 'node:zlib'
import type { ZstdCompress, ZstdOptions } from 'node:zlib'
import { ZSTD_LEVEL } from './constants.ts'

export const ZSTD_OPTIONS: ZstdOptions = {
  params: {
    [zc.ZSTD_c_compressionLevel]: ZSTD_LEVEL,
    [zc.ZSTD_c_contentSizeFlag]: 1,
    [zc.ZSTD_c_checksumFlag]: 0
  }
}

/** the output buffer kept between calls is at most this large (a larger payload gets one of its own) */
const KEPT_OUTPUT = 512 * 1024

/** the part of node:zlib's native handle used here */
interface NativeHandle {
  reset: () => void
  writeSync: (flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number) => void
}

type Engine = ZstdCompress & { _handle?: Partial<NativeHandle> | null, _writeState?: Uint32Array, _hadError?: boolean, _chunkSize?: unknown }

/**
 * What a kept context must compress as the one-shot call does before it is used: a small payload (one
 * window) and one of several blocks and windows (~200 KB of words from a fixed generator).
 */
const PROBES: Uint8Array[] = (() => {
  const words = ['tokenim', 'zstd', 'probe', 'segment', 'message', 'backup', 'restore', 'é', '🙂', '0x5aAeb6']
  let x = 0x2545f491
  const parts: string[] = []
  for (let n = 0; n < 200_000;) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    const w = words[(x >>> 16) % words.length]
    parts.push(w)
    n += w.length + 1
  }
  const enc = new TextEncoder()
  return [enc.encode(parts.slice(0, 100).join(' ')), enc.encode(parts.join(' '))]
})()

/** ZSTD_compressBound: the most a frame of `n` bytes of input can take */
export function compressBound (n: number): number {
  return n + (n >>> 8) + (n < 128 * 1024 ? ((128 * 1024 - n) >>> 11) : 0) + 64
}

/** The one-shot zstdCompressSync's frame as a Uint8Array over its own memory. */
export function compressOnce (plain: Uint8Array): Uint8Array {
  const out = zstdCompressSync(plain, ZSTD_OPTIONS)
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength)
}

/**
 * A compressor that keeps its native context. `compress` gives what {@link compressOnce} gives; `reused`
 * says whether it still uses the kept context.
 */
export class ReusedZstd {
  #engine: Engine | undefined
  #handle: NativeHandle | undefined
  #out = new Uint8Array(0)
  /** node's output window per native call (the engine's chunkSize) */
  #chunk = 0
  #checked = false
  readonly #makeEngine: () => ZstdCompress

  /** `makeEngine`: the compressor whose handle is kept (tests give one that fails) */
  constructor (makeEngine: () => ZstdCompress = () => createZstdCompress(ZSTD_OPTIONS)) {
    this.#makeEngine = makeEngine
  }

  get reused (): boolean { return this.#handle !== undefined }

  compress (plain: Uint8Array): Uint8Array {
    if (!this.#checked) this.#check()
    if (this.#handle === undefined) return compressOnce(plain)
    const z = this.#frame(plain)
    return z ?? compressOnce(plain)
  }

  /**
   * The frame, a copy of its own, or undefined (and the one-shot from now on) when the handle misbehaved.
   * zstd is given the output windows node's one-shot loop gives it (processChunkSync: `chunkSize` bytes
   * a call, again while a window fills), not one large buffer: with room for the whole frame zstd takes
   * another path for inputs of more than a block (128 KiB) and writes other (valid) bytes.
   */
  #frame (plain: Uint8Array): Uint8Array | undefined {
    const engine = this.#engine as Engine
    const handle = this.#handle as NativeHandle
    const chunk = this.#chunk
    // whole windows up to the bound, and one more: the loop below always has a full window to give
    const room = (Math.ceil(compressBound(plain.byteLength) / chunk) + 1) * chunk
    let out = this.#out
    if (out.length < room) {
      out = new Uint8Array(room)
      if (room <= KEPT_OUTPUT) this.#out = out
    }
    const state = engine._writeState as Uint32Array
    let inOff = 0
    let inLeft = plain.byteLength
    let outOff = 0
    try {
      handle.reset()
      for (;;) {
        if (outOff + chunk > out.length) throw new Error('the frame outgrew its bound')
        handle.writeSync(zc.ZSTD_e_end, plain, inOff, inLeft, out, outOff, chunk)
        if (engine._hadError === true) throw new Error('the handle failed')
        const outLeft = state[0]
        inOff += inLeft - state[1]
        inLeft = state[1]
        outOff += chunk - outLeft
        if (outLeft !== 0) break
      }
    } catch {
      this.#drop()
      return undefined
    }
    // all input taken (zstd ends the frame once output is left over); anything else: one-shot
    if (inLeft !== 0) {
      this.#drop()
      return undefined
    }
    return out.slice(0, outOff)
  }

  #check (): void {
    this.#checked = true
    let engine: Engine
    try {
      engine = this.#makeEngine() as Engine
    } catch {
      return
    }
    // an error on the handle is raised as the stream's 'error' event: heard here, seen as _hadError
    engine.on('error', () => {})
    const h = engine._handle
    const chunk = engine._chunkSize
    if (h === null || h === undefined || typeof h.reset !== 'function' || typeof h.writeSync !== 'function' || !(engine._writeState instanceof Uint32Array) ||
      typeof chunk !== 'number' || !Number.isSafeInteger(chunk) || chunk < 64) {
      engine.close()
      return
    }
    this.#engine = engine
    this.#handle = h as NativeHandle
    this.#chunk = chunk
    for (const probe of PROBES) {
      const z = this.#frame(probe)
      const once = compressOnce(probe)
      if (z === undefined || z.length !== once.length || !z.every((b, i) => b === once[i])) {
        this.#drop()
        return
      }
    }
  }

  #drop (): void {
    this.#handle = undefined
    this.#out = new Uint8Array(0)
    try {
      this.#engine?.close()
    } catch {
      // a broken engine may fail to close too; it is dropped either way
    }
    this.#engine = undefined
  }

  /** Free the native context (a later compress makes a new one). */
  close (): void {
    this.#drop()
    this.#checked = false
  }
}
