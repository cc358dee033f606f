/**
 * Hashes, MACs, HKDF and randomness on node:crypto (OpenSSL).
 *
 * Keys are handed to node:crypto as KeyObjects (`secretKey`): given raw bytes, node's wrappers first ask
 * whether the bytes are a KeyObject or a CryptoKey by catching two thrown TypeErrors, which cost ~25 µs
 * per call here (more than the HMAC of a small message itself). A KeyObject made once can be reused.
 */
import * as nodeCrypto from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { assertBytes, cryptoError, CryptoErrorCode } from './errors.ts'

export type BytesLike = Uint8Array | string

function view (buf: Buffer | ArrayBuffer): Uint8Array {
  return buf instanceof ArrayBuffer ? new Uint8Array(buf) : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength)
}

function toBytes (value: BytesLike, name: string): Uint8Array {
  if (typeof value === 'string') return new TextEncoder().encode(value)
  assertBytes(value, name)
  return value
}

/** SHA-256 of bytes (strings are UTF-8 encoded). */
export function sha256 (data: BytesLike): Uint8Array {
  return view(nodeCrypto.createHash('sha256').update(toBytes(data, 'data')).digest())
}

/**
 * Raw key bytes as a node:crypto secret KeyObject (a copy; zero `key` afterwards if it is secret). Pass
 * it to {@link hmacSha256} when one key MACs many messages.
 */
export function secretKey (key: Uint8Array): KeyObject {
  assertBytes(key, 'key')
  return nodeCrypto.createSecretKey(key)
}

/** HMAC-SHA256(key, data); `key` raw bytes or a secret KeyObject from {@link secretKey}. */
export function hmacSha256 (key: Uint8Array | KeyObject, data: BytesLike): Uint8Array {
  const k = key instanceof Uint8Array ? secretKey(key) : checkSecretKey(key)
  return view(nodeCrypto.createHmac('sha256', k).update(toBytes(data, 'data')).digest())
}

function checkSecretKey (key: unknown): KeyObject {
  if (!(key instanceof nodeCrypto.KeyObject) || key.type !== 'secret') {
    throw cryptoError(CryptoErrorCode.INVALID_CRYPTO_INPUT, 'key must be a Uint8Array or a secret KeyObject')
  }
  return key
}

/**
 * HKDF-SHA256 (RFC 5869) extract-and-expand. `salt` and `info` may be strings (UTF-8).
 * length is 1..8160 bytes; info at most 1024 bytes (node's limit).
 */
export function hkdf (ikm: Uint8Array, salt: BytesLike, info: BytesLike, length: number): Uint8Array {
  assertBytes(ikm, 'ikm')
  if (!Number.isInteger(length) || length < 1 || length > 255 * 32) {
    throw cryptoError(CryptoErrorCode.INVALID_CRYPTO_INPUT, 'hkdf length must be 1..8160', { length })
  }
  const infoBytes = toBytes(info, 'info')
  if (infoBytes.length > 1024) {
    throw cryptoError(CryptoErrorCode.INVALID_CRYPTO_INPUT, 'hkdf info must be at most 1024 bytes')
  }
  return view(nodeCrypto.hkdfSync('sha256', nodeCrypto.createSecretKey(ikm), toBytes(salt, 'salt'), infoBytes, length))
}

/** Cryptographically secure random bytes. */
export function randomBytes (length: number): Uint8Array {
  if (!Number.isInteger(length) || length < 0) {
    throw cryptoError(CryptoErrorCode.INVALID_CRYPTO_INPUT, 'length must be a non-negative integer', { length })
  }
  return view(nodeCrypto.randomBytes(length))
}

/**
 * Compare two byte strings in time independent of their content (crypto.timingSafeEqual).
 * Different lengths return false at once (lengths are not secret).
 */
export function constantTimeEqual (a: Uint8Array, b: Uint8Array): boolean {
  assertBytes(a, 'a')
  assertBytes(b, 'b')
  if (a.length !== b.length) return false
  return nodeCrypto.timingSafeEqual(a, b)
}
