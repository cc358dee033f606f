/**
 * The `/tokenim/msg/1.1.0` protocol (and `/tokenim/msg/1.0.0`, which carries v1 envelopes only):
 * receiving (verify, dedupe, store, acknowledge) and sending (outbox first, then deliver; retry with
 * exponential backoff and jitter until a verified receipt).
 *
 * Envelopes (envelope.ts): a peer that speaks 1.1.0 is sent v2 envelopes, sealed under a sending epoch per
 * recipient key (no X25519 per message; the receiver keeps each epoch's key); a peer whose listener speaks
 * only 1.0.0 is sent v1 envelopes (a fresh ephemeral key each), and a v2 envelope queued for it before that
 * was known is sealed again as v1 from the stored message.
 *
 * Stream protocol: the dialer keeps one long-lived stream per recipient (channel.ts) and pipelines
 * envelope frames on it; for each, the listener answers with one receipt frame on the same stream once
 * the message is stored (also for a duplicate, so a sender whose receipt got lost stops retrying).
 * Envelopes of one stream are handled concurrently (up to {@link MAX_INBOUND_IN_FLIGHT}), so receipts
 * come back in any order and are matched by message id. The dialer closes its writing side when idle;
 * the listener then closes too. Anything malformed, oversized, unauthenticated, too fast (token bucket
 * per peer, per frame) or too slow aborts that stream only.
 *
 * @example
 * ```ts
 * const messaging = new MessagingService({ node, resolver, store, address, keys }, { retryBaseMs: 2000 })
 * await messaging.start()
 * messaging.on('message', (msg) => { … })
 * const { id, status } = await messaging.send(theirAddress, 'hello')
 * await messaging.stop()
 * ```
 */
import { EventEmitter } from 'node:events'
import type { KeyObject } from 'node:crypto'
import type { Connection, Stream } from '@libp2p/interface'
import { x25519EphemeralKeyPairAsync, x25519PrivateKeyObject, x25519PublicKeyObject } from '../crypto/index.ts'
import { isTokenimError } from '../errors.ts'
import { framed, P2PErrorCode } from '../p2p/index.ts'
import type { P2PNode, PeerId, ResolvedPeer, Resolver } from '../p2p/index.ts'
import type { OutboxEntry, Store, StoredMessage } from '../store/index.ts'
import { log } from '../util/log.ts'
import {
  checkRecipient,
  decodeEnvelope,
  decodeFrame,
  MAX_FRAME_BYTES,
  MSG_PROTOCOL,
  MSG_PROTOCOLS,
  openingSecret,
  openMessage,
  openSendEpoch,
  receiptMacKeys,
  receivingEpochKey,
  sealEphemeral,
  sealMessage,
  SendEpoch,
  staticSecret,
  verifyReceipt
} from './envelope.ts'
import type { Envelope, EnvelopeHeaderV2, MessageAttachment, MessagingKeyPair, OpenOptions, ReceiptMacKeys, SealEphemeral, SessionKeys } from './envelope.ts'
import { GroupCommit, TurnBatch } from './batcher.ts'
import { FrameWriter, isChannelClosed, OutboundChannel, ReceiptWriter } from './channel.ts'
import type { Ack, Acknowledged } from './channel.ts'
import { MessagingError, MessagingErrorCode } from './errors.ts'
import { newMessageId } from './ids.ts'
import { TokenBuckets } from './rate-limit.ts'
import type { TokenBucketInit } from './rate-limit.ts'

export const DEFAULT_ACK_TIMEOUT_MS = 10_000
export const DEFAULT_DELIVERY_TIMEOUT_MS = 30_000
export const DEFAULT_STREAM_IDLE_TIMEOUT_MS = 30_000
export const DEFAULT_RETRY_BASE_MS = 2_000
export const DEFAULT_RETRY_MAX_MS = 10 * 60_000
export const DEFAULT_MAX_CONCURRENT_DELIVERIES = 8
/**
 * How many frames one inbound stream may carry: no limit of its own since streams are long-lived
 * (the per-peer token bucket limits frames). Kept for compatibility.
 */
export const MAX_FRAMES_PER_STREAM = Infinity
/** Envelopes of one inbound stream being verified and stored at once (the reader waits beyond). */
export const MAX_INBOUND_IN_FLIGHT = 64
/** Static-static secrets kept (per peer messaging key), with our sending epoch to that key. */
const MAX_SESSIONS = 1024
/** Receiving epoch keys kept (per sender key and epoch key E): an epoch costs its receiver one X25519. */
const MAX_EPOCH_KEYS = 1024
/** Fresh ephemeral key pairs made ahead on the thread pool for sealing (a channel's window). */
const EPHEMERALS_AHEAD = 64
/** After a peer identifies, wait this long (its record is being fetched) before retrying its messages. */
const IDENTIFY_RETRY_DELAY_MS = 300

/** The parts of the store messaging uses. */
export type MessagingStore = Pick<Store,
'addOutgoing' | 'addMessage' | 'getMessage' | 'getOutbox' | 'enqueue' | 'dueOutbox' | 'outbox' |
'outboxSize' | 'rescheduleOutbox' | 'markDelivered' | 'markSeen' | 'hasSeen' | 'addIncoming' | 'markDeliveredMany' |
'addOutgoingMany'>

