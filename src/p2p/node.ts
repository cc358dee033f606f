/**
 * One libp2p node per device, with Helia on it.
 *
 * libp2p 3: TCP, noise, yamux, identify (+ push), ping and a kad-dht server under our own protocol
 * (`/tokenim/kad/1.0.0`, private and loopback addresses kept). Peers are found through a configured
 * bootstrap list and, optionally, mDNS. There is no public bootstrap and no delegated routing.
 *
 * Helia 7 runs on the same libp2p node (`createHeliaLight` + `withLibp2pLight` + `withBitswap`), with a
 * level blockstore in `<dataDir>/blocks` and a level datastore in `<dataDir>/datastore` (the datastore
 * also keeps libp2p's peer store and the DHT's records).
 *
 * A node created with `network: false` has no libp2p at all, only those stores and Helia's blockstore
 * and pins (a one-shot command such as a backup that asks no replica); the network packages are loaded
 * only by a node with network (createP2PNode imports them on use: ~45 MB less RSS for a command without).
 *
 * @example
 * ```ts
 * const node = await createP2PNode({ privateKey, dataDir, bootstrap: ['/ip4/…/tcp/…/p2p/12D3…'] })
 * await node.start()
 * await node.handle('/tokenim/msg/1.0.0', (stream, connection) => { … })
 * const stream = await node.dialProtocol(peerId, '/tokenim/msg/1.0.0', { signal })
 * await node.stop()
 * ```
 */
