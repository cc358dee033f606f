import assert from 'node:assert/strict'
import { chmod, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { META_ANCHOR_ERRORS } from '../../src/backup/job/index.ts'
import { RegistryClient, cidFromDigest, startDevnet } from '../../src/chain/index.ts'
import type { Devnet } from '../../src/chain/index.ts'
import { runDoctor } from '../../src/cli/commands/doctor.ts'
import type { DoctorReport } from '../../src/cli/commands/doctor.ts'
import { createIdentity, deriveKeys } from '../../src/identity/index.ts'
import { openStore } from '../../src/store/index.ts'
import { makeHistory, peer } from '../backup/helpers.ts'
import { json, run, TempDirs } from '../cli/helpers.ts'
import { breakCount } from '../repair/helpers.ts'

const byName = (r: DoctorReport, name: string): DoctorReport['checks'][number] => {
  const c = r.checks.find(x => x.name === name)
  assert.ok(c !== undefined, `no check ${name} in ${JSON.stringify(r.checks.map(x => x.name))}`)
  return c
}

describe('tokenim doctor', function () {
  this.timeout(120_000)
  const dirs = new TempDirs()
  let devnet: Devnet

  /** a data dir with an identity and a store of 40 messages; chain.json = the devnet's profile */
  async function dataDir (): Promise<string> {
    const dir = await dirs.make('tokenim-doctor-')
    await createIdentity(dir, { password: 'pw', scryptN: 1024 })
    const store = await openStore(join(dir, 'store'))
    await store.addMessages(makeHistory({ conversations: 2, messages: 40, seed: 5 }))
    await store.close()
    await writeFile(join(dir, 'chain.json'), JSON.stringify(devnet.profile), { mode: 0o600 })
    return dir
  }

  before(async () => { devnet = await startDevnet() })
  after(async () => {
    await devnet?.stop()
    await dirs.cleanup()
  })

  it('a healthy data dir with a devnet profile is ok, without the password', async () => {
    const dir = await dataDir()
    const r = await runDoctor({ dataDir: dir })
    assert.equal(r.ok, true, JSON.stringify(r.checks, null, 2))
    for (const name of ['identity', 'keystore', 'data-dir', 'chain-profile', 'chain-rpc', 'registry', 'wallet', 'store']) {
      assert.equal(byName(r, name).level, 'ok', `${name}: ${byName(r, name).message}`)
    }
    assert.equal(byName(r, 'peers').level, 'skip')
    assert.match(byName(r, 'peers').message, /daemon is not running/)
    assert.match(byName(r, 'store').message, /40 message/)
    assert.equal(byName(r, 'backups').level, 'warn')
    assert.match(byName(r, 'backups').message, /tokenim backup/)
  })

  it('a keystore readable by others fails with the chmod to run', async () => {
    const dir = await dataDir()
    await chmod(join(dir, 'keystore.json'), 0o644)
    const r = await runDoctor({ dataDir: dir })
    assert.equal(r.ok, false)
    const c = byName(r, 'keystore')
    assert.equal(c.ok, false)
    assert.equal(c.code, 'INSECURE_FILE_MODE')
    assert.match(c.message, /keystore\.json \(mode 644\)/)
    assert.ok(c.message.includes(`chmod 600 ${join(dir, 'keystore.json')}`))
  })

  it('a profile pointing at a dead RPC fails the chain check quickly (CHAIN_UNREACHABLE)', async () => {
    const dir = await dataDir()
    await writeFile(join(dir, 'chain.json'), JSON.stringify({ ...devnet.profile, rpc: 'http://127.0.0.1:9' }))
    const t0 = Date.now()
    const r = await runDoctor({ dataDir: dir })
    const ms = Date.now() - t0
    assert.ok(ms < 5_000, `doctor took ${ms} ms`)
    const c = byName(r, 'chain-rpc')
    assert.equal(c.ok, false)
    assert.equal(c.code, 'CHAIN_UNREACHABLE')
    assert.match(c.message, /unreachable/)
    assert.equal(byName(r, 'registry').level, 'skip')
    assert.equal(byName(r, 'store').level, 'ok')
  })

  it('a pending backup and a damaged store are reported with what to do', async () => {
    const dir = await dataDir()
    const store = await openStore(join(dir, 'store'))
    await store.putBackup({ version: 1, cid: 'bafyreia2ejq6jw6x6zuu6xwcixeome3pmbxf6da2phinrv4qxs7parqefy', digest: '0x1a2261e4dbd7f6694f5ec245c8e6136f606e5f0c1a79d0d8d790bcbef046042e', anchored: false, pending: true, createdAt: Date.now(), messages: 40, bytesTotal: 1000, bytesNew: 1000, replicas: [] })
    await store.close()
    await breakCount(join(dir, 'store'), peer(0), 3)
    const r = await runDoctor({ dataDir: dir })
    assert.equal(r.ok, false)
    const b = byName(r, 'backups')
    assert.equal(b.ok, false)
    assert.match(b.message, /version 1 is pending/)
    assert.match(b.message, /tokenim backup --anchor-pending/)
    assert.doesNotMatch(b.message, /anchor-request/)
    const s = byName(r, 'store')
    assert.equal(s.code, 'STORE_CORRUPT')
    assert.match(s.message, /summary count 3/)
    assert.match(s.message, /tokenim repair/)
  })

  it('a pending version: the relay commands when the wallet could not pay, --anchor-pending once the chain has it; a conflict fails', async () => {
    const dir = await dirs.make('tokenim-doctor-')
    const phrase = 'legal winner thank year wave sausage worth useful legal winner thank yellow'
    await createIdentity(dir, { phrase, password: 'pw', scryptN: 1024 })
    await writeFile(join(dir, 'chain.json'), JSON.stringify(devnet.profile), { mode: 0o600 })
    const digest = '0x1a2261e4dbd7f6694f5ec245c8e6136f606e5f0c1a79d0d8d790bcbef046042e'
    const rec = { version: 1, cid: cidFromDigest(digest), digest, anchored: false, pending: true, createdAt: Date.now(), messages: 40, bytesTotal: 1000, bytesNew: 1000, replicas: [] }
    const withStore = async (fn: (store: Awaited<ReturnType<typeof openStore>>) => Promise<void>): Promise<void> => {
      const store = await openStore(join(dir, 'store'))
      try {
        await fn(store)
      } finally {
        await store.close()
      }
    }
    await withStore(async (store) => {
      await store.putBackup(rec)
      await store.setMeta(META_ANCHOR_ERRORS, { 1: { code: 'INSUFFICIENT_FUNDS', message: 'the wallet cannot pay the gas', at: Date.now() } })
    })
    const unpaid = byName(await runDoctor({ dataDir: dir }), 'backups')
    assert.equal(unpaid.level, 'fail')
    assert.match(unpaid.message, /tokenim anchor-request --out FILE/)
    assert.match(unpaid.message, /tokenim relay FILE/)

    // anchored meanwhile (by a relayer): doctor says how to record it
    const chain = new RegistryClient(devnet.profile, deriveKeys(phrase).wallet)
    try {
      await chain.ensureFunds(deriveKeys(phrase).address)
      await chain.anchor(1, digest)
    } finally {
      chain.close()
    }
    const relayed = byName(await runDoctor({ dataDir: dir }), 'backups')
    assert.equal(relayed.level, 'fail')
    assert.match(relayed.message, /the chain already has version 1/)
    assert.match(relayed.message, /tokenim backup --anchor-pending/)

    await withStore(async (store) => {
      await store.putBackup({ ...rec, pending: false })
      await store.setMeta(META_ANCHOR_ERRORS, { 1: { code: 'ANCHOR_CONFLICT', message: 'another bundle', at: Date.now() } })
    })
    const conflict = byName(await runDoctor({ dataDir: dir }), 'backups')
    assert.deepEqual([conflict.level, conflict.code], ['fail', 'ANCHOR_CONFLICT'])
  })

  it('a store that was emptied or removed is reported against its marker (store.json)', async () => {
    const dir = await dataDir()
    await rm(join(dir, 'store'), { recursive: true })
    const gone = byName(await runDoctor({ dataDir: dir }), 'store')
    assert.equal(gone.code, 'STORE_CORRUPT', gone.message)
    assert.match(gone.message, /is gone.*recorded 40 message/)
    // a new, empty store in its place (what opening it would create) is consistent, but lost 40
    await (await openStore(join(dir, 'store'))).close()
    const emptied = byName(await runDoctor({ dataDir: dir }), 'store')
    assert.equal(emptied.code, 'STORE_CORRUPT', emptied.message)
    assert.match(emptied.message, /lost 40 messages/)
    assert.match(emptied.message, /tokenim repair/)
  })

  it('the command prints {ok, checks:[{name, ok, message}]} and exits non-zero on a failure', async () => {
    const dir = await dataDir()
    await writeFile(join(dir, 'chain.json'), JSON.stringify({ ...devnet.profile, rpc: 'http://127.0.0.1:9' }))
    const res = await run(['doctor', '--data-dir', dir, '--json'], { env: { TOKENIM_PASSWORD: '' } })
    const doc = json<DoctorReport>(res)
    assert.equal(res.code, 5, res.stderr)
    assert.equal(doc.ok, false)
    for (const c of doc.checks) {
      assert.equal(typeof c.name, 'string')
      assert.equal(typeof c.ok, 'boolean')
      assert.equal(typeof c.message, 'string')
    }
    assert.equal(doc.checks.find(c => c.name === 'chain-rpc')?.code, 'CHAIN_UNREACHABLE')
  })
})