/** The parts of the resolver messaging uses. */
export type MessagingResolver = Pick<Resolver, 'resolve' | 'dialProtocol' | 'cached'>

/** The parts of the p2p node messaging uses. */
export type MessagingNode = Pick<P2PNode, 'handle' | 'unhandle' | 'events'>

export interface MessagingComponents {
  node: MessagingNode
  resolver: MessagingResolver
  store: MessagingStore
  /** our wallet address (any case) */
  address: string
  /** our X25519 messaging key pair (the public key is the one in our device record) */
  keys: MessagingKeyPair
}

export interface MessagingInit {
  /** how long to wait for a receipt after writing an envelope (default 10 s) */
  ackTimeoutMs?: number
  /** a whole delivery attempt: resolve + dial + write + receipt (default 30 s) */
  deliveryTimeoutMs?: number
  /** an inbound stream with no frame for this long is aborted (default 30 s) */
  streamIdleTimeoutMs?: number
  /** first retry delay; doubles per failed attempt (default 2 s) */
  retryBaseMs?: number
  /** longest retry delay (default 10 min) */
  retryMaxMs?: number
  /** deliveries running at once (default 8) */
  maxConcurrentDeliveries?: number
  /** per-peer budget of inbound frames (default burst 64, 16/s) */
  rateLimit?: TokenBucketInit
}

export interface SendOptions {
  attachment?: MessageAttachment
  /** aborts waiting for the first delivery attempt (the message stays queued) */
  signal?: AbortSignal
}

export interface SendResult {
  id: string
  status: 'delivered' | 'queued'
}

export interface MessagingStats {
  received: number
  duplicates: number
  rejected: number
  delivered: number
  failedAttempts: number
}

export interface MessagingEvents {
  /** a new incoming message was stored */
  message: [StoredMessage]
  /** a verified receipt arrived for one of our messages */
  delivered: [{ id: string, to: string }]
  /** an inbound stream was aborted (malformed, forged, rate limited, …) */
  rejected: [{ peer: string, code: string, message: string }]
  /** a delivery attempt failed; the message stays in the outbox until `nextAttemptAt` */
  retry: [{ id: string, to: string, attempts: number, nextAttemptAt: number, error: string }]
}

/** Reachability failures: every queued message to that recipient would fail the same way. */
const UNREACHABLE = new Set<string>([P2PErrorCode.PEER_NOT_FOUND, P2PErrorCode.DIAL_FAILED])

export class MessagingService extends EventEmitter<MessagingEvents> {
  readonly address: string
  private readonly c: MessagingComponents
  private readonly ackTimeoutMs: number
  private readonly deliveryTimeoutMs: number
  private readonly streamIdleTimeoutMs: number
  private readonly retryBaseMs: number
  private readonly retryMaxMs: number
  private readonly maxConcurrent: number
  private readonly limiter: TokenBuckets
  private readonly log = log('messaging')
  private readonly inflight = new Map<string, Promise<boolean>>()
  /** the deadlines of the delivery attempts running (stop() aborts them) */
  private readonly attempts = new Set<Deadline>()
  private readonly inbound = new Set<Promise<void>>()
  private readonly stats: MessagingStats = { received: 0, duplicates: 0, rejected: 0, delivered: 0, failedAttempts: 0 }
  /** peer id → addresses we have pending messages for (learned when resolving) */
  private readonly peerAddresses = new Map<string, string>()
  private running = false
  private shutdown = new AbortController()
  private timer?: NodeJS.Timeout
  private timerAt = Infinity
  private identifyTimer?: NodeJS.Timeout
  private readonly identified = new Set<string>()
  private flushing?: Promise<void>
  private flushAgain: 'none' | 'due' | 'all' = 'none'
  private readonly onIdentify = (evt: { peerId: PeerId }): void => { this.peerIdentified(evt.peerId) }
  /** our static private key as a KeyObject; per peer key (hex), LRU: X25519(ours, theirs), their key object, the receipt MAC keys */
  private readonly ownKey: KeyObject
  private readonly sessions = new Map<string, Session>()
  /** a peer key's hex (the sessions' key), by the key's bytes object */
  private readonly keyIds = new WeakMap<Uint8Array, string>()
  /** the v2 epoch keys of envelopes received, by sender key and E (LRU; being derived or derived) */
  private readonly epochKeys = new Map<string, KeyObject | Promise<KeyObject>>()
  /** the epoch key used last (checked first: the next envelope is most often of the same epoch) */
  private lastEpoch?: { epk: Uint8Array, spk: Uint8Array, key: KeyObject }
  /** recipients whose last channel landed on a 1.0.0 listener: they are sent v1 envelopes */
  private readonly v1Peers = new Set<string>()
  /** fresh ephemeral key pairs being made or made (each handed out once; see nextEphemeral) */
  private ephemerals: Array<Promise<{ privateKey: KeyObject, publicKey: Uint8Array }>> = []
  private refilling = false
  /** the thread-pool crypto of one turn, settled together (see TurnBatch) */
  private readonly together = new TurnBatch()
  /** the open outbound channel per recipient address, channels being dialled, and all live ones */
  private readonly channels = new Map<string, OpenChannel>()
  private readonly dialing = new Map<string, Promise<OpenChannel>>()
  private readonly liveChannels = new Set<OutboundChannel>()
  /** group commits: the receiver's message+seen writes, the sender's message+outbox writes and delivered updates */
  private readonly incoming: GroupCommit<StoredMessage, boolean>
  private readonly outgoing: GroupCommit<{ msg: StoredMessage, entry: OutboxEntry }, boolean>
  private readonly deliveredIds: GroupCommit<string, boolean>

