/**
 * Long-lived `/tokenim/msg/1.0.0` streams: many envelopes pipelined on one stream per peer, each
 * answered by a receipt on the same stream, matched by message id (receipts may come back in any order).
 *
 * - {@link FrameWriter} coalesces the frames written in one turn of the event loop into one
 *   `stream.send()` (one muxer frame, one Noise packet) and waits for 'drain' when the stream is full.
 * - {@link OutboundChannel} is the sender's end: `request(id, envelope)` resolves with the receipt for
 *   `id`, once the channel's `verify` has accepted the receipt frame holding it (one check for a v2
 *   receipt of many ids). At most `maxInFlight` envelopes are unanswered at once (the others wait for a
 *   slot). When the stream fails every pending request rejects with `DELIVERY_FAILED` (a receipt that fails
 *   `verify`: with that error) and the channel is gone (the service opens a new one). An idle channel
 *   closes its writing side, so the receiver ends cleanly.
 * - {@link ReceiptWriter} is the receiver's: the receipts of the messages stored in one turn of the event
 *   loop go out as one v2 receipt per sender (1.1.0 streams), or one v1 receipt each (1.0.0 streams).
 */
import type { Stream } from '@libp2p/interface'
import { encodeVarint } from '../p2p/index.ts'
import type { FramedStream } from '../p2p/index.ts'
import { log } from '../util/log.ts'
import { createReceipt, createReceiptBatch, decodeReceipt, encodeFrame, MAX_RECEIPT_IDS, receiptIds } from './envelope.ts'
import type { AnyReceipt, ReceiptKeys, ReceiptStatus } from './envelope.ts'
import { MessagingError, MessagingErrorCode } from './errors.ts'

const logger = log('messaging:channel')

/** Unanswered envelopes on one outbound stream (default). */
export const DEFAULT_CHANNEL_IN_FLIGHT = 64
/**
 * Unanswered envelope bytes on one outbound stream (default; one envelope may always go): keeps an honest
 * sender well under the receiver's 4 MiB read buffer whatever the envelope sizes.
 */
export const DEFAULT_CHANNEL_IN_FLIGHT_BYTES = 1024 * 1024
/** An outbound channel with nothing in flight for this long closes (default). */
export const DEFAULT_CHANNEL_IDLE_MS = 5_000
/** An outbound channel older than this takes no new envelopes (default): the peer's device may have changed. */
export const DEFAULT_CHANNEL_MAX_AGE_MS = 60_000

/**
 * Writes length-prefixed frames to a stream, coalescing those written in the same turn of the event
 * loop into one send. `write()` never throws: a failed send aborts the stream (readers see it).
 */
export class FrameWriter {
  private readonly stream: Stream
  private queue: Uint8Array[] = []
  private queued = 0
  private pumping?: Promise<void>
  private failed = false

  constructor (stream: Stream) {
    this.stream = stream
  }

  /** Queue one frame (without its prefix). */
  write (frame: Uint8Array): void {
    if (this.failed) return
    const prefix = encodeVarint(frame.byteLength)
    this.queue.push(prefix, frame)
    this.queued += prefix.byteLength + frame.byteLength
    this.pumping ??= new Promise<void>(resolve => { setImmediate(resolve) }).then(async () => { await this.pump() })
  }

  /** Resolves once everything queued so far was handed to the stream (or the stream failed). */
  async flushed (): Promise<void> {
    while (this.pumping != null) await this.pumping
  }

  private async pump (): Promise<void> {
    try {
      while (this.queue.length > 0 && !this.failed) {
        const parts = this.queue
        const bytes = new Uint8Array(this.queued)
        this.queue = []
        this.queued = 0
        let o = 0
        for (const p of parts) { bytes.set(p, o); o += p.byteLength }
        if (!this.stream.send(bytes)) await drained(this.stream)
      }
    } catch (err) {
      this.failed = true
      this.queue = []
      this.stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      this.pumping = undefined
    }
  }
}

async function drained (stream: Stream): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const done = (): void => {
      stream.removeEventListener('drain', onDrain)
      stream.removeEventListener('close', onClose)
    }
    const onDrain = (): void => { done(); resolve() }
    const onClose = (): void => { done(); reject(new MessagingError(MessagingErrorCode.DELIVERY_FAILED, 'the stream closed while writing')) }
    stream.addEventListener('drain', onDrain)
    stream.addEventListener('close', onClose)
  })
}

/** What a request resolves with: its message's receipt, verified. */
export interface Acknowledged {
  id: string
  status: ReceiptStatus
  /** the recipient's clock when it stored the message */
  ts: number
}

export interface ChannelInit {
  /** checks a receipt frame before any of its ids counts as acknowledged (throws: the channel is reset) */
  verify?: (receipt: AnyReceipt) => void
  /** unanswered envelopes at once (default 64) */
  maxInFlight?: number
  /** unanswered envelope bytes at once (default 1 MiB; one envelope may always go) */
  maxInFlightBytes?: number
  /** close after this long with nothing in flight (default 5 s) */
  idleMs?: number
  /** take no new envelopes after this long (default 60 s) */
  maxAgeMs?: number
  /** called once when the channel can take no more envelopes (failed, idle or old) */
  onGone?: () => void
}

