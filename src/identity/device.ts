/**
 * Device (libp2p) key and the wallet-signed device record that binds it to a wallet address.
 *
 * - `<dataDir>/device.key`: the libp2p Ed25519 private key as its libp2p protobuf encoding
 *   (`privateKeyToProtobuf`), mode 0600, written atomically. One per installation, random,
 *   not derivable from the mnemonic (a restore makes a new one).
 * - Device record: `{ v: 1, address, peerId, messagingKey, multiaddrs, seq, time, signature }`,
 *   signed by the wallet with EIP-191 (`personal_sign`) over
 *   `utf8('tokenim/device-record/v1\n') || dagCbor({ v, address, peerId, messagingKey, multiaddrs, seq, time })`.
 *   dag-cbor sorts map keys, so the signed bytes are canonical. On the wire / in the DHT the record is the
 *   dag-cbor map of all eight fields (signature as a 0x-hex string), at most 8 KiB.
 * - DHT key: utf8(`/tokenim/<lowercase address>`), i.e. the kad-dht namespace is `tokenim`.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { getAddress, verifyMessage } from 'ethers'
import { ensurePrivateDir, exists, writeFileAtomic } from '../util/fs.ts'
import { isTokenimError } from '../errors.ts'
import { identityError, IdentityErrorCode } from './errors.ts'
import { createFileExclusive } from './files.ts'

/** File name of the device key inside the data dir. */
export const DEVICE_KEY_FILE = 'device.key'
/** Domain tag prefixed to the dag-cbor bytes that the wallet signs. */
export const DEVICE_RECORD_DOMAIN = 'tokenim/device-record/v1\n'
/** Upper bound for an encoded device record (decode refuses larger input). */
export const MAX_DEVICE_RECORD_BYTES = 8 * 1024
/** Default allowed clock skew for records whose time is in the future. */
export const DEFAULT_MAX_SKEW_MS = 5 * 60 * 1000
/** DHT key namespace: keys are `/tokenim/<lowercase address>`. */
export const DEVICE_RECORD_DHT_NAMESPACE = 'tokenim'

const MAX_MULTIADDRS = 32
const MAX_MULTIADDR_LENGTH = 512
const MAX_PEER_ID_LENGTH = 128
const RECORD_KEYS = ['address', 'messagingKey', 'multiaddrs', 'peerId', 'seq', 'signature', 'time', 'v']

export interface DeviceRecord {
  v: 1
  /** EIP-55 checksummed 0x address of the wallet */
  address: string
  /** libp2p peer id (base58btc string) of the device key */
  peerId: string
  /** X25519 messaging public key, 32 bytes */
  messagingKey: Uint8Array
  multiaddrs: string[]
  /** monotonically increasing per address; the highest wins */
  seq: number
  /** unix time in milliseconds when the record was made */
  time: number
  /** EIP-191 signature by `address`, 0x + 65 bytes hex */
  signature: string
}

/** The fields a caller provides to `signDeviceRecord` (`v` defaults to 1; address may be any case). */
export type UnsignedDeviceRecord = Omit<DeviceRecord, 'signature' | 'v'> & { v?: 1 }

/** What signs a device record: an ethers Wallet / HDNodeWallet (or any ethers Signer). */
export interface DeviceRecordSigner {
  signMessage: (message: string | Uint8Array) => Promise<string>
}

export interface VerifyDeviceRecordOptions {
  /** current time in ms (default Date.now()) */
  now?: number
  /** how far in the future `time` may be (default 5 minutes) */
  maxSkewMs?: number
}

// ---------------------------------------------------------------------------------------------
// device key

export function deviceKeyPath (dataDir: string): string {
  return join(dataDir, DEVICE_KEY_FILE)
}

/** Read `<dataDir>/device.key`; `NO_DEVICE_KEY` if missing, `DEVICE_KEY_CORRUPT` if unreadable. */
export async function loadDeviceKey (dataDir: string): Promise<Ed25519PrivateKey> {
  const path = deviceKeyPath(dataDir)
  let bytes: Uint8Array
  try {
    bytes = await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException)?.code === 'ENOENT') {
      throw identityError(IdentityErrorCode.NO_DEVICE_KEY, 'no device key in the data dir', { path })
    }
    throw err
  }
  return parseDeviceKey(bytes, path)
}

