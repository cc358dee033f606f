import assert from 'node:assert/strict'
import { join } from 'node:path'
import { writeChainProfile } from '../../src/chain/index.ts'
import { createIdentity } from '../../src/identity/index.ts'
import { openStore } from '../../src/store/index.ts'
import { makeHistory } from '../backup/helpers.ts'
import { PASSWORD, json, run } from '../cli/helpers.ts'
import { Harness } from './helpers.ts'

describe('tokenim backup / backups (child process, devnet)', function () {
  this.timeout(90_000)
  const h = new Harness()
  after(async () => { await h.cleanup() })

  it('backup --json prints the contract shape; backups --json lists it anchored and pinned', async () => {
    const devnet = await h.chain()
    const dir = await h.dir()
    await createIdentity(dir, { password: PASSWORD, scryptN: 1024 })
    await writeChainProfile(join(dir, 'chain.json'), devnet.profile)
    const store = await openStore(join(dir, 'store'))
    await store.addMessages(makeHistory({ conversations: 3, messages: 40, seed: 31 }))
    await store.close()

    const r = await run(['--data-dir', dir, 'backup', '--json', '--out', join(dir, 'b.car')], { timeoutMs: 60_000 })
    assert.equal(r.code, 0, r.stderr)
    const b = json(r)
    for (const k of ['version', 'cid', 'digest', 'txHash', 'messages', 'bytesTotal', 'bytesNew', 'replicas', 'file', 'anchored', 'pending']) assert.ok(k in b, `missing ${k}: ${r.stdout}`)
    assert.equal(b.version, 1)
    assert.equal(b.messages, 40)
    assert.equal(b.anchored, true)
    assert.equal(b.outcome, 'anchored')
    assert.deepEqual(b.replicas, [])

    const l = await run(['--data-dir', dir, 'backups', '--json'], { timeoutMs: 60_000 })
    assert.equal(l.code, 0, l.stderr)
    const list = json<Array<Record<string, unknown>>>(l)
    assert.equal(list.length, 1)
    assert.equal(list[0].version, 1)
    assert.equal(list[0].cid, b.cid)
    assert.equal(list[0].status, 'anchored')
    assert.equal(list[0].pinned, true)
    assert.equal(list[0].txHash, b.txHash)

    // a chain profile pointing at a closed port: made locally, pending, distinct exit code
    await writeChainProfile(join(dir, 'dead.json'), { ...devnet.profile, rpc: 'http://127.0.0.1:9' })
    const q = await run(['--data-dir', dir, '--chain', join(dir, 'dead.json'), 'backup', '--json'], { timeoutMs: 60_000 })
    assert.equal(q.code, 10, q.stderr)
    assert.equal(json(q).outcome, 'pending')
    assert.match(q.stderr, /ANCHOR_PENDING/)
  })
})
