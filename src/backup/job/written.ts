/**
 * How a backup job writes its blocks: in level batches, and remembered so that pinning them does not read
 * them back.
 *
 * With the node's {@link LocalBlockWriter} (src/p2p `P2PNode.localBlocks()`), a put is a `has` (for the
 * builder's bytesNew) and a place in a queue, written as one atomic level batch per
 * {@link FLUSH_BYTES} and by {@link WrittenBlocks.flush}, which the job awaits before it pins: Helia's put
 * per block (GC read lock, `has`, bitswap announce, level put) cost more than the level write itself.
 * Batches are written in the order the blocks were put, one after the other, and the builder puts every
 * segment before the manifest blocks and those before the root: a crash leaves no manifest without its
 * segments on disk, and an unpinned, unrecorded version is only garbage. Without a local writer (tests
 * that pass a plain blockstore) every put goes to the wrapped blockstore at once.
 *
 * `helia.pins.add(root)` walks the DAG to record a pin for every block under the root; its default walker
 * reads each block back through Helia's blockstore (a read lock, a `has` and a `get` in level, an async
 * queue job per block) only to find its links. The builder has just handed us every block of the version
 * that has links (the manifest's dag-cbor nodes, new or found stored), so these are kept (up to a budget)
 * and {@link WrittenBlocks.known} gives them to the node's bulk pin (`P2PNode.localPins()`, which never
 * reads raw blocks: they have no links), and {@link WrittenBlocks.walker} to `pins.add` where there is no
 * such pin (a depth-first walker, Helia's `walker` option, that reads only the blocks not kept). Either
 * way the pin records are Helia's: the pinned DAG survives GC and is listed by `helia.pins`.
 *
 * A block is kept only when its put resolved or found it stored (a failed put fails the build before
 * anything is pinned), so the walk never takes links from a block that is not in the blockstore.
 */
import type { GraphNode, GraphWalker, GraphWalkerComponents, GraphWalkerFactory, WalkOptions } from '@helia/interface'
import type { AbortOptions } from '@libp2p/interface'
import { createUnsafe } from 'multiformats/block'
import type { CID } from 'multiformats/cid'
import { blockWriteError } from '../blocks.ts'
import { blockKey, ownBytes } from '../car.ts'
import type { BlockStore } from '../blocks.ts'
import type { KnownBlocks } from '../../p2p/index.ts'

/** multicodec of raw blocks (segments, sealed boxes): no links */
const RAW = 0x55
/** Default bytes of written blocks kept for the pin walk (beyond it, blocks are read back). */
export const DEFAULT_WRITTEN_BYTES = 16 * 1024 * 1024
/** Queued bytes that make a level batch. */
export const FLUSH_BYTES = 4 * 1024 * 1024

/** Batched writes into the local blockstore (a running node's `p2p.localBlocks()` fits). */
export interface LocalBlockWriter {
  has: (cid: CID) => Promise<boolean>
  /** whether each block is stored, in one read (optional) */
  hasMany?: (cids: CID[]) => Promise<boolean[]>
  putBatch: (blocks: Array<{ cid: CID, bytes: Uint8Array }>) => Promise<void>
  /** a stored block's bytes, undefined when it is not stored, straight from the local store (optional) */
  get?: (cid: CID) => Uint8Array | undefined | Promise<Uint8Array | undefined>
}

type ProgressOptions = AbortOptions & { onProgress?: (evt: { type: string, detail?: unknown }) => void }

/** A blockstore wrapper that batches the puts (with a local writer) and remembers their bytes (up to a budget). */
export class WrittenBlocks implements BlockStore {
  private readonly inner: BlockStore
  private readonly local?: LocalBlockWriter
  private readonly budget: number
  private readonly blocks = new Map<string, Uint8Array>()
  private bytes = 0
  /** blocks put and not in a batch yet, in put order */
  private queue: Array<{ cid: CID, bytes: Uint8Array }> = []
  /** blocks put and not written yet (queued, or in the batch being written) */
  private queued = new Set<string>()
  /**
   * blocks this job put, or found stored: the pin does not ask level for them again (a level lookup reads
   * the table block holding the value: asking for every block just written mapped them all into memory)
   */
  private present = new Set<string>()
  private queuedBytes = 0
  /** the batch being written (batches go one after the other) */
  private writing: Promise<void> = Promise.resolve()

