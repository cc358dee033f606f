/**
 * Replica side of `/tokenim/pin/1.0.0`: keep the backups of a configured set of owners.
 *
 * For each request `{owner, version, cid}` (one per stream):
 *   1. the owner must be in `owners` (UNKNOWN_OWNER);
 *   2. the chain must anchor exactly this root for (owner, version): digestOf(owner, version) equals the
 *      sha2-256 digest inside the root CID (NOT_ANCHORED / DIGEST_MISMATCH; CHAIN_UNAVAILABLE when the
 *      replica cannot read the chain);
 *   3. the DAG is fetched: first in one stream from the requester (`/tokenim/dag/1.0.0`, src/p2p
 *      dag-stream.ts: only blocks asked for, each hash-checked), then over bitswap for whatever that did
 *      not bring (src/p2p fetchDag: breadth-first, many blocks wanted at once, from the requester, which
 *      is connected, and from DHT providers only for blocks it did not deliver in time; Helia hash-checks
 *      every block); each block is size-capped, the root must say this owner and
 *      version before its links are followed, and the bytes new to this replica count against the
 *      owner's quota (OVER_QUOTA);
 *   4. the root is pinned, announced as a provider in the DHT (best effort), recorded, and the owner's
 *      versions beyond the newest `keep` are unpinned;
 *   5. the receipt `{owner, version, cid, ok: true, peerId}` is sent.
 * Requests of one owner are handled one at a time; everything is bounded by timeouts.
 *
 * State (which versions are kept per owner, with their byte counts) lives in the store's meta under
 * `replica:<owner>`.
 */
import type { PeerId, Stream } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import { isTokenimError } from '../../errors.ts'
import { blockBatcher, fetchDag, fetchDagStream, framed } from '../../p2p/index.ts'
import type { DagStreamDialer, LocalBlocks, LocalPins, ProviderRouting } from '../../p2p/index.ts'
import { log } from '../../util/log.ts'
import { toCid } from '../blocks.ts'
import type { BlockGetter } from '../blocks.ts'
import { linksOf } from '../car.ts'
import { MAX_CAR_BLOCK } from '../constants.ts'
import { checkExpectations } from '../reader.ts'
import { decodeHeader } from '../schema.ts'
import { drain } from '../retention.ts'
import { ReplicaReason } from './errors.ts'
import { MAX_PIN_FRAME, PIN_PROTOCOL, ProtocolError, decodePinRequest, encodeReceipt } from './protocol.ts'

const logger = log('backup:replica')

export const DEFAULT_REPLICA_KEEP = 3
export const DEFAULT_REPLICA_QUOTA_BYTES = 2 * 1024 * 1024 * 1024
export const DEFAULT_REPLICA_FETCH_TIMEOUT_MS = 10 * 60_000
const READ_REQUEST_TIMEOUT_MS = 10_000
const PROVIDE_TIMEOUT_MS = 60_000
/** bound on one block of a DAG being pinned (the whole fetch is bounded by fetchTimeoutMs) */
const BLOCK_TIMEOUT_MS = 60_000
/** streamed blocks are written in level batches of about this size */
const STREAM_BATCH_BYTES = 4 * 1024 * 1024

/** The parts of a node the service uses (a TokenimNode's `p2p` and `store` fit). */
export interface ReplicaHost {
  p2p: {
    peerId: { toString: () => string }
    handle: (protocol: string, handler: (stream: Stream, connection: { remotePeer: PeerId }) => void | Promise<void>, options?: { maxInboundStreams?: number }) => Promise<void>
    unhandle: (protocol: string) => Promise<void>
    /** with both, the DAG is first asked of the requester in one stream (a P2PNode has them) */
    dialProtocol?: DagStreamDialer['dialProtocol']
    localBlocks?: () => LocalBlocks
    /** pins in one batch of Helia's records, without reading the segments back (a P2PNode has it) */
    localPins?: () => LocalPins | undefined
    helia: {
      blockstore: BlockGetter & { has: (cid: CID, options?: { signal?: AbortSignal }) => boolean | Promise<boolean> }
      pins: {
        add: (cid: CID, options?: { signal?: AbortSignal, metadata?: Record<string, string | number | boolean> }) => AsyncGenerator<CID, void, undefined>
        rm: (cid: CID, options?: { signal?: AbortSignal }) => AsyncGenerator<CID, void, undefined>
        isPinned: (cid: CID, options?: { signal?: AbortSignal }) => Promise<boolean>
        /** a pin and its metadata (Helia's pins.get; throws when `cid` is not pinned) */
        get?: (cid: CID, options?: { signal?: AbortSignal }) => Promise<{ metadata: Record<string, unknown> }>
      }
      libp2p: { contentRouting: { provide: (cid: CID, options?: { signal?: AbortSignal }) => Promise<void> } }
      /** Helia's routing: when given, DHT provider lookups are deferred while the requester delivers */
      routing?: ProviderRouting
    }
  }
  store: {
    getMeta: <T = unknown>(key: string) => Promise<T | undefined>
    setMeta: (key: string, value: unknown) => Promise<void>
  }
}