/**
 * Load the device key, creating a random Ed25519 key (0600, atomic) when there is none.
 * Safe against two processes racing to create it: the loser reads the winner's key.
 */
export async function loadOrCreateDeviceKey (dataDir: string): Promise<Ed25519PrivateKey> {
  try {
    return await loadDeviceKey(dataDir)
  } catch (err) {
    if (!isTokenimError(err, IdentityErrorCode.NO_DEVICE_KEY)) throw err
  }
  try {
    return await createDeviceKey(dataDir)
  } catch (err) {
    if (isTokenimError(err, IdentityErrorCode.DEVICE_KEY_EXISTS)) return await loadDeviceKey(dataDir)
    throw err
  }
}

/**
 * Create a new random device key. Refuses (`DEVICE_KEY_EXISTS`) when one exists unless
 * `overwrite` is true (restore onto a new device: new key, new peer id).
 */
export async function createDeviceKey (dataDir: string, options: { overwrite?: boolean } = {}): Promise<Ed25519PrivateKey> {
  const path = deviceKeyPath(dataDir)
  await ensurePrivateDir(dataDir)
  const overwrite = options.overwrite === true
  if (!overwrite && await exists(path)) {
    throw identityError(IdentityErrorCode.DEVICE_KEY_EXISTS, 'the data dir already has a device key', { path })
  }
  const key = await generateKeyPair('Ed25519')
  try {
    if (overwrite) {
      await writeFileAtomic(path, privateKeyToProtobuf(key))
    } else {
      await createFileExclusive(path, privateKeyToProtobuf(key))
    }
  } catch (err) {
    if (isTokenimError(err, 'FILE_EXISTS')) {
      throw identityError(IdentityErrorCode.DEVICE_KEY_EXISTS, 'the data dir already has a device key', { path })
    }
    throw err
  }
  return key
}

/** The peer id string of a device key. */
export function devicePeerId (key: Ed25519PrivateKey): string {
  return peerIdFromPrivateKey(key).toString()
}

function parseDeviceKey (bytes: Uint8Array, path: string): Ed25519PrivateKey {
  let key
  try {
    key = privateKeyFromProtobuf(bytes)
  } catch {
    throw identityError(IdentityErrorCode.DEVICE_KEY_CORRUPT, 'the device key file is not a libp2p private key', { path })
  }
  if (key.type !== 'Ed25519') {
    throw identityError(IdentityErrorCode.DEVICE_KEY_CORRUPT, 'the device key is not an Ed25519 key', { path, type: key.type })
  }
  return key
}

// ---------------------------------------------------------------------------------------------
// device record

/** The exact bytes the wallet signs (EIP-191) for a record: domain tag || dag-cbor of the unsigned fields. */
export function deviceRecordSigningBytes (fields: Omit<DeviceRecord, 'signature'>): Uint8Array {
  const body = dagCbor.encode({
    v: fields.v,
    address: fields.address,
    peerId: fields.peerId,
    messagingKey: fields.messagingKey,
    multiaddrs: fields.multiaddrs,
    seq: fields.seq,
    time: fields.time
  })
  const tag = new TextEncoder().encode(DEVICE_RECORD_DOMAIN)
  const out = new Uint8Array(tag.length + body.length)
  out.set(tag, 0)
  out.set(body, tag.length)
  return out
}

/** Sign a device record with the wallet. The wallet must be the record's address (else `INVALID_DEVICE_RECORD`). */
export async function signDeviceRecord (wallet: DeviceRecordSigner, fields: UnsignedDeviceRecord): Promise<DeviceRecord> {
  let address: string
  try {
    address = getAddress(fields.address)
  } catch {
    throw invalid('address is not an Ethereum address')
  }
  const unsigned: Omit<DeviceRecord, 'signature'> = {
    v: 1,
    address,
    peerId: fields.peerId,
    messagingKey: fields.messagingKey,
    multiaddrs: [...fields.multiaddrs],
    seq: fields.seq,
    time: fields.time
  }
  const placeholder = '0x' + '00'.repeat(64) + '1b'
  validateShape({ ...unsigned, signature: placeholder })
  const signature = await wallet.signMessage(deviceRecordSigningBytes(unsigned))
  const record: DeviceRecord = { ...unsigned, signature }
  if (encodeDeviceRecord(record).length > MAX_DEVICE_RECORD_BYTES) {
    throw invalid(`device record is larger than ${MAX_DEVICE_RECORD_BYTES} bytes`)
  }
  if (recoverSigner(record) !== address) {
    throw invalid('the signing wallet is not the record address')
  }
  return record
}

