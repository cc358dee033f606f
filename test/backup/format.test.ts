import assert from 'node:assert/strict'
import * as dagCbor from '@ipld/dag-cbor'
import { tailChunks } from '../../src/backup/builder.ts'
import { checksumAddress } from '../../src/backup/index.ts'
import { decodeContacts, decodeHeader, decodeIndex, decodeManifest, decodeManifestNode, decodeSegment, decodeShard, decodeTopNode } from '../../src/backup/schema.ts'
import { open, seal } from '../../src/backup/seal.ts'
import { isTokenimError } from '../../src/errors.ts'
import { KEY, OTHER_KEY, prng } from './helpers.ts'

describe('backup: format pieces', function () {
  it('sealing is deterministic, key- and kind-separated, and authenticated', () => {
    const plain = dagCbor.encode({ type: 'segment', hello: 'world'.repeat(50) })
    const a = seal(KEY, 'segment', plain)
    assert.deepEqual(seal(KEY, 'segment', plain), a)
    assert.notDeepEqual(seal(OTHER_KEY, 'segment', plain), a)
    assert.notDeepEqual(seal(KEY, 'manifest', plain), a)
    assert.ok(a.length < plain.length, 'compressed')
    assert.deepEqual(open(KEY, 'segment', a, 1 << 20), plain)
    for (const [key, kind] of [[OTHER_KEY, 'segment'], [KEY, 'manifest']] as const) {
      assert.throws(() => open(key, kind, a, 1 << 20), (e: unknown) => isTokenimError(e, 'DECRYPT_FAILED'))
    }
    for (let i = 0; i < a.length; i += 7) {
      const b = Uint8Array.from(a)
      b[i] ^= 0x80
      assert.throws(() => open(KEY, 'segment', b, 1 << 20), (e: unknown) => isTokenimError(e))
    }
    assert.throws(() => open(KEY, 'segment', a, 10), (e: unknown) => isTokenimError(e, 'BACKUP_MALFORMED'))
  })

  it('refuses a backup key that is not 32 bytes', () => {
    const plain = dagCbor.encode({ type: 'segment' })
    assert.throws(() => seal(new Uint8Array(31), 'segment', plain), (e: unknown) => isTokenimError(e, 'INVALID_ARGUMENT'))
    assert.throws(() => open(new Uint8Array(33), 'segment', seal(KEY, 'segment', plain), 1 << 20), (e: unknown) => isTokenimError(e, 'INVALID_ARGUMENT'))
  })

  it('cuts tails into decreasing powers of two', () => {
    assert.deepEqual(tailChunks(200, 256), [128, 64, 8])
    assert.deepEqual(tailChunks(204, 256), [128, 64, 12])
    assert.deepEqual(tailChunks(15, 256), [15])
    assert.deepEqual(tailChunks(0, 256), [])
    assert.deepEqual(tailChunks(99, 100), [64, 32, 3])
    assert.deepEqual(tailChunks(5, 1), [5])
  })

  it('EIP-55 checksums', () => {
    assert.equal(checksumAddress('0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed'), '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed')
    assert.equal(checksumAddress('0xFB6916095CA1DF60BB79CE92CE3EA74C37C5D359'), '0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359')
  })

  it('decoders turn random input into typed errors only', () => {
    const rnd = prng(99)
    const samples: Uint8Array[] = []
    for (let i = 0; i < 2000; i++) {
      const n = Math.floor(rnd() * 200)
      samples.push(Uint8Array.from({ length: n }, () => Math.floor(rnd() * 256)))
    }
    // also valid CBOR of the wrong shapes
    for (const v of [null, 1, 'x', [], {}, { format: 'tokenim-backup', v: 1 }, { type: 'manifest' }, { type: 'index', shards: [[1, 1, 1, 0]] }, { type: 'shard', conversations: [] }, { type: 'contacts', contacts: [{}] }, { type: 'segment', msgs: [{}] }, { __proto__: { format: 'tokenim-backup' } }]) {
      samples.push(dagCbor.encode(v))
    }
    for (const s of samples) {
      for (const f of [
        () => decodeHeader(s, {}),
        () => decodeManifestNode(s, {}),
        () => decodeManifest(s, {}),
        () => decodeSegment(s, {}, 256),
        () => decodeTopNode(s, {}),
        () => decodeIndex(s, {}),
        () => decodeShard(s, {}, 256),
        () => decodeContacts(s, {}),
        () => open(KEY, 'segment', s, 1 << 20)
      ]) {
        assert.throws(f, (e: unknown) => isTokenimError(e), `input ${Buffer.from(s).toString('hex')}`)
      }
    }
  })
})
