/**
 * The mnemonic at rest: `<dataDir>/keystore.json` is an ethers v3 JSON keystore (scrypt + AES-128-CTR,
 * keccak MAC) with the ethers "x-ethers" extension that carries the encrypted mnemonic entropy, so any
 * ethers-compatible tool can open it. Written once, exclusively and atomically, mode 0600.
 * The scrypt cost is stored in the file, so unlocking never depends on how it was created.
 */
import { readFile } from 'node:fs/promises'
import { HDNodeWallet, Mnemonic, decryptKeystoreJson, encryptKeystoreJson, getAddress, scrypt as ethersScrypt } from 'ethers'
import type { KeystoreAccount } from 'ethers'
import { scryptBytes } from '../crypto/index.ts'
import { isTokenimError } from '../errors.ts'
import { identityError, IdentityErrorCode } from './errors.ts'
import { createFileExclusive } from './files.ts'
import { WALLET_PATH } from './keys.ts'
import { parseMnemonic } from './mnemonic.ts'

// ethers' own scrypt is pure JavaScript on the main thread (~1 s to create or unlock a 2^17 keystore
// here, blocking the event loop); node:crypto's is native and runs in the thread pool. Same function,
// same output: the file format does not change. Progress is reported at the start and the end only.
ethersScrypt.register(async (passwd, salt, N, r, p, dkLen, progress) => {
  progress?.(0)
  const key = await scryptBytes(passwd, salt, N, r, p, dkLen)
  progress?.(1)
  return key
})

/** File name of the keystore inside the data dir. */
export const KEYSTORE_FILE = 'keystore.json'
/** Production keystore cost (ethers default): N = 2^17, r = 8, p = 1. */
export const DEFAULT_KEYSTORE_SCRYPT_N = 2 ** 17

// bounds on the (untrusted) scrypt params read from a keystore file: refuse rather than hang or OOM
const MAX_KEYSTORE_N = 2 ** 20
const MAX_KEYSTORE_R = 16
const MAX_KEYSTORE_P = 4

export interface CreateKeystoreOptions {
  /** scrypt N (power of two, 2..2^20). Default 2^17. Tests and TOKENIM_INSECURE_FAST_KDF use e.g. 1024. */
  scryptN?: number
  /** progress 0..1 of the scrypt work */
  onProgress?: (fraction: number) => void
}

export interface UnlockKeystoreOptions {
  onProgress?: (fraction: number) => void
}

/**
 * Encrypt `phrase` with `password` into a new keystore file at `path`.
 * Refuses with `IDENTITY_EXISTS` if the file exists (never replaces it), `EMPTY_PASSWORD` for an empty
 * password, `INVALID_MNEMONIC*` for a bad phrase. Returns the wallet address.
 */
export async function createKeystore (path: string, phrase: string, password: string, options: CreateKeystoreOptions = {}): Promise<{ address: string }> {
  const json = await encryptKeystore(phrase, password, options)
  try {
    await createFileExclusive(path, json)
  } catch (err) {
    if (isTokenimError(err, 'FILE_EXISTS')) {
      throw identityError(IdentityErrorCode.IDENTITY_EXISTS, 'an identity already exists here (keystore.json); nothing was changed', { path })
    }
    throw err
  }
  return { address: addressOf(json) }
}

/** Build keystore JSON text (no file I/O). */
export async function encryptKeystore (phrase: string, password: string, options: CreateKeystoreOptions = {}): Promise<string> {
  if (typeof password !== 'string' || password.length === 0) {
    throw identityError(IdentityErrorCode.EMPTY_PASSWORD, 'the keystore password must not be empty')
  }
  const N = options.scryptN ?? DEFAULT_KEYSTORE_SCRYPT_N
  if (!Number.isInteger(N) || N < 2 || N > MAX_KEYSTORE_N || (N & (N - 1)) !== 0) {
    throw identityError(IdentityErrorCode.KEYSTORE_CORRUPT, 'keystore scrypt N must be a power of two up to 2^20', { N })
  }
  const normalized = parseMnemonic(phrase)
  const wallet = HDNodeWallet.fromPhrase(normalized, undefined, WALLET_PATH)
  const account: KeystoreAccount = {
    address: wallet.address,
    privateKey: wallet.privateKey,
    mnemonic: { entropy: Mnemonic.phraseToEntropy(normalized), path: WALLET_PATH, locale: 'en' }
  }
  return await encryptKeystoreJson(account, password, {
    scrypt: { N, r: 8, p: 1 },
    progressCallback: options.onProgress
  })
}

