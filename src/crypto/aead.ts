/**
 * AES-256-GCM on node:crypto. Output of `aeadEncrypt` is `ciphertext || tag` (16-byte tag).
 * A (key, nonce) pair must never encrypt two different plaintexts: callers use random 12-byte nonces
 * with a fresh key per message, or a key used exactly once.
 * The key goes to node:crypto as a KeyObject: raw bytes cost node ~30 µs per call in type checks that
 * throw and catch (see hash.ts). A caller that encrypts many messages under one key passes the
 * KeyObject itself (a 32-byte secret one).
 */
import { createCipheriv, createDecipheriv, createSecretKey, KeyObject } from 'node:crypto'
import { assertBytes, cryptoError, CryptoErrorCode } from './errors.ts'

export const AEAD_KEY_LENGTH = 32
export const AEAD_NONCE_LENGTH = 12
export const AEAD_TAG_LENGTH = 16

const EMPTY = new Uint8Array(0)

/** The AES-256 key as a KeyObject: made from raw bytes, or checked to be a 32-byte secret one. */
function aesKey (key: Uint8Array | KeyObject): KeyObject {
  if (key instanceof KeyObject) {
    if (key.type !== 'secret' || key.symmetricKeySize !== AEAD_KEY_LENGTH) {
      throw cryptoError(CryptoErrorCode.INVALID_CRYPTO_INPUT, `key must be ${AEAD_KEY_LENGTH} bytes`)
    }
    return key
  }
  assertBytes(key, 'key', AEAD_KEY_LENGTH)
  return createSecretKey(key)
}

/** Encrypt and authenticate `plaintext` (and authenticate `aad`). Returns ciphertext || 16-byte tag. */
export function aeadEncrypt (key: Uint8Array | KeyObject, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array = EMPTY): Uint8Array {
  const k = aesKey(key)
  assertBytes(nonce, 'nonce', AEAD_NONCE_LENGTH)
  assertBytes(plaintext, 'plaintext')
  assertBytes(aad, 'aad')
  const cipher = createCipheriv('aes-256-gcm', k, nonce, { authTagLength: AEAD_TAG_LENGTH })
  if (aad.length > 0) cipher.setAAD(aad)
  const head = cipher.update(plaintext)
  const tail = cipher.final()
  const tag = cipher.getAuthTag()
  const out = new Uint8Array(head.length + tail.length + tag.length)
  out.set(head, 0)
  out.set(tail, head.length)
  out.set(tag, head.length + tail.length)
  return out
}

/**
 * Decrypt `ciphertext || tag`. Any failure (wrong key, nonce or aad, tampering, truncation) throws
 * TokenimError `DECRYPT_FAILED` ("unauthenticated"); no partial plaintext is ever returned.
 */
export function aeadDecrypt (key: Uint8Array | KeyObject, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array = EMPTY): Uint8Array {
  const k = aesKey(key)
  assertBytes(nonce, 'nonce', AEAD_NONCE_LENGTH)
  assertBytes(sealed, 'ciphertext')
  assertBytes(aad, 'aad')
  if (sealed.length < AEAD_TAG_LENGTH) throw decryptFailed()
  const body = sealed.subarray(0, sealed.length - AEAD_TAG_LENGTH)
  const tag = sealed.subarray(sealed.length - AEAD_TAG_LENGTH)
  try {
    const decipher = createDecipheriv('aes-256-gcm', k, nonce, { authTagLength: AEAD_TAG_LENGTH })
    decipher.setAuthTag(tag)
    if (aad.length > 0) decipher.setAAD(aad)
    const head = decipher.update(body)
    const tail = decipher.final()
    if (tail.length === 0) return new Uint8Array(head.buffer, head.byteOffset, head.byteLength)
    const out = new Uint8Array(head.length + tail.length)
    out.set(head, 0)
    out.set(tail, head.length)
    return out
  } catch {
    throw decryptFailed()
  }
}

function decryptFailed (): Error {
  return cryptoError(CryptoErrorCode.DECRYPT_FAILED, 'decryption failed: data is unauthenticated (wrong key or tampered)')
}
