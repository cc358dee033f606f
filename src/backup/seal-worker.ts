/**
 * The worker thread of a SegmentSealer (sealer.ts): seals segment plaintexts with seal.ts under the key it
 * was started with, one request at a time, and answers each with the box (its memory transferred) and
 * the SHA-256 of the box (the digest of its raw CID). A request it cannot seal is answered with an error
 * message; the main thread then seals that plaintext itself (and reports the error as it would anyway).
 */
import { parentPort, workerData } from 'node:worker_threads'
import type { MessagePort } from 'node:worker_threads'
import { sha256 } from '../crypto/index.ts'
import { seal, sealKey } from './seal.ts'

export type SealRequest = { id: number, plain: Uint8Array } | { close: true }
export type SealReply = { ready: true } | { id: number, box: Uint8Array, digest: Uint8Array } | { id: number, error: string }

function serve (port: MessagePort, key: Uint8Array): void {
  // imported once: HMACs under a KeyObject skip node's per-call key checks (seal.ts SealKey)
  const mac = sealKey(key)
  port.on('message', (m: SealRequest) => {
    if ('close' in m) {
      key.fill(0)
      port.close()
      return
    }
    let reply: SealReply
    try {
      const box = seal(mac, 'segment', m.plain)
      reply = { id: m.id, box, digest: Uint8Array.from(sha256(box)) }
    } catch (err) {
      port.postMessage({ id: m.id, error: err instanceof Error ? err.message : String(err) } satisfies SealReply)
      return
    }
    // a box owns its whole ArrayBuffer (seal allocates it on its own): moved, not copied
    port.postMessage(reply, [reply.box.buffer as ArrayBuffer])
  })
  port.postMessage({ ready: true } satisfies SealReply)
}

if (parentPort !== null) {
  const data = workerData as { key?: unknown } | null
  if (data?.key instanceof Uint8Array && data.key.length === 32) serve(parentPort, data.key)
  else parentPort.close()
}
