/**
 * TokenimNode: one device's node. It composes the identity (keys), the store (history, outbox), the
 * p2p node (libp2p + Helia), the device record publisher, the resolver and the messaging service,
 * and owns their start/stop order:
 *
 *   start: store → p2p → record publisher → resolver → messaging (retries the outbox)
 *   stop:  messaging → resolver → record publisher → p2p → store
 *
 * A stopped node can be started again (fresh p2p components, same data dir).
 *
 * @example
 * ```ts
 * const node = await TokenimNode.open({ dataDir, password, bootstrap: ['/ip4/…/tcp/…/p2p/12D3…'] })
 * await node.start()
 * node.on('message', (msg) => { console.log(msg.from, msg.text) })
 * const { id, status } = await node.send('0xabc…', 'hello')
 * await node.stop()
 * ```
 */
import { EventEmitter } from 'node:events'
import { join } from 'node:path'
import { openIdentity } from '../identity/index.ts'
import type { OpenedIdentity } from '../identity/index.ts'
import { AttachmentService, attachmentOf, MessagingService } from '../messaging/index.ts'
import type { AttachmentProgress, AttachmentServiceInit, AttachmentSaveResult, MessageAttachment, MessagingInit, MessagingStats, SendResult } from '../messaging/index.ts'
import { createP2PNode, DeviceRecordPublisher, Resolver } from '../p2p/index.ts'
import type { P2PNode, ResolvedPeer, ResolveOptions, ResolverInit } from '../p2p/index.ts'
import { openStore } from '../store/index.ts'
import type { ConversationSummary, MessageQuery, Store, StoredMessage } from '../store/index.ts'
import { log } from '../util/log.ts'
import { NodeError, NodeErrorCode } from './errors.ts'
import { assertStoreHealthy, explainOpenError } from './health.ts'
import type { StoreHealthOptions } from './health.ts'

/** The store lives in `<dataDir>/store`; p2p keeps `<dataDir>/blocks` and `<dataDir>/datastore`. */
export const STORE_DIR = 'store'

export interface TokenimNodeInit {
  dataDir: string
  /** unlocks `<dataDir>/keystore.json` (give this or `identity`) */
  password?: string
  /** an identity opened already (e.g. by a restore, or the CLI after prompting) */
  identity?: OpenedIdentity
  /** listen multiaddrs (default loopback, random port) */
  listen?: string[]
  /** addresses to announce instead of the listen addresses */
  announce?: string[]
  /** bootstrap peers (`…/p2p/<peerId>`) */
  bootstrap?: string[]
  /** LAN discovery (default false) */
  mdns?: boolean
  /** delivery, retry and rate-limit tuning */
  messaging?: MessagingInit
  resolver?: ResolverInit
  /** attachment size limit and background fetch tuning */
  attachments?: AttachmentServiceInit
  /** how often the device record is re-published (default 10 min) */
  republishIntervalMs?: number
  /** the store check at start (default on, bounded: see health.ts); false skips it */
  storeCheck?: false | StoreHealthOptions
}

export interface TokenimNodeEvents {
  /** a new incoming message was stored */
  message: [StoredMessage]
  /** one of our messages was acknowledged by its recipient */
  delivered: [{ id: string, to: string }]
  /** a message's attachment was fetched, verified and pinned (in the background) */
  attachment: [{ id: string, cid: string, size: number }]
  /** a background attachment fetch failed (retried after `retryInMs` when given) */
  'attachment:failed': [{ id: string, cid: string, code: string, message: string, retryInMs?: number }]
}

export interface TokenimNodeStatus {
  address: string
  peerId: string
  running: boolean
  /** connected peers */
  peers: number
  /** DHT routing table size */
  routingTable: number
  multiaddrs: string[]
  /** messages waiting for delivery */
  outbox: number
  /** sequence number of our current device record (undefined before the first start) */
  recordSeq?: number
  messaging: MessagingStats
}

export interface SendMessageOptions {
  attachment?: MessageAttachment
  /** stop waiting for the first delivery attempt (the message stays queued) */
  signal?: AbortSignal
}

export interface SendFileOptions {
  /** the message text shown with the file (default empty) */
  caption?: string
  /** file name the recipient sees (default the path's base name) */
  name?: string
  /** MIME type (default guessed from the name's extension) */
  mime?: string
  /** size limit for this file (default the node's, 100 MiB) */
  maxBytes?: number
  /** aborts encrypting, and waiting for the first delivery attempt (then the message stays queued) */
  signal?: AbortSignal
  /** stop waiting for the first delivery attempt only */
  waitSignal?: AbortSignal
  onProgress?: (p: AttachmentProgress) => void
}

