/**
 * Finding people by wallet address.
 *
 * `resolve(address)` answers from, in order: an in-memory cache (records learned earlier, TTL), or the
 * DHT (`/tokenim/<lowercase address>`). Records are also learned from peers as they connect: when
 * identify says a peer speaks `/tokenim/record/1.0.0`, we ask it for its record. Every record is decoded
 * and verified (the wallet signature recovers the address, it is not from the future, it is for the
 * address asked) on every path, whatever the DHT validator already did. The winning record's
 * multiaddrs go into the peer store so `dial(peerId)` works.
 */
import type { AbortOptions, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import { isAddress } from 'ethers'
import { log } from '../util/log.ts'
import { P2PError, P2PErrorCode, notStarted, peerNotFound } from './errors.ts'
import { deviceRecordKey, selectDeviceRecord } from './identity.ts'
import type { DeviceRecord } from './identity.ts'
import type { DialOptions, P2PNode } from './node.ts'
import { checkRecordBytes, fetchPeerRecord, RECORD_PROTOCOL } from './records.ts'

export const DEFAULT_CACHE_TTL_MS = 5 * 60 * 1000
export const DEFAULT_RESOLVE_TIMEOUT_MS = 30_000
/** The cache keeps at most this many addresses (oldest dropped first). */
const MAX_CACHE_ENTRIES = 10_000
/** At most this many record fetches from newly identified peers run at once. */
const MAX_CONCURRENT_LEARN = 4

export type ResolveSource = 'cache' | 'peer' | 'dht'

export interface ResolvedPeer {
  /** checksummed wallet address */
  address: string
  peerId: PeerId
  multiaddrs: Multiaddr[]
  /** X25519 messaging public key, 32 bytes */
  messagingKey: Uint8Array
  /** the verified record it all comes from */
  record: DeviceRecord
  /** where the record came from: 'peer' = exchange with a connected peer, 'cache' = earlier DHT answer */
  source: ResolveSource
}

export interface ResolveOptions extends AbortOptions {
  /** skip the cache and ask the DHT (e.g. after a dial to the cached addresses failed) */
  fresh?: boolean
  /** ms; default 30 s, ignored when a signal is given */
  timeoutMs?: number
}

export interface ResolverInit {
  /** how long a record stays in the cache (default 5 min) */
  cacheTtlMs?: number
  /** ask newly identified peers for their record (default true) */
  learnFromPeers?: boolean
}

interface CacheEntry {
  record: DeviceRecord
  source: 'peer' | 'dht'
  expires: number
}

/** Resolves wallet addresses to devices. Start after the node, stop before it. */
export class Resolver {
  private readonly node: P2PNode
  private readonly ttl: number
  private readonly learnFromPeers: boolean
  private readonly cache = new Map<string, CacheEntry>()
  private readonly log = log('p2p:resolver')
  private readonly shutdown = new AbortController()
  private readonly learning = new Set<Promise<void>>()
  private running = false
  private readonly onIdentify = (evt: { peerId: PeerId, protocols: string[] }): void => {
    if (evt.protocols.includes(RECORD_PROTOCOL)) this.learn(evt.peerId)
  }

  constructor (node: P2PNode, init: ResolverInit = {}) {
    this.node = node
    this.ttl = init.cacheTtlMs ?? DEFAULT_CACHE_TTL_MS
    this.learnFromPeers = init.learnFromPeers ?? true
  }

  start (): void {
    if (this.running) return
    this.running = true
    if (this.learnFromPeers) this.node.events.on('peer:identify', this.onIdentify)
  }

  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    this.node.events.off('peer:identify', this.onIdentify)
    this.shutdown.abort()
    await Promise.allSettled([...this.learning])
    this.cache.clear()
  }

  /**
   * Find the device of a wallet address. Throws `INVALID_P2P_ARGUMENT` for a malformed address,
   * `PEER_NOT_FOUND` when no valid record is found, `P2P_NOT_STARTED`.
   */
  async resolve (address: string, options: ResolveOptions = {}): Promise<ResolvedPeer> {
    if (!this.running) throw notStarted('resolver')
    const key = normalize(address)
    const now = Date.now()
    const cached = this.cache.get(key)
    if (cached != null && cached.expires <= now) this.cache.delete(key)
    if (options.fresh !== true && cached != null && cached.expires > now) {
      return await this.found(cached.record, cached.source === 'peer' ? 'peer' : 'cache')
    }
    const signal = AbortSignal.any([this.shutdown.signal, options.signal ?? AbortSignal.timeout(options.timeoutMs ?? DEFAULT_RESOLVE_TIMEOUT_MS)])
    const fromDht = await this.fromDht(key, signal)
    // a record a peer gave us directly may be newer than what the DHT holds
    const candidates = [fromDht, this.cache.get(key)?.record].filter((r): r is DeviceRecord => r != null)
    if (candidates.length === 0) {
      signal.throwIfAborted()
      throw peerNotFound(address)
    }
    const best = candidates[selectDeviceRecord(candidates)]
    this.remember(best, best === fromDht ? 'dht' : 'peer')
    return await this.found(best, best === fromDht ? 'dht' : 'peer')
  }

  /**
   * Resolve the address and open a stream for `protocol` to its device. If the cached addresses do not
   * work, ask the DHT once more. Throws `PEER_NOT_FOUND` or `DIAL_FAILED`.
   */
  async dialProtocol (address: string, protocol: string | string[], options: ResolveOptions & DialOptions = {}): Promise<{ stream: Stream, peer: ResolvedPeer }> {
    let peer = await this.resolve(address, options)
    try {
      return { stream: await this.node.dialProtocol(peer.peerId, protocol, options), peer }
    } catch (err) {
      if (peer.source === 'dht') throw err
      this.log('dial to cached device of %s failed, asking the DHT: %s', peer.address, (err as Error).message)
    }
    peer = await this.resolve(address, { ...options, fresh: true })
    return { stream: await this.node.dialProtocol(peer.peerId, protocol, options), peer }
  }

  /** Forget what we know about an address. */
  invalidate (address: string): void {
    this.cache.delete(normalize(address))
  }

  /** The verified record learned for an address, if any (no network). */
  cached (address: string): DeviceRecord | undefined {
    const entry = this.cache.get(normalize(address))
    return entry != null && entry.expires > Date.now() ? entry.record : undefined
  }

  private async fromDht (key: string, signal: AbortSignal): Promise<DeviceRecord | undefined> {
    const records: DeviceRecord[] = []
    try {
      for await (const event of this.node.libp2p.services.dht.get(deviceRecordKey(key), { signal })) {
        if (event.name !== 'VALUE') continue
        try {
          records.push(checkRecordBytes(event.value, { address: key }))
        } catch (err) {
          this.log('rejected a DHT record for %s from %p: %s', key, event.from, (err as Error).message)
        }
      }
    } catch (err) {
      // NotFound, aborted query or a failed correction: use what we have
      this.log('DHT get for %s ended with: %s', key, (err as Error).message)
      if (this.shutdown.signal.aborted) throw notStarted('resolver')
    }
    return records.length > 0 ? records[selectDeviceRecord(records)] : undefined
  }

  private remember (record: DeviceRecord, source: 'peer' | 'dht'): void {
    const key = record.address.toLowerCase()
    const old = this.cache.get(key)
    if (old != null && old.expires > Date.now() && selectDeviceRecord([old.record, record]) === 0 && old.record !== record) {
      // keep the better (higher seq) record, refresh its lifetime
      old.expires = Date.now() + this.ttl
      return
    }
    this.cache.delete(key)
    this.cache.set(key, { record, source, expires: Date.now() + this.ttl })
    if (this.cache.size > MAX_CACHE_ENTRIES) {
      const oldest = this.cache.keys().next().value
      if (oldest != null) this.cache.delete(oldest)
    }
  }

  /** Put the record's addresses in the peer store and build the answer. */
  private async found (record: DeviceRecord, source: ResolveSource): Promise<ResolvedPeer> {
    const peerId = peerIdFromString(record.peerId)
    const multiaddrs = dialableAddrs(record, peerId)
    if (multiaddrs.length > 0 && !peerId.equals(this.node.peerId)) {
      await this.node.libp2p.peerStore.merge(peerId, { multiaddrs })
    }
    return { address: record.address, peerId, multiaddrs, messagingKey: record.messagingKey, record, source }
  }

  private learn (peerId: PeerId): void {
    if (!this.running || this.learning.size >= MAX_CONCURRENT_LEARN) return
    const job = (async () => {
      try {
        const signal = AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(10_000)])
        const record = await fetchPeerRecord(this.node, peerId, { signal })
        if (record != null && this.running) {
          this.remember(record, 'peer')
          this.log('learned the record of %s from %p', record.address, peerId)
        }
      } catch (err) {
        this.log('could not learn the record of %p: %s', peerId, (err as Error).message)
      }
    })()
    this.learning.add(job)
    void job.finally(() => { this.learning.delete(job) })
  }
}

