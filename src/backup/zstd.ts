/**
 * zstd for sealed boxes, with one compression and one decompression context per thread kept from box to
 * box.
 *
 * node:zlib's zstdCompressSync makes a new native context for each call (ZSTD_createCCtx, its tables
 * allocated and zeroed, reported to V8 as external memory) and tears it down afterwards: for a backup's
 * ~9 KB segments that is about half of what compressing one costs, and the external memory it reports
 * makes the seal worker's heap collect (~half of its mark-compacts, docs/PERFORMANCE.md). Here one
 * compressor's native handle is reset and given each payload whole with ZSTD_e_end, which is what the
 * one-shot call does too: the same frame, byte for byte (sealing is deterministic; a test compares).
 * zstdDecompressSync likewise (~35% of a restore's decompression, and most of the box opener's
 * collections): one decompressor's handle is reset and given each frame with room for exactly the size
 * its header declares.
 *
 * The handle is node:zlib's internal `_handle` (`reset`, `writeSync`, `_writeState`), not a documented
 * API. It is checked when first used — its methods there and probes giving the one-shot bytes — and any
 * surprise then or later (a missing method, an error, input left over) falls back to the one-shot calls
 * for good, so a Node without it only loses speed.
 */
import { constants as zc, createZstdCompress, createZstdDecompress, zstdCompressSync } from 'node:zlib'
import type { ZstdCompress, ZstdDecompress, ZstdOptions } from 'node:zlib'
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

type Engine<E> = E & { _handle?: Partial<NativeHandle> | null, _writeState?: Uint32Array, _hadError?: boolean, _chunkSize?: unknown }

/**
 * What a kept context must compress as the one-shot call does before it is used: a small payload (one
 * window) and one of several blocks and windows (~200 KB of words from a fixed generator). Made on first
 * use, not when the module loads (most processes that load it never seal or open a box).
 */
let probes: Uint8Array[] | undefined
function probePayloads (): Uint8Array[] {
  if (probes !== undefined) return probes
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
  probes = [enc.encode(parts.slice(0, 100).join(' ')), enc.encode(parts.join(' '))]
  return probes
}

/** ZSTD_compressBound: the most a frame of `n` bytes of input can take */
export function compressBound (n: number): number {
  return n + (n >>> 8) + (n < 128 * 1024 ? ((128 * 1024 - n) >>> 11) : 0) + 64
}

/**
 * The one-shot zstdCompressSync's frame as a Uint8Array (a view of node's Buffer: a small one may share
 * Node's 64 KiB pool slab with other Buffers; sealing copies it into the box).
 */
export function compressOnce (plain: Uint8Array): Uint8Array {
  const out = zstdCompressSync(plain, ZSTD_OPTIONS)
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength)
}

/** what both kept contexts share: node:zlib's engine, its native handle, checked when first used */
abstract class KeptHandle<E extends ZstdCompress | ZstdDecompress> {
  protected engine: Engine<E> | undefined
  protected handle: NativeHandle | undefined
  /** node's output window per native call (the engine's chunkSize) */
  protected chunk = 0
  #checked = false
  readonly #makeEngine: () => E

  constructor (makeEngine: () => E) {
    this.#makeEngine = makeEngine
  }

  /** whether the kept context is (still) used */
  get reused (): boolean { return this.handle !== undefined }

  /** the handle, checked on first use; undefined: the one-shot call */
  protected ready (): NativeHandle | undefined {
    if (!this.#checked) this.#check()
    return this.handle
  }

  /** whether the kept context gives what the one-shot call gives for the probes */
  protected abstract probe (): boolean

  #check (): void {
    this.#checked = true
    let engine: Engine<E>
    try {
      engine = this.#makeEngine() as Engine<E>
    } catch {
      return
    }
    // an error on the handle closes it (see alive) and is raised later as the stream's 'error' event: heard here
    engine.on('error', () => {})
    const h = engine._handle
    const chunk = engine._chunkSize
    if (h === null || h === undefined || typeof h.reset !== 'function' || typeof h.writeSync !== 'function' || !(engine._writeState instanceof Uint32Array) ||
      typeof chunk !== 'number' || !Number.isSafeInteger(chunk) || chunk < 64) {
      engine.close()
      return
    }
    this.engine = engine
    this.handle = h as NativeHandle
    this.chunk = chunk
    if (!this.probe()) this.drop()
  }

  /** the kept context is not used again: the one-shot call from now on */
  protected drop (): void {
    this.handle = undefined
    try {
      this.engine?.close()
    } catch {
      // a broken engine may fail to close too; it is dropped either way
    }
    this.engine = undefined
  }

  /** Free the native context (a later call makes a new one). */
  close (): void {
    this.drop()
    this.#checked = false
  }
}

/**
 * A compressor that keeps its native context. `compress` gives what {@link compressOnce} gives; `reused`
 * says whether it still uses the kept context.
 */
export class ReusedZstd extends KeptHandle<ZstdCompress> {
  #out = new Uint8Array(0)

  /** `makeEngine`: the compressor whose handle is kept (tests give one that fails) */
  constructor (makeEngine: () => ZstdCompress = () => createZstdCompress(ZSTD_OPTIONS)) {
    super(makeEngine)
  }

  compress (plain: Uint8Array): Uint8Array {
    // the native call takes typed arrays only (anything else fails a native check: the process aborts)
    if (!(plain instanceof Uint8Array) || this.ready() === undefined) return compressOnce(plain)
    return this.#frame(plain) ?? compressOnce(plain)
  }

