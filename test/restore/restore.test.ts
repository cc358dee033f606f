import assert from 'node:assert/strict'
import * as cborg from 'cborg'
import { Level } from 'level'
import { copyFile, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { readBackup, readHeader, readManifestNode } from '../../src/backup/index.ts'
import { isTokenimError } from '../../src/errors.ts'
import { RegistryClient, startDevnet } from '../../src/chain/index.ts'
import type { Devnet } from '../../src/chain/index.ts'
import { generateMnemonic, readIdentityPublic } from '../../src/identity/index.ts'
import { openCarSource, openNetworkSource, restoreBackup, verifyRestoreSource, backupKeySource, RESTORE_MARKER_FILE } from '../../src/restore/index.ts'
import { openStore } from '../../src/store/index.ts'
import type { BlockSource, RestoreOptions } from '../../src/restore/index.ts'
import { deriveKeys } from '../../src/identity/index.ts'
import { DAG_PROTOCOL } from '../../src/p2p/index.ts'
import { NodeHarness } from '../node/helpers.ts'
import { Dirs, PASSWORD, carBlocks, flipByteInBlock, hasCode, makeOwner, restoredMessages, writeCarWithout, collect } from './helpers.ts'
import type { Owner } from './helpers.ts'

const SCRYPT_N = 1024

describe('restore: verify against the chain, then import', function () {
  this.timeout(60_000)
  let devnet: Devnet
  const dirs = new Dirs()
  const owners: Owner[] = []
  let chain: RegistryClient

  before(async () => {
    devnet = await startDevnet()
    chain = new RegistryClient(devnet.profile)
  })
  after(async () => {
    chain?.close()
    await Promise.all(owners.map(async o => { await o.cleanup() }))
    await dirs.cleanup()
    await devnet?.stop()
  })
  afterEach(async () => { await dirs.cleanup() })

  async function owner (o: Parameters<typeof makeOwner>[1]): Promise<Owner> {
    const w = await makeOwner(devnet.profile, o)
    owners.push(w)
    return w
  }

  async function withCar<T> (file: string, fn: (s: BlockSource) => Promise<T>): Promise<T> {
    const source = await openCarSource(file)
    try {
      return await fn(source)
    } finally {
      await source.close()
    }
  }

  async function restoreCar (file: string, o: Partial<RestoreOptions> & { phrase: string }): Promise<Awaited<ReturnType<typeof restoreBackup>> & { dataDir: string }> {
    const dataDir = o.dataDir ?? join(await dirs.make(), 'new-device')
    return await withCar(file, async source => ({
      ...await restoreBackup({ dataDir, password: PASSWORD, scryptN: SCRYPT_N, source, chain, ...o }),
      dataDir
    }))
  }

  async function isEmpty (dir: string): Promise<boolean> {
    try {
      return (await readdir(dir)).length === 0
    } catch {
      return true
    }
  }

  it('restores a CAR end to end: identical history, keystore, new device key, no marker left', async () => {
    const alice = await owner({ messages: 1200, conversations: 5, seed: 11 })
    await alice.env.store.setContact((await alice.messages())[0].conversation, 'Bob')
    const v1 = await alice.backup(1)
    const expected = await alice.messages()
    const res = await restoreCar(v1.file, { phrase: alice.phrase, batchSize: 200 })
    assert.equal(res.ok, true)
    assert.equal(res.version, 1)
    assert.equal(res.cid, v1.root.toString())
    assert.equal(res.anchored, true)
    assert.equal(res.messages, 1200)
    assert.equal(res.imported, 1200)
    assert.equal(res.conversations, 5)
    assert.equal(res.contacts, 1)
    assert.deepEqual(await restoredMessages(res.dataDir), expected)
    const id = await readIdentityPublic(res.dataDir)
    assert.equal(id.address, alice.address)
    const entries = await readdir(res.dataDir)
    assert.ok(entries.includes('keystore.json') && entries.includes('device.key'))
    assert.ok(!entries.includes('restore.json'))
  })

  it('a staged restore (plain segments written as their rows) leaves the very store records a restore of decoded messages does', async () => {
    // 1% of the messages with an attachment: segments of 50 both with one (decoded) and without (rows)
    const carol = await owner({ messages: 900, conversations: 6, seed: 21, attachments: 0.01 })
    const v1 = await carol.backup(1)
    const staged = await restoreCar(v1.file, { phrase: carol.phrase })
    const decodedDir = join(await dirs.make(), 'other-device')
    const decoded = await restoreCar(v1.file, { phrase: carol.phrase, dataDir: decodedDir, storePath: join(decodedDir, 'elsewhere') })
    assert.equal(staged.imported, 900)
    assert.equal(decoded.imported, 900)
    const dump = async (path: string): Promise<unknown> => {
      const db = new Level<string, Uint8Array>(path, { keyEncoding: 'utf8', valueEncoding: 'view' })
      await db.open()
      try {
        const out: Record<string, unknown> = {}
        for (const name of ['msg', 'msg-id']) out[name] = await db.sublevel<string, Uint8Array>(name, { valueEncoding: 'view' }).iterator().all()
        // the conversation summaries without their change tokens (random)
        out.conv = (await db.sublevel<string, Uint8Array>('conv', { valueEncoding: 'view' }).iterator().all())
          .map(([k, v]) => { const { rev: _r, run: _u, ...rest } = cborg.decode(v) as Record<string, unknown>; return [k, rest] })
        return out
      } finally {
        await db.close()
      }
    }
    const a = await dump(join(staged.dataDir, 'store')) as Record<string, unknown[]>
    const b = await dump(join(decodedDir, 'elsewhere')) as Record<string, unknown[]>
    assert.equal(a.msg.length, 900)
    assert.deepEqual(a, b)
  })

  it('a store that cannot be opened fails the restore only after the identity it began writing is complete (nothing left running)', async () => {
    const erin = await owner({ messages: 60, seed: 15 })
    const v1 = await erin.backup(1)
    const parent = await dirs.make()
    const dataDir = join(parent, 'new-device')
    // the store's place is under a regular file: openStore fails (a fault from outside the product)
    await writeFile(join(parent, 'a-file'), 'not a directory')
    await assert.rejects(restoreCar(v1.file, { phrase: erin.phrase, dataDir, storePath: join(parent, 'a-file', 'store') }), (err: unknown) => {
      assert.ok(isTokenimError(err), String(err))
      return true
    })
    // the keystore write started before the store was opened has finished by the time the call fails
    const entries = await readdir(dataDir)
    assert.ok(entries.includes('keystore.json') && entries.includes('identity.json'), entries.join(', '))
    assert.ok(entries.includes('restore.json'), 'the restore stays resumable')
  })

  it('refuses a CAR with a flipped byte, names the block, and leaves the target empty', async () => {
    const bob = await owner({ messages: 300, seed: 12 })
    const v1 = await bob.backup(1)
    const bad = await flipByteInBlock(v1.file, 3)
    const dataDir = join(await dirs.make(), 'target')
    await assert.rejects(restoreCar(v1.file, { phrase: bob.phrase, dataDir }), hasCode('BACKUP_TAMPERED', err => {
      assert.match(err.message, /nothing was restored/)
      const problems = err.info.problems as Array<{ cid?: string }>
      assert.ok(problems.some(p => p.cid === bad.toString()))
    }))
    assert.ok(await isEmpty(dataDir))
    // --salvage imports every other segment and lists the lost one
    const res = await restoreCar(v1.file, { phrase: bob.phrase, dataDir, salvage: true })
    assert.equal(res.ok, false)
    assert.equal(res.lost?.segments, 1)
    const lostCount = res.lost?.messages as number
    assert.ok(lostCount > 0)
    assert.equal(res.messages, 300 - lostCount)
    assert.ok(res.problems.some(p => p.cid === bad.toString() && p.messages === lostCount && p.conversation !== undefined))
    const all = await bob.messages()
    const got = await restoredMessages(dataDir)
    const ids = new Set(got.map(m => m.id))
    assert.equal(ids.size, got.length)
    assert.deepEqual(got, all.filter(m => ids.has(m.id)))
  })

  it('imports while it verifies; a segment that fails after batches were written leaves the target empty and reports no success', async () => {
    const dan = await owner({ messages: 900, conversations: 3, seed: 17 })
    const v1 = await dan.backup(1)
    const intact = join(await dirs.make(), 'intact.car')
    await copyFile(v1.file, intact)
    // the manifest's last segment, damaged: it is read after every other segment
    const node = await withCar(v1.file, async s => await readManifestNode(s.blockstore, await readHeader({ root: v1.root, blockstore: s.blockstore })))
    const last = node.segments[node.segments.length - 1]
    const blocks = await carBlocks(v1.file)
    const bad = await flipByteInBlock(v1.file, blocks.findIndex(b => b.cid.equals(last)))
    assert.ok(bad.equals(last))
    const dataDir = join(await dirs.make(), 'target')
    // what the target held when the damaged segment was asked for: the store being written, a staged marker
    let during: { entries: string[], marker: Record<string, unknown> } | undefined
    const source = await openCarSource(v1.file)
    const spied: BlockSource = {
      ...source,
      blockstore: {
        get: (cid, opts) => {
          if (!cid.equals(last) || during !== undefined) return source.blockstore.get(cid, opts)
          return (async () => {
            during = { entries: await readdir(dataDir), marker: JSON.parse(await readFile(join(dataDir, RESTORE_MARKER_FILE), 'utf8')) }
            return await (source.blockstore.get(cid, opts) as Promise<Uint8Array>)
          })()
        }
      }
    }
    let progress = 0
    try {
      await assert.rejects(restoreBackup({ dataDir, phrase: dan.phrase, password: PASSWORD, scryptN: SCRYPT_N, source: spied, chain, batchSize: 100, onProgress: () => { progress++ } }),
        hasCode('BACKUP_TAMPERED', err => {
          assert.match(err.message, /nothing was restored/)
          assert.ok((err.info.problems as Array<{ cid?: string }>).some(p => p.cid === last.toString()))
        }))
    } finally {
      await source.close()
    }
    assert.ok(progress > 0)
    assert.ok(during !== undefined && during.entries.includes('store'), JSON.stringify(during))
    assert.equal(during.marker.staged, true)
    assert.ok(await isEmpty(dataDir))
    // the intact bundle into the same dir: every message once
    const res = await restoreCar(intact, { phrase: dan.phrase, dataDir, batchSize: 100 })
    assert.equal(res.ok, true)
    assert.equal(res.resumed, false)
    assert.equal(res.imported, 900)
    assert.deepEqual(await restoredMessages(dataDir), await dan.messages())
  })

  it('a staged import a crash left behind counts for nothing: the rerun removes it and starts over', async () => {
    const gina = await owner({ messages: 400, conversations: 2, seed: 18 })
    const v1 = await gina.backup(1)
    const expected = await gina.messages()
    const dataDir = join(await dirs.make(), 'target')
    // as a process killed while it verified leaves the dir: a staged marker and a store holding what it
    // had imported — here a message that is not in the backup, which must not survive
    const store = await openStore(join(dataDir, 'store'))
    await store.addMessages([{ ...expected[0], id: 'not-in-the-backup' }])
    await store.close()
    await writeFile(join(dataDir, RESTORE_MARKER_FILE), JSON.stringify({ v: 1, owner: gina.address, cid: v1.root.toString(), version: 1, started: Date.now(), nextSegment: 3, imported: 1, staged: true }))
    const res = await restoreCar(v1.file, { phrase: gina.phrase, dataDir })
    assert.equal(res.ok, true)
    assert.equal(res.messages, 400)
    assert.equal(res.imported, 400)
    assert.deepEqual(await restoredMessages(dataDir), expected)
    assert.ok(!(await readdir(dataDir)).includes(RESTORE_MARKER_FILE))
  })

  it('refuses a rollback (CAR v2, chain at v3) unless --version 2 asks for it', async () => {
    const carol = await owner({ messages: 200, seed: 13 })
    await carol.backup(1)
    await carol.env.store.addMessages((await import('../backup/helpers.ts')).makeHistory({ conversations: 2, messages: 50, seed: 99, start: 1_800_000_000_000 }))
    const v2 = await carol.backup(2)
    await carol.env.store.addMessages((await import('../backup/helpers.ts')).makeHistory({ conversations: 2, messages: 50, seed: 98, start: 1_900_000_000_000 }))
    await carol.backup(3)
    await assert.rejects(restoreCar(v2.file, { phrase: carol.phrase }), hasCode('ROLLBACK_REFUSED', err => {
      assert.match(err.message, /bundle is version 2 but the chain's latest anchor for 0x[0-9a-fA-F]{40} is version 3; pass --version 2/)
    }))
    const res = await restoreCar(v2.file, { phrase: carol.phrase, version: 2 })
    assert.equal(res.ok, true)
    assert.equal(res.version, 2)
    assert.equal(res.messages, 250)
    // a CAR of v3 asked as --version 2 is a digest mismatch, not a restore of the wrong thing
    await assert.rejects(restoreCar(join(carol.env.dir, 'v3.car'), { phrase: carol.phrase, version: 2 }), hasCode('DIGEST_MISMATCH'))
  })

  it('gives wrong passphrase, wrong mnemonic, chain down and non-empty target their own codes', async () => {
    const dave = await owner({ messages: 120, seed: 14, passphrase: 'open sesame' })
    const v1 = await dave.backup(1)
    await assert.rejects(restoreCar(v1.file, { phrase: dave.phrase, passphrase: 'wrong one' }), hasCode('WRONG_PASSPHRASE'))
    await assert.rejects(restoreCar(v1.file, { phrase: dave.phrase }), hasCode('PASSPHRASE_REQUIRED'))
    await assert.rejects(restoreCar(v1.file, { phrase: generateMnemonic(12), passphrase: 'open sesame' }), hasCode('NO_BACKUP', err => {
      assert.match(err.message, /no backup anchored for 0x[0-9a-fA-F]{40}: check the mnemonic/)
    }))
    const down = new RegistryClient({ ...devnet.profile, rpc: 'http://127.0.0.1:9' }, undefined, { readTimeoutMs: 2000 })
    try {
      const dataDir = join(await dirs.make(), 'x')
      await assert.rejects(restoreCar(v1.file, { phrase: dave.phrase, passphrase: 'open sesame', chain: down, dataDir }), hasCode('CHAIN_UNREACHABLE'))
      assert.ok(await isEmpty(dataDir))
      const res = await restoreCar(v1.file, { phrase: dave.phrase, passphrase: 'open sesame', chain: down, allowUnanchored: true })
      assert.equal(res.anchored, false)
      assert.ok(res.warnings.some(w => /does not vouch/.test(w)))
      assert.equal(res.messages, 120)
      // non-empty target
      await assert.rejects(restoreCar(v1.file, { phrase: dave.phrase, passphrase: 'open sesame', dataDir: res.dataDir }), hasCode('TARGET_NOT_EMPTY'))
      // --merge into the same identity: nothing duplicated
      const merged = await restoreCar(v1.file, { phrase: dave.phrase, passphrase: 'open sesame', dataDir: res.dataDir, merge: true })
      assert.equal(merged.messages, 120)
      assert.equal(merged.imported, 0)
    } finally {
      down.close()
    }
    await assert.rejects(restoreCar(v1.file, { phrase: dave.phrase, chain: undefined }), hasCode('NO_CHAIN_PROFILE'))
  })

  it('verify lists every problem at once (a CAR missing two blocks), public and full', async () => {
    const erin = await owner({ messages: 400, seed: 15, conversations: 3 })
    const v1 = await erin.backup(1)
    const reader = await readBackup({ root: v1.root, blockstore: erin.env.blockstore, backupKey: erin.backupKey })
    const segs = reader.links.segments
    const drop = [segs[1], segs[segs.length - 1]]
    const file = join(erin.env.dir, 'holes.car')
    await writeCarWithout(v1.root, erin.env.blockstore, file, drop)
    assert.equal((await carBlocks(file)).length, (await carBlocks(v1.file)).length - 2)
    const keys = deriveKeys(erin.phrase)
    const full = await withCar(file, async source => await verifyRestoreSource({ source, chain, owner: erin.address, backupKey: backupKeySource(keys.backupRootKey) }))
    assert.equal(full.ok, false)
    assert.equal(full.version, 1)
    assert.deepEqual(full.problems.map(p => [p.code, p.cid]), drop.map(c => ['MISSING_BLOCK', c.toString()]))
    assert.ok(full.problems.every(p => typeof p.conversation === 'string' && typeof p.segment === 'number'))
    const pub = await withCar(file, async source => await verifyRestoreSource({ source, chain, owner: erin.address }))
    assert.equal(pub.mode, 'public')
    assert.equal(pub.problems.filter(p => p.code === 'MISSING_BLOCK').length, 2)
    const intact = await withCar(v1.file, async source => await verifyRestoreSource({ source, chain, owner: erin.address, backupKey: backupKeySource(keys.backupRootKey) }))
    assert.equal(intact.ok, true)
    assert.equal(intact.messages, 400)
    // an older version listed as a rollback, together with the bundle's own problems
    await erin.backup(2)
    const old = await withCar(file, async source => await verifyRestoreSource({ source, chain, owner: erin.address }))
    assert.deepEqual(old.problems.map(p => p.code), ['ROLLBACK_REFUSED', 'MISSING_BLOCK', 'MISSING_BLOCK'])
  })

  it('restores over the network from a node that pins the bundle (DAG stream, else bitswap, via --bootstrap)', async () => {
    const frank = await owner({ messages: 700, seed: 16, conversations: 4 })
    const harness = new NodeHarness()
    try {
      const replica = await harness.node({ bootstrap: [] })
      const helia = replica.p2p.helia
      const v1 = await frank.backup(1, { blockstore: helia.blockstore as never })
      for await (const _ of helia.pins.add(v1.root)) { /* drain */ }
      const addr = replica.p2p.multiaddrs()[0].toString()
      const dataDir = join(await dirs.make(), 'net')
      const source = await openNetworkSource({ bootstrap: [addr], blockTimeoutMs: 10_000 })
      try {
        const res = await restoreBackup({ dataDir, phrase: frank.phrase, password: PASSWORD, scryptN: SCRYPT_N, source, chain })
        assert.equal(res.ok, true)
        assert.equal(res.messages, 700)
      } finally {
        await source.close()
      }
      assert.deepEqual(await restoredMessages(dataDir), await frank.messages())
      // a peer that does not stream DAGs (/tokenim/dag/1.0.0): every block over bitswap
      await replica.p2p.unhandle(DAG_PROTOCOL)
      const viaBitswap = join(await dirs.make(), 'bitswap')
      const source1 = await openNetworkSource({ bootstrap: [addr], blockTimeoutMs: 10_000 })
      try {
        assert.equal((await restoreBackup({ dataDir: viaBitswap, phrase: frank.phrase, password: PASSWORD, scryptN: SCRYPT_N, source: source1, chain })).messages, 700)
      } finally {
        await source1.close()
      }
      assert.deepEqual(await restoredMessages(viaBitswap), await frank.messages())
      // a block the replica does not have is named, not waited for forever
      const reader = await readBackup({ root: v1.root, blockstore: helia.blockstore as never, backupKey: frank.backupKey })
      const gone = reader.links.segments[2]
      for await (const _ of helia.pins.rm(v1.root)) { /* drain */ }
      await helia.blockstore.delete(gone)
      const source2 = await openNetworkSource({ bootstrap: [addr], blockTimeoutMs: 1500 })
      const target = join(await dirs.make(), 'net2')
      try {
        await assert.rejects(restoreBackup({ dataDir: target, phrase: frank.phrase, password: PASSWORD, scryptN: SCRYPT_N, source: source2, chain }),
          hasCode('MISSING_BLOCK', err => { assert.ok((err.info.problems as Array<{ cid?: string }>).some(p => p.cid === gone.toString())) }))
      } finally {
        await source2.close()
      }
      assert.ok(await isEmpty(target))
    } finally {
      await harness.cleanup()
    }
  })
})

export { collect }
