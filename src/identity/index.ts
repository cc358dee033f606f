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