  constructor (components: MessagingComponents, init: MessagingInit = {}) {
    super()
    this.c = components
    this.address = components.address.toLowerCase()
    this.ackTimeoutMs = init.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS
    this.deliveryTimeoutMs = init.deliveryTimeoutMs ?? DEFAULT_DELIVERY_TIMEOUT_MS
    this.streamIdleTimeoutMs = init.streamIdleTimeoutMs ?? DEFAULT_STREAM_IDLE_TIMEOUT_MS
    this.retryBaseMs = init.retryBaseMs ?? DEFAULT_RETRY_BASE_MS
    this.retryMaxMs = Math.max(init.retryMaxMs ?? DEFAULT_RETRY_MAX_MS, this.retryBaseMs)
    this.maxConcurrent = init.maxConcurrentDeliveries ?? DEFAULT_MAX_CONCURRENT_DELIVERIES
    this.limiter = new TokenBuckets(init.rateLimit)
    this.ownKey = x25519PrivateKeyObject(components.keys.privateKey)
    this.incoming = new GroupCommit(async (msgs) => await this.c.store.addIncoming(msgs))
    // only send() submits here, with ids it has just made: none is stored (their reads are skipped)
    this.outgoing = new GroupCommit(async (items) => await this.c.store.addOutgoingMany(items, { absent: () => true }))
    this.deliveredIds = new GroupCommit(async (ids) => await this.c.store.markDeliveredMany(ids))
  }

  get isRunning (): boolean {
    return this.running
  }

  /** Register the protocol handler and retry everything in the outbox (e.g. after a restart). */
  async start (): Promise<void> {
    if (this.running) return
    this.running = true
    this.shutdown = new AbortController()
    for (const protocol of MSG_PROTOCOLS) {
      await this.c.node.handle(protocol, (stream, connection) => { this.onStream(stream, connection) }, {
        maxInboundStreams: 16,
        maxOutboundStreams: 64
      })
    }
    this.c.node.events.on('peer:identify', this.onIdentify)
    this.kick('all')
  }