export interface SendFileResult extends SendResult {
  attachment: MessageAttachment
}

export interface GetAttachmentOptions {
  signal?: AbortSignal
  /** never use the network */
  offline?: boolean
  /** bound the fetch when no signal is given (ms, default 2 min) */
  timeoutMs?: number
  onProgress?: (p: AttachmentProgress) => void
}

const DEFAULT_GET_TIMEOUT_MS = 120_000

type State = 'stopped' | 'starting' | 'started' | 'stopping'

interface Running {
  store: Store
  p2p: P2PNode
  publisher: DeviceRecordPublisher
  resolver: Resolver
  messaging: MessagingService
  attachments: AttachmentService
}

export class TokenimNode extends EventEmitter<TokenimNodeEvents> {
  /** EIP-55 checksummed wallet address */
  readonly address: string
  /** libp2p peer id of this device */
  readonly peerId: string
  readonly dataDir: string
  readonly identity: OpenedIdentity
  private readonly init: TokenimNodeInit
  private readonly log = log('node')
  private state: State = 'stopped'
  private parts?: Running
  private transition?: Promise<void>
  private readonly onMessage = (msg: StoredMessage): void => { this.emit('message', msg) }
  private readonly onDelivered = (evt: { id: string, to: string }): void => { this.emit('delivered', evt) }
  private readonly onAttachmentFetched = (evt: { id: string, cid: string, size: number }): void => { this.emit('attachment', evt) }
  private readonly onAttachmentFailed = (evt: { id: string, cid: string, code: string, message: string, retryInMs?: number }): void => { this.emit('attachment:failed', evt) }

  /** Use {@link TokenimNode.open}. */
  constructor (init: TokenimNodeInit, identity: OpenedIdentity) {
    super()
    this.init = init
    this.identity = identity
    this.address = identity.address
    this.peerId = identity.peerId
    this.dataDir = init.dataDir
  }

  /**
   * Unlock the identity of `dataDir` (or take `init.identity`) and build a node. Nothing is opened or
   * started yet: call `start()`.
   */
  static async open (init: TokenimNodeInit): Promise<TokenimNode> {
    let identity = init.identity
    if (identity === undefined) {
      if (typeof init.password !== 'string') throw new NodeError(NodeErrorCode.INVALID_NODE_ARGUMENT, 'a password (or an opened identity) is needed to open the node')
      identity = await openIdentity(init.dataDir, init.password)
    }
    return new TokenimNode(init, identity)
  }

  get isRunning (): boolean {
    return this.state === 'started'
  }

  /** The store (open while the node runs): for components added on top (backup, export, API). */
  get store (): Store { return this.require().store }
  /** The p2p node (libp2p + Helia) while the node runs. */
  get p2p (): P2PNode { return this.require().p2p }
  get resolver (): Resolver { return this.require().resolver }
  get messaging (): MessagingService { return this.require().messaging }

  /** Open the store, start the network, publish our device record, deliver the outbox. Idempotent. */
  async start (): Promise<void> {
    if (this.state === 'started') return
    if (this.transition != null) {
      await this.transition
      return await this.start()
    }
    this.transition = this.doStart().finally(() => { this.transition = undefined })
    await this.transition
  }

  /** Stop everything in reverse order; no timers or sockets are left. Idempotent. */
  async stop (): Promise<void> {
    if (this.state === 'stopped') return
    if (this.transition != null) {
      await this.transition
      return await this.stop()
    }
    this.transition = this.doStop().finally(() => { this.transition = undefined })
    await this.transition
  }

