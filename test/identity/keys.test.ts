import assert from 'node:assert/strict'
import { hkdf as nobleHkdf } from '@noble/hashes/hkdf.js'
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js'
import { Mnemonic, getBytes } from 'ethers'
import { isTokenimError } from '../../src/errors.ts'
import { TEST_SCRYPT_COST, x25519PublicKey } from '../../src/crypto/index.ts'
import { deriveBackupKey, deriveKeys, generateMnemonic, isValidMnemonic, parseMnemonic } from '../../src/identity/index.ts'

const PHRASE = 'test test test test test test test test test test test junk'
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

function code (c: string): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(isTokenimError(err), `expected TokenimError, got ${String(err)}`)
    assert.equal(err.code, c)
    return true
  }
}

describe('identity/mnemonic', () => {
  it('generates valid 12 and 24 word mnemonics', () => {
    const a = generateMnemonic(12)
    const b = generateMnemonic(24)
    assert.equal(a.split(' ').length, 12)
    assert.equal(b.split(' ').length, 24)
    assert.equal(parseMnemonic(a), a)
    assert.equal(parseMnemonic(b), b)
    assert.notEqual(generateMnemonic(12), a)
  })

  it('normalises whitespace and case', () => {
    assert.equal(parseMnemonic('  TEST test\ttest\n test test test test test test test test   Junk \n'), PHRASE)
    assert.equal(isValidMnemonic(PHRASE), true)
  })

  it('names the position of a wrong word, without the word', () => {
    const words = PHRASE.split(' ')
    words[4] = 'tesst'
    assert.throws(() => parseMnemonic(words.join(' ')), (err: unknown) => {
      code('INVALID_MNEMONIC')(err)
      assert.ok(isTokenimError(err))
      assert.equal(err.info.position, 5)
      assert.ok(!err.message.includes('tesst'))
      return true
    })
  })

  it('wrong word count is INVALID_MNEMONIC', () => {
    assert.throws(() => parseMnemonic('test test test'), code('INVALID_MNEMONIC'))
    assert.throws(() => parseMnemonic(''), code('INVALID_MNEMONIC'))
  })

  it('bad checksum is INVALID_MNEMONIC_CHECKSUM', () => {
    assert.throws(() => parseMnemonic(PHRASE.replace(/junk$/, 'test')), code('INVALID_MNEMONIC_CHECKSUM'))
    assert.equal(isValidMnemonic(PHRASE.replace(/junk$/, 'test')), false)
  })
})

describe('identity/keys', () => {
  it('derives the well-known address and pinned keys', () => {
    const k = deriveKeys(PHRASE)
    assert.equal(k.address, '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266')
    assert.equal(k.wallet.address, k.address)
    assert.equal(hex(k.messaging.privateKey), '31903074988bf7b6f84d5482a7dd2ad4f923666658f42dbf53b1d90bfb8613e4')
    assert.equal(hex(k.messaging.publicKey), '01ca0fcbba12c1469da40dac5fafcd1f7eed7433d4fa2512bc6dd0ebd65bb452')
    assert.equal(hex(k.backupRootKey), 'aa0eb4df621ec0c18f5d46bf70c8a534779cd5a6c11c28acb145af3294a4dec8')
    assert.deepEqual(x25519PublicKey(k.messaging.privateKey), k.messaging.publicKey)
  })

  it('matches the documented derivation (independent HKDF from @noble/hashes)', () => {
    const seed = getBytes(Mnemonic.fromPhrase(PHRASE).computeSeed())
    const salt = new TextEncoder().encode('tokenim/v1/hkdf-salt')
    const info = (s: string): Uint8Array => new TextEncoder().encode(s)
    const k = deriveKeys(PHRASE)
    assert.equal(hex(nobleHkdf(nobleSha256, seed, salt, info('tokenim/v1/messaging-x25519'), 32)), hex(k.messaging.privateKey))
    assert.equal(hex(nobleHkdf(nobleSha256, seed, salt, info('tokenim/v1/backup-root'), 32)), hex(k.backupRootKey))
  })

  it('is stable across calls, different per label and per mnemonic', () => {
    const a = deriveKeys(PHRASE)
    const b = deriveKeys(` ${PHRASE.toUpperCase()} `)
    assert.deepEqual(a.messaging, b.messaging)
    assert.deepEqual(a.backupRootKey, b.backupRootKey)
    assert.notDeepEqual(a.messaging.privateKey, a.backupRootKey)
    const other = deriveKeys(generateMnemonic(24))
    assert.notEqual(other.address, a.address)
    assert.notDeepEqual(other.backupRootKey, a.backupRootKey)
  })

  it('rejects bad mnemonics with codes', () => {
    assert.throws(() => deriveKeys('nope'), code('INVALID_MNEMONIC'))
  })
})

describe('identity/backup key', () => {
  const root = deriveKeys(PHRASE).backupRootKey

  it('without a passphrase: pinned, no kdf params', async () => {
    const k = await deriveBackupKey(root)
    assert.equal(k.kdf, undefined)
    assert.equal(hex(k.key), 'ba3ececbdeccdc06daeb7f3d90a7ade30976bc127b9b48197b55699fe9cc38f2')
    assert.notDeepEqual(k.key, root)
  })

  it('with a passphrase: different key, recomputable from stored params', async () => {
    const plain = await deriveBackupKey(root)
    const withPass = await deriveBackupKey(root, { passphrase: 'hunter2', scryptCost: TEST_SCRYPT_COST })
    assert.ok(withPass.kdf !== undefined)
    assert.equal(withPass.kdf.N, TEST_SCRYPT_COST.N)
    assert.notDeepEqual(withPass.key, plain.key)
    const stored = JSON.parse(JSON.stringify(withPass.kdf))
    const again = await deriveBackupKey(root, { passphrase: 'hunter2', kdf: stored })
    assert.deepEqual(again.key, withPass.key)
    assert.deepEqual(again.kdf, withPass.kdf)
    const wrong = await deriveBackupKey(root, { passphrase: 'hunter3', kdf: stored })
    assert.notDeepEqual(wrong.key, withPass.key)
    const otherRoot = deriveKeys(generateMnemonic(12)).backupRootKey
    assert.notDeepEqual((await deriveBackupKey(otherRoot, { passphrase: 'hunter2', kdf: stored })).key, withPass.key, 'passphrase alone is not enough')
  })

  it('pins the passphrase derivation', async () => {
    const kdf = { algorithm: 'scrypt' as const, N: 1024, r: 8, p: 1, salt: '00112233445566778899aabbccddeeff' }
    assert.equal(hex((await deriveBackupKey(root, { passphrase: 'hunter2', kdf })).key), 'c3c7de8923c464fe7e04fa380941ae611cd63cae6a0cb8beb6d23d6a17d7f35e')
  })

  it('stored params without a passphrase, or an empty one, are PASSPHRASE_REQUIRED; hostile params rejected', async () => {
    const { kdf } = await deriveBackupKey(root, { passphrase: 'x', scryptCost: TEST_SCRYPT_COST })
    await assert.rejects(deriveBackupKey(root, { kdf }), code('PASSPHRASE_REQUIRED'))
    await assert.rejects(deriveBackupKey(root, { passphrase: '' }), code('PASSPHRASE_REQUIRED'))
    await assert.rejects(deriveBackupKey(root, { passphrase: 'x', kdf: { algorithm: 'scrypt', N: 2 ** 30, r: 8, p: 1, salt: '00'.repeat(16) } }), code('INVALID_KDF_PARAMS'))
  })
})