  /** Unregister, abort in-flight work, wait for it, clear timers. Idempotent. */
  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    this.c.node.events.off('peer:identify', this.onIdentify)
    clearTimeout(this.timer)
    clearTimeout(this.identifyTimer)
    this.timer = undefined
    this.timerAt = Infinity
    this.identifyTimer = undefined
    this.shutdown.abort(new MessagingError(MessagingErrorCode.MESSAGING_NOT_STARTED, 'messaging is stopping'))
    for (const a of this.attempts) a.abort(this.shutdown.signal.reason)
    for (const protocol of MSG_PROTOCOLS) await this.c.node.unhandle(protocol).catch(() => {})
    const closing = new MessagingError(MessagingErrorCode.MESSAGING_NOT_STARTED, 'messaging is stopping')
    for (const ch of this.liveChannels) ch.abort(closing)
    await Promise.allSettled([this.flushing, ...this.inflight.values(), ...this.inbound, ...this.dialing.values()])
    for (const ch of this.liveChannels) ch.abort(closing)
    await Promise.allSettled([...this.liveChannels].map(async ch => { await ch.done }))
    await Promise.allSettled([this.incoming.idle(), this.outgoing.idle(), this.deliveredIds.idle()])
    this.channels.clear()
    this.liveChannels.clear()
    for (const { ss } of this.sessions.values()) ss.fill(0)
    this.sessions.clear()
    this.epochKeys.clear()
    this.lastEpoch = undefined
    this.v1Peers.clear()
    this.ephemerals = []
    this.limiter.clear()
    this.peerAddresses.clear()
    this.identified.clear()
  }

  status (): MessagingStats & { running: boolean, deliveriesInFlight: number } {
    return { ...this.stats, running: this.running, deliveriesInFlight: this.inflight.size }
  }

  // -------------------------------------------------------------------------------------------
  // sending

  /**
   * Send a text (and optional attachment reference) to a wallet address. The message and its outbox
   * entry are stored first, in one batch (status `queued`); then one delivery attempt is made.
   * Resolves `{ id, status: 'delivered' }` on a verified receipt, else `{ id, status: 'queued' }`
   * (it will be retried with backoff, when the peer shows up, and at every start).
   */
  async send (to: string, text: string, options: SendOptions = {}): Promise<SendResult> {
    this.requireRunning()
    if (typeof to !== 'string' || !/^0x[0-9a-fA-F]{40}$/.test(to)) throw argError('recipient must be a 0x wallet address')
    const recipient = to.toLowerCase()
    if (recipient === this.address) throw argError('cannot send a message to oneself')
    if (typeof text !== 'string') throw argError('text must be a string')
    const id = newMessageId()
    const ts = Date.now()
    // seal now when the recipient's key is known without the network (it never changes for an address)
    let envelope: Uint8Array = new Uint8Array(0)
    const cached = this.c.resolver.cached(recipient)
    const body = { text, ...(options.attachment !== undefined ? { attachment: options.attachment } : {}) }
    if (cached !== undefined) {
      const ephemeral = await this.sealingKey(recipient, cached.messagingKey)
      // stop() may have begun meanwhile: it waits only for the sends already handed to the store
      this.requireRunning()
      envelope = sealMessage({ id, ts, from: this.address, to: recipient, body }, this.c.keys, cached.messagingKey, this.session(cached.messagingKey), ephemeral).bytes
    } else {
      // validate sizes and shape now rather than at the first delivery
      sealMessage({ id, ts, from: this.address, to: recipient, body }, this.c.keys, this.c.keys.publicKey)
    }
    const message: StoredMessage = {
      id,
      conversation: recipient,
      from: this.address,
      to: recipient,
      ts,
      text,
      direction: 'out',
      status: 'queued',
      ...(options.attachment !== undefined ? { attachment: options.attachment } : {})
    }
    const entry: OutboxEntry = { id, to: recipient, attempts: 0, nextAttemptAt: ts, envelope }
    // one batch with the other sends of this moment (group commit); stored before any delivery attempt. The
    // stored entry holds no envelope (the message row holds what a retry seals again: its id, ts and body),
    // which halves what a send writes; the first attempt sends the one sealed here.
    await this.outgoing.submit({ msg: message, entry: { ...entry, envelope: NO_ENVELOPE } })
    const delivered = await raceAbort(this.deliver(id, entry), options.signal)
    return { id, status: delivered === true ? 'delivered' : 'queued' }
  }

  /**
   * Try every outbox entry now, ignoring backoff (`all`), or only those that are due. Resolves when
   * the pass is over. Concurrent calls share one pass.
   */
  async flush (mode: 'due' | 'all' = 'due'): Promise<void> {
    if (!this.running) return
    if (this.flushing != null) {
      if (mode === 'all' || this.flushAgain === 'none') this.flushAgain = mode
      await this.flushing
      return
    }
    this.flushing = (async () => {
      try {
        let next: 'due' | 'all' | 'none' = mode
        while (next !== 'none' && this.running) {
          this.flushAgain = 'none'
          await this.flushOnce(next)
          next = this.flushAgain
        }
      } catch (err) {
        if (this.running) this.log.error('outbox pass failed: %s', (err as Error).message)
      } finally {
        this.flushing = undefined
        if (this.running) await this.scheduleTimer().catch(() => {})
      }
    })()
    await this.flushing
  }

  /** Retry the messages queued for one address now (e.g. it just came online). */
  async retryAddress (address: string): Promise<void> {
    const to = address.toLowerCase()
    const entries = (await this.c.store.outbox()).filter(e => e.to === to)
    await this.deliverGroup(entries)
  }

  private kick (mode: 'due' | 'all'): void {
    this.flush(mode).catch(() => {})
  }

  private async flushOnce (mode: 'due' | 'all'): Promise<void> {
    const entries = mode === 'all' ? await this.c.store.outbox() : await this.c.store.dueOutbox(Date.now(), 1024)
    const groups = new Map<string, OutboxEntry[]>()
    for (const e of entries) {
      const g = groups.get(e.to)
      if (g === undefined) groups.set(e.to, [e])
      else g.push(e)
    }
    const queue = [...groups.values()]
    const workers = Array.from({ length: Math.min(this.maxConcurrent, queue.length) }, async () => {
      for (let g = queue.shift(); g !== undefined && this.running; g = queue.shift()) {
        await this.deliverGroup(g)
      }
    })
    await Promise.all(workers)
  }

  /**
   * Deliver one recipient's entries in (ts, id) order. When the recipient is unreachable the rest are
   * rescheduled without dialling again.
   */
  private async deliverGroup (entries: OutboxEntry[]): Promise<void> {
    let unreachable: string | undefined
    for (const e of entries) {
      if (!this.running) return
      if (unreachable !== undefined) {
        await this.reschedule(e, unreachable)
        continue
      }
      const ok = await this.deliver(e.id).catch(() => false)
      if (!ok) {
        const after = await this.c.store.getOutbox(e.id).catch(() => undefined)
        if (after?.lastError !== undefined && after.lastError.startsWith('unreachable:')) unreachable = after.lastError
      }
    }
  }

  /** One delivery attempt for message `id` (single-flight per id). True when delivered. */
  private async deliver (id: string, known?: OutboxEntry): Promise<boolean> {
    const running = this.inflight.get(id)
    if (running != null) return await running
    const p = this.attempt(id, known).finally(() => { this.inflight.delete(id) })
    this.inflight.set(id, p)
    return await p
  }

  /**
   * Write the envelope on the recipient's channel (opened when there is none) and verify the receipt.
   * A reused channel that turns out to be dead is replaced once within the attempt.
   */
  private async attempt (id: string, known?: OutboxEntry): Promise<boolean> {
    const entry = known ?? await this.c.store.getOutbox(id)
    if (entry === undefined) return (await this.c.store.getMessage(id))?.status === 'delivered'
    // the attempt's deadline, aborted too by stop() (see Deadline)
    const attempt = new Deadline(this.deliveryTimeoutMs)
    this.attempts.add(attempt)
    if (this.shutdown.signal.aborted) attempt.abort(this.shutdown.signal.reason)
    const signal = attempt.signal
    try {
      let receipt: Acknowledged
      for (let tries = 0; ; tries++) {
        const { ch, peer, fresh, version } = await this.channelFor(entry.to, signal)
        this.peerAddresses.set(peer.peerId.toString(), entry.to)
        let envelope = entry.envelope
        // a retry (the outbox holds no envelope: sealed again from the stored message, with the same id, ts
        // and body, so the receiver takes it as the same message), a send whose recipient's key was not
        // known, or a v2 envelope for a 1.0.0 listener
        if (envelope.length === 0 || (version === 1 && envelopeVersion(envelope) !== 1)) {
          envelope = await this.sealStored(id, entry.to, peer.messagingKey)
        }
        // the receipt within the ack timeout, verified by the channel (verifyReceipt: FORGED_RECEIPT resets the stream)
        try {
          receipt = await ch.request(id, envelope, signal, this.ackTimeoutMs)
        } catch (err) {
          if (!fresh && tries === 0 && isChannelClosed(err) && this.running) {
            this.log('channel to %s was closed: retrying %s on a new one', entry.to, id)
            continue
          }
          throw err
        }
        break
      }
      await this.deliveredIds.submit(id)
      this.stats.delivered++
      this.log('delivered %s to %s (receipt at %d)', id, entry.to, receipt.ts)
      this.emit('delivered', { id, to: entry.to })
      return true
    } catch (err) {
      if (!this.running) return false
      const code = isTokenimError(err) ? err.code : (err as Error)?.name ?? 'Error'
      const reason = `${UNREACHABLE.has(code) ? 'unreachable: ' : ''}${code}: ${(err as Error)?.message ?? String(err)}`
      this.stats.failedAttempts++
      this.log('delivery of %s to %s failed: %s', id, entry.to, reason)
      await this.reschedule(entry, reason)
      return false
    } finally {
      attempt.done()
      this.attempts.delete(attempt)
    }
  }

  private async reschedule (entry: OutboxEntry, reason: string): Promise<void> {
    if (!this.running) return
    const delay = this.backoff(entry.attempts + 1)
    const nextAttemptAt = Date.now() + delay
    const updated = await this.c.store.rescheduleOutbox(entry.id, nextAttemptAt, reason).catch((err: Error) => {
      this.log('could not reschedule %s: %s', entry.id, err.message)
      return undefined
    })
    if (updated === undefined) return
    this.emit('retry', { id: entry.id, to: entry.to, attempts: updated.attempts, nextAttemptAt, error: reason })
    this.armTimer(nextAttemptAt)
  }

  /** Exponential backoff with jitter: base · 2^(attempts-1), capped, then a random 50–100 % of it. */
  private backoff (attempts: number): number {
    const raw = Math.min(this.retryMaxMs, this.retryBaseMs * 2 ** Math.min(attempts - 1, 30))
    return Math.max(1, Math.round(raw * (0.5 + Math.random() * 0.5)))
  }

  /** The open channel to `to`, or a new one (one dial at a time per address). */
  private async channelFor (to: string, signal: AbortSignal): Promise<OpenChannel & { fresh: boolean }> {
    const open = this.channels.get(to)
    if (open !== undefined) {
      if (open.ch.usable) return { ...open, fresh: false }
      open.ch.retire()
    }
    let dialing = this.dialing.get(to)
    if (dialing === undefined) {
      dialing = this.openChannel(to).finally(() => { this.dialing.delete(to) })
      this.dialing.set(to, dialing)
    }
    const opened = await raceAbortReject(dialing, signal)
    return { ...opened, fresh: true }
  }

  private async openChannel (to: string): Promise<OpenChannel> {
    const signal = AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(this.deliveryTimeoutMs)])
    const { stream, peer } = await this.c.resolver.dialProtocol(to, MSG_PROTOCOLS, { signal })
    // a listener that speaks only 1.0.0 reads v1 envelopes: it is sent those from now on
    const version = stream.protocol === MSG_PROTOCOL ? 2 : 1
    if (version === 1) this.v1Peers.add(to)
    else this.v1Peers.delete(to)
    const f = framed(stream, { maxFrameBytes: MAX_FRAME_BYTES })
    if (!this.running) {
      f.abort(new MessagingError(MessagingErrorCode.MESSAGING_NOT_STARTED, 'messaging is stopping'))
      throw new MessagingError(MessagingErrorCode.MESSAGING_NOT_STARTED, 'messaging is stopping')
    }
    const receiptKeys = { keys: this.c.keys, peerKey: peer.messagingKey, ...this.session(peer.messagingKey) }
    const ch: OutboundChannel = new OutboundChannel(f, {
      // a receipt must come from this recipient's key, for messages we sent to it
      verify: (receipt) => { verifyReceipt(receipt, { from: this.address, to }, receiptKeys) },
      onGone: () => { if (this.channels.get(to)?.ch === ch) this.channels.delete(to) }
    })
    const entry = { ch, peer, version } as const
    this.channels.get(to)?.ch.retire()
    this.channels.set(to, entry)
    this.liveChannels.add(ch)
    void ch.done.finally(() => { this.liveChannels.delete(ch) })
    this.log('opened a channel to %s (%p, %s)', to, peer.peerId, stream.protocol)
    return entry
  }

  /** The cached static-static secret with a peer's messaging key (see SessionKeys); {} if it cannot be made. */
  private session (peerKey: Uint8Array): SessionKeys {
    const s = this.sessionOf(peerKey)
    if (s === undefined) return { privateKeyObject: this.ownKey } // a bad key: the envelope functions report it as before
    return { staticSecret: s.ss, privateKeyObject: this.ownKey, peerKeyObject: s.peer, receiptKeys: s.receipts }
  }

  /** The session of a peer's messaging key (made on first use; LRU), or undefined for a bad key. */
  private sessionOf (peerKey: Uint8Array): Session | undefined {
    // the resolver hands out the same key bytes for a peer each time: their hex is made once per array
    let k = this.keyIds.get(peerKey)
    if (k === undefined) {
      k = Buffer.from(peerKey.buffer, peerKey.byteOffset, peerKey.byteLength).toString('hex')
      this.keyIds.set(peerKey, k)
    }
    let s = this.sessions.get(k)
    if (s === undefined) {
      try {
        const ss = staticSecret(this.ownKey, peerKey)
        s = { ss, peer: x25519PublicKeyObject(peerKey), receipts: receiptMacKeys(ss, this.c.keys.publicKey, peerKey) }
      } catch {
        return undefined
      }
      if (this.sessions.size >= MAX_SESSIONS) {
        const [oldest, old] = this.sessions.entries().next().value as [string, Session]
        this.sessions.delete(oldest)
        old.ss.fill(0)
      }
    } else {
      this.sessions.delete(k) // re-inserted below: Map order is the LRU order
    }
    this.sessions.set(k, s)
    return s
  }

  /**
   * What a message to `to` (messaging key `peerKey`) is sealed with: our sending epoch to that key (a v2
   * envelope; opened when there is none or it is used up, one opening at a time), or for a recipient
   * known to read only v1 a fresh ephemeral key, both scalar multiplications on the thread pool (undefined
   * if that fails: sealMessage then makes one itself).
   */
  private async sealingKey (to: string, peerKey: Uint8Array): Promise<SendEpoch | SealEphemeral | undefined> {
    const s = this.sessionOf(peerKey)
    if (s === undefined) return undefined // a bad key: sealMessage reports it
    if (this.v1Peers.has(to)) return await this.together.join(sealEphemeral(s.peer, this.nextEphemeral())).catch(() => undefined)
    if (s.epoch?.usable() === true) return s.epoch
    s.opening ??= openSendEpoch(this.c.keys, peerKey, { staticSecret: s.ss, privateKeyObject: this.ownKey, peerKeyObject: s.peer })
      .then(epoch => { s.epoch = epoch; return epoch })
      .finally(() => { s.opening = undefined })
    const epoch = await s.opening
    // taken by others meanwhile: it may be used up already
    return epoch.usable() ? epoch : await this.sealingKey(to, peerKey)
  }

  /**
   * The epoch key of a v2 envelope from `senderKey`: kept from an earlier envelope of its epoch, else
   * derived (X25519 on the thread pool, one derivation at a time per epoch). The envelope's checks come first.
   */
  private async epochKeyOf (envelope: EnvelopeHeaderV2, options: OpenOptions): Promise<KeyObject> {
    // most envelopes are of the epoch the one before was of
    const last = this.lastEpoch
    if (last !== undefined && equalBytes(last.epk, envelope.epk) && equalBytes(last.spk, options.senderKey)) return last.key
    const id = Buffer.concat([envelope.epk, options.senderKey]).toString('latin1')
    let key = this.epochKeys.get(id)
    if (key !== undefined) {
      this.epochKeys.delete(id) // re-inserted below: LRU order
      this.epochKeys.set(id, key)
      if (key instanceof Promise) return await key
      this.lastEpoch = { epk: envelope.epk, spk: options.senderKey, key }
      return key
    }
    const derived = this.together.join(receivingEpochKey(envelope, options))
    if (this.epochKeys.size >= MAX_EPOCH_KEYS) this.epochKeys.delete(this.epochKeys.keys().next().value as string)
    this.epochKeys.set(id, derived)
    try {
      key = await derived
    } catch (err) {
      if (this.epochKeys.get(id) === derived) this.epochKeys.delete(id)
      throw err
    }
    if (this.epochKeys.get(id) === derived) this.epochKeys.set(id, key)
    this.lastEpoch = { epk: envelope.epk, spk: options.senderKey, key }
    return key
  }

  /**
   * A fresh ephemeral key pair, made ahead on the thread pool, never handed out twice. The pool is topped
   * up in a later turn of the event loop, so the key-pair jobs queue behind this turn's DH jobs (libuv's
   * pool is first in, first out) and, in a burst, run while the recipient works on the previous window.
   */
  private nextEphemeral (): Promise<{ privateKey: KeyObject, publicKey: Uint8Array }> {
    const next = this.ephemerals.shift() ?? x25519EphemeralKeyPairAsync()
    if (!this.refilling && this.running) {
      this.refilling = true
      setImmediate(() => {
        this.refilling = false
        if (!this.running) return
        while (this.ephemerals.length < EPHEMERALS_AHEAD) {
          const pair = x25519EphemeralKeyPairAsync()
          pair.catch(() => {}) // its taker sees the error (and seals without it)
          this.ephemerals.push(pair)
        }
      })
    }
    return next
  }

  /** Seal a queued message from the store for `to` (after its recipient's key became known, or for a v1 listener). */
  private async sealStored (id: string, to: string, recipientKey: Uint8Array): Promise<Uint8Array> {
    const msg = await this.c.store.getMessage(id)
    if (msg === undefined) throw new MessagingError(MessagingErrorCode.DELIVERY_FAILED, 'the queued message is missing from the store', { id })
    const body = { text: msg.text, ...(msg.attachment !== undefined ? { attachment: msg.attachment } : {}) }
    const ephemeral = await this.sealingKey(to, recipientKey)
    return sealMessage({ id: msg.id, ts: msg.ts, from: this.address, to: msg.to, body }, this.c.keys, recipientKey, this.session(recipientKey), ephemeral).bytes
  }

  /** Arm the retry timer for the earliest outbox entry. */
  private async scheduleTimer (): Promise<void> {
    const [first] = await this.c.store.dueOutbox(Number.MAX_SAFE_INTEGER - 1, 1)
    if (first !== undefined) this.armTimer(first.nextAttemptAt)
  }

  private armTimer (at: number): void {
    if (!this.running || at >= this.timerAt) return
    clearTimeout(this.timer)
    this.timerAt = at
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.timerAt = Infinity
      this.kick('due')
    }, Math.max(0, Math.min(at - Date.now(), this.retryMaxMs)))
  }

  private peerIdentified (peerId: PeerId): void {
    if (!this.running) return
    this.identified.add(peerId.toString())
    if (this.identifyTimer !== undefined) return
    this.identifyTimer = setTimeout(() => {
      this.identifyTimer = undefined
      const peers = [...this.identified]
      this.identified.clear()
      this.retryIdentified(peers).catch(() => {})
    }, IDENTIFY_RETRY_DELAY_MS)
  }

  /** Retry now the messages for addresses whose device just connected. */
  private async retryIdentified (peers: string[]): Promise<void> {
    if (!this.running) return
    const entries = await this.c.store.outbox()
    const addresses = new Set<string>()
    for (const to of new Set(entries.map(e => e.to))) {
      const record = this.c.resolver.cached(to)
      const peerId = record?.peerId
      if ((peerId !== undefined && peers.includes(peerId)) || peers.some(p => this.peerAddresses.get(p) === to)) addresses.add(to)
    }
    for (const to of addresses) {
      this.log('device of %s connected: retrying its queued messages', to)
      await this.deliverGroup(entries.filter(e => e.to === to))
    }
  }

  // -------------------------------------------------------------------------------------------
  // receiving

  private onStream (stream: Stream, connection: Connection): void {
    if (!this.running) {
      stream.abort(new MessagingError(MessagingErrorCode.MESSAGING_NOT_STARTED, 'messaging is stopping'))
      return
    }
    const job = this.serve(stream, connection.remotePeer.toString())
    this.inbound.add(job)
    void job.finally(() => { this.inbound.delete(job) })
  }

  /**
   * Serve one inbound stream: read envelopes, handle up to {@link MAX_INBOUND_IN_FLIGHT} at once, write
   * each receipt as soon as its message is stored (coalesced writes). The first failure aborts the stream.
   */
  private async serve (stream: Stream, remote: string): Promise<void> {
    const f = framed(stream, { maxFrameBytes: MAX_FRAME_BYTES })
    // a 1.1.0 dialer reads v2 receipts (one per sender for the messages stored together), a 1.0.0 one v1
    const out = new ReceiptWriter(new FrameWriter(stream), stream.protocol === MSG_PROTOCOL)
    const active = new Set<Promise<void>>()
    let failure: unknown
    const fail = (err: unknown): void => {
      if (failure !== undefined) return
      failure = err
      f.abort(err instanceof Error ? err : new Error(String(err)))
    }
    // one idle timer per stream, restarted for each read (a new timeout signal per frame cost more)
    const idleCtl = new AbortController()
    let reading = false
    const idleTimer = setTimeout(() => {
      if (reading) idleCtl.abort(new DOMException(`no frame for ${this.streamIdleTimeoutMs} ms`, 'TimeoutError'))
    }, this.streamIdleTimeoutMs)
    idleTimer.unref() // as AbortSignal.timeout's: an idle stream does not keep the process alive
    const idle = AbortSignal.any([this.shutdown.signal, idleCtl.signal])
    try {
      for (;;) {
        while (active.size >= MAX_INBOUND_IN_FLIGHT) await Promise.race(active)
        if (failure !== undefined) throw failure
        let bytes: Uint8Array | null
        try {
          idleTimer.refresh()
          reading = true
          bytes = await f.read({ signal: idle })
        } catch (err) {
          throw failure ?? err
        } finally {
          reading = false
        }
        if (bytes == null) break
        if (!this.limiter.take(remote)) throw new MessagingError(MessagingErrorCode.RATE_LIMITED, 'peer is sending too fast', { peer: remote })
        const job = this.receive(bytes, remote).then(ack => { out.ack(ack) }, fail)
        active.add(job)
        void job.finally(() => { active.delete(job) })
      }
      await Promise.all(active)
      if (failure !== undefined) throw failure
      await out.flushed()
      await f.close({ signal: AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(this.ackTimeoutMs)]) })
    } catch (caught) {
      const err = failure ?? caught
      const code = isTokenimError(err) ? err.code : (err as Error)?.name ?? 'Error'
      const message = (err as Error)?.message ?? String(err)
      f.abort(err instanceof Error ? err : new Error(message))
      if (!this.running) return
      this.stats.rejected++
      this.log('closed a %s stream from %s: %s %s', MSG_PROTOCOL, remote, code, message)
      this.emit('rejected', { peer: remote, code, message })
    } finally {
      clearTimeout(idleTimer)
      await Promise.allSettled(active)
    }
  }

  /**
   * Handle one envelope frame: decode, check it is for us, authenticate its sender, store it once,
   * and return what its receipt needs.
   */
  private async receive (bytes: Uint8Array, remote: string): Promise<Ack> {
    const envelope = decodeEnvelope(bytes)
    checkRecipient(envelope, this.address)
    // the verified record we hold (no network, no peer-store update), else resolve
    let senderKey = this.c.resolver.cached(envelope.from)?.messagingKey
    if (senderKey === undefined || !equalBytes(senderKey, envelope.spk)) {
      const signal = AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(this.deliveryTimeoutMs)])
      let sender = await this.c.resolver.resolve(envelope.from, { signal })
      if (!equalBytes(sender.messagingKey, envelope.spk) && sender.source !== 'dht') {
        // the cached record could be stale: ask the DHT once before calling it a forgery
        sender = await this.c.resolver.resolve(envelope.from, { signal, fresh: true })
      }
      senderKey = sender.messagingKey
    }
    const options = { self: this.address, keys: this.c.keys, senderKey, ...this.session(senderKey) }
    // v2: the epoch's key, kept or derived; v1: X25519 with the ephemeral key on the thread pool (the same
    // checks and errors as openMessage's own)
    const opened = envelope.v === 2
      ? openMessage(envelope, { ...options, epochKey: await this.epochKeyOf(envelope, options) })
      : openMessage(envelope, { ...options, ephemeralSecret: await this.together.join(openingSecret(envelope, options)) })
    const receivedAt = Date.now()
    const message: StoredMessage = {
      id: opened.id,
      conversation: opened.from,
      from: opened.from,
      to: opened.to,
      ts: opened.ts,
      text: opened.body.text,
      direction: 'in',
      status: 'received',
      receivedAt,
      ...(opened.body.attachment !== undefined ? { attachment: opened.body.attachment } : {})
    }
    // the message and its seen id in one batch (group commit with others arriving meanwhile),
    // before the receipt is written
    const fresh = await this.incoming.submit(message)
    if (fresh) {
      this.stats.received++
      this.log('received %s from %s via %s', opened.id, opened.from, remote)
      this.emit('message', message)
    } else {
      this.stats.duplicates++
      this.log('duplicate %s from %s via %s: acknowledged again, not stored', opened.id, opened.from, remote)
    }
    return { id: opened.id, from: opened.from, to: opened.to, ts: receivedAt, keys: { ...options, peerKey: senderKey } }
  }

  private requireRunning (): void {
    if (!this.running) throw new MessagingError(MessagingErrorCode.MESSAGING_NOT_STARTED, 'messaging is not started')
  }
}

