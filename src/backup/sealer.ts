/**
 * Sealing a backup's segments off the main thread. Sealing a segment (zstd, the SIV HMAC, AES-GCM, the
 * block's SHA-256) cost the builder's thread ~0.25 ms per segment with zstd on libuv's thread pool
 * (node:zlib's stream machinery around each call costs about what a small segment's compression does),
 * a quarter of a full backup's main-thread CPU. A SegmentSealer hands segments to one worker thread
 * (seal-worker.ts) once `workerAfter` segments were sealed here (small backups never start it: a worker
 * costs ~0.1–0.2 s of CPU and ~20–30 MB of memory; 512 segments are ~15,000 messages here), and seals on this thread meanwhile — until the worker is ready, and
 * whenever `maxQueued` segments already wait for it, so both cores work. A segment sealed here is sealed
 * at once, with this thread's kept zstd context (zstd.ts): cheaper than handing its compression to the
 * thread pool (a full backup ~15% faster, docs/PERFORMANCE.md Session 7). Sealing is deterministic:
 * the same box either way. A worker that fails (cannot start, dies, cannot seal one) costs only speed:
 * what it held is sealed here.
 */
import type { KeyObject } from 'node:crypto'
import { Worker } from 'node:worker_threads'
import { CID } from 'multiformats/cid'
import { Digest } from 'multiformats/hashes/digest'
import { sha256 } from '../crypto/index.ts'
import { log } from '../util/log.ts'
import { sharedSecret } from '../util/worker-secret.ts'
import { RAW, SHA2_256 } from './constants.ts'
import type { BoxKind } from './constants.ts'
import { seal, sealKey } from './seal.ts'
import type { SealReply, SealRequest } from './seal-worker.ts'

const logger = log('backup:sealer')

/** Segments sealed on the calling thread before a worker is started. */
export const DEFAULT_WORKER_AFTER = 512
/** Messages to build from which a builder that knows the count starts the worker at once ({@link SegmentSealer.warm}). */
export const WORKER_MESSAGES = 20_000
/**
 * Segments waiting for the worker beyond which the next is sealed on the calling thread. They include
 * answers not yet taken (the builder takes them when it waits for its window of 8), so a lower bound
 * sealed ~half the segments here with the worker idle (measured: 1,400 of 3,000 by the worker at 4).
 */
export const DEFAULT_MAX_QUEUED = 8

/** bytes of a raw block's CIDv1 with a SHA-256 multihash: version, codec, hash code, digest length, digest */
const RAW_CID_LENGTH = 36
/** CIDs per slab of {@link RawCids} */
const CIDS_PER_SLAB = 1024

/**
 * The boxes' raw CIDs, their bytes packed into shared slabs. A build keeps every segment's CID until its
 * manifest is written (~35,000 at 1,000,000 messages); `CID.createV1(RAW, Digest.create(…))` gives each
 * three arrays of its own (its bytes, the multihash's, the digest), each with its own ArrayBuffer: ~1 KB
 * of heap and malloc per CID, ~30 MB of the build's live heap at that size (a heap snapshot). Here the
 * three are views of one 36-byte range of a slab (and a slab holds only CIDs, so nothing else is kept
 * alive by them). The same CID (equals, bytes, toString) as {@link rawCid}.
 */
export class RawCids {
  #slab = new Uint8Array(0)
  #used = 0

  /** the raw CID of a block whose SHA-256 is `digest` (32 bytes, copied) */
  of (digest: Uint8Array): CID {
    if (digest.length !== 32) throw new Error('a SHA-256 digest is 32 bytes')
    if (this.#used + RAW_CID_LENGTH > this.#slab.length) {
      this.#slab = new Uint8Array(RAW_CID_LENGTH * CIDS_PER_SLAB)
      this.#used = 0
    }
    const bytes = this.#slab.subarray(this.#used, this.#used + RAW_CID_LENGTH)
    this.#used += RAW_CID_LENGTH
    bytes[0] = 1 // CIDv1
    bytes[1] = RAW
    bytes[2] = SHA2_256
    bytes[3] = 32
    bytes.set(digest, 4)
    const multihash = bytes.subarray(2)
    return new CID(1, RAW, new Digest(SHA2_256, 32, multihash.subarray(2), multihash), bytes)
  }
}

