export { CryptoErrorCode } from './errors.ts'
export { sha256, hmacSha256, secretKey, hkdf, randomBytes, constantTimeEqual } from './hash.ts'
export type { BytesLike } from './hash.ts'
export { aeadEncrypt, aeadDecrypt, AEAD_KEY_LENGTH, AEAD_NONCE_LENGTH, AEAD_TAG_LENGTH } from './aead.ts'
export {
  x25519GenerateKeyPair,
  x25519EphemeralKeyPair,
  x25519EphemeralKeyPairAsync,
  x25519KeyPairFromSeed,
  x25519PublicKey,
  x25519SharedSecret,
  x25519SharedSecretAsync,
  x25519PrivateKeyObject,
  x25519PublicKeyObject,
  X25519_KEY_LENGTH
} from './x25519.ts'
export type { X25519KeyPair } from './x25519.ts'
export { newScryptParams, validateKdfParams, deriveFromPassphrase, scryptBytes, DEFAULT_SCRYPT_COST, TEST_SCRYPT_COST } from './kdf.ts'
export type { KdfParams, ScryptParams } from './kdf.ts'