/**
 * A signal for one delivery attempt that aborts `ms` after it is made with a TimeoutError
 * (AbortSignal.timeout's reason), or by `abort()` (stop()); `done()` disarms it. A timer and an
 * AbortController: AbortSignal.timeout kept every timer armed for its whole timeout, and
 * AbortSignal.any over it cost ~10–15 µs. (The receipt's own timeout is the channel's, a timer per request.)
 */
class Deadline {
  private readonly ctl = new AbortController()
  private readonly timer: NodeJS.Timeout

  constructor (ms: number) {
    this.timer = setTimeout(() => { this.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')) }, ms)
    this.timer.unref() // as AbortSignal.timeout's
  }

  get signal (): AbortSignal {
    return this.ctl.signal
  }

  abort (reason: unknown): void {
    this.done()
    this.ctl.abort(reason)
  }

  done (): void {
    clearTimeout(this.timer)
  }
}

function argError (message: string): MessagingError {
  return new MessagingError(MessagingErrorCode.INVALID_MESSAGE_ARGUMENT, message)
}

/** What we keep per peer messaging key: X25519(ours, theirs), their key object, the receipt MAC keys, our sending epoch to it. */
interface Session {
  ss: Uint8Array
  peer: KeyObject
  receipts: ReceiptMacKeys
  epoch?: SendEpoch
  opening?: Promise<SendEpoch>
}

/** An open outbound channel, its recipient's device, and the envelope version its listener reads. */
interface OpenChannel {
  ch: OutboundChannel
  peer: ResolvedPeer
  version: 1 | 2
}

const NO_ENVELOPE = new Uint8Array(0)

/** The version of an encoded envelope. */
function envelopeVersion (bytes: Uint8Array): number {
  return (decodeFrame(bytes) as Envelope).v
}

function equalBytes (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** Resolve with the promise, or with undefined as soon as the signal aborts (the work goes on). */
async function raceAbort<T> (p: Promise<T>, signal?: AbortSignal): Promise<T | undefined> {
  if (signal == null) return await p
  if (signal.aborted) return undefined
  return await new Promise<T | undefined>((resolve, reject) => {
    const onAbort = (): void => { resolve(undefined) }
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(resolve, reject).finally(() => { signal.removeEventListener('abort', onAbort) })
  })
}

/** Resolve with the promise, or reject with the signal's reason as soon as it aborts (the work goes on). */
async function raceAbortReject<T> (p: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted()
  return await new Promise<T>((resolve, reject) => {
    const onAbort = (): void => { reject(signal.reason as Error) }
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(resolve, reject).finally(() => { signal.removeEventListener('abort', onAbort) })
  })
}
