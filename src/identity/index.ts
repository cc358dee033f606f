export { IdentityErrorCode } from './errors.ts'
export {
  DEVICE_KEY_FILE,
  DEVICE_RECORD_DOMAIN,
  DEVICE_RECORD_DHT_NAMESPACE,
  MAX_DEVICE_RECORD_BYTES,
  DEFAULT_MAX_SKEW_MS,
  deviceKeyPath,
  loadDeviceKey,
  loadOrCreateDeviceKey,
  createDeviceKey,
  devicePeerId,
  deviceRecordSigningBytes,
  signDeviceRecord,
  verifyDeviceRecord,
  encodeDeviceRecord,
  decodeDeviceRecord,
  deviceRecordKey,
  selectDeviceRecord,
  deviceRecordDhtValidator,
  deviceRecordDhtSelector
} from './device.ts'
export type { DeviceRecord, UnsignedDeviceRecord, DeviceRecordSigner, VerifyDeviceRecordOptions } from './device.ts'
export { checkPrivateFileMode, createFileExclusive } from './files.ts'
export { generateMnemonic, parseMnemonic, isValidMnemonic } from './mnemonic.ts'
export type { MnemonicWords } from './mnemonic.ts'
export { deriveKeys, deriveBackupKey, WALLET_PATH, KEY_LABELS } from './keys.ts'
export type { DerivedKeys, BackupKey, DeriveBackupKeyOptions } from './keys.ts'
export { createKeystore, unlockKeystore, encryptKeystore, readKeystoreAddress, KEYSTORE_FILE, DEFAULT_KEYSTORE_SCRYPT_N } from './keystore.ts'
export type { CreateKeystoreOptions, UnlockKeystoreOptions } from './keystore.ts'
export { createIdentity, prepareKeystore, openIdentity, readIdentityPublic, identityExists, keystorePath, identityPath, IDENTITY_FILE } from './identity.ts'
export type { CreateIdentityOptions, CreatedIdentity, OpenedIdentity, PreparedKeystore, PublicIdentity } from './identity.ts'
