/**
 * Sealed boxes (docs/backup-format.md#sealed-boxes): deterministic authenticated encryption of a
 * dag-cbor plaintext under the backup key K.
 *
 *   Z   = zstd(P)                                   fixed level, content size in the frame
 *   siv = HMAC(K, "tokenim-backup/v1/<kind>/siv" ‖ 0 ‖ SHA-256(Z))
 *   k   = HMAC(K, "tokenim-backup/v1/<kind>/key" ‖ 0 ‖ siv)      used for exactly one Z
 *   box = 0x01 ‖ siv ‖ AES-256-GCM(k, nonce 0¹², aad "tokenim-backup/v1/<kind>", Z)
 */
import { KeyObject } from 'node:crypto'
import { zstdDecompressSync } from 'node:zlib'
import { aeadDecrypt, aeadEncrypt, constantTimeEqual, hmacSha256, secretKey, sha256 } from '../crypto/index.ts'
import { isTokenimError } from '../errors.ts'
import { BOX_SUITE_1, NONCE, SIV_LENGTH, TAG_LENGTH } from './constants.ts'
import type { BoxKind } from './constants.ts'
import { BackupErrorCode, backupError, invalidArgument, malformed } from './errors.ts'
import { ReusedZstd, ReusedZstdDecompress } from './zstd.ts'

const enc = new TextEncoder()

/**
 * The backup key K: its 32 bytes, or a secret KeyObject made of them once ({@link sealKey}). node:crypto
 * given raw key bytes first tests them for a KeyObject or CryptoKey by catching thrown TypeErrors (~30 µs
 * per HMAC here, src/crypto/hash.ts): a box's two HMACs cost more than its AES-GCM. Callers that seal or
 * open many boxes under one key pass a KeyObject.
 */
export type SealKey = Uint8Array | KeyObject

/** K as a KeyObject, for sealing or opening many boxes (a copy: wipe `key` as before). */
export function sealKey (key: Uint8Array): KeyObject {
  checkKey(key)
  return secretKey(key)
}

const labels = new Map<string, Uint8Array>()

function cached (text: string): Uint8Array {
  let b = labels.get(text)
  if (b === undefined) {
    b = enc.encode(text)
    labels.set(text, b)
  }
  return b
}

function label (kind: BoxKind, what: 'siv' | 'key'): Uint8Array {
  return cached(`tokenim-backup/v1/${kind}/${what}\0`)
}

function aad (kind: BoxKind): Uint8Array {
  return cached(`tokenim-backup/v1/${kind}`)
}

function concat (...parts: Uint8Array[]): Uint8Array {
  return Buffer.concat(parts)
}

function checkKey (key: SealKey): void {
  if (key instanceof KeyObject) {
    if (key.type !== 'secret' || key.symmetricKeySize !== 32) throw invalidArgument('the backup key must be 32 bytes')
    return
  }
  if (!(key instanceof Uint8Array) || key.length !== 32) throw invalidArgument('the backup key must be 32 bytes')
}

/** K for this box's two HMACs: made once per box from raw bytes */
function macKey (key: SealKey): KeyObject {
  return key instanceof KeyObject ? key : secretKey(key)
}

function deriveSiv (key: KeyObject, kind: BoxKind, z: Uint8Array): Uint8Array {
  return hmacSha256(key, concat(label(kind, 'siv'), sha256(z)))
}

function deriveBoxKey (key: KeyObject, kind: BoxKind, siv: Uint8Array): Uint8Array {
  return hmacSha256(key, concat(label(kind, 'key'), siv))
}

/** this thread's zstd contexts, kept from box to box (zstd.ts) */
const zstd = new ReusedZstd()
const unzstd = new ReusedZstdDecompress()

/** zstd(plain) as every box holds it: fixed level, content size in the frame, no checksum */
export function compress (plain: Uint8Array): Uint8Array {
  try {
    return zstd.compress(plain)
  } catch (err) {
    // out of memory: the payload's, not the key's or the format's fault
    throw backupError(BackupErrorCode.BACKUP_SOURCE_INVALID, 'a payload did not compress', { reason: 'zstd' }, err)
  }
}

/** Seal `plain` (already dag-cbor encoded). Same (key, kind, plain) → same box. */
export function seal (key: SealKey, kind: BoxKind, plain: Uint8Array): Uint8Array {
  checkKey(key)
  return sealCompressed(macKey(key), kind, compress(plain))
}

