/**
 * Publishing our device record, and the direct record exchange protocol.
 *
 * A device record (src/identity) is the wallet-signed binding `address → { peerId, messagingKey,
 * multiaddrs, seq, time }`. We publish it:
 * - in the DHT under `/tokenim/<lowercase address>` (kad-dht `put`; every node validates it with the
 *   identity rules and keeps the highest `seq`), at start, every `republishIntervalMs`, and when our
 *   addresses change;
 * - on `/tokenim/record/1.0.0`: a peer that opens this protocol reads one length-prefixed frame with
 *   our encoded record (at most 8 KiB); an empty frame means we have none yet.
 */
import type { AbortOptions, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { equals } from 'uint8arrays/equals'
import { log } from '../util/log.ts'
import { P2PError, P2PErrorCode, notStarted } from './errors.ts'
import { framed } from './frames.ts'
import { decodeDeviceRecord, deviceRecordKey, encodeDeviceRecord, MAX_DEVICE_RECORD_BYTES, signDeviceRecord, verifyDeviceRecord } from './identity.ts'
import type { DeviceRecord, DeviceRecordSigner } from './identity.ts'
import type { P2PNode } from './node.ts'

/** Direct record exchange: the listener answers with one frame holding its current device record. */
export const RECORD_PROTOCOL = '/tokenim/record/1.0.0'
export const DEFAULT_REPUBLISH_INTERVAL_MS = 10 * 60 * 1000
export const DEFAULT_PUBLISH_TIMEOUT_MS = 30_000
export const DEFAULT_RECORD_FETCH_TIMEOUT_MS = 10_000
/** At most this many of our multiaddrs go into the record (identity caps the list at 32). */
export const MAX_RECORD_MULTIADDRS = 16
/** After a failed background publish, retry after this long (doubling up to the republish interval). */
const FIRST_RETRY_MS = 2_000
/** Address changes come in bursts at start-up: wait this long before re-signing. */
const ADDRESS_CHANGE_DEBOUNCE_MS = 500

export interface PublishResult {
  record: DeviceRecord
  /** how many DHT peers stored the record */
  peers: number
}

export interface DeviceRecordPublisherInit {
  /** the wallet address (any case) */
  address: string
  /** our X25519 messaging public key (32 bytes) */
  messagingKey: Uint8Array
  /** the wallet: signs each new record (EIP-191); must be `address` */
  signer: DeviceRecordSigner
  /** default 10 minutes */
  republishIntervalMs?: number
  /** per DHT publish; default 30 s */
  publishTimeoutMs?: number
  /** addresses to put in the record (default: the node's multiaddrs) */
  multiaddrs?: () => string[]
  /** told about each background publish (default no-op) */
  onPublish?: (result: PublishResult | { record?: DeviceRecord, error: Error }) => void
}

/**
 * Keeps our device record signed, current, served on {@link RECORD_PROTOCOL} and published in the DHT.
 * Start it after the node; stop it before the node.
 */
export class DeviceRecordPublisher {
  private readonly node: P2PNode
  private readonly init: DeviceRecordPublisherInit
  private readonly republishIntervalMs: number
  private readonly publishTimeoutMs: number
  private readonly log = log('p2p:records')
  private record?: DeviceRecord
  private encoded?: Uint8Array
  private lastSeq = 0
  private running = false
  private timer?: NodeJS.Timeout
  private debounce?: NodeJS.Timeout
  private retryMs = FIRST_RETRY_MS
  private needsPublish = false
  /** the next background run signs a new record first (addresses changed) */
  private renewNext = false
  /** a run was asked for while one was in flight */
  private runAgain = false
  private publishing?: Promise<void>
  private readonly shutdown = new AbortController()
  private readonly onAddresses = (): void => { this.addressesChanged() }
  private readonly onIdentify = (): void => { if (this.needsPublish && this.publishing == null) this.schedule(0) }

  constructor (node: P2PNode, init: DeviceRecordPublisherInit) {
    this.node = node
    this.init = init
    this.republishIntervalMs = init.republishIntervalMs ?? DEFAULT_REPUBLISH_INTERVAL_MS
    this.publishTimeoutMs = init.publishTimeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS
  }

  /** Our current signed record (undefined before `start()`). */
  current (): DeviceRecord | undefined {
    return this.record
  }

  /** Sign the first record, serve it on the exchange protocol, publish it in the background. */
  async start (): Promise<void> {
    if (this.running) return
    if (this.node.status !== 'started') throw notStarted()
    this.running = true
    await this.renew()
    await this.node.handle(RECORD_PROTOCOL, (stream) => { this.serve(stream) }, { maxInboundStreams: 8, maxOutboundStreams: 8 })
    this.node.events.on('addresses', this.onAddresses)
    this.node.events.on('peer:identify', this.onIdentify)
    this.needsPublish = true
    this.schedule(0)
  }

  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    clearTimeout(this.timer)
    clearTimeout(this.debounce)
    this.node.events.off('addresses', this.onAddresses)
    this.node.events.off('peer:identify', this.onIdentify)
    this.shutdown.abort()
    await this.publishing?.catch(() => {})
    if (this.node.status === 'started') await this.node.unhandle(RECORD_PROTOCOL).catch(() => {})
  }

  /**
   * Sign a new record (next seq) with the current addresses, then put it in the DHT.
   * Throws `PUBLISH_FAILED` when no DHT peer stored it (it is still served on the exchange protocol).
   */
  async publish (options: AbortOptions = {}): Promise<PublishResult> {
    if (!this.running) throw notStarted('record publisher')
    await this.renew()
    return await this.put(options)
  }

  /** Put the current record in the DHT (no re-signing). */
  private async put (options: AbortOptions): Promise<PublishResult> {
    const record = this.record
    const encoded = this.encoded
    if (record == null || encoded == null) throw notStarted('record publisher')
    const signal = AbortSignal.any([this.shutdown.signal, options.signal ?? AbortSignal.timeout(this.publishTimeoutMs)])
    const key = deviceRecordKey(record.address)
    let peers = 0
    const errors: string[] = []
    try {
      for await (const event of this.node.libp2p.services.dht.put(key, encoded, { signal })) {
        if (event.name === 'PEER_RESPONSE' && event.messageName === 'PUT_VALUE' && event.record != null && equals(event.record.value, encoded)) {
          peers++
        } else if (event.name === 'QUERY_ERROR') {
          errors.push(event.error.message)
        }
      }
    } catch (err) {
      if (peers === 0) {
        throw new P2PError(P2PErrorCode.PUBLISH_FAILED, `device record not published: ${(err as Error).message}`, { address: record.address, seq: record.seq }, { cause: err })
      }
    }
    if (peers === 0) {
      throw new P2PError(P2PErrorCode.PUBLISH_FAILED, 'no DHT peer stored the device record', { address: record.address, seq: record.seq, errors: errors.slice(0, 5) })
    }
    this.log('published record seq %d for %s to %d peers', record.seq, record.address, peers)
    return { record, peers }
  }

  /** Make and sign a new record with a fresh seq and the current addresses. */
  private async renew (): Promise<void> {
    const multiaddrs = (this.init.multiaddrs?.() ?? this.node.multiaddrs().map(String)).slice(0, MAX_RECORD_MULTIADDRS)
    const seq = Math.max(Date.now(), this.lastSeq + 1)
    this.lastSeq = seq
    const record = await signDeviceRecord(this.init.signer, {
      address: this.init.address,
      peerId: this.node.peerId.toString(),
      messagingKey: this.init.messagingKey,
      multiaddrs,
      seq,
      time: Date.now()
    })
    this.record = record
    this.encoded = encodeDeviceRecord(record)
  }

  private addressesChanged (): void {
    if (!this.running) return
    clearTimeout(this.debounce)
    this.debounce = setTimeout(() => {
      const now = this.node.multiaddrs().map(String).slice(0, MAX_RECORD_MULTIADDRS)
      const had = this.record?.multiaddrs ?? []
      if (this.init.multiaddrs != null || now.length !== had.length || now.some((a, i) => a !== had[i])) {
        this.needsPublish = true
        this.renewNext = true
        if (this.publishing != null) this.runAgain = true
        else this.schedule(0)
      }
    }, ADDRESS_CHANGE_DEBOUNCE_MS)
    this.debounce.unref()
  }

  /** (Re)arm the single background timer. */
  private schedule (ms: number): void {
    if (!this.running) return
    clearTimeout(this.timer)
    this.timer = setTimeout(() => { this.runBackground() }, ms)
    this.timer.unref()
  }

  private runBackground (): void {
    if (!this.running || this.publishing != null) return
    this.publishing = (async () => {
      try {
        if (this.renewNext || !this.needsPublish) {
          // periodic republish or new addresses: a fresh record (new seq, time)
          this.renewNext = false
          await this.renew()
        }
        const result = await this.put({})
        this.needsPublish = false
        this.retryMs = FIRST_RETRY_MS
        this.init.onPublish?.(result)
        this.schedule(this.republishIntervalMs)
      } catch (err) {
        if (!this.running) return
        this.log('background publish failed: %s', (err as Error).message)
        this.needsPublish = true
        this.init.onPublish?.({ record: this.record, error: err as Error })
        this.schedule(this.retryMs)
        this.retryMs = Math.min(this.retryMs * 2, this.republishIntervalMs)
      } finally {
        this.publishing = undefined
        if (this.runAgain && this.running) {
          this.runAgain = false
          this.schedule(0)
        }
      }
    })()
  }

  /** Answer one exchange request: one frame with our record (empty if none), then close. */
  private serve (stream: Stream): void {
    const f = framed(stream, { maxFrameBytes: MAX_DEVICE_RECORD_BYTES })
    const signal = AbortSignal.timeout(DEFAULT_RECORD_FETCH_TIMEOUT_MS)
    void (async () => {
      await f.write(this.encoded ?? new Uint8Array(0), { signal })
      await f.close({ signal })
    })().catch((err: Error) => {
      this.log('record exchange with %s failed: %s', stream.id, err.message)
      stream.abort(err)
    })
  }
}

