/**
 * The identity of a data dir, as files:
 *   keystore.json  the mnemonic, encrypted with the user's password (ethers JSON keystore, 0600)
 *   device.key     this installation's libp2p Ed25519 key (0600), random, not derived from the mnemonic
 *   identity.json  public facts `{ version: 1, address, peerId }` (0600) so `tokenim id` and other
 *                  password-less callers can show who this is; the keystore is the source of truth
 *                  and openIdentity rewrites identity.json if it is missing or its peerId is stale.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { getAddress } from 'ethers'
import type { HDNodeWallet } from 'ethers'
import { ensurePrivateDir, exists, writeFileAtomic } from '../util/fs.ts'
import { devicePeerId, deviceKeyPath, loadDeviceKey, loadOrCreateDeviceKey } from './device.ts'
import { identityError, IdentityErrorCode } from './errors.ts'
import { deriveKeys } from './keys.ts'
import type { DerivedKeys } from './keys.ts'
import { encryptKeystore, KEYSTORE_FILE, readKeystoreAddress, unlockKeystore } from './keystore.ts'
import { createFileExclusive } from './files.ts'
import { isTokenimError } from '../errors.ts'
import { generateMnemonic, parseMnemonic } from './mnemonic.ts'
import type { MnemonicWords } from './mnemonic.ts'

export const IDENTITY_FILE = 'identity.json'

export interface CreateIdentityOptions {
  /** import this mnemonic; otherwise a new one is generated */
  phrase?: string
  /** words in a generated mnemonic (default 12) */
  words?: MnemonicWords
  /** keystore password (non-empty) */
  password: string
  /** keystore scrypt N (default 2^17); tests pass a cheap value */
  scryptN?: number
  onProgress?: (fraction: number) => void
  /** the keystore made ahead by {@link prepareKeystore} for this phrase and password (no scrypt here then) */
  keystore?: PreparedKeystore
}

/** A keystore file's content, made ahead of writing it. */
export interface PreparedKeystore {
  address: string
  json: string
}

/**
 * The keystore for `phrase` under `password`, validated and encrypted (scrypt: ~128 MiB for ~1 s at the
 * default cost) but not written: a caller that must not write yet, and whose own work will need memory
 * later (a restore), pays for the KDF first and writes with `createIdentity({ keystore })` afterwards.
 */
export async function prepareKeystore (options: { phrase: string, password: string, scryptN?: number, onProgress?: (fraction: number) => void }): Promise<PreparedKeystore> {
  const phrase = parseMnemonic(options.phrase)
  const json = await encryptKeystore(phrase, options.password, { scryptN: options.scryptN, onProgress: options.onProgress })
  return { address: deriveKeys(phrase).address, json }
}

export interface CreatedIdentity {
  address: string
  peerId: string
  /** only when the mnemonic was generated here: show it to the user once */
  mnemonic?: string
}

export interface OpenedIdentity {
  address: string
  wallet: HDNodeWallet
  keys: DerivedKeys
  deviceKey: Ed25519PrivateKey
  peerId: string
}

export interface PublicIdentity {
  address: string
  peerId: string
}

export function keystorePath (dataDir: string): string {
  return join(dataDir, KEYSTORE_FILE)
}

export function identityPath (dataDir: string): string {
  return join(dataDir, IDENTITY_FILE)
}

/** True when the data dir has an identity (keystore.json or identity.json). */
export async function identityExists (dataDir: string): Promise<boolean> {
  return await exists(keystorePath(dataDir)) || await exists(identityPath(dataDir))
}

/**
 * Create (or import) the identity of a data dir: keystore.json, device.key (kept if already there),
 * identity.json. Refuses with `IDENTITY_EXISTS` (changing nothing) when the dir already has one.
 * Validates the phrase and password before touching the disk.
 */
