/**
 * The worker thread of a BoxOpener (opener.ts): opens sealed boxes with seal.ts `open` (the SIV HMACs,
 * AES-256-GCM, zstd) under the key it was started with, one request at a time, and answers each with the
 * plaintext, its memory moved to the caller. A box it cannot open is answered `failed` (no reason): the
 * calling thread opens that box itself and meets the error there, as it would without a worker.
 */
import { MessagePort as Port, parentPort, workerData } from 'node:worker_threads'
import type { MessagePort } from 'node:worker_threads'
import type { BoxKind } from './constants.ts'
import { open, sealKey } from './seal.ts'

export type OpenRequest = { id: number, kind: BoxKind, box: Uint8Array, max: number } | { close: true }
export type OpenReply = { ready: true } | { id: number, plain: Uint8Array } | { id: number, failed: true }

/** requests come from the parent; answers go to `port` (the opener reads them synchronously) */
function serve (requests: MessagePort, port: MessagePort, key: Uint8Array): void {
  // imported once: HMACs under a KeyObject skip node's per-call key checks (seal.ts SealKey)
  const mac = sealKey(key)
  key.fill(0) // shared with the owner (util/worker-secret.ts): this wipes the only other copy
  requests.on('message', (m: OpenRequest) => {
    if ('close' in m) {
      port.close()
      requests.close()
      return
    }
    let plain: Uint8Array
    try {
      const out = open(mac, m.kind, m.box, m.max)
      // moved, not copied: a plaintext that is a view into a larger buffer is copied into one of its own first
      plain = out.byteOffset === 0 && out.byteLength === out.buffer.byteLength ? out : new Uint8Array(out)
    } catch {
      port.postMessage({ id: m.id, failed: true } satisfies OpenReply)
      return
    }
    port.postMessage({ id: m.id, plain } satisfies OpenReply, [plain.buffer as ArrayBuffer])
  })
  port.postMessage({ ready: true } satisfies OpenReply)
}

if (parentPort !== null) {
  const data = workerData as { key?: unknown, port?: unknown } | null
  if (data?.key instanceof Uint8Array && data.key.length === 32 && data.port instanceof Port) serve(parentPort, data.port, data.key)
  else parentPort.close()
}