  constructor (inner: BlockStore, options: { local?: LocalBlockWriter, budgetBytes?: number } = {}) {
    this.inner = inner
    this.local = options.local
    this.budget = options.budgetBytes ?? DEFAULT_WRITTEN_BYTES
  }

  get (cid: CID, options?: AbortOptions): ReturnType<BlockStore['get']> {
    return this.inner.get(cid, options)
  }

  has (cid: CID, options?: AbortOptions): boolean | Promise<boolean> {
    const key = blockKey(cid)
    if (this.queued.has(key) || this.present.has(key)) return true
    // the local writer's has reads level directly (no Helia lock, synchronous when level can)
    const stored = this.local !== undefined ? this.local.has(cid) : this.inner.has(cid, options)
    return typeof stored === 'boolean' ? this.saw(key, stored) : stored.then(s => this.saw(key, s))
  }

  private saw (key: string, stored: boolean): boolean {
    if (stored) this.present.add(key)
    return stored
  }

  /** whether each block is stored (or queued here): the others in one read when the local writer can */
  async hasMany (cids: CID[], options?: AbortOptions): Promise<boolean[]> {
    const out = cids.map(cid => this.queued.has(blockKey(cid)))
    const ask = cids.filter((_, i) => !out[i])
    if (ask.length === 0) return out
    const got = this.local?.hasMany !== undefined ? await this.local.hasMany(ask) : await Promise.all(ask.map(async cid => await this.has(cid, options)))
    let j = 0
    return out.map((q, i) => q || this.saw(blockKey(cids[i]), got[j++]))
  }

  /**
   * Put a block. With a local writer it is queued (written by the next batch) and the put reports, like
   * Helia's, a `blocks:put:duplicate` or `blocks:put:blockstore:put` progress event.
   */
  async put (cid: CID, bytes: Uint8Array, options: ProgressOptions = {}): Promise<unknown> {
    if (this.local === undefined) {
      const r = await this.inner.put(cid, bytes, options)
      this.remember(cid, bytes)
      this.present.add(blockKey(cid))
      return r
    }
    options.signal?.throwIfAborted()
    // keys are blockKey(cid): a CID's text would cache a ~1.7 KB rope on every CID the builder keeps
    const key = blockKey(cid)
    if (this.queued.has(key) || this.blocks.has(key) || await this.local.has(cid)) {
      // stored already (a block of the previous version): the pin still walks its links
      this.remember(cid, bytes)
      this.present.add(key)
      options.onProgress?.({ type: 'blocks:put:duplicate', detail: cid })
      return cid
    }
    if (this.queued.has(key)) { // queued by a concurrent put meanwhile
      options.onProgress?.({ type: 'blocks:put:duplicate', detail: cid })
      return cid
    }
    // kept bytes own their memory: a dag-cbor node (a shard) is a view into a 64 KiB slab, and a queue of
    // 4 MiB of shards held ~110 MB of slabs at 1,000,000 messages
    const own = ownBytes(bytes)
    this.queue.push({ cid, bytes: own })
    this.queued.add(key)
    this.present.add(key)
    this.queuedBytes += bytes.length
    this.remember(cid, own)
    options.onProgress?.({ type: 'blocks:put:blockstore:put', detail: cid })
    if (this.queuedBytes >= FLUSH_BYTES) await this.flush()
    return cid
  }

  /** Write every queued block (one level batch); resolves when all earlier batches are written too. */
  async flush (): Promise<void> {
    const local = this.local
    if (local !== undefined && this.queue.length > 0) {
      const batch = this.queue
      this.queue = []
      this.queuedBytes = 0
      const previous = this.writing
      this.writing = (async () => {
        await previous
        try {
          await local.putBatch(batch)
        } catch (err) {
          // not written: nothing may vouch for these blocks (has(), the pin walk)
          for (const { cid } of batch) {
            this.queued.delete(blockKey(cid))
            this.present.delete(blockKey(cid))
            this.forget(blockKey(cid))
          }
          throw blockWriteError(err, batch[0].cid)
        }
        // written: level answers for them from now on
        for (const { cid } of batch) this.queued.delete(blockKey(cid))
      })()
    }
    await this.writing
  }