  private async doStart (): Promise<void> {
    this.state = 'starting'
    const started: Array<() => Promise<void>> = []
    try {
      const store = await openStore(join(this.dataDir, STORE_DIR)).catch((err: unknown) => { throw explainOpenError(err) })
      started.unshift(async () => { await store.close() })
      // a damaged store stops the start with STORE_CORRUPT and what to do (tokenim repair)
      if (this.init.storeCheck !== false) await assertStoreHealthy(store, this.init.storeCheck)
      const p2p = await createP2PNode({
        privateKey: this.identity.deviceKey,
        dataDir: this.dataDir,
        listen: this.init.listen,
        announce: this.init.announce,
        bootstrap: this.init.bootstrap,
        mdns: this.init.mdns
      })
      await p2p.start()
      started.unshift(async () => { await p2p.stop() })
      const messagingKey = this.identity.keys.messaging
      const publisher = new DeviceRecordPublisher(p2p, {
        address: this.address,
        messagingKey: messagingKey.publicKey,
        signer: this.identity.wallet,
        republishIntervalMs: this.init.republishIntervalMs
      })
      await publisher.start()
      started.unshift(async () => { await publisher.stop() })
      const resolver = new Resolver(p2p, this.init.resolver)
      resolver.start()
      started.unshift(async () => { await resolver.stop() })
      const messaging = new MessagingService({ node: p2p, resolver, store, address: this.address, keys: messagingKey }, this.init.messaging)
      messaging.on('message', this.onMessage)
      messaging.on('delivered', this.onDelivered)
      const attachments = new AttachmentService({
        blockstore: p2p.helia.blockstore,
        pins: p2p.helia.pins,
        store,
        connect: async (address, { signal }) => {
          const peer = await resolver.resolve(address, { signal })
          await p2p.dial(peer.peerId, { signal })
        },
        provide: async (cid, { signal }) => { await p2p.libp2p.contentRouting.provide(cid, { signal }) },
        findProviders: async (cid, { signal }) => {
          for await (const prov of p2p.libp2p.contentRouting.findProviders(cid, { signal })) {
            if (prov.id.equals(p2p.peerId)) continue
            await p2p.dial(prov.id, { signal }).catch(() => {})
          }
        }
      }, this.init.attachments)
      attachments.on('fetched', this.onAttachmentFetched)
      attachments.on('fetch:failed', this.onAttachmentFailed)
      // incoming attachments are fetched in the background once their message is stored
      messaging.on('message', (msg) => { if (msg.attachment !== undefined) attachments.schedule(msg) })
      attachments.start()
      started.unshift(async () => { await attachments.stop() })
      await messaging.start()
      this.parts = { store, p2p, publisher, resolver, messaging, attachments }
      this.state = 'started'
      this.log('started %s (%s) on %s', this.address, this.peerId, this.multiaddrs().join(', '))
    } catch (err) {
      for (const undo of started) await undo().catch(() => {})
      this.state = 'stopped'
      throw err
    }
  }

  private async doStop (): Promise<void> {
    const parts = this.parts
    this.state = 'stopping'
    this.parts = undefined
    if (parts !== undefined) {
      const errors: unknown[] = []
      const step = async (fn: () => Promise<void>): Promise<void> => { try { await fn() } catch (err) { errors.push(err) } }
      await step(async () => { await parts.attachments.stop() })
      parts.attachments.off('fetched', this.onAttachmentFetched)
      parts.attachments.off('fetch:failed', this.onAttachmentFailed)
      await step(async () => { await parts.messaging.stop() })
      parts.messaging.off('message', this.onMessage)
      parts.messaging.off('delivered', this.onDelivered)
      await step(async () => { await parts.resolver.stop() })
      await step(async () => { await parts.publisher.stop() })
      await step(async () => { await parts.p2p.stop() })
      await step(async () => { await parts.store.close() })
      if (errors.length > 0) this.log.error('errors while stopping: %o', errors.map(e => (e as Error).message))
    }
    this.state = 'stopped'
    this.log('stopped %s', this.address)
  }

  /**
   * Send a text message to a wallet address: stored and queued first, then delivered end-to-end
   * encrypted. `status` is `delivered` when the recipient acknowledged it, `queued` otherwise (it is
   * retried in the background and after restarts).
   */
  async send (address: string, text: string, options: SendMessageOptions = {}): Promise<SendResult> {
    return await this.require().messaging.send(address, text, options)
  }

  /**
   * Send a file: encrypted with a fresh key into our blockstore (UnixFS, pinned), then a message that
   * carries its CID, key, name, MIME type, size and SHA-256. FILE_TOO_LARGE / FILE_NOT_FOUND /
   * FILE_NOT_READABLE before anything is stored or sent. The recipient fetches it over bitswap.
   */
  async sendFile (address: string, path: string, options: SendFileOptions = {}): Promise<SendFileResult> {
    const parts = this.require()
    const attachment = await parts.attachments.add(path, { name: options.name, mime: options.mime, maxBytes: options.maxBytes, signal: options.signal, onProgress: options.onProgress })
    const waits = [options.signal, options.waitSignal].filter((s): s is AbortSignal => s !== undefined)
    const result = await parts.messaging.send(address, options.caption ?? '', { attachment, signal: waits.length === 0 ? undefined : AbortSignal.any(waits) })
    return { ...result, attachment }
  }

