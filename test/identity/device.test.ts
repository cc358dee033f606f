import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import { HDNodeWallet, Wallet } from 'ethers'
import { isTokenimError } from '../../src/errors.ts'
import {
  createDeviceKey,
  decodeDeviceRecord,
  deviceRecordDhtSelector,
  deviceRecordDhtValidator,
  deviceRecordKey,
  devicePeerId,
  encodeDeviceRecord,
  loadDeviceKey,
  loadOrCreateDeviceKey,
  selectDeviceRecord,
  signDeviceRecord,
  verifyDeviceRecord
} from '../../src/identity/index.ts'
import type { DeviceRecord } from '../../src/identity/index.ts'

const PHRASE = 'test test test test test test test test test test test junk'
const ADDRESS = '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266'

function code (c: string): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(isTokenimError(err), `expected TokenimError, got ${String(err)}`)
    assert.equal(err.code, c)
    return true
  }
}

describe('identity/device key', () => {
  let dir: string
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'tokenim-device-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('creates an Ed25519 key once (0600) and loads the same key again', async () => {
    const a = await loadOrCreateDeviceKey(dir)
    assert.equal(a.type, 'Ed25519')
    const st = await stat(join(dir, 'device.key'))
    assert.equal(st.mode & 0o777, 0o600)
    const b = await loadOrCreateDeviceKey(dir)
    assert.equal(devicePeerId(a), devicePeerId(b))
    assert.ok(devicePeerId(a).startsWith('12D3KooW'))
  })

  it('createDeviceKey refuses to overwrite unless asked, and overwrite gives a new peer id', async () => {
    const a = await createDeviceKey(dir)
    await assert.rejects(createDeviceKey(dir), code('DEVICE_KEY_EXISTS'))
    const b = await createDeviceKey(dir, { overwrite: true })
    assert.notEqual(devicePeerId(a), devicePeerId(b))
    assert.equal(devicePeerId(await loadDeviceKey(dir)), devicePeerId(b))
  })

  it('concurrent loadOrCreate calls agree on one key', async () => {
    const keys = await Promise.all([1, 2, 3, 4].map(async () => await loadOrCreateDeviceKey(dir)))
    const ids = new Set(keys.map(devicePeerId))
    assert.equal(ids.size, 1)
  })

  it('missing and corrupt keys have codes', async () => {
    await assert.rejects(loadDeviceKey(dir), code('NO_DEVICE_KEY'))
    await writeFile(join(dir, 'device.key'), 'garbage', { mode: 0o600 })
    await assert.rejects(loadDeviceKey(dir), code('DEVICE_KEY_CORRUPT'))
    await assert.rejects(loadOrCreateDeviceKey(dir), code('DEVICE_KEY_CORRUPT'))
    assert.equal(await readFile(join(dir, 'device.key'), 'utf8'), 'garbage')
  })
})

