/**
 * The worker thread of a SegmentSealer (sealer.ts): seals plaintexts (segments, and the manifest shards of a
 * large build) with seal.ts under the key it was started with, one request at a time, and answers each with
 * the box (its memory transferred) and the SHA-256 of the box (the digest of its raw CID). A request it cannot seal is answered with an error
 * message; the main thread then seals that plaintext itself (and reports the error as it would anyway).
 */
import { parentPort, workerData } from 'node:worker_threads'
import type { MessagePort } from 'node:worker_threads'
import { sha256 } from '../crypto/index.ts'
import type { BoxKind } from './constants.ts'
import { seal, sealKey } from './seal.ts'
import { sealCacheKey, sealEntryOf } from './seal-cache.ts'

/** `cache`: also the box's seal-cache key and entry (seal-cache.ts), made here rather than on the calling thread */
export type SealRequest = { id: number, plain: Uint8Array, kind?: BoxKind, cache?: true } | { close: true }
export type SealReply = { ready: true } | { id: number, box: Uint8Array, digest: Uint8Array, cacheKey?: string, cacheEntry?: Uint8Array } | { id: number, error: string }

/** the bytes of a CIDv1 raw sha2-256 CID (what rawCid(box).bytes gives) */
const RAW_CID_PREFIX = Uint8Array.of(0x01, 0x55, 0x12, 0x20)

function serve (port: MessagePort, key: Uint8Array): void {
  // imported once: HMACs under a KeyObject skip node's per-call key checks (seal.ts SealKey)
  const mac = sealKey(key)
  key.fill(0) // shared with the owner (util/worker-secret.ts): this wipes the only other copy
  port.on('message', (m: SealRequest) => {
    if ('close' in m) {
      port.close()
      return
    }
    let reply: { id: number, box: Uint8Array, digest: Uint8Array, cacheKey?: string, cacheEntry?: Uint8Array }
    try {
      const kind = m.kind ?? 'segment'
      const box = seal(mac, kind, m.plain)
      const digest = Uint8Array.from(sha256(box))
      reply = { id: m.id, box, digest }
      if (m.cache === true) {
        const cacheKey = sealCacheKey(mac, kind, m.plain)
        const cid = new Uint8Array(RAW_CID_PREFIX.length + digest.length)
        cid.set(RAW_CID_PREFIX)
        cid.set(digest, RAW_CID_PREFIX.length)
        reply.cacheKey = cacheKey
        reply.cacheEntry = sealEntryOf(mac, cacheKey, cid, box.length)
      }
    } catch (err) {
      port.postMessage({ id: m.id, error: err instanceof Error ? err.message : String(err) } satisfies SealReply)
      return
    }
    // a box owns its whole ArrayBuffer (seal allocates it on its own): moved, not copied
    port.postMessage(reply satisfies SealReply, [reply.box.buffer as ArrayBuffer])
  })
  port.postMessage({ ready: true } satisfies SealReply)
}

if (parentPort !== null) {
  const data = workerData as { key?: unknown } | null
  if (data?.key instanceof Uint8Array && data.key.length === 32) serve(parentPort, data.key)
  else parentPort.close()
}