/**
 * Ask a connected (or dialable) peer for its device record over {@link RECORD_PROTOCOL}.
 * Returns undefined when the peer has none yet. The record is decoded, verified (signature recovers its
 * address, not from the future) and must name `peerId` as its device; else `INVALID_PEER_RECORD`.
 * Network failures are `DIAL_FAILED`.
 */
export async function fetchPeerRecord (node: P2PNode, peerId: PeerId, options: AbortOptions = {}): Promise<DeviceRecord | undefined> {
  const signal = options.signal ?? AbortSignal.timeout(DEFAULT_RECORD_FETCH_TIMEOUT_MS)
  const stream = await node.dialProtocol(peerId, RECORD_PROTOCOL, { signal })
  const f = framed(stream, { maxFrameBytes: MAX_DEVICE_RECORD_BYTES })
  let bytes: Uint8Array | null
  try {
    await f.close({ signal })
    bytes = await f.read({ signal })
  } catch (err) {
    stream.abort(err as Error)
    if (err instanceof P2PError) throw new P2PError(P2PErrorCode.INVALID_PEER_RECORD, `peer ${peerId.toString()} sent a bad record frame: ${err.message}`, { peerId: peerId.toString() }, { cause: err })
    throw new P2PError(P2PErrorCode.DIAL_FAILED, `record exchange with ${peerId.toString()} failed: ${(err as Error).message}`, { peerId: peerId.toString() }, { cause: err })
  }
  if (bytes == null || bytes.length === 0) return undefined
  return checkRecordBytes(bytes, { peerId })
}