  /**
   * The plaintext of a message's attachment, streamed and verified (size, SHA-256; ATTACHMENT_CORRUPT):
   * from our blockstore, else fetched from the other party or DHT providers (ATTACHMENT_UNAVAILABLE when
   * that fails in time). NO_ATTACHMENT for an unknown message or one without an attachment.
   */
  async getAttachment (messageId: string, options: GetAttachmentOptions = {}): Promise<AsyncGenerator<Uint8Array>> {
    const parts = this.require()
    const message = await parts.store.getMessage(messageId)
    const ref = attachmentOf(message, messageId)
    return parts.attachments.read(ref, { ...options, from: message?.conversation, timeoutMs: options.timeoutMs ?? DEFAULT_GET_TIMEOUT_MS })
  }

  /** Write a message's attachment to `out` atomically (0600; FILE_EXISTS unless `force`), fetching it if needed. */
  async saveAttachment (messageId: string, out: string, options: GetAttachmentOptions & { force?: boolean } = {}): Promise<AttachmentSaveResult & { id: string }> {
    const parts = this.require()
    const message = await parts.store.getMessage(messageId)
    attachmentOf(message, messageId)
    const signal = options.signal ?? AbortSignal.timeout(options.timeoutMs ?? DEFAULT_GET_TIMEOUT_MS)
    const r = await parts.attachments.save(message as StoredMessage, out, { ...options, signal })
    return { id: messageId, ...r }
  }

  /** True when a message's attachment is on this device, verified and pinned. */
  async hasAttachment (messageId: string): Promise<boolean> {
    const parts = this.require()
    const message = await parts.store.getMessage(messageId)
    return message?.attachment !== undefined && await parts.attachments.isLocal(message.attachment)
  }

  /** Conversation summaries (one per peer address). */
  async conversations (): Promise<ConversationSummary[]> {
    return await this.require().store.conversations()
  }

  /**
   * Messages oldest first by (ts, id): of one conversation (peer address), or of all. `since`/`until`
   * are inclusive ms bounds on the sender's timestamp.
   */
  async messages (address?: string, query: MessageQuery = {}): Promise<StoredMessage[]> {
    const out: StoredMessage[] = []
    const conversation = address === undefined ? undefined : address.toLowerCase()
    // across conversations the store yields one conversation after another: sort, then limit
    const q = conversation === undefined ? { ...query, limit: undefined, reverse: undefined } : query
    for await (const m of this.require().store.messages(conversation, q)) out.push(m)
    if (conversation === undefined) {
      out.sort((a, b) => a.ts - b.ts || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      if (query.reverse === true) out.reverse()
      if (query.limit !== undefined) return out.slice(0, query.limit)
    }
    return out
  }

  /** Find the device of a wallet address (cache, then DHT). */
  async resolve (address: string, options: ResolveOptions = {}): Promise<ResolvedPeer> {
    return await this.require().resolver.resolve(address, options)
  }

  /** Our dialable multiaddrs (`…/p2p/<peerId>`); empty when stopped. */
  multiaddrs (): string[] {
    return this.parts?.p2p.multiaddrs().map(String) ?? []
  }

  async status (): Promise<TokenimNodeStatus> {
    const parts = this.parts
    return {
      address: this.address,
      peerId: this.peerId,
      running: this.state === 'started',
      peers: parts?.p2p.connectedPeers().length ?? 0,
      routingTable: parts?.p2p.routingTableSize() ?? 0,
      multiaddrs: this.multiaddrs(),
      outbox: parts !== undefined ? await parts.store.outboxSize() : 0,
      recordSeq: parts?.publisher.current()?.seq,
      messaging: parts?.messaging.status() ?? { received: 0, duplicates: 0, rejected: 0, delivered: 0, failedAttempts: 0 }
    }
  }

  private require (): Running {
    if (this.state !== 'started' || this.parts === undefined) {
      throw new NodeError(NodeErrorCode.NODE_NOT_STARTED, 'the node is not started')
    }
    return this.parts
  }
}

/** Same as {@link TokenimNode.open}. */
export async function createTokenimNode (init: TokenimNodeInit): Promise<TokenimNode> {
  return await TokenimNode.open(init)
}