  /** keeps the bytes of a block with links (raw blocks have none: the pin never reads them) */
  private remember (cid: CID, bytes: Uint8Array): void {
    if (cid.code === RAW) return
    const key = blockKey(cid)
    if (!this.blocks.has(key) && this.bytes + bytes.length <= this.budget) {
      this.blocks.set(key, ownBytes(bytes))
      this.bytes += bytes.length
    }
  }

  private forget (key: string): void {
    const b = this.blocks.get(key)
    if (b === undefined) return
    this.blocks.delete(key)
    this.bytes -= b.length
  }

  /** The bytes of a block with links put through this wrapper (new or found stored), when it was kept. */
  written (cid: CID): Uint8Array | undefined {
    return this.blocks.get(blockKey(cid))
  }

  /** The kept blocks, for the node's bulk pin (`P2PNode.localPins().add(root, { known })`). */
  known (): KnownBlocks {
    return { bytes: (cid) => this.written(cid), has: (cid) => this.present.has(blockKey(cid)), done: () => { this.forgetKept() } }
  }

  /**
   * Drop the kept blocks and the record of which are stored (the pin's walk is done with them: up to
   * the budget's bytes and a key per block, held while the pin then writes its records); queued blocks
   * stay queued.
   */
  forgetKept (): void {
    this.blocks.clear()
    this.bytes = 0
    this.present = new Set()
  }

  /** Forget every block (after the pin, or after a failed build: queued blocks are then never written). */
  clear (): void {
    this.blocks.clear()
    this.bytes = 0
    this.queue = []
    this.queued = new Set()
    this.present = new Set()
    this.queuedBytes = 0
  }

  /** A walker for `helia.pins.add(root, { walker })`: depth-first, remembered blocks from memory. */
  walker (): GraphWalkerFactory {
    return (components) => new MemoryFirstWalker(components, this)
  }
}

class MemoryFirstWalker implements GraphWalker {
  private readonly components: GraphWalkerComponents
  private readonly written: WrittenBlocks

  constructor (components: GraphWalkerComponents, written: WrittenBlocks) {
    this.components = components
    this.written = written
  }

  /**
   * Every block under `cid` (the root first, then depth-first in link order), each once when the walk
   * is unbounded (Helia's own walker may visit a block linked twice twice; the pin it records is the
   * same). Honors `depth` and `includeChild` like Helia's walkers.
   */
  async * walk<T = unknown> (cid: CID, options: WalkOptions<T> = {}): AsyncGenerator<GraphNode<T>> {
    const maxDepth = options.depth ?? Infinity
    const seen = maxDepth === Infinity ? new Set<string>() : undefined
    const stack: Array<{ cid: CID, depth: number, path: CID[] }> = [{ cid, depth: 0, path: [cid] }]
    seen?.add(blockKey(cid))
    while (stack.length > 0) {
      options.signal?.throwIfAborted()
      const next = stack.pop() as { cid: CID, depth: number, path: CID[] }
      const bytes = this.written.written(next.cid) ?? await readAll(this.components.blockstore.get(next.cid, options))
      const block = createUnsafe({ cid: next.cid, bytes, codec: await this.components.getCodec(next.cid.code) })
      if (next.depth < maxDepth) {
        const children: CID[] = []
        for (const [, child] of block.links()) {
          if (options.includeChild?.(child, block) === false) continue
          if (seen !== undefined) {
            const key = blockKey(child)
            if (seen.has(key)) continue
            seen.add(key)
          }
          children.push(child)
        }
        for (let i = children.length - 1; i >= 0; i--) stack.push({ cid: children[i], depth: next.depth + 1, path: [...next.path, children[i]] })
      }
      yield { block, depth: next.depth, path: next.path } as unknown as GraphNode<T>
    }
  }
}

async function readAll (got: Uint8Array | Promise<Uint8Array> | Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  if (got instanceof Uint8Array) return got
  if (typeof (got as Promise<Uint8Array>).then === 'function') return await (got as Promise<Uint8Array>)
  const chunks: Uint8Array[] = []
  for await (const c of got as AsyncIterable<Uint8Array>) chunks.push(c)
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)
}
