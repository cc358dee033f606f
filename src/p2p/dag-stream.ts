/**
 * A whole DAG over one stream: `/tokenim/dag/1.0.0`.
 *
 * Bitswap moves a DAG block by block: a want per block, a level `has` + `get` per block on the
 * sender and a `has` + `put` on the receiver, events and abort signals per block, a want-list round trip
 * per level of the DAG. For a backup (hundreds to tens of thousands of blocks, all wanted) that per-block
 * work was most of a restore's fetch. Here the requester names a root and the peer answers with every
 * block under it that it holds locally, breadth-first, each block once, as entries
 * `varint(length) ‖ CID bytes ‖ block bytes` packed into length-prefixed frames of ~256 KiB, then
 * closes (the sender reads its store many keys at a time).
 *
 * Nothing the peer sends is trusted: the requester accepts a block only when its CID is the root or a
 * link of a block it already accepted, and only when the bytes hash to that CID (sha2-256; a block with
 * another hash function is skipped, with its subtree, for bitswap to fetch and check). Anything else
 * (an unasked-for block, a bad hash, a broken frame) ends the exchange with PROTOCOL_VIOLATION. Blocks
 * the peer does not have are simply not sent: the caller fetches whatever is still missing over bitswap
 * ({@link fetchDag}), which also covers peers that do not speak this protocol.
 *
 * Serving reads the node's own blockstore only (never the network), with backpressure (a requester that
 * stops reading stops the walk) and a time bound; a connection gets a few such streams at once. Like
 * bitswap, it serves any block the node holds to whoever asks (backup blocks are encrypted).
 *
 * @example
 * ```ts
 * const got = await fetchDagStream(node, peerId, root, { signal, onBlock: ({ cid, bytes }) => keep(cid, bytes) })
 * ```
 */
