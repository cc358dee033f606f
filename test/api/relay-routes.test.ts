import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Wallet } from 'ethers'
import { makeAnchorRequest } from '../../src/api/relay-routes.ts'
import { checkAnchorRequest, cidFromDigest } from '../../src/chain/index.ts'
import { isTokenimError } from '../../src/errors.ts'
import { openStore } from '../../src/store/index.ts'
import type { Store } from '../../src/store/index.ts'

const digest = (byte: string): string => '0x' + byte.repeat(32)
/** a chain profile whose RPC does not answer (a closed port) */
const DEAD = { rpc: 'http://127.0.0.1:9', chainId: 10, registry: '0x5FbDB2315678afecb367f032d93F642f64180aa3' }

describe('api: makeAnchorRequest (the owner\'s side of relayed anchoring)', () => {
  const wallet = Wallet.createRandom()
  let dir: string
  let store: Store

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tokenim-relay-routes-'))
    store = await openStore(join(dir, 'store'))
    const rec = (version: number, byte: string, pending: boolean, anchored = false): Parameters<Store['putBackup']>[0] => ({
      version, cid: cidFromDigest(digest(byte)), digest: digest(byte), anchored, pending, createdAt: Date.now(), messages: 1, bytesTotal: 1, bytesNew: 1, replicas: []
    })
    await store.putBackup(rec(1, '11', false, true))
    await store.putBackup(rec(2, '22', true))
    await store.putBackup(rec(3, '33', true))
    await store.putBackup(rec(4, '44', false))
  })
  after(async () => {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('signs the newest pending version, or the one asked for; with the chain unreachable it warns and signs anyway', async () => {
    const deadline = Math.floor(Date.now() / 1000) + 600
    const newest = await makeAnchorRequest({ store, wallet, profile: DEAD }, { deadline }, { chainTimeoutMs: 2_000 })
    assert.deepEqual([newest.request.version, newest.request.digest, newest.request.owner], [3, digest('33'), wallet.address])
    assert.deepEqual(newest.warnings.map(w => w.code), ['CHAIN_UNREACHABLE'])
    checkAnchorRequest(newest.request, DEAD)
    const asked = await makeAnchorRequest({ store, wallet, profile: DEAD }, { deadline, version: 2 }, { chainTimeoutMs: 2_000 })
    assert.equal(asked.request.digest, digest('22'))
  })

  it('NO_PENDING_BACKUP for an anchored, local-only or unknown version', async () => {
    for (const version of [1, 4, 9]) {
      await assert.rejects(makeAnchorRequest({ store, wallet, profile: DEAD }, { deadline: 2e9, version }),
        (e: unknown) => isTokenimError(e, 'NO_PENDING_BACKUP') && /pending: 3, 2/.test(e.message))
    }
  })
})