export async function createIdentity (dataDir: string, options: CreateIdentityOptions): Promise<CreatedIdentity> {
  if (await identityExists(dataDir)) {
    throw identityError(IdentityErrorCode.IDENTITY_EXISTS, 'an identity already exists in this data dir; nothing was changed', { dataDir })
  }
  const generated = options.phrase === undefined
  const phrase = generated ? generateMnemonic(options.words ?? 12) : parseMnemonic(options.phrase as string)
  // the slow part (scrypt) and all validation happen before any write
  const json = options.keystore?.json ?? await encryptKeystore(phrase, options.password, { scryptN: options.scryptN, onProgress: options.onProgress })
  const address = deriveKeys(phrase).address
  if (options.keystore !== undefined && options.keystore.address !== address) {
    throw identityError(IdentityErrorCode.IDENTITY_MISMATCH, 'the prepared keystore is for another mnemonic; nothing was changed', { keystore: options.keystore.address, mnemonic: address })
  }

  await ensurePrivateDir(dataDir)
  const deviceKey = await loadOrCreateDeviceKey(dataDir)
  const peerId = devicePeerId(deviceKey)
  try {
    await createFileExclusive(keystorePath(dataDir), json)
  } catch (err) {
    if (isTokenimError(err, 'FILE_EXISTS')) {
      throw identityError(IdentityErrorCode.IDENTITY_EXISTS, 'an identity already exists in this data dir; nothing was changed', { dataDir })
    }
    throw err
  }
  await writePublicIdentity(dataDir, { address, peerId })
  return generated ? { address, peerId, mnemonic: phrase } : { address, peerId }
}

/**
 * Unlock the identity: decrypt the keystore, derive all keys, load the device key (creating one if it
 * is missing, e.g. after a restore) and keep identity.json in step.
 * Errors: `NO_IDENTITY`, `WRONG_PASSWORD`, `KEYSTORE_CORRUPT`, `IDENTITY_MISMATCH` (identity.json names
 * another address than the keystore), `DEVICE_KEY_CORRUPT`.
 */
export async function openIdentity (dataDir: string, password: string, options: { onProgress?: (fraction: number) => void } = {}): Promise<OpenedIdentity> {
  const phrase = await unlockKeystore(keystorePath(dataDir), password, options)
  const keys = deriveKeys(phrase)
  const deviceKey = await loadOrCreateDeviceKey(dataDir)
  const peerId = devicePeerId(deviceKey)
  const recorded = await readPublicIdentityFile(dataDir)
  if (recorded !== undefined && recorded.address !== keys.address) {
    throw identityError(IdentityErrorCode.IDENTITY_MISMATCH, 'identity.json names a different address than the keystore', { recorded: recorded.address, keystore: keys.address })
  }
  if (recorded?.peerId !== peerId) {
    await writePublicIdentity(dataDir, { address: keys.address, peerId })
  }
  return { address: keys.address, wallet: keys.wallet, keys, deviceKey, peerId }
}

/**
 * Address and peer id without the password: identity.json, or (if it is missing) the keystore's
 * address and the device key's peer id. `NO_IDENTITY` when the dir has no identity.
 */
export async function readIdentityPublic (dataDir: string): Promise<PublicIdentity> {
  const recorded = await readPublicIdentityFile(dataDir)
  if (recorded !== undefined) return recorded
  const address = await readKeystoreAddress(keystorePath(dataDir))
  if (!await exists(deviceKeyPath(dataDir))) {
    throw identityError(IdentityErrorCode.NO_IDENTITY, 'the data dir has a keystore but no device key yet; unlock it once (e.g. `tokenim daemon`)', { dataDir })
  }
  return { address, peerId: devicePeerId(await loadDeviceKey(dataDir)) }
}

async function readPublicIdentityFile (dataDir: string): Promise<PublicIdentity | undefined> {
  const path = identityPath(dataDir)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException)?.code === 'ENOENT') return undefined
    throw err
  }
  const corrupt = (): Error => identityError(IdentityErrorCode.KEYSTORE_CORRUPT, 'identity.json is damaged', { path })
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch {
    throw corrupt()
  }
  const d = data as Record<string, unknown> | null
  if (typeof d !== 'object' || d === null || d.version !== 1 || typeof d.address !== 'string' || typeof d.peerId !== 'string') throw corrupt()
  let address: string
  try {
    address = getAddress(d.address)
  } catch {
    throw corrupt()
  }
  return { address, peerId: d.peerId }
}

async function writePublicIdentity (dataDir: string, identity: PublicIdentity): Promise<void> {
  const body = JSON.stringify({ version: 1, address: identity.address, peerId: identity.peerId }, null, 2) + '\n'
  await writeFileAtomic(identityPath(dataDir), body)
}