  protected probe (): boolean {
    for (const probe of probePayloads()) {
      const z = this.#frame(probe)
      if (z === undefined || !sameBytes(z, compressOnce(probe))) return false
    }
    return true
  }

  protected override drop (): void {
    super.drop()
    this.#out = new Uint8Array(0)
  }

  /**
   * The frame, a copy of its own, or undefined (and the one-shot from now on) when the handle misbehaved.
   * zstd is given the output windows node's one-shot loop gives it (processChunkSync: `chunkSize` bytes
   * a call, again while a window fills), not one large buffer: with room for the whole frame zstd takes
   * another path for inputs of more than a block (128 KiB) and writes other (valid) bytes.
   */
  #frame (plain: Uint8Array): Uint8Array | undefined {
    const engine = this.engine as Engine<ZstdCompress>
    const handle = this.handle as NativeHandle
    const chunk = this.chunk
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
      if (!alive(engine, handle)) throw new Error('the handle is closed')
      handle.reset()
      if (!alive(engine, handle)) throw new Error('the handle failed to reset')
      for (;;) {
        if (outOff + chunk > out.length) throw new Error('the frame outgrew its bound')
        handle.writeSync(zc.ZSTD_e_end, plain, inOff, inLeft, out, outOff, chunk)
        if (!alive(engine, handle)) throw new Error('the handle failed')
        const outLeft = state[0]
        inOff += inLeft - state[1]
        inLeft = state[1]
        outOff += chunk - outLeft
        if (outLeft !== 0) break
      }
    } catch {
      this.drop()
      return undefined
    }
    // all input taken (zstd ends the frame once output is left over); anything else: one-shot
    if (inLeft !== 0) {
      this.drop()
      return undefined
    }
    return out.slice(0, outOff)
  }
}

/**
 * A decompressor that keeps its native context (a new one per call also made the box opener's worker
 * collect its small heap for "external memory pressure" every ~60 ms of a restore). `decompress` gives
 * the frame's content into memory of its own when the kept context decodes it whole to exactly the size
 * its header declares, and undefined otherwise (a frame it cannot decode, one that says another size, input
 * left over, a handle that misbehaves): the caller then makes the one-shot call, whose answer or error
 * counts. A misbehaving handle is dropped for good.
 */
export class ReusedZstdDecompress extends KeptHandle<ZstdDecompress> {
  /** one byte: room for what a frame would give beyond its declared size */
  readonly #spare = new Uint8Array(1)

  /** `makeEngine`: the decompressor whose handle is kept (tests give one that fails) */
  constructor (makeEngine: () => ZstdDecompress = () => createZstdDecompress()) {
    super(makeEngine)
  }

  /** the content of frame `z`, which declares `size` bytes (checked against the caller's limit), or undefined */
  decompress (z: Uint8Array, size: number): Uint8Array | undefined {
    if (!(z instanceof Uint8Array) || !Number.isSafeInteger(size) || size < 0 || this.ready() === undefined) return undefined
    return this.#content(z, size)
  }

  protected probe (): boolean {
    for (const probe of probePayloads()) {
      const got = this.#content(compressOnce(probe), probe.byteLength)
      if (got === undefined || !sameBytes(got, probe)) return false
    }
    return true
  }

  #content (z: Uint8Array, size: number): Uint8Array | undefined {
    const engine = this.engine as Engine<ZstdDecompress>
    const handle = this.handle as NativeHandle
    const state = engine._writeState as Uint32Array
    // memory of its own: a box opener's worker moves it to the caller whole
    const buf = Buffer.allocUnsafeSlow(size)
    const out = new Uint8Array(buf.buffer, buf.byteOffset, size)
    try {
      if (!alive(engine, handle)) throw new Error('the handle is closed')
      handle.reset()
      if (!alive(engine, handle)) throw new Error('the handle failed to reset')
      handle.writeSync(zc.ZSTD_e_end, z, 0, z.byteLength, out, 0, size)
      if (!alive(engine, handle)) throw new Error('the handle failed')
      if (state[0] !== 0 || state[1] !== 0) return undefined // less than declared, or input left
      // the declared size reached: the frame must be done, with nothing more to give
      handle.writeSync(zc.ZSTD_e_end, z, z.byteLength, 0, this.#spare, 0, 1)
      if (!alive(engine, handle)) throw new Error('the handle failed')
      if (spareLeft(state) !== 1) return undefined
    } catch {
      this.drop()
      return undefined
    }
    return out
  }
}

/**
 * Whether the engine still owns this handle. A native error (a corrupt frame) makes node:zlib destroy the
 * stream and close its handle at once, inside the call; the 'error' event follows later. A closed handle
 * must not be called again: its native context is freed (reset then segfaults, writeSync aborts the
 * process), so this is checked before the first call on a handle and after every call. (`_hadError`:
 * older Nodes' flag for the same; Node 24 keeps the error under a symbol.)
 */
function alive (engine: { _handle?: unknown, destroyed?: boolean, _hadError?: boolean }, handle: NativeHandle): boolean {
  return engine._handle === handle && engine.destroyed !== true && engine._hadError !== true
}

/** the output room left after the last write */
function spareLeft (state: Uint32Array): number {
  return state[0]
}

function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0
}