/**
 * Check a device record: shape and sizes (`INVALID_DEVICE_RECORD`), signer equals address
 * (`FORGED_DEVICE_RECORD`), time not beyond now + maxSkewMs (`DEVICE_RECORD_FROM_FUTURE`).
 * Returns the record. It does not check that the peer id belongs to whoever sent it: callers that
 * receive it over a connection must compare `record.peerId` with the remote peer.
 */
export function verifyDeviceRecord (record: DeviceRecord, options: VerifyDeviceRecordOptions = {}): DeviceRecord {
  validateShape(record)
  const signer = recoverSigner(record)
  if (signer !== record.address) {
    throw identityError(IdentityErrorCode.FORGED_DEVICE_RECORD, 'device record is not signed by its address', { address: record.address, signer })
  }
  const now = options.now ?? Date.now()
  const maxSkewMs = options.maxSkewMs ?? DEFAULT_MAX_SKEW_MS
  if (record.time > now + maxSkewMs) {
    throw identityError(IdentityErrorCode.DEVICE_RECORD_FROM_FUTURE, 'device record time is in the future', { address: record.address, time: record.time, now, maxSkewMs })
  }
  return record
}

/** Deterministic dag-cbor encoding of a (signed) device record. Validates the shape first. */
export function encodeDeviceRecord (record: DeviceRecord): Uint8Array {
  validateShape(record)
  return dagCbor.encode({
    v: record.v,
    address: record.address,
    peerId: record.peerId,
    messagingKey: record.messagingKey,
    multiaddrs: record.multiaddrs,
    seq: record.seq,
    time: record.time,
    signature: record.signature
  })
}

/**
 * Decode a device record (size-capped, strict shape, canonical encoding). Throws `INVALID_DEVICE_RECORD`.
 * Does NOT check the signature: call `verifyDeviceRecord` on the result.
 */
export function decodeDeviceRecord (bytes: Uint8Array): DeviceRecord {
  if (!(bytes instanceof Uint8Array)) throw invalid('device record must be bytes')
  if (bytes.length > MAX_DEVICE_RECORD_BYTES) throw invalid(`device record is larger than ${MAX_DEVICE_RECORD_BYTES} bytes`, { size: bytes.length })
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch {
    throw invalid('device record is not valid dag-cbor')
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    throw invalid('device record is not a map')
  }
  const keys = Object.keys(value).sort()
  if (keys.length !== RECORD_KEYS.length || keys.some((k, i) => k !== RECORD_KEYS[i])) {
    throw invalid('device record has unexpected fields')
  }
  const record = value as DeviceRecord
  validateShape(record)
  // canonical form only: one record, one encoding
  const again = encodeDeviceRecord(record)
  if (again.length !== bytes.length || !again.every((b, i) => b === bytes[i])) {
    throw invalid('device record is not canonically encoded')
  }
  return { ...record, messagingKey: new Uint8Array(record.messagingKey), multiaddrs: [...record.multiaddrs] }
}

/** DHT key for an address: utf8 bytes of `/tokenim/<lowercase 0x address>`. */
export function deviceRecordKey (address: string): Uint8Array {
  let normalized: string
  try {
    normalized = getAddress(address).toLowerCase()
  } catch {
    throw invalid('address is not an Ethereum address')
  }
  return new TextEncoder().encode(`/${DEVICE_RECORD_DHT_NAMESPACE}/${normalized}`)
}

