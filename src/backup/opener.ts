/**
 * Opening a bundle's segment boxes on a second thread while the calling thread decodes, checks and imports
 * the segments before them (a restore's verify pass). Opening a box (seal.ts: the SIV HMACs, AES-256-GCM,
 * zstd with a kept context, zstd.ts) was about a fifth of a restore's main-thread work.
 *
 * A BoxOpener only helps and is never waited for: `submit` hands a copy of a box to the worker
 * (open-worker.ts) and gives a ticket (0 when the worker does not take it: not ready yet, `maxWaiting`
 * boxes already waiting, failed, closed); `take` gives the plaintext if the worker has answered by then,
 * else undefined, and the caller opens the box itself with seal.ts `open` — with the same result or the
 * same error as without a worker (open is a pure function of key, kind, box and limit; a box the worker
 * could not open is answered undefined too). The answers are read synchronously from the worker's port
 * (receiveMessageOnPort): a caller that runs from promise to promise never lets a 'message' event in, and
 * a caller that waited for the worker would wait whenever the worker's core is busy with other work (a
 * loaded machine, LevelDB's compactions). A worker that cannot start or dies costs only speed. It costs
 * ~0.1–0.2 s of CPU to start and some memory, so a caller starts one only for many boxes.
 */
import { MessageChannel, Worker, receiveMessageOnPort } from 'node:worker_threads'
import type { MessagePort } from 'node:worker_threads'
import { log } from '../util/log.ts'
import { sharedSecret } from '../util/worker-secret.ts'
import type { BoxKind } from './constants.ts'
import type { OpenReply, OpenRequest } from './open-worker.ts'

const logger = log('backup:opener')

/** Segments from which a checker opens them on a worker (fewer: the worker's start costs more than it saves). */
export const OPENER_MIN_BOXES = 256
/** Boxes handed to the worker and not yet taken beyond which the next is not handed over. */
export const DEFAULT_OPENER_MAX_WAITING = 48

export interface BoxOpenerOptions {
  maxWaiting?: number
  /** the worker's module (default open-worker.ts; tests give one that fails) */
  workerUrl?: URL
}

export class BoxOpener {
  readonly #maxWaiting: number
  #worker: Worker | undefined
  #port: MessagePort | undefined
  #ready = false
  #failed = false
  #closed = false
  #nextTicket = 1
  /** tickets handed to the worker and not yet answered */
  readonly #waiting = new Set<number>()
  /** answers not yet taken (undefined: the box did not open there) */
  readonly #answers = new Map<number, Uint8Array | undefined>()
  /** boxes the worker opened and the caller took (tests, logs) */
  opened = 0
  /** boxes handed over whose answer was not there when the caller took them (logs) */
  late = 0

  /** the worker's copy of the key, in shared memory: wiped by the worker once imported, and here when it stops */
  #workerKey: Uint8Array | undefined

  /** Starts the worker with a copy of `key` (32 bytes; wiped once imported and when the worker stops). */
  constructor (key: Uint8Array, options: BoxOpenerOptions = {}) {
    this.#maxWaiting = options.maxWaiting ?? DEFAULT_OPENER_MAX_WAITING
    const { port1, port2 } = new MessageChannel()
    let worker: Worker
    try {
      worker = new Worker(options.workerUrl ?? new URL('./open-worker.ts', import.meta.url), {
        workerData: { key: this.#workerKey = sharedSecret(key), port: port2 },
        transferList: [port2],
        // it holds a few boxes at a time (their bytes outside its heap): a small heap keeps its memory small
        // (at 1,000,000 messages young 4 / old 64 MB gave a restore's peak RSS 344 MB, 1 / 16 MB 320 MB;
        // a worker out of heap only stops taking boxes)
        resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 }
      })
    } catch (err) {
      port1.close()
      this.#fail(err)
      return
    }
    this.#worker = worker
    this.#port = port1
    worker.on('error', (err) => { this.#fail(err) })
    worker.on('exit', (code) => { if (!this.#closed) this.#fail(new Error(`the open worker exited (${code})`)) })
  }

  /** whether boxes now go to the worker */
  get ready (): boolean {
    this.#drain()
    return this.#ready && !this.#failed && !this.#closed
  }

  /**
   * Hand `open(key, kind, box, max)` to the worker: a ticket for {@link take}, or 0 when the worker does
   * not take it. `box` is copied (the caller keeps it).
   */
  submit (kind: BoxKind, box: Uint8Array, max: number): number {
    const worker = this.#worker
    if (!this.ready || worker === undefined || this.#waiting.size + this.#answers.size >= this.#maxWaiting) return 0
    const ticket = this.#nextTicket++
    // a copy of its own (a Buffer's slice() is a view: moving its memory would take the caller's box, or a
    // whole pool slab, with it)
    const copy = new Uint8Array(box)
    try {
      worker.postMessage({ id: ticket, kind, box: copy, max } satisfies OpenRequest, [copy.buffer])
    } catch (err) {
      this.#fail(err)
      return 0
    }
    this.#waiting.add(ticket)
    return ticket
  }

  /** whether the worker has answered this ticket (with a plaintext or not) */
  answered (ticket: number): boolean {
    this.#drain()
    return this.#answers.has(ticket)
  }

  /**
   * The plaintext of a submitted box if the worker has answered with it, else undefined (not yet, or it did
   * not open there): the caller opens the box itself. Either way the ticket is done (a late answer is dropped).
   */
  take (ticket: number): Uint8Array | undefined {
    if (ticket === 0) return undefined
    this.#drain()
    const plain = this.#answers.get(ticket)
    this.#answers.delete(ticket)
    if (this.#waiting.delete(ticket)) this.late++
    if (plain !== undefined) this.opened++
    return plain
  }

  /** the worker's answers that arrived so far */
  #drain (): void {
    const port = this.#port
    if (port === undefined || this.#failed || this.#closed) return
    for (let got = receiveMessageOnPort(port); got !== undefined; got = receiveMessageOnPort(port)) {
      const m = got.message as OpenReply
      if ('ready' in m) this.#ready = true
      else if (this.#waiting.delete(m.id)) this.#answers.set(m.id, 'plain' in m ? m.plain : undefined)
    }
  }

  /** The worker is not used again: everything is opened by the caller. */
  #fail (err: unknown): void {
    if (this.#failed) return
    this.#failed = true
    if (!this.#closed) logger('open worker not used: %s', err instanceof Error ? err.message : String(err))
    this.#waiting.clear()
    this.#answers.clear()
    this.#port?.close()
    this.#workerKey?.fill(0) // its answers are not used any more
    void this.#worker?.terminate().catch(() => {})
  }

  /** Stop the worker. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#waiting.clear()
    this.#answers.clear()
    const worker = this.#worker
    this.#worker = undefined
    this.#port?.close()
    if (worker !== undefined) await worker.terminate().catch(() => {})
    this.#workerKey?.fill(0)
    logger('closed: %d boxes opened on the worker, %d taken back late', this.opened, this.late)
  }
}
