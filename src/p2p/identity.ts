/**
 * The one place src/p2p imports src/identity: device records (wallet-signed bindings of an address
 * to a peer id, messaging key and multiaddrs) and their DHT validator/selector.
 */
export {
  decodeDeviceRecord,
  deviceRecordDhtSelector,
  deviceRecordDhtValidator,
  deviceRecordKey,
  encodeDeviceRecord,
  selectDeviceRecord,
  signDeviceRecord,
  verifyDeviceRecord,
  DEVICE_RECORD_DHT_NAMESPACE,
  MAX_DEVICE_RECORD_BYTES
} from '../identity/index.ts'
export type { DeviceRecord, DeviceRecordSigner, UnsignedDeviceRecord } from '../identity/index.ts'