function sealCompressed (key: KeyObject, kind: BoxKind, z: Uint8Array): Uint8Array {
  const siv = deriveSiv(key, kind, z)
  const k = deriveBoxKey(key, kind, siv)
  try {
    const ct = aeadEncrypt(k, NONCE, z, aad(kind))
    // the box gets memory of its own (allocUnsafeSlow, fully written below): a box is kept (blockstores,
    // caches), and a small Buffer.concat result is a view into Node's shared 64 KiB pool slab, which it
    // would keep alive whole
    const box = Buffer.allocUnsafeSlow(1 + siv.length + ct.length)
    box[0] = BOX_SUITE_1
    box.set(siv, 1)
    box.set(ct, 1 + siv.length)
    return box
  } finally {
    k.fill(0)
  }
}

/** Check the unauthenticated framing of a box (suite byte, minimum length) without a key: for public verify. */
export function checkBoxFrame (box: Uint8Array, where: Record<string, unknown> = {}): void {
  if (!(box instanceof Uint8Array) || box.length < 1 + SIV_LENGTH + TAG_LENGTH) {
    throw malformed('sealed box is too short', { ...where, reason: 'box-short' })
  }
  if (box[0] !== BOX_SUITE_1) {
    throw malformed(`sealed box uses an unknown suite 0x${box[0].toString(16)}`, { ...where, reason: 'box-suite' })
  }
}

/**
 * Open a box. Throws BACKUP_MALFORMED for a bad frame or a too large / bad zstd payload, and
 * DECRYPT_FAILED when it does not authenticate under `key` (the caller decides whether that means a wrong
 * key or tampering). Returns the dag-cbor plaintext.
 */
export function open (key: SealKey, kind: BoxKind, box: Uint8Array, maxPlain: number, where: Record<string, unknown> = {}): Uint8Array {
  checkKey(key)
  checkBoxFrame(box, where)
  const mk = macKey(key)
  const siv = box.subarray(1, 1 + SIV_LENGTH)
  const k = deriveBoxKey(mk, kind, siv)
  let z: Uint8Array
  try {
    z = aeadDecrypt(k, NONCE, box.subarray(1 + SIV_LENGTH), aad(kind))
  } catch (err) {
    if (isTokenimError(err, 'DECRYPT_FAILED')) {
      throw backupError(BackupErrorCode.DECRYPT_FAILED, `the ${kind} does not authenticate under this key`, { ...where, reason: 'aead' })
    }
    throw err
  } finally {
    k.fill(0)
  }
  if (!constantTimeEqual(deriveSiv(mk, kind, z), siv)) {
    throw backupError(BackupErrorCode.DECRYPT_FAILED, `the ${kind} does not authenticate under this key (siv)`, { ...where, reason: 'siv' })
  }
  return decompress(z, maxPlain, where)
}

export function decompress (z: Uint8Array, maxPlain: number, where: Record<string, unknown> = {}): Uint8Array {
  const declared = frameContentSize(z)
  if (declared === undefined) throw malformed('compressed payload does not declare its size', { ...where, reason: 'zstd-frame' })
  if (declared > maxPlain) throw malformed(`payload of ${declared} bytes exceeds the ${maxPlain} allowed`, { ...where, reason: 'too-large', max: maxPlain })
  // the kept context's answer when it decodes the frame to exactly its declared size; else the one-shot call's
  const kept = unzstd.decompress(z, declared)
  if (kept !== undefined) return kept
  try {
    const out = zstdDecompressSync(z, { maxOutputLength: Math.max(1, maxPlain) })
    if (out.byteLength !== declared) throw new Error('size differs from the frame header')
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength)
  } catch (err) {
    throw malformed('compressed payload does not decompress', { ...where, reason: 'zstd' }, err)
  }
}

/**
 * The frame content size of a single zstd frame (RFC 8878 §3.1.1.1), or undefined when absent or when the
 * data is not a zstd frame.
 */
function frameContentSize (z: Uint8Array): number | undefined {
  if (z.length < 6) return undefined
  if (z[0] !== 0x28 || z[1] !== 0xb5 || z[2] !== 0x2f || z[3] !== 0xfd) return undefined
  const fhd = z[4]
  const fcsFlag = fhd >> 6
  const single = (fhd >> 5) & 1
  const dictFlag = fhd & 3
  if (fcsFlag === 0 && single === 0) return undefined
  let pos = 5 + (single === 1 ? 0 : 1) + [0, 1, 2, 4][dictFlag]
  const size = fcsFlag === 0 ? 1 : [1, 2, 4, 8][fcsFlag]
  if (z.length < pos + size) return undefined
  let v = 0
  for (let i = size - 1; i >= 0; i--) v = v * 256 + z[pos + i]
  pos += size
  return fcsFlag === 1 ? v + 256 : v
}
