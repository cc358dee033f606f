/**
 * The seal cache: a local map from a segment's plaintext to the sealed block it gave, so an incremental
 * backup does not compress and encrypt its unchanged segments again only to find their blocks stored.
 * Sealing is deterministic (seal.ts), so the cached block is exactly what sealing would give.
 *
 *   key   = hex HMAC(K, "tokenim-backup/v1/seal-cache/key\0" ‖ kind ‖ 0 ‖ SHA-256(P))
 *   entry = size (u32 BE) ‖ tag (32) ‖ CID bytes,  tag = HMAC(K, "tokenim-backup/v1/seal-cache/entry\0" ‖ key ‖ size ‖ CID)
 *
 * Keys depend on the backup key K (another passphrase, another key: no hit). The tag makes a damaged or
 * planted entry a miss rather than a wrong link; an entry is used only while its block is in the
 * blockstore (the builder checks `has`, which is what dedupe already trusts). Entries are never removed:
 * ~80 bytes per segment ever sealed.
 */
import type { KeyObject } from 'node:crypto'
import { CID } from 'multiformats/cid'
import { constantTimeEqual, hmacSha256, sha256 } from '../crypto/index.ts'
import type { BoxKind } from './constants.ts'

/** Where the entries live (a running node's `p2p.localKv('seal-cache')` fits). */
export interface SealCache {
  get: (key: string) => Promise<Uint8Array | undefined>
  putMany: (entries: Array<[string, Uint8Array]>) => Promise<void>
}

const KEY_LABEL = new TextEncoder().encode('tokenim-backup/v1/seal-cache/key\0')
const ENTRY_LABEL = new TextEncoder().encode('tokenim-backup/v1/seal-cache/entry\0')
const TAG = 32

function u32 (n: number): Uint8Array {
  const b = new Uint8Array(4)
  new DataView(b.buffer).setUint32(0, n)
  return b
}

/** `key`: K, raw or as a KeyObject made once (an HMAC per segment is then several times cheaper) */
export function sealCacheKey (key: Uint8Array | KeyObject, kind: BoxKind, plain: Uint8Array): string {
  const h = hmacSha256(key, Buffer.concat([KEY_LABEL, Buffer.from(kind), Uint8Array.of(0), sha256(plain)]))
  return Buffer.from(h).toString('hex')
}

function tagOf (key: Uint8Array | KeyObject, cacheKey: string, size: number, cid: Uint8Array): Uint8Array {
  return hmacSha256(key, Buffer.concat([ENTRY_LABEL, Buffer.from(cacheKey, 'hex'), u32(size), cid]))
}

export function encodeSealEntry (key: Uint8Array | KeyObject, cacheKey: string, cid: CID, size: number): Uint8Array {
  return sealEntryOf(key, cacheKey, cid.bytes, size)
}

/** {@link encodeSealEntry} given the CID's bytes (the seal worker, which makes no CID objects) */
export function sealEntryOf (key: Uint8Array | KeyObject, cacheKey: string, cidBytes: Uint8Array, size: number): Uint8Array {
  return new Uint8Array(Buffer.concat([u32(size), tagOf(key, cacheKey, size, cidBytes), cidBytes]))
}

/** The entry's block, or undefined when the entry is missing, malformed or not made under this key. */
export function decodeSealEntry (key: Uint8Array | KeyObject, cacheKey: string, entry: Uint8Array | undefined): { cid: CID, size: number } | undefined {
  if (entry === undefined || entry.length < 4 + TAG + 4) return undefined
  const size = new DataView(entry.buffer, entry.byteOffset, 4).getUint32(0)
  const cidBytes = entry.subarray(4 + TAG)
  if (!constantTimeEqual(entry.subarray(4, 4 + TAG), tagOf(key, cacheKey, size, cidBytes))) return undefined
  try {
    return { cid: CID.decode(cidBytes), size }
  } catch {
    return undefined
  }
}
