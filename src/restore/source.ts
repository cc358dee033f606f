/**
 * Where the blocks of a bundle come from: a CAR file, or the network (a temporary libp2p + Helia node that
 * dials the given peers and the DHT providers of the root, and fetches blocks over bitswap), optionally
 * preceded by a local blockstore. No source is trusted: the backup engine hash-checks every block it reads
 * (src/backup readBlock / verifyBlock); Helia checks every block it fetches before storing it, and blocks
 * from the local blockstore are checked before they are used (a damaged one is fetched from the network).
 * The network source fetches the whole DAG ahead (`prefetch`): first in one stream from a named peer
 * that serves `/tokenim/dag/1.0.0` (src/p2p dag-stream.ts: every block hash-checked and asked for), then
 * with src/p2p fetchDag over bitswap for whatever that did not bring: breadth-first, many blocks in
 * flight, the dialled peers asked first and DHT providers looked up only for blocks they did not deliver.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { getHeapStatistics } from 'node:v8'
import type { CID } from 'multiformats/cid'
import { blockKey, ownBytes, readCar, verifyBlock } from '../backup/index.ts'
import type { BlockGetter } from '../backup/index.ts'
import { isTokenimError } from '../errors.ts'
import type { DagBlockstore, FetchBlockOptions, P2PNode } from '../p2p/index.ts'
import { log } from '../util/log.ts'
import { RestoreErrorCode, restoreError } from './errors.ts'

const logger = log('restore:source')

/** Default time to wait for one block from the network before calling it missing. */
export const DEFAULT_BLOCK_TIMEOUT_MS = 20_000
/**
 * Largest default of the bytes of fetched blocks kept in memory for the reads after the prefetch (a
 * bundle of ~400,000 messages fits; the blocks of a larger one are read back from the temporary
 * blockstore). See {@link defaultCacheBytes}.
 */
export const DEFAULT_CACHE_BYTES = 32 * 1024 * 1024

/** The default block cache: {@link DEFAULT_CACHE_BYTES}, or a 32nd of the V8 heap limit when that is smaller. */
export function defaultCacheBytes (heapLimit = getHeapStatistics().heap_size_limit): number {
  return Math.min(DEFAULT_CACHE_BYTES, Math.floor(heapLimit / 32))
}
/** Streamed blocks beyond the cache are written to the temporary blockstore in batches of this many bytes. */
const STREAM_SPILL_BYTES = 4 * 1024 * 1024
/** Default time to wait for the first connection to a bootstrap peer / provider. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000

export interface FetchProgress {
  phase: 'connect' | 'fetch'
  /** connected peers */
  peers?: number
  blocks?: number
  totalBlocks?: number
  bytes?: number
  missing?: number
}

export interface BlockSource {
  kind: 'car' | 'network'
  blockstore: BlockGetter
  /** the CAR's root (CAR sources only) */
  root?: CID
  /** for a CAR: its path; for the network: the multiaddrs dialled */
  where: string
  /** warnings worth showing (peers that could not be dialled, …) */
  warnings: string[]
  /** fetch the bundle's blocks ahead (network sources; a no-op for a CAR). Never throws for a missing block. */
  prefetch: (root: CID, options?: { signal?: AbortSignal }) => Promise<void>
  close: () => Promise<void>
}

/** A CAR file as a source (every block checked against its CID on every read). */
export async function openCarSource (path: string, options: { signal?: AbortSignal } = {}): Promise<BlockSource> {
  const car = await readCar(path, options)
  return {
    kind: 'car',
    blockstore: car.blockstore,
    root: car.root,
    where: path,
    warnings: [],
    prefetch: async () => {},
    close: async () => { await car.blockstore.close() }
  }
}