import { EventEmitter } from 'node:events'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { HeliaWithLibp2p } from '@helia/libp2p'
import * as dagCbor from '@ipld/dag-cbor'
import type { Identify, IdentifyPush } from '@libp2p/identify'
import type { Connection, Libp2p, PeerId, PrivateKey, Stream, StreamHandler, StreamHandlerOptions, AbortOptions, Libp2pEvents } from '@libp2p/interface'
import type { KadDHT, SelectFn, ValidateFn } from '@libp2p/kad-dht'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import type { Ping } from '@libp2p/ping'
import { multiaddr, isMultiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import { LevelBlockstore } from 'blockstore-level'
import { LevelDatastore } from 'datastore-level'
import type { HeliaInit } from 'helia'
import type { Libp2pOptions } from 'libp2p'
import { base32upper } from 'multiformats/bases/base32'
import type { CID } from 'multiformats/cid'
import { log } from '../util/log.ts'
import { getBlock } from './blocks.ts'
import { coalescingEncrypter } from './coalesce.ts'
import { P2PError, P2PErrorCode, notStarted } from './errors.ts'
import { localPins } from './local-pins.ts'
import type { DagSource, LocalPins, PinRecords } from './local-pins.ts'

/** kad-dht protocol of the tokenim network (kept apart from the public IPFS DHT). */
export const DHT_PROTOCOL = '/tokenim/kad/1.0.0'
/** Listen address used when none is given: loopback only, random port. */
export const DEFAULT_LISTEN = ['/ip4/127.0.0.1/tcp/0']
/** multihash code of identity "hashes" (the bytes inline in the CID; Helia never stores them) */
const IDENTITY_HASH = 0x00
/** Default timeout of dial and dialProtocol. */
export const DEFAULT_DIAL_TIMEOUT_MS = 10_000
/** How often, while we have no connection at all, the bootstrap peers are dialled again. */
export const DEFAULT_BOOTSTRAP_REDIAL_MS = 30_000

/** The libp2p services every tokenim node runs. */
export interface P2PServices extends Record<string, unknown> {
  identify: Identify
  identifyPush: IdentifyPush
  ping: Ping
  dht: KadDHT
}

export type P2PLibp2p = Libp2p<P2PServices>
export type P2PHelia = HeliaWithLibp2p<P2PServices>

export interface DhtRecordHooks {
  /** throws if `value` is not acceptable under `key` */
  validator: ValidateFn
  /** index of the best of several values for one key */
  selector: SelectFn
}

export interface P2PNodeInit {
  /** the device key (libp2p Ed25519); it gives the node its peer id */
  privateKey: PrivateKey
  /** `<dataDir>/blocks` and `<dataDir>/datastore` hold Helia's blocks and libp2p/Helia state */
  dataDir: string
  /** listen multiaddrs (default loopback, random port; a daemon passes `/ip4/0.0.0.0/tcp/0`) */
  listen?: string[]
  /** addresses to announce instead of the listen addresses (e.g. a port-forwarded public address) */
  announce?: string[]
  /** bootstrap peers: multiaddrs ending in `/p2p/<peerId>` */
  bootstrap?: string[]
  /** discover peers on the LAN with mDNS (default false) */
  mdns?: boolean
  /**
   * validator and selector for DHT keys in the `tokenim` namespace. Default: the wallet-signed
   * device record rules of src/identity. Every node must run the same rules.
   */
  dhtRecord?: DhtRecordHooks
  /** connection limits */
  maxConnections?: number
  /** how often to re-dial the bootstrap peers while we have no connection (ms, default 30 s) */
  bootstrapRedialMs?: number
  /**
   * run the DHT as a client only (default false): it queries others but does not answer, and peers do
   * not add it to their routing tables (a short-lived node, e.g. the one a restore fetches with)
   */
  dhtClientMode?: boolean
  /**
   * false: a node without libp2p (no listening, no peers, no DHT), for a one-shot command that only needs
   * this device's stores — the level blockstore and datastore, Helia's blockstore and pins (a backup that
   * asks no replica). The network packages are then not loaded at all. Default true.
   */
  network?: boolean
}

export interface P2PNodeEvents {
  /** a connection to a peer opened (first connection) */
  'peer:connect': [PeerId]
  /** the last connection to a peer closed */
  'peer:disconnect': [PeerId]
  /** identify finished for a peer: its protocols and listen addresses are known */
  'peer:identify': [{ peerId: PeerId, protocols: string[], multiaddrs: Multiaddr[] }]
  /** our own dialable addresses changed */
  'addresses': [Multiaddr[]]
}

export interface DialOptions extends AbortOptions {
  /** ms; default {@link DEFAULT_DIAL_TIMEOUT_MS}, ignored when a signal is given */
  timeoutMs?: number
}

/**
 * Batched writes straight into the node's level blockstore, for a writer that makes many new blocks at
 * once (a backup). Helia's put costs per block a GC read lock, a `has`, a bitswap announce and its own
 * level put; these are a `has` and one level batch per call. Skipped, on purpose: the announce (it
 * tells peers that asked for a block that it has arrived — nobody asks for the blocks of a version whose
 * root is not published yet; the writer publishes the root after the pin) and the GC lock (a put is not
 * protected from GC between the put and the pin either; tokenim never runs Helia's GC).
 */
export interface LocalBlocks {
  has: (cid: CID) => Promise<boolean>
  /** whether each block is stored, in one level read (no block is read into memory) */
  hasMany: (cids: CID[]) => Promise<boolean[]>
  /** write the blocks in one atomic level batch (identity-hash CIDs are skipped, as Helia does) */
  putBatch: (blocks: Array<{ cid: CID, bytes: Uint8Array }>) => Promise<void>
  /**
   * a stored block's bytes (unchecked), undefined when it is not stored; one level read, synchronous when
   * level can (an identity-hash CID gives its digest). Never the network.
   */
  get: (cid: CID) => Uint8Array | undefined | Promise<Uint8Array | undefined>
}

/** A small key-value area of the node's level datastore under a prefix of its own ({@link P2PNode.localKv}). */
export interface LocalKv {
  /** the value, or undefined when there is none */
  get: (key: string) => Promise<Uint8Array | undefined>
  /** write the entries in one atomic level batch */
  putMany: (entries: Array<[string, Uint8Array]>) => Promise<void>
}

/** Helia's pin records: the pins themselves and the per-block records (helia/src/pins.ts) */
const PIN_PREFIXES = ['/pin/', '/pinned-block/']

/**
 * Helia's datastore (level), able to hold the writes of Helia's pin records during a stretch of work
 * in memory and write them as one level batch at its end ({@link BatchingDatastore.batched}); reads and
 * `has` see the held writes. Other keys (peer store, DHT) are never held.
 */
type Key = Parameters<LevelDatastore['put']>[0]

function isPinKey (key: string): boolean {
  return PIN_PREFIXES.some(p => key.startsWith(p))
}

class BatchingDatastore extends LevelDatastore {
  /** held writes by key (null: a delete); undefined outside a batched stretch */
  private held?: Map<string, Uint8Array | null>
  private depth = 0
  /** held writes in batches being written, oldest first (reads see them until they land) */
  private readonly flushing: Array<Map<string, Uint8Array | null>> = []
  /** settles when the last batch of held writes has been written (or failed) */
  private flushed: Promise<void> = Promise.resolve()

  override async put (key: Key, value: Uint8Array, options?: AbortOptions): Promise<Key> {
    const k = key.toString()
    if (!isPinKey(k)) return await super.put(key, value, options)
    if (this.held === undefined) {
      // after the batches being written (they must not land over it)
      await this.flushed
      return await super.put(key, value, options)
    }
    options?.signal?.throwIfAborted()
    this.held.set(k, value)
    return key
  }

  override async get (key: Key, options?: AbortOptions): Promise<Uint8Array> {
    const v = this.heldOrSync(key)
    if (v === undefined) return await super.get(key, options)
    if (v === null) throw Object.assign(new Error('Not Found'), { name: 'NotFoundError' })
    return v
  }

  override async has (key: Key, options?: AbortOptions): Promise<boolean> {
    const v = this.heldOrSync(key)
    return v === undefined ? await super.has(key, options) : v !== null
  }

  /**
   * a held write (null: a held delete, which hides what is on disk), else one in a batch being written,
   * else {@link readSync}
   */
  private heldOrSync (key: Key): Uint8Array | null | undefined {
    const k = key.toString()
    if (this.held?.has(k) === true) return this.held.get(k)
    for (let i = this.flushing.length - 1; i >= 0; i--) if (this.flushing[i].has(k)) return this.flushing[i].get(k)
    return this.readSync(key)
  }

  /**
   * A read without the thread-pool round trip (classic-level's getSync: a few µs for the small records kept
   * here — pins, peer store, DHT — where an async get costs ~0.1 ms of this thread's CPU); null when absent,
   * undefined when the database cannot read synchronously (or is not open)
   */
  private readSync (key: Key): Uint8Array | null | undefined {
    if ((this.db.supports as { getSync?: boolean }).getSync !== true || this.db.status !== 'open') return undefined
    try {
      return this.db.getSync(key.toString()) ?? null
    } catch {
      return undefined // the async path reports it
    }
  }

  override async delete (key: Key, options?: AbortOptions): Promise<void> {
    const k = key.toString()
    if (!isPinKey(k)) return await super.delete(key, options)
    if (this.held === undefined) {
      await this.flushed
      return await super.delete(key, options)
    }
    this.held.set(k, null)
  }

  /**
   * Run `fn` with the puts/deletes of pin records held in memory, then write them in one atomic level
   * batch (also when `fn` fails: what it wrote stays as Helia left it). Nested calls join the outer stretch.
   */
  async batched<T> (fn: () => Promise<T>): Promise<T> {
    this.held ??= new Map()
    this.depth++
    try {
      return await fn()
    } finally {
      if (--this.depth === 0) {
        const held = this.held
        this.held = undefined
        if (held.size > 0) {
          // reads see these records until they are on disk, and batches land in the order they were made
          this.flushing.push(held)
          const previous = this.flushed
          const write = (async () => {
            await previous
            // synced, like the blocks: the pin records of a backup are on disk before it is anchored
            await this.db.batch([...held].map(([key, value]) => value === null ? { type: 'del' as const, key } : { type: 'put' as const, key, value }), { sync: true })
          })()
          this.flushed = write.catch(() => {})
          try {
            await write
          } finally {
            this.flushing.splice(this.flushing.indexOf(held), 1)
          }
        }
      }
    }
  }

  /**
   * {@link PinRecords.update}: `fn` reads and writes pin records synchronously (nothing else runs
   * meanwhile) in a held stretch, written as one synced batch at its end; when it throws, nothing it
   * wrote is kept. Needs level's getSync ({@link canReadSync}).
   */
  async updatePinRecords (fn: Parameters<PinRecords['update']>[0]): Promise<void> {
    await this.batched(async () => {
      // all or nothing: what fn wrote is held only once it returns
      const writes = new Map<string, Uint8Array | null>()
      fn((key) => {
        const v = writes.has(key) ? writes.get(key) : this.heldOrSync(key as unknown as Key)
        if (v === undefined) throw new Error('the datastore cannot read synchronously')
        return v ?? undefined
      }, (key, value) => {
        if (!isPinKey(key)) throw new Error(`not a pin record: ${key}`)
        writes.set(key, value)
      })
      const held = this.held as Map<string, Uint8Array | null>
      for (const [key, value] of writes) held.set(key, value)
    })
  }

  /** whether level can read synchronously (classic-level's getSync, the database open) */
  canReadSync (): boolean {
    return (this.db.supports as { getSync?: boolean }).getSync === true && this.db.status === 'open'
  }
}

/** What `dial`/`dialProtocol` accept: a PeerId, a peer id string, a Multiaddr or a multiaddr string. */
export type DialTarget = PeerId | Multiaddr | string

type State = 'new' | 'starting' | 'started' | 'stopping' | 'stopped'

/**
 * A tokenim device's network node: libp2p + Helia + level stores, started and stopped together.
 * A node starts once; after `stop()` make a new one (with the same data dir) to run again.
 */
export class P2PNode {
  readonly peerId: PeerId
  readonly events = new EventEmitter<P2PNodeEvents>()
  readonly helia: P2PHelia
  readonly dataDir: string

  private readonly blockstore: LevelBlockstore
  private readonly datastore: BatchingDatastore
  private readonly handlers = new Map<string, { handler: StreamHandler, options?: StreamHandlerOptions }>()
  private readonly bootstrapList: string[]
  private readonly bootstrapRedialMs: number
  private readonly log = log('p2p:node')
  private state: State = 'new'
  private stopping?: Promise<void>
  private redialTimer?: NodeJS.Timeout
  private readonly detach: Array<() => void> = []
  private readonly network: boolean

  /** Use {@link createP2PNode}. */
  constructor (init: P2PNodeInit, helia: P2PHelia, blockstore: LevelBlockstore, datastore: BatchingDatastore) {
    this.peerId = peerIdFromPrivateKey(init.privateKey)
    this.dataDir = init.dataDir
    this.helia = helia
    this.blockstore = blockstore
    this.datastore = datastore
    this.bootstrapList = init.bootstrap ?? []
    this.bootstrapRedialMs = init.bootstrapRedialMs ?? DEFAULT_BOOTSTRAP_REDIAL_MS
    this.network = init.network !== false
  }

  get status (): State {
    return this.state
  }

  /** The libp2p node. Throws `P2P_NOT_STARTED` before `start()` (Helia creates it when it starts). */
  get libp2p (): P2PLibp2p {
    if (this.state !== 'started' && this.state !== 'stopping') throw notStarted()
    if (!this.network) throw offline()
    return this.helia.libp2p
  }

  /** Open the stores, start libp2p and Helia, register the stream handlers given so far. */
  async start (): Promise<void> {
    if (this.state === 'started') return
    if (this.state !== 'new') {
      throw new P2PError(P2PErrorCode.P2P_START_FAILED, `a ${this.state} node cannot be started again; create a new one`, { state: this.state })
    }
    this.state = 'starting'
    try {
      await mkdir(this.dataDir, { recursive: true, mode: 0o700 })
      await this.blockstore.open()
      await this.datastore.open()
      await this.helia.start()
    } catch (err) {
      this.state = 'started' // let stop() release whatever opened
      await this.stop().catch(() => {})
      throw new P2PError(P2PErrorCode.P2P_START_FAILED, `the p2p node could not start: ${(err as Error).message}`, { dataDir: this.dataDir }, { cause: err })
    }
    this.state = 'started'
    if (!this.network) {
      this.log('started %p without network', this.peerId)
      return
    }
    const libp2p = this.helia.libp2p
    const { DAG_PROTOCOL, DAG_STREAMS_PER_CONNECTION, serveDagStream } = await import('./dag-stream.ts')
    // whole DAGs from our blockstore in one stream (dag-stream.ts)
    await libp2p.handle(DAG_PROTOCOL, (stream) => { void serveDagStream(stream, async (cids) => await this.localBlocksOf(cids)) }, { maxInboundStreams: DAG_STREAMS_PER_CONNECTION })
    for (const [protocol, { handler, options }] of this.handlers) {
      await libp2p.handle(protocol, handler, options)
    }
    this.forward(libp2p)
    this.scheduleRedial()
    this.log('started %p on %s', this.peerId, this.multiaddrs().map(String).join(', '))
  }

  /**
   * Close streams and connections, stop libp2p and Helia, close the level stores, clear timers.
   * Idempotent; concurrent calls share one shutdown.
   */
  async stop (): Promise<void> {
    if (this.state === 'new') {
      this.state = 'stopped'
      return
    }
    if (this.stopping != null) return await this.stopping
    if (this.state === 'stopped') return
    this.stopping = this.doStop()
    await this.stopping
  }

  private async doStop (): Promise<void> {
    this.state = 'stopping'
    clearTimeout(this.redialTimer)
    this.redialTimer = undefined
    for (const off of this.detach.splice(0)) off()
    const errors: unknown[] = []
    try {
      await this.helia.stop()
    } catch (err) {
      errors.push(err)
    }
    for (const store of [this.blockstore, this.datastore]) {
      try {
        await store.close()
      } catch (err) {
        errors.push(err)
      }
    }
    this.state = 'stopped'
    this.events.removeAllListeners()
    if (errors.length > 0) this.log.error('errors while stopping: %o', errors.map(e => (e as Error).message))
    this.log('stopped %p', this.peerId)
  }

  /** Our dialable addresses, each ending in `/p2p/<our peer id>`. Empty when not started. */
  multiaddrs (): Multiaddr[] {
    if (this.state !== 'started' || !this.network) return []
    return this.helia.libp2p.getMultiaddrs()
  }

  /** Peers we currently have a connection to. */
  connectedPeers (): PeerId[] {
    if (this.state !== 'started' || !this.network) return []
    return this.helia.libp2p.getPeers()
  }

  /** Open (or reuse) a connection. Errors become `DIAL_FAILED`. */
  async dial (target: DialTarget, options: DialOptions = {}): Promise<Connection> {
    const libp2p = this.requireNetwork()
    const to = parseDialTarget(target)
    try {
      return await libp2p.dial(to, { signal: options.signal ?? AbortSignal.timeout(options.timeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS) })
    } catch (err) {
      throw dialFailed(to, err)
    }
  }

  /** Open a stream for `protocol` on a (new or existing) connection. Errors become `DIAL_FAILED`. */
  async dialProtocol (target: DialTarget, protocol: string | string[], options: DialOptions = {}): Promise<Stream> {
    const libp2p = this.requireNetwork()
    const to = parseDialTarget(target)
    try {
      return await libp2p.dialProtocol(to, protocol, { signal: options.signal ?? AbortSignal.timeout(options.timeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS) })
    } catch (err) {
      throw dialFailed(to, err, protocol)
    }
  }

  /**
   * Register a stream handler (libp2p 3: `(stream, connection) => void | Promise<void>`). Works before
   * `start()` too: the handler is registered when the node starts.
   */
  async handle (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions): Promise<void> {
    this.handlers.set(protocol, { handler, options })
    if (this.state === 'started' && this.network) await this.helia.libp2p.handle(protocol, handler, options)
  }

  async unhandle (protocol: string): Promise<void> {
    this.handlers.delete(protocol)
    if (this.state === 'started' && this.network) await this.helia.libp2p.unhandle(protocol)
  }

  /** Batched local writes into Helia's blockstore ({@link LocalBlocks}); `P2P_NOT_STARTED` before `start()`. */
  localBlocks (): LocalBlocks {
    this.requireStarted()
    const bs = this.blockstore
    return {
      has: async (cid) => {
        // synchronous when level can (see BatchingDatastore.readSync)
        if ((bs.db.supports as { getSync?: boolean }).getSync === true && bs.db.status === 'open') return bs.db.getSync(levelKey(cid)) !== undefined
        return await bs.has(cid)
      },
      hasMany: async (cids) => {
        if (this.state !== 'started') throw notStarted()
        const got = await bs.db.hasMany(cids.map(levelKey))
        return cids.map((cid, i) => cid.multihash.code === IDENTITY_HASH || got[i])
      },
      putBatch: async (blocks) => {
        if (this.state !== 'started') throw notStarted()
        const batch = bs.db.batch()
        for (const { cid, bytes } of blocks) {
          if (cid.multihash.code === IDENTITY_HASH) continue
          batch.put(levelKey(cid), bytes)
        }
        // synced: a backup is anchored right after its blocks are written, and an anchor naming blocks a
        // power cut took back would be a backup that can never be restored from this device
        await batch.write({ sync: true })
      },
      get: (cid) => {
        if (this.state !== 'started') throw notStarted()
        if (cid.multihash.code === IDENTITY_HASH) return cid.multihash.digest
        // synchronous when level can: no thread-pool round trip, and none of Helia's per-block work (a GC
        // read lock, a queue job, a has and a get, promises)
        if ((bs.db.supports as { getSync?: boolean }).getSync === true && bs.db.status === 'open') return bs.db.getSync(levelKey(cid))
        return bs.db.get(levelKey(cid))
      }
    }
  }

  /**
   * A key-value area of this node's datastore under `/tokenim/<name>/` (never a Helia or libp2p key);
   * `P2P_NOT_STARTED` before `start()`. Keys are plain text (e.g. hex).
   */
  localKv (name: string): LocalKv {
    this.requireStarted()
    if (!/^[a-z][a-z0-9-]*$/.test(name)) throw new P2PError(P2PErrorCode.INVALID_P2P_ARGUMENT, 'a local key-value area needs a lower-case name', { name })
    const db = this.datastore.db
    const prefix = `/tokenim/${name}/`
    return {
      get: async (key) => {
        if (this.state !== 'started') throw notStarted()
        // synchronous when level can (a few µs, no thread-pool round trip: one read per segment of a backup)
        const v = (db.supports as { getSync?: boolean }).getSync === true && db.status === 'open' ? db.getSync(prefix + key) : await db.get(prefix + key)
        return v === undefined ? undefined : new Uint8Array(v)
      },
      putMany: async (entries) => {
        if (this.state !== 'started') throw notStarted()
        if (entries.length > 0) await db.batch(entries.map(([key, value]) => ({ type: 'put' as const, key: prefix + key, value })))
      }
    }
  }

  /** Blocks from the local blockstore (never the network), in order; undefined for a block it lacks. One level read. */
  private async localBlocksOf (cids: CID[]): Promise<Array<Uint8Array | undefined>> {
    if (this.state !== 'started') return cids.map(() => undefined)
    return await this.blockstore.db.getMany(cids.map(levelKey))
  }

  /**
   * Run `fn` (e.g. `helia.pins.add`, which reads and writes a pin record per block) with the writes of
   * Helia's pin records held in memory and written as one atomic level batch when it ends (reads see them
   * meanwhile). Helia still makes every record: the pinned DAG survives GC and is listed as before.
   */
  async datastoreBatch<T> (fn: () => Promise<T>): Promise<T> {
    this.requireStarted()
    return await this.datastore.batched(fn)
  }

  /**
   * Pins of whole DAGs written straight into Helia's pin records in one synced batch (src/p2p/local-pins.ts):
   * the DAG's linked blocks from the caller's memory or one level read per level, raw blocks never read.
   * The same records as `helia.pins.add`/`rm`, so Helia lists the pins and `gc()` keeps their blocks.
   * Undefined when level cannot read synchronously; `P2P_NOT_STARTED` before `start()`.
   */
  localPins (): LocalPins | undefined {
    this.requireStarted()
    if (!this.datastore.canReadSync()) return undefined
    const bs = this.blockstore
    const helia = this.helia
    const source: DagSource = {
      getMany: async (cids) => {
        if (this.state !== 'started') throw notStarted()
        return await bs.db.getMany(cids.map(levelKey))
      },
      hasMany: async (cids) => {
        if (this.state !== 'started') throw notStarted()
        return await bs.db.hasMany(cids.map(levelKey))
      },
      get: async (cid, options) => await getBlock(helia.blockstore, cid, options),
      getCodec: async (code) => await helia.getCodec(code)
    }
    const records: PinRecords = { update: async (fn) => { await this.datastore.updatePinRecords(fn) } }
    return localPins(source, records, async (root, options) => {
      let n = 0
      for await (const _ of helia.pins.rm(root, options)) n++
      return n
    })
  }

  /** Number of peers in the DHT routing table (0 when not started). Useful to wait for readiness. */
  routingTableSize (): number {
    if (this.state !== 'started' || !this.network) return 0
    const dht = this.helia.libp2p.services.dht as KadDHT & { routingTable?: { size: number } }
    return dht.routingTable?.size ?? 0
  }

  private requireStarted (): void {
    if (this.state !== 'started') throw notStarted()
  }

  private requireNetwork (): P2PLibp2p {
    this.requireStarted()
    if (!this.network) throw offline()
    return this.helia.libp2p
  }

  private forward (libp2p: P2PLibp2p): void {
    const on = <K extends keyof Libp2pEvents>(name: K, fn: (evt: Libp2pEvents[K]) => void): void => {
      libp2p.addEventListener(name, fn)
      this.detach.push(() => { libp2p.removeEventListener(name, fn) })
    }
    on('peer:connect', (evt) => { this.events.emit('peer:connect', evt.detail) })
    on('peer:disconnect', (evt) => {
      this.events.emit('peer:disconnect', evt.detail)
      if (libp2p.getConnections().length === 0) this.scheduleRedial()
    })
    on('peer:identify', (evt) => {
      const { peerId, protocols, listenAddrs } = evt.detail
      this.events.emit('peer:identify', { peerId, protocols, multiaddrs: listenAddrs })
    })
    on('self:peer:update', () => { this.events.emit('addresses', this.multiaddrs()) })
  }

  /** While we have no connection, dial the bootstrap peers again now and then (the bootstrap module dials once). */
  private scheduleRedial (): void {
    if (this.bootstrapList.length === 0 || this.redialTimer != null || this.state !== 'started') return
    this.redialTimer = setTimeout(() => {
      this.redialTimer = undefined
      if (this.state !== 'started') return
      const libp2p = this.helia.libp2p
      if (libp2p.getConnections().length === 0) {
        for (const addr of this.bootstrapList) {
          libp2p.dial(multiaddr(addr), { signal: AbortSignal.timeout(DEFAULT_DIAL_TIMEOUT_MS) }).catch((err: Error) => {
            this.log('bootstrap redial to %s failed: %s', addr, err.message)
          })
        }
        this.scheduleRedial()
      }
    }, this.bootstrapRedialMs)
    this.redialTimer.unref()
  }
}

/**
 * Build a node (nothing is opened or started yet; call `start()`).
 * Throws `INVALID_P2P_ARGUMENT` for unparsable listen/bootstrap addresses.
 */
export async function createP2PNode (init: P2PNodeInit): Promise<P2PNode> {
  const listen = init.listen ?? DEFAULT_LISTEN
  const bootstrapList = init.bootstrap ?? []
  for (const addr of [...listen, ...(init.announce ?? [])]) parseMultiaddr(addr)
  for (const addr of bootstrapList) {
    if (parseMultiaddr(addr).getComponents().findLast(c => c.name === 'p2p') == null) {
      throw new P2PError(P2PErrorCode.INVALID_P2P_ARGUMENT, `bootstrap address must end in /p2p/<peer id>: ${addr}`, { addr })
    }
  }
  // level would create these 0755; blocks and pins are private history
  for (const dir of ['blocks', 'datastore']) await mkdir(join(init.dataDir, dir), { recursive: true, mode: 0o700 })
  const blockstore = new LevelBlockstore(join(init.dataDir, 'blocks'), BLOCKS_LEVEL_OPTIONS)
  const datastore = new BatchingDatastore(join(init.dataDir, 'datastore'))

  const helia = init.network === false ? await localHelia({ blockstore, datastore, codecs: [dagCbor] }) : await networkHelia(init, blockstore, datastore)
  return new P2PNode(init, helia, blockstore, datastore)
}

/** Helia with libp2p and bitswap: the network packages are loaded here, on use */
async function networkHelia (init: P2PNodeInit, blockstore: LevelBlockstore, datastore: BatchingDatastore): Promise<P2PHelia> {
  const listen = init.listen ?? DEFAULT_LISTEN
  const bootstrapList = init.bootstrap ?? []
  const [
    { noise }, { yamux }, { withBitswap }, { withLibp2pLight }, { bootstrap }, { identify, identifyPush }, { kadDHT, passthroughMapper },
    { mdns }, { ping }, { tcp }, { createHeliaLight }, { deviceRecordDhtSelector, deviceRecordDhtValidator, DEVICE_RECORD_DHT_NAMESPACE }
  ] = await Promise.all([
    import('@chainsafe/libp2p-noise'), import('@chainsafe/libp2p-yamux'), import('@helia/bitswap'), import('@helia/libp2p'), import('@libp2p/bootstrap'),
    import('@libp2p/identify'), import('@libp2p/kad-dht'), import('@libp2p/mdns'), import('@libp2p/ping'), import('@libp2p/tcp'), import('helia'),
    import('./identity.ts')
  ])
  const hooks = init.dhtRecord ?? { validator: deviceRecordDhtValidator, selector: deviceRecordDhtSelector }
  const peerDiscovery: NonNullable<Libp2pOptions['peerDiscovery']> = []
  if (bootstrapList.length > 0) peerDiscovery.push(bootstrap({ list: bootstrapList, timeout: 0 }))
  if (init.mdns === true) peerDiscovery.push(mdns())

  const helia = withBitswap(withLibp2pLight(createHeliaLight({ blockstore, datastore, codecs: [dagCbor] }), {
    privateKey: init.privateKey,
    addresses: { listen, announce: init.announce },
    transports: [tcp()],
    // each send on a connection in one socket write (coalesce.ts)
    connectionEncrypters: [coalescingEncrypter(noise())],
    streamMuxers: [yamux()],
    peerDiscovery,
    // a ping slower than this (adaptive, from 10 s) counts as a dead connection; libp2p's 5 s minimum
    // is tight for a phone or a loaded 2-core machine running a backup
    connectionMonitor: { pingTimeout: { minTimeout: 10_000 } },
    connectionManager: {
      maxConnections: init.maxConnections ?? 300,
      dialTimeout: DEFAULT_DIAL_TIMEOUT_MS,
      maxParallelDials: 50,
      inboundConnectionThreshold: 20
    },
    services: {
      identify: identify(),
      identifyPush: identifyPush(),
      // libp2p's connection monitor pings every connection on this protocol every 10 s and aborts the
      // connection when a ping fails; with the default one outbound ping stream per connection, a ping
      // still closing on a busy machine made the next one fail (TooManyOutboundProtocolStreams) and
      // dropped a healthy connection mid-transfer (seen in the bench's replica pin and a daemon test)
      ping: ping({ maxOutboundStreams: 4, maxInboundStreams: 8 }),
      dht: kadDHT({
        protocol: DHT_PROTOCOL,
        clientMode: init.dhtClientMode === true,
        peerInfoMapper: passthroughMapper,
        validators: { [DEVICE_RECORD_DHT_NAMESPACE]: hooks.validator },
        selectors: { [DEVICE_RECORD_DHT_NAMESPACE]: hooks.selector }
      })
    }
  }))
  return helia
}

/**
 * Helia without libp2p (a node created with `network: false`): what `createHeliaLight` makes, from Helia's
 * own module, because the package's entry point also loads libp2p, bitswap and HTTP (~60 MB of RSS);
 * Helia's entry point when that module cannot be found
 */
async function localHelia (init: HeliaInit): Promise<P2PHelia> {
  try {
    const entry = import.meta.resolve('helia')
    const [{ Helia }, { name, version }] = await Promise.all([import(new URL('./helia.js', entry).href), import(new URL('./version.js', entry).href)]) as [{ Helia: new (init: HeliaInit & { name: string, version: string }) => P2PHelia }, { name: string, version: string }]
    if (typeof Helia === 'function' && typeof name === 'string' && typeof version === 'string') return new Helia({ name, version, ...init })
  } catch (err) {
    log('p2p:node')('Helia\'s own module did not load (%s): its entry point instead', (err as Error).message)
  }
  const { createHeliaLight } = await import('helia')
  return createHeliaLight(init) as unknown as P2PHelia
}

function offline (): P2PError {
  return new P2PError(P2PErrorCode.P2P_NOT_STARTED, 'this node runs without network (network: false)')
}

/**
 * LevelDB keeps every table file in its table cache memory-mapped, and the pages read stay in the RSS
 * while the file is open: a backup that writes a CAR file reads every block of the version back (~90 MB at
 * 1,000,000 messages). Like the store (src/store/store.ts), the blocks database keeps at most 64 tables
 * open (74 files, LevelDB's minimum) of at most ~1 MiB (its smallest table size): ~68 MB of mapped pages
 * at most, one table open more often on reads across a large blockstore.
 */
const BLOCKS_LEVEL_OPTIONS = { maxOpenFiles: 74, maxFileSize: 1024 * 1024 }

/**
 * blockstore-level's key for a block (with its default base, which createP2PNode keeps): '/' +
 * base32upper of the multihash, what its own put and get use (a test reads such blocks back through Helia)
 */
function levelKey (cid: CID): string {
  return `/${base32upper.encoder.encode(cid.multihash.bytes)}`
}

function parseMultiaddr (addr: string): Multiaddr {
  try {
    return multiaddr(addr)
  } catch (err) {
    throw new P2PError(P2PErrorCode.INVALID_P2P_ARGUMENT, `not a multiaddr: ${addr}`, { addr }, { cause: err })
  }
}

function parseDialTarget (target: DialTarget): PeerId | Multiaddr {
  if (typeof target !== 'string') return target
  if (target.startsWith('/')) return parseMultiaddr(target)
  try {
    return peerIdFromString(target)
  } catch (err) {
    throw new P2PError(P2PErrorCode.INVALID_P2P_ARGUMENT, `not a peer id or multiaddr: ${target}`, { target }, { cause: err })
  }
}

function dialFailed (to: PeerId | Multiaddr, err: unknown, protocol?: string | string[]): P2PError {
  const target = isMultiaddr(to) ? to.toString() : to.toString()
  return new P2PError(P2PErrorCode.DIAL_FAILED, `could not reach ${target}${protocol != null ? ` for ${String(protocol)}` : ''}: ${(err as Error)?.message ?? String(err)}`,
    { target, protocol, reason: (err as Error)?.name }, { cause: err })
}