interface Pending {
  bytes: number
  resolve: (r: Acknowledged) => void
  reject: (err: Error) => void
}

/** The sender's end of one long-lived stream (see the module doc). */
export class OutboundChannel {
  readonly f: FramedStream
  readonly openedAt = Date.now()
  private readonly writer: FrameWriter
  private readonly maxInFlight: number
  private readonly maxInFlightBytes: number
  private inFlightBytes = 0
  private readonly idleMs: number
  private readonly maxAgeMs: number
  private readonly onGone: () => void
  private readonly verify: (receipt: AnyReceipt) => void
  private readonly pending = new Map<string, Pending>()
  private readonly slotWaiters: Array<() => void> = []
  private idleTimer?: NodeJS.Timeout
  private gone = false
  private error?: Error
  readonly done: Promise<void>

  constructor (f: FramedStream, init: ChannelInit = {}) {
    this.f = f
    this.writer = new FrameWriter(f.stream)
    this.maxInFlight = init.maxInFlight ?? DEFAULT_CHANNEL_IN_FLIGHT
    this.maxInFlightBytes = init.maxInFlightBytes ?? DEFAULT_CHANNEL_IN_FLIGHT_BYTES
    this.idleMs = init.idleMs ?? DEFAULT_CHANNEL_IDLE_MS
    this.maxAgeMs = init.maxAgeMs ?? DEFAULT_CHANNEL_MAX_AGE_MS
    this.onGone = init.onGone ?? (() => {})
    this.verify = init.verify ?? (() => {})
    this.done = this.readLoop()
    this.armIdle()
  }

  /** True while the channel takes new envelopes. */
  get usable (): boolean {
    return !this.gone && Date.now() - this.openedAt < this.maxAgeMs
  }

  get inFlight (): number {
    return this.pending.size
  }

  /**
   * Write the envelope frame of message `id` and resolve with its receipt, verified. Rejects with
   * `DELIVERY_FAILED` when the stream fails or closes first, with the error of a receipt that failed to
   * verify, with the signal's reason, or — `timeoutMs` after the envelope was handed to the stream — with
   * a TimeoutError (AbortSignal.timeout's), the receipt then no longer awaited.
   */
  async request (id: string, envelope: Uint8Array, signal: AbortSignal, timeoutMs?: number): Promise<Acknowledged> {
    while (!this.gone && this.pending.size > 0 &&
      (this.pending.size >= this.maxInFlight || this.inFlightBytes + envelope.byteLength > this.maxInFlightBytes)) {
      await this.slot(signal)
    }
    if (this.gone) throw this.closedError()
    signal.throwIfAborted()
    if (this.pending.has(id)) throw new MessagingError(MessagingErrorCode.DELIVERY_FAILED, 'this message is already in flight on the channel', { id })
    clearTimeout(this.idleTimer)
    const { promise, resolve, reject } = Promise.withResolvers<Acknowledged>()
    this.pending.set(id, { bytes: envelope.byteLength, resolve, reject })
    this.inFlightBytes += envelope.byteLength
    const giveUp = (reason: unknown): void => {
      if (this.pending.get(id)?.reject === reject) this.settled(id)
      reject(reason as Error)
    }
    const onAbort = (): void => { giveUp(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    // a timer rather than a second signal per request (an AbortController and its listeners cost ~1 KB each)
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => { giveUp(new DOMException('The operation was aborted due to timeout', 'TimeoutError')) }, timeoutMs)
    timer?.unref()
    this.writer.write(envelope)
    try {
      return await promise
    } finally {
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
    }
  }

  /** Stop taking envelopes; close our writing side once nothing is in flight. */
  retire (): void {
    if (this.gone) return
    this.markGone()
    if (this.pending.size === 0) this.closeWrite()
  }

  /** Reset the stream; every pending request fails. */
  abort (err: Error): void {
    this.fail(err)
    this.f.abort(err)
  }

  private async readLoop (): Promise<void> {
    try {
      for (;;) {
        const bytes = await this.f.read()
        if (bytes == null) {
          this.fail(new MessagingError(MessagingErrorCode.DELIVERY_FAILED, 'the recipient closed the stream'))
          return
        }
        const receipt = decodeReceipt(bytes)
        this.verify(receipt)
        for (const id of receiptIds(receipt)) {
          const p = this.pending.get(id)
          if (p === undefined) {
            // answered after we gave up on it (timeout): harmless
            logger('receipt for %s that is no longer awaited', id)
            continue
          }
          this.settled(id)
          p.resolve({ id, status: receipt.status, ts: receipt.ts })
        }
      }
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err))
      // the requests waiting on a receipt that failed to verify get its error (FORGED_RECEIPT), not "closed"
      if (isTokenimErrorOf(e, MessagingErrorCode.FORGED_RECEIPT)) this.rejectPending(e)
      this.abort(e)
    }
  }

  private rejectPending (err: Error): void {
    const pending = [...this.pending.values()]
    this.pending.clear()
    this.inFlightBytes = 0
    for (const p of pending) p.reject(err)
  }

  private settled (id: string): void {
    const p = this.pending.get(id)
    if (p === undefined) return
    this.pending.delete(id)
    this.inFlightBytes -= p.bytes
    // wake every waiter: each re-checks its own size against the budget
    for (const wake of this.slotWaiters.splice(0)) wake()
    if (this.pending.size === 0) {
      if (this.gone) this.closeWrite()
      else this.armIdle()
    }
  }

  private async slot (signal: AbortSignal): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.slotWaiters.indexOf(wake)
        if (i >= 0) this.slotWaiters.splice(i, 1)
        reject(signal.reason as Error)
      }
      const wake = (): void => { signal.removeEventListener('abort', onAbort); resolve() }
      if (signal.aborted) { onAbort(); return }
      signal.addEventListener('abort', onAbort, { once: true })
      this.slotWaiters.push(wake)
    })
  }

  private armIdle (): void {
    clearTimeout(this.idleTimer)
    if (this.gone) return
    this.idleTimer = setTimeout(() => { if (this.pending.size === 0) this.retire() }, this.idleMs)
    this.idleTimer.unref?.()
  }

  private closeWrite (): void {
    void this.writer.flushed()
      .then(async () => { await this.f.close({ signal: AbortSignal.timeout(10_000) }) })
      .catch((err: Error) => { this.f.abort(err) })
  }

  private markGone (): void {
    if (this.gone) return
    this.gone = true
    clearTimeout(this.idleTimer)
    for (const wake of this.slotWaiters.splice(0)) wake()
    this.onGone()
  }

  private fail (err: Error): void {
    this.error ??= err
    this.markGone()
    const pending = [...this.pending.values()]
    this.pending.clear()
    this.inFlightBytes = 0
    const reason = this.closedError()
    for (const p of pending) p.reject(reason)
  }

  private closedError (): MessagingError {
    const cause = this.error
    return new MessagingError(MessagingErrorCode.DELIVERY_FAILED, `the channel is closed${cause !== undefined ? `: ${cause.message}` : ''}`, { channel: true }, { cause })
  }
}

