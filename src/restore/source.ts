/**
 * Where the blocks of a bundle come from: a CAR file, or the network (a temporary libp2p + Helia node that
 * dials the given peers and the DHT providers of the root, and fetches blocks over bitswap), optionally
 * preceded by a local blockstore. No source is trusted: the backup engine hash-checks every block it reads
 * (src/backup readBlock / verifyBlock); Helia checks every block it fetches before storing it, and blocks
 * from the local blockstore are checked before they are used (a damaged one is fetched from the network).
 * The network source fetches the whole DAG ahead (`prefetch`) with src/p2p fetchDag: breadth-first, many
 * blocks in flight, the dialled peers asked first and DHT providers looked up only for blocks they did
 * not deliver.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { CID } from 'multiformats/cid'
import { readCar, verifyBlock } from '../backup/index.ts'
import type { BlockGetter } from '../backup/index.ts'
import { isTokenimError } from '../errors.ts'
import { createP2PNode, DEFAULT_LOOKUP_AFTER_MS, fetchDag, getBlock } from '../p2p/index.ts'
import type { FetchBlockOptions, P2PNode } from '../p2p/index.ts'
import { log } from '../util/log.ts'
import { RestoreErrorCode, restoreError } from './errors.ts'

const logger = log('restore:source')

/** Default time to wait for one block from the network before calling it missing. */
export const DEFAULT_BLOCK_TIMEOUT_MS = 20_000
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
  const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS
  const onProgress = options.onProgress ?? (() => {})
  const warnings: string[] = []
  if (options.bootstrap.length === 0 && options.local === undefined) {
    throw restoreError(RestoreErrorCode.NO_SOURCE, 'nowhere to fetch the backup from: pass --file FILE.car or --bootstrap MULTIADDR (a replica or another node holding it)')
  }
  const dir = await mkdtemp(join(tmpdir(), 'tokenim-restore-'))
  let node: P2PNode | undefined
  try {
    if (options.bootstrap.length > 0) {
      node = await createP2PNode({ privateKey: await generateKeyPair('Ed25519'), dataDir: dir, bootstrap: options.bootstrap, listen: ['/ip4/127.0.0.1/tcp/0'] })
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

  const blockstore: BlockGetter = {
    async get (cid: CID, opts: FetchBlockOptions = {}): Promise<Uint8Array> {
      if (options.local !== undefined) {
        try {
          const got = await getBlock(options.local, cid, { signal: opts.signal })
          verifyBlock(cid, got)
          return got
        } catch (err) {
          if (opts.signal?.aborted === true) throw err
          logger('local blockstore has no valid %s: %s', cid, (err as Error).message)
        }
      }
      if (p2p === undefined || missing.has(cid.toString())) throw notFound(cid)
      const signal = anySignal(opts.signal, blockTimeoutMs)
      try {
        // Helia checks every block it fetches against its hash before storing it, and the backup engine
        // checks every block it reads again: no third hash here
        return await getBlock(p2p.helia.blockstore, cid, { signal, skipProviderLookup: opts.skipProviderLookup })
      } catch (err) {
        if (opts.signal?.aborted === true || isTokenimError(err)) throw err
        missing.add(cid.toString())
        logger('block %s: %s', cid, (err as Error).message)
        throw notFound(cid)
      }
    }
  }

  /**
   * The whole DAG under the root (root, manifest, shards, segments, attachments), breadth-first with many
   * blocks in flight, asked of the dialled peers first (see src/p2p/fetch-dag.ts). Blocks land in the
   * temporary node's blockstore; the reads that follow are local. Never throws for a missing block: the
   * reader reports it where it is.
   */
  const prefetch = async (root: CID, opts: { signal?: AbortSignal } = {}): Promise<void> => {
    if (p2p === undefined) return
    void findProviders(root, opts.signal)
    const connected = p2p.connectedPeers().length > 0
    try {
      const got = await fetchDag(blockstore, root, {
        routing: p2p.helia.routing,
        // nobody to ask directly: look providers up at once
        lookupAfterMs: connected ? DEFAULT_LOOKUP_AFTER_MS : 0,
        blockTimeoutMs,
        failFast: false,
        signal: opts.signal,
        onProgress: p => { onProgress({ phase: 'fetch', blocks: p.blocks, totalBlocks: p.blocks + p.inFlight + p.queued, bytes: p.bytes, missing: missing.size + p.missing }) }
      })
      for (const m of got.missing) missing.add(m.cid.toString())
      logger('prefetched %d blocks (%d bytes), %d missing', got.blocks, got.bytes, got.missing.length)
    } catch (err) {
      if (opts.signal?.aborted === true) throw err
      logger('prefetch stopped: %s', (err as Error).message)
    }
  }

  return {
    kind: 'network',
    blockstore,
    where: options.bootstrap.join(', '),
    warnings,
    prefetch,
    close: async () => {
      await p2p?.stop().catch(() => {})
      await rm(dir, { recursive: true, force: true }).catch(() => {})
    }
  }
}

function anySignal (signal: AbortSignal | undefined, timeoutMs: number): AbortSignal {
  const t = AbortSignal.timeout(timeoutMs)
  return signal === undefined ? t : AbortSignal.any([signal, t])
}
