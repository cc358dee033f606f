import { CID } from 'multiformats/cid'

/**
 * Every CID inside a decoded dag-cbor value, depth-first in order (maps in their decoded key order,
 * lists in list order). Shared by the CAR writer (src/backup/car.ts) and the DAG fetch (src/p2p/fetch-dag.ts).
 */
export function cborLinks (value: unknown): CID[] {
  const out: CID[] = []
  const stack: unknown[] = [value]
  while (stack.length > 0) {
    const v = stack.pop()
    const link = CID.asCID(v)
    if (link !== null) {
      out.push(link)
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push(v[i])
    } else if (typeof v === 'object' && v !== null && !(v instanceof Uint8Array)) {
      const values = Object.values(v)
      for (let i = values.length - 1; i >= 0; i--) stack.push(values[i])
    }
  }
  return out
}

/**
 * A CID as a map key for a long-lived map of blocks: its bytes as a latin1 string — flat and ~40 bytes.
 * Used by the backup (CAR index, written blocks) and the DAG fetch. (`cid.toString()` builds its base32
 * text one character at a time, a rope of ~1.7 KB that V8 keeps as it is, and caches it on the CID: a CAR
 * index of 35,000 blocks held ~60 MB that way, and so did the callers' CIDs it was asked for.)
 */
export function blockKey (cid: CID): string {
  return Buffer.from(cid.bytes.buffer, cid.bytes.byteOffset, cid.bytes.byteLength).toString('latin1')
}