function isTokenimErrorOf (err: Error, code: string): boolean {
  return err instanceof MessagingError && err.code === code
}

/** One acknowledgement for the {@link ReceiptWriter}: a stored message, and the keys of its receipt. */
export interface Ack {
  id: string
  from: string
  to: string
  /** when it was stored */
  ts: number
  keys: ReceiptKeys
}

/**
 * The receiver's receipts on one stream (see the module doc). Batched: every message acknowledged in one
 * turn of the event loop (a group commit's messages) goes into one v2 receipt per sender — one MAC and one
 * frame instead of one each — at most MAX_RECEIPT_IDS ids a receipt. Else one v1 receipt per message.
 */
export class ReceiptWriter {
  private readonly out: FrameWriter
  private readonly batched: boolean
  private waiting = new Map<string, { acks: Ack[] }>()
  private flushing?: Promise<void>

  constructor (out: FrameWriter, batched: boolean) {
    this.out = out
    this.batched = batched
  }

  /** Acknowledge a stored message (never throws: a receipt that cannot be made aborts nothing here). */
  ack (a: Ack): void {
    if (!this.batched) {
      this.out.write(encodeFrame(createReceipt({ id: a.id, from: a.from, to: a.to, ts: a.ts }, a.keys)))
      return
    }
    let group = this.waiting.get(a.from)
    if (group === undefined) {
      group = { acks: [] }
      this.waiting.set(a.from, group)
    }
    group.acks.push(a)
    this.flushing ??= new Promise<void>(resolve => { setImmediate(resolve) }).then(() => { this.flush() })
  }

  /** Resolves once every receipt acknowledged so far is handed to the stream's writer. */
  async flushed (): Promise<void> {
    while (this.flushing !== undefined) await this.flushing
    await this.out.flushed()
  }

  private flush (): void {
    const groups = this.waiting
    this.waiting = new Map()
    this.flushing = undefined
    for (const { acks } of groups.values()) {
      for (let i = 0; i < acks.length; i += MAX_RECEIPT_IDS) {
        const part = acks.slice(i, i + MAX_RECEIPT_IDS)
        const first = part[0]
        const ids = [...new Set(part.map(a => a.id))] // a duplicate sent twice in one turn: acknowledged once
        const ts = part.reduce((t, a) => Math.max(t, a.ts), 0)
        this.out.write(encodeFrame(createReceiptBatch({ ids, from: first.from, to: first.to, ts }, first.keys)))
      }
    }
  }
}

/** True for the error a request gets when its channel failed (worth one retry on a fresh channel). */
export function isChannelClosed (err: unknown): boolean {
  return err instanceof MessagingError && err.code === MessagingErrorCode.DELIVERY_FAILED && err.info.channel === true
}