/** The chain reads the service needs (a RegistryClient fits). */
export interface ReplicaChain {
  digestOf: (owner: string, version: number, opts?: { signal?: AbortSignal }) => Promise<string | undefined>
}

export interface ReplicaServiceOptions {
  /** owners (wallet addresses) whose backups this node keeps */
  owners: string[]
  chain: ReplicaChain
  /** versions kept per owner (default 3); older ones are unpinned */
  keep?: number
  /** bytes per owner (default 2 GiB), counted as the bytes each kept version added on this replica */
  quotaBytes?: number
  /** bound on fetching one DAG (default 10 min) */
  fetchTimeoutMs?: number
}

export interface KeptVersion {
  version: number
  cid: string
  /** bytes of the version's DAG */
  bytes: number
  /** bytes that were new to this replica when it was pinned */
  bytesNew: number
  at: number
}

export interface ReplicaService {
  readonly owners: string[]
  /** versions kept for an owner, oldest first */
  kept: (owner: string) => Promise<KeptVersion[]>
  stop: () => Promise<void>
}

class Refusal extends Error {
  readonly code: string
  constructor (code: string, message: string) {
    super(message)
    this.code = code
  }
}

export function metaKey (owner: string): string {
  return `replica:${owner.toLowerCase()}`
}

/** Register the pin protocol on the node. Stop it before the node stops. */
export async function startReplicaService (host: ReplicaHost, options: ReplicaServiceOptions): Promise<ReplicaService> {
  const owners = new Set(options.owners.map(o => o.toLowerCase()))
  const keep = options.keep ?? DEFAULT_REPLICA_KEEP
  const quota = options.quotaBytes ?? DEFAULT_REPLICA_QUOTA_BYTES
  const fetchTimeoutMs = options.fetchTimeoutMs ?? DEFAULT_REPLICA_FETCH_TIMEOUT_MS
  if (!Number.isSafeInteger(keep) || keep < 1) throw new RangeError('keep must be a positive integer')
  const shutdown = new AbortController()
  const queues = new Map<string, Promise<unknown>>()
  const inflight = new Set<Promise<void>>()
  const peerId = host.p2p.peerId.toString()
  const { helia } = host.p2p

  const kept = async (owner: string): Promise<KeptVersion[]> => (await host.store.getMeta<KeptVersion[]>(metaKey(owner))) ?? []

  /** Run `fn` after the owner's previous request finished. */
  const serial = async <T>(owner: string, fn: () => Promise<T>): Promise<T> => {
    const prev = queues.get(owner) ?? Promise.resolve()
    const next = prev.catch(() => {}).then(fn)
    queues.set(owner, next)
    try {
      return await next
    } finally {
      if (queues.get(owner) === next) queues.delete(owner)
    }
  }

  /**
   * Fetch the version's DAG into the blockstore (src/p2p fetchDag: breadth-first, many blocks wanted at
   * once, asked of the connected peers — the requester — before any DHT provider lookup). The root is
   * checked (owner, version) before its links are followed; each block is size-capped; the bytes that
   * were not here yet count against the budget.
   */
  const fetchVersion = async (owner: string, version: number, root: CID, budget: number, signal: AbortSignal, from?: PeerId): Promise<{ bytes: number, bytesNew: number }> => {
    let bytesNew = 0
    /** the checks every block passes, streamed or over bitswap (a Refusal stops the fetch) */
    const check = (cid: CID, bytes: Uint8Array, local: boolean): void => {
      if (bytes.length > MAX_CAR_BLOCK) throw new Refusal(ReplicaReason.FETCH_FAILED, `block ${cid.toString()} is larger than ${MAX_CAR_BLOCK} bytes`)
      if (cid.equals(root)) {
        try {
          checkExpectations(decodeHeader(bytes, { block: 'root', cid: cid.toString() }), { owner, version })
        } catch (err) {
          throw new Refusal(ReplicaReason.DIGEST_MISMATCH, `the root does not hold version ${version} of ${owner}: ${(err as Error).message}`)
        }
      }
      if (!local) {
        bytesNew += bytes.length
        if (bytesNew > budget) throw new Refusal(ReplicaReason.OVER_QUOTA, `the bundle needs more than the ${budget} bytes left in the owner's quota of ${quota}`)
      }
    }
    if (from !== undefined) await streamVersion(root, from, check, signal)
    // whatever the stream did not bring (or all of it); blocks it brought are local now and not counted again
    const got = await fetchDag(helia.blockstore, root, {
      links: linksOf,
      routing: helia.routing,
      blockTimeoutMs: Math.min(fetchTimeoutMs, BLOCK_TIMEOUT_MS),
      signal,
      onBlock: ({ cid, bytes, local }) => { check(cid, bytes, local === true) }
    })
    return { bytes: got.bytes, bytesNew }
  }

  /**
   * Ask the requester for the whole DAG in one stream (many blocks per frame, no per-block bitswap
   * round trips) and write what it sends in level batches. Refusals propagate; anything else (an owner
   * without the protocol, a stall, a block that does not match its CID) only ends the stream: fetchDag
   * then gets the rest over bitswap.
   */
  const streamVersion = async (root: CID, from: PeerId, check: (cid: CID, bytes: Uint8Array, local: boolean) => void, signal: AbortSignal): Promise<void> => {
    const p2p = host.p2p
    if (p2p.dialProtocol === undefined || p2p.localBlocks === undefined) return
    const local = p2p.localBlocks()
    const batches = blockBatcher(local, STREAM_BATCH_BYTES)
    try {
      await fetchDagStream({ dialProtocol: p2p.dialProtocol.bind(p2p) }, from, root, {
        signal,
        links: linksOf,
        onBlock: async ({ cid, bytes }) => {
          if (await local.has(cid)) return check(cid, bytes, true)
          check(cid, bytes, false)
          await batches.add(cid, bytes)
        }
      })
    } catch (err) {
      if (err instanceof Refusal) throw err
      logger('no DAG stream from %s: %s', from.toString(), (err as Error).message)
    }
    await batches.flush()
  }

  const pin = async (owner: string, version: number, root: CID, signal: AbortSignal, from?: PeerId): Promise<void> => {
    if (!owners.has(owner)) throw new Refusal(ReplicaReason.UNKNOWN_OWNER, 'this replica does not keep backups of that owner')
    let anchored: string | undefined
    try {
      anchored = await options.chain.digestOf(owner, version, { signal })
    } catch (err) {
      throw new Refusal(ReplicaReason.CHAIN_UNAVAILABLE, `cannot read the chain: ${isTokenimError(err) ? err.code : (err as Error).message}`)
    }
    if (anchored === undefined) throw new Refusal(ReplicaReason.NOT_ANCHORED, `version ${version} of ${owner} is not anchored`)
    const digest = '0x' + Buffer.from(root.multihash.digest).toString('hex')
    if (anchored.toLowerCase() !== digest) throw new Refusal(ReplicaReason.DIGEST_MISMATCH, `the chain anchors another root for version ${version}`)

    await serial(owner, async () => {
      const list = await kept(owner)
      if (list.some(k => k.version === version && k.cid === root.toString()) && await helia.pins.isPinned(root, { signal })) return
      // the versions that stay after this one is added
      const others = list.filter(k => k.version !== version).sort((a, b) => a.version - b.version)
      const staying = [...others, { version }].sort((a, b) => a.version - b.version).slice(-keep)
      if (!staying.some(k => k.version === version)) throw new Refusal(ReplicaReason.NOT_ANCHORED, `version ${version} is older than the ${keep} versions kept`)
      const used = others.filter(k => staying.some(s => s.version === k.version)).reduce((n, k) => n + k.bytesNew, 0)
      let got: { bytes: number, bytesNew: number }
      const fetchSignal = AbortSignal.any([signal, AbortSignal.timeout(fetchTimeoutMs)])
      try {
        got = await fetchVersion(owner, version, root, Math.max(0, quota - used), fetchSignal, from)
      } catch (err) {
        if (err instanceof Refusal) throw err
        throw new Refusal(ReplicaReason.FETCH_FAILED, `could not fetch the bundle: ${isTokenimError(err) ? `${err.code} ${String(err.info.cid ?? '')}` : (err as Error).message}`.trim())
      }
      const metadata = { tokenimReplicaOwner: owner, tokenimReplicaVersion: version }
      const bulk = host.p2p.localPins?.()
      // pinned by this service for this version already, but not on the list: stopped between the pin and
      // the list's write (pinning again would fail ALREADY_PINNED on every request, and the version would
      // never be listed, so never dropped)
      const pinned = await helia.pins.get?.(root, { signal }).then(p => p.metadata.tokenimReplicaOwner === owner && p.metadata.tokenimReplicaVersion === version, () => false)
      if (pinned === true) logger('version %d of %s was pinned here but not listed: listed now', version, owner)
      else if (bulk !== undefined) await bulk.add(root, { signal, metadata })
      else await drain(helia.pins.add(root, { signal, metadata }))
      const entry: KeptVersion = { version, cid: root.toString(), bytes: got.bytes, bytesNew: got.bytesNew, at: Date.now() }
      const next = [...others, entry].sort((a, b) => a.version - b.version)
      const drop = next.slice(0, Math.max(0, next.length - keep))
      const stay = next.slice(-keep)
      await host.store.setMeta(metaKey(owner), stay)
      for (const d of drop) {
        try {
          const cid = toCid(d.cid, 'cid')
          if (await helia.pins.isPinned(cid)) await (bulk !== undefined ? bulk.rm(cid) : drain(helia.pins.rm(cid)))
          logger('unpinned version %d of %s (keeping %d)', d.version, owner, keep)
        } catch (err) {
          logger.error('unpinning version %d of %s failed: %s', d.version, owner, (err as Error).message)
        }
      }
      logger('pinned version %d of %s (%s): %d bytes, %d new', version, owner, root, got.bytes, got.bytesNew)
    })
    // best effort: tell the DHT we provide it (does not delay the receipt)
    helia.libp2p.contentRouting.provide(root, { signal: AbortSignal.any([shutdown.signal, AbortSignal.timeout(PROVIDE_TIMEOUT_MS)]) })
      .catch((err: Error) => { logger('providing %s failed: %s', root, err.message) })
  }

  const handler = async (stream: Stream, from?: PeerId): Promise<void> => {
    const f = framed(stream, { maxFrameBytes: MAX_PIN_FRAME })
    const signal = AbortSignal.any([shutdown.signal, AbortSignal.timeout(fetchTimeoutMs + READ_REQUEST_TIMEOUT_MS * 2)])
    let req: { owner: string, version: number, cid: CID } | undefined
    try {
      const bytes = await f.read({ signal: AbortSignal.any([signal, AbortSignal.timeout(READ_REQUEST_TIMEOUT_MS)]) })
      if (bytes === null) return
      req = decodePinRequest(bytes)
      await pin(req.owner, req.version, req.cid, signal, from)
      await f.write(encodeReceipt({ owner: req.owner, version: req.version, cid: req.cid.toString(), ok: true, peerId }), { signal })
    } catch (err) {
      const code = err instanceof Refusal ? err.code : err instanceof ProtocolError ? err.reason : ReplicaReason.REPLICA_ERROR
      const message = err instanceof Refusal || err instanceof ProtocolError ? err.message : 'internal error'
      if (!(err instanceof Refusal || err instanceof ProtocolError)) logger.error('pin request failed: %s', (err as Error).message)
      else logger('refused %s v%s: %s %s', req?.owner, req?.version, code, message)
      if (req !== undefined) {
        await f.write(encodeReceipt({ owner: req.owner, version: req.version, cid: req.cid.toString(), ok: false, peerId, code, message }), { signal }).catch(() => {})
      } else {
        f.abort(new Error(`${code}: ${message}`))
        return
      }
    }
    await f.close({ signal: AbortSignal.timeout(5_000) }).catch(() => { f.abort(new Error('close failed')) })
  }

  await host.p2p.handle(PIN_PROTOCOL, (stream, connection) => {
    const job = handler(stream, connection?.remotePeer).catch((err: Error) => { logger.error('pin handler: %s', err.message) })
    inflight.add(job)
    void job.finally(() => inflight.delete(job))
  }, { maxInboundStreams: 16 })
  logger('replica service for %d owner(s), keeping %d versions each', owners.size, keep)

  return {
    owners: [...owners],
    kept,
    stop: async () => {
      shutdown.abort()
      await host.p2p.unhandle(PIN_PROTOCOL).catch(() => {})
      await Promise.allSettled([...inflight])
    }
  }
}