export interface NetworkSourceOptions {
  /** peers to dial first: multiaddrs ending in /p2p/<peerId> (a replica, the old device, a bootstrap node) */
  bootstrap: string[]
  /** a local blockstore tried before the network (e.g. the data dir's own blocks) */
  local?: BlockGetter
  blockTimeoutMs?: number
  connectTimeoutMs?: number
  /**
   * bytes of fetched blocks kept in memory for the reads that follow the prefetch (verify, then import,
   * each read every block; default {@link defaultCacheBytes}); blocks beyond it are read back from the
   * temporary blockstore
   */
  cacheBytes?: number
  onProgress?: (p: FetchProgress) => void
  signal?: AbortSignal
}

function notFound (cid: CID): Error {
  const err = new Error(`block ${cid.toString()} was not found on the network in time`)
  err.name = 'NotFoundError'
  return err
}

/**
 * A temporary network node (random peer id, data in a temp dir removed on close) that dials the given
 * peers; blocks are fetched over bitswap from connected peers and from DHT providers of the root.
 */
export async function openNetworkSource (options: NetworkSourceOptions): Promise<BlockSource> {
  const blockTimeoutMs = options.blockTimeoutMs ?? DEFAULT_BLOCK_TIMEOUT_MS
  const cacheBytes = options.cacheBytes ?? defaultCacheBytes()
  const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS
  const onProgress = options.onProgress ?? (() => {})
  const warnings: string[] = []
  if (options.bootstrap.length === 0 && options.local === undefined) {
    throw restoreError(RestoreErrorCode.NO_SOURCE, 'nowhere to fetch the backup from: pass --file FILE.car or --bootstrap MULTIADDR (a replica or another node holding it)')
  }
  // libp2p and Helia load here, not with src/restore: a restore from a CAR file never needs them (~100 MB
  // of RSS and ~1 s of CPU to load)
  const [{ createP2PNode, DEFAULT_LOOKUP_AFTER_MS, fetchBlock, fetchDag, getBlock }, { generateKeyPair }] =
    await Promise.all([import('../p2p/index.ts'), import('@libp2p/crypto/keys')])
  const dir = await mkdtemp(join(tmpdir(), 'tokenim-restore-'))
  let node: P2PNode | undefined
  try {
    if (options.bootstrap.length > 0) {
      // a client only: it dials out, listens nowhere, and its DHT asks but does not serve (peers keep it out of
      // their routing tables)
      node = await createP2PNode({ privateKey: await generateKeyPair('Ed25519'), dataDir: dir, bootstrap: options.bootstrap, listen: [], dhtClientMode: true })
      await node.start()
      onProgress({ phase: 'connect', peers: 0 })
      const started = node
      const results = await Promise.allSettled(options.bootstrap.map(async addr => {
        await started.dial(addr, { signal: anySignal(options.signal, connectTimeoutMs) })
      }))
      results.forEach((r, i) => {
        if (r.status === 'rejected') warnings.push(`could not reach ${options.bootstrap[i]}: ${(r.reason as Error)?.message ?? String(r.reason)}`)
      })
      onProgress({ phase: 'connect', peers: started.connectedPeers().length })
    }
  } catch (err) {
    await node?.stop().catch(() => {})
    await rm(dir, { recursive: true, force: true }).catch(() => {})
    throw err
  }
  const p2p = node
  const missing = new Set<string>()
  const providersAsked = new Set<string>()

  /** Ask the DHT who provides `cid` and dial them (background, bounded). */
  const findProviders = async (cid: CID, signal?: AbortSignal): Promise<void> => {
    if (p2p === undefined || providersAsked.has(cid.toString())) return
    providersAsked.add(cid.toString())
    try {
      const self = p2p.peerId.toString()
      for await (const prov of p2p.libp2p.contentRouting.findProviders(cid, { signal: anySignal(signal, connectTimeoutMs) })) {
        if (prov.id.toString() === self) continue
        await p2p.dial(prov.id, { timeoutMs: connectTimeoutMs }).catch((err: Error) => { logger('provider %p: %s', prov.id, err.message) })
      }
    } catch (err) {
      logger('findProviders %s: %s', cid, (err as Error).message)
    }
  }

  /** ask the dialled peers first, providers later; nobody dialled: look providers up at once */
  const lookupAfterMs = (): number => p2p !== undefined && p2p.connectedPeers().length > 0 ? DEFAULT_LOOKUP_AFTER_MS : 0

  /** A valid block from the local blockstore, or undefined (a damaged one is fetched from the network). */
  const fromLocal = async (cid: CID, signal?: AbortSignal): Promise<Uint8Array | undefined> => {
    if (options.local === undefined) return undefined
    try {
      const got = await getBlock(options.local, cid, { signal })
      verifyBlock(cid, got)
      return got
    } catch (err) {
      if (signal?.aborted === true) throw err
      logger('local blockstore has no valid %s: %s', cid, (err as Error).message)
      return undefined
    }
  }

  const unavailable = (cid: CID, err: unknown, signal?: AbortSignal): unknown => {
    if (signal?.aborted === true || isTokenimError(err)) return err
    missing.add(blockKey(cid))
    logger('block %s: %s', cid, (err as Error).message)
    return notFound(cid)
  }

  // Helia checks every block it fetches against its hash before storing it, and the backup engine checks
  // every block it reads again: no third hash here
  // blocks the walk fetched, by CID, while they fit in cacheBytes: the reads after it skip Helia and level.
  // Keys are blockKey(cid) (cid.toString() is a ~1.7 KB rope, cached on every CID asked for); a block is
  // often a view into a larger buffer (a stream frame, a bitswap message, a 64 KiB Buffer pool slab), so
  // the cache keeps a copy of its own bytes (ownBytes), else it would hold far more memory than it counts
  const cache = new Map<string, Uint8Array>()
  let cached = 0

  const blockstore: BlockGetter = {
    async get (cid: CID, opts: { signal?: AbortSignal } = {}): Promise<Uint8Array> {
      const hit = cache.get(blockKey(cid))
      if (hit !== undefined) return hit.slice()
      const local = await fromLocal(cid, opts.signal)
      if (local !== undefined) return local
      if (p2p === undefined || missing.has(blockKey(cid))) throw notFound(cid)
      try {
        // joins the walk's want when it already asked for this block
        return await fetchBlock(p2p.helia.blockstore, cid, { signal: opts.signal, blockTimeoutMs, routing: p2p.helia.routing, lookupAfterMs: lookupAfterMs() })
      } catch (err) {
        throw unavailable(cid, err, opts.signal)
      }
    }
  }

  /** What the walk reads through: local first, else Helia, passing fetchDag's lookup flag on. */
  const walkStore: DagBlockstore = {
    async get (cid: CID, opts: FetchBlockOptions = {}): Promise<Uint8Array> {
      const streamed = cache.get(blockKey(cid))
      if (streamed !== undefined) return streamed
      const local = await fromLocal(cid, opts.signal)
      if (local !== undefined) return local
      if (p2p === undefined) throw notFound(cid)
      return await getBlock(p2p.helia.blockstore, cid, opts)
    }
  }

  const closing = new AbortController()
  let walk: Promise<void> | undefined

  /**
   * Stream the DAG from the first dialled peer that serves it: blocks into the cache while it has room,
   * the others into the temporary blockstore (one level batch per few MiB). Never throws: what is not
   * streamed is fetched over bitswap. True when the stream brought the whole DAG.
   */
  const streamDag = async (node: P2PNode, root: CID, signal: AbortSignal): Promise<boolean> => {
    const [{ blockBatcher, fetchDagStream }, { multiaddr }] = await Promise.all([import('../p2p/index.ts'), import('@multiformats/multiaddr')])
    const spill = blockBatcher(node.localBlocks(), STREAM_SPILL_BYTES)
    // the peers named to restore from (a replica) first, then anyone else connected
    const named = options.bootstrap.map(a => multiaddr(a))
    const namedIds = new Set(named.map(a => a.getComponents().findLast(c => c.name === 'p2p')?.value))
    const peers = [...named, ...node.connectedPeers().filter(p => !namedIds.has(p.toString()))]
    for (const peer of peers) {
      const started = performance.now()
      try {
        const got = await fetchDagStream(node, peer, root, {
          signal,
          onBlock: async ({ cid, bytes }) => {
            const key = blockKey(cid)
            if (cache.has(key)) return
            if (cached + bytes.length <= cacheBytes) {
              cache.set(key, ownBytes(bytes))
              cached += bytes.length
              return
            }
            await spill.add(cid, bytes)
          }
        })
        await spill.flush()
        logger('streamed %d blocks (%d bytes, %s) from %s in %d ms', got.blocks, got.bytes, got.complete ? 'complete' : 'not complete', peer.toString(), Math.round(performance.now() - started))
        if (got.complete) onProgress({ phase: 'fetch', blocks: got.blocks, totalBlocks: got.blocks, bytes: got.bytes, missing: 0 })
        return got.complete
      } catch (err) {
        await spill.flush().catch(() => {})
        logger('no DAG stream from %s: %s', peer.toString(), (err as Error).message)
        if (signal.aborted) return false
      }
    }
    return false
  }

  /**
   * Fetch the whole DAG under the root (root, manifest, shards, segments, attachments): breadth-first,
   * many blocks in flight, the dialled peers asked first (src/p2p/fetch-dag.ts). Blocks land in the
   * temporary node's blockstore; the reads that follow are local. Never throws for a missing block: the
   * reader reports it where it is. (Reading while the walk runs was measured too: no faster on 2 cores,
   * both sides compete for the CPU, and the progress phases would interleave.)
   */
  const prefetch = async (root: CID, opts: { signal?: AbortSignal } = {}): Promise<void> => {
    if (p2p === undefined || walk !== undefined) return
    void findProviders(root, opts.signal)
    // first the whole DAG in one stream from a dialled peer (src/p2p/dag-stream.ts), then the walk for
    // whatever it did not send (its reads of the streamed blocks are local)
    const streamed = streamDag(p2p, root, opts.signal === undefined ? closing.signal : AbortSignal.any([opts.signal, closing.signal]))
    walk = streamed.then(() => {})
    // the whole DAG streamed (every block hash-checked and asked for): no walk over it to find what is
    // missing (it would decode every dag-cbor node again for its links)
    if (await streamed) {
      opts.signal?.throwIfAborted()
      return
    }
    const started = performance.now()
    walk = fetchDag(walkStore, root, {
      peek: cid => cache.get(blockKey(cid)),
      routing: p2p.helia.routing,
      lookupAfterMs: lookupAfterMs(),
      blockTimeoutMs,
      failFast: false,
      signal: opts.signal === undefined ? closing.signal : AbortSignal.any([opts.signal, closing.signal]),
      onBlock: ({ cid, bytes }) => {
        if (cached + bytes.length > cacheBytes || cache.has(blockKey(cid))) return
        cache.set(blockKey(cid), ownBytes(bytes))
        cached += bytes.length
      },
      onProgress: p => {
        onProgress({ phase: 'fetch', blocks: p.blocks, totalBlocks: p.blocks + p.inFlight + p.queued, bytes: p.bytes, missing: missing.size + p.missing })
      }
    }).then(got => {
      for (const m of got.missing) missing.add(blockKey(m.cid))
      logger('fetched %d blocks (%d bytes) in %d ms, %d missing', got.blocks, got.bytes, Math.round(performance.now() - started), got.missing.length)
    }, (err: Error) => {
      logger('fetch stopped: %s', err.message)
    })
    await walk
    opts.signal?.throwIfAborted()
  }

  return {
    kind: 'network',
    blockstore,
    where: options.bootstrap.join(', '),
    warnings,
    prefetch,
    close: async () => {
      closing.abort()
      await walk
      cache.clear()
      await p2p?.stop().catch(() => {})
      await rm(dir, { recursive: true, force: true }).catch(() => {})
    }
  }
}

function anySignal (signal: AbortSignal | undefined, timeoutMs: number): AbortSignal {
  const t = AbortSignal.timeout(timeoutMs)
  return signal === undefined ? t : AbortSignal.any([signal, t])
}
