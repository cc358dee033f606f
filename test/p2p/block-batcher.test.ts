import assert from 'node:assert/strict'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { blockBatcher } from '../../src/p2p/index.ts'

describe('p2p blockBatcher', () => {
  it('writes a batch once about maxBytes are queued, the rest on flush, in arrival order; a failed write reaches the caller', async () => {
    const batches: number[][] = []
    const b = blockBatcher({ putBatch: async (blocks) => { batches.push(blocks.map(x => x.bytes[0])) } }, 10)
    for (let i = 0; i < 7; i++) {
      const bytes = new Uint8Array(4).fill(i)
      await b.add(CID.createV1(raw.code, await sha256.digest(bytes)), bytes)
    }
    assert.deepEqual(batches, [[0, 1, 2], [3, 4, 5]])
    await b.flush()
    await b.flush() // nothing left: no empty batch
    assert.deepEqual(batches, [[0, 1, 2], [3, 4, 5], [6]])

    const failing = blockBatcher({ putBatch: async () => { throw new Error('disk full') } }, 1)
    const bytes = Uint8Array.of(1)
    await assert.rejects(failing.add(CID.createV1(raw.code, await sha256.digest(bytes)), bytes), /disk full/)
  })
})
