import assert from 'node:assert/strict'
import { isTokenimError } from '../../src/errors.ts'
import {
  aeadDecrypt,
  aeadEncrypt,
  constantTimeEqual,
  deriveFromPassphrase,
  scryptBytes,
  hkdf,
  hmacSha256,
  newScryptParams,
  randomBytes,
  secretKey,
  sha256,
  TEST_SCRYPT_COST,
  validateKdfParams,
  x25519EphemeralKeyPair,
  x25519EphemeralKeyPairAsync,
  x25519GenerateKeyPair,
  x25519KeyPairFromSeed,
  x25519PublicKey,
  x25519SharedSecret,
  x25519SharedSecretAsync
} from '../../src/crypto/index.ts'

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'))

function code (c: string): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(isTokenimError(err), `expected TokenimError, got ${String(err)}`)
    assert.equal(err.code, c)
    return true
  }
}

describe('crypto/hash', () => {
  it('sha256 (FIPS 180 "abc")', () => {
    assert.equal(hex(sha256('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
    assert.equal(hex(sha256(new TextEncoder().encode('abc'))), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
  })

  it('hmacSha256 (RFC 4231 test case 1)', () => {
    assert.equal(hex(hmacSha256(new Uint8Array(20).fill(0x0b), 'Hi There')), 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7')
  })

  it('hmacSha256 takes a KeyObject from secretKey (same MAC, reusable); other key types are refused', () => {
    const key = randomBytes(32)
    const k = secretKey(key)
    assert.deepEqual(hmacSha256(k, 'one'), hmacSha256(key, 'one'))
    assert.deepEqual(hmacSha256(k, 'two'), hmacSha256(key, 'two'))
    assert.equal(hex(hmacSha256(secretKey(new Uint8Array(20).fill(0x0b)), 'Hi There')), 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7')
    assert.throws(() => hmacSha256('key' as unknown as Uint8Array, 'x'), code('INVALID_CRYPTO_INPUT'))
    assert.throws(() => secretKey('key' as unknown as Uint8Array), code('INVALID_CRYPTO_INPUT'))
  })

  it('hkdf (RFC 5869 test case 1)', () => {
    const okm = hkdf(new Uint8Array(22).fill(0x0b), unhex('000102030405060708090a0b0c'), unhex('f0f1f2f3f4f5f6f7f8f9'), 42)
    assert.equal(hex(okm), '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865')
    assert.ok(okm instanceof Uint8Array)
  })

  it('hkdf rejects bad lengths', () => {
    assert.throws(() => hkdf(new Uint8Array(32), '', '', 0), code('INVALID_CRYPTO_INPUT'))
    assert.throws(() => hkdf(new Uint8Array(32), '', '', 8161), code('INVALID_CRYPTO_INPUT'))
  })

  it('randomBytes and constantTimeEqual', () => {
    const a = randomBytes(32)
    assert.equal(a.length, 32)
    assert.notDeepEqual(a, randomBytes(32))
    assert.equal(constantTimeEqual(a, new Uint8Array(a)), true)
    const b = new Uint8Array(a)
    b[31] ^= 1
    assert.equal(constantTimeEqual(a, b), false)
    assert.equal(constantTimeEqual(a, a.subarray(0, 31)), false)
    assert.equal(constantTimeEqual(new Uint8Array(0), new Uint8Array(0)), true)
  })
})

describe('crypto/aead (AES-256-GCM)', () => {
  it('matches the GCM spec test case 14 (AES-256, zero key/IV, 16 zero bytes)', () => {
    const out = aeadEncrypt(new Uint8Array(32), new Uint8Array(12), new Uint8Array(16))
    assert.equal(hex(out), 'cea7403d4d606b6e074ec5d3baf39d18' + 'd0d1c8a799996bf0265b98b5d48ab919')
    assert.equal(hex(aeadEncrypt(new Uint8Array(32), new Uint8Array(12), new Uint8Array(0))), '530f8afbc74536b9a963b4f1c4cb738b')
  })

  it('round trips with aad', () => {
    const key = randomBytes(32)
    const nonce = randomBytes(12)
    const pt = new TextEncoder().encode('hello, tokenim')
    const aad = new TextEncoder().encode('header')
    const ct = aeadEncrypt(key, nonce, pt, aad)
    assert.equal(ct.length, pt.length + 16)
    assert.deepEqual(aeadDecrypt(key, nonce, ct, aad), pt)
    assert.deepEqual(aeadDecrypt(key, nonce, aeadEncrypt(key, nonce, new Uint8Array(0))), new Uint8Array(0))
  })

  it('any tampering gives DECRYPT_FAILED', () => {
    const key = randomBytes(32)
    const nonce = randomBytes(12)
    const pt = randomBytes(100)
    const aad = unhex('0102')
    const ct = aeadEncrypt(key, nonce, pt, aad)
    for (const i of [0, 50, ct.length - 1]) {
      const t = new Uint8Array(ct)
      t[i] ^= 0x80
      assert.throws(() => aeadDecrypt(key, nonce, t, aad), code('DECRYPT_FAILED'))
    }
    const otherKey = new Uint8Array(key)
    otherKey[0] ^= 1
    assert.throws(() => aeadDecrypt(otherKey, nonce, ct, aad), code('DECRYPT_FAILED'))
    assert.throws(() => aeadDecrypt(key, randomBytes(12), ct, aad), code('DECRYPT_FAILED'))
    assert.throws(() => aeadDecrypt(key, nonce, ct), code('DECRYPT_FAILED'))
    assert.throws(() => aeadDecrypt(key, nonce, ct.subarray(0, ct.length - 1), aad), code('DECRYPT_FAILED'))
    assert.throws(() => aeadDecrypt(key, nonce, ct.subarray(0, 5), aad), code('DECRYPT_FAILED'))
  })

  it('wrong key or nonce sizes are INVALID_CRYPTO_INPUT', () => {
    assert.throws(() => aeadEncrypt(new Uint8Array(16), new Uint8Array(12), new Uint8Array(1)), code('INVALID_CRYPTO_INPUT'))
    assert.throws(() => aeadEncrypt(new Uint8Array(32), new Uint8Array(8), new Uint8Array(1)), code('INVALID_CRYPTO_INPUT'))
  })
})

describe('crypto/x25519', () => {
  // RFC 7748 section 6.1
  const alicePriv = '77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'
  const alicePub = '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a'
  const bobPriv = '5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'
  const bobPub = 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f'
  const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742'

  it('matches RFC 7748 section 6.1', () => {
    assert.equal(hex(x25519PublicKey(unhex(alicePriv))), alicePub)
    const bob = x25519KeyPairFromSeed(unhex(bobPriv))
    assert.equal(hex(bob.publicKey), bobPub)
    assert.equal(hex(bob.privateKey), bobPriv)
    assert.equal(hex(x25519SharedSecret(unhex(alicePriv), unhex(bobPub))), shared)
    assert.equal(hex(x25519SharedSecret(bob.privateKey, unhex(alicePub))), shared)
  })

  it('random pairs agree', () => {
    const a = x25519GenerateKeyPair()
    const b = x25519GenerateKeyPair()
    assert.equal(hex(x25519PublicKey(a.privateKey)), hex(a.publicKey))
    assert.deepEqual(x25519SharedSecret(a.privateKey, b.publicKey), x25519SharedSecret(b.privateKey, a.publicKey))
  })

  it('ephemeral pairs: the public key matches the opaque private key', () => {
    const e = x25519EphemeralKeyPair()
    const b = x25519GenerateKeyPair()
    assert.equal(e.publicKey.length, 32)
    assert.deepEqual(x25519SharedSecret(e.privateKey, b.publicKey), x25519SharedSecret(b.privateKey, e.publicKey))
    assert.notDeepEqual(x25519EphemeralKeyPair().publicKey, e.publicKey)
  })

  it('rejects low-order public keys', () => {
    const priv = x25519GenerateKeyPair().privateKey
    for (const p of [
      '0000000000000000000000000000000000000000000000000000000000000000',
      '0100000000000000000000000000000000000000000000000000000000000000',
      'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
      '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157'
    ]) {
      assert.throws(() => x25519SharedSecret(priv, unhex(p)), code('INVALID_X25519_KEY'), p)
    }
  })

  it('on the thread pool: the same secrets (RFC 7748), ephemeral pairs that agree, the same refusals', async () => {
    assert.equal(hex(await x25519SharedSecretAsync(unhex(alicePriv), unhex(bobPub))), shared)
    const e = await x25519EphemeralKeyPairAsync()
    const b = x25519GenerateKeyPair()
    assert.equal(e.publicKey.length, 32)
    assert.deepEqual(await x25519SharedSecretAsync(e.privateKey, b.publicKey), x25519SharedSecret(b.privateKey, e.publicKey))
    assert.notDeepEqual((await x25519EphemeralKeyPairAsync()).publicKey, e.publicKey)
    for (const p of ['0000000000000000000000000000000000000000000000000000000000000000', 'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800']) {
      await assert.rejects(x25519SharedSecretAsync(b.privateKey, unhex(p)), code('INVALID_X25519_KEY'), p)
    }
    await assert.rejects(x25519SharedSecretAsync(b.privateKey, new Uint8Array(33)), code('INVALID_CRYPTO_INPUT'))
  })

  it('rejects wrong key sizes', () => {
    assert.throws(() => x25519PublicKey(new Uint8Array(31)), code('INVALID_CRYPTO_INPUT'))
    assert.throws(() => x25519SharedSecret(new Uint8Array(32).fill(1), new Uint8Array(33)), code('INVALID_CRYPTO_INPUT'))
  })
})

describe('crypto/kdf (scrypt)', () => {
  it('is deterministic for the same params, and salt/passphrase/cost matter', async () => {
    const params = newScryptParams(TEST_SCRYPT_COST)
    assert.deepEqual(validateKdfParams(JSON.parse(JSON.stringify(params))), params)
    const a = await deriveFromPassphrase('correct horse', params)
    assert.equal(a.length, 32)
    assert.deepEqual(await deriveFromPassphrase('correct horse', JSON.parse(JSON.stringify(params))), a)
    assert.notDeepEqual(await deriveFromPassphrase('correct horsE', params), a)
    assert.notDeepEqual(await deriveFromPassphrase('correct horse', newScryptParams(TEST_SCRYPT_COST)), a)
    assert.notDeepEqual(await deriveFromPassphrase('correct horse', { ...params, N: 2048 }), a)
  })

  it('normalises the passphrase (NFKC)', async () => {
    const params = newScryptParams(TEST_SCRYPT_COST)
    assert.deepEqual(await deriveFromPassphrase('caf\u00e9', params), await deriveFromPassphrase('cafe\u0301', params))
  })

  it('pins a vector (cross-checked against @noble/hashes scrypt)', async () => {
    const params = { algorithm: 'scrypt' as const, N: 1024, r: 8, p: 1, salt: '000102030405060708090a0b0c0d0e0f' }
    assert.equal(hex(await deriveFromPassphrase('password', params)), '3a7c0782a4dbdf543acd7c522fe853d9b34abb8af27a5c6597488cdf228140b5')
  })

  it('production defaults are strong', () => {
    const p = newScryptParams()
    assert.equal(p.N, 2 ** 17)
    assert.equal(p.r, 8)
    assert.equal(p.p, 1)
    assert.match(p.salt, /^[0-9a-f]{32}$/)
  })

  it('rejects hostile or malformed params', () => {
    const salt = '00'.repeat(16)
    for (const bad of [
      null, {}, { algorithm: 'argon2id', N: 1024, r: 8, p: 1, salt },
      { algorithm: 'scrypt', N: 1000, r: 8, p: 1, salt },
      { algorithm: 'scrypt', N: 2 ** 30, r: 8, p: 1, salt },
      { algorithm: 'scrypt', N: 1024, r: 0, p: 1, salt },
      { algorithm: 'scrypt', N: 1024, r: 8, p: 1000, salt },
      { algorithm: 'scrypt', N: 1024, r: 8, p: 1, salt: 'zz' },
      { algorithm: 'scrypt', N: 1024, r: 8, p: 1, salt: '00' }
    ]) {
      assert.throws(() => validateKdfParams(bad), code('INVALID_KDF_PARAMS'), JSON.stringify(bad))
    }
  })

  it('scryptBytes (raw parameters, e.g. from a keystore file) refuses what would take too much memory or is not N, r, p', async () => {
    const pw = Uint8Array.of(1, 2, 3)
    const salt = new Uint8Array(16)
    assert.equal((await scryptBytes(pw, salt, 1024, 8, 1, 64)).length, 64)
    for (const [N, r, p] of [[2 ** 30, 8, 1], [1024, 0, 1], [1024, 8, 1.5], [1000, 8, 1]]) {
      await assert.rejects(scryptBytes(pw, salt, N, r, p, 32), code('INVALID_KDF_PARAMS'), `${N} ${r} ${p}`)
    }
  })
})