export interface SealedSegment {
  box: Uint8Array
  cid: CID
  /** asked for and sealed by the worker: the box's seal-cache key and entry (seal-cache.ts), made there */
  cacheKey?: string
  cacheEntry?: Uint8Array
}

interface Pending {
  plain: Uint8Array
  kind: BoxKind
  cache: boolean
  resolve: (s: SealedSegment) => void
  reject: (err: unknown) => void
}

export interface SegmentSealerOptions {
  /** segments sealed here before the worker starts (default 512; Infinity: never) */
  workerAfter?: number
  /** segments waiting for the worker beyond which the next is sealed here (default 8) */
  maxQueued?: number
  /** the worker's module (default seal-worker.ts; tests give one that fails) */
  workerUrl?: URL
}

export class SegmentSealer {
  readonly #key: Uint8Array
  /** the worker's copy of the key, in shared memory: wiped by the worker once imported, and here when it stops */
  #workerKey: Uint8Array | undefined
  /** K imported once for the segments sealed here */
  readonly #mac: KeyObject
  readonly #workerAfter: number
  readonly #maxQueued: number
  readonly #workerUrl: URL
  #worker: Worker | undefined
  #ready = false
  #failed = false
  #closed = false
  #count = 0
  #nextId = 0
  readonly #pending = new Map<number, Pending>()
  readonly #cids = new RawCids()
  /** segments sealed by the worker (for tests and logs) */
  byWorker = 0

