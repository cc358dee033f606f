import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { chmod, mkdir, readFile, readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { getBlock } from '../../src/p2p/index.ts'
import { readBackup, readCar, rootCidFromDigest, writeCar } from '../../src/backup/index.ts'
import { acquireBackupLock, listBackups, runBackup, BACKUP_LOCK_FILE } from '../../src/backup/job/index.ts'
import { isTokenimError } from '../../src/errors.ts'
import { deriveBackupKey } from '../../src/identity/index.ts'
import type { StoredMessage } from '../../src/store/index.ts'
import { CHEAP_SCRYPT, Harness, deadProfile, fill } from './helpers.ts'

async function storeMessages (node: { store: { conversations: () => Promise<Array<{ peer: string }>>, messages: (c: string) => AsyncIterable<StoredMessage> } }): Promise<StoredMessage[]> {
  const out: StoredMessage[] = []
  for (const c of await node.store.conversations()) for await (const m of node.store.messages(c.peer)) out.push(m)
  return out
}

describe('backup job', function () {
  this.timeout(60_000)
  const h = new Harness()
  after(async () => { await h.cleanup() })
  afterEach(async () => { await h.stopNodes() })

  it('makes an anchored, recorded, pinned version and a CAR that reads back as the store', async () => {
    const devnet = await h.chain()
    const node = await h.node()
    await fill(node, 300)
    const chain = h.client(devnet.profile, node)
    const out = join(node.dataDir, 'b.car')
    const phases = new Set<string>()
    const r = await runBackup({ node, chain, out, onProgress: p => phases.add(p.phase) })
    assert.equal(r.outcome, 'anchored')
    assert.equal(r.version, 1)
    assert.equal(r.anchored, true)
    assert.equal(r.pending, false)
    assert.equal(r.messages, 300)
    assert.equal(r.bytesNew, r.bytesTotal)
    assert.match(r.txHash ?? '', /^0x[0-9a-f]{64}$/)
    assert.deepEqual(r.warnings, [])
    assert.ok(phases.has('build') && phases.has('anchor') && phases.has('done'))

    // chain: latest == version, digest == sha256(root block)
    const latest = await chain.latest(node.address)
    assert.equal(latest.version, 1)
    const rootBytes = await getBlock(node.p2p.helia.blockstore, rootCidFromDigest(r.digest), { offline: true })
    assert.equal(latest.digest, '0x' + createHash('sha256').update(rootBytes).digest('hex'))
    assert.equal(latest.digest, r.digest)

    // index and pin
    const rec = await node.store.getBackup(1)
    assert.equal(rec?.anchored, true)
    assert.equal(rec?.pending, false)
    assert.equal(rec?.file, out)
    assert.equal(await node.p2p.helia.pins.isPinned(rootCidFromDigest(r.digest)), true)

    // CAR: 0600, round trip equals the store
    assert.equal((await stat(out)).mode & 0o777, 0o600)
    const car = await readCar(out)
    try {
      assert.equal(car.root.toString(), r.cid)
      const { key } = await deriveBackupKey(node.identity.keys.backupRootKey)
      const reader = await readBackup({ root: car.root, blockstore: car.blockstore, backupKey: key, owner: node.address, version: 1 })
      const got: StoredMessage[] = []
      for await (const m of reader.messages()) got.push(m)
      assert.deepEqual(got, await storeMessages(node))
    } finally {
      await car.blockstore.close()
    }

    // the second version: next version, little new data, listed with the chain
    await fill(node, 3, 99, 1_800_000_000_000)
    const r2 = await runBackup({ node, chain })
    assert.equal(r2.version, 2)
    assert.equal(r2.outcome, 'anchored')
    assert.ok(r2.bytesNew < r2.bytesTotal / 2, `bytesNew ${r2.bytesNew} of ${r2.bytesTotal}`)
    const list = await listBackups({ store: node.store, pins: node.p2p.helia.pins, owner: node.address, chain })
    assert.equal(list.chainError, undefined)
    assert.deepEqual(list.backups.map(b => [b.version, b.status, b.pinned, b.anchored]), [[1, 'anchored', true, true], [2, 'anchored', true, true]])
    assert.equal(list.backups[1].txHash, r2.txHash)
  })

  it('chain down: recorded pending and pinned; --anchor-pending anchors it once the chain is up', async () => {
    const devnet = await h.chain()
    const node = await h.node()
    await fill(node, 120, 5)
    const down = h.client(deadProfile(devnet.profile), node)
    const r = await runBackup({ node, chain: down, replicas: ['0x' + '11'.repeat(20)] })
    assert.equal(r.outcome, 'pending')
    assert.equal(r.anchored, false)
    assert.equal(r.pending, true)
    assert.equal(r.version, 1)
    assert.ok(r.warnings.some(w => w.code === 'ANCHOR_PENDING' && w.message.includes('CHAIN_UNREACHABLE')), JSON.stringify(r.warnings))
    assert.deepEqual(r.replicas.map(x => [x.ok, x.code]), [[false, 'NOT_ANCHORED']])
    assert.equal(await node.p2p.helia.pins.isPinned(rootCidFromDigest(r.digest)), true)
    const rec = await node.store.getBackup(1)
    assert.equal(rec?.pending, true)
    assert.equal(rec?.anchored, false)
    const listed = await listBackups({ store: node.store, pins: node.p2p.helia.pins, owner: node.address, chain: down })
    assert.equal(listed.backups[0].status, 'pending')
    assert.equal(listed.backups[0].problem?.code, 'CHAIN_UNREACHABLE')
    assert.equal(listed.chainError?.code, 'CHAIN_UNREACHABLE')

    const up = h.client(devnet.profile, node)
    const a = await runBackup({ node, chain: up, anchorPending: true })
    assert.deepEqual(a.versions.map(v => [v.version, v.anchored]), [[1, true]])
    assert.deepEqual(a.pending, [])
    assert.equal(await up.digestOf(node.address, 1), r.digest)
    const after = await node.store.getBackup(1)
    assert.equal(after?.anchored, true)
    assert.equal(after?.pending, false)
    assert.ok(after?.txHash !== undefined)
  })

  it('refuses a second concurrent backup, an unwritable --out (no file), and keep-last unpins older versions', async () => {
    const node = await h.node()
    await fill(node, 50, 7)
    // another live process holds the lock → BACKUP_IN_PROGRESS
    const lock = await acquireBackupLock(node.dataDir)
    await assert.rejects(runBackup({ node, noAnchor: true }), (err: unknown) => isTokenimError(err, 'BACKUP_IN_PROGRESS'))
    await lock.release()
    // two at once in this process: exactly one runs
    const both = await Promise.allSettled([runBackup({ node, noAnchor: true }), runBackup({ node, noAnchor: true })])
    assert.equal(both.filter(b => b.status === 'fulfilled').length, 1)
    const refused = both.find(b => b.status === 'rejected')
    assert.ok(isTokenimError(refused?.reason, 'BACKUP_IN_PROGRESS'))
    // stale lock (dead pid) is taken over
    const { writeFile } = await import('node:fs/promises')
    await writeFile(join(node.dataDir, BACKUP_LOCK_FILE), '999999999\n')
    // the lock appears whole (pid written, then linked into place); a temporary left by a process killed
    // before its link is removed once its pid is gone, a live one's is left alone
    const deadTmp = `${BACKUP_LOCK_FILE}.999999999.0a1b2c.tmp`
    const liveTmp = `${BACKUP_LOCK_FILE}.${process.pid}.0a1b2c.tmp`
    await writeFile(join(node.dataDir, deadTmp), '999999999\n')
    await writeFile(join(node.dataDir, liveTmp), `${process.pid}\n`)
    const taken = await acquireBackupLock(node.dataDir)
    assert.equal((await readFile(taken.path, 'utf8')).trim(), String(process.pid))
    const names = await readdir(node.dataDir)
    assert.ok(!names.includes(deadTmp), 'a dead pid\'s temporary is removed')
    assert.ok(names.includes(liveTmp), 'a live pid\'s temporary stays')
    assert.deepEqual(names.filter(n => n.startsWith(`${BACKUP_LOCK_FILE}.${process.pid}.`) && n !== liveTmp), [], 'no temporary of ours is left')
    await taken.release()
    await rm(join(node.dataDir, liveTmp))
    await writeFile(join(node.dataDir, BACKUP_LOCK_FILE), '999999999\n')

    const ro = join(node.dataDir, 'ro')
    await mkdir(ro)
    await chmod(ro, 0o500)
    const target = join(ro, 'x.car')
    if (process.getuid?.() !== 0) {
      await assert.rejects(runBackup({ node, noAnchor: true, out: target }), (err: unknown) => isTokenimError(err, 'PERMISSION_DENIED'))
      assert.deepEqual(await readdir(ro), [])
    }
    await assert.rejects(runBackup({ node, noAnchor: true, out: join(node.dataDir, 'nope', 'x.car') }), (err: unknown) => isTokenimError(err, 'NO_SUCH_DIRECTORY'))

    // no-anchor versions, then keep-last 2
    const v2 = await runBackup({ node, noAnchor: true })
    await fill(node, 5, 8, 1_900_000_000_000)
    const v3 = await runBackup({ node, noAnchor: true })
    await fill(node, 5, 9, 1_950_000_000_000)
    const v4 = await runBackup({ node, noAnchor: true, keepLast: 2 })
    assert.equal(v2.outcome, 'local')
    assert.deepEqual([v2.version, v3.version, v4.version], [2, 3, 4])
    assert.deepEqual(v4.unpinned, [1, 2])
    const list = await listBackups({ store: node.store, pins: node.p2p.helia.pins, owner: node.address })
    assert.deepEqual(list.backups.map(b => [b.version, b.status, b.pinned]), [[1, 'local-only', false], [2, 'local-only', false], [3, 'local-only', true], [4, 'local-only', true]])
    // no chain profile and anchoring asked → NO_CHAIN_PROFILE
    await assert.rejects(runBackup({ node }), (err: unknown) => isTokenimError(err, 'NO_CHAIN_PROFILE'))
  })

  it('reads the CAR\'s blocks from level directly: the same file as through Helia; a block it lacks is MISSING_BLOCK and the version is taken back', async () => {
    const node = await h.node()
    await fill(node, 120, 11)
    const out = join(node.dataDir, 'direct.car')
    const r = await runBackup({ node, noAnchor: true, out })
    const viaHelia = join(node.dataDir, 'helia.car')
    await writeCar(rootCidFromDigest(r.digest), { get: (cid, o) => node.p2p.helia.blockstore.get(cid, { ...o, offline: true }) }, viaHelia)
    assert.deepEqual(await readFile(out), await readFile(viaHelia))

    const local = node.p2p.localBlocks()
    const lacking = { dataDir: node.dataDir, store: node.store, identity: node.identity, p2p: { helia: node.p2p.helia, localBlocks: () => ({ ...local, get: () => undefined }) } }
    const target = join(node.dataDir, 'lacking.car')
    await assert.rejects(runBackup({ node: lacking, noAnchor: true, out: target }), (err: unknown) => isTokenimError(err, 'MISSING_BLOCK'))
    assert.equal(await node.store.getBackup(r.version + 1), undefined)
    assert.ok(!(await readdir(node.dataDir)).includes('lacking.car'))
  })
})

describe('backup scheduler', function () {
  this.timeout(30_000)
  const h = new Harness()
  after(async () => { await h.cleanup() })

  it('backs up when something changed, skips when nothing did, and reports a pending problem', async () => {
    const { startBackupScheduler } = await import('../../src/backup/job/index.ts')
    const node = await h.node()
    await fill(node, 20, 41)
    const deps = { dataDir: node.dataDir, store: node.store, helia: node.p2p.helia, identity: node.identity }
    const s = startBackupScheduler({ deps, everyMs: 3_600_000, backup: { noAnchor: true }, firstRunMs: 3_600_000 })
    try {
      const st = await s.runNow()
      assert.equal(st.failures, 0)
      assert.equal(st.lastSuccessVersion, 1)
      await s.runNow()
      assert.equal((await node.store.backups()).length, 1, 'nothing changed: no new version')
      await fill(node, 2, 42, 1_990_000_000_000)
      assert.equal((await s.runNow()).lastSuccessVersion, 2)
    } finally {
      await s.stop()
    }
    const devnet = await h.chain()
    const down = h.client(deadProfile(devnet.profile), node)
    const s2 = startBackupScheduler({ deps, everyMs: 3_600_000, backup: { chain: down }, firstRunMs: 3_600_000, retryBaseMs: 60_000 })
    try {
      await fill(node, 2, 43, 1_995_000_000_000)
      const st = await s2.runNow()
      assert.equal(st.failures, 1)
      assert.equal(st.problem?.code, 'ANCHOR_PENDING')
      assert.ok((st.nextRunAt ?? 0) - Date.now() < 2 * 60_000, 'retried with backoff, well before the period')
      assert.deepEqual((await node.store.backups()).filter(b => b.pending === true).map(b => b.version), [3])
    } finally {
      await s2.stop()
    }
  })
})

describe('daemon backup services with a passphrase', function () {
  this.timeout(30_000)
  const h = new Harness()
  after(async () => { await h.cleanup() })

  it('scheduled backups use the daemon\'s passphrase; without it they report PASSPHRASE_REQUIRED', async () => {
    const { startBackupServices } = await import('../../src/api/backup-routes.ts')
    const node = await h.node()
    await fill(node, 10, 51)
    await runBackup({ node, noAnchor: true, passphrase: 'second factor', scryptCost: CHEAP_SCRYPT })
    await fill(node, 2, 52, 1_990_000_000_000)

    const without = await startBackupServices(node, { backupEveryMs: 3_600_000 })
    try {
      const st = await without.scheduler?.runNow()
      assert.equal(st?.problem?.code, 'PASSPHRASE_REQUIRED')
    } finally {
      await without.stop()
    }
    const withPassphrase = await startBackupServices(node, { backupEveryMs: 3_600_000, passphrase: 'second factor' })
    try {
      const st = await withPassphrase.scheduler?.runNow()
      assert.equal(st?.failures, 0)
      assert.equal(st?.lastSuccessVersion, 2)
    } finally {
      await withPassphrase.stop()
    }
  })
})
