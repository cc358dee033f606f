/**
 * Helia 7 blockstores (interface-blockstore 7) return a block as a generator of chunks. These helpers
 * give it back as one Uint8Array.
 */
import type { AbortOptions } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import { concat } from 'uint8arrays/concat'

/** The narrow part of a (Helia) blockstore that {@link getBlock} needs. */
export interface BlockGetter<Options = AbortOptions> {
  get: (cid: CID, options?: Options) => Generator<Uint8Array> | AsyncGenerator<Uint8Array>
}

/**
 * Read a whole block. With Helia's blockstore this fetches it from peers (bitswap) when it is not
 * local, unless `{ offline: true }`; pass a `signal` to bound the wait.
 */
export async function getBlock<Options extends AbortOptions> (blockstore: BlockGetter<Options>, cid: CID, options?: Options): Promise<Uint8Array> {
  const chunks: Uint8Array[] = []
  for await (const chunk of blockstore.get(cid, options)) chunks.push(chunk)
  const block = chunks.length === 1 ? chunks[0] : concat(chunks)
  // a plain Uint8Array (level hands out Buffers)
  return new Uint8Array(block.buffer, block.byteOffset, block.byteLength)
}