/**
 * Decode and verify a device record from the network. Optional expectations: the record's address
 * (`address`, any case) and device (`peerId`). Throws `INVALID_PEER_RECORD` (cause: the identity error,
 * e.g. `FORGED_DEVICE_RECORD`).
 */
export function checkRecordBytes (bytes: Uint8Array, expect: { address?: string, peerId?: PeerId } = {}): DeviceRecord {
  let record: DeviceRecord
  try {
    record = verifyDeviceRecord(decodeDeviceRecord(bytes))
  } catch (err) {
    throw new P2PError(P2PErrorCode.INVALID_PEER_RECORD, `rejected a device record: ${(err as Error).message}`,
      { reason: (err as { code?: string }).code, peerId: expect.peerId?.toString(), address: expect.address }, { cause: err })
  }
  if (expect.address != null && record.address.toLowerCase() !== expect.address.toLowerCase()) {
    throw new P2PError(P2PErrorCode.INVALID_PEER_RECORD, 'device record is for another address', { address: expect.address, recordAddress: record.address })
  }
  if (expect.peerId != null && !peerIdFromString(record.peerId).equals(expect.peerId)) {
    throw new P2PError(P2PErrorCode.INVALID_PEER_RECORD, 'device record names another device', { peerId: expect.peerId.toString(), recordPeerId: record.peerId })
  }
  return record
}
