import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { offlineStatus } from '../../src/api/ops.ts'
import { META_ANCHOR_ERRORS, META_SCHEDULER } from '../../src/backup/job/index.ts'
import { openStore } from '../../src/store/index.ts'
import type { Store } from '../../src/store/index.ts'

describe('status: backup health', function () {
  let dir: string
  let store: Store
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tokenim-status-'))
    store = await openStore(join(dir, 'store'))
  })
  afterEach(async () => {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  const id = { address: '0x' + 'a1'.repeat(20), peerId: '12D3KooWtest' }
  const rec = (version: number, anchored: boolean, createdAt: number): Parameters<Store['putBackup']>[0] => ({
    version, cid: 'bafyreibarj25ghjq3jrk4pxk34c4crahprd3fo55neuivv4r53iyt3453q', digest: '0x' + '11'.repeat(32), anchored, pending: !anchored,
    createdAt, messages: 10, bytesTotal: 100, bytesNew: 10, replicas: [], ...(anchored ? { txHash: '0x' + '22'.repeat(32) } : {})
  })

  it('shows no backup, then the last anchored one, pending versions, their problem and the scheduler', async () => {
    const empty = await offlineStatus(id, store)
    assert.deepEqual(empty.backup, { pending: [] })

    await store.putBackup(rec(1, true, 1000))
    await store.putBackup(rec(2, false, 2000))
    await store.setMeta(META_ANCHOR_ERRORS, { 2: { code: 'CHAIN_UNREACHABLE', message: 'the chain RPC does not answer', at: 2500 } })
    await store.setMeta(META_SCHEDULER, { everyMs: 3_600_000, running: false, lastRunAt: 2000, lastSuccessAt: 1000, lastSuccessVersion: 1, failures: 1, problem: { code: 'PASSPHRASE_REQUIRED', message: 'needs the passphrase', at: 2000 } })
    const s = await offlineStatus(id, store)
    assert.equal(s.backup?.last?.version, 2)
    assert.equal(s.backup?.last?.status, 'pending')
    assert.equal(s.backup?.lastAnchored?.version, 1)
    assert.deepEqual(s.backup?.pending, [2])
    assert.deepEqual(s.backup?.problem, { version: 2, code: 'CHAIN_UNREACHABLE', message: 'the chain RPC does not answer', at: 2500 })
    assert.equal(s.backup?.scheduler?.problem?.code, 'PASSPHRASE_REQUIRED')
    assert.equal(s.backup?.scheduler?.lastSuccessVersion, 1)
  })
})
