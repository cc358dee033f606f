/**
 * Opening a bundle's segment boxes on a second thread while the calling thread decodes, checks and imports
 * the segments before them (a restore's verify pass). Opening a box (seal.ts: the SIV HMACs, AES-256-GCM,
 * node:zlib's zstd with its per-call stream machinery) is about a fifth of a restore's main-thread work.
 *
 * A BoxOpener only helps: `open` hands a copy of a box to the worker (open-worker.ts) and gives a promise
 * of its plaintext — or undefined at once when the worker does not take it (not ready yet, `maxWaiting`
 * boxes already waiting, failed, closed), and the promise gives undefined when the worker could not open
 * that box or stopped: the caller then opens the box itself with seal.ts `open`, with the same result or
 * the same error as without a worker (open is a pure function of key, kind, box and limit). A worker that
 * cannot start or dies costs only speed. It costs ~0.1–0.2 s of CPU to start and ~20–30 MB of memory, so
 * a caller starts one only for many boxes.
 */
import { Worker } from 'node:worker_threads'
import { log } from '../util/log.ts'
import type { BoxKind } from './constants.ts'
import type { OpenReply, OpenRequest } from './open-worker.ts'

const logger = log('backup:opener')

/** Segments from which a checker opens them on a worker (fewer: the worker's start costs more than it saves). */
export const OPENER_MIN_BOXES = 256
/** Boxes waiting for the worker beyond which the next is opened by the caller. */
export const DEFAULT_OPENER_MAX_WAITING = 16

export interface BoxOpenerOptions {
  maxWaiting?: number
  /** the worker's module (default open-worker.ts; tests give one that fails) */
  workerUrl?: URL
}

export class BoxOpener {
  readonly #maxWaiting: number
  #worker: Worker | undefined
  #ready = false
  #failed = false
  #closed = false
  #nextId = 0
  readonly #waiting = new Map<number, (plain: Uint8Array | undefined) => void>()
  /** boxes the worker opened (tests, logs) */
  opened = 0

  /** Starts the worker with a copy of `key` (32 bytes; the worker wipes its copy once imported). */
  constructor (key: Uint8Array, options: BoxOpenerOptions = {}) {
    this.#maxWaiting = options.maxWaiting ?? DEFAULT_OPENER_MAX_WAITING
    let worker: Worker
    try {
      worker = new Worker(options.workerUrl ?? new URL('./open-worker.ts', import.meta.url), {
        workerData: { key: Uint8Array.from(key) },
        // it holds a few boxes at a time (their bytes outside its heap): a small heap keeps its memory small
        // (at 1,000,000 messages young 4 / old 64 MB gave a restore's peak RSS 344 MB, 1 / 16 MB 320 MB;
        // a worker out of heap only stops taking boxes)
        resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 }
      })
    } catch (err) {
      this.#fail(err)
      return
    }
    this.#worker = worker
    worker.on('message', (m: OpenReply) => {
      if ('ready' in m) {
        this.#ready = true
        return
      }
      const resolve = this.#waiting.get(m.id)
      if (resolve === undefined) return
      this.#waiting.delete(m.id)
      if ('plain' in m) {
        this.opened++
        resolve(m.plain)
      } else {
        resolve(undefined)
      }
    })
    worker.on('error', (err) => { this.#fail(err) })
    worker.on('exit', (code) => { if (!this.#closed) this.#fail(new Error(`the open worker exited (${code})`)) })
  }

  /** whether boxes now go to the worker */
  get ready (): boolean { return this.#ready && !this.#failed && !this.#closed }

  /**
   * `open(key, kind, box, max)` on the worker: a promise of the plaintext (undefined: the worker did not
   * open it), or undefined when the worker does not take the box. `box` is copied (the caller keeps it).
   */
  open (kind: BoxKind, box: Uint8Array, max: number): Promise<Uint8Array | undefined> | undefined {
    const worker = this.#worker
    if (!this.ready || worker === undefined || this.#waiting.size >= this.#maxWaiting) return undefined
    const id = this.#nextId++
    // a copy of its own (a Buffer's slice() is a view: moving its memory would take the caller's box, or a
    // whole pool slab, with it)
    const copy = new Uint8Array(box)
    try {
      worker.postMessage({ id, kind, box: copy, max } satisfies OpenRequest, [copy.buffer])
    } catch (err) {
      this.#fail(err)
      return undefined
    }
    return new Promise(resolve => { this.#waiting.set(id, resolve) })
  }

  /** The worker is not used again: what waits for it is answered undefined (the caller opens it). */
  #fail (err: unknown): void {
    if (this.#failed) return
    this.#failed = true
    if (!this.#closed) logger('open worker not used: %s', err instanceof Error ? err.message : String(err))
    this.#settle()
    void this.#worker?.terminate().catch(() => {})
  }

  #settle (): void {
    const waiting = [...this.#waiting.values()]
    this.#waiting.clear()
    for (const resolve of waiting) resolve(undefined)
  }

  /** Stop the worker (what still waits for it is answered undefined). */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#settle()
    const worker = this.#worker
    this.#worker = undefined
    if (worker !== undefined) await worker.terminate().catch(() => {})
    logger('closed: %d boxes opened on the worker', this.opened)
  }
}
