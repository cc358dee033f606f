import assert from 'node:assert/strict'
import { chmod, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Mnemonic, Wallet, encryptKeystoreJsonSync } from 'ethers'
import { isTokenimError } from '../../src/errors.ts'
import {
  checkPrivateFileMode,
  createIdentity,
  createKeystore,
  deriveKeys,
  identityExists,
  openIdentity,
  parseMnemonic,
  prepareKeystore,
  readIdentityPublic,
  readKeystoreAddress,
  unlockKeystore
} from '../../src/identity/index.ts'

const PHRASE = 'test test test test test test test test test test test junk'
const ADDRESS = '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266'
const CHEAP = { scryptN: 1024 }

function code (c: string): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(isTokenimError(err), `expected TokenimError, got ${String(err)}`)
    assert.equal(err.code, c)
    return true
  }
}

async function snapshot (dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const name of (await readdir(dir)).sort()) {
    out[name] = (await readFile(join(dir, name))).toString('hex')
  }
  return out
}

describe('identity/keystore', () => {
  let dir: string
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'tokenim-ks-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('round trips the mnemonic (0600) and never replaces an existing file', async () => {
    const path = join(dir, 'keystore.json')
    const { address } = await createKeystore(path, PHRASE, 'pw', CHEAP)
    assert.equal(address, ADDRESS)
    assert.equal((await stat(path)).mode & 0o777, 0o600)
    assert.equal(await unlockKeystore(path, 'pw'), PHRASE)
    assert.equal(await readKeystoreAddress(path), ADDRESS)
    const before = await readFile(path)
    await assert.rejects(createKeystore(path, PHRASE, 'other', CHEAP), code('IDENTITY_EXISTS'))
    assert.deepEqual(await readFile(path), before)
    const json = JSON.parse(before.toString('utf8'))
    assert.equal(json.Crypto.kdfparams.n, 1024)
    assert.ok(!before.toString('utf8').includes('junk'))
  })

  it('stays an ethers keystore: our native scrypt and ethers\' JavaScript one read each other\'s files', async () => {
    // ethers' *sync* functions keep its own JavaScript scrypt; the async ones use the node:crypto one we register
    const path = join(dir, 'keystore.json')
    await createKeystore(path, PHRASE, 'pw', CHEAP)
    const wallet = Wallet.fromEncryptedJsonSync(await readFile(path, 'utf8'), 'pw')
    assert.equal(wallet.address, ADDRESS)
    const other = join(dir, 'ethers.json')
    const account = { address: wallet.address, privateKey: wallet.privateKey, mnemonic: { entropy: Mnemonic.fromPhrase(PHRASE).entropy, path: "m/44'/60'/0'/0/0", locale: 'en' } }
    await writeFile(other, encryptKeystoreJsonSync(account, 'pw2', { scrypt: { N: 1024 } }))
    assert.equal(await unlockKeystore(other, 'pw2'), PHRASE)
    await assert.rejects(unlockKeystore(other, 'pw'), code('WRONG_PASSWORD'))
  })

  it('wrong password is WRONG_PASSWORD and leaves the file byte-equal', async () => {
    const path = join(dir, 'keystore.json')
    await createKeystore(path, PHRASE, 'right', CHEAP)
    const before = await snapshot(dir)
    await assert.rejects(unlockKeystore(path, 'S3cret-guess'), (err: unknown) => {
      code('WRONG_PASSWORD')(err)
      assert.ok(isTokenimError(err))
      assert.ok(!err.message.includes('S3cret') && !JSON.stringify(err.info).includes('S3cret'))
      return true
    })
    assert.deepEqual(await snapshot(dir), before)
  })

  it('missing is NO_IDENTITY, garbage is KEYSTORE_CORRUPT, hostile scrypt cost is refused', async () => {
    const path = join(dir, 'keystore.json')
    await assert.rejects(unlockKeystore(path, 'pw'), code('NO_IDENTITY'))
    await writeFile(path, '{not json')
    await assert.rejects(unlockKeystore(path, 'pw'), code('KEYSTORE_CORRUPT'))
    await writeFile(path, JSON.stringify({ version: 3 }))
    await assert.rejects(unlockKeystore(path, 'pw'), code('KEYSTORE_CORRUPT'))
    await rm(path)
    await createKeystore(path, PHRASE, 'pw', CHEAP)
    const json = JSON.parse(await readFile(path, 'utf8'))
    json.Crypto.kdfparams.n = 2 ** 30
    await writeFile(path, JSON.stringify(json))
    await assert.rejects(unlockKeystore(path, 'pw'), code('KEYSTORE_CORRUPT'))
  })

  it('refuses an empty password and a bad mnemonic before writing', async () => {
    const path = join(dir, 'keystore.json')
    await assert.rejects(createKeystore(path, PHRASE, '', CHEAP), code('EMPTY_PASSWORD'))
    await assert.rejects(createKeystore(path, PHRASE.replace('junk', 'test'), 'pw', CHEAP), code('INVALID_MNEMONIC_CHECKSUM'))
    assert.deepEqual(await readdir(dir), [])
  })

  it('checkPrivateFileMode', async () => {
    const path = join(dir, 'f')
    await writeFile(path, 'x', { mode: 0o600 })
    assert.deepEqual(await checkPrivateFileMode(path), { ok: true, mode: 0o600 })
    await chmod(path, 0o644)
    assert.equal((await checkPrivateFileMode(path)).ok, false)
    await assert.rejects(checkPrivateFileMode(path, { throwIfInsecure: true }), code('INSECURE_FILE_MODE'))
    await assert.rejects(checkPrivateFileMode(join(dir, 'missing')), code('NO_SUCH_FILE'))
  })
})

