import { TokenimError } from '../errors.ts'

/**
 * Stable error codes raised by src/identity (part of the public contract: the CLI prints them).
 * Messages never contain the mnemonic, passwords or keys.
 */
export const IdentityErrorCode = {
  /** a word of the mnemonic is not in the BIP-39 English list, or the word count is wrong (info.position is 1-based) */
  INVALID_MNEMONIC: 'INVALID_MNEMONIC',
  /** all words are valid but the BIP-39 checksum does not match (usually a typo that is itself a valid word) */
  INVALID_MNEMONIC_CHECKSUM: 'INVALID_MNEMONIC_CHECKSUM',
  /** the data dir already has an identity (keystore.json or identity.json); nothing was changed */
  IDENTITY_EXISTS: 'IDENTITY_EXISTS',
  /** the data dir has no identity (no keystore.json / identity.json) */
  NO_IDENTITY: 'NO_IDENTITY',
  /** the keystore password is wrong */
  WRONG_PASSWORD: 'WRONG_PASSWORD',
  /** keystore.json or identity.json is not what tokenim wrote */
  KEYSTORE_CORRUPT: 'KEYSTORE_CORRUPT',
  /** identity.json disagrees with the unlocked keystore */
  IDENTITY_MISMATCH: 'IDENTITY_MISMATCH',
  /** device.key is missing (loadDeviceKey only; loadOrCreateDeviceKey creates it) */
  NO_DEVICE_KEY: 'NO_DEVICE_KEY',
  /** device.key exists and overwrite was not asked for */
  DEVICE_KEY_EXISTS: 'DEVICE_KEY_EXISTS',
  /** device.key is not a libp2p Ed25519 private key protobuf */
  DEVICE_KEY_CORRUPT: 'DEVICE_KEY_CORRUPT',
  /** a device record is malformed (shape, sizes, encoding, signature format, wrong DHT key) */
  INVALID_DEVICE_RECORD: 'INVALID_DEVICE_RECORD',
  /** a device record's signature does not recover to its address */
  FORGED_DEVICE_RECORD: 'FORGED_DEVICE_RECORD',
  /** a device record's time is further in the future than the allowed clock skew */
  DEVICE_RECORD_FROM_FUTURE: 'DEVICE_RECORD_FROM_FUTURE',
  /** a private file (keystore, device key) is readable or writable by group/others */
  INSECURE_FILE_MODE: 'INSECURE_FILE_MODE',
  /** a backup was made with a passphrase (KDF params present) but none, or an empty one, was given */
  PASSPHRASE_REQUIRED: 'PASSPHRASE_REQUIRED',
  /** the keystore password is empty (refused when creating a keystore) */
  EMPTY_PASSWORD: 'EMPTY_PASSWORD',
  /** deriveBackupKey was given a root key that is not 32 bytes */
  INVALID_BACKUP_KDF: 'INVALID_BACKUP_KDF'
} as const

export type IdentityErrorCode = typeof IdentityErrorCode[keyof typeof IdentityErrorCode]

export function identityError (code: IdentityErrorCode, message: string, info: Record<string, unknown> = {}, cause?: unknown): TokenimError {
  return new TokenimError(code, message, info, cause === undefined ? undefined : { cause })
}