/** Index of the record to prefer: highest seq, ties broken by later time, then first seen. -1 for an empty list. */
export function selectDeviceRecord (records: readonly DeviceRecord[]): number {
  let best = -1
  for (let i = 0; i < records.length; i++) {
    const r = records[i]
    if (best === -1) { best = i; continue }
    const b = records[best]
    if (r.seq > b.seq || (r.seq === b.seq && r.time > b.time)) best = i
  }
  return best
}

/**
 * kad-dht validator for the `tokenim` namespace: the value must decode, verify, and belong to the key's
 * address. Use as `validators: { tokenim: deviceRecordDhtValidator }`.
 */
export async function deviceRecordDhtValidator (key: Uint8Array, value: Uint8Array): Promise<void> {
  const record = verifyDeviceRecord(decodeDeviceRecord(value))
  const expected = deviceRecordKey(record.address)
  if (expected.length !== key.length || !expected.every((b, i) => b === key[i])) {
    throw invalid('device record does not belong to this DHT key')
  }
}

/**
 * kad-dht selector for the `tokenim` namespace: index of the best valid record (invalid values never win).
 * Use as `selectors: { tokenim: deviceRecordDhtSelector }`.
 */
export function deviceRecordDhtSelector (_key: Uint8Array, values: Uint8Array[]): number {
  const decoded: DeviceRecord[] = []
  const indexes: number[] = []
  values.forEach((value, i) => {
    try {
      decoded.push(verifyDeviceRecord(decodeDeviceRecord(value)))
      indexes.push(i)
    } catch {
      // invalid records never win
    }
  })
  const best = selectDeviceRecord(decoded)
  return best === -1 ? 0 : indexes[best]
}

// ---------------------------------------------------------------------------------------------

function invalid (message: string, info: Record<string, unknown> = {}): Error {
  return identityError(IdentityErrorCode.INVALID_DEVICE_RECORD, message, info)
}

function isSafeNonNegativeInteger (n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0
}

function validateShape (record: DeviceRecord): void {
  if (typeof record !== 'object' || record === null) throw invalid('device record is not an object')
  if (record.v !== 1) throw invalid('unsupported device record version', { v: typeof record.v === 'number' ? record.v : undefined })
  if (typeof record.address !== 'string' || !/^0x[0-9a-fA-F]{40}$/.test(record.address)) throw invalid('address is not a 0x address')
  let checksummed: string
  try {
    checksummed = getAddress(record.address)
  } catch {
    throw invalid('address has a wrong checksum')
  }
  if (checksummed !== record.address) throw invalid('address is not in checksummed form')
  if (typeof record.peerId !== 'string' || record.peerId.length === 0 || record.peerId.length > MAX_PEER_ID_LENGTH) throw invalid('peerId is not a peer id string')
  let peerIdText: string
  try {
    peerIdText = peerIdFromString(record.peerId).toString()
  } catch {
    throw invalid('peerId is not a valid peer id')
  }
  if (peerIdText !== record.peerId) throw invalid('peerId is not in canonical form')
  if (!(record.messagingKey instanceof Uint8Array) || record.messagingKey.length !== 32) throw invalid('messagingKey must be 32 bytes')
  if (!Array.isArray(record.multiaddrs) || record.multiaddrs.length > MAX_MULTIADDRS) throw invalid(`multiaddrs must be a list of at most ${MAX_MULTIADDRS}`)
  for (const ma of record.multiaddrs) {
    if (typeof ma !== 'string' || !ma.startsWith('/') || ma.length > MAX_MULTIADDR_LENGTH) throw invalid('multiaddrs must be multiaddr strings')
  }
  if (!isSafeNonNegativeInteger(record.seq)) throw invalid('seq must be a non-negative integer')
  if (!isSafeNonNegativeInteger(record.time)) throw invalid('time must be a non-negative integer (ms)')
  if (typeof record.signature !== 'string' || !/^0x[0-9a-f]{128}(1b|1c)$/.test(record.signature)) throw invalid('signature must be 0x + 65 bytes lowercase hex (r, s, v = 27|28)')
}

function recoverSigner (record: DeviceRecord): string {
  try {
    return verifyMessage(deviceRecordSigningBytes(record), record.signature)
  } catch {
    throw invalid('signature is malformed')
  }
}