  /** whether segments now go to a worker */
  get ready (): boolean { return this.#ready && !this.#failed && !this.#closed }

  /** `key` (32 bytes) is read until close() resolves; the worker gets a copy, wiped once imported and when it stops. */
  constructor (key: Uint8Array, options: SegmentSealerOptions = {}) {
    this.#key = key
    this.#mac = sealKey(key)
    this.#workerAfter = options.workerAfter ?? DEFAULT_WORKER_AFTER
    this.#maxQueued = options.maxQueued ?? DEFAULT_MAX_QUEUED
    this.#workerUrl = options.workerUrl ?? new URL('./seal-worker.ts', import.meta.url)
  }

  /**
   * Start the worker now rather than after `workerAfter` segments (a build that knows it has many to
   * seal: the worker is ready by the time they come); nothing when `workerAfter` is Infinity.
   */
  warm (): void {
    if (this.#worker === undefined && !this.#failed && !this.#closed && this.#workerAfter !== Infinity) this.#start()
  }

  /**
   * The box seal(key, kind, plain) and its raw CID (a segment's block; a manifest shard's box goes into its
   * dag-cbor node). Boxes are counted toward `workerAfter` whatever their kind. `maxQueued` overrides the
   * sealer's for this box (Infinity: to the ready worker however many wait, for a caller that has other
   * work meanwhile). With `cache`, a box sealed by the worker comes with its seal-cache key and entry
   * (made there: the plaintext's SHA-256 and two HMACs off this thread); one sealed here comes without.
   */
  async seal (plain: Uint8Array, kind: BoxKind = 'segment', maxQueued = this.#maxQueued, cache = false): Promise<SealedSegment> {
    if (this.#closed) throw new Error('the sealer is closed')
    this.#count++
    if (this.#worker === undefined && !this.#failed && this.#count > this.#workerAfter) this.#start()
    if (this.#ready && !this.#failed && this.#pending.size < maxQueued) return await this.#post(plain, kind, cache)
    return await this.#here(plain, kind)
  }

  async #here (plain: Uint8Array, kind: BoxKind): Promise<SealedSegment> {
    const box = seal(this.#mac, kind, plain)
    return { box, cid: this.#cids.of(sha256(box)) }
  }

  #start (): void {
    let worker: Worker
    try {
      worker = new Worker(this.#workerUrl, {
        workerData: { key: this.#workerKey = sharedSecret(this.#key) },
        // it holds a few segments at a time: a small heap keeps its memory small (at 1,000,000 messages young
        // 4 / old 64 MB gave a backup's peak RSS 377 MB, 1 / 16 MB 363 MB, the same minutes; a worker out of
        // heap only stops taking segments: they are sealed here)
        resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 }
      })
    } catch (err) {
      this.#fail(err)
      return
    }
    this.#worker = worker
    worker.on('message', (m: SealReply) => { this.#onReply(m) })
    worker.on('error', (err) => { this.#fail(err) })
    worker.on('exit', (code) => { if (!this.#closed) this.#fail(new Error(`the seal worker exited (${code})`)) })
  }

  #post (plain: Uint8Array, kind: BoxKind, cache: boolean): Promise<SealedSegment> {
    const id = this.#nextId++
    // a copy that owns its memory (a Buffer's slice is a view, maybe of Node's shared pool, which cannot be
    // moved), moved to the worker; `plain` stays here in case the worker fails
    const copy = new Uint8Array(plain)
    return new Promise<SealedSegment>((resolve, reject) => {
      this.#pending.set(id, { plain, kind, cache, resolve, reject })
      try {
        this.#worker?.postMessage({ id, plain: copy, ...(kind !== 'segment' ? { kind } : {}), ...(cache ? { cache: true } : {}) } satisfies SealRequest, [copy.buffer])
      } catch (err) {
        this.#fail(err)
      }
    })
  }

  #onReply (m: SealReply): void {
    if ('ready' in m) {
      this.#ready = true
      return
    }
    const p = this.#pending.get(m.id)
    if (p === undefined) return
    this.#pending.delete(m.id)
    if ('error' in m) {
      // sealed here: the same failure (or box) as without a worker
      this.#here(p.plain, p.kind).then(p.resolve, p.reject)
      return
    }
    this.byWorker++
    const sealed: SealedSegment = { box: m.box, cid: this.#cids.of(m.digest) }
    if (p.cache && typeof m.cacheKey === 'string' && m.cacheEntry instanceof Uint8Array) {
      sealed.cacheKey = m.cacheKey
      sealed.cacheEntry = m.cacheEntry
    }
    p.resolve(sealed)
  }

  /** The worker is not used again; what it held is sealed here. */
  #fail (err: unknown): void {
    if (this.#failed) return
    this.#failed = true
    if (!this.#closed) logger('seal worker not used: %s', err instanceof Error ? err.message : String(err))
    const held = [...this.#pending.values()]
    this.#pending.clear()
    for (const p of held) this.#here(p.plain, p.kind).then(p.resolve, p.reject)
    const w = this.#worker
    this.#worker = undefined
    this.#workerKey?.fill(0) // its results are not used any more
    w?.terminate().catch(() => {})
  }

  /**
   * Stop the worker (a ready one wipes its copy of the key first; one still starting is terminated).
   * Segments still waiting for it are sealed here; call it once every seal() has settled.
   */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (this.#count > this.#workerAfter) logger('%d of %d segments sealed on the worker thread', this.byWorker, this.#count)
    const w = this.#worker
    this.#worker = undefined
    const held = [...this.#pending.values()]
    this.#pending.clear()
    const left = held.map(async p => { await this.#here(p.plain, p.kind).then(p.resolve, p.reject) })
    if (w !== undefined) {
      const exited = new Promise<void>(resolve => { w.once('exit', () => { resolve() }) })
      if (this.#ready) {
        w.postMessage({ close: true } satisfies SealRequest)
        // it ends once its port is closed; terminated if it has not within a second
        const timer = setTimeout(() => { w.terminate().catch(() => {}) }, 1000)
        await exited
        clearTimeout(timer)
      } else {
        await w.terminate().catch(() => {})
      }
    }
    this.#workerKey?.fill(0)
    await Promise.all(left)
  }
}
