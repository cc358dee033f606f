/**
 * Helia 7 blockstores (interface-blockstore 7) return a block as a generator of chunks; older stores
 * return a promise of bytes. These helpers give it back as one Uint8Array.
 */
import type { AbortOptions } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import { concat } from 'uint8arrays/concat'

/** What a blockstore's `get` may hand back: bytes, a promise of bytes, or (async) chunks. */
export type BlockResult = Uint8Array | Promise<Uint8Array> | Iterable<Uint8Array> | AsyncIterable<Uint8Array>

/** The narrow part of a (Helia) blockstore that {@link getBlock} needs. */
export interface BlockGetter<Options = AbortOptions> {
  get: (cid: CID, options?: Options) => BlockResult
}

/**
 * Read a whole block. With Helia's blockstore this fetches it from peers (bitswap) when it is not
 * local, unless `{ offline: true }`; pass a `signal` to bound the wait.
 */
export async function getBlock<Options extends AbortOptions> (blockstore: BlockGetter<Options>, cid: CID, options?: Options): Promise<Uint8Array> {
  const got = blockstore.get(cid, options)
  let block: Uint8Array
  if (got instanceof Uint8Array) {
    block = got
  } else if (typeof (got as Promise<Uint8Array>).then === 'function') {
    block = await (got as Promise<Uint8Array>)
  } else {
    const chunks: Uint8Array[] = []
    for await (const chunk of got as AsyncIterable<Uint8Array>) chunks.push(chunk)
    block = chunks.length === 1 ? chunks[0] : concat(chunks)
  }
  // a plain Uint8Array (level hands out Buffers)
  return block.constructor === Uint8Array ? block : new Uint8Array(block.buffer, block.byteOffset, block.byteLength)
}

/** A writer of block batches (a node's `localBlocks()` fits). */
export interface BlockBatchWriter {
  putBatch: (blocks: Array<{ cid: CID, bytes: Uint8Array }>) => Promise<void>
}

/**
 * Blocks arriving one by one (a DAG stream) written in batches of about `maxBytes`: `add` writes a batch
 * once that much is queued, `flush` writes what is left. One level batch per few MiB instead of a put each.
 */
export function blockBatcher (writer: BlockBatchWriter, maxBytes: number): { add: (cid: CID, bytes: Uint8Array) => Promise<void>, flush: () => Promise<void> } {
  let queued: Array<{ cid: CID, bytes: Uint8Array }> = []
  let queuedBytes = 0
  const flush = async (): Promise<void> => {
    if (queued.length === 0) return
    const blocks = queued
    queued = []
    queuedBytes = 0
    await writer.putBatch(blocks)
  }
  return {
    add: async (cid, bytes) => {
      queued.push({ cid, bytes })
      queuedBytes += bytes.length
      if (queuedBytes >= maxBytes) await flush()
    },
    flush
  }
}
