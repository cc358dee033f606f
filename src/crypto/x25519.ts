/**
 * X25519 (RFC 7748) on node:crypto with raw 32-byte keys. Raw keys are wrapped into KeyObjects with the
 * fixed PKCS#8 / SPKI DER prefixes for the X25519 OID (1.3.101.110).
 *
 * Speed (per message paths): a public key goes to node as a PEM string and comes out as a JWK. Node's
 * `createPublicKey({ key: der, … })` and `export({ format: 'der' })` first test their argument for
 * KeyObject/CryptoKey by catching thrown TypeErrors (~50 µs each here, more than the DH itself); a string
 * or the JWK export skips that (17 and 2 µs). Private keys keep the DER path (they are made once, and a
 * PEM string holding a private key could not be wiped).
 */
import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPair, generateKeyPairSync } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { assertBytes, cryptoError, CryptoErrorCode } from './errors.ts'

export const X25519_KEY_LENGTH = 32

export interface X25519KeyPair {
  privateKey: Uint8Array
  publicKey: Uint8Array
}

const PKCS8_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20])
const SPKI_PREFIX = Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00])

function concat (a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}

/** Raw 32-byte X25519 private key → node KeyObject. */
export function x25519PrivateKeyObject (privateKey: Uint8Array): KeyObject {
  assertBytes(privateKey, 'X25519 private key', X25519_KEY_LENGTH)
  const der = concat(PKCS8_PREFIX, privateKey)
  try {
    return createPrivateKey({ key: Buffer.from(der.buffer, der.byteOffset, der.byteLength), format: 'der', type: 'pkcs8' })
  } finally {
    der.fill(0)
  }
}

/** Raw 32-byte X25519 public key → node KeyObject. */
export function x25519PublicKeyObject (publicKey: Uint8Array): KeyObject {
  assertBytes(publicKey, 'X25519 public key', X25519_KEY_LENGTH)
  const der = Buffer.concat([SPKI_PREFIX, publicKey])
  try {
    return createPublicKey(`-----BEGIN PUBLIC KEY-----\n${der.toString('base64')}\n-----END PUBLIC KEY-----\n`)
  } catch {
    throw cryptoError(CryptoErrorCode.INVALID_X25519_KEY, 'X25519 public key is malformed')
  }
}

function rawPublicFromKeyObject (key: KeyObject): Uint8Array {
  const { x } = key.export({ format: 'jwk' })
  const raw = typeof x === 'string' ? Buffer.from(x, 'base64url') : undefined
  if (raw?.length !== X25519_KEY_LENGTH) throw cryptoError(CryptoErrorCode.INVALID_X25519_KEY, 'X25519 public key is malformed')
  return new Uint8Array(raw) // a copy: small Buffers share a pool
}

/**
 * A fresh random X25519 key pair whose private key stays an opaque node KeyObject (never exported as
 * bytes): for one-time (ephemeral) keys.
 */
export function x25519EphemeralKeyPair (): { privateKey: KeyObject, publicKey: Uint8Array } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519')
  return { privateKey, publicKey: rawPublicFromKeyObject(publicKey) }
}

/**
 * {@link x25519EphemeralKeyPair}, made on libuv's thread pool: ~20 µs of the calling thread instead of
 * ~60, the scalar multiplication on another core when one is free.
 */
export async function x25519EphemeralKeyPairAsync (): Promise<{ privateKey: KeyObject, publicKey: Uint8Array }> {
  return await new Promise((resolve, reject) => {
    generateKeyPair('x25519', {}, (err, publicKey, privateKey) => {
      if (err !== null) {
        reject(err)
        return
      }
      try {
        resolve({ privateKey, publicKey: rawPublicFromKeyObject(publicKey) })
      } catch (e) {
        reject(e)
      }
    })
  })
}

/** A fresh random X25519 key pair (raw bytes). */
export function x25519GenerateKeyPair (): X25519KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519')
  const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' })
  const raw = new Uint8Array(pkcs8.subarray(pkcs8.length - X25519_KEY_LENGTH))
  pkcs8.fill(0)
  return { privateKey: raw, publicKey: rawPublicFromKeyObject(publicKey) }
}

/**
 * Deterministic key pair from 32 secret bytes: the seed is the raw private key (RFC 7748 clamps it when
 * used; the returned privateKey is the seed as given, so it round-trips).
 */
export function x25519KeyPairFromSeed (seed: Uint8Array): X25519KeyPair {
  assertBytes(seed, 'seed', X25519_KEY_LENGTH)
  const privateKey = new Uint8Array(seed)
  return { privateKey, publicKey: x25519PublicKey(privateKey) }
}

/** The public key of a raw private key. */
export function x25519PublicKey (privateKey: Uint8Array): Uint8Array {
  return rawPublicFromKeyObject(createPublicKey(x25519PrivateKeyObject(privateKey)))
}

/**
 * X25519(priv, pub) → 32-byte shared secret. Rejects low-order public keys (all-zero shared secret) and
 * malformed keys with `INVALID_X25519_KEY`. Hash the result (HKDF) before using it as a key.
 */
export function x25519SharedSecret (privateKey: Uint8Array | KeyObject, publicKey: Uint8Array | KeyObject): Uint8Array {
  const priv = privateKey instanceof Uint8Array ? x25519PrivateKeyObject(privateKey) : privateKey
  const pub = publicKey instanceof Uint8Array ? x25519PublicKeyObject(publicKey) : publicKey
  let secret: Buffer
  try {
    secret = diffieHellman({ privateKey: priv, publicKey: pub })
  } catch {
    // OpenSSL refuses an all-zero result itself
    throw lowOrder()
  }
  return checkedSecret(secret)
}

/**
 * {@link x25519SharedSecret} with the scalar multiplication on libuv's thread pool (~12 µs of the calling
 * thread instead of ~55): the same key parsing (here, before it resolves), checks and errors.
 */
export async function x25519SharedSecretAsync (privateKey: Uint8Array | KeyObject, publicKey: Uint8Array | KeyObject): Promise<Uint8Array> {
  const priv = privateKey instanceof Uint8Array ? x25519PrivateKeyObject(privateKey) : privateKey
  const pub = publicKey instanceof Uint8Array ? x25519PublicKeyObject(publicKey) : publicKey
  const secret = await new Promise<Buffer>((resolve, reject) => {
    try {
      const answered = diffieHellman({ privateKey: priv, publicKey: pub }, (err, s) => { if (err === null) resolve(s); else reject(lowOrder()) }) as unknown
      // Node before 23.11 has no callback form: it ignores the callback and answers here (on this thread)
      if (answered instanceof Uint8Array) resolve(answered as Buffer)
    } catch {
      reject(lowOrder())
    }
  })
  return checkedSecret(secret)
}

/** the secret as a Uint8Array view, refused when all zero (a low-order public key) */
function checkedSecret (secret: Buffer): Uint8Array {
  let acc = 0
  for (let i = 0; i < secret.length; i++) acc |= secret[i]
  if (acc === 0) throw lowOrder()
  return new Uint8Array(secret.buffer, secret.byteOffset, secret.byteLength)
}

function lowOrder (): Error {
  return cryptoError(CryptoErrorCode.INVALID_X25519_KEY, 'X25519 public key is low-order or invalid (shared secret would be zero)')
}