/**
 * Decrypt the keystore at `path` and return the (normalised) mnemonic.
 * `NO_IDENTITY` if missing, `KEYSTORE_CORRUPT` if it is not a tokenim/ethers keystore with a mnemonic,
 * `WRONG_PASSWORD` if the password does not open it. Never writes.
 */
export async function unlockKeystore (path: string, password: string, options: UnlockKeystoreOptions = {}): Promise<string> {
  const json = await readKeystoreText(path)
  checkKeystoreShape(json, path)
  let account: KeystoreAccount
  try {
    account = await decryptKeystoreJson(json, password, options.onProgress)
  } catch (err) {
    if ((err as { shortMessage?: string })?.shortMessage === 'incorrect password') {
      throw identityError(IdentityErrorCode.WRONG_PASSWORD, 'wrong password for the keystore')
    }
    throw identityError(IdentityErrorCode.KEYSTORE_CORRUPT, 'the keystore could not be decrypted: it is damaged or not a tokenim keystore', { path })
  }
  const entropy = account.mnemonic?.entropy
  if (entropy === undefined || account.mnemonic?.path !== WALLET_PATH) {
    throw identityError(IdentityErrorCode.KEYSTORE_CORRUPT, 'the keystore holds no tokenim mnemonic', { path })
  }
  let phrase: string
  try {
    phrase = Mnemonic.fromEntropy(entropy).phrase
  } catch {
    throw identityError(IdentityErrorCode.KEYSTORE_CORRUPT, 'the keystore mnemonic is damaged', { path })
  }
  if (HDNodeWallet.fromPhrase(phrase, undefined, WALLET_PATH).address !== account.address) {
    throw identityError(IdentityErrorCode.KEYSTORE_CORRUPT, 'the keystore mnemonic does not match its key', { path })
  }
  return phrase
}

/** The checksummed address recorded in a keystore file, without the password. */
export async function readKeystoreAddress (path: string): Promise<string> {
  const json = await readKeystoreText(path)
  checkKeystoreShape(json, path)
  return addressOf(json)
}

async function readKeystoreText (path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException)?.code === 'ENOENT') {
      throw identityError(IdentityErrorCode.NO_IDENTITY, 'no identity here: run `tokenim init` first', { path })
    }
    throw err
  }
}

function checkKeystoreShape (json: string, path: string): void {
  const corrupt = (why: string): Error => identityError(IdentityErrorCode.KEYSTORE_CORRUPT, `the keystore is damaged: ${why}`, { path })
  let data: unknown
  try {
    data = JSON.parse(json)
  } catch {
    throw corrupt('not JSON')
  }
  if (typeof data !== 'object' || data === null) throw corrupt('not a JSON object')
  const d = data as Record<string, unknown>
  // ethers writes "Crypto" (geth style) and reads the key case-insensitively
  const crypto = (d.crypto ?? d.Crypto) as Record<string, unknown> | undefined
  if (d.version !== 3 || typeof crypto !== 'object' || crypto === null) throw corrupt('not a version 3 keystore')
  if (typeof d.address !== 'string' || !/^(0x)?[0-9a-fA-F]{40}$/.test(d.address)) throw corrupt('no address')
  if (crypto.kdf !== 'scrypt') throw corrupt('unsupported KDF')
  const params = crypto.kdfparams as Record<string, unknown> | undefined
  const { n, r, p } = params ?? {}
  if (typeof n !== 'number' || typeof r !== 'number' || typeof p !== 'number' ||
    n < 2 || n > MAX_KEYSTORE_N || (n & (n - 1)) !== 0 || r < 1 || r > MAX_KEYSTORE_R || p < 1 || p > MAX_KEYSTORE_P) {
    throw corrupt('scrypt parameters out of bounds')
  }
  const xEthers = d['x-ethers'] as Record<string, unknown> | undefined
  if (typeof xEthers !== 'object' || xEthers === null || typeof xEthers.mnemonicCiphertext !== 'string') {
    throw corrupt('it holds no mnemonic')
  }
}

function addressOf (json: string): string {
  const raw = (JSON.parse(json) as { address: string }).address.toLowerCase()
  return getAddress(raw.startsWith('0x') ? raw : `0x${raw}`)
}
