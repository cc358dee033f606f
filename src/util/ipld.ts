import { CID } from 'multiformats/cid'

/**
 * `cid.toString()`, flattened. multiformats builds the base32 text one character at a time and caches it
 * on the CID: V8 keeps that rope as it is, ~1.7 KB per CID (~60 MB for the 35,000 segment CIDs of a
 * 1,000,000-message backup held for a whole restore). `charCodeAt` makes V8 flatten the cached string in
 * place (~0.3 KB). For map keys of long-lived maps prefer src/backup blockKey (no text at all).
 */
export function cidString (cid: CID): string {
  const s = cid.toString()
  s.charCodeAt(0)
  return s
}

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
