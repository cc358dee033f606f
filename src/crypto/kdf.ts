/**
 * Passphrase KDF (scrypt on node:crypto, async). Parameters are plain JSON so they can be stored
 * (e.g. in a backup manifest header) and a restore can recompute the same key. Parameters read back from
 * storage are untrusted: `validateKdfParams` bounds them so a hostile header cannot exhaust memory or time.
 */
import { scrypt } from 'node:crypto'
import { cryptoError, CryptoErrorCode } from './errors.ts'
import { randomBytes } from './hash.ts'

export interface ScryptParams {
  algorithm: 'scrypt'
  /** CPU/memory cost, a power of two */
  N: number
  /** block size */
  r: number
  /** parallelism */
  p: number
  /** salt, lowercase hex (16..64 bytes) */
  salt: string
}

export type KdfParams = ScryptParams

/** Production cost: N=2^17, r=8, p=1 (128 MiB, ~0.3-0.5 s). */
export const DEFAULT_SCRYPT_COST = { N: 2 ** 17, r: 8, p: 1 } as const
/** Cheap cost for tests only (N=2^10). */
export const TEST_SCRYPT_COST = { N: 2 ** 10, r: 8, p: 1 } as const

const MIN_N = 2 ** 10
const MAX_N = 2 ** 20
const MAX_R = 32
const MAX_P = 16
/** upper bound of memory one derivation may use (1 GiB) */
const MAX_MEMORY = 1024 * 1024 * 1024
const SALT_BYTES = 16

/** Fresh scrypt params with a random 16-byte salt. `cost` defaults to production cost. */
export function newScryptParams (cost: { N?: number, r?: number, p?: number } = {}): ScryptParams {
  const params: ScryptParams = {
    algorithm: 'scrypt',
    N: cost.N ?? DEFAULT_SCRYPT_COST.N,
    r: cost.r ?? DEFAULT_SCRYPT_COST.r,
    p: cost.p ?? DEFAULT_SCRYPT_COST.p,
    salt: Buffer.from(randomBytes(SALT_BYTES)).toString('hex')
  }
  return validateKdfParams(params)
}

/** Check (untrusted) KDF params; returns a clean copy or throws `INVALID_KDF_PARAMS`. */
export function validateKdfParams (value: unknown): ScryptParams {
  const bad = (why: string): Error => cryptoError(CryptoErrorCode.INVALID_KDF_PARAMS, `invalid KDF parameters: ${why}`)
  if (typeof value !== 'object' || value === null) throw bad('not an object')
  const v = value as Record<string, unknown>
  if (v.algorithm !== 'scrypt') throw bad('algorithm must be scrypt')
  const { N, r, p, salt } = v
  if (typeof N !== 'number' || !Number.isInteger(N) || N < MIN_N || N > MAX_N || (N & (N - 1)) !== 0) throw bad(`N must be a power of two in [2^10, 2^20]`)
  if (typeof r !== 'number' || !Number.isInteger(r) || r < 1 || r > MAX_R) throw bad(`r must be 1..${MAX_R}`)
  if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > MAX_P) throw bad(`p must be 1..${MAX_P}`)
  if (typeof salt !== 'string' || !/^([0-9a-f]{2}){16,64}$/.test(salt)) throw bad('salt must be 16..64 bytes of lowercase hex')
  if (scryptMemory(N, r, p) > MAX_MEMORY) throw bad('parameters need too much memory')
  return { algorithm: 'scrypt', N, r, p, salt }
}

function scryptMemory (N: number, r: number, p: number): number {
  return 128 * N * r + 128 * r * p
}

/**
 * Derive `length` bytes from a passphrase with scrypt. The passphrase is NFKC-normalised and UTF-8
 * encoded (so the same passphrase typed on different systems gives the same key).
 */
export async function deriveFromPassphrase (passphrase: string | Uint8Array, params: KdfParams, length = 32): Promise<Uint8Array> {
  const p = validateKdfParams(params)
  const secret = typeof passphrase === 'string' ? Buffer.from(passphrase.normalize('NFKC'), 'utf8') : passphrase
  if (!(secret instanceof Uint8Array)) throw cryptoError(CryptoErrorCode.INVALID_CRYPTO_INPUT, 'passphrase must be a string or bytes')
  try {
    return await scryptBytes(secret, Buffer.from(p.salt, 'hex'), p.N, p.r, p.p, length)
  } finally {
    if (typeof passphrase === 'string') secret.fill(0)
  }
}

/**
 * Raw scrypt on node:crypto (native, in the libuv thread pool) for callers that bring their own
 * parameters, such as ethers' JSON keystore (see identity/keystore.ts). The parameters are bounded by
 * the same memory cap as {@link validateKdfParams}; out-of-range ones are refused, not attempted.
 */
export async function scryptBytes (secret: Uint8Array, salt: Uint8Array, N: number, r: number, p: number, length: number): Promise<Uint8Array> {
  if (![N, r, p, length].every(x => Number.isSafeInteger(x) && x > 0) || scryptMemory(N, r, p) > MAX_MEMORY) {
    throw cryptoError(CryptoErrorCode.INVALID_KDF_PARAMS, 'scrypt parameters out of bounds')
  }
  const maxmem = scryptMemory(N, r, p) + 1024 * 1024
  const failed = (): Error => cryptoError(CryptoErrorCode.INVALID_KDF_PARAMS, 'scrypt failed with these parameters')
  return await new Promise((resolve, reject) => {
    try {
      scrypt(secret, salt, length, { N, r, p, maxmem }, (err, key) => {
        if (err !== null) reject(failed())
        else resolve(new Uint8Array(key.buffer, key.byteOffset, key.byteLength))
      })
    } catch {
      reject(failed()) // node checks some parameters (N a power of two) before it starts, and throws
    }
  })
}