describe('identity/identity', () => {
  let dir: string
  beforeEach(async () => { dir = join(await mkdtemp(join(tmpdir(), 'tokenim-id-')), 'data') })
  afterEach(async () => { await rm(join(dir, '..'), { recursive: true, force: true }) })

  it('imports a mnemonic, writes private files, opens with the password', async () => {
    assert.equal(await identityExists(dir), false)
    const created = await createIdentity(dir, { phrase: ` ${PHRASE} `, password: 'pw', ...CHEAP })
    assert.equal(created.address, ADDRESS)
    assert.equal(created.mnemonic, undefined)
    assert.match(created.peerId, /^12D3KooW/)
    assert.deepEqual((await readdir(dir)).sort(), ['device.key', 'identity.json', 'keystore.json'])
    for (const f of ['device.key', 'identity.json', 'keystore.json']) {
      assert.equal((await stat(join(dir, f))).mode & 0o777, 0o600, f)
    }
    assert.equal((await stat(dir)).mode & 0o777, 0o700)
    assert.deepEqual(await readIdentityPublic(dir), { address: ADDRESS, peerId: created.peerId })
    assert.deepEqual(JSON.parse(await readFile(join(dir, 'identity.json'), 'utf8')), { version: 1, address: ADDRESS, peerId: created.peerId })

    const opened = await openIdentity(dir, 'pw')
    assert.equal(opened.address, ADDRESS)
    assert.equal(opened.wallet.address, ADDRESS)
    assert.equal(opened.peerId, created.peerId)
    assert.equal(opened.deviceKey.type, 'Ed25519')
    assert.deepEqual(opened.keys.messaging, deriveKeys(PHRASE).messaging)
  })

  it('a keystore prepared ahead (prepareKeystore) writes nothing; createIdentity writes it, and it opens with the password', async () => {
    const keystore = await prepareKeystore({ phrase: PHRASE, password: 'pw', ...CHEAP })
    assert.equal(keystore.address, ADDRESS)
    assert.equal(await identityExists(dir), false)
    await assert.rejects(createIdentity(dir, { phrase: 'legal winner thank year wave sausage worth useful legal winner thank yellow', password: 'pw', keystore }), code('IDENTITY_MISMATCH'))
    assert.equal(await identityExists(dir), false, 'nothing written for the wrong phrase')
    const created = await createIdentity(dir, { phrase: PHRASE, password: 'pw', keystore })
    assert.equal(created.address, ADDRESS)
    assert.equal(await readFile(join(dir, 'keystore.json'), 'utf8'), keystore.json)
    assert.equal((await openIdentity(dir, 'pw')).address, ADDRESS)
    await assert.rejects(prepareKeystore({ phrase: 'not a mnemonic', password: 'pw', ...CHEAP }))
  })

  it('generates a mnemonic when none is given and returns it once', async () => {
    const created = await createIdentity(dir, { words: 24, password: 'pw', ...CHEAP })
    assert.ok(created.mnemonic !== undefined)
    assert.equal(created.mnemonic.split(' ').length, 24)
    assert.equal(parseMnemonic(created.mnemonic), created.mnemonic)
    assert.equal(deriveKeys(created.mnemonic).address, created.address)
    assert.ok(!(await readFile(join(dir, 'keystore.json'), 'utf8')).includes(created.mnemonic.split(' ')[0] + ' '))
  })

  it('init twice is IDENTITY_EXISTS and changes nothing', async () => {
    await createIdentity(dir, { phrase: PHRASE, password: 'pw', ...CHEAP })
    const before = await snapshot(dir)
    await assert.rejects(createIdentity(dir, { password: 'other', ...CHEAP }), code('IDENTITY_EXISTS'))
    await assert.rejects(createIdentity(dir, { phrase: PHRASE, password: 'pw', ...CHEAP }), code('IDENTITY_EXISTS'))
    assert.deepEqual(await snapshot(dir), before)
  })

  it('wrong password on open: WRONG_PASSWORD, nothing changes', async () => {
    await createIdentity(dir, { phrase: PHRASE, password: 'pw', ...CHEAP })
    const before = await snapshot(dir)
    await assert.rejects(openIdentity(dir, 'nope'), code('WRONG_PASSWORD'))
    assert.deepEqual(await snapshot(dir), before)
  })

  it('no identity: NO_IDENTITY for open and readIdentityPublic', async () => {
    await assert.rejects(openIdentity(dir, 'pw'), code('NO_IDENTITY'))
    await assert.rejects(readIdentityPublic(dir), code('NO_IDENTITY'))
  })

  it('a bad mnemonic on init writes nothing', async () => {
    await assert.rejects(createIdentity(dir, { phrase: 'test test', password: 'pw', ...CHEAP }), code('INVALID_MNEMONIC'))
    assert.equal(await identityExists(dir), false)
  })

  it('identity.json is rebuilt by open when missing, and read from keystore + device key meanwhile', async () => {
    const created = await createIdentity(dir, { phrase: PHRASE, password: 'pw', ...CHEAP })
    await rm(join(dir, 'identity.json'))
    assert.deepEqual(await readIdentityPublic(dir), { address: ADDRESS, peerId: created.peerId })
    await openIdentity(dir, 'pw')
    assert.deepEqual(JSON.parse(await readFile(join(dir, 'identity.json'), 'utf8')), { version: 1, address: ADDRESS, peerId: created.peerId })
  })

  it('identity.json naming another address is IDENTITY_MISMATCH', async () => {
    const created = await createIdentity(dir, { phrase: PHRASE, password: 'pw', ...CHEAP })
    await writeFile(join(dir, 'identity.json'), JSON.stringify({ version: 1, address: '0x' + '11'.repeat(20), peerId: created.peerId }))
    await assert.rejects(openIdentity(dir, 'pw'), code('IDENTITY_MISMATCH'))
  })
})