import type { AbortOptions, PeerId, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import { sha256 } from '../crypto/index.ts'
import { blockKey } from '../util/ipld.ts'
import { log } from '../util/log.ts'
import { P2PError, P2PErrorCode } from './errors.ts'
import { dagLinks } from './fetch-dag.ts'
import { encodeVarint, framed } from './frames.ts'

const logger = log('p2p:dag-stream')

/** The protocol id. */
export const DAG_PROTOCOL = '/tokenim/dag/1.0.0'
/** Largest block sent over it (bigger ones are left to bitswap). */
export const MAX_DAG_STREAM_BLOCK = 2 * 1024 * 1024
/** Default bound on serving one request. */
export const DEFAULT_DAG_SERVE_TIMEOUT_MS = 10 * 60_000
/** Streams of this protocol open at once on one connection (inbound). */
export const DAG_STREAMS_PER_CONNECTION = 4

/** a frame: up to FRAME_TARGET of entries, or one entry of the largest block (its CID and prefix in front) */
const MAX_FRAME = MAX_DAG_STREAM_BLOCK + 256
const SHA2_256 = 0x12
const IDENTITY = 0x00

/** Reads blocks from the serving node's own store, in order: undefined for a block it does not hold. */
export type LocalBlockRead = (cids: CID[]) => Promise<Array<Uint8Array | undefined>>

export interface DagStreamServeOptions {
  /** bound on one request (default {@link DEFAULT_DAG_SERVE_TIMEOUT_MS}) */
  timeoutMs?: number
  /** the links of a block (default {@link dagLinks}) */
  links?: (cid: CID, bytes: Uint8Array) => CID[]
}

/** Blocks read from the store at once (one read of many keys). */
const READ_BATCH = 64
/** A frame carries blocks until it holds about this many bytes. */
const FRAME_TARGET = 256 * 1024

/**
 * Answer one request on `stream`: every block under the asked root that `read` has, breadth-first. A
 * response frame holds one or more entries `varint(length) ‖ CID ‖ block`.
 */
export async function serveDagStream (stream: Stream, read: LocalBlockRead, options: DagStreamServeOptions = {}): Promise<void> {
  const links = options.links ?? dagLinks
  const signal = AbortSignal.timeout(options.timeoutMs ?? DEFAULT_DAG_SERVE_TIMEOUT_MS)
  const f = framed(stream, { maxFrameBytes: MAX_FRAME })
  let sent = 0
  try {
    const req = await f.read({ signal })
    if (req == null) {
      await f.close({ signal })
      return
    }
    let root: CID
    try {
      root = CID.decode(req)
    } catch (err) {
      throw new P2PError(P2PErrorCode.PROTOCOL_VIOLATION, 'a DAG request must be a CID', {}, { cause: err })
    }
    let queue: CID[] = [root]
    let head = 0
    // keyed by the CIDs' bytes (blockKey): cid.toString() builds the text a character at a time and caches
    // the ~1.7 KB rope on every CID (a bundle of 1,000,000 messages links ~35,000)
    const seen = new Set<string>([blockKey(root)])
    let entries: Uint8Array[] = []
    let entryBytes = 0
    const send = async (): Promise<void> => {
      if (entries.length === 0) return
      const frame = Buffer.concat(entries, entryBytes)
      entries = []
      entryBytes = 0
      await f.write(frame, { signal })
    }
    while (head < queue.length) {
      const cids = queue.slice(head, head + READ_BATCH)
      head += cids.length
      if (head > 4096) { // drop what was sent from the front of the queue
        queue = queue.slice(head)
        head = 0
      }
      const blocks = await read(cids)
      for (let i = 0; i < cids.length; i++) {
        const cid = cids[i]
        const bytes = blocks[i]
        if (bytes === undefined || bytes.length > MAX_DAG_STREAM_BLOCK) continue
        const length = cid.bytes.length + bytes.length
        if (entryBytes + length + 8 > FRAME_TARGET) await send()
        const prefix = encodeVarint(length)
        entries.push(prefix, cid.bytes, bytes)
        entryBytes += prefix.length + length
        sent++
        for (const link of links(cid, bytes)) {
          const key = blockKey(link)
          if (seen.has(key)) continue
          seen.add(key)
          queue.push(link)
        }
      }
    }
    await send()
    await f.close({ signal })
    logger('sent %d blocks under %s', sent, root)
  } catch (err) {
    logger('serving a DAG stream failed after %d blocks: %s', sent, (err as Error).message)
    f.abort(err as Error)
  }
}

/** Default bound on the wait for the next frame (a peer that stops sending is given up on). */
export const DEFAULT_DAG_STREAM_IDLE_MS = 20_000

export interface FetchDagStreamOptions extends AbortOptions {
  /** give up when no frame arrives for this long (default {@link DEFAULT_DAG_STREAM_IDLE_MS}) */
  idleTimeoutMs?: number
  /** each accepted block (hash-checked, asked for, owning its bytes), in arrival order; throwing stops the exchange */
  onBlock: (block: { cid: CID, bytes: Uint8Array }) => void | Promise<void>
  /** the links of a block (default {@link dagLinks}) */
  links?: (cid: CID, bytes: Uint8Array) => CID[]
}

export interface FetchDagStreamResult {
  blocks: number
  bytes: number
  /** true when every block under the root arrived and was accepted: the caller has the whole DAG */
  complete: boolean
}

/** The part of a node {@link fetchDagStream} needs (a P2PNode fits). */
export interface DagStreamDialer {
  dialProtocol: (peer: PeerId | Multiaddr, protocol: string, options?: AbortOptions) => Promise<Stream>
}

/**
 * Ask `peer` for the DAG under `root` over {@link DAG_PROTOCOL}. Resolves with what was accepted when the
 * peer is done (possibly not every block: the caller fetches the rest). Throws DIAL_FAILED (the peer
 * cannot be reached, does not speak the protocol, or sent nothing for `idleTimeoutMs`), PROTOCOL_VIOLATION (it sent something not asked
 * for, or bytes that do not match their CID; the blocks accepted before stay good), or what `onBlock`
 * throws.
 */
export async function fetchDagStream (node: DagStreamDialer, peer: PeerId | Multiaddr, root: CID, options: FetchDagStreamOptions): Promise<FetchDagStreamResult> {
  const links = options.links ?? dagLinks
  const signal = options.signal
  const idleMs = options.idleTimeoutMs ?? DEFAULT_DAG_STREAM_IDLE_MS
  /** the caller's signal, bounded by the idle timeout (a new bound per frame) */
  const frameSignal = (): AbortSignal => signal === undefined ? AbortSignal.timeout(idleMs) : AbortSignal.any([signal, AbortSignal.timeout(idleMs)])
  const stream = await node.dialProtocol(peer, DAG_PROTOCOL, { signal: frameSignal() })
  const f = framed(stream, { maxFrameBytes: MAX_FRAME })
  const result: FetchDagStreamResult = { blocks: 0, bytes: 0, complete: false }
  /** blocks under a hash this side does not check (left to the caller, with their subtrees) */
  let unchecked = 0
  /** asked for (the root, links of accepted blocks) and not received yet; by blockKey (the CID's bytes, not its text) */
  const expected = new Set<string>([blockKey(root)])
  const accepted = new Set<string>()
  try {
    await f.write(root.bytes, { signal: frameSignal() })
    await f.close({ signal: frameSignal() })
    for (let frame = await f.read({ signal: frameSignal() }); frame != null; frame = await f.read({ signal: frameSignal() })) {
      for (let at = 0; at < frame.length;) {
        const [length, n] = readVarint(frame, at)
        if (n === 0 || at + n + length > frame.length) throw violation(peer, 'a frame entry runs past its frame')
        const entry = frame.subarray(at + n, at + n + length)
        at += n + length
        let cid: CID
        let bytes: Uint8Array
        try {
          [cid, bytes] = CID.decodeFirst(entry)
        } catch (err) {
          throw violation(peer, 'an entry does not start with a CID', err)
        }
        const key = blockKey(cid)
        if (!expected.delete(key)) throw violation(peer, `block ${cid.toString()} was not asked for`)
        const mh = cid.multihash
        if (mh.code === SHA2_256) {
          if (!equalBytes(sha256(bytes), mh.digest)) throw violation(peer, `block ${cid.toString()} does not match its hash`)
        } else if (mh.code !== IDENTITY || !equalBytes(bytes, mh.digest)) {
          unchecked++
          continue // a hash this side does not check here: left, with its subtree, to bitswap
        }
        // a block of its own (the entry is a view into the stream's receive buffer)
        bytes = bytes.slice()
        accepted.add(key)
        result.blocks++
        result.bytes += bytes.length
        try {
          await options.onBlock({ cid, bytes })
        } catch (err) {
          throw new CallerError(err)
        }
        for (const link of links(cid, bytes)) {
          const k = blockKey(link)
          if (!accepted.has(k)) expected.add(k)
        }
      }
    }
  } catch (err) {
    const cause = err instanceof CallerError ? err.cause : err
    f.abort(cause as Error)
    if (err instanceof CallerError || err instanceof P2PError || signal?.aborted === true) throw cause
    throw new P2PError(P2PErrorCode.DIAL_FAILED, `DAG stream from ${peer.toString()} failed: ${(err as Error)?.message}`, { peerId: peer.toString() }, { cause: err })
  }
  result.complete = expected.size === 0 && unchecked === 0
  return result
}

/** what the caller's onBlock threw, passed through as it is */
class CallerError extends Error {
  constructor (cause: unknown) {
    super('onBlock failed', { cause })
  }
}

function violation (peer: PeerId | Multiaddr, message: string, cause?: unknown): P2PError {
  return new P2PError(P2PErrorCode.PROTOCOL_VIOLATION, `DAG stream from ${peer.toString()}: ${message}`, { peerId: peer.toString() }, { cause })
}

/** An unsigned varint at `at`: [value, bytes read] ([0, 0] when it runs past the end or over 5 bytes). */
function readVarint (buf: Uint8Array, at: number): [number, number] {
  let value = 0
  for (let i = 0; i < 5 && at + i < buf.length; i++) {
    const b = buf[at + i]
    value += (b & 0x7f) * 2 ** (7 * i)
    if ((b & 0x80) === 0) return [value, i + 1]
  }
  return [0, 0]
}

function equalBytes (a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0
}