const LOWER_OR_UPPER_HEX_ADDRESS = /^0x(?:[0-9a-f]{40}|[0-9A-F]{40})$/
/** mixed-case addresses whose EIP-55 checksum was verified (a keccak each): two lookups per message otherwise */
const checkedMixedCase = new Map<string, string>()
const CHECKED_MAX = 1024

function normalize (address: string): string {
  if (typeof address === 'string') {
    // EIP-55: an all-lower or all-upper address carries no checksum to verify
    if (LOWER_OR_UPPER_HEX_ADDRESS.test(address)) return address.toLowerCase()
    const known = checkedMixedCase.get(address)
    if (known !== undefined) return known
  }
  if (typeof address !== 'string' || !isAddress(address)) {
    throw new P2PError(P2PErrorCode.INVALID_P2P_ARGUMENT, 'not an Ethereum address', { address: String(address).slice(0, 64) })
  }
  if (checkedMixedCase.size >= CHECKED_MAX) checkedMixedCase.clear()
  const lower = address.toLowerCase()
  checkedMixedCase.set(address, lower)
  return lower
}

/** The record's multiaddrs that parse, without a trailing `/p2p/<its peer id>`; others' ids are dropped. */
function dialableAddrs (record: DeviceRecord, peerId: PeerId): Multiaddr[] {
  const out: Multiaddr[] = []
  for (const text of record.multiaddrs) {
    let ma: Multiaddr
    try {
      ma = multiaddr(text)
    } catch {
      continue
    }
    const last = ma.getComponents().at(-1)
    if (last?.name === 'p2p') {
      if (last.value !== peerId.toString()) continue
      ma = ma.decapsulate(`/p2p/${last.value}`)
    }
    out.push(ma)
  }
  return out
}
