import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { CarBlockIterator } from '@ipld/car'
import { buildBackup, readBackup, readCar, readHeader, readManifestNode, rootCidFromDigest, verifyBackup, writeCar, checksumAddress } from '../../src/backup/index.ts'
import { KEY, OWNER, collect, makeEnv, makeHistory, materializeAttachments, peer, storeMessages } from './helpers.ts'
import type { Env } from './helpers.ts'

describe('backup: build → read round trip', function () {
  let env: Env
  beforeEach(async () => { env = await makeEnv() })
  afterEach(async () => { await env.cleanup() })

  it('reads back exactly what the store holds (ids, texts, order, attachments, contacts)', async () => {
    const msgs = makeHistory({ conversations: 7, messages: 1500, seed: 3, attachments: 0.05 })
    const linked = await materializeAttachments(msgs, env.blockstore)
    assert.ok(linked > 20)
    await env.store.addMessages(msgs)
    await env.store.setContact(peer(0), 'Alice')
    await env.store.setContact(peer(3))
    const expected = await storeMessages(env.store)
    assert.equal(expected.length, 1500)

    const progress: number[] = []
    const res = await buildBackup({ store: env.store, blockstore: env.blockstore, owner: OWNER, version: 1, backupKey: KEY, segmentSize: 64, onProgress: p => progress.push(p.segments) })
    assert.equal(res.messages, 1500)
    assert.equal(res.conversations, 7)
    assert.equal(res.owner, checksumAddress(OWNER))
    assert.equal(res.attachments, new Set(msgs.filter(m => m.attachment).map(m => m.attachment?.cid)).size)
    assert.equal(res.formatVersion, 2)
    assert.ok(res.shards >= 1)
    assert.equal(res.blocks, res.segments + res.shards + 3, 'root, top node, shards, contacts box, segments')
    assert.equal(res.bytesNew, res.bytesTotal)
    assert.ok(progress.length >= res.segments)

    // the anchored digest is the sha-256 of the root block, and the CID is derivable from it
    const rootBytes = await collect(env.blockstore.get(res.root))
    assert.equal(res.digest, '0x' + createHash('sha256').update(Buffer.concat(rootBytes)).digest('hex'))
    assert.ok(rootCidFromDigest(res.digest).equals(res.root))

    const reader = await readBackup({ root: res.root, blockstore: env.blockstore, backupKey: KEY, owner: OWNER, version: 1 })
    assert.deepEqual(await collect(reader.messages()), expected)
    assert.deepEqual(reader.contacts, await env.store.contacts())
    assert.deepEqual(reader.conversations.map(c => ({ peer: c.peer, count: c.count, firstTs: c.firstTs, lastTs: c.lastTs })),
      (await env.store.conversations()).map(c => ({ peer: c.peer, count: c.count, firstTs: c.firstTs, lastTs: c.lastTs })))
    assert.equal(reader.header.kdf, null)
    assert.equal(reader.manifest.segmentSize, 64)

    const report = await verifyBackup({ root: res.root, blockstore: env.blockstore, backupKey: KEY, owner: OWNER, version: 1, attachments: true })
    assert.deepEqual(report.problems, [])
    assert.equal(report.ok, true)
    assert.equal(report.messages, 1500)
    const pub = await verifyBackup({ root: res.root, blockstore: env.blockstore })
    assert.equal(pub.ok, true)
    assert.equal(pub.mode, 'public')
  })

  it('build → CAR → readCar → read equals the store; the CAR starts with the root, mode 0600', async () => {
    const msgs = makeHistory({ conversations: 5, messages: 800, seed: 4, attachments: 0.02 })
    await materializeAttachments(msgs, env.blockstore)
    await env.store.addMessages(msgs)
    const expected = await storeMessages(env.store)
    const res = await buildBackup({ store: env.store, blockstore: env.blockstore, owner: OWNER, version: 3, backupKey: KEY, segmentSize: 100 })
    const file = join(env.dir, 'backup.car')
    const car = await writeCar(res.root, env.blockstore, file)
    assert.equal(car.blocks, res.blocks + res.attachments)
    assert.equal((await stat(file)).mode & 0o777, 0o600)

    // deterministic order: root, top node, each shard followed by its segments and (new) attachments, contacts
    const it = await CarBlockIterator.fromBytes(await readFile(file))
    assert.deepEqual((await it.getRoots()).map(String), [res.root.toString()])
    const order = (await collect(it)).map(b => b.cid.toString())
    const reader0 = await readBackup({ root: res.root, blockstore: env.blockstore, backupKey: KEY })
    const sharded = (await readManifestNode(env.blockstore, reader0.header)).sharded!
    const seen = new Set<string>()
    const once = (cids: Array<{ toString: () => string }>): string[] => cids.map(String).filter(c => !seen.has(c) && seen.add(c) !== undefined)
    assert.deepEqual(order, [res.root.toString(), reader0.header.manifest.toString(),
      ...sharded.shards.flatMap(s => [s.cid.toString(), ...once(s.segments), ...once(s.attachments)]), sharded.top.contacts.toString()])

    // a second write of the same bundle gives the same bytes
    const file2 = join(env.dir, 'again.car')
    await writeCar(res.root, env.blockstore, file2)
    assert.deepEqual(await readFile(file2), await readFile(file))

    const { root, blockstore, tampered } = await readCar(file)
    try {
      assert.ok(root.equals(res.root))
      assert.deepEqual(tampered, [])
      const header = await readHeader({ root, blockstore, owner: OWNER, version: 3, digest: res.digest })
      assert.equal(header.version, 3)
      const reader = await readBackup({ root, blockstore, backupKey: KEY, owner: OWNER, version: 3 })
      assert.deepEqual(await collect(reader.messages()), expected)
      const report = await verifyBackup({ root, blockstore, backupKey: KEY, attachments: true })
      assert.equal(report.ok, true, JSON.stringify(report.problems))
    } finally {
      await blockstore.close()
    }
  })

  it('writes a CAR without attachments when asked', async () => {
    const msgs = makeHistory({ conversations: 2, messages: 100, seed: 5, attachments: 0.2 })
    await materializeAttachments(msgs, env.blockstore)
    await env.store.addMessages(msgs)
    const res = await buildBackup({ store: env.store, blockstore: env.blockstore, owner: OWNER, version: 1, backupKey: KEY })
    assert.ok(res.attachments > 0)
    const car = await writeCar(res.root, env.blockstore, join(env.dir, 'x.car'), { attachments: false })
    assert.equal(car.blocks, res.blocks)
  })

  it('builds an empty history', async () => {
    const res = await buildBackup({ store: env.store, blockstore: env.blockstore, owner: OWNER, version: 1, backupKey: KEY })
    assert.equal(res.messages, 0)
    assert.equal(res.shards, 0)
    assert.equal(res.blocks, 3, 'root, top node, contacts box')
    const reader = await readBackup({ root: res.root, blockstore: env.blockstore, backupKey: KEY })
    assert.deepEqual(await collect(reader.messages()), [])
  })

  it('resolves the key from the root\'s KDF parameters through a callback', async () => {
    await env.store.addMessages(makeHistory({ conversations: 2, messages: 50, seed: 6 }))
    const kdf = { algorithm: 'scrypt' as const, N: 1024, r: 8, p: 1, salt: '00'.repeat(16) }
    const res = await buildBackup({ store: env.store, blockstore: env.blockstore, owner: OWNER, version: 2, backupKey: KEY, kdf })
    let seen: unknown
    const reader = await readBackup({ root: res.root, blockstore: env.blockstore, backupKey: k => { seen = k; return KEY } })
    assert.deepEqual(seen, kdf)
    assert.equal((await collect(reader.messages())).length, 50)
  })
})