describe('identity/device record', () => {
  const wallet = HDNodeWallet.fromPhrase(PHRASE, undefined, "m/44'/60'/0'/0/0")
  const messagingKey = new Uint8Array(32).fill(7)
  let peerId: string
  let record: DeviceRecord
  const now = 1_700_000_000_000

  before(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tokenim-device-'))
    peerId = devicePeerId(await loadOrCreateDeviceKey(dir))
    await rm(dir, { recursive: true, force: true })
    record = await signDeviceRecord(wallet, {
      address: ADDRESS.toLowerCase(),
      peerId,
      messagingKey,
      multiaddrs: ['/ip4/127.0.0.1/tcp/4001'],
      seq: 3,
      time: now
    })
  })

  it('signs with the wallet and verifies', () => {
    assert.equal(wallet.address, ADDRESS)
    assert.equal(record.v, 1)
    assert.equal(record.address, ADDRESS, 'address is checksummed')
    assert.match(record.signature, /^0x[0-9a-f]{130}$/)
    assert.equal(verifyDeviceRecord(record, { now }), record)
  })

  it('encodes and decodes deterministically', () => {
    const bytes = encodeDeviceRecord(record)
    assert.deepEqual(encodeDeviceRecord(record), bytes)
    const back = decodeDeviceRecord(bytes)
    assert.deepEqual(back, record)
    verifyDeviceRecord(back, { now })
  })

  it('rejects a record signed by another wallet (forged)', async () => {
    const other = Wallet.createRandom()
    const forged = await signDeviceRecord(other, { ...record, address: other.address })
    verifyDeviceRecord(forged, { now })
    assert.throws(() => verifyDeviceRecord({ ...forged, address: ADDRESS }, { now }), code('FORGED_DEVICE_RECORD'))
  })

  it('rejects any field changed after signing', () => {
    assert.throws(() => verifyDeviceRecord({ ...record, seq: 4 }, { now }), code('FORGED_DEVICE_RECORD'))
    assert.throws(() => verifyDeviceRecord({ ...record, multiaddrs: ['/ip4/10.0.0.1/tcp/1'] }, { now }), code('FORGED_DEVICE_RECORD'))
    assert.throws(() => verifyDeviceRecord({ ...record, messagingKey: new Uint8Array(32) }, { now }), code('FORGED_DEVICE_RECORD'))
  })

  it('refuses to sign for an address that is not the wallet', async () => {
    await assert.rejects(signDeviceRecord(wallet, { ...record, address: Wallet.createRandom().address }), code('INVALID_DEVICE_RECORD'))
  })

  it('rejects records from the future beyond the skew', () => {
    assert.throws(() => verifyDeviceRecord(record, { now: now - 6 * 60 * 1000 }), code('DEVICE_RECORD_FROM_FUTURE'))
    verifyDeviceRecord(record, { now: now - 4 * 60 * 1000 })
    assert.throws(() => verifyDeviceRecord(record, { now: now - 2000, maxSkewMs: 1000 }), code('DEVICE_RECORD_FROM_FUTURE'))
  })

  it('rejects malformed records with INVALID_DEVICE_RECORD', () => {
    const bad: Array<Partial<Record<keyof DeviceRecord, unknown>>> = [
      { messagingKey: new Uint8Array(31) },
      { address: '0x1234' },
      { address: ADDRESS.toLowerCase() },
      { peerId: 'not-a-peer-id' },
      { seq: -1 },
      { seq: 1.5 },
      { time: Number.MAX_SAFE_INTEGER + 1 },
      { signature: '0x' + 'ab'.repeat(64) },
      { signature: record.signature.toUpperCase() },
      { multiaddrs: ['ip4/1.2.3.4'] },
      { v: 2 }
    ]
    for (const change of bad) {
      const r = { ...record, ...change } as DeviceRecord
      assert.throws(() => verifyDeviceRecord(r, { now }), code('INVALID_DEVICE_RECORD'), JSON.stringify(Object.keys(change)))
    }
  })

  it('rejects garbage, oversized, extra-field and non-canonical bytes', () => {
    assert.throws(() => decodeDeviceRecord(new Uint8Array([1, 2, 3, 255])), code('INVALID_DEVICE_RECORD'))
    assert.throws(() => decodeDeviceRecord(new Uint8Array(0)), code('INVALID_DEVICE_RECORD'))
    assert.throws(() => decodeDeviceRecord(dagCbor.encode([1, 2])), code('INVALID_DEVICE_RECORD'))
    assert.throws(() => decodeDeviceRecord(new Uint8Array(9000)), code('INVALID_DEVICE_RECORD'))
    assert.throws(() => decodeDeviceRecord(dagCbor.encode({ ...record, extra: 1 })), code('INVALID_DEVICE_RECORD'))
    const { signature: _s, ...noSig } = record
    assert.throws(() => decodeDeviceRecord(dagCbor.encode(noSig)), code('INVALID_DEVICE_RECORD'))
  })

  it('DHT key is /tokenim/<lowercase address>', () => {
    assert.equal(new TextDecoder().decode(deviceRecordKey(ADDRESS)), '/tokenim/0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266')
    assert.deepEqual(deviceRecordKey(ADDRESS.toLowerCase()), deviceRecordKey(ADDRESS))
    assert.throws(() => deviceRecordKey('nope'), code('INVALID_DEVICE_RECORD'))
  })

  it('selects the highest seq, ties by later time', async () => {
    const mk = async (seq: number, time: number): Promise<DeviceRecord> => await signDeviceRecord(wallet, { ...record, seq, time })
    const rs = [await mk(1, now), await mk(5, now), await mk(5, now + 10), await mk(2, now + 100)]
    assert.equal(selectDeviceRecord(rs), 2)
    assert.equal(selectDeviceRecord([]), -1)
    assert.equal(selectDeviceRecord([rs[0]]), 0)
  })

  it('DHT validator and selector', async () => {
    const newer = await signDeviceRecord(wallet, { ...record, seq: 9, time: Date.now() })
    const older = await signDeviceRecord(wallet, { ...record, seq: 2, time: Date.now() - 1000 })
    const key = deviceRecordKey(ADDRESS)
    await deviceRecordDhtValidator(key, encodeDeviceRecord(newer))
    await assert.rejects(deviceRecordDhtValidator(deviceRecordKey(Wallet.createRandom().address), encodeDeviceRecord(newer)), code('INVALID_DEVICE_RECORD'))
    await assert.rejects(deviceRecordDhtValidator(key, new Uint8Array([9, 9])), code('INVALID_DEVICE_RECORD'))
    assert.equal(deviceRecordDhtSelector(key, [encodeDeviceRecord(older), new Uint8Array([1]), encodeDeviceRecord(newer)]), 2)
  })
})
