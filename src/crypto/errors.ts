import { TokenimError } from '../errors.ts'

/** Stable error codes raised by src/crypto. Messages never contain keys or plaintext. */
export const CryptoErrorCode = {
  /** AEAD decryption failed: wrong key, wrong nonce/aad, or tampered/truncated ciphertext (deliberately one error) */
  DECRYPT_FAILED: 'DECRYPT_FAILED',
  /** a key, nonce or length argument has the wrong size or type (a programming error, not an attack) */
  INVALID_CRYPTO_INPUT: 'INVALID_CRYPTO_INPUT',
  /** an X25519 public key is malformed or low-order (the shared secret would be all zero) */
  INVALID_X25519_KEY: 'INVALID_X25519_KEY',
  /** passphrase KDF parameters are malformed or outside the accepted bounds */
  INVALID_KDF_PARAMS: 'INVALID_KDF_PARAMS'
} as const

export type CryptoErrorCode = typeof CryptoErrorCode[keyof typeof CryptoErrorCode]

export function cryptoError (code: CryptoErrorCode, message: string, info: Record<string, unknown> = {}): TokenimError {
  return new TokenimError(code, message, info)
}

export function assertBytes (value: unknown, name: string, length?: number): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw cryptoError(CryptoErrorCode.INVALID_CRYPTO_INPUT, `${name} must be a Uint8Array`)
  }
  if (length !== undefined && value.length !== length) {
    throw cryptoError(CryptoErrorCode.INVALID_CRYPTO_INPUT, `${name} must be ${length} bytes`, { expected: length, actual: value.length })
  }
}
