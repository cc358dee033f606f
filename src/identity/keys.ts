/**
 * Everything re-derivable from the mnemonic.
 *
 * - wallet: ethers HDNodeWallet at m/44'/60'/0'/0/0 (the address is the user id);
 * - seed: the BIP-39 seed (no BIP-39 passphrase);
 * - messaging X25519 key: HKDF-SHA256(ikm = seed, salt = 'tokenim/v1/hkdf-salt', info = 'tokenim/v1/messaging-x25519');
 * - backup root key:      HKDF-SHA256(ikm = seed, salt = 'tokenim/v1/hkdf-salt', info = 'tokenim/v1/backup-root');
 * - backup key (deriveBackupKey):
 *     no passphrase:   HKDF(root,                     salt, 'tokenim/v1/backup-key')
 *     with passphrase: HKDF(root || scrypt(passphrase), salt, 'tokenim/v1/backup-key+passphrase')
 *   so a backup made with a passphrase needs both the mnemonic and the passphrase.
 * Changing any label changes every key: labels are versioned and must never be edited in place.
 */
import { HDNodeWallet, Mnemonic, getBytes } from 'ethers'
import { deriveFromPassphrase, hkdf, newScryptParams, validateKdfParams, x25519KeyPairFromSeed } from '../crypto/index.ts'
import type { KdfParams } from '../crypto/index.ts'
import { identityError, IdentityErrorCode } from './errors.ts'
import { parseMnemonic } from './mnemonic.ts'

export const WALLET_PATH = "m/44'/60'/0'/0/0"
export const KEY_LABELS = {
  salt: 'tokenim/v1/hkdf-salt',
  messaging: 'tokenim/v1/messaging-x25519',
  backupRoot: 'tokenim/v1/backup-root',
  backupKey: 'tokenim/v1/backup-key',
  backupKeyWithPassphrase: 'tokenim/v1/backup-key+passphrase'
} as const

export interface DerivedKeys {
  wallet: HDNodeWallet
  /** EIP-55 checksummed address */
  address: string
  messaging: { privateKey: Uint8Array, publicKey: Uint8Array }
  backupRootKey: Uint8Array
}

export interface BackupKey {
  key: Uint8Array
  /** present when a passphrase was used: store it (e.g. in the manifest header) to recompute the key */
  kdf?: KdfParams
}

export interface DeriveBackupKeyOptions {
  /** optional second factor */
  passphrase?: string
  /** stored params from an existing backup (restore path): recompute the same key */
  kdf?: KdfParams
  /** scrypt cost for NEW params (tests pass TEST_SCRYPT_COST); ignored when `kdf` is given */
  scryptCost?: { N?: number, r?: number, p?: number }
}

/** Derive the wallet and all tokenim keys from a mnemonic. Validates the mnemonic (see parseMnemonic). */
export function deriveKeys (phrase: string): DerivedKeys {
  const mnemonic = Mnemonic.fromPhrase(parseMnemonic(phrase))
  const wallet = HDNodeWallet.fromMnemonic(mnemonic, WALLET_PATH)
  const seed = getBytes(mnemonic.computeSeed())
  try {
    const messagingSeed = hkdf(seed, KEY_LABELS.salt, KEY_LABELS.messaging, 32)
    const messaging = x25519KeyPairFromSeed(messagingSeed)
    messagingSeed.fill(0)
    const backupRootKey = hkdf(seed, KEY_LABELS.salt, KEY_LABELS.backupRoot, 32)
    return { wallet, address: wallet.address, messaging, backupRootKey }
  } finally {
    seed.fill(0)
  }
}

/**
 * The key that encrypts backups. Without a passphrase it depends only on the mnemonic. With one, scrypt
 * (new random salt, or the given `kdf` params on restore) is combined with the root key.
 * `kdf` without a passphrase throws `PASSPHRASE_REQUIRED`; an empty passphrase is refused the same way.
 * A wrong passphrase cannot be detected here: decrypting the backup fails with DECRYPT_FAILED.
 */
export async function deriveBackupKey (backupRootKey: Uint8Array, options: DeriveBackupKeyOptions = {}): Promise<BackupKey> {
  if (!(backupRootKey instanceof Uint8Array) || backupRootKey.length !== 32) {
    throw identityError(IdentityErrorCode.INVALID_BACKUP_KDF, 'backup root key must be 32 bytes')
  }
  const { passphrase, kdf } = options
  if (passphrase === undefined) {
    if (kdf !== undefined) {
      throw identityError(IdentityErrorCode.PASSPHRASE_REQUIRED, 'this backup is protected by a passphrase; provide it')
    }
    return { key: hkdf(backupRootKey, KEY_LABELS.salt, KEY_LABELS.backupKey, 32) }
  }
  if (typeof passphrase !== 'string' || passphrase.length === 0) {
    throw identityError(IdentityErrorCode.PASSPHRASE_REQUIRED, 'the backup passphrase is empty')
  }
  const params = kdf !== undefined ? validateKdfParams(kdf) : newScryptParams(options.scryptCost)
  const stretched = await deriveFromPassphrase(passphrase, params, 32)
  const ikm = new Uint8Array(64)
  ikm.set(backupRootKey, 0)
  ikm.set(stretched, 32)
  try {
    return { key: hkdf(ikm, KEY_LABELS.salt, KEY_LABELS.backupKeyWithPassphrase, 32), kdf: params }
  } finally {
    ikm.fill(0)
    stretched.fill(0)
  }
}
